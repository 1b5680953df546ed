//! Elementwise sum with NumPy broadcasting.
//!
//! STUB: signature fixed, body to be written (forward, backward, cpu.rs).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Elementwise sum with NumPy broadcasting.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let _ = (a, b);
    Err(Error::unsupported("add", "not implemented yet"))
}
