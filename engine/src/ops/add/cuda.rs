//! CUDA path for add, from `kernels/src/elementwise.cu`. Same shapes (the
//! ResNet shortcut) is `add_f32`; a bias repeating along the last axes
//! (`[n, h, w, c] + [c]`) is `add_bias_f32`, and its gradient the column sum
//! `column_sum_*_f32`. Any other broadcast goes through the general
//! broadcast kernels, shared with [`mul`](crate::ops::mul):
//! [`broadcast_forward`] and [`broadcast_reduce`] (the CPU's strided walk
//! and `reduce_to`, index for index).

use super::broadcast::{Layout, Plan};
use crate::cuda::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use crate::cuda::{launch_1d, CudaDevice, CudaStorage};
use crate::error::Result;
use std::sync::Arc;

pub fn forward(a: &CudaStorage, b: &CudaStorage, plan: &Plan) -> Result<CudaStorage> {
    let dev = a.device();
    let n = crate::tensor::numel(&plan.out);
    let mut y = dev.alloc::<f32>(n)?;
    let n64 = n as u64;
    match plan.layout {
        Layout::Same => {
            let f = dev.function("elementwise", "add_f32")?;
            let mut args = dev.stream().launch_builder(&f);
            args.arg(a.slice()).arg(b.slice()).arg(&mut y).arg(&n64);
            // SAFETY: (const float* a, const float* b, float* y, u64 n); all hold n floats.
            unsafe { args.launch(launch_1d(n)) }.map_err(dev.error("add_f32"))?;
        }
        Layout::Repeats(side) => {
            let (full, bias) = if side == 0 { (b, a) } else { (a, b) };
            let c = bias.len() as u32;
            let f = dev.function("elementwise", "add_bias_f32")?;
            let mut args = dev.stream().launch_builder(&f);
            args.arg(full.slice())
                .arg(bias.slice())
                .arg(&mut y)
                .arg(&n64)
                .arg(&c);
            // SAFETY: (x, bias, y, u64 n, u32 c); x and y hold n floats, bias c, n % c == 0.
            unsafe { args.launch(launch_1d(n)) }.map_err(dev.error("add_bias_f32"))?;
        }
        Layout::Strided => return broadcast_forward("add_broadcast_f32", "add", a, b, plan),
    }
    Ok(CudaStorage::new(y, dev))
}

/// The gradient of operand `side`: dy itself for the full-size operand, the
/// column sum of dy for the repeating one.
pub fn backward(dy: &CudaStorage, plan: &Plan, side: usize, len: usize) -> Result<CudaStorage> {
    let dev = dy.device();
    match plan.layout {
        Layout::Repeats(s) if s == side => {
            let rows = dy.len() / len;
            Ok(CudaStorage::new(
                column_sum(dev, dy.slice(), rows, len)?,
                dev,
            ))
        }
        Layout::Same | Layout::Repeats(_) => Ok(CudaStorage::new(
            dev.stream()
                .clone_dtod(dy.slice())
                .map_err(dev.error("copying a gradient"))?,
            dev,
        )),
        Layout::Strided => broadcast_reduce("add", dy, None, plan, side, len),
    }
}

/// y = a (+ or ·) b over any broadcast `plan`, with `kernel` =
/// `add_broadcast_f32` or `mul_broadcast_f32` (`op` names the op in errors).
pub(crate) fn broadcast_forward(
    kernel: &'static str,
    op: &'static str,
    a: &CudaStorage,
    b: &CudaStorage,
    plan: &Plan,
) -> Result<CudaStorage> {
    let index = plan.gpu_index(op)?;
    let dev = a.device();
    let n = crate::tensor::numel(&plan.out);
    let mut y = dev.alloc::<f32>(n)?;
    let n64 = n as u64;
    let f = dev.function("elementwise", kernel)?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(a.slice())
        .arg(b.slice())
        .arg(&mut y)
        .arg(&n64)
        .arg(&index);
    // SAFETY: (a, b, y, u64 n, BroadcastIndex by value); y holds n floats and
    // the plan's strides stay inside a and b (they come from their shapes).
    unsafe { args.launch(launch_1d(n)) }.map_err(dev.error(kernel))?;
    Ok(CudaStorage::new(y, dev))
}

/// The gradient of operand `side` (`len` elements) under any broadcast
/// `plan`: the sum of dy (add: `other` None) or of dy · other (mul) over the
/// output positions that read each element, accumulated in f64 in output
/// order, so it equals the CPU's `broadcast::reduce_to` bit for bit.
pub(crate) fn broadcast_reduce(
    op: &'static str,
    dy: &CudaStorage,
    other: Option<&CudaStorage>,
    plan: &Plan,
    side: usize,
    len: usize,
) -> Result<CudaStorage> {
    let index = plan.gpu_index(op)?;
    let dev = dy.device();
    let mut dx = dev.alloc::<f32>(len)?;
    let (len64, side32) = (len as u64, side as u32);
    let kernel = match other {
        None => "broadcast_reduce_f32",
        Some(_) => "broadcast_reduce_product_f32",
    };
    let f = dev.function("elementwise", kernel)?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(dy.slice());
    if let Some(o) = other {
        args.arg(o.slice());
    }
    args.arg(&mut dx).arg(&len64).arg(&index).arg(&side32);
    // SAFETY: (dy, [other,] dx, u64 len, BroadcastIndex, u32 side); dy holds
    // the output's elements, other its operand's, dx len floats.
    unsafe { args.launch(launch_1d(len)) }.map_err(dev.error(kernel))?;
    Ok(CudaStorage::new(dx, dev))
}

/// `out[j] = Σ_r x[r, j]` for x `[rows, c]`: the gradient of a bias. Two
/// fixed-order passes (partial sums over G row groups, then over G), so the
/// result is the same on every run.
pub(crate) fn column_sum(
    dev: &Arc<CudaDevice>,
    x: &CudaSlice<f32>,
    rows: usize,
    c: usize,
) -> Result<CudaSlice<f32>> {
    // Up to 64 row groups of 8 rows per thread column: enough blocks to fill the GPU.
    let groups = rows.div_ceil(8).clamp(1, 64);
    let mut partial = dev.alloc::<f32>(groups * c)?;
    let mut out = dev.alloc::<f32>(c)?;
    let (rows64, c32, groups32) = (rows as u64, c as u32, groups as u32);
    let f = dev.function("elementwise", "column_sum_partial_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x).arg(&mut partial).arg(&rows64).arg(&c32);
    let cfg = LaunchConfig {
        grid_dim: (c.div_ceil(32) as u32, groups32, 1),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: (x [rows, c], partial [groups, c], u64 rows, u32 c), grid (ceil(c/32), groups).
    unsafe { args.launch(cfg) }.map_err(dev.error("column_sum_partial_f32"))?;
    let f = dev.function("elementwise", "column_sum_final_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(&partial).arg(&mut out).arg(&groups32).arg(&c32);
    // SAFETY: (partial [groups, c], out [c], u32 groups, u32 c), one thread per channel.
    unsafe { args.launch(launch_1d(c)) }.map_err(dev.error("column_sum_final_f32"))?;
    Ok(out)
}
