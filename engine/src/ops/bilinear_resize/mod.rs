//! Bilinear resize of NHWC images with half-pixel centres (tf.image.resize).
//!
//! STUB: signature fixed, body to be written (forward, backward, cpu.rs).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Bilinear resize of NHWC images with half-pixel centres (tf.image.resize).
pub fn bilinear_resize(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let _ = (x, out_h, out_w);
    Err(Error::unsupported("bilinear_resize", "not implemented yet"))
}
