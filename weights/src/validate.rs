//! Checking a set of named tensors against what a model expects, before any
//! of it is used: the first problem found is the error, stated so the user
//! knows which tensor and what to do.

use crate::error::{Error, Result};
use crate::{NamedTensors, WeightSpec};
use engine::DType;
use std::collections::HashMap;

/// Checks that `tensors` holds exactly the weights of `spec`: same names, same
/// shapes, dtype f32, and sound values ([`check_values`]). Order does not
/// matter.
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
    check_values(tensors)?;
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

/// Whether `name` is a batch-norm (or standardization) variance: Keras's
/// `.../moving_variance`, a `.../variance`, PyTorch's `.../running_var`.
fn is_variance(name: &str) -> bool {
    name.ends_with("moving_variance")
        || name.ends_with("/variance")
        || name.ends_with("running_var")
}

/// Checks that every value of every tensor is finite, and that variances
/// (see [`is_variance`]) are not negative: the error names the first tensor
/// that fails, the value and its flat index. NaN or infinite weights would
/// otherwise run silently and give nonsense.
pub fn check_values(tensors: &NamedTensors) -> Result<()> {
    for (name, t) in tensors {
        let owned;
        let values = match t.as_slice::<f32>() {
            Ok(v) => v,
            Err(_) => {
                owned = t.try_to_vec_f32().map_err(|e| {
                    Error::Mismatch(format!("tensor {name} cannot be checked: {e}"))
                })?;
                &owned
            }
        };
        let hint = "HINT: use an intact weights file (download or convert it again, or \
                    retrain the model)";
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Corrupt(format!(
                "tensor {name} holds {} at flat index {i} (of {}), a value that is not finite: \
                 the file is damaged or the training that wrote it diverged. {hint}",
                values[i],
                values.len()
            )));
        }
        if is_variance(name) {
            if let Some(i) = values.iter().position(|&v| v < 0.0) {
                return Err(Error::Corrupt(format!(
                    "tensor {name} holds {} at flat index {i}: a batch-norm variance is never \
                     negative, so the file is damaged. {hint}",
                    values[i]
                )));
            }
        }
    }
    Ok(())
}

/// `[3,3,512,512]`: the compact form used in every message.
pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::Tensor;

    fn spec() -> Vec<WeightSpec> {
        vec![
            WeightSpec::new("conv1/kernel", &[2, 2]),
            WeightSpec::new("conv1_bn/moving_variance", &[3]),
        ]
    }

    fn tensors(kernel: [f32; 4], variance: [f32; 3]) -> NamedTensors {
        vec![
            (
                "conv1/kernel".into(),
                Tensor::from_vec(kernel.to_vec(), &[2, 2]).unwrap(),
            ),
            (
                "conv1_bn/moving_variance".into(),
                Tensor::from_vec(variance.to_vec(), &[3]).unwrap(),
            ),
        ]
    }

    #[test]
    fn non_finite_values_and_negative_variances_are_refused_by_name() {
        validate(&tensors([1.0, -2.0, 0.0, 1e30], [0.0, 1.0, 2.0]), &spec()).unwrap();
        for (kernel, variance, name, what) in [
            (
                [1.0, f32::NAN, 0.0, 0.0],
                [1.0; 3],
                "conv1/kernel",
                "NaN at flat index 1",
            ),
            (
                [0.0, 0.0, 0.0, f32::INFINITY],
                [1.0; 3],
                "conv1/kernel",
                "inf at flat index 3",
            ),
            (
                [0.0; 4],
                [1.0, f32::NEG_INFINITY, 1.0],
                "conv1_bn/moving_variance",
                "-inf",
            ),
            (
                [0.0; 4],
                [1.0, 1.0, -0.5],
                "conv1_bn/moving_variance",
                "-0.5 at flat index 2",
            ),
        ] {
            let e = validate(&tensors(kernel, variance), &spec())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("tensor {name}")) && e.contains(what) && e.contains("HINT"),
                "{e}"
            );
        }
    }
}
