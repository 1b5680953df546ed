//! Fused softmax + cross-entropy, mean over the batch.
//!
//! STUB: signature fixed, body to be written (forward, backward, cpu.rs).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Fused softmax + cross-entropy, mean over the batch.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<Tensor> {
    let _ = (logits, labels);
    Err(Error::unsupported(
        "softmax_cross_entropy",
        "not implemented yet",
    ))
}

/// Softmax along the last axis.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let _ = (x);
    Err(Error::unsupported("softmax", "not implemented yet"))
}
