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
