//! Window geometry shared by conv2d and the pooling ops, with TensorFlow's
//! rules:
//!
//! - `Valid`: no padding, `out = floor((in − k) / s) + 1`.
//! - `Same`: `out = ceil(in / s)`; the total padding
//!   `max((out − 1)·s + k − in, 0)` is split with the smaller half at the
//!   top/left, so at stride 2 the extra row/column goes bottom/right.
//! - `Explicit`: the given amounts, `out = floor((in + before + after − k) / s) + 1`.

use crate::error::{Error, Result};

/// How a window op pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No padding: the window stays inside the input.
    Valid,
    /// TensorFlow's 'same': `out = ceil(in / stride)`, extra padding bottom/right.
    Same,
    /// Rows added at the top and bottom, columns at the left and right.
    Explicit {
        /// Rows added above.
        top: usize,
        /// Rows added below.
        bottom: usize,
        /// Columns added on the left.
        left: usize,
        /// Columns added on the right.
        right: usize,
    },
}

/// A window op's output size and its padding resolved to amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window2d {
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Rows of padding above.
    pub pad_top: usize,
    /// Rows of padding below.
    pub pad_bottom: usize,
    /// Columns of padding on the left.
    pub pad_left: usize,
    /// Columns of padding on the right.
    pub pad_right: usize,
}

fn resolve_1d(
    op: &'static str,
    axis: &str,
    input: usize,
    k: usize,
    s: usize,
    padding: Padding,
    explicit: (usize, usize),
) -> Result<(usize, usize, usize)> {
    if k == 0 || s == 0 {
        return Err(Error::invalid(
            op,
            format!("window {k} and stride {s} along {axis} must be positive"),
        ));
    }
    let (before, after) = match padding {
        Padding::Valid => (0, 0),
        Padding::Explicit { .. } => explicit,
        Padding::Same => {
            let out = input.div_ceil(s);
            let total = ((out.max(1) - 1) * s + k).saturating_sub(input);
            (total / 2, total - total / 2)
        }
    };
    let padded = input + before + after;
    if input == 0 || padded < k {
        return Err(Error::shape(
            op,
            format!("{axis} of {input} (padded {padded}) is smaller than the window {k}"),
        ));
    }
    Ok(((padded - k) / s + 1, before, after))
}

/// Resolves a window of `kernel` (h, w) at `stride` (h, w) over an `in_h`×`in_w` input.
pub fn window_2d(
    op: &'static str,
    (in_h, in_w): (usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
) -> Result<Window2d> {
    let (eh, ew) = match padding {
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => ((top, bottom), (left, right)),
        _ => ((0, 0), (0, 0)),
    };
    let (out_h, pad_top, pad_bottom) =
        resolve_1d(op, "height", in_h, kernel.0, stride.0, padding, eh)?;
    let (out_w, pad_left, pad_right) =
        resolve_1d(op, "width", in_w, kernel.1, stride.1, padding, ew)?;
    Ok(Window2d {
        out_h,
        out_w,
        pad_top,
        pad_bottom,
        pad_left,
        pad_right,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_at_stride_2_puts_the_extra_row_bottom_right() {
        // in 7, k 3, s 2: out 4, total pad (3·2 + 3 − 7) = 2 → 1/1; in 8: out 4, total 1 → 0/1.
        let w = window_2d("t", (7, 8), (3, 3), (2, 2), Padding::Same).unwrap();
        assert_eq!((w.out_h, w.pad_top, w.pad_bottom), (4, 1, 1));
        assert_eq!((w.out_w, w.pad_left, w.pad_right), (4, 0, 1));
    }

    #[test]
    fn valid_and_explicit() {
        let w = window_2d("t", (7, 5), (3, 3), (2, 2), Padding::Valid).unwrap();
        assert_eq!((w.out_h, w.out_w), (3, 2));
        let p = Padding::Explicit {
            top: 3,
            bottom: 3,
            left: 3,
            right: 3,
        };
        let w = window_2d("t", (224, 224), (7, 7), (2, 2), p).unwrap();
        assert_eq!((w.out_h, w.out_w), (112, 112));
    }

    #[test]
    fn too_small_is_an_error() {
        assert!(window_2d("t", (2, 2), (3, 3), (1, 1), Padding::Valid).is_err());
        assert!(window_2d("t", (4, 4), (3, 3), (0, 1), Padding::Valid).is_err());
    }
}
