//! Inverted dropout: keeps each element with probability 1 − rate, scaled by 1/(1 − rate).
//!
//! STUB: signature fixed, body to be written (forward, backward, cpu.rs).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Inverted dropout: keeps each element with probability 1 − rate, scaled by 1/(1 − rate).
pub fn dropout(x: &Tensor, rate: f64, seed: u64, stream: u64) -> Result<Tensor> {
    let _ = (x, rate, seed, stream);
    Err(Error::unsupported("dropout", "not implemented yet"))
}
