//! CUDA path for depthwise_conv2d: our kernels in
//! `kernels/src/depthwise_conv2d.cu` (forward, dx, partial dK), the bias and
//! the sums of partials from `kernels/src/elementwise.cu`. The kernel stays
//! in Keras's `[kh, kw, c, m]` layout on the GPU too: no transposes.

use super::cpu::Geometry;
use crate::cuda::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use crate::cuda::{launch_1d, CudaStorage};
use crate::error::{Error, Result};

/// The sizes as the kernels' `struct Geometry` holds them (13 ints).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct KernelGeometry([i32; 13]);

// SAFETY: a plain `#[repr(C)]` array of 13 `int`s, the layout of the kernels' struct.
unsafe impl DeviceRepr for KernelGeometry {}

/// Block rows of the partial-dK kernel: each sums a contiguous range of
/// output pixels (see the `.cu` file).
const DKERNEL_GROUPS: usize = 64;

fn kernel_geometry(g: &Geometry) -> Result<KernelGeometry> {
    let dims = [
        g.n, g.h, g.w, g.c, g.m, g.kh, g.kw, g.sh, g.sw, g.oh, g.ow, g.pad_top, g.pad_left,
    ];
    // Offsets within one image and channel products are computed in `int` in the kernels.
    let largest = (g.h * g.w * g.c)
        .max(g.oh * g.ow * g.cm())
        .max(g.kh * g.kw * g.cm());
    if largest > i32::MAX as usize {
        return Err(Error::unsupported(
            "depthwise_conv2d",
            format!("{g:?}: one image is too large for the GPU kernels' 32-bit offsets"),
        ));
    }
    Ok(KernelGeometry(dims.map(|d| d as i32)))
}

pub fn forward(
    x: &CudaStorage,
    kernel: &CudaStorage,
    bias: Option<&CudaStorage>,
    g: &Geometry,
) -> Result<CudaStorage> {
    let dev = x.device();
    let geom = kernel_geometry(g)?;
    let len = g.n * g.oh * g.ow * g.cm();
    let mut y = dev.alloc::<f32>(len)?;
    let f = dev.function("depthwise_conv2d", "depthwise_conv2d_forward_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x.slice())
        .arg(kernel.slice())
        .arg(&mut y)
        .arg(&geom);
    // SAFETY: (x [n,h,w,c], k [kh,kw,c,m], y [n,oh,ow,c·m], Geometry), grid-stride over y.
    unsafe { args.launch(launch_1d(len)) }.map_err(dev.error("depthwise_conv2d_forward_f32"))?;
    if let Some(b) = bias {
        let (n, c) = (len as u64, g.cm() as u32);
        let f = dev.function("elementwise", "add_bias_inplace_f32")?;
        let mut args = dev.stream().launch_builder(&f);
        args.arg(&mut y).arg(b.slice()).arg(&n).arg(&c);
        // SAFETY: (y [rows, c·m], bias [c·m], u64 n, u32 c·m); y holds n floats, n % c·m == 0.
        unsafe { args.launch(launch_1d(len)) }.map_err(dev.error("add_bias_inplace_f32"))?;
    }
    Ok(CudaStorage::new(y, dev))
}

/// The gradients `(dx, dkernel, dbias)` that `need` asks for.
pub fn backward(
    x: &CudaStorage,
    kernel: &CudaStorage,
    dy: &CudaStorage,
    g: &Geometry,
    need: (bool, bool, bool),
) -> Result<(
    Option<CudaStorage>,
    Option<CudaStorage>,
    Option<CudaStorage>,
)> {
    let dev = x.device();
    let geom = kernel_geometry(g)?;
    let dx = if need.0 {
        let len = g.n * g.h * g.w * g.c;
        let mut dx = dev.alloc::<f32>(len)?;
        let f = dev.function("depthwise_conv2d", "depthwise_conv2d_dx_f32")?;
        let mut args = dev.stream().launch_builder(&f);
        args.arg(kernel.slice())
            .arg(dy.slice())
            .arg(&mut dx)
            .arg(&geom);
        // SAFETY: (k [kh,kw,c,m], dy [n,oh,ow,c·m], dx [n,h,w,c], Geometry), grid-stride over dx.
        unsafe { args.launch(launch_1d(len)) }.map_err(dev.error("depthwise_conv2d_dx_f32"))?;
        Some(CudaStorage::new(dx, dev))
    } else {
        None
    };
    let dk = if need.1 {
        let taps = g.kh * g.kw * g.cm();
        let groups = (g.n * g.oh * g.ow).clamp(1, DKERNEL_GROUPS);
        let mut partial = dev.alloc::<f32>(groups * taps)?;
        let f = dev.function("depthwise_conv2d", "depthwise_conv2d_dkernel_partial_f32")?;
        let mut args = dev.stream().launch_builder(&f);
        args.arg(x.slice())
            .arg(dy.slice())
            .arg(&mut partial)
            .arg(&geom);
        let cfg = LaunchConfig {
            grid_dim: (taps.div_ceil(256) as u32, groups as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: (x, dy, partial [groups, kh·kw·c·m], Geometry), grid (ceil(taps/256), groups).
        unsafe { args.launch(cfg) }.map_err(dev.error("depthwise_conv2d_dkernel_partial_f32"))?;
        let mut dk = dev.alloc::<f32>(taps)?;
        let (groups32, taps32) = (groups as u32, taps as u32);
        let f = dev.function("elementwise", "column_sum_final_f32")?;
        let mut args = dev.stream().launch_builder(&f);
        args.arg(&partial).arg(&mut dk).arg(&groups32).arg(&taps32);
        // SAFETY: (partial [groups, taps], dk [taps], u32 groups, u32 taps), one thread per element.
        unsafe { args.launch(launch_1d(taps)) }.map_err(dev.error("column_sum_final_f32"))?;
        Some(CudaStorage::new(dk, dev))
    } else {
        None
    };
    let db = need
        .2
        .then(|| crate::ops::add::column_sum(dev, dy.slice(), g.n * g.oh * g.ow, g.cm()))
        .transpose()?
        .map(|d| CudaStorage::new(d, dev));
    Ok((dx, dk, db))
}
