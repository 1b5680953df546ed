//! Elementwise sum with NumPy broadcasting: y = a + b.
//!
//! Used for bias adds (`[n, c] + [c]`, `[n, h, w, c] + [c]`) and the ResNet
//! shortcut (same shapes, a plain zip). The broadcasting rules and the
//! strided walk live in [`broadcast`], shared with [`mul`](crate::ops::mul).
//!
//! Backward: ∂y/∂a = ∂y/∂b = 1, so da = dy and db = dy, each summed over the
//! dims along which that operand was broadcast (a bias `[c]` gets the sum of
//! dy over every position of its channel).

pub(crate) mod broadcast;
mod cpu;

use crate::autograd::record;
use crate::error::Result;
use crate::tensor::{same_kind, Storage, Tensor};

/// Elementwise sum with NumPy broadcasting (shapes aligned on the right;
/// missing or size-1 dims stretch). Errors if the shapes do not broadcast or
/// the dtypes differ.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_kind("add", a, b)?;
    let plan = broadcast::plan("add", a.shape(), b.shape())?;
    let y = match (a.storage(), b.storage()) {
        (Storage::Cpu(av), Storage::Cpu(bv)) => Storage::Cpu(cpu::forward(av, bv, &plan)?),
    };
    let shapes = [a.shape().to_vec(), b.shape().to_vec()];
    let out = plan.out.clone();
    Ok(record(
        "add",
        y,
        out,
        &[a, b],
        Box::new(move |dy, needs| {
            let Storage::Cpu(g) = dy.storage();
            let mut grads = Vec::with_capacity(2);
            for side in 0..2 {
                grads.push(if needs[side] {
                    let len = crate::tensor::numel(&shapes[side]);
                    let d = cpu::backward(g, &plan, side, len);
                    Some(Tensor::from_storage(Storage::Cpu(d), &shapes[side])?)
                } else {
                    None
                });
            }
            Ok(grads)
        }),
    ))
}
