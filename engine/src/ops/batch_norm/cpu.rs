//! CPU reference for batch normalisation over the last axis. `x` is seen as
//! rows of `c` channels; per-channel statistics and sums run in f64.

use crate::element::Element;
use crate::ops::parallel;

/// Per-channel mean and biased variance (Σ(x − mean)² / rows), two passes.
pub fn moments<T: Element>(x: &[T], c: usize) -> (Vec<f64>, Vec<f64>) {
    let rows = (x.len() / c) as f64;
    let mut mean = vec![0f64; c];
    for row in x.chunks(c) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v.to_f64();
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows);
    let mut var = vec![0f64; c];
    for row in x.chunks(c) {
        for ((s, &v), &m) in var.iter_mut().zip(row).zip(&mean) {
            let d = v.to_f64() - m;
            *s += d * d;
        }
    }
    var.iter_mut().for_each(|s| *s /= rows);
    (mean, var)
}

/// y = x · scale + shift per channel (the folded normalisation).
pub fn affine<T: Element>(x: &[T], scale: &[f64], shift: &[f64]) -> Vec<T> {
    let c = scale.len();
    let scale: Vec<T> = scale.iter().map(|&s| T::from_f64(s)).collect();
    let shift: Vec<T> = shift.iter().map(|&s| T::from_f64(s)).collect();
    let scale_shift: Vec<(T, T)> = scale.into_iter().zip(shift).collect();
    debug_assert_eq!(scale_shift.len(), c);
    parallel::zip_rows(x, &scale_shift, |v, &(s, t)| v * s + t)
}

/// Per-channel Σ dy and Σ dy · (x − center).
pub fn channel_sums<T: Element>(x: &[T], dy: &[T], center: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let c = center.len();
    let mut sum_dy = vec![0f64; c];
    let mut sum_dy_xc = vec![0f64; c];
    for (row, grow) in x.chunks(c).zip(dy.chunks(c)) {
        for j in 0..c {
            let g = grow[j].to_f64();
            sum_dy[j] += g;
            sum_dy_xc[j] += g * (row[j].to_f64() - center[j]);
        }
    }
    (sum_dy, sum_dy_xc)
}

/// Training-mode dx = γ·inv/m · (m·dy − Σdy − x̂ · Σ(dy·x̂)), with
/// x̂ = (x − mean)·inv and m the number of rows.
pub fn train_backward<T: Element>(
    x: &[T],
    dy: &[T],
    gamma: &[f64],
    mean: &[f64],
    inv: &[f64],
    sum_dy: &[f64],
    sum_dy_xhat: &[f64],
) -> Vec<T> {
    let c = mean.len();
    let m = (x.len() / c) as f64;
    let mut dx = Vec::with_capacity(x.len());
    for (row, grow) in x.chunks(c).zip(dy.chunks(c)) {
        for j in 0..c {
            let xhat = (row[j].to_f64() - mean[j]) * inv[j];
            let v =
                gamma[j] * inv[j] / m * (m * grow[j].to_f64() - sum_dy[j] - xhat * sum_dy_xhat[j]);
            dx.push(T::from_f64(v));
        }
    }
    dx
}
