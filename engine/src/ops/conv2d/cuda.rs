//! CUDA path for conv2d: cuDNN forward, backward-data and backward-filter
//! on NHWC tensors, the bias from `kernels/src/elementwise.cu`.
//!
//! **Filter layout.** Keras kernels stay HWIO `[kh, kw, c, o]` in the
//! parameter (on either device, so weights files and optimizers see one
//! layout). cuDNN's NHWC filter format is OHWI `[o, kh, kw, c]`. The kernel
//! is transposed to OHWI on the GPU (`transpose_f32` in
//! `kernels/src/conv2d.cu`) once: the first call keeps the OHWI filter with
//! the kernel's storage ([`CudaStorage::derived`], keyed by shape and
//! precision; storage never changes, and an optimizer step makes new
//! storage), and every later call reuses it. The filter gradient is
//! transposed back to HWIO after each backward. [`hwio_to_ohwi`] and
//! [`ohwi_to_hwio`] are the same permutation on the host, for tests.
//!
//! **Half precision** (f16, bf16; see `mod.rs` and the CPU reference
//! `half_precision.rs`). The input is rounded to 16 bits by `f32_to_f16` /
//! `f32_to_bf16` (`kernels/src/half_precision.cu`, the `half` crate's
//! rounding); the filter is kept in 16 bits with the kernel; cuDNN runs
//! with 16-bit input, filter and output descriptors and an f32 compute type
//! in the convolution descriptor (cuDNN's "pseudo-half" and "pseudo-bf16"
//! configurations: products accumulated in f32), on tensor cores
//! (`CUDNN_TENSOR_OP_MATH`: they are the point of 16-bit operands). Its
//! 16-bit output is widened back to f32 (`f16_to_f32` / `bf16_to_f32`) and
//! the f32 bias added. bf16 convolutions need compute capability 8.0
//! (Ampere) or newer; on an older GPU this is an error saying so.
//!
//! **Padding.** cuDNN pads symmetrically (`pad_top` rows above and below).
//! TensorFlow's 'same' puts an odd extra row/column at the bottom/right, so
//! when the output needs more rows than symmetric padding gives, the input
//! is first zero-padded at the bottom/right by the difference (the
//! `zero_pad2d` kernel), and the backward pass crops dx back.
//!
//! **Algorithms and math.** Each direction (forward, backward-data,
//! backward-filter) of each geometry and precision gets a cuDNN plan on
//! first use (`cudnn_plan.rs`: descriptors, algorithm, math type, workspace
//! size), kept per device and reused by every later call. The algorithm is
//! the best-ranked one `algorithm.rs`'s rules allow: ranked by cuDNN's
//! heuristic by default, by timing them with `THAW_CUDNN_BENCHMARK=1`; f32
//! convolutions on FMA units (no TF32 tensor cores) unless
//! `THAW_ALLOW_TF32=1`; deterministic algorithms only unless
//! `THAW_CUDNN_DETERMINISTIC=0`. The workspace is the device's shared
//! buffer, grown when an algorithm needs more.

use super::algorithm::{AlgorithmKey, Direction};
use super::cpu::{ConvGeometry, Needed};
use super::cudnn_plan::{self, Tensors};
use crate::cuda::cudarc::driver::{
    CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, PushKernelArg, ValidAsZeroBits,
};
use crate::cuda::{launch_1d, CudaDevice, CudaStorage, DerivedKey, DeviceBuffer};
use crate::error::{Error, Result};
use crate::ops::zero_pad2d::PadGeometry;
use crate::precision::Precision;
use std::sync::Arc;

const OP: &str = "conv2d";

/// HWIO `[kh, kw, c, o]` to OHWI `[o, kh, kw, c]`, on the host: seen as
/// matrices, `[kh·kw·c, o]` to its transpose `[o, kh·kw·c]`.
pub fn hwio_to_ohwi(kernel: &[f32], [kh, kw, c, o]: [usize; 4]) -> Vec<f32> {
    transpose(kernel, kh * kw * c, o)
}

