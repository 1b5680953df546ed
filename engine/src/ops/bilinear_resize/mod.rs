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

mod cpu;

use crate::autograd::record;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::tensor::{DType, Storage, Tensor};

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
    let y = match x.dtype() {
        DType::F32 => f32::wrap(resize(x.as_slice::<f32>()?, [h, w, c], out_h, out_w)),
        DType::F64 => f64::wrap(resize(x.as_slice::<f64>()?, [h, w, c], out_h, out_w)),
    };
    Ok(record(
        OP,
        Storage::Cpu(y),
        vec![n, out_h, out_w, c],
        &[x],
        Box::new(move |dy, _| {
            let dx = match dy.dtype() {
                DType::F32 => f32::wrap(scatter(dy.as_slice::<f32>()?, [h, w, c], out_h, out_w)),
                DType::F64 => f64::wrap(scatter(dy.as_slice::<f64>()?, [h, w, c], out_h, out_w)),
            };
            Ok(vec![Some(Tensor::from_storage(
                Storage::Cpu(dx),
                &[n, h, w, c],
            )?)])
        }),
    ))
}

fn resize<T: Element>(x: &[T], hwc: [usize; 3], out_h: usize, out_w: usize) -> Vec<T> {
    let (rows, cols) = (cpu::taps(hwc[0], out_h), cpu::taps(hwc[1], out_w));
    cpu::forward(x, hwc, &rows, &cols)
}

fn scatter<T: Element>(dy: &[T], hwc: [usize; 3], out_h: usize, out_w: usize) -> Vec<T> {
    let (rows, cols) = (cpu::taps(hwc[0], out_h), cpu::taps(hwc[1], out_w));
    cpu::backward(dy, hwc, &rows, &cols)
}
