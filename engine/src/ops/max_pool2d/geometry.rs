//! Window geometry of the pooling ops (max_pool2d, avg_pool2d): the shape
//! checks, the resolved padding, and which window cells fall inside the input.

use crate::error::{Error, Result};
use crate::ops::padding::{window_2d, Padding};
use crate::tensor::Tensor;

/// Sizes of one pooling, with the padding already resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Batch size.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels (of the input).
    pub c: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Stride along the height.
    pub sh: usize,
    /// Stride along the width.
    pub sw: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Padded rows above the input.
    pub pad_top: usize,
    /// Padded columns left of the input.
    pub pad_left: usize,
}

impl PoolGeometry {
    /// Checks `x` (NHWC, no zero-sized dimension) and the window, for `op`.
    /// Padding is refused where a window could hold only padded cells (an
    /// explicit padding as large as the pool): such a window has no maximum
    /// and no average.
    pub fn new(
        op: &'static str,
        x: &Tensor,
        pool: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
    ) -> Result<PoolGeometry> {
        let [n, h, w, c] = x.dims(op, "input (NHWC [n, h, w, c])")?;
        if n * h * w * c == 0 {
            return Err(Error::shape(
                op,
                format!("input {:?} has a zero-sized dimension", x.shape()),
            ));
        }
        let win = window_2d(op, (h, w), pool, stride, padding).map_err(|e| match e {
            Error::Shape { op, msg } => {
                Error::shape(op, format!("input {:?}, pool {pool:?}: {msg}", x.shape()))
            }
            other => other,
        })?;
        let pads = [win.pad_top, win.pad_bottom, win.pad_left, win.pad_right];
        if pads[0].max(pads[1]) >= pool.0 || pads[2].max(pads[3]) >= pool.1 {
            return Err(Error::invalid(
                op,
                format!(
                    "padding (top, bottom, left, right) = {pads:?} must be smaller than the pool {pool:?}, \
                     or some window would hold only padding (input {:?})",
                    x.shape()
                ),
            ));
        }
        Ok(PoolGeometry {
            n,
            h,
            w,
            c,
            kh: pool.0,
            kw: pool.1,
            sh: stride.0,
            sw: stride.1,
            oh: win.out_h,
            ow: win.out_w,
            pad_top: win.pad_top,
            pad_left: win.pad_left,
        })
    }

    /// The sizes in the order `kernels/src/pool2d.cu` takes them:
    /// `n, h, w, c, kh, kw, sh, sw, oh, ow, pad_top, pad_left`.
    pub fn kernel_args(&self) -> [i32; 12] {
        [
            self.n,
            self.h,
            self.w,
            self.c,
            self.kh,
            self.kw,
            self.sh,
            self.sw,
            self.oh,
            self.ow,
            self.pad_top,
            self.pad_left,
        ]
        .map(|d| d as i32)
    }

    /// Input rows covered by output row `oy`, as a half-open range (never empty).
    pub fn rows(&self, oy: usize) -> std::ops::Range<usize> {
        span(oy * self.sh, self.pad_top, self.kh, self.h)
    }

    /// Input columns covered by output column `ox`, as a half-open range (never empty).
    pub fn cols(&self, ox: usize) -> std::ops::Range<usize> {
        span(ox * self.sw, self.pad_left, self.kw, self.w)
    }
}

/// `[start − pad, start − pad + k)` clipped to `[0, len)`.
fn span(start: usize, pad: usize, k: usize, len: usize) -> std::ops::Range<usize> {
    let lo = start.saturating_sub(pad);
    let hi = (start + k).saturating_sub(pad).min(len);
    lo..hi.max(lo)
}
