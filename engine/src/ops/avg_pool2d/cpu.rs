//! CPU reference for avg_pool2d. The inner loops run along channels, which
//! are contiguous in NHWC.

use crate::element::Element;
use crate::map_cpu;
use crate::ops::max_pool2d::PoolGeometry;
use crate::tensor::CpuStorage;
use rayon::prelude::*;

/// `[n, oh, ow, c]`: one rayon task per output row `(b, oy)`.
pub fn forward(x: &CpuStorage, g: &PoolGeometry) -> CpuStorage {
    map_cpu!(x, |v: T| forward_typed::<T>(v, g))
}

/// `dx` `[n, h, w, c]` from `dy` `[n, oh, ow, c]` (the input is not needed).
pub fn backward(dy: &CpuStorage, g: &PoolGeometry) -> CpuStorage {
    map_cpu!(dy, |v: T| backward_typed::<T>(v, g))
}

fn forward_typed<T: Element>(x: &[T], g: &PoolGeometry) -> Vec<T> {
    let c = g.c;
    let mut y = vec![T::ZERO; g.n * g.oh * g.ow * c];
    y.par_chunks_mut(g.ow * c).enumerate().for_each(|(r, row)| {
        let (b, oy) = (r / g.oh, r % g.oh);
        let rows = g.rows(oy);
        for (ox, out) in row.chunks_exact_mut(c).enumerate() {
            let cols = g.cols(ox);
            for iy in rows.clone() {
                for ix in cols.clone() {
                    let at = ((b * g.h + iy) * g.w + ix) * c;
                    for (s, &v) in out.iter_mut().zip(&x[at..at + c]) {
                        *s += v;
                    }
                }
            }
            let count = T::from_f64((rows.len() * cols.len()) as f64);
            for s in out.iter_mut() {
                *s = *s / count;
            }
        }
    });
    y
}

fn backward_typed<T: Element>(dy: &[T], g: &PoolGeometry) -> Vec<T> {
    let (c, image) = (g.c, g.h * g.w * g.c);
    let mut dx = vec![T::ZERO; g.n * image];
    // One task per image: overlapping windows of one image add into the same cells.
    dx.par_chunks_mut(image)
        .enumerate()
        .for_each_with(vec![T::ZERO; c], |share, (b, dx_img)| {
            for oy in 0..g.oh {
                let rows = g.rows(oy);
                for ox in 0..g.ow {
                    let cols = g.cols(ox);
                    let count = T::from_f64((rows.len() * cols.len()) as f64);
                    let d = &dy[((b * g.oh + oy) * g.ow + ox) * c..][..c];
                    for (s, &v) in share.iter_mut().zip(d) {
                        *s = v / count;
                    }
                    for iy in rows.clone() {
                        for ix in cols.clone() {
                            let at = (iy * g.w + ix) * c;
                            for (t, &s) in dx_img[at..at + c].iter_mut().zip(share.iter()) {
                                *t += s;
                            }
                        }
                    }
                }
            }
        });
    dx
}
