//! CUDA path for dropout: `kernels/src/dropout.cu`, whose generator is
//! `engine::rng` written in C; with the rate and scale passed as the same
//! f32 values the CPU uses, masks and outputs equal the CPU's bit for bit.

use crate::cuda::cudarc::driver::PushKernelArg;
use crate::cuda::{launch_1d, CudaStorage};
use crate::error::Result;

/// v · mask / (1 − rate), with `dropout_forward_f32` (`backward = false`)
/// or `dropout_backward_f32` (the same math on dy).
pub fn apply(
    v: &CudaStorage,
    rate: f64,
    seed: u64,
    stream: u64,
    backward: bool,
) -> Result<CudaStorage> {
    let dev = v.device();
    let n = v.len();
    let mut out = dev.alloc::<f32>(n)?;
    let name = if backward {
        "dropout_backward_f32"
    } else {
        "dropout_forward_f32"
    };
    // The CPU's f32 values: `rate as f32` and `T::from_f64(1 / (1 − rate))`.
    let (n64, rate32, scale32) = (n as u64, rate as f32, (1.0 / (1.0 - rate)) as f32);
    let f = dev.function("dropout", name)?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(v.slice())
        .arg(&mut out)
        .arg(&n64)
        .arg(&seed)
        .arg(&stream)
        .arg(&rate32)
        .arg(&scale32);
    // SAFETY: (in, out, u64 n, u64 seed, u64 stream, f32 rate, f32 scale); both buffers hold n.
    unsafe { args.launch(launch_1d(n)) }.map_err(dev.error(name))?;
    Ok(CudaStorage::new(out, dev))
}
