//! CUDA path for bilinear resize: `kernels/src/bilinear_resize.cu`, the
//! forward one thread per output, the backward a gather (one thread per
//! input, no atomics), and the fused uint8 -> resize -> caffe kernel that
//! `extract` uses on the GPU.

use crate::cuda::cudarc::driver::PushKernelArg;
use crate::cuda::{launch_1d, CudaDevice, CudaStorage};
use crate::error::Result;
use std::sync::Arc;

/// `n, h, w, c, out_h, out_w` as the kernels take them.
fn sizes([n, h, w, c]: [usize; 4], out_h: usize, out_w: usize) -> [i32; 6] {
    [n, h, w, c, out_h, out_w].map(|d| d as i32)
}

pub fn forward(
    x: &CudaStorage,
    dims: [usize; 4],
    out_h: usize,
    out_w: usize,
) -> Result<CudaStorage> {
    let dev = x.device();
    let total = dims[0] * out_h * out_w * dims[3];
    let mut y = dev.alloc::<f32>(total)?;
    let s = sizes(dims, out_h, out_w);
    let f = dev.function("bilinear_resize", "resize_bilinear_forward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x.slice()).arg(&mut y);
    for v in &s {
        args.arg(v);
    }
    // SAFETY: (x [n,h,w,c], y [n,out_h,out_w,c], 6 ints), grid-stride over y.
    unsafe { args.launch(launch_1d(total)) }.map_err(dev.error("resize_bilinear_forward_f32"))?;
    Ok(CudaStorage::new(y, dev))
}

pub fn backward(
    dy: &CudaStorage,
    dims: [usize; 4],
    out_h: usize,
    out_w: usize,
) -> Result<CudaStorage> {
    let dev = dy.device();
    let total = dims.iter().product();
    let mut dx = dev.alloc::<f32>(total)?;
    let s = sizes(dims, out_h, out_w);
    let f = dev.function("bilinear_resize", "resize_bilinear_backward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(dy.slice()).arg(&mut dx);
    for v in &s {
        args.arg(v);
    }
    // SAFETY: (dy [n,out_h,out_w,c], dx [n,h,w,c], 6 ints), grid-stride over dx.
    unsafe { args.launch(launch_1d(total)) }.map_err(dev.error("resize_bilinear_backward_f32"))?;
    Ok(CudaStorage::new(dx, dev))
}

/// uint8 RGB `[n, h, w, 3]` (host) to float BGR minus the ImageNet means,
/// resized to `[n, out_h, out_w, 3]` on `dev`.
pub fn u8_caffe(
    dev: &Arc<CudaDevice>,
    images: &[u8],
    [n, h, w]: [usize; 3],
    out_h: usize,
    out_w: usize,
) -> Result<CudaStorage> {
    let x = dev.upload(images)?;
    let pixels = n * out_h * out_w;
    let mut y = dev.alloc::<f32>(pixels * 3)?;
    let s = [n, h, w, out_h, out_w].map(|d| d as i32);
    let f = dev.function("bilinear_resize", "resize_bilinear_u8_caffe_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(&x).arg(&mut y);
    for v in &s {
        args.arg(v);
    }
    // SAFETY: (x u8 [n,h,w,3], y [n,out_h,out_w,3], 5 ints), grid-stride over output pixels.
    unsafe { args.launch(launch_1d(pixels)) }.map_err(dev.error("resize_bilinear_u8_caffe_f32"))?;
    Ok(CudaStorage::new(y, dev))
}
