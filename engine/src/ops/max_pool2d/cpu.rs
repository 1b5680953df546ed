//! CPU reference for max_pool2d. The inner loops run along channels, which
//! are contiguous in NHWC.

use super::geometry::PoolGeometry;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::map_cpu;
use crate::tensor::CpuStorage;
use rayon::prelude::*;

/// `[n, oh, ow, c]`: one rayon task per output row `(b, oy)`.
pub fn forward(x: &CpuStorage, g: &PoolGeometry) -> CpuStorage {
    map_cpu!(x, |v: T| forward_typed::<T>(v, g))
}

/// `dx` `[n, h, w, c]` from the saved input and `dy` `[n, oh, ow, c]`.
pub fn backward(x: &CpuStorage, dy: &CpuStorage, g: &PoolGeometry) -> Result<CpuStorage> {
    Ok(match (x, dy) {
        (CpuStorage::F32(x), CpuStorage::F32(dy)) => CpuStorage::F32(backward_typed(x, dy, g)),
        (CpuStorage::F64(x), CpuStorage::F64(dy)) => CpuStorage::F64(backward_typed(x, dy, g)),
        _ => {
            return Err(Error::dtype(
                "max_pool2d",
                format!("gradient is {}, input is {}", dy.dtype(), x.dtype()),
            ))
        }
    })
}

fn forward_typed<T: Element>(x: &[T], g: &PoolGeometry) -> Vec<T> {
    let c = g.c;
    let mut y = vec![T::ZERO; g.n * g.oh * g.ow * c];
    y.par_chunks_mut(g.ow * c).enumerate().for_each(|(r, row)| {
        let (b, oy) = (r / g.oh, r % g.oh);
        let rows = g.rows(oy);
        for (ox, out) in row.chunks_exact_mut(c).enumerate() {
            let cols = g.cols(ox);
            let at = |iy: usize, ix: usize| ((b * g.h + iy) * g.w + ix) * c;
            // Start from the first cell (never padding), then keep strictly larger values.
            let first = at(rows.start, cols.start);
            out.copy_from_slice(&x[first..first + c]);
            for iy in rows.clone() {
                for ix in cols.clone() {
                    let cell = &x[at(iy, ix)..at(iy, ix) + c];
                    for (m, &v) in out.iter_mut().zip(cell) {
                        // A select, not a branch: the compiler makes it a vector max.
                        *m = if v > *m { v } else { *m };
                    }
                }
            }
        }
    });
    y
}

fn backward_typed<T: Element>(x: &[T], dy: &[T], g: &PoolGeometry) -> Vec<T> {
    let (c, image) = (g.c, g.h * g.w * g.c);
    let mut dx = vec![T::ZERO; g.n * image];
    // One task per image: overlapping windows of one image add into the same cells.
    dx.par_chunks_mut(image)
        .enumerate()
        .for_each(|(b, dx_img)| {
            let x_img = &x[b * image..(b + 1) * image];
            let mut best = vec![T::ZERO; c];
            let mut arg = vec![0usize; c];
            for oy in 0..g.oh {
                let rows = g.rows(oy);
                for ox in 0..g.ow {
                    let cols = g.cols(ox);
                    // First maximum in row-major window order: strict '>' keeps the earliest.
                    let first = (rows.start * g.w + cols.start) * c;
                    best.copy_from_slice(&x_img[first..first + c]);
                    arg.fill(first);
                    for iy in rows.clone() {
                        for ix in cols.clone() {
                            let at = (iy * g.w + ix) * c;
                            for ch in 0..c {
                                if x_img[at + ch] > best[ch] {
                                    best[ch] = x_img[at + ch];
                                    arg[ch] = at;
                                }
                            }
                        }
                    }
                    let d = &dy[((b * g.oh + oy) * g.ow + ox) * c..][..c];
                    for ch in 0..c {
                        dx_img[arg[ch] + ch] += d[ch];
                    }
                }
            }
        });
    dx
}
