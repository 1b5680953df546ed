//! CUDA path for avg_pool2d: `kernels/src/pool2d.cu`, padded cells left
//! out of each window's count as on the CPU. The backward gathers, for every
//! input cell, the shares of the windows holding it (no atomics).

use super::PoolGeometry;
use crate::cuda::cudarc::driver::PushKernelArg;
use crate::cuda::{launch_1d, CudaStorage};
use crate::error::Result;

pub fn forward(x: &CudaStorage, g: &PoolGeometry) -> Result<CudaStorage> {
    let dev = x.device();
    let outputs = g.n * g.oh * g.ow * g.c;
    let mut y = dev.alloc::<f32>(outputs)?;
    let sizes = g.kernel_args();
    let f = dev.function("pool2d", "avg_pool2d_forward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x.slice()).arg(&mut y);
    for s in &sizes {
        args.arg(s);
    }
    // SAFETY: (x [n,h,w,c], y [n,oh,ow,c], 12 ints as kernel_args), grid-stride over y.
    unsafe { args.launch(launch_1d(outputs)) }.map_err(dev.error("avg_pool2d_forward_f32"))?;
    Ok(CudaStorage::new(y, dev))
}

pub fn backward(dy: &CudaStorage, g: &PoolGeometry) -> Result<CudaStorage> {
    let dev = dy.device();
    let inputs = g.n * g.h * g.w * g.c;
    let mut dx = dev.alloc::<f32>(inputs)?;
    let sizes = g.kernel_args();
    let f = dev.function("pool2d", "avg_pool2d_backward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(dy.slice()).arg(&mut dx);
    for s in &sizes {
        args.arg(s);
    }
    // SAFETY: (dy [n,oh,ow,c], dx [n,h,w,c], 12 ints), grid-stride over dx.
    unsafe { args.launch(launch_1d(inputs)) }.map_err(dev.error("avg_pool2d_backward_f32"))?;
    Ok(CudaStorage::new(dx, dev))
}
