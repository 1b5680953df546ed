//! Inverted dropout: each element is kept with probability 1 − rate and
//! scaled by 1/(1 − rate), so the expected output equals the input and
//! inference needs no rescaling (Keras `Dropout`; the layer calls this only
//! in training).
//!
//! ```text
//! y = x · mᵢ / (1 − rate),   mᵢ = [uniform_f32(seed, stream, i) ≥ rate]
//! dx = dy · mᵢ / (1 − rate)
//! ```
//!
//! The mask comes from the counter-based generator in [`crate::rng`]: element
//! i's draw depends only on (seed, stream, i), so the backward pass redraws
//! the same mask instead of storing it, and a CUDA kernel draws it
//! identically. Use a new `stream` (e.g. the step number) for each batch.
//!
//! Tests: gradient check `dropout` (`tests/tests/gradcheck.rs`); reference
//! `dropout_mask_is_seeded_unbiased_and_scaled`
//! (`tests/tests/reference_ops.rs`); GPU parity case "dropout 0.3 (mask equal
//! to the CPU's)" (`tests/tests/cuda_parity.rs`), and the kernel's generator
//! against `rng.rs` in `tests/tests/cuda_kernels.rs`
//! (`dropout_kernel_generator_*`).

mod cpu;
mod cuda;

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::map_cpu;
use crate::tensor::{Storage, Tensor};

/// Inverted dropout: keeps each element with probability 1 − rate, scaled
/// by 1/(1 − rate). Errors unless `0 <= rate < 1`.
pub fn dropout(x: &Tensor, rate: f64, seed: u64, stream: u64) -> Result<Tensor> {
    if !(0.0..1.0).contains(&rate) {
        return Err(Error::invalid(
            "dropout",
            format!(
                "rate is {rate} (input {:?}); it must be in [0, 1)",
                x.shape()
            ),
        ));
    }
    let y = match x.storage() {
        Storage::Cpu(xs) => Storage::Cpu(map_cpu!(xs, |v: T| cpu::apply(v, rate, seed, stream))),
        Storage::Cuda(xs) => Storage::Cuda(cuda::apply(xs, rate, seed, stream, false)?),
    };
    let shape = x.shape().to_vec();
    Ok(record(
        "dropout",
        y,
        shape.clone(),
        &[x],
        Box::new(move |dy, _| {
            let dx = match dy.storage() {
                Storage::Cpu(g) => {
                    Storage::Cpu(map_cpu!(g, |v: T| cpu::apply(v, rate, seed, stream)))
                }
                Storage::Cuda(g) => Storage::Cuda(cuda::apply(g, rate, seed, stream, true)?),
            };
            Ok(vec![Some(Tensor::from_storage(dx, &shape)?)])
        }),
    ))
}