/// OHWI `[o, kh, kw, c]` back to HWIO `[kh, kw, c, o]` (the inverse of [`hwio_to_ohwi`]).
pub fn ohwi_to_hwio(kernel: &[f32], [kh, kw, c, o]: [usize; 4]) -> Vec<f32> {
    transpose(kernel, o, kh * kw * c)
}

fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|o| x[(o % rows) * cols + o / rows])
        .collect()
}

/// `x` `[rows, cols]` transposed on the GPU (`transpose_f32`).
fn transpose_on_gpu(
    dev: &Arc<CudaDevice>,
    x: &CudaSlice<f32>,
    rows: usize,
    cols: usize,
) -> Result<CudaSlice<f32>> {
    let mut y = dev.alloc::<f32>(rows * cols)?;
    let (r, c) = (rows as u32, cols as u32);
    let f = dev.function("conv2d", "transpose_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x).arg(&mut y).arg(&r).arg(&c);
    // SAFETY: (x [rows, cols], y [cols, rows], u32 rows, u32 cols), grid-stride over y.
    unsafe { args.launch(launch_1d(rows * cols)) }.map_err(dev.error("transpose_f32"))?;
    Ok(y)
}

/// The input as cuDNN sees it: `x` itself, or `x` with extra zero rows and
/// columns at the bottom/right (see the module docs).
struct Padded {
    /// The padding added before cuDNN, if any.
    extra: Option<PadGeometry>,
    /// Height and width cuDNN sees.
    h: usize,
    w: usize,
}

fn padded(g: &ConvGeometry) -> Result<Padded> {
    // Rows the output needs in total, against what symmetric padding gives.
    let need_h = (g.oh - 1) * g.sh + g.kh;
    let need_w = (g.ow - 1) * g.sw + g.kw;
    let extra_h = need_h.saturating_sub(g.h + 2 * g.pad_top);
    let extra_w = need_w.saturating_sub(g.w + 2 * g.pad_left);
    let (h, w) = (g.h + extra_h, g.w + extra_w);
    // cuDNN's own output size for the symmetric padding must be ours.
    let cudnn_oh = (h + 2 * g.pad_top - g.kh) / g.sh + 1;
    let cudnn_ow = (w + 2 * g.pad_left - g.kw) / g.sw + 1;
    if (cudnn_oh, cudnn_ow) != (g.oh, g.ow) {
        return Err(Error::unsupported(
            OP,
            format!(
                "on the GPU, padding with more rows/columns above/left than below/right is not \
                 supported (output {}x{}, cuDNN would give {cudnn_oh}x{cudnn_ow}); pad with \
                 zero_pad2d first, or run on the CPU",
                g.oh, g.ow
            ),
        ));
    }
    let extra = (extra_h > 0 || extra_w > 0).then_some(PadGeometry {
        n: g.n,
        h: g.h,
        w: g.w,
        c: g.c,
        top: 0,
        left: 0,
        ph: h,
        pw: w,
    });
    Ok(Padded { extra, h, w })
}

/// Runs cuDNN's `direction` of the convolution `g` (input as padded in `p`)
/// on `tensors` (see [`Tensors`]: the direction writes one of the three), with
/// the plan for this geometry, made on first use.
fn run_cudnn(
    dev: &Arc<CudaDevice>,
    g: &ConvGeometry,
    p: &Padded,
    precision: Precision,
    direction: Direction,
    tensors: Tensors,
) -> Result<()> {
    let key = AlgorithmKey {
        direction,
        input: [g.n, p.h, p.w, g.c],
        filter: [g.o, g.kh, g.kw, g.c],
        stride: [g.sh, g.sw],
        padding: [g.pad_top, g.pad_left],
        precision,
        allow_tf32: dev.allow_tf32(),
        policy: dev.conv_algorithm_policy(),
    };
    dev.with_cudnn(|state| {
        let handle = state.handle.raw();
        // SAFETY (both calls): the callers pass live buffers of the sizes and
        // layouts the key describes.
        let plan = unsafe { cudnn_plan::plan(dev, handle, &mut state.conv_plans, &key, &tensors) }?;
        let workspace = state
            .workspace
            .at_least(dev.stream(), plan.workspace_bytes)?;
        unsafe { cudnn_plan::run(handle, plan, &tensors, workspace, dev.stream()) }.map_err(|e| {
            Error::Cuda(format!(
                "conv2d: cuDNN {direction:?} with {:?} on cuda:{}: {e:?} (for {key:?})",
                plan.algorithm,
                dev.info().ordinal
            ))
        })
    })
}

/// The device address of a buffer cuDNN reads. (All of thaw's GPU work is
/// on one stream with cudarc's event tracking off, see `cuda/context.rs`, so
/// the address is all cuDNN needs.)
fn address<T>(dev: &CudaDevice, buffer: &CudaSlice<T>) -> u64 {
    buffer.device_ptr(dev.stream()).0
}

/// The device address of a buffer cuDNN writes.
fn address_mut<T>(dev: &CudaDevice, buffer: &mut CudaSlice<T>) -> u64 {
    buffer.device_ptr_mut(dev.stream()).0
}

/// `x` padded for cuDNN (a new buffer), or None when no padding is needed.
fn pad_input(x: &CudaStorage, p: &Padded) -> Result<Option<CudaStorage>> {
    p.extra
        .as_ref()
        .map(|g| crate::ops::zero_pad2d::cuda_pad(x, g))
        .transpose()
}

/// The kernel as cuDNN's OHWI filter in `precision`: made on the first call
/// (transposed, then rounded to 16 bits for f16/bf16) and kept with the
/// kernel's storage for every later one (module docs).
fn ohwi_filter(
    kernel: &CudaStorage,
    g: &ConvGeometry,
    precision: Precision,
) -> Result<Arc<DeviceBuffer>> {
    let key = DerivedKey {
        what: "conv2d OHWI filter",
        dims: [g.kh, g.kw, g.c, g.o],
        precision,
    };
    kernel.derived(key, || {
        let dev = kernel.device();
        let ohwi = transpose_on_gpu(dev, kernel.slice(), g.kh * g.kw * g.c, g.o)?;
        Ok(match precision {
            Precision::F32 => DeviceBuffer::F32(ohwi),
            Precision::F16 => DeviceBuffer::F16(convert(dev, &ohwi, "f32_to_f16")?),
            Precision::Bf16 => DeviceBuffer::Bf16(convert(dev, &ohwi, "f32_to_bf16")?),
        })
    })
}

/// `x` converted element by element by `function` of
/// `kernels/src/half_precision.cu` (f32 to 16 bits, or back).
fn convert<A: DeviceRepr, B: DeviceRepr + ValidAsZeroBits>(
    dev: &Arc<CudaDevice>,
    x: &CudaSlice<A>,
    function: &str,
) -> Result<CudaSlice<B>> {
    let mut y = dev.alloc::<B>(x.len())?;
    let n = x.len() as u64;
    let f = dev.function("half_precision", function)?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x).arg(&mut y).arg(&n);
    // SAFETY: (x [n], y [n], u64 n) of the sizes the kernel's 16-bit/f32 types
    // need (callers pair f32 with f16/bf16 as the function's name says), grid-stride.
    unsafe { args.launch(launch_1d(x.len())) }.map_err(dev.error(function))?;
    Ok(y)
}

