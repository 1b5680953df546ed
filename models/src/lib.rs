//! thaw's models: Keras VGG16 and ResNet50, layer for layer, with the
//! Keras layer and weight names, so Keras's ImageNet weights load by name.
//!
//! ```text
//! images (NHWC RGB 0..255) ─▶ engine::ops::bilinear_resize ─▶ preprocess_input_caffe
//!   ─▶ Backbone::forward (Vgg16 | ResNet50) ─▶ features [n, c] or [n, h, w, c]
//! ```
//!
//! - [`layers`]: the Keras layers (Conv2D, Dense, BatchNormalization, pools,
//!   ZeroPadding2D, Flatten, Dropout, Add), thin wrappers over engine ops.
//! - [`vgg16`] and [`resnet50`]: the two architectures of `keras.applications`.
//! - [`backbone`]: the [`Backbone`] trait they share (forward, activations by
//!   layer name, weight spec, loading, freezing), [`ModelOptions`] and
//!   [`build`] by name.
//! - [`preprocess`]: Keras's 'caffe' `preprocess_input`.
//!
//! Weights are `engine::Param`s named `<layer>/<weight>`; the file format and
//! validation live in the `weights` crate.

#![warn(missing_docs)]

pub mod backbone;
pub mod error;
pub mod layers;
pub mod preprocess;
pub mod resnet50;
pub mod vgg16;

pub use backbone::{build, Backbone, ModelOptions, Pooling, MIN_INPUT_SIZE, TOP_INPUT_SIZE};
pub use error::{Error, Result};
pub use preprocess::{preprocess_input_caffe, CAFFE_MEAN_BGR};
pub use resnet50::ResNet50;
pub use vgg16::Vgg16;
