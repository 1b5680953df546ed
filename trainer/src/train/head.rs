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
//! The head returns logits; the loss is the fused softmax cross-entropy and
//! probabilities are `softmax(logits)`. Kernels start as Keras's
//! `glorot_uniform` (U(±sqrt(6 / (fan_in + fan_out)))) and biases at zero,
//! drawn from the seeded counter-based generator (`engine::rng`), so the same
//! seed gives the same head. Weights are named `head_dense1/kernel`,
//! `head_dense1/bias`, ... in the saved model file.

use crate::error::{Error, Result};
use engine::{ops, Param, Tensor};
use models::layers::{Activation, Dense, Dropout, Init, WeightedLayer};
use std::fmt;
use std::str::FromStr;

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
    dense1: Dense,
    dropout: Option<Dropout>,
    dense2: Option<Dense>,
}

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
        let mut y = self.dense1.forward(x).map_err(model)?;
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

    /// Every weight, in layer order (kernel, bias of each dense layer).
    pub fn params(&self) -> Vec<Param> {
        let mut p = self.dense1.weights();
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
