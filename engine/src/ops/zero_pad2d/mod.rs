//! Zero padding of an NHWC tensor's height and width (Keras `ZeroPadding2D`),
//! as used before ResNet50's 7×7 stem conv and its first max pool.
//!
//! ```text
//! y[b, i, j, ch] = x[b, i − top, j − left, ch]   if the source is inside x, else 0
//! ```
//!
//! `y` is `[n, top + h + bottom, left + w + right, c]`.
//!
//! Backward: the padding contributes nothing, so dx is dy cropped back to
//! `x`'s window: `dx[b, i, j, ch] = dy[b, i + top, j + left, ch]`.
//!
//! Tests: gradient check `zero_pad2d_uneven_sides`
//! (`tests/tests/gradcheck_window.rs`); reference against Keras
//! `zero_pad2d_matches_keras` and
//! `resnet_stem_zero_pad_then_conv_matches_keras`
//! (`tests/tests/reference_window.rs`); GPU parity case "zero_pad2d (3, 3, 3,
//! 3)" (`tests/tests/cuda_parity.rs`).

mod cpu;
mod cuda;
pub(crate) use cpu::PadGeometry;
pub(crate) use cuda::{crop as cuda_crop, pad as cuda_pad};

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

const OP: &str = "zero_pad2d";

/// Pads height (`top`, `bottom` rows) and width (`left`, `right` columns) of an
/// NHWC tensor with zeros. Errors on a rank other than 4 or a zero-sized input.
pub fn zero_pad2d(
    x: &Tensor,
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
) -> Result<Tensor> {
    let [n, h, w, c] = x.dims(OP, "input (NHWC [n, h, w, c])")?;
    if n * h * w * c == 0 {
        return Err(Error::shape(
            OP,
            format!("input {:?} has a zero-sized dimension", x.shape()),
        ));
    }
    let g = cpu::PadGeometry {
        n,
        h,
        w,
        c,
        top,
        left,
        ph: top + h + bottom,
        pw: left + w + right,
    };
    let y = match x.storage() {
        Storage::Cpu(s) => Storage::Cpu(cpu::pad(s, &g)),
        Storage::Cuda(s) => Storage::Cuda(cuda::pad(s, &g)?),
    };
    Ok(record(
        OP,
        y,
        vec![n, g.ph, g.pw, c],
        &[x],
        Box::new(move |dy, _| {
            let dx = match dy.storage() {
                Storage::Cpu(s) => Storage::Cpu(cpu::crop(s, &g)),
                Storage::Cuda(s) => Storage::Cuda(cuda::crop(s, &g)?),
            };
            Ok(vec![Some(Tensor::from_storage(dx, &[n, h, w, c])?)])
        }),
    ))
}
