//! CPU reference for inverted dropout. The mask is never stored: element `i`
//! is kept iff `uniform_f32(seed, stream, i) >= rate`, a pure function that
//! the backward pass (and a CUDA kernel) evaluates again.

use crate::element::Element;
use crate::rng::uniform_f32;
use rayon::prelude::*;

/// Whether element `i` survives. The comparison is in f32 (`rate as f32`),
/// as a kernel that receives the rate as a float would do it.
pub fn keep(seed: u64, stream: u64, i: usize, rate: f32) -> bool {
    uniform_f32(seed, stream, i as u64) >= rate
}

/// v · mask / (1 − rate): the forward on x, and the backward on dy. Each
/// element's draw is independent, so blocks run in parallel (rayon).
pub fn apply<T: Element>(v: &[T], rate: f64, seed: u64, stream: u64) -> Vec<T> {
    const BLOCK: usize = 1 << 14;
    let scale = T::from_f64(1.0 / (1.0 - rate));
    let rate = rate as f32;
    let mut out = vec![T::ZERO; v.len()];
    out.par_chunks_mut(BLOCK)
        .zip(v.par_chunks(BLOCK))
        .enumerate()
        .for_each(|(b, (o, x))| {
            for (j, (o, &a)) in o.iter_mut().zip(x).enumerate() {
                // Each draw is a coin flip (rate 0.5 in the head), so a
                // branch here was mispredicted about half the time: this
                // loop cost 18 ns per element. A select does not guess.
                let kept = keep(seed, stream, b * BLOCK + j, rate);
                *o = std::hint::select_unpredictable(kept, a * scale, T::ZERO);
            }
        });
    out
}
