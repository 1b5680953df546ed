//! End to end: tiny models built from the engine's ops, trained with its
//! optimizer on small synthetic tasks, must reach an accuracy that chance
//! cannot (25% for 4 classes, 50% for 2) on held-out data, and the same seed
//! must give bit-identical losses.
//!
//! - MLP (matmul + add + relu + softmax_cross_entropy, Adam): which quadrant
//!   of the plane a 2-D point lies in.
//! - CNN (conv2d → relu → max_pool2d → flatten → dense, Adam): whether an
//!   8x8 noisy image shows a horizontal or a vertical bar.

use engine::ops::{self, Padding};
use engine::optim::{zero_grad, Adam, Optimizer};
use engine::rng::Rng;
use engine::{Param, Tensor};

/// Glorot-uniform initial values (Keras's default), seeded.
fn glorot(rng: &mut Rng, shape: &[usize], fan_in: usize, fan_out: usize) -> Tensor {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.uniform(-limit, limit) as f32).collect();
    Tensor::from_vec(v, shape).unwrap()
}

fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, engine::DType::F32)
}

/// Fraction of rows of `logits` `[n, c]` whose argmax is the label.
fn accuracy(logits: &Tensor, labels: &[usize]) -> f64 {
    let c = logits.shape()[1];
    let v = logits.to_vec_f32();
    let hits = v
        .chunks(c)
        .zip(labels)
        .filter(|(row, &l)| {
            let best = (0..c).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            best == l
        })
        .count();
    hits as f64 / labels.len() as f64
}

/// Full-batch training: returns the loss of every step.
fn train(
    params: &[Param],
    forward: impl Fn(&Tensor) -> engine::Result<Tensor>,
    x: &Tensor,
    labels: &[usize],
    steps: usize,
    opt: &mut dyn Optimizer,
) -> Vec<f64> {
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        let loss = ops::softmax_cross_entropy(&forward(x).unwrap(), labels).unwrap();
        losses.push(loss.item().unwrap());
        loss.backward().unwrap();
        opt.step(params).unwrap();
        zero_grad(params);
    }
    losses
}

/// `n` points in [-1, 1]², at least 0.1 away from both axes, labelled by quadrant.
fn quadrant_data(rng: &mut Rng, n: usize) -> (Tensor, Vec<usize>) {
    let (mut xs, mut labels) = (Vec::new(), Vec::new());
    while labels.len() < n {
        let (a, b) = (rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0));
        if a.abs() < 0.1 || b.abs() < 0.1 {
            continue;
        }
        xs.extend([a as f32, b as f32]);
        labels.push(match (a > 0.0, b > 0.0) {
            (true, true) => 0,
            (false, true) => 1,
            (false, false) => 2,
            (true, false) => 3,
        });
    }
    (Tensor::from_vec(xs, &[n, 2]).unwrap(), labels)
}

/// Trains the MLP 2 → 16 → 4 from `seed`; returns the losses and the
/// accuracy on held-out points.
fn run_mlp(seed: u64) -> (Vec<f64>, f64) {
    let mut rng = Rng::new(seed, 0);
    let (x, labels) = quadrant_data(&mut rng, 256);
    let (x_test, labels_test) = quadrant_data(&mut rng, 256);
    let w1 = Param::new("dense_1/kernel", glorot(&mut rng, &[2, 16], 2, 16));
    let b1 = Param::new("dense_1/bias", zeros(&[16]));
    let w2 = Param::new("dense_2/kernel", glorot(&mut rng, &[16, 4], 16, 4));
    let b2 = Param::new("dense_2/bias", zeros(&[4]));
    let forward = |x: &Tensor| -> engine::Result<Tensor> {
        let h = ops::relu(&ops::add(&ops::matmul(x, &w1.tensor())?, &b1.tensor())?)?;
        ops::add(&ops::matmul(&h, &w2.tensor())?, &b2.tensor())
    };
    let params = [w1.clone(), b1.clone(), w2.clone(), b2.clone()];
    let losses = train(&params, forward, &x, &labels, 150, &mut Adam::new(0.05));
    let acc = accuracy(
        &engine::with_no_grad(|| forward(&x_test)).unwrap(),
        &labels_test,
    );
    (losses, acc)
}

