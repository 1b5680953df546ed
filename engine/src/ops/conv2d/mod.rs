//! 2-D convolution, NHWC input `[n, h, w, c]`, Keras HWIO kernel `[kh, kw, c, o]`,
//! optional bias `[o]`, output `[n, oh, ow, o]`.
//!
//! STUB: signature fixed, body to be written (forward, backward, cpu.rs).

use super::padding::Padding;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// 2-D convolution, NHWC input `[n, h, w, c]`, Keras HWIO kernel `[kh, kw, c, o]`,
pub fn conv2d(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    let _ = (x, kernel, bias, stride, padding);
    Err(Error::unsupported("conv2d", "not implemented yet"))
}
