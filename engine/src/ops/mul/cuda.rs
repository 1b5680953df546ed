//! CUDA path for mul, from `kernels/src/elementwise.cu`, with the layouts of
//! the CPU's [`Plan`]: same shapes is `mul_f32`; an operand repeating along
//! the last axes (a per-channel scale `[n, h, w, c] · [c]`) is
//! `mul_repeat_f32`; any other broadcast is `mul_broadcast_f32`, add's
//! general broadcast kernel with a product.
//!
//! Backward: a full-size operand's gradient is dy · other, read at the same
//! positions (`mul_f32`, or `mul_repeat_f32` when the other operand repeats);
//! a broadcast operand's is the sum of dy · other over the positions that
//! read it (`broadcast_reduce_product_f32`, f64 sums in output order). Every
//! product rounds once as on the CPU, and the sums run in the CPU's order,
//! so forward and gradients equal the CPU's bit for bit.

use crate::cuda::cudarc::driver::PushKernelArg;
use crate::cuda::{launch_1d, CudaStorage};
use crate::error::Result;
use crate::ops::add::broadcast::{Layout, Plan};
use crate::ops::add::{broadcast_forward, broadcast_reduce};

/// y = a · b over the broadcast shape.
pub fn forward(a: &CudaStorage, b: &CudaStorage, plan: &Plan) -> Result<CudaStorage> {
    match plan.layout {
        Layout::Same => same_shapes(a, b),
        Layout::Repeats(side) => {
            let (full, repeating) = if side == 0 { (b, a) } else { (a, b) };
            repeat(full, repeating)
        }
        Layout::Strided => broadcast_forward("mul_broadcast_f32", "mul", a, b, plan),
    }
}

/// d(operand `side`) = dy · (the other operand), summed over the dims that
/// operand was broadcast along.
pub fn backward(
    dy: &CudaStorage,
    other: &CudaStorage,
    plan: &Plan,
    side: usize,
    len: usize,
) -> Result<CudaStorage> {
    match plan.layout {
        Layout::Same => same_shapes(dy, other),
        // The full-size operand: the other one repeats along dy as in the forward.
        Layout::Repeats(repeating) if repeating != side => repeat(dy, other),
        _ => broadcast_reduce("mul", dy, Some(other), plan, side, len),
    }
}

/// `mul_f32`: y = a · b for two buffers of one length.
fn same_shapes(a: &CudaStorage, b: &CudaStorage) -> Result<CudaStorage> {
    let dev = a.device();
    let n = a.len();
    let mut y = dev.alloc::<f32>(n)?;
    let n64 = n as u64;
    let f = dev.function("elementwise", "mul_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(a.slice()).arg(b.slice()).arg(&mut y).arg(&n64);
    // SAFETY: (const float* a, const float* b, float* y, u64 n); all hold n floats.
    unsafe { args.launch(launch_1d(n)) }.map_err(dev.error("mul_f32"))?;
    Ok(CudaStorage::new(y, dev))
}

/// `mul_repeat_f32`: y[i] = full[i] · repeating[i % c], c = repeating's length.
fn repeat(full: &CudaStorage, repeating: &CudaStorage) -> Result<CudaStorage> {
    let dev = full.device();
    let n = full.len();
    let mut y = dev.alloc::<f32>(n)?;
    let (n64, c) = (n as u64, repeating.len() as u32);
    debug_assert!(n == 0 || (c > 0 && n.is_multiple_of(c as usize)));
    let f = dev.function("elementwise", "mul_repeat_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(full.slice())
        .arg(repeating.slice())
        .arg(&mut y)
        .arg(&n64)
        .arg(&c);
    // SAFETY: (x, s, y, u64 n, u32 c); x and y hold n floats, s c, n % c == 0.
    unsafe { args.launch(launch_1d(n)) }.map_err(dev.error("mul_repeat_f32"))?;
    Ok(CudaStorage::new(y, dev))
}
