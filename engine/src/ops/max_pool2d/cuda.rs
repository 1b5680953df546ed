//! CUDA path for max_pool2d: `kernels/src/pool2d.cu`. The forward also
//! writes, per output, the input position of its first maximum (the CPU's
//! tie rule); the backward gathers, for every input cell, the gradients of
//! the windows whose maximum it was (no atomics: deterministic).

use super::PoolGeometry;
use crate::cuda::cudarc::driver::{CudaSlice, PushKernelArg};
use crate::cuda::{launch_1d, CudaStorage};
use crate::error::Result;

/// The maxima `[n, oh, ow, c]` and the position (`iy·w + ix`) each came from.
pub fn forward(x: &CudaStorage, g: &PoolGeometry) -> Result<(CudaStorage, CudaSlice<i32>)> {
    let dev = x.device();
    let outputs = g.n * g.oh * g.ow * g.c;
    let mut y = dev.alloc::<f32>(outputs)?;
    let mut argmax = dev.alloc::<i32>(outputs)?;
    let sizes = g.kernel_args();
    let f = dev.function("pool2d", "max_pool2d_forward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x.slice()).arg(&mut y).arg(&mut argmax);
    for s in &sizes {
        args.arg(s);
    }
    // SAFETY: (x [n,h,w,c], y and argmax [n,oh,ow,c], 12 ints as kernel_args), grid-stride over y.
    unsafe { args.launch(launch_1d(outputs)) }.map_err(dev.error("max_pool2d_forward_f32"))?;
    Ok((CudaStorage::new(y, dev), argmax))
}

pub fn backward(
    dy: &CudaStorage,
    argmax: &CudaSlice<i32>,
    g: &PoolGeometry,
) -> Result<CudaStorage> {
    let dev = dy.device();
    let inputs = g.n * g.h * g.w * g.c;
    let mut dx = dev.alloc::<f32>(inputs)?;
    let sizes = g.kernel_args();
    let f = dev.function("pool2d", "max_pool2d_backward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(dy.slice()).arg(argmax).arg(&mut dx);
    for s in &sizes {
        args.arg(s);
    }
    // SAFETY: (dy and argmax [n,oh,ow,c], dx [n,h,w,c], 12 ints), grid-stride over dx.
    unsafe { args.launch(launch_1d(inputs)) }.map_err(dev.error("max_pool2d_backward_f32"))?;
    Ok(CudaStorage::new(dx, dev))
}
