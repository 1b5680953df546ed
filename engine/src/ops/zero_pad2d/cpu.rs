//! CPU reference for zero_pad2d: row copies into a zeroed output (forward)
//! and row copies out of the gradient (backward, the crop).

use crate::element::Element;
use crate::map_cpu;
use crate::tensor::CpuStorage;
use rayon::prelude::*;

/// Input sizes, the padding before each axis, and the padded sizes.
#[derive(Debug, Clone, Copy)]
pub struct PadGeometry {
    /// Batch size.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// Rows of zeros above.
    pub top: usize,
    /// Columns of zeros on the left.
    pub left: usize,
    /// Padded height, `top + h + bottom`.
    pub ph: usize,
    /// Padded width, `left + w + right`.
    pub pw: usize,
}

/// `x` `[n, h, w, c]` placed at (`top`, `left`) in zeros `[n, ph, pw, c]`.
pub fn pad(x: &CpuStorage, g: &PadGeometry) -> CpuStorage {
    map_cpu!(x, |v: T| pad_typed::<T>(v, g))
}

/// The `[n, h, w, c]` window of `dy` `[n, ph, pw, c]` at (`top`, `left`).
pub fn crop(dy: &CpuStorage, g: &PadGeometry) -> CpuStorage {
    map_cpu!(dy, |v: T| crop_typed::<T>(v, g))
}

fn pad_typed<T: Element>(x: &[T], g: &PadGeometry) -> Vec<T> {
    let (row_in, row_out) = (g.w * g.c, g.pw * g.c);
    let mut y = vec![T::ZERO; g.n * g.ph * row_out];
    // One task per output row; rows outside x stay zero.
    y.par_chunks_mut(row_out).enumerate().for_each(|(r, out)| {
        let (b, i) = (r / g.ph, r % g.ph);
        if i >= g.top && i - g.top < g.h {
            let src = (b * g.h + i - g.top) * row_in;
            out[g.left * g.c..g.left * g.c + row_in].copy_from_slice(&x[src..src + row_in]);
        }
    });
    y
}

fn crop_typed<T: Element>(dy: &[T], g: &PadGeometry) -> Vec<T> {
    let (row_in, row_out) = (g.w * g.c, g.pw * g.c);
    let mut dx = vec![T::ZERO; g.n * g.h * row_in];
    dx.par_chunks_mut(row_in).enumerate().for_each(|(r, out)| {
        let (b, i) = (r / g.h, r % g.h);
        let src = (b * g.ph + i + g.top) * row_out + g.left * g.c;
        out.copy_from_slice(&dy[src..src + row_in]);
    });
    dx
}
