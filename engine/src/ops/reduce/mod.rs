//! Sum and mean of all elements, to a scalar (shape `[]`).
//!
//! y = Σᵢ xᵢ, or y = (1/N) Σᵢ xᵢ. Accumulated in f64 in a fixed order, so an
//! f32 loss summed over many elements keeps its precision and is the same
//! on every run.
//!
//! Backward: ∂y/∂xᵢ = 1 (sum) or 1/N (mean): dx is the scalar dy broadcast
//! to x's shape (times 1/N for the mean). It is handed back as that one
//! scalar, which the tape expands only for ops that need it whole (see
//! [`crate::autograd`]): `sum(a · b)` then costs one pass over `b`.
//!
//! On a GPU the values are copied to the host and summed there, in f64 and
//! in the CPU's order, so the result is the CPU's to the bit; these reduce
//! losses and small tensors, where that copy costs little. The scalar goes
//! back to the GPU, and the backward fills dx there (`fill_f32`).
//!
//! Tests: gradient check `sum_and_mean` (`tests/tests/gradcheck.rs`); GPU
//! parity case "mean" (`tests/tests/cuda_parity.rs`).

mod cpu;

use crate::autograd::record;
use crate::cuda::CudaStorage;
use crate::error::{Error, Result};
use crate::tensor::{CpuStorage, DType, Storage, Tensor};

/// A scalar of `dtype` holding `value`, on the device of `like`.
fn scalar_storage(value: f64, dtype: DType, like: &Storage) -> Result<Storage> {
    Ok(match (like, dtype) {
        (Storage::Cpu(_), DType::F32) => Storage::Cpu(CpuStorage::F32(vec![value as f32])),
        (Storage::Cpu(_), DType::F64) => Storage::Cpu(CpuStorage::F64(vec![value])),
        (Storage::Cuda(s), _) => Storage::Cuda(CudaStorage::filled(s.device(), 1, value as f32)?),
    })
}

/// Σ x · scale, recorded under `op`; backward gives the scalar dy · scale,
/// standing for x's every element.
fn scaled_sum(op: &'static str, x: &Tensor, scale: f64) -> Result<Tensor> {
    let total = match x.storage() {
        Storage::Cpu(CpuStorage::F32(v)) => cpu::sum(v),
        Storage::Cpu(CpuStorage::F64(v)) => cpu::sum(v),
        Storage::Cuda(s) => cpu::sum(&s.to_host()?),
    };
    let dtype = x.dtype();
    Ok(record(
        op,
        scalar_storage(total * scale, dtype, x.storage())?,
        vec![],
        &[x],
        Box::new(move |dy, _| {
            let dx = Tensor::full_on(dy.item()? * scale, &[], dtype, dy.device())?;
            Ok(vec![Some(dx)])
        }),
    ))
}

/// Sum of all elements, to a scalar (0 for an empty tensor).
pub fn sum(x: &Tensor) -> Result<Tensor> {
    scaled_sum("sum", x, 1.0)
}

/// Mean of all elements, to a scalar. Errors on an empty tensor (the mean of
/// nothing is undefined).
pub fn mean(x: &Tensor) -> Result<Tensor> {
    if x.numel() == 0 {
        return Err(Error::shape(
            "mean",
            format!(
                "input {:?} has no elements; the mean of nothing is undefined",
                x.shape()
            ),
        ));
    }
    scaled_sum("mean", x, 1.0 / x.numel() as f64)
}
