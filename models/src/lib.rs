//! thaw's models: Keras VGG16, ResNet50, MobileNet and MobileNetV2, layer for
//! layer, with the Keras layer and weight names, so Keras's ImageNet weights
//! load by name.
//!
//! ```text
//! images (NHWC RGB 0..255) ─▶ engine::ops::bilinear_resize ─▶ preprocess_input_caffe
//!   ─▶ Backbone::forward (Vgg16 | ResNet50 | MobileNet | MobileNetV2) ─▶ features [n, c] or [n, h, w, c]
//! ```
//!
//! MobileNet and MobileNetV2 take Keras's 'tf' preprocessing, x / 127.5 − 1,
//! instead of 'caffe'.
//!
//! - [`layers`]: the Keras layers (Conv2D, DepthwiseConv2D, Dense,
//!   BatchNormalization, ReLU, ReLU6, pools, ZeroPadding2D, Flatten, Reshape,
//!   Dropout, Add), thin wrappers over engine ops.
//! - [`vgg16`], [`resnet50`], [`mobilenet`] and [`mobilenet_v2`]: the
//!   architectures of `keras.applications` (the MobileNets at each published
//!   width multiplier α).
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
pub mod mobilenet;
pub mod mobilenet_v2;
pub mod preprocess;
pub mod resnet50;
pub mod vgg16;

pub use backbone::{build, Backbone, ModelOptions, Pooling, MIN_INPUT_SIZE, TOP_INPUT_SIZE};
pub use error::{Error, Result};
pub use mobilenet::MobileNet;
pub use mobilenet_v2::MobileNetV2;
pub use preprocess::{preprocess_input_caffe, CAFFE_MEAN_BGR};
pub use resnet50::ResNet50;
pub use vgg16::Vgg16;
