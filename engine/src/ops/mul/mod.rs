//! Elementwise product with NumPy broadcasting.
//!
//! STUB: signature fixed, body to be written (forward, backward, cpu.rs).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Elementwise product with NumPy broadcasting.
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let _ = (a, b);
    Err(Error::unsupported("mul", "not implemented yet"))
}
