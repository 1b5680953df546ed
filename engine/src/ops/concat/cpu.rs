//! CPU reference for concat: per row (one position of the leading dims), each
//! input's channels copied into its columns of y (forward), and one input's
//! columns copied back out of dy (backward).

use crate::element::Element;
use crate::map_cpu;
use crate::tensor::{CpuStorage, DType};
use rayon::prelude::*;

/// Where one input's `c` channels sit in each of the `rows` rows of y,
/// `[rows, c_out]`: columns `offset .. offset + c`.
#[derive(Debug, Clone, Copy)]
pub struct Columns {
    /// Product of the leading dims.
    pub rows: usize,
    /// Channels of y, the sum of every input's.
    pub c_out: usize,
    /// The input's first column in y.
    pub offset: usize,
    /// The input's channels.
    pub c: usize,
}

/// `xs` (each `[rows, c_i]`, one dtype, checked in `mod.rs`) side by side:
/// `[rows, c_0 + c_1 + …]`.
pub fn forward(xs: &[&CpuStorage], rows: usize) -> CpuStorage {
    match xs[0].dtype() {
        DType::F32 => CpuStorage::F32(forward_typed(xs, rows)),
        DType::F64 => CpuStorage::F64(forward_typed(xs, rows)),
    }
}

/// The `[rows, c]` block of `dy` `[rows, c_out]` at column `offset`.
pub fn slice(dy: &CpuStorage, cols: &Columns) -> CpuStorage {
    map_cpu!(dy, |v: T| slice_typed::<T>(v, cols))
}

fn forward_typed<T: Element>(xs: &[&CpuStorage], rows: usize) -> Vec<T> {
    let parts: Vec<&[T]> = xs
        .iter()
        .map(|s| T::unwrap(s).expect("mod.rs checked that every input has one dtype"))
        .collect();
    let widths: Vec<usize> = parts.iter().map(|p| p.len() / rows).collect();
    let c_out = widths.iter().sum();
    let mut y = vec![T::ZERO; rows * c_out];
    // One task per row of y; each input fills its columns.
    y.par_chunks_mut(c_out).enumerate().for_each(|(r, out)| {
        let mut offset = 0;
        for (x, &c) in parts.iter().zip(&widths) {
            out[offset..offset + c].copy_from_slice(&x[r * c..(r + 1) * c]);
            offset += c;
        }
    });
    y
}

fn slice_typed<T: Element>(dy: &[T], cols: &Columns) -> Vec<T> {
    let mut dx = vec![T::ZERO; cols.rows * cols.c];
    dx.par_chunks_mut(cols.c).enumerate().for_each(|(r, out)| {
        let src = r * cols.c_out + cols.offset;
        out.copy_from_slice(&dy[src..src + cols.c]);
    });
    dx
}
