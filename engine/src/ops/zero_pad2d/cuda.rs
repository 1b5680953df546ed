//! CUDA path for zero_pad2d: `kernels/src/zero_pad2d.cu`, one thread per
//! output element (pad) or per input element (crop, the backward).

use super::cpu::PadGeometry;
use crate::cuda::cudarc::driver::PushKernelArg;
use crate::cuda::{launch_1d, CudaStorage};
use crate::error::Result;

/// `n, h, w, c, top, left, ph, pw`, as the kernels take them.
fn kernel_args(g: &PadGeometry) -> [i32; 8] {
    [g.n, g.h, g.w, g.c, g.top, g.left, g.ph, g.pw].map(|d| d as i32)
}

pub fn pad(x: &CudaStorage, g: &PadGeometry) -> Result<CudaStorage> {
    let dev = x.device();
    let total = g.n * g.ph * g.pw * g.c;
    let mut y = dev.alloc::<f32>(total)?;
    let sizes = kernel_args(g);
    let f = dev.function("zero_pad2d", "zero_pad2d_forward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x.slice()).arg(&mut y);
    for s in &sizes {
        args.arg(s);
    }
    // SAFETY: (x [n,h,w,c], y [n,ph,pw,c], 8 ints), grid-stride over y.
    unsafe { args.launch(launch_1d(total)) }.map_err(dev.error("zero_pad2d_forward_f32"))?;
    Ok(CudaStorage::new(y, dev))
}

pub fn crop(dy: &CudaStorage, g: &PadGeometry) -> Result<CudaStorage> {
    let dev = dy.device();
    let total = g.n * g.h * g.w * g.c;
    let mut dx = dev.alloc::<f32>(total)?;
    let sizes = kernel_args(g);
    let f = dev.function("zero_pad2d", "zero_pad2d_backward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(dy.slice()).arg(&mut dx);
    for s in &sizes {
        args.arg(s);
    }
    // SAFETY: (dy [n,ph,pw,c], dx [n,h,w,c], 8 ints), grid-stride over dx.
    unsafe { args.launch(launch_1d(total)) }.map_err(dev.error("zero_pad2d_backward_f32"))?;
    Ok(CudaStorage::new(dx, dev))
}
