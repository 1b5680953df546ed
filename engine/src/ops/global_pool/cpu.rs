//! CPU reference for global average and max pooling: one rayon task per
//! image, inner loops along the contiguous channels.

use crate::element::Element;
use crate::error::{Error, Result};
use crate::map_cpu;
use crate::tensor::CpuStorage;
use rayon::prelude::*;

/// The input's `[n, h, w, c]`.
type Dims = [usize; 4];

/// `[n, c]` means over each image's `h·w` cells.
pub fn avg_forward(x: &CpuStorage, d: Dims) -> CpuStorage {
    map_cpu!(x, |v: T| avg_forward_typed::<T>(v, d))
}

/// `dx` `[n, h, w, c]`: every cell gets `dy[b, ch] / hw`.
pub fn avg_backward(dy: &CpuStorage, d: Dims) -> CpuStorage {
    map_cpu!(dy, |v: T| avg_backward_typed::<T>(v, d))
}

/// `[n, c]` maxima over each image's `h·w` cells.
pub fn max_forward(x: &CpuStorage, d: Dims) -> CpuStorage {
    map_cpu!(x, |v: T| max_forward_typed::<T>(v, d))
}

/// `dx` `[n, h, w, c]`: `dy[b, ch]` at the first maximum of each channel, 0 elsewhere.
pub fn max_backward(x: &CpuStorage, dy: &CpuStorage, d: Dims) -> Result<CpuStorage> {
    Ok(match (x, dy) {
        (CpuStorage::F32(x), CpuStorage::F32(dy)) => CpuStorage::F32(max_backward_typed(x, dy, d)),
        (CpuStorage::F64(x), CpuStorage::F64(dy)) => CpuStorage::F64(max_backward_typed(x, dy, d)),
        _ => {
            return Err(Error::dtype(
                "global_max_pool",
                format!("gradient is {}, input is {}", dy.dtype(), x.dtype()),
            ))
        }
    })
}

fn avg_forward_typed<T: Element>(x: &[T], [n, h, w, c]: Dims) -> Vec<T> {
    let mut y = vec![T::ZERO; n * c];
    let count = T::from_f64((h * w) as f64);
    y.par_chunks_mut(c).enumerate().for_each(|(b, out)| {
        for cell in x[b * h * w * c..(b + 1) * h * w * c].chunks_exact(c) {
            for (s, &v) in out.iter_mut().zip(cell) {
                *s += v;
            }
        }
        for s in out.iter_mut() {
            *s = *s / count;
        }
    });
    y
}

fn avg_backward_typed<T: Element>(dy: &[T], [n, h, w, c]: Dims) -> Vec<T> {
    let mut dx = vec![T::ZERO; n * h * w * c];
    let count = T::from_f64((h * w) as f64);
    dx.par_chunks_mut(h * w * c)
        .enumerate()
        .for_each(|(b, img)| {
            let share: Vec<T> = dy[b * c..(b + 1) * c].iter().map(|&d| d / count).collect();
            for cell in img.chunks_exact_mut(c) {
                cell.copy_from_slice(&share);
            }
        });
    dx
}

fn max_forward_typed<T: Element>(x: &[T], [n, h, w, c]: Dims) -> Vec<T> {
    let mut y = vec![T::ZERO; n * c];
    y.par_chunks_mut(c).enumerate().for_each(|(b, out)| {
        let img = &x[b * h * w * c..(b + 1) * h * w * c];
        out.copy_from_slice(&img[..c]);
        for cell in img.chunks_exact(c).skip(1) {
            for (m, &v) in out.iter_mut().zip(cell) {
                // A select, not a branch: the compiler makes it a vector max.
                *m = if v > *m { v } else { *m };
            }
        }
    });
    y
}

fn max_backward_typed<T: Element>(x: &[T], dy: &[T], [n, h, w, c]: Dims) -> Vec<T> {
    let mut dx = vec![T::ZERO; n * h * w * c];
    dx.par_chunks_mut(h * w * c)
        .enumerate()
        .for_each(|(b, dx_img)| {
            let img = &x[b * h * w * c..(b + 1) * h * w * c];
            // First maximum in row-major order: strict '>' keeps the earliest cell.
            let mut best = img[..c].to_vec();
            let mut arg = vec![0usize; c];
            for (cell_index, cell) in img.chunks_exact(c).enumerate().skip(1) {
                for ch in 0..c {
                    if cell[ch] > best[ch] {
                        best[ch] = cell[ch];
                        arg[ch] = cell_index;
                    }
                }
            }
            for ch in 0..c {
                dx_img[arg[ch] * c + ch] = dy[b * c + ch];
            }
        });
    dx
}
