//! Shared helpers for thaw's cross-crate tests (in `tests/tests/`).

use engine::rng::uniform_f64;
use engine::Tensor;

/// An f64 tensor of uniform values in [low, high), seeded.
pub fn uniform(shape: &[usize], low: f64, high: f64, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|i| low + (high - low) * uniform_f64(seed, 99, i as u64))
        .collect();
    Tensor::from_vec(v, shape).expect("shape matches")
}

/// An f64 tensor whose values are all at least `gap` away from zero (for
/// inputs to ReLU, whose derivative jumps at 0).
pub fn away_from_zero(shape: &[usize], gap: f64, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|i| {
            let u = uniform_f64(seed, 98, i as u64);
            if u < 0.5 {
                -gap - u
            } else {
                gap + u - 0.5
            }
        })
        .collect();
    Tensor::from_vec(v, shape).expect("shape matches")
}

/// An f64 tensor of pairwise distinct values: a seeded permutation of
/// `0..n`, scaled to [-1, 1). Neighbouring values differ by `2/n`, far more
/// than a gradient check's step, so max-pool ties cannot occur.
pub fn distinct(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut order: Vec<usize> = (0..n).collect();
    engine::rng::Rng::new(seed, 97).shuffle(&mut order);
    let v: Vec<f64> = order
        .iter()
        .map(|&i| -1.0 + 2.0 * i as f64 / n as f64)
        .collect();
    Tensor::from_vec(v, shape).expect("shape matches")
}
