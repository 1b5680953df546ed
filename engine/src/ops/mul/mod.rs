//! Elementwise product with NumPy broadcasting: y = a · b.
//!
//! Broadcasting follows the same rules as [`add`](crate::ops::add) (shared
//! code in `ops/add/broadcast.rs`): a per-channel scale `[c]` on
//! `[n, h, w, c]`, a mask of the same shape, ...
//!
//! Backward: ∂y/∂a = b and ∂y/∂b = a, so da = dy · b and db = dy · a, each
//! summed over the dims along which that operand was broadcast. `dy` may
//! come as a scalar standing for every element (the backward of `sum` or
//! `mean`, see [`crate::autograd`]): on the CPU, for operands of one shape,
//! da = dy · b is then computed from that scalar, in one pass over `b`.
//!
//! `cpu.rs` is the reference; `cuda.rs` runs every broadcast the CPU takes
//! on the GPU, with the same roundings and summation order (equal results).
//!
//! Tests: gradient check `mul_same_shape_and_broadcast`
//! (`tests/tests/gradcheck.rs`); reference `broadcasting_matches_numpy`
//! (`tests/tests/reference_ops.rs`); GPU parity cases "mul same shapes", "mul
//! per-channel scale [2,3,4,5] · [5]", "mul [4] · [3,4] (repeating first
//! operand)", "mul broadcast [2,1,4] · [3,1]" and "mul by a scalar [3,4] · []"
//! (`tests/tests/cuda_parity.rs`).

mod cpu;
mod cuda;

use crate::autograd::record_taking_scalar_dy;
use crate::error::Result;
use crate::ops::add::broadcast;
use crate::tensor::{mixed_devices, numel, same_kind, Storage, Tensor};

/// Elementwise product with NumPy broadcasting (shapes aligned on the right;
/// missing or size-1 dims stretch). Errors if the shapes do not broadcast or
/// the dtypes or devices differ.
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_kind("mul", a, b)?;
    let plan = broadcast::plan("mul", a.shape(), b.shape())?;
    let y = match (a.storage(), b.storage()) {
        (Storage::Cpu(av), Storage::Cpu(bv)) => Storage::Cpu(cpu::forward(av, bv, &plan)?),
        (Storage::Cuda(av), Storage::Cuda(bv)) => Storage::Cuda(cuda::forward(av, bv, &plan)?),
        (av, bv) => return Err(mixed_devices("mul", av.device(), bv.device())),
    };
    let saved = [a.clone(), b.clone()];
    let out = plan.out.clone();
    Ok(record_taking_scalar_dy(
        "mul",
        y,
        out.clone(),
        &[a, b],
        Box::new(move |dy, needs| {
            if let Some(grads) = scalar_dy_backward(dy, &saved, &out, needs)? {
                return Ok(grads);
            }
            let dy = &if dy.shape() == out {
                dy.clone()
            } else {
                Tensor::full_on(dy.item()?, &out, dy.dtype(), dy.device())?
            };
            let mut grads = Vec::with_capacity(2);
            for side in 0..2 {
                grads.push(if needs[side] {
                    let shape = saved[side].shape();
                    let (len, other) = (numel(shape), saved[1 - side].storage());
                    let d = match (dy.storage(), other) {
                        (Storage::Cpu(g), Storage::Cpu(o)) => {
                            Storage::Cpu(cpu::backward(g, o, &plan, side, len)?)
                        }
                        (Storage::Cuda(g), Storage::Cuda(o)) => {
                            Storage::Cuda(cuda::backward(g, o, &plan, side, len)?)
                        }
                        (g, o) => return Err(mixed_devices("mul", g.device(), o.device())),
                    };
                    Some(Tensor::from_storage(d, shape)?)
                } else {
                    None
                });
            }
            Ok(grads)
        }),
    ))
}

/// The backward for a scalar `dy` (standing for every element of the output)
/// when both operands are CPU tensors of the output's shape: da = dy · b and
/// db = dy · a, each one pass over the other operand, with the roundings of
/// the elementwise path. `None` otherwise (`dy` is then expanded).
fn scalar_dy_backward(
    dy: &Tensor,
    saved: &[Tensor; 2],
    out: &[usize],
    needs: &[bool],
) -> Result<Option<Vec<Option<Tensor>>>> {
    use crate::tensor::CpuStorage;
    if !dy.shape().is_empty() || out.is_empty() || saved.iter().any(|t| t.shape() != out) {
        return Ok(None);
    }
    let mut grads = Vec::with_capacity(2);
    for side in 0..2 {
        grads.push(if needs[side] {
            let d = match (dy.storage(), saved[1 - side].storage()) {
                (Storage::Cpu(CpuStorage::F32(g)), Storage::Cpu(CpuStorage::F32(o))) => {
                    CpuStorage::F32(cpu::scaled(g[0], o))
                }
                (Storage::Cpu(CpuStorage::F64(g)), Storage::Cpu(CpuStorage::F64(o))) => {
                    CpuStorage::F64(cpu::scaled(g[0], o))
                }
                _ => return Ok(None),
            };
            Some(Tensor::from_storage(Storage::Cpu(d), out)?)
        } else {
            None
        });
    }
    Ok(Some(grads))
}
