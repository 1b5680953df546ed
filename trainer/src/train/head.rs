//! The classifier head trained on top of the frozen backbone: the part of the
//! model that learns CIFAR-10's classes from the backbone's pooled features.
//!
//! ```text
//! mlp    (default): features [n, C] ─▶ head_dense1 (C→256, relu) ─▶ head_dropout (0.5) ─▶ head_dense2 (256→K) ─▶ softmax
//! linear:           features [n, C] ─▶ head_dense1 (C→K) ─▶ softmax
//! ```
//!
//! Global average pooling (the "GAP" of `GAP -> Dense -> ...`) is the
//! backbone's `pooling='avg'`, so the head starts from `[n, C]` features,
//! whether they come from the feature cache or from a live backbone pass.
//!
//! Optionally (`--standardize`) a Keras `Normalization` layer adapted on the
//! training features comes first: `head_norm`, y = (x − mean) / sqrt(variance)
//! per feature, with `head_norm/mean` and `head_norm/variance` frozen weights
//! saved with the head. Features of ImageNet weights do not need it; those of
//! untrained or seeded backbones (values in the hundreds, a large common
//! offset) cannot be learned from without it.
//!
//! The head lives on one device (the CPU, or the backbone's GPU while
//! fine-tuning: [`Head::to_device`]); its input must be there too.
//!
//! The head returns logits; the loss is the fused softmax cross-entropy and
//! probabilities are `softmax(logits)`. Kernels start as Keras's
//! `glorot_uniform` (U(±sqrt(6 / (fan_in + fan_out)))) and biases at zero,
//! drawn from the seeded counter-based generator (`engine::rng`), so the same
//! seed gives the same head. Weights are named `head_dense1/kernel`,
//! `head_dense1/bias`, ... in the saved model file.

use crate::error::{Error, Result};
use engine::{ops, Device, Param, Tensor};
use models::layers::{Activation, Dense, Dropout, Init, WeightedLayer};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

/// Units of the hidden layer of the default head.
pub const HIDDEN_UNITS: usize = 256;
/// Dropout rate of the default head.
pub const DROPOUT_RATE: f64 = 0.5;
/// Every head weight's name starts with this (it tells them apart from the
/// backbone's in the saved model file).
pub const HEAD_PREFIX: &str = "head_";

/// Which head to put on the features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// Dense(256, relu) -> Dropout(0.5) -> Dense(K): the default.
    Mlp,
    /// Dense(K) alone: multinomial logistic regression on the features.
    Linear,
}

impl HeadKind {
    /// The name stored in the model file's metadata: `mlp` or `linear`.
    pub fn as_str(self) -> &'static str {
        match self {
            HeadKind::Mlp => "mlp",
            HeadKind::Linear => "linear",
        }
    }
}

impl fmt::Display for HeadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HeadKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<HeadKind> {
        match s {
            "mlp" => Ok(HeadKind::Mlp),
            "linear" => Ok(HeadKind::Linear),
            other => Err(Error::Usage(format!(
                "unknown head kind '{other}': use mlp or linear"
            ))),
        }
    }
}

/// A classifier head: dense layers over `[n, features]` inputs, giving `[n, classes]` logits.
pub struct Head {
    kind: HeadKind,
    features: usize,
    classes: usize,
    norm: Option<Normalization>,
    dense1: Dense,
    dropout: Option<Dropout>,
    dense2: Option<Dense>,
}

/// Keras `Normalization` over the last axis: y = (x − mean) / sqrt(variance),
/// statistics fixed by [`Head::adapt`] (frozen weights, never trained).
struct Normalization {
    mean: Param,
    variance: Param,
    /// −mean and 1/std as the forward pass uses them, on the input's device,
    /// with the ids of the mean and variance values they were made from:
    /// made once, not at every batch (on a GPU that would copy the
    /// statistics to the host and back at every step).
    derived: Mutex<Option<Derived>>,
}

/// [`Normalization`]'s forward operands.
#[derive(Clone)]
struct Derived {
    from: (u64, u64),
    device: Device,
    neg_mean: Tensor,
    inv_std: Tensor,
}

impl Normalization {
    /// (−mean, 1/max(sqrt(variance), ε)) on `device`, made anew only when the
    /// statistics or the device changed.
    fn operands(&self, device: Device) -> Result<(Tensor, Tensor)> {
        let (mean, variance) = (self.mean.value(), self.variance.value());
        let from = (mean.id(), variance.id());
        let mut derived = self.derived.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = derived
            .as_ref()
            .filter(|d| d.from == from && d.device == device)
        {
            return Ok((d.neg_mean.clone(), d.inv_std.clone()));
        }
        let d = mean.numel();
        let neg_mean: Vec<f32> = mean.try_to_vec_f32()?.iter().map(|m| -m).collect();
        let inv_std: Vec<f32> = variance
            .try_to_vec_f32()?
            .iter()
            .map(|&v| (1.0 / (v as f64).max(0.0).sqrt().max(NORM_EPSILON)) as f32)
            .collect();
        let made = Derived {
            from,
            device,
            neg_mean: Tensor::from_vec(neg_mean, &[d])?.to_device(device)?,
            inv_std: Tensor::from_vec(inv_std, &[d])?.to_device(device)?,
        };
        *derived = Some(made.clone());
        Ok((made.neg_mean, made.inv_std))
    }
}

