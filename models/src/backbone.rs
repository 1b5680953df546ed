//! What every model offers, whatever its architecture: the [`Backbone`]
//! trait (forward, activations by Keras layer name, the forward pass split
//! at a block, weight list, loading, freezing) and the construction options
//! ([`ModelOptions`], [`Pooling`]).
//! Models are built by name through [`crate::registry::build`].
//!
//! The weight-related methods are written once here, over the model's list of
//! [`WeightedLayer`]s in Keras order; each architecture only says which
//! layers it has and how data flows through them.

use crate::error::{Error, Result};
use crate::layers::WeightedLayer;
use crate::registry;
use engine::{DType, Device, Param, Precision, Tensor};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use weights::{NamedTensors, WeightSpec};

/// Keras's `pooling` argument: what follows the last convolutional block
/// when the model has no top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// The 4-D output of the last block, `[n, h, w, c]`.
    #[default]
    None,
    /// Global average pooling, `[n, c]`.
    Avg,
    /// Global max pooling, `[n, c]`.
    Max,
}

impl FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Pooling> {
        match s {
            "none" => Ok(Pooling::None),
            "avg" => Ok(Pooling::Avg),
            "max" => Ok(Pooling::Max),
            other => Err(Error::model(format!(
                "unknown pooling '{other}': use none, avg or max"
            ))),
        }
    }
}

/// How to build a model (Keras's `include_top`, `input_shape`, `pooling`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelOptions {
    /// The 1000-class ImageNet classifier on top; then the input must be
    /// the registered top size (224x224) and `pooling` is ignored, as in Keras.
    pub include_top: bool,
    /// Pooling after the last block when there is no top.
    pub pooling: Pooling,
    /// Fixed input (height, width); `None` accepts any size from the
    /// registered minimum on (only the top size with the top).
    pub input_size: Option<(usize, usize)>,
    /// Seed of the initial (Glorot) weights, before any weights are loaded.
    pub init_seed: u64,
    /// Keras's width multiplier of the models that have one (MobileNet,
    /// MobileNetV2); None means the model's default, 1.0.
    /// [`crate::registry::build`] refuses it for a model without variants
    /// and resolves None to 1.0 for one with them.
    pub alpha: Option<f64>,
}

impl ModelOptions {
    /// Checks the options against Keras's rules and the model's registered
    /// input sizes; `model` is the registered or Keras name, also used in errors.
    pub(crate) fn check(&self, model: &str) -> Result<()> {
        if let Some(size) = self.input_size {
            registry::find(model)?.check_size(size, self.include_top)?;
        }
        Ok(())
    }
}

/// Intermediate activations asked for by Keras layer name, collected during a
/// forward pass. Only the asked-for ones are kept, so the rest are freed as
/// the pass goes.
pub struct Taps {
    wanted: BTreeSet<String>,
    got: BTreeMap<String, Tensor>,
}

impl Taps {
    /// Taps for `names`, checked against the model's `layer_names`.
    pub(crate) fn new(model: &str, layer_names: &[String], names: &[&str]) -> Result<Taps> {
        for name in names {
            if !layer_names.iter().any(|l| l == name) {
                return Err(Error::model(format!(
                    "{model} has no layer named '{name}'; its layers are {} ... {}",
                    layer_names[..6.min(layer_names.len())].join(", "),
                    layer_names[layer_names.len().saturating_sub(3)..].join(", ")
                )));
            }
        }
        Ok(Taps {
            wanted: names.iter().map(|s| s.to_string()).collect(),
            got: BTreeMap::new(),
        })
    }

    /// Taps nothing.
    pub(crate) fn none() -> Taps {
        Taps {
            wanted: BTreeSet::new(),
            got: BTreeMap::new(),
        }
    }

    /// Whether the output of `layer` was asked for.
    pub(crate) fn wants(&self, layer: &str) -> bool {
        self.wanted.contains(layer)
    }

    /// Keeps `x` as the output of `layer` if it was asked for.
    pub(crate) fn put(&mut self, layer: &str, x: &Tensor) {
        if self.wants(layer) {
            self.got.insert(layer.to_string(), x.clone());
        }
    }

