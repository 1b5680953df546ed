//! Elementwise sum with NumPy broadcasting: y = a + b.
//!
//! Used for bias adds (`[n, c] + [c]`, `[n, h, w, c] + [c]`) and the ResNet
//! shortcut (same shapes, a plain zip). The broadcasting rules and the
//! strided walk live in [`broadcast`], shared with [`mul`](crate::ops::mul).
//!
//! Backward: ∂y/∂a = ∂y/∂b = 1, so da = dy and db = dy, each summed over the
//! dims along which that operand was broadcast (a bias `[c]` gets the sum of
//! dy over every position of its channel).
//!
//! Tests: gradient checks `add_same_shape`, `add_bias_broadcast` and
//! `add_two_sided_broadcast` (`tests/tests/gradcheck.rs`); reference
//! `broadcasting_matches_numpy` (`tests/tests/reference_ops.rs`) and the plan
//! tests in `broadcast.rs`; GPU parity cases "add bias [5,3] + [3]", "add same
//! shapes (shortcut)" and "add broadcast [2,1,4] + [3,1]"
//! (`tests/tests/cuda_parity.rs`).

pub(crate) mod broadcast;
mod cpu;
mod cuda;
pub(crate) use cuda::{broadcast_forward, broadcast_reduce, column_sum};

use crate::autograd::record;
use crate::error::Result;
use crate::tensor::{mixed_devices, same_kind, Storage, Tensor};

/// Elementwise sum with NumPy broadcasting (shapes aligned on the right;
/// missing or size-1 dims stretch). Errors if the shapes do not broadcast or
/// the dtypes differ.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_kind("add", a, b)?;
    let plan = broadcast::plan("add", a.shape(), b.shape())?;
    let y = match (a.storage(), b.storage()) {
        (Storage::Cpu(av), Storage::Cpu(bv)) => Storage::Cpu(cpu::forward(av, bv, &plan)?),
        (Storage::Cuda(av), Storage::Cuda(bv)) => Storage::Cuda(cuda::forward(av, bv, &plan)?),
        (av, bv) => return Err(mixed_devices("add", av.device(), bv.device())),
    };
    let shapes = [a.shape().to_vec(), b.shape().to_vec()];
    let out = plan.out.clone();
    Ok(record(
        "add",
        y,
        out,
        &[a, b],
        Box::new(move |dy, needs| {
            let mut grads = Vec::with_capacity(2);
            for side in 0..2 {
                grads.push(if needs[side] {
                    let len = crate::tensor::numel(&shapes[side]);
                    let d = match dy.storage() {
                        Storage::Cpu(g) => Storage::Cpu(cpu::backward(g, &plan, side, len)),
                        Storage::Cuda(g) => Storage::Cuda(cuda::backward(g, &plan, side, len)?),
                    };
                    Some(Tensor::from_storage(d, &shapes[side])?)
                } else {
                    None
                });
            }
            Ok(grads)
        }),
    ))
}