#[test]
fn mlp_learns_quadrants() {
    let (losses, acc) = run_mlp(11);
    let (first, last) = (losses[0], *losses.last().unwrap());
    eprintln!("MLP: loss {first:.4} -> {last:.4}, held-out accuracy {acc:.3}");
    // Chance: loss ln 4 = 1.386 at accuracy 0.25.
    assert!(last < 0.2, "final loss {last} (first {first})");
    assert!(acc >= 0.95, "held-out accuracy {acc}, chance is 0.25");
    // Same seed: bit-identical losses; another seed: a different run.
    assert_eq!(run_mlp(11).0, losses);
    assert_ne!(run_mlp(12).0, losses);
}

/// `n` 8x8 single-channel images, each with one bright horizontal (label 0)
/// or vertical (label 1) bar of length 4 to 8 at a random place, on noise.
fn bar_images(rng: &mut Rng, n: usize) -> (Tensor, Vec<usize>) {
    let mut v = vec![0f32; n * 64];
    let mut labels = Vec::with_capacity(n);
    for px in v.chunks_mut(64) {
        for p in px.iter_mut() {
            *p = rng.uniform(0.0, 0.5) as f32;
        }
        let label = rng.below(2) as usize;
        let len = 4 + rng.below(5) as usize;
        let line = rng.below(8) as usize;
        let start = rng.below((8 - len + 1) as u64) as usize;
        for k in start..start + len {
            let (r, c) = if label == 0 { (line, k) } else { (k, line) };
            px[r * 8 + c] = 1.0;
        }
        labels.push(label);
    }
    (Tensor::from_vec(v, &[n, 8, 8, 1]).unwrap(), labels)
}

fn run_cnn(seed: u64) -> (Vec<f64>, f64) {
    let mut rng = Rng::new(seed, 1);
    let (x, labels) = bar_images(&mut rng, 64);
    let (x_test, labels_test) = bar_images(&mut rng, 200);
    let k = Param::new("conv/kernel", glorot(&mut rng, &[3, 3, 1, 4], 9, 36));
    let kb = Param::new("conv/bias", zeros(&[4]));
    let w = Param::new("dense/kernel", glorot(&mut rng, &[64, 2], 64, 2));
    let b = Param::new("dense/bias", zeros(&[2]));
    let forward = |x: &Tensor| -> engine::Result<Tensor> {
        let h = ops::conv2d(x, &k.tensor(), Some(&kb.tensor()), (1, 1), Padding::Same)?;
        let h = ops::max_pool2d(&ops::relu(&h)?, (2, 2), (2, 2), Padding::Valid)?;
        ops::add(&ops::matmul(&ops::flatten(&h)?, &w.tensor())?, &b.tensor())
    };
    let params = [k.clone(), kb.clone(), w.clone(), b.clone()];
    let losses = train(&params, forward, &x, &labels, 120, &mut Adam::new(0.02));
    let acc = accuracy(
        &engine::with_no_grad(|| forward(&x_test)).unwrap(),
        &labels_test,
    );
    (losses, acc)
}

#[test]
fn cnn_learns_bar_orientation() {
    let (losses, acc) = run_cnn(21);
    let (first, last) = (losses[0], *losses.last().unwrap());
    eprintln!("CNN: loss {first:.4} -> {last:.4}, held-out accuracy {acc:.3}");
    // Chance: loss ln 2 = 0.693 at accuracy 0.5.
    assert!(last < 0.15, "final loss {last} (first {first})");
    assert!(acc >= 0.95, "held-out accuracy {acc}, chance is 0.5");
    assert_eq!(run_cnn(21).0, losses);
}
