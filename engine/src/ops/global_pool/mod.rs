//! Global average and max pooling: NHWC `[n, h, w, c]` to `[n, c]`.
//!
//! STUB: signature fixed, body to be written (forward, backward, cpu.rs).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Global average and max pooling: NHWC `[n, h, w, c]` to `[n, c]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let _ = (x);
    Err(Error::unsupported("global_avg_pool", "not implemented yet"))
}

/// Global max pooling, `[n, h, w, c]` to `[n, c]`.
pub fn global_max_pool(x: &Tensor) -> Result<Tensor> {
    let _ = (x);
    Err(Error::unsupported("global_max_pool", "not implemented yet"))
}