/// Smallest standard deviation divided by (Keras clamps sqrt(variance) the same way).
const NORM_EPSILON: f64 = 1e-7;
/// Each feature's standard deviation is floored at this fraction of the mean one.
const STD_FLOOR: f64 = 0.01;

impl Head {
    /// A freshly initialised head of `kind` from `features` inputs to
    /// `classes` outputs; `seed` draws the Glorot kernels and the dropout masks.
    pub fn new(kind: HeadKind, features: usize, classes: usize, seed: u64) -> Result<Head> {
        if features == 0 || classes < 2 {
            return Err(Error::Usage(format!(
                "head: {features} input features and {classes} classes; a head needs at least \
                 one feature and two classes"
            )));
        }
        let mut init = Init::new(seed);
        let head = match kind {
            HeadKind::Mlp => Head {
                kind,
                features,
                classes,
                norm: None,
                dense1: Dense::new(
                    "head_dense1",
                    features,
                    HIDDEN_UNITS,
                    Activation::Relu,
                    &mut init,
                ),
                // Masks use their own seed stream, apart from the initialisers'.
                dropout: Some(
                    Dropout::new("head_dropout", DROPOUT_RATE, seed ^ 0x64_726f_706f_7574)
                        .map_err(|e| Error::Usage(e.to_string()))?,
                ),
                dense2: Some(Dense::new(
                    "head_dense2",
                    HIDDEN_UNITS,
                    classes,
                    Activation::Linear,
                    &mut init,
                )),
            },
            HeadKind::Linear => Head {
                kind,
                features,
                classes,
                norm: None,
                dense1: Dense::new(
                    "head_dense1",
                    features,
                    classes,
                    Activation::Linear,
                    &mut init,
                ),
                dropout: None,
                dense2: None,
            },
        };
        Ok(head)
    }

    /// Puts a feature standardization layer (`head_norm`) first, its mean
    /// and variance taken from `rows` (`[n, features]` row-major, n > 0), as
    /// Keras's `Normalization.adapt`, with each variance floored at
    /// (1% of the mean standard deviation)². Statistics are accumulated in f64.
    pub fn adapt(mut self, rows: &[f32]) -> Result<Head> {
        let d = self.features;
        let n = rows.len() / d;
        if n == 0 || rows.len() != n * d {
            return Err(Error::Usage(format!(
                "head: cannot adapt the normalization to {} values of {d} features",
                rows.len()
            )));
        }
        let mut mean = vec![0f64; d];
        for r in rows.chunks_exact(d) {
            for (m, &x) in mean.iter_mut().zip(r) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0f64; d];
        for r in rows.chunks_exact(d) {
            for ((v, &x), m) in var.iter_mut().zip(r).zip(&mean) {
                *v += (x as f64 - m).powi(2);
            }
        }
        var.iter_mut().for_each(|v| *v /= n as f64);
        // Unlike Keras (which floors sqrt(variance) at 1e-7), floor each
        // feature's standard deviation at 1% of the mean one: a feature that
        // is (almost) always 0 in training (a dead ReLU) would otherwise
        // scale its rare non-zero values by up to 1e7 at test time.
        let mean_std = var.iter().map(|v| v.sqrt()).sum::<f64>() / d as f64;
        let floor = (STD_FLOOR * mean_std).max(NORM_EPSILON).powi(2);
        var.iter_mut().for_each(|v| *v = v.max(floor));
        let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let mean = Param::new("head_norm/mean", Tensor::from_vec(to_f32(mean), &[d])?);
        let variance = Param::new("head_norm/variance", Tensor::from_vec(to_f32(var), &[d])?);
        mean.set_trainable(false);
        variance.set_trainable(false);
        self.norm = Some(Normalization {
            mean,
            variance,
            derived: Mutex::new(None),
        });
        Ok(self)
    }

    /// Whether the head standardizes its input (`head_norm`).
    pub fn standardizes(&self) -> bool {
        self.norm.is_some()
    }

    /// Which head this is.
    pub fn kind(&self) -> HeadKind {
        self.kind
    }

