//! Batch normalisation over the last (channel) axis.
//!
//! STUB: signature fixed, body to be written (forward, backward, cpu.rs).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Batch normalisation over the last (channel) axis.
pub fn batch_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    moving_mean: &Tensor,
    moving_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let _ = (x, gamma, beta, moving_mean, moving_var, eps);
    Err(Error::unsupported("batch_norm", "not implemented yet"))
}

/// Training mode: normalises with the batch's own statistics and returns
/// `(y, batch_mean, batch_var)` (biased variance, as Keras) for the layer's
/// moving-average update.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let _ = (x, gamma, beta, eps);
    Err(Error::unsupported(
        "batch_norm_train",
        "not implemented yet",
    ))
}
