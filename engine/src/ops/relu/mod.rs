//! ReLU: y = max(x, 0).
//!
//! Backward: dx = dy where x > 0, else 0. The derivative at exactly 0 is
//! taken as 0 (as TensorFlow and PyTorch do), everywhere in thaw.
//!
//! Tests: gradient check `relu` (`tests/tests/gradcheck.rs`); the kernel
//! against the CPU on the host: `gpu_dropout_and_relu_kernels_match_the_cpu`
//! (`tests/tests/cuda_kernels.rs`); GPU parity case "relu"
//! (`tests/tests/cuda_parity.rs`).

mod cpu;
mod cuda;

use crate::autograd::record;
use crate::error::Result;
use crate::tensor::{mixed_devices, Storage, Tensor};

/// Rectified linear unit, elementwise.
///
/// ```
/// use engine::{ops, Param, Tensor};
/// let x = Param::new("x", Tensor::from_vec(vec![-1.0f32, 0.0, 2.0], &[3])?);
/// let y = ops::relu(&x.tensor())?;
/// assert_eq!(y.to_vec_f32(), [0.0, 0.0, 2.0]);
/// ops::sum(&y)?.backward()?;
/// assert_eq!(x.grad().unwrap().to_vec_f32(), [0.0, 0.0, 1.0]); // ReLU′(0) = 0
/// # Ok::<(), engine::Error>(())
/// ```
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let y = match x.storage() {
        Storage::Cpu(s) => Storage::Cpu(cpu::forward(s)),
        Storage::Cuda(s) => Storage::Cuda(cuda::forward(s)?),
    };
    let x_saved = x.clone();
    Ok(record(
        "relu",
        y,
        x.shape().to_vec(),
        &[x],
        Box::new(move |dy, _| {
            let dx = match (x_saved.storage(), dy.storage()) {
                (Storage::Cpu(xs), Storage::Cpu(dys)) => Storage::Cpu(cpu::backward(xs, dys)?),
                (Storage::Cuda(xs), Storage::Cuda(dys)) => Storage::Cuda(cuda::backward(xs, dys)?),
                (xs, dys) => return Err(mixed_devices("relu", xs.device(), dys.device())),
            };
            Ok(vec![Some(Tensor::from_storage(dx, x_saved.shape())?)])
        }),
    ))
}