/// The forward convolution by cuDNN, input, filter and output in `T`
/// (f32, or the 16-bit type of `precision`).
fn convolve<T: DeviceRepr + ValidAsZeroBits>(
    dev: &Arc<CudaDevice>,
    g: &ConvGeometry,
    p: &Padded,
    precision: Precision,
    x: &CudaSlice<T>,
    filter: &CudaSlice<T>,
) -> Result<CudaSlice<T>> {
    let mut y = dev.alloc::<T>(g.n * g.oh * g.ow * g.o)?;
    let tensors = Tensors {
        x: address(dev, x),
        filter: address(dev, filter),
        y: address_mut(dev, &mut y),
    };
    run_cudnn(dev, g, p, precision, Direction::Forward, tensors)?;
    Ok(y)
}

/// The 16-bit forward (module docs): f32 input rounded to `T`, cuDNN in `T`
/// with f32 accumulation on tensor cores, the output widened to f32.
fn convolve_16bit<T: DeviceRepr + ValidAsZeroBits>(
    dev: &Arc<CudaDevice>,
    g: &ConvGeometry,
    p: &Padded,
    precision: Precision,
    x: &CudaSlice<f32>,
    filter: &CudaSlice<T>,
    (narrow, widen): (&str, &str),
) -> Result<CudaSlice<f32>> {
    let x16 = convert::<f32, T>(dev, x, narrow)?;
    // A cuDNN build or GPU without this 16-bit configuration answers
    // NOT_SUPPORTED somewhere in here: say what to do about it.
    let y16 = convolve(dev, g, p, precision, &x16, filter).map_err(|e| {
        Error::Cuda(format!(
            "{e} (a 16-bit convolution, {narrow}; if this GPU or cuDNN does not support it, \
             use --precision f32)"
        ))
    })?;
    convert::<T, f32>(dev, &y16, widen)
}

