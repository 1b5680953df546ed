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
//! `fused_uint8_input_matches_resize_then_preprocess_in_every_mode`; the
//! 8-bit image path against the op, `resize_image_u8_is_the_op_rounded`
//! (below).

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

/// One 8-bit image `[h, w, c]` (host memory) resized to `[out_h, out_w, c]`
/// and rounded back to 8 bits, on the calling thread: the same taps and f32
/// arithmetic as [`bilinear_resize`]'s CPU forward of the image as floats,
/// each value then rounded to the nearest integer in 0..=255, bit for bit,
/// without a tensor, an f32 copy of the image or the thread pool. For input
/// pipelines that resize each image as it is decoded (the trainer's image
/// folders), where every image has its own size. Errors unless `x` holds
/// `h·w·c` values and every size is > 0. Checked against [`bilinear_resize`]
/// by `resize_image_u8_is_the_op_rounded` (below) and
/// `trainer/tests/image_folders.rs`.
pub fn resize_image_u8(
    x: &[u8],
    [h, w, c]: [usize; 3],
    out_h: usize,
    out_w: usize,
) -> Result<Vec<u8>> {
    if x.len() != h * w * c || x.is_empty() || out_h == 0 || out_w == 0 {
        return Err(Error::shape(
            "resize_image_u8",
            format!(
                "{} values for an image of {h}x{w}x{c} resized to {out_h}x{out_w}; every size \
                 must be > 0",
                x.len()
            ),
        ));
    }
    let (rows, cols) = (cpu::taps(h, out_h), cpu::taps(w, out_w));
    let mut y = vec![0u8; out_h * out_w * c];
    cpu::forward_image_u8(x, &mut y, [h, w, c], &rows, &cols);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The 8-bit resize equals the op on the image as floats, rounded, bit
    /// for bit: up, down, both at once, odd sizes, 1, 3 and 4 channels, a
    /// photo brought to 224 and CIFAR's 32 brought to 224, then 400 random
    /// shapes of random pixels.
    #[test]
    fn resize_image_u8_is_the_op_rounded() {
        let random = |k: u64| crate::rng::random_u64(18, 0, k) as usize;
        let mut shapes = vec![
            (5, 7, 3, 11, 13),
            (9, 8, 3, 4, 5),
            (1, 1, 3, 3, 2),
            (6, 17, 1, 13, 4),
            (7, 3, 4, 7, 3),
            (375, 500, 3, 224, 224),
            (32, 32, 3, 224, 224),
        ];
        for k in 0..400 {
            let side = |j: u64| 1 + random(5 * k + j) % 60;
            let c = [1, 3, 4][random(5 * k + 4) % 3];
            shapes.push((side(0), side(1), c, side(2), side(3)));
        }
        for (s, &(h, w, c, out_h, out_w)) in shapes.iter().enumerate() {
            let x: Vec<u8> = (0..h * w * c)
                .map(|i| crate::rng::random_u64(18, 1 + s as u64, i as u64) as u8)
                .collect();
            let floats = x.iter().map(|&v| f32::from(v)).collect();
            let op = bilinear_resize(
                &Tensor::from_vec(floats, &[1, h, w, c]).unwrap(),
                out_h,
                out_w,
            )
            .unwrap();
            let want: Vec<u8> = op
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.round().clamp(0.0, 255.0) as u8)
                .collect();
            let got = resize_image_u8(&x, [h, w, c], out_h, out_w).unwrap();
            let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(
                (got.len(), differ),
                (want.len(), 0),
                "{h}x{w}x{c} -> {out_h}x{out_w}: (values, values that differ)"
            );
        }
        assert!(resize_image_u8(&[0; 5], [2, 1, 3], 4, 4).is_err());
        assert!(resize_image_u8(&[0; 6], [2, 1, 3], 0, 4).is_err());
    }

    /// The rounding of the 8-bit resize equals `round().clamp(0, 255)`
    /// at and around every whole number and half in range, and outside it.
    #[test]
    fn round_u8_is_round_then_clamp() {
        let mut values = vec![f32::NAN, -0.0, -0.5, -1.0, 255.5, 256.0, 1e9, f32::INFINITY];
        for k in 0..=256u32 {
            for centre in [k as f32, k as f32 + 0.5] {
                let mut v = centre;
                for _ in 0..4 {
                    v = f32::from_bits(v.to_bits().saturating_sub(1));
                }
                for _ in 0..9 {
                    values.push(v);
                    v = f32::from_bits(v.to_bits() + 1);
                }
            }
        }
        for v in values {
            let want = v.round().clamp(0.0, 255.0) as u8;
            assert_eq!(cpu::round_u8(v), want, "{v:e}");
        }
    }
}
