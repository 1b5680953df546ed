//! Bilinear resize of NHWC images `[n, h, w, c]` to `[n, out_h, out_w, c]`
//! with half-pixel centres: exactly `tf.image.resize(method='bilinear',
//! antialias=False)` and `keras.layers.Resizing(interpolation='bilinear')`
//! when upsampling (how 32 px CIFAR images are brought to a backbone's size).
//!
//! Along each axis, output index `d` samples the input at
//!
//! ```text
//! s = (d + 0.5) · in/out − 0.5,  clamped below at 0
//! lo = floor(s),  hi = min(lo + 1, in − 1),  t = s − lo
//! ```
//!
//! and `y = (1−tᵣ)·((1−t_q)·x[lo,lo] + t_q·x[lo,hi]) + tᵣ·((1−t_q)·x[hi,lo] + t_q·x[hi,hi])`.
//! When downsampling this is the same formula (no antialiasing filter).
//!
//! Backward: y is linear in x, so dx[r, q] = Σ dy[i, j] · (weight of tap
//! (r, q) in output (i, j)): each dy element is scattered to its four taps.
//! The per-row and per-column (lo, hi, t) tables are built once per call.
//!
//! Tests: gradient check `bilinear_resize_up_and_down`
//! (`tests/tests/gradcheck.rs`); reference against Keras
//! `bilinear_resize_matches_keras_resizing` (`tests/tests/reference_ops.rs`);
//! GPU parity cases "bilinear_resize up 5x7 -> 11x13" and "bilinear_resize down
//! 9x8 -> 4x5" (`tests/tests/cuda_parity.rs`), and
//! `fused_uint8_input_matches_resize_then_preprocess_in_every_mode`.

mod cpu;
mod cuda;

use crate::autograd::record;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::tensor::{CpuStorage, Device, Storage, Tensor};

/// Bilinear resize of NHWC images with half-pixel centres (tf.image.resize,
/// see the module docs). Errors unless `x` is rank 4 with no zero dim and
/// both output sizes are > 0.
pub fn bilinear_resize(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    const OP: &str = "bilinear_resize";
    let [n, h, w, c] = x.dims(OP, "input (NHWC)")?;
    if x.numel() == 0 || out_h == 0 || out_w == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "input {:?} resized to {out_h}x{out_w}: every input dim and both output sizes must be > 0",
                x.shape()
            ),
        ));
    }
    let y = match x.storage() {
        Storage::Cpu(CpuStorage::F32(v)) => {
            Storage::Cpu(f32::wrap(resize(v, [h, w, c], out_h, out_w)))
        }
        Storage::Cpu(CpuStorage::F64(v)) => {
            Storage::Cpu(f64::wrap(resize(v, [h, w, c], out_h, out_w)))
        }
        Storage::Cuda(s) => Storage::Cuda(cuda::forward(s, [n, h, w, c], out_h, out_w)?),
    };
    Ok(record(
        OP,
        y,
        vec![n, out_h, out_w, c],
        &[x],
        Box::new(move |dy, _| {
            let dx = match dy.storage() {
                Storage::Cpu(CpuStorage::F32(g)) => {
                    Storage::Cpu(f32::wrap(scatter(g, [h, w, c], out_h, out_w)))
                }
                Storage::Cpu(CpuStorage::F64(g)) => {
                    Storage::Cpu(f64::wrap(scatter(g, [h, w, c], out_h, out_w)))
                }
                Storage::Cuda(g) => Storage::Cuda(cuda::backward(g, [n, h, w, c], out_h, out_w)?),
            };
            Ok(vec![Some(Tensor::from_storage(dx, &[n, h, w, c])?)])
        }),
    ))
}

/// A per-channel affine map applied to resized RGB pixels, the form every
/// Keras `preprocess_input` mode takes: output channel `c` is
/// `x[source[c]] / divisor[c] - offset[c]` (see `models::Preprocessing`,
/// which owns the numbers of each mode).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelMap {
    /// The input channel each output channel reads (`[2, 1, 0]`: RGB -> BGR).
    pub source: [usize; 3],
    /// What each output channel is divided by.
    pub divisor: [f64; 3],
    /// What is then subtracted from each output channel.
    pub offset: [f64; 3],
}