pub fn forward(
    precision: Precision,
    x: &CudaStorage,
    kernel: &CudaStorage,
    bias: Option<&CudaStorage>,
    g: &ConvGeometry,
) -> Result<CudaStorage> {
    let dev = x.device();
    if precision == Precision::Bf16 && dev.info().compute_capability.0 < 8 {
        return Err(Error::unsupported(
            OP,
            format!(
                "bf16 convolutions need a GPU of compute capability 8.0 (Ampere) or newer; \
                 {} is {}.{}: use --precision f16 or f32",
                dev.info().name,
                dev.info().compute_capability.0,
                dev.info().compute_capability.1
            ),
        ));
    }
    let p = padded(g)?;
    let x_padded = pad_input(x, &p)?;
    let x_in = x_padded.as_ref().unwrap_or(x).slice();
    let filter = ohwi_filter(kernel, g, precision)?;
    let mut y = match &*filter {
        DeviceBuffer::F32(f) => convolve(dev, g, &p, Precision::F32, x_in, f)?,
        DeviceBuffer::F16(f) => {
            let names = ("f32_to_f16", "f16_to_f32");
            convolve_16bit(dev, g, &p, Precision::F16, x_in, f, names)?
        }
        DeviceBuffer::Bf16(f) => {
            let names = ("f32_to_bf16", "bf16_to_f32");
            convolve_16bit(dev, g, &p, Precision::Bf16, x_in, f, names)?
        }
    };
    if let Some(b) = bias {
        let len = y.len();
        let (n, c) = (len as u64, g.o as u32);
        let f = dev.function("elementwise", "add_bias_inplace_f32")?;
        let mut args = dev.stream().launch_builder(&f);
        args.arg(&mut y).arg(b.slice()).arg(&n).arg(&c);
        // SAFETY: (y [rows, o], bias [o], u64 n, u32 c); y holds n floats, n % o == 0.
        unsafe { args.launch(launch_1d(len)) }.map_err(dev.error("add_bias_inplace_f32"))?;
    }
    Ok(CudaStorage::new(y, dev))
}

