//! CUDA path for global pooling: `kernels/src/global_pool.cu`. The max
//! forward also writes, per output, the position of its first maximum; the
//! backward closure keeps those indices instead of searching again.

use crate::cuda::cudarc::driver::{CudaSlice, PushKernelArg};
use crate::cuda::{launch_1d, CudaStorage};
use crate::error::Result;

type Dims = [usize; 4];

/// `(n, h·w, c)` as the kernels take them.
fn sizes([n, h, w, c]: Dims) -> (u32, u32, u32) {
    (n as u32, (h * w) as u32, c as u32)
}

pub fn avg_forward(x: &CudaStorage, d: Dims) -> Result<CudaStorage> {
    let dev = x.device();
    let (n, hw, c) = sizes(d);
    let mut y = dev.alloc::<f32>(d[0] * d[3])?;
    let f = dev.function("global_pool", "global_avg_pool_forward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x.slice()).arg(&mut y).arg(&n).arg(&hw).arg(&c);
    // SAFETY: (x [n, hw, c], y [n, c], u32 n, hw, c), grid-stride over the outputs.
    unsafe { args.launch(launch_1d(d[0] * d[3])) }.map_err(dev.error("global_avg_pool"))?;
    Ok(CudaStorage::new(y, dev))
}

pub fn avg_backward(dy: &CudaStorage, d: Dims) -> Result<CudaStorage> {
    let dev = dy.device();
    let (n, hw, c) = sizes(d);
    let total = d.iter().product();
    let mut dx = dev.alloc::<f32>(total)?;
    let f = dev.function("global_pool", "global_avg_pool_backward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(dy.slice()).arg(&mut dx).arg(&n).arg(&hw).arg(&c);
    // SAFETY: (dy [n, c], dx [n, hw, c], u32 n, hw, c), grid-stride over dx.
    unsafe { args.launch(launch_1d(total)) }.map_err(dev.error("global_avg_pool backward"))?;
    Ok(CudaStorage::new(dx, dev))
}

/// The maxima `[n, c]` and the position (`iy·w + ix`) each came from.
pub fn max_forward(x: &CudaStorage, d: Dims) -> Result<(CudaStorage, CudaSlice<i32>)> {
    let dev = x.device();
    let (n, hw, c) = sizes(d);
    let mut y = dev.alloc::<f32>(d[0] * d[3])?;
    let mut argmax = dev.alloc::<i32>(d[0] * d[3])?;
    let f = dev.function("global_pool", "global_max_pool_forward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x.slice())
        .arg(&mut y)
        .arg(&mut argmax)
        .arg(&n)
        .arg(&hw)
        .arg(&c);
    // SAFETY: (x [n, hw, c], y [n, c], argmax [n, c], u32 n, hw, c), grid-stride over the outputs.
    unsafe { args.launch(launch_1d(d[0] * d[3])) }.map_err(dev.error("global_max_pool"))?;
    Ok((CudaStorage::new(y, dev), argmax))
}

pub fn max_backward(dy: &CudaStorage, argmax: &CudaSlice<i32>, d: Dims) -> Result<CudaStorage> {
    let dev = dy.device();
    let (n, hw, c) = sizes(d);
    let total = d.iter().product();
    let mut dx = dev.alloc::<f32>(total)?;
    let f = dev.function("global_pool", "global_max_pool_backward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(dy.slice())
        .arg(argmax)
        .arg(&mut dx)
        .arg(&n)
        .arg(&hw)
        .arg(&c);
    // SAFETY: (dy [n, c], argmax [n, c], dx [n, hw, c], u32 n, hw, c), grid-stride over dx.
    unsafe { args.launch(launch_1d(total)) }.map_err(dev.error("global_max_pool backward"))?;
    Ok(CudaStorage::new(dx, dev))
}
