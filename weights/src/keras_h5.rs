//! The converter from Keras legacy `.h5` weight files (placeholder while it is written).

use crate::error::{Error, Result};
use crate::{NamedTensors, WeightSpec};
use std::path::Path;

/// Reads a Keras legacy `.h5` weights file into tensors named and shaped as `spec`.
pub fn convert_keras_h5(path: impl AsRef<Path>, spec: &[WeightSpec]) -> Result<NamedTensors> {
    let _ = spec;
    Err(Error::corrupt(
        path.as_ref(),
        "the .h5 converter is not written yet",
    ))
}
