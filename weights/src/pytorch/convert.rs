//! A PyTorch state dict to a model's weights, by name.
//!
//! A thaw model whose weights come from a PyTorch checkpoint names each
//! layer by the checkpoint's module path and each weight as Keras does
//! (`<module>/<kind>`), so one rule maps the two (the EfficientNet-Lite
//! models, `models/src/efficientnet_lite.rs`):
//!
//! | thaw weight | PyTorch tensor | layout |
//! |---|---|---|
//! | `<m>/kernel`, rank 4 | `<m>.weight` (O, I, kh, kw) | to HWIO `[kh, kw, I, O]` |
//! | `<m>/depthwise_kernel` | `<m>.weight` (C·M, 1, kh, kw) | to `[kh, kw, C, M]` |
//! | `<m>/kernel`, rank 2 | `<m>.weight` (out, in) | to `[in, out]` |
//! | `<m>/bias` | `<m>.bias` | as is |
//! | `<m>/gamma`, `beta` | `<m>.weight`, `<m>.bias` | as is |
//! | `<m>/moving_mean`, `moving_variance` | `<m>.running_mean`, `<m>.running_var` | as is |

use crate::error::{Error, Result};
use crate::validate::fmt_shape;
use crate::{NamedTensors, WeightSpec};
use engine::Tensor;
use std::collections::HashMap;

/// The PyTorch tensor name of a thaw weight, and its PyTorch shape.
fn torch_name_and_shape(w: &WeightSpec) -> Result<(String, Vec<usize>)> {
    let s = &w.shape;
    let (suffix, shape) = match (w.kind(), s.len()) {
        ("kernel", 4) => ("weight", vec![s[3], s[2], s[0], s[1]]),
        ("depthwise_kernel", 4) => ("weight", vec![s[2] * s[3], 1, s[0], s[1]]),
        ("kernel", 2) => ("weight", vec![s[1], s[0]]),
        ("bias", _) => ("bias", s.clone()),
        ("gamma", _) => ("weight", s.clone()),
        ("beta", _) => ("bias", s.clone()),
        ("moving_mean", _) => ("running_mean", s.clone()),
        ("moving_variance", _) => ("running_var", s.clone()),
        _ => {
            return Err(Error::Mismatch(format!(
                "thaw weight {} has no PyTorch counterpart (kind '{}', shape {})",
                w.name,
                w.kind(),
                fmt_shape(s)
            )))
        }
    };
    Ok((format!("{}.{suffix}", w.layer()), shape))
}

/// `x` (PyTorch layout, shape `torch`) in thaw's layout for `w`.
fn to_thaw_layout(x: &[f32], torch: &[usize], w: &WeightSpec) -> Vec<f32> {
    match (w.kind(), torch.len()) {
        // (O, I, kh, kw) -> (kh, kw, I, O); a depthwise (C·M, 1, kh, kw)
        // becomes (kh, kw, 1, C·M), which is (kh, kw, C, M) in memory.
        ("kernel" | "depthwise_kernel", 4) => {
            let (o, i, kh, kw) = (torch[0], torch[1], torch[2], torch[3]);
            let mut y = vec![0.0; x.len()];
            for oo in 0..o {
                for ii in 0..i {
                    for h in 0..kh {
                        for ww in 0..kw {
                            y[((h * kw + ww) * i + ii) * o + oo] =
                                x[((oo * i + ii) * kh + h) * kw + ww];
                        }
                    }
                }
            }
            y
        }
        ("kernel", 2) => {
            let (out, inp) = (torch[0], torch[1]);
            let mut y = vec![0.0; x.len()];
            for r in 0..out {
                for c in 0..inp {
                    y[c * out + r] = x[r * inp + c];
                }
            }
            y
        }
        _ => x.to_vec(),
    }
}

/// The weights of `spec` (thaw names and shapes, in spec order) from a
/// PyTorch state dict as [`crate::read_pytorch_state_dict`] returns it
/// (PyTorch names and layouts), with the layouts changed as the table in
/// this module says.
///
/// The error names the first problem: a tensor the model needs that the
/// checkpoint lacks, one of the wrong shape (a checkpoint of another model
/// or variant), a tensor of the checkpoint the model has no place for, or a
/// value that is not finite (a damaged file). Each names the PyTorch tensor
/// and the thaw weight and gives both counts.
pub fn convert_pytorch_state_dict(
    state: &NamedTensors,
    spec: &[WeightSpec],
) -> Result<NamedTensors> {
    let counts = format!(
        "the checkpoint has {} tensors, the model expects {}",
        state.len(),
        spec.len()
    );
    let hint = "HINT: is it a checkpoint of another model or variant?";
    let by_name: HashMap<&str, &Tensor> = state.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Vec::with_capacity(spec.len());
    for w in spec {
        let (name, shape) = torch_name_and_shape(w)?;
        let Some(t) = by_name.get(name.as_str()) else {
            return Err(Error::Mismatch(format!(
                "{counts}; tensor {name} (thaw's {}) is missing; {hint}",
                w.name
            )));
        };
        if t.shape() != shape.as_slice() {
            return Err(Error::Mismatch(format!(
                "{counts}; tensor {name} has shape {}, the model expects {} (thaw's {} {}); \
                 {hint}",
                fmt_shape(t.shape()),
                fmt_shape(&shape),
                w.name,
                fmt_shape(&w.shape)
            )));
        }
        let x = t
            .try_to_vec_f32()
            .map_err(|e| Error::Mismatch(format!("tensor {name} cannot be read as f32 ({e})")))?;
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::Mismatch(format!(
                "tensor {name} holds a value that is not finite ({} at flat index {i}): the \
                 checkpoint is damaged; download it again",
                x[i]
            )));
        }
        let y = Tensor::from_vec(to_thaw_layout(&x, &shape, w), &w.shape)
            .map_err(|e| Error::Mismatch(format!("tensor {name}: {e}")))?;
        out.push((w.name.clone(), y));
    }
    if state.len() > out.len() {
        let used: HashMap<String, ()> = spec
            .iter()
            .filter_map(|w| torch_name_and_shape(w).ok())
            .map(|(n, _)| (n, ()))
            .collect();
        if let Some((name, t)) = state.iter().find(|(n, _)| !used.contains_key(n)) {
            return Err(Error::Mismatch(format!(
                "{counts}; tensor {name} {} is not a weight of this model; {hint}",
                fmt_shape(t.shape())
            )));
        }
    }
    Ok(out)
}
