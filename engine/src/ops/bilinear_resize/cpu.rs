//! CPU reference for the bilinear resize: per-axis tap tables computed once,
//! then one pass over the output (forward) or over dy (backward, scatter).
//! Images are independent, so both passes run one image per rayon task.

use crate::element::Element;
use rayon::prelude::*;

/// For each output coordinate along one axis: the two source indices and the
/// weight of the second, `src = (dst + 0.5) · in/out − 0.5` (half-pixel
/// centres) clamped to `[0, in − 1]`.
///
/// The coordinates are computed in f32, as Keras does (its resize computes
/// them in the image's dtype): with f64 coordinates a 32 → 224 upsampling of
/// 0..255 pixels moved up to 8.8e-4 away from `keras.layers.Resizing`, with
/// f32 ones 2.4e-4. The CUDA kernels (`bilinear_resize.cu`) repeat these
/// operations one for one, so both devices get the same taps.
pub struct Taps<T> {
    pub lo: Vec<usize>,
    pub hi: Vec<usize>,
    pub w_hi: Vec<T>,
}

/// The tap table of one axis, `in_size` → `out_size` (both > 0).
pub fn taps<T: Element>(in_size: usize, out_size: usize) -> Taps<T> {
    let scale = in_size as f32 / out_size as f32;
    let mut t = Taps {
        lo: Vec::with_capacity(out_size),
        hi: Vec::with_capacity(out_size),
        w_hi: Vec::with_capacity(out_size),
    };
    for dst in 0..out_size {
        let src = ((dst as f32 + 0.5) * scale - 0.5).max(0.0);
        let lo = (src.floor() as usize).min(in_size - 1);
        t.lo.push(lo);
        t.hi.push((lo + 1).min(in_size - 1));
        t.w_hi.push(T::from_f64((src - lo as f32) as f64));
    }
    t
}

/// y[n, i, j, :] = Σ over the 4 taps of weight · x[n, row tap, column tap, :].
pub fn forward<T: Element>(
    x: &[T],
    [h, w, c]: [usize; 3],
    rows: &Taps<T>,
    cols: &Taps<T>,
) -> Vec<T> {
    let (oh, ow) = (rows.lo.len(), cols.lo.len());
    let mut y = vec![T::ZERO; x.len() / (h * w) * oh * ow];
    y.par_chunks_mut(oh * ow * c)
        .zip(x.par_chunks(h * w * c))
        .for_each(|(yi, xi)| forward_image(xi, yi, [h, w, c], rows, cols));
    y
}

/// [`forward`] of one image `xi` `[h, w, c]` into `yi` `[oh, ow, c]`, on the
/// calling thread.
pub fn forward_image<T: Element>(
    xi: &[T],
    yi: &mut [T],
    [_, w, c]: [usize; 3],
    rows: &Taps<T>,
    cols: &Taps<T>,
) {
    let ow = cols.lo.len();
    let at = |r: usize, q: usize, ch: usize| xi[(r * w + q) * c + ch];
    for i in 0..rows.lo.len() {
        let (r0, r1, wr) = (rows.lo[i], rows.hi[i], rows.w_hi[i]);
        for j in 0..ow {
            let (q0, q1, wq) = (cols.lo[j], cols.hi[j], cols.w_hi[j]);
            let out = &mut yi[(i * ow + j) * c..][..c];
            for (ch, o) in out.iter_mut().enumerate() {
                let top = at(r0, q0, ch) * (T::ONE - wq) + at(r0, q1, ch) * wq;
                let bottom = at(r1, q0, ch) * (T::ONE - wq) + at(r1, q1, ch) * wq;
                *o = top * (T::ONE - wr) + bottom * wr;
            }
        }
    }
}