    /// Number of input features.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Number of classes (outputs).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Logits `[n, classes]` for features `[n, features]`; `training` turns
    /// dropout on (each training call draws a fresh, seeded mask).
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 2 || s[1] != self.features {
            return Err(Error::Usage(format!(
                "head ({}): input has shape {s:?}, expected [n, {}] pooled backbone features",
                self.kind, self.features
            )));
        }
        let model = |e: models::Error| Error::Usage(format!("head ({}): {e}", self.kind));
        let mut y = x.clone();
        if let Some(norm) = &self.norm {
            // (x − mean) · 1/max(sqrt(var), ε): two broadcast ops over [n, features].
            let (neg_mean, inv_std) = norm.operands(x.device())?;
            y = ops::add(&y, &neg_mean)?;
            y = ops::mul(&y, &inv_std)?;
        }
        let mut y = self.dense1.forward(&y).map_err(model)?;
        if let Some(dropout) = &self.dropout {
            y = dropout.forward(&y, training).map_err(model)?;
        }
        if let Some(dense2) = &self.dense2 {
            y = dense2.forward(&y).map_err(model)?;
        }
        Ok(y)
    }

    /// Class probabilities `[n, classes]` (softmax of the logits), inference mode.
    pub fn predict_proba(&self, x: &Tensor) -> Result<Tensor> {
        let _guard = engine::no_grad();
        Ok(ops::softmax(&self.forward(x, false)?)?)
    }

    /// Where the head's weights are (the CPU, or a GPU while fine-tuning).
    pub fn device(&self) -> Device {
        self.dense1.kernel.value().device()
    }

    /// Moves every weight to `device` (the normalization's statistics too);
    /// its input must then be on `device` as well.
    pub fn to_device(&self, device: Device) -> Result<()> {
        for p in self.params() {
            p.set_value(p.value().to_device(device)?)?;
        }
        Ok(())
    }

    /// Every weight, in layer order (the normalization's mean and variance,
    /// then kernel, bias of each dense layer). The normalization's are frozen.
    pub fn params(&self) -> Vec<Param> {
        let mut p = Vec::new();
        if let Some(norm) = &self.norm {
            p.push(norm.mean.clone());
            p.push(norm.variance.clone());
        }
        p.extend(self.dense1.weights());
        if let Some(d) = &self.dense2 {
            p.extend(d.weights());
        }
        p
    }

    /// The current weights by name (what the model file stores), as snapshots.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.params()
            .iter()
            .map(|p| (p.name().to_string(), p.value()))
            .collect()
    }

    /// Sets every weight from `tensors` (names and shapes must match exactly;
    /// the first mismatch is named and nothing is changed).
    pub fn load(&self, tensors: &[(String, Tensor)]) -> Result<()> {
        let params = self.params();
        for p in &params {
            let Some((_, t)) = tensors.iter().find(|(n, _)| n == p.name()) else {
                return Err(Error::Usage(format!(
                    "head ({}): weight {} is missing (got {})",
                    self.kind,
                    p.name(),
                    names(tensors)
                )));
            };
            if t.shape() != p.shape().as_slice() || t.dtype() != p.value().dtype() {
                return Err(Error::Usage(format!(
                    "head ({}): weight {} has shape {:?} {}, expected {:?} {}",
                    self.kind,
                    p.name(),
                    t.shape(),
                    t.dtype(),
                    p.shape(),
                    p.value().dtype()
                )));
            }
        }
        if let Some((extra, _)) = tensors
            .iter()
            .find(|(n, _)| !params.iter().any(|p| p.name() == n))
        {
            return Err(Error::Usage(format!(
                "head ({}): unexpected weight {extra}; a {} head has {}",
                self.kind,
                self.kind,
                params
                    .iter()
                    .map(|p| p.name().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for p in &params {
            let (_, t) = tensors
                .iter()
                .find(|(n, _)| n == p.name())
                .expect("checked above");
            p.set_value(t.clone())?;
        }
        Ok(())
    }
}

fn names(tensors: &[(String, Tensor)]) -> String {
    if tensors.is_empty() {
        return "none".into();
    }
    tensors
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardization_operands_are_made_once_and_again_when_the_statistics_change() {
        let rows: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect(); // 4 rows of 3
        let head = Head::new(HeadKind::Linear, 3, 2, 1)
            .unwrap()
            .adapt(&rows)
            .unwrap();
        let norm = head.norm.as_ref().unwrap();
        let (m1, s1) = norm.operands(Device::Cpu).unwrap();
        let (m2, s2) = norm.operands(Device::Cpu).unwrap();
        assert_eq!(
            (m1.id(), s1.id()),
            (m2.id(), s2.id()),
            "reused, not made anew"
        );
        // Columns 0, 1.5, 3, 4.5 (+ 0.5, + 1): means 2.25, 2.75, 3.25, variances 2.8125.
        assert_eq!(m1.to_vec_f32(), vec![-2.25, -2.75, -3.25]);
        let inv = (1.0 / 2.8125f64.sqrt()) as f32;
        assert_eq!(s1.to_vec_f32(), vec![inv; 3]);
        // New statistics (a loaded model): the operands follow.
        let mean = Tensor::from_vec(vec![1f32, 2.0, 3.0], &[3]).unwrap();
        norm.mean.set_value(mean).unwrap();
        let (m3, _) = norm.operands(Device::Cpu).unwrap();
        assert_eq!(m3.to_vec_f32(), vec![-1.0, -2.0, -3.0]);
        // The head's input and weights stay on the CPU here.
        assert_eq!(head.device(), Device::Cpu);
        head.to_device(Device::Cpu).unwrap();
        let x = Tensor::from_vec(rows, &[4, 3]).unwrap();
        assert_eq!(head.forward(&x, false).unwrap().shape(), &[4, 2]);
    }
}
