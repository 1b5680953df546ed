//! Checking a set of named tensors against what a model expects, before any
//! of it is used: the first problem found is the error, stated so the user
//! knows which tensor and what to do.

use crate::error::{Error, Result};
use crate::{NamedTensors, WeightSpec};
use engine::DType;
use std::collections::HashMap;

/// Checks that `tensors` holds exactly the weights of `spec`: same names, same
/// shapes, dtype f32. Order does not matter.
///
/// The error names the first problem, in the model's order: a missing tensor,
/// a wrong shape, a wrong dtype; then the first extra tensor; e.g. "weights
/// file has 26 tensors, the model expects 26; tensor block5_conv3/kernel has
/// shape [3,3,256,512], expected [3,3,512,512]".
pub fn validate(tensors: &NamedTensors, spec: &[WeightSpec]) -> Result<()> {
    let counts = format!(
        "weights file has {} tensors, the model expects {}",
        tensors.len(),
        spec.len()
    );
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(tensors.len());
    for (i, (name, _)) in tensors.iter().enumerate() {
        if let Some(first) = by_name.insert(name.as_str(), i) {
            return Err(Error::Mismatch(format!(
                "{counts}; tensor {name} appears twice (positions {first} and {i})"
            )));
        }
    }
    let known = spec
        .iter()
        .filter(|w| by_name.contains_key(w.name.as_str()))
        .count();
    for w in spec {
        let Some(&i) = by_name.get(w.name.as_str()) else {
            let hint = if known == 0 {
                "; HINT: no tensor name matches this model: is this file for another model?"
            } else {
                ""
            };
            return Err(Error::Mismatch(format!(
                "{counts}; tensor {} is missing{hint}",
                w.name
            )));
        };
        let t = &tensors[i].1;
        if t.shape() != w.shape.as_slice() {
            return Err(Error::Mismatch(format!(
                "{counts}; tensor {} has shape {}, expected {}",
                w.name,
                fmt_shape(t.shape()),
                fmt_shape(&w.shape)
            )));
        }
        if t.dtype() != DType::F32 {
            return Err(Error::Mismatch(format!(
                "{counts}; tensor {} has dtype {}, expected f32",
                w.name,
                t.dtype()
            )));
        }
    }
    if tensors.len() > spec.len() {
        let wanted: HashMap<&str, ()> = spec.iter().map(|w| (w.name.as_str(), ())).collect();
        if let Some((name, _)) = tensors
            .iter()
            .find(|(n, _)| !wanted.contains_key(n.as_str()))
        {
            return Err(Error::Mismatch(format!(
                "{counts}; tensor {name} is not a weight of this model"
            )));
        }
    }
    Ok(())
}

/// `[3,3,512,512]`: the compact form used in every message.
pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(","))
}