/// [`forward_image`] of an 8-bit image, each output rounded to the nearest
/// 8-bit value (`round().clamp(0, 255)`), bit for bit the same: the same f32
/// products and sums in the same order, arranged in two passes. Each source
/// row an output row reads is interpolated along the columns once (the
/// `top` and `bottom` terms of [`forward_image`]), kept while the next
/// output row reads it too, then the two rows are blended into the output
/// row. No f32 copy of the image is made.
pub fn forward_image_u8(
    xi: &[u8],
    yi: &mut [u8],
    [_, w, c]: [usize; 3],
    rows: &Taps<f32>,
    cols: &Taps<f32>,
) {
    let row_len = cols.lo.len() * c;
    let along_columns = |r: usize, out: &mut [f32]| {
        let src = &xi[r * w * c..][..w * c];
        match c {
            // The constant lets the compiler unroll RGB's loop (every input pipeline's).
            3 => along_columns_of(src, out, 3, cols),
            _ => along_columns_of(src, out, c, cols),
        }
    };
    // Slot 0 holds source row r0 interpolated, slot 1 row r1 (None: not yet).
    let mut slots = [(None, vec![0f32; row_len]), (None, vec![0f32; row_len])];
    for (i, out) in yi.chunks_exact_mut(row_len).enumerate() {
        let (r0, r1, wr) = (rows.lo[i], rows.hi[i], rows.w_hi[i]);
        if slots[0].0 != Some(r0) {
            if slots[1].0 == Some(r0) {
                slots.swap(0, 1);
            } else {
                along_columns(r0, &mut slots[0].1);
                slots[0].0 = Some(r0);
            }
        }
        if slots[1].0 != Some(r1) {
            along_columns(r1, &mut slots[1].1);
            slots[1].0 = Some(r1);
        }
        let (top, bottom) = (&slots[0].1, &slots[1].1);
        for ((o, &t), &b) in out.iter_mut().zip(top).zip(bottom) {
            *o = round_u8(t * (1.0 - wr) + b * wr);
        }
    }
}

/// One source row `src` of `c` channels interpolated along the columns
/// into `out`: the `top` (or `bottom`) term of [`forward_image`] for every
/// output column.
#[inline(always)]
fn along_columns_of(src: &[u8], out: &mut [f32], c: usize, cols: &Taps<f32>) {
    let taps = cols.lo.iter().zip(&cols.hi).zip(&cols.w_hi);
    for (o, ((&q0, &q1), &wq)) in out.chunks_exact_mut(c).zip(taps) {
        let (left, right) = (&src[q0 * c..][..c], &src[q1 * c..][..c]);
        for ((o, &a), &b) in o.iter_mut().zip(left).zip(right) {
            *o = f32::from(a) * (1.0 - wq) + f32::from(b) * wq;
        }
    }
}

/// `v.round().clamp(0.0, 255.0) as u8` (halves away from zero; NaN gives
/// 0, infinities and values past 255 give 255, negatives 0) without a call
/// to `roundf`: the whole part (toward zero, saturating), plus one when the
/// fraction, exact in f32 below 2^23, is at least a half; i32, whose
/// conversion from f32 the compiler vectorizes.
pub fn round_u8(v: f32) -> u8 {
    let whole = v as i32;
    let up = (v - whole as f32 >= 0.5) as i32;
    whole.saturating_add(up).clamp(0, 255) as u8
}

/// dx: each dy element is scattered back to its 4 taps with the same weights.
pub fn backward<T: Element>(
    dy: &[T],
    [h, w, c]: [usize; 3],
    rows: &Taps<T>,
    cols: &Taps<T>,
) -> Vec<T> {
    let (oh, ow) = (rows.lo.len(), cols.lo.len());
    let mut dx = vec![T::ZERO; dy.len() / (oh * ow) * h * w];
    dx.par_chunks_mut(h * w * c)
        .zip(dy.par_chunks(oh * ow * c))
        .for_each(|(dxi, dyi)| {
            for i in 0..oh {
                let (r0, r1, wr) = (rows.lo[i], rows.hi[i], rows.w_hi[i]);
                for j in 0..ow {
                    let (q0, q1, wq) = (cols.lo[j], cols.hi[j], cols.w_hi[j]);
                    let g = &dyi[(i * ow + j) * c..][..c];
                    for (r, wrow) in [(r0, T::ONE - wr), (r1, wr)] {
                        for (q, wcol) in [(q0, T::ONE - wq), (q1, wq)] {
                            let weight = wrow * wcol;
                            let d = &mut dxi[(r * w + q) * c..][..c];
                            for (dv, &gv) in d.iter_mut().zip(g) {
                                *dv += gv * weight;
                            }
                        }
                    }
                }
            }
        });
    dx
}