    pub(crate) fn into_map(self) -> BTreeMap<String, Tensor> {
        self.got
    }
}

/// A part of the forward pass, cut at the input of one of the model's
/// blocks ([`Backbone::block_names`]): every model runs a stem, its blocks
/// in order, then what follows them (the last convolution, pooling, top).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Image to output: the whole forward pass.
    Whole,
    /// Image to the input of block `i`: the stem and blocks `0..i`.
    Prefix(usize),
    /// The input of block `i` to the output: blocks `i..` and what follows them.
    Suffix(usize),
}

impl Span {
    /// Whether the span starts at the image (so the stem runs).
    pub fn from_image(self) -> bool {
        !matches!(self, Span::Suffix(_))
    }

    /// Whether the span ends at the model's output (so what follows the blocks runs).
    pub fn to_output(self) -> bool {
        !matches!(self, Span::Prefix(_))
    }

    /// The blocks it runs, of a model with `n` blocks.
    pub fn blocks(self, n: usize) -> std::ops::Range<usize> {
        match self {
            Span::Whole => 0..n,
            Span::Prefix(i) => 0..i.min(n),
            Span::Suffix(i) => i.min(n)..n,
        }
    }
}

/// Checks an activation given to a [`Span::Suffix`]: NHWC f32, non-empty.
pub(crate) fn check_activation(model: &str, x: &Tensor) -> Result<()> {
    let s = x.shape();
    if s.len() != 4 || s[0] == 0 || x.dtype() != DType::F32 {
        return Err(Error::model(format!(
            "{model}: the activation at a block's input must be a non-empty NHWC f32 batch \
             (the output of Backbone::forward_prefix), got {} of shape {s:?}",
            x.dtype()
        )));
    }
    Ok(())
}

/// Checks the input of `span` against a model: an activation
/// ([`check_activation`]) when the span starts at a block; else an image
/// batch: NHWC rank 4, 3 channels, f32, height and width at least 32,
/// exactly `size` when the model fixes it.
pub(crate) fn check_input(
    model: &str,
    x: &Tensor,
    span: Span,
    fixed: Option<(usize, usize)>,
    include_top: bool,
) -> Result<()> {
    if !span.from_image() {
        return check_activation(model, x);
    }
    let s = x.shape();
    if s.len() != 4 || s[3] != 3 {
        return Err(Error::model(format!(
            "{model}: input has shape {s:?}, expected NHWC [n, h, w, 3] RGB-derived images \
             (after preprocess_input)"
        )));
    }
    if x.dtype() != DType::F32 {
        return Err(Error::model(format!(
            "{model}: input is {}, the model's weights are f32; convert the batch to f32",
            x.dtype()
        )));
    }
    let (h, w) = (s[1], s[2]);
    if s[0] == 0 {
        return Err(Error::model(format!(
            "{model}: input has shape {s:?}, an empty batch"
        )));
    }
    registry::find(model)?
        .check_size((h, w), include_top)
        .map_err(|e| Error::model(format!("{e} (input shape {s:?})")))?;
    if let Some(size) = fixed {
        if (h, w) != size {
            return Err(Error::model(format!(
                "{model} was built for {}x{} inputs, got {h}x{w} (shape {s:?})",
                size.0, size.1
            )));
        }
    }
    Ok(())
}

/// A Keras image model (see [`crate::registry::MODELS`]), with or without its top.
///
/// Implementors provide the architecture ([`Backbone::run_span`], [`Backbone::block_names`],
/// [`Backbone::weighted_layers`], [`Backbone::layer_names`]); weight listing,
/// loading and freezing come with the trait.
pub trait Backbone: Send + Sync {
    /// The model's registered name ("vgg16", "mobilenet_v2"): the key of its
    /// [`crate::registry::ModelEntry`].
    fn name(&self) -> &'static str;

    /// The options the model was built with.
    fn options(&self) -> &ModelOptions;