/// uint8 RGB images `[n, h, w, 3]` (row-major bytes on the host) resized to
/// `out_h`×`out_w` and mapped by `map` (a Keras preprocessing mode), in one
/// GPU kernel on `device`: the input path of `extract` and `train` on a GPU.
/// Same math as `bilinear_resize` of the float image followed by the map in
/// f32 (`models::preprocess_input`), the order Keras uses. No autograd
/// history (model input). Errors on `Device::Cpu` (the CPU path is those two
/// steps), on a `source` channel above 2, or when `images.len() != n·h·w·3`.
pub fn resize_u8(
    images: &[u8],
    [n, h, w]: [usize; 3],
    out_h: usize,
    out_w: usize,
    map: &PixelMap,
    device: Device,
) -> Result<Tensor> {
    const OP: &str = "resize_u8";
    if images.len() != n * h * w * 3 || n * h * w * out_h * out_w == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "{} bytes for {n} RGB images of {h}x{w} (expected {}) resized to {out_h}x{out_w}; \
                 every size must be > 0",
                images.len(),
                n * h * w * 3
            ),
        ));
    }
    if map.source.iter().any(|&c| c > 2) {
        return Err(Error::shape(
            OP,
            format!(
                "pixel map reads channels {:?}; RGB images have channels 0, 1 and 2",
                map.source
            ),
        ));
    }
    match device {
        Device::Cpu => Err(Error::unsupported(
            OP,
            "the fused uint8 -> resize -> preprocessing kernel is the GPU input path; on the CPU \
             use bilinear_resize, then models::preprocess_input",
        )),
        Device::Cuda(ordinal) => {
            let dev = crate::cuda::CudaDevice::open(ordinal)?;
            let y = cuda::u8_mapped(&dev, images, [n, h, w], out_h, out_w, map)?;
            Tensor::from_storage(Storage::Cuda(y), &[n, out_h, out_w, 3])
        }
    }
}

/// One f32 image `[h, w, c]` (host memory) resized to `[out_h, out_w, c]`
/// on the calling thread: the same taps and loop as [`bilinear_resize`]'s
/// CPU forward, bit for bit, without a tensor, the tape or the thread pool.
/// For input pipelines that resize each image as it is decoded (the
/// trainer's image folders), where every image has its own size. Errors
/// unless `x` holds `h·w·c` values and every size is > 0. Checked against
/// [`bilinear_resize`] at odd sizes by `trainer/tests/image_folders.rs`.
pub fn resize_image(
    x: &[f32],
    [h, w, c]: [usize; 3],
    out_h: usize,
    out_w: usize,
) -> Result<Vec<f32>> {
    if x.len() != h * w * c || x.is_empty() || out_h == 0 || out_w == 0 {
        return Err(Error::shape(
            "resize_image",
            format!(
                "{} values for an image of {h}x{w}x{c} resized to {out_h}x{out_w}; every size \
                 must be > 0",
                x.len()
            ),
        ));
    }
    let (rows, cols) = (cpu::taps(h, out_h), cpu::taps(w, out_w));
    let mut y = vec![0f32; out_h * out_w * c];
    cpu::forward_image(x, &mut y, [h, w, c], &rows, &cols);
    Ok(y)
}

fn resize<T: Element>(x: &[T], hwc: [usize; 3], out_h: usize, out_w: usize) -> Vec<T> {
    let (rows, cols) = (cpu::taps(hwc[0], out_h), cpu::taps(hwc[1], out_w));
    cpu::forward(x, hwc, &rows, &cols)
}

fn scatter<T: Element>(dy: &[T], hwc: [usize; 3], out_h: usize, out_w: usize) -> Vec<T> {
    let (rows, cols) = (cpu::taps(hwc[0], out_h), cpu::taps(hwc[1], out_w));
    cpu::backward(dy, hwc, &rows, &cols)
}
