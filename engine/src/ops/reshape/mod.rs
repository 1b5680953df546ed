//! Reshape and flatten (no data moves).
//!
//! STUB: signature fixed, body to be written (forward, backward, cpu.rs).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Reshape and flatten (no data moves).
pub fn reshape(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let _ = (x, shape);
    Err(Error::unsupported("reshape", "not implemented yet"))
}

/// `[n, ...]` to `[n, prod(...)]`.
pub fn flatten(x: &Tensor) -> Result<Tensor> {
    let _ = (x);
    Err(Error::unsupported("flatten", "not implemented yet"))
}
