//! Zero padding of an NHWC tensor's height and width (Keras ZeroPadding2D).
//!
//! STUB: signature fixed, body to be written (forward, backward, cpu.rs).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Zero padding of an NHWC tensor's height and width (Keras ZeroPadding2D).
pub fn zero_pad2d(
    x: &Tensor,
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
) -> Result<Tensor> {
    let _ = (x, top, bottom, left, right);
    Err(Error::unsupported("zero_pad2d", "not implemented yet"))
}
