//! CUDA path for ReLU6: `relu6_forward_f32` / `relu6_backward_f32` from
//! `kernels/src/elementwise.cu`, one thread per element.

use crate::cuda::cudarc::driver::PushKernelArg;
use crate::cuda::{launch_1d, CudaStorage};
use crate::error::Result;

pub fn forward(x: &CudaStorage) -> Result<CudaStorage> {
    let dev = x.device();
    let n = x.len();
    let mut y = dev.alloc::<f32>(n)?;
    let f = dev.function("elementwise", "relu6_forward_f32")?;
    let n64 = n as u64;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x.slice()).arg(&mut y).arg(&n64);
    // SAFETY: (const float* x, float* y, u64 n); both buffers hold n floats.
    unsafe { args.launch(launch_1d(n)) }.map_err(dev.error("relu6_forward_f32"))?;
    Ok(CudaStorage::new(y, dev))
}

pub fn backward(x: &CudaStorage, dy: &CudaStorage) -> Result<CudaStorage> {
    let dev = x.device();
    let n = x.len();
    let mut dx = dev.alloc::<f32>(n)?;
    let f = dev.function("elementwise", "relu6_backward_f32")?;
    let n64 = n as u64;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x.slice()).arg(dy.slice()).arg(&mut dx).arg(&n64);
    // SAFETY: (const float* x, const float* dy, float* dx, u64 n); all hold n floats.
    unsafe { args.launch(launch_1d(n)) }.map_err(dev.error("relu6_backward_f32"))?;
    Ok(CudaStorage::new(dx, dev))
}
