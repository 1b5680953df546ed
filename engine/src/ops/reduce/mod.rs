//! Sum and mean of all elements, to a scalar.
//!
//! STUB: signature fixed, body to be written (forward, backward, cpu.rs).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Sum and mean of all elements, to a scalar.
pub fn sum(x: &Tensor) -> Result<Tensor> {
    let _ = (x);
    Err(Error::unsupported("sum", "not implemented yet"))
}

/// Mean of all elements, to a scalar.
pub fn mean(x: &Tensor) -> Result<Tensor> {
    let _ = (x);
    Err(Error::unsupported("mean", "not implemented yet"))
}