    /// Every Keras layer name in model order, weightless layers included:
    /// the names [`Backbone::forward_with_taps`] accepts.
    fn layer_names(&self) -> Vec<String>;

    /// The layers with weights, in Keras's order (the order of
    /// `model.weights` in Keras and of the published .h5 files).
    fn weighted_layers(&self) -> Vec<&dyn WeightedLayer>;

    /// The names of the blocks the forward pass runs in order, between its
    /// stem and what follows the blocks (`block1` .. `block5` of VGG16,
    /// `conv2_block1` .. `conv5_block3` of ResNet50, `_blocks.0` .. of
    /// EfficientNet-Lite): where [`Span`] may cut it.
    fn block_names(&self) -> Vec<String>;

    /// The part `span` of the forward pass: from the image (checked as an
    /// input) or from the activation at a block's input, to the model's
    /// output or to a block's input. `training` selects batch statistics in
    /// trainable BatchNormalization layers and active dropout; `taps`
    /// collects outputs of the named layers the span runs.
    fn run_span(&self, x: &Tensor, span: Span, training: bool, taps: &mut Taps) -> Result<Tensor>;

    /// The whole forward pass ([`Backbone::run_span`] of [`Span::Whole`]).
    fn run(&self, x: &Tensor, training: bool, taps: &mut Taps) -> Result<Tensor> {
        self.run_span(x, Span::Whole, training, taps)
    }

    /// Where the forward pass splits for fine-tuning from `block` (a name
    /// `--fine-tune` takes: a block's name, or a prefix such as `conv5`
    /// that names a group of blocks): the index of the first block named
    /// `block`, `block_...` or `block.…`. Errors, naming the blocks, when
    /// none is.
    fn split_index(&self, block: &str) -> Result<usize> {
        let names = self.block_names();
        let (keras, module) = (format!("{block}_"), format!("{block}."));
        names
            .iter()
            .position(|n| n == block || n.starts_with(&keras) || n.starts_with(&module))
            .ok_or_else(|| {
                Error::model(format!(
                    "{} has no block '{block}' to split its forward pass at; its blocks are {}",
                    self.name(),
                    names.join(", ")
                ))
            })
    }

    /// The frozen part before `block`: the activation at the input of
    /// `block` for a preprocessed image batch, in inference mode, recording
    /// nothing (run under `engine::no_grad()`).
    fn forward_prefix(&self, x: &Tensor, block: &str) -> Result<Tensor> {
        let i = self.split_index(block)?;
        let _no_grad = engine::no_grad();
        self.run_span(x, Span::Prefix(i), false, &mut Taps::none())
    }

    /// The part from `block` on, for an activation at its input (what
    /// [`Backbone::forward_prefix`] gives): `forward_suffix(forward_prefix(x))`
    /// runs the same operations in the same order as `forward(x)`, so it
    /// gives the same values, bit for bit.
    fn forward_suffix(&self, activation: &Tensor, block: &str, training: bool) -> Result<Tensor> {
        let i = self.split_index(block)?;
        self.run_span(activation, Span::Suffix(i), training, &mut Taps::none())
    }

    /// Output shape for an `[n, h, w, 3]` input (without running the model).
    fn output_shape(&self, n: usize, h: usize, w: usize) -> Result<Vec<usize>>;

    /// Pins every BatchNormalization layer to inference mode (true), or lets
    /// trainable ones use batch statistics in training (false, the default).
    fn set_bn_inference_only(&self, inference_only: bool);

