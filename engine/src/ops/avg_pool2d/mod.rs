//! Average pooling over NHWC windows; padded cells are left out of the count.
//!
//! STUB: signature fixed, body to be written (forward, backward, cpu.rs).

use super::padding::Padding;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Average pooling over NHWC windows; padded cells are left out of the count.
pub fn avg_pool2d(
    x: &Tensor,
    pool: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    let _ = (x, pool, stride, padding);
    Err(Error::unsupported("avg_pool2d", "not implemented yet"))
}