/// The gradients `(dx, dkernel, dbias)` that `need` asks for; dkernel is HWIO.
pub fn backward(
    x: &CudaStorage,
    kernel: &CudaStorage,
    dy: &CudaStorage,
    g: &ConvGeometry,
    Needed {
        dx: need_dx,
        dkernel: need_dk,
        dbias: need_db,
    }: Needed,
) -> Result<(
    Option<CudaStorage>,
    Option<CudaStorage>,
    Option<CudaStorage>,
)> {
    let dev = x.device();
    let p = padded(g)?;
    let k = g.kh * g.kw * g.c;
    let mut dx_padded = None;
    let mut dk_ohwi = None;
    if need_dx || need_dk {
        let x_padded = if need_dk { pad_input(x, &p)? } else { None };
        let x_in = x_padded.as_ref().unwrap_or(x);
        let filter = ohwi_filter(kernel, g, Precision::F32)?;
        let DeviceBuffer::F32(filter) = &*filter else {
            return Err(Error::Cuda(
                "conv2d: the cached f32 filter is not f32 (a bug in the filter cache's keys)"
                    .into(),
            ));
        };
        if need_dx {
            let mut dx = dev.alloc::<f32>(g.n * p.h * p.w * g.c)?;
            let tensors = Tensors {
                x: address_mut(dev, &mut dx),
                filter: address(dev, filter),
                y: address(dev, dy.slice()),
            };
            run_cudnn(dev, g, &p, Precision::F32, Direction::BackwardData, tensors)?;
            dx_padded = Some(CudaStorage::new(dx, dev));
        }
        if need_dk {
            let mut dw = dev.alloc::<f32>(g.o * k)?;
            let tensors = Tensors {
                x: address(dev, x_in.slice()),
                filter: address_mut(dev, &mut dw),
                y: address(dev, dy.slice()),
            };
            run_cudnn(
                dev,
                g,
                &p,
                Precision::F32,
                Direction::BackwardFilter,
                tensors,
            )?;
            dk_ohwi = Some(dw);
        }
    }
    let dx = match (dx_padded, &p.extra) {
        (Some(d), Some(pad)) => Some(crate::ops::zero_pad2d::cuda_crop(&d, pad)?),
        (d, _) => d,
    };
    let dk = dk_ohwi
        .map(|d| transpose_on_gpu(dev, &d, g.o, k).map(|t| CudaStorage::new(t, dev)))
        .transpose()?;
    let db = need_db
        .then(|| crate::ops::add::column_sum(dev, dy.slice(), g.n * g.oh * g.ow, g.o))
        .transpose()?
        .map(|d| CudaStorage::new(d, dev));
    Ok((dx, dk, db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwio_and_ohwi_are_the_same_weights_in_two_orders() {
        let (kh, kw, c, o) = (3, 2, 4, 5);
        let hwio: Vec<f32> = (0..kh * kw * c * o).map(|i| i as f32).collect();
        let ohwi = hwio_to_ohwi(&hwio, [kh, kw, c, o]);
        for ky in 0..kh {
            for kx in 0..kw {
                for ci in 0..c {
                    for co in 0..o {
                        let at_hwio = ((ky * kw + kx) * c + ci) * o + co;
                        let at_ohwi = ((co * kh + ky) * kw + kx) * c + ci;
                        assert_eq!(ohwi[at_ohwi], hwio[at_hwio]);
                    }
                }
            }
        }
        assert_eq!(ohwi_to_hwio(&ohwi, [kh, kw, c, o]), hwio);
    }

    fn geometry(h: usize, k: usize, s: usize, pad_top: usize, oh: usize) -> ConvGeometry {
        ConvGeometry {
            n: 1,
            h,
            w: h,
            c: 1,
            kh: k,
            kw: k,
            o: 1,
            sh: s,
            sw: s,
            oh,
            ow: oh,
            pad_top,
            pad_left: pad_top,
        }
    }

    #[test]
    fn asymmetric_same_padding_adds_rows_at_the_bottom_for_cudnn() {
        // 3x3 'same' at stride 1: symmetric, nothing added.
        let p = padded(&geometry(7, 3, 1, 1, 7)).unwrap();
        assert!(p.extra.is_none());
        // 3x3 'same' at stride 2 on 8 rows: TF pads 0 above and 1 below.
        let p = padded(&geometry(8, 3, 2, 0, 4)).unwrap();
        assert_eq!((p.h, p.w), (9, 9));
        // 7x7 'valid' at stride 2 on 10 rows: the last row is unused, nothing added.
        let p = padded(&geometry(10, 7, 2, 0, 2)).unwrap();
        assert!(p.extra.is_none());
        // More padding above than below cannot be expressed: a clear error.
        let e = padded(&geometry(5, 3, 1, 1, 4)).err().unwrap().to_string();
        assert!(e.contains("zero_pad2d"), "{e}");
    }
}