    /// The model's output for a preprocessed NHWC f32 batch. Run it under
    /// `engine::no_grad()` for a frozen backbone: nothing is recorded and
    /// each activation is freed as soon as the next layer has used it.
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        self.run(x, training, &mut Taps::none())
    }

    /// The inference-mode output plus the outputs of the layers named in
    /// `taps` (Keras layer names such as `block3_conv3` or `conv4_block6_out`).
    fn forward_with_taps(
        &self,
        x: &Tensor,
        taps: &[&str],
    ) -> Result<(Tensor, BTreeMap<String, Tensor>)> {
        let mut t = Taps::new(self.name(), &self.layer_names(), taps)?;
        let y = self.run(x, false, &mut t)?;
        Ok((y, t.into_map()))
    }

    /// Every weight in Keras order, moving statistics included.
    fn params(&self) -> Vec<Param> {
        self.weighted_layers()
            .iter()
            .flat_map(|l| l.weights())
            .collect()
    }

    /// Where the weights are (the device of the first one; the CPU for a
    /// model without weights). Inputs must be on this device.
    fn device(&self) -> Device {
        self.params()
            .first()
            .map_or(Device::Cpu, |p| p.value().device())
    }

    /// Moves every weight to `device` (once, after loading: each later
    /// forward pass then runs there). Errors leave the weights moved so far
    /// where they are now; move them back with `to_device(Device::Cpu)`.
    fn to_device(&self, device: Device) -> Result<()> {
        for p in self.params() {
            let moved = p.value().to_device(device).map_err(Error::Engine)?;
            p.set_value(moved).map_err(Error::Engine)?;
        }
        Ok(())
    }

    /// The weights that an optimizer should update now.
    fn trainable_params(&self) -> Vec<Param> {
        self.params()
            .into_iter()
            .filter(|p| p.is_trainable())
            .collect()
    }

    /// What a weights file must hold for this model: names and Keras shapes, in Keras order.
    fn weight_spec(&self) -> Vec<WeightSpec> {
        self.params()
            .iter()
            .map(|p| WeightSpec::new(p.name(), &p.shape()))
            .collect()
    }

    /// The current weights by name, in Keras order (what a weights file stores).
    fn named_tensors(&self) -> NamedTensors {
        self.params()
            .iter()
            .map(|p| (p.name().to_string(), p.value()))
            .collect()
    }

    /// Loads weights: first validates the whole set against
    /// [`Backbone::weight_spec`] (the first missing, extra, misshapen or
    /// wrongly typed tensor is named and nothing is changed), then sets them.
    fn load(&self, tensors: NamedTensors) -> Result<()> {
        weights::validate(&tensors, &self.weight_spec())?;
        let by_name: HashMap<String, Param> = self
            .params()
            .into_iter()
            .map(|p| (p.name().to_string(), p))
            .collect();
        for (name, t) in tensors {
            let param = by_name
                .get(&name)
                .ok_or_else(|| Error::model(format!("{}: no weight named {name}", self.name())))?;
            param.set_value(t).map_err(Error::Engine)?;
        }
        Ok(())
    }

    /// Runs every convolution with `precision` operands and f32 accumulation
    /// (like a Keras mixed-precision policy, for the convs alone: Dense
    /// layers stay f32, batch norm, pooling and adds run on the f32 conv
    /// outputs). `F16`/`Bf16` are for feature extraction: run the frozen
    /// backbone under `engine::no_grad()`; a gradient through a 16-bit conv
    /// is an error. Set `F32` again before training or fine-tuning.
    fn set_precision(&self, precision: Precision) {
        for l in self.weighted_layers() {
            l.set_precision(precision);
        }
    }

    /// The precision [`Backbone::set_precision`] set last (f32 by default).
    fn precision(&self) -> Precision {
        self.weighted_layers()
            .iter()
            .map(|l| l.precision())
            .find(|p| p.is_half())
            .unwrap_or(Precision::F32)
    }

    /// Freezes or unfreezes every layer.
    fn set_trainable(&self, trainable: bool) {
        for l in self.weighted_layers() {
            l.set_trainable(trainable);
        }
    }

    /// Unfreezes the layers from `block` on (a layer name, or a prefix such
    /// as `block5` for VGG16, `conv5` for ResNet50 or `_blocks.15` for
    /// EfficientNet-Lite0, matching `block5_conv1`, `conv5_block1_1_conv`,
    /// `_blocks.15._expand_conv`, ...) and everything after it, top included;
    /// freezes every layer before it. Errors if no layer matches.
    fn set_trainable_from(&self, block: &str) -> Result<()> {
        let layers = self.weighted_layers();
        let (keras, module) = (format!("{block}_"), format!("{block}."));
        let matches =
            |name: &str| name == block || name.starts_with(&keras) || name.starts_with(&module);
        let Some(first) = layers.iter().position(|l| matches(l.name())) else {
            // Keras names: the part before the first '_' (block5); module
            // paths: the module holding the layer (_blocks.15), or the layer (_conv_head).
            let block_of = |name: &str| -> String {
                match name.rsplit_once('.') {
                    Some((module, _)) => module.to_string(),
                    None if name.starts_with('_') => name.to_string(),
                    None => name.split('_').next().unwrap_or("").to_string(),
                }
            };
            let blocks: BTreeSet<String> = layers.iter().map(|l| block_of(l.name())).collect();
            return Err(Error::model(format!(
                "{} has no layer '{block}' to unfreeze from; use one of {}",
                self.name(),
                blocks.into_iter().collect::<Vec<_>>().join(", ")
            )));
        };
        for (i, l) in layers.iter().enumerate() {
            l.set_trainable(i >= first);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::MODELS;

    /// A seeded batch of two `s`x`s` images in [-1, 1].
    fn images(s: usize) -> Tensor {
        let v: Vec<f32> = (0..(2 * s * s * 3) as u64)
            .map(|i| engine::rng::uniform_f32(7, 0, i) * 2.0 - 1.0)
            .collect();
        Tensor::from_vec(v, &[2, s, s, 3]).unwrap()
    }

    #[test]
    fn the_suffix_of_the_prefix_is_the_forward_pass_bit_for_bit() {
        for entry in MODELS {
            // 32 px, or the model's smallest input (InceptionV3: 75).
            let x = images(entry.sizes.min.max(32));
            let options = ModelOptions {
                pooling: Pooling::Avg,
                init_seed: 3,
                ..Default::default()
            };
            let model = crate::registry::build(entry.name, &options).unwrap();
            let whole = model.forward(&x, false).unwrap().to_vec_f32();
            assert!(whole.iter().all(|v| v.is_finite()), "{}", entry.name);
            for block in entry.fine_tune {
                let a = model.forward_prefix(&x, block.name).unwrap();
                assert_eq!(a.rank(), 4, "{} {}", entry.name, block.name);
                let y = model.forward_suffix(&a, block.name, false).unwrap();
                let (got, want): (Vec<u32>, Vec<u32>) = (
                    y.to_vec_f32().iter().map(|v| v.to_bits()).collect(),
                    whole.iter().map(|v| v.to_bits()).collect(),
                );
                assert_eq!(got, want, "{} split at {}", entry.name, block.name);
            }
        }
    }

    #[test]
    fn every_registered_fine_tune_block_is_a_split_point() {
        for entry in MODELS {
            let model = crate::registry::build(entry.name, &ModelOptions::default()).unwrap();
            for block in entry.fine_tune {
                let i = model.split_index(block.name).unwrap();
                assert!(
                    i > 0,
                    "{} {}: splits before every block",
                    entry.name,
                    block.name
                );
            }
        }
        let lite0 = crate::registry::build("efficientnet_lite0", &Default::default()).unwrap();
        assert_eq!(lite0.split_index("_blocks.11").unwrap(), 11);
        assert_eq!(lite0.split_index("_blocks.1").unwrap(), 1);
        let resnet = crate::registry::build("resnet50", &Default::default()).unwrap();
        assert_eq!(
            resnet.block_names()[resnet.split_index("conv5").unwrap()],
            "conv5_block1"
        );
    }

    #[test]
    fn a_block_the_model_lacks_is_a_clear_error() {
        let x = images(32);
        let model = crate::registry::build("vgg16", &ModelOptions::default()).unwrap();
        for bad in ["block6", "block5_conv2", "conv5", ""] {
            let e = model.forward_prefix(&x, bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("no block '{bad}'")) && e.contains("block1, block2"),
                "{e}"
            );
        }
        // An empty activation is refused before anything runs.
        let e = model
            .forward_suffix(&Tensor::zeros(&[0, 2, 2, 512], DType::F32), "block5", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("non-empty NHWC f32"), "{e}");
    }
}
