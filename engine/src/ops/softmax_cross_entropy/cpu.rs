//! CPU reference for softmax and the fused softmax cross-entropy, one row at
//! a time. Row reductions run in f64 whatever the element type.

use crate::element::Element;

/// Softmax of one row, stable for huge values: subtracting the row max makes
/// the largest exponent exp(0) = 1, so nothing overflows. Returns the
/// probabilities (in f64) and log Σⱼ exp(xⱼ) (the log-sum-exp).
fn softmax_row<T: Element>(row: &[T]) -> (Vec<f64>, f64) {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(x.to_f64()));
    let exps: Vec<f64> = row.iter().map(|&x| (x.to_f64() - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    let probs = exps.iter().map(|e| e / total).collect();
    (probs, max + total.ln())
}

/// Softmax along the last axis of rows of length `c`.
pub fn softmax<T: Element>(x: &[T], c: usize) -> Vec<T> {
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(c) {
        y.extend(softmax_row(row).0.into_iter().map(T::from_f64));
    }
    y
}

/// dx = y ⊙ (dy − Σⱼ dyⱼ yⱼ), row by row.
pub fn softmax_backward<T: Element>(y: &[T], dy: &[T], c: usize) -> Vec<T> {
    let mut dx = Vec::with_capacity(y.len());
    for (yr, gr) in y.chunks(c).zip(dy.chunks(c)) {
        let dot: f64 = yr
            .iter()
            .zip(gr)
            .map(|(&p, &g)| p.to_f64() * g.to_f64())
            .sum();
        dx.extend(
            yr.iter()
                .zip(gr)
                .map(|(&p, &g)| T::from_f64(p.to_f64() * (g.to_f64() - dot))),
        );
    }
    dx
}

/// Mean over the rows of −log softmax(x)[label] = logsumexp(x) − x[label],
/// and the softmax probabilities (kept for the backward pass).
pub fn cross_entropy<T: Element>(logits: &[T], labels: &[usize], c: usize) -> (f64, Vec<T>) {
    let mut total = 0f64;
    let mut probs = Vec::with_capacity(logits.len());
    for (row, &label) in logits.chunks(c).zip(labels) {
        let (p, lse) = softmax_row(row);
        total += lse - row[label].to_f64();
        probs.extend(p.into_iter().map(T::from_f64));
    }
    (total / labels.len() as f64, probs)
}

/// dlogits = (softmax − onehot(label)) · dloss / n.
pub fn cross_entropy_backward<T: Element>(
    probs: &[T],
    labels: &[usize],
    c: usize,
    dloss: f64,
) -> Vec<T> {
    let scale = dloss / labels.len() as f64;
    let mut dx = Vec::with_capacity(probs.len());
    for (row, &label) in probs.chunks(c).zip(labels) {
        dx.extend(row.iter().enumerate().map(|(j, &p)| {
            let onehot = if j == label { 1.0 } else { 0.0 };
            T::from_f64((p.to_f64() - onehot) * scale)
        }));
    }
    dx
}
