//! Elementwise product with NumPy broadcasting: y = a · b.
//!
//! Broadcasting follows the same rules as [`add`](crate::ops::add) (shared
//! code in `ops/add/broadcast.rs`): a per-channel scale `[c]` on
//! `[n, h, w, c]`, a mask of the same shape, ...
//!
//! Backward: ∂y/∂a = b and ∂y/∂b = a, so da = dy · b and db = dy · a, each
//! summed over the dims along which that operand was broadcast.

mod cpu;

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::ops::add::broadcast;
use crate::tensor::{numel, same_kind, CpuStorage, Storage, Tensor};

/// The CPU storage of a mul operand: mul has no GPU path (no model layer
/// multiplies on the GPU; the trainer's head standardisation runs on the host).
fn host(t: &Storage) -> Result<&CpuStorage> {
    match t {
        Storage::Cpu(s) => Ok(s),
        Storage::Cuda(_) => Err(Error::unsupported(
            "mul",
            "mul has no GPU path yet; copy the operands with .to_device(Device::Cpu)",
        )),
    }
}

/// Elementwise product with NumPy broadcasting (shapes aligned on the right;
/// missing or size-1 dims stretch). Errors if the shapes do not broadcast or
/// the dtypes differ.
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_kind("mul", a, b)?;
    let plan = broadcast::plan("mul", a.shape(), b.shape())?;
    let y = Storage::Cpu(cpu::forward(host(a.storage())?, host(b.storage())?, &plan)?);
    let saved = [a.clone(), b.clone()];
    let out = plan.out.clone();
    Ok(record(
        "mul",
        y,
        out,
        &[a, b],
        Box::new(move |dy, needs| {
            let g = host(dy.storage())?;
            let mut grads = Vec::with_capacity(2);
            for side in 0..2 {
                grads.push(if needs[side] {
                    let other = host(saved[1 - side].storage())?;
                    let shape = saved[side].shape();
                    let d = cpu::backward(g, other, &plan, side, numel(shape))?;
                    Some(Tensor::from_storage(Storage::Cpu(d), shape)?)
                } else {
                    None
                });
            }
            Ok(grads)
        }),
    ))
}
