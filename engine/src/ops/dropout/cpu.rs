//! CPU reference for inverted dropout. The mask is never stored: element `i`
//! is kept iff `uniform_f32(seed, stream, i) >= rate`, a pure function that
//! the backward pass (and a CUDA kernel) evaluates again.

use crate::element::Element;
use crate::rng::uniform_f32;

/// Whether element `i` survives. The comparison is in f32 (`rate as f32`),
/// as a kernel that receives the rate as a float would do it.
pub fn keep(seed: u64, stream: u64, i: usize, rate: f32) -> bool {
    uniform_f32(seed, stream, i as u64) >= rate
}

/// v · mask / (1 − rate): the forward on x, and the backward on dy.
pub fn apply<T: Element>(v: &[T], rate: f64, seed: u64, stream: u64) -> Vec<T> {
    let scale = T::from_f64(1.0 / (1.0 - rate));
    let rate = rate as f32;
    v.iter()
        .enumerate()
        .map(|(i, &a)| {
            if keep(seed, stream, i, rate) {
                a * scale
            } else {
                T::ZERO
            }
        })
        .collect()
}
