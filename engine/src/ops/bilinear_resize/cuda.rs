//! CUDA path for bilinear resize: `kernels/src/bilinear_resize.cu`, the
//! forward one thread per output, the backward a gather (one thread per
//! input, no atomics), and the fused uint8 -> resize -> preprocessing kernel
//! that `extract` uses on the GPU.

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

/// uint8 RGB `[n, h, w, 3]` (host) resized to `[n, out_h, out_w, 3]` on
/// `dev`, each output channel mapped by `map` (a preprocessing mode).
pub fn u8_mapped(
    dev: &Arc<CudaDevice>,
    images: &[u8],
    [n, h, w]: [usize; 3],
    out_h: usize,
    out_w: usize,
    map: &super::PixelMap,
) -> Result<CudaStorage> {
    let x = dev.upload(images)?;
    let pixels = n * out_h * out_w;
    let mut y = dev.alloc::<f32>(pixels * 3)?;
    let s = [n, h, w, out_h, out_w].map(|d| d as i32);
    let source = map.source.map(|c| c as i32);
    let (divisor, offset) = (map.divisor.map(|v| v as f32), map.offset.map(|v| v as f32));
    let f = dev.function("bilinear_resize", "resize_bilinear_u8_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(&x).arg(&mut y);
    for v in s.iter().chain(&source) {
        args.arg(v);
    }
    for v in divisor.iter().chain(&offset) {
        args.arg(v);
    }
    // SAFETY: (x u8 [n,h,w,3], y [n,out_h,out_w,3], 5 + 3 ints, 6 floats), grid-stride
    // over output pixels; every source channel is 0..=2 (checked by resize_u8).
    unsafe { args.launch(launch_1d(pixels)) }.map_err(dev.error("resize_bilinear_u8_f32"))?;
    Ok(CudaStorage::new(y, dev))
}
