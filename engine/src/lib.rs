//! thaw's engine: tensors, reverse-mode autograd and the ops a CNN needs.
//!
//! - [`tensor`]: the [`Tensor`] type (shape, storage on a device, dtype).
//! - [`autograd`]: the tape, `backward()`, [`no_grad`] and [`Param`].
//! - [`ops`]: one folder per op, forward and backward side by side.
//! - [`optim`]: SGD and Adam with Keras 3's update rules, learning-rate schedules.
//! - [`precision`]: [`Precision`], f32 or 16-bit (f16, bf16) operands for
//!   the convolutions, with f32 accumulation (feature extraction).
//! - [`rng`]: the one seeded counter-based random generator.
//! - [`gradcheck`]: finite-difference gradient checking.
//! - [`memory`]: [`memory::keep_freed_memory`], the allocator setting that
//!   spares large activations their page faults.
//! - [`cuda`]: GPU probe, device (context, stream, cuBLAS, cuDNN, our NVRTC
//!   kernels) and [`cuda::CudaStorage`], the data of a `Device::Cuda` tensor.
//!
//! `docs/engine.md` walks through one conv layer from forward to backward.

#![warn(missing_docs)]

pub mod autograd;
pub mod cuda;
pub mod element;
pub mod error;
pub mod gemm;
pub mod gradcheck;
pub mod memory;
pub mod ops;
pub mod optim;
pub mod precision;
pub mod rng;
pub mod tensor;

pub use autograd::{is_grad_enabled, no_grad, with_no_grad, Param};
pub use element::Element;
pub use error::{Error, Result};
pub use precision::Precision;
pub use tensor::{CpuStorage, DType, Device, Storage, Tensor};

/// Says that a unit test could not run its check on this CPU, on stderr past
/// the test harness's capture so `cargo test` shows it (as `tests::skipped`).
#[cfg(test)]
pub(crate) fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}
