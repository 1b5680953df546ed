//! Keras layers, each a thin wrapper over one or two engine ops, carrying the
//! Keras layer name and, for layers with weights, [`Param`]s named exactly
//! like the Keras weights (`block1_conv1/kernel`,
//! `conv2_block1_1_bn/moving_variance`), so a weights file maps onto a model
//! by name alone.
//!
//! Where they sit: [`crate::Vgg`], [`crate::ResNet50`] and the other
//! models are lists of these layers; the engine ops underneath do the math and record the tape.
//!
//! Initial values follow Keras's defaults (Glorot-uniform kernels, zero
//! biases, BatchNormalization gamma 1, beta 0, moving mean 0, moving variance
//! 1), drawn from the seeded counter-based generator of `engine::rng`, so a
//! freshly built model is the same on every run. Backbones are normally
//! overwritten by pretrained weights right after construction.

use crate::backbone::Taps;
use crate::error::{Error, Result};
use engine::ops::{self, Padding};
use engine::{DType, Device, Param, Precision, Tensor};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// Keras's default BatchNormalization momentum for the moving statistics.
pub const BN_MOMENTUM: f64 = 0.99;

/// A layer that owns weights: its Keras name and its weights in Keras order
/// (kernel, bias; gamma, beta, moving_mean, moving_variance).
pub trait WeightedLayer {
    /// The Keras layer name (`block1_conv1`).
    fn name(&self) -> &str;
    /// Every weight of the layer in Keras order, trainable or not (moving
    /// statistics included: they are saved and loaded like any weight).
    fn weights(&self) -> Vec<Param>;
    /// Freezes (false) or unfreezes (true) the layer's trainable weights.
    /// Moving statistics are never trainable.
    fn set_trainable(&self, trainable: bool);
    /// Sets the precision of the layer's multiply-accumulate
    /// (`engine::ops::conv2d_in`). Only [`Conv2D`] has a 16-bit path; every
    /// other layer (Dense included: the top's matmuls are well under 1% of
    /// the FLOPs) computes in f32 whatever it is told.
    fn set_precision(&self, _precision: Precision) {}
    /// The precision of the layer's multiply-accumulate (f32 but for a [`Conv2D`] told otherwise).
    fn precision(&self) -> Precision {
        Precision::F32
    }
}

/// A convolution layer ([`Conv2D`], [`DepthwiseConv2D`]): what a batch norm
/// that follows it can be folded into (`conv_batch_norm`). The innermost
/// axis of its kernel runs over the output channels: Conv2D's HWIO
/// `[kh, kw, in, out]`, and DepthwiseConv2D's `[kh, kw, c, m]`, whose last
/// two axes together are the output channel `ci·m + j`.
pub trait Convolution: WeightedLayer {
    /// The kernel and the bias, if the layer has one.
    fn kernel_and_bias(&self) -> (&Param, Option<&Param>);
    /// Output channels.
    fn filters(&self) -> usize;
    /// Whether the layer's output is its f32 convolution plus bias and
    /// nothing else (not a Conv2D with an activation or a 16-bit precision).
    fn is_plain_f32(&self) -> bool;
    /// The layer's convolution (its stride, padding and precision) with
    /// the given weights.
    fn convolve(&self, x: &Tensor, kernel: &Tensor, bias: Option<&Tensor>) -> Result<Tensor>;
    /// ReLU6 of [`Convolution::convolve`], as one op that clamps the output
    /// while it is in cache (f32 only).
    fn convolve_relu6(&self, x: &Tensor, kernel: &Tensor, bias: Option<&Tensor>) -> Result<Tensor>;
    /// Runs the layer (its own forward pass).
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// The activation Keras fuses into Conv2D and Dense (`activation="relu"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// y = x.
    Linear,
    /// y = max(x, 0).
    Relu,
    /// y = min(max(x, 0), 6) (Keras `ReLU(6.0)`).
    Relu6,
    /// Softmax along the last axis (ImageNet predictions).
    Softmax,
}

impl Activation {
    fn apply(self, x: Tensor) -> engine::Result<Tensor> {
        match self {
            Activation::Linear => Ok(x),
            Activation::Relu => ops::relu(&x),
            Activation::Relu6 => ops::relu6(&x),
            Activation::Softmax => ops::softmax(&x),
        }
    }
}

/// Keras's Glorot-uniform initialiser: U(−l, l), l = sqrt(6 / (fan_in + fan_out)),
/// element `i` drawn as `engine::rng::uniform_f32(seed, stream, i)`.
pub fn glorot_uniform(
    shape: &[usize],
    fan_in: usize,
    fan_out: usize,
    seed: u64,
    stream: u64,
) -> Tensor {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    let n: usize = shape.iter().product();
    // Counter-based: element i depends on i alone, so any split is the same draw.
    let v: Vec<f32> = (0..n as u64)
        .into_par_iter()
        .map(|i| (2.0 * engine::rng::uniform_f32(seed, stream, i) - 1.0) * limit)
        .collect();
    Tensor::from_vec(v, shape).expect("length equals the product of the shape")
}

/// Seeds for a model's initial weights: `seed`, and a fresh stream per weight
/// tensor in construction order.
#[derive(Debug, Clone)]
pub struct Init {
    seed: u64,
    next_stream: u64,
}

impl Init {
    /// Initial weights drawn under `seed`.
    pub fn new(seed: u64) -> Init {
        Init {
            seed,
            next_stream: 0,
        }
    }
    fn glorot(&mut self, shape: &[usize], fan_in: usize, fan_out: usize) -> Tensor {
        self.next_stream += 1;
        glorot_uniform(shape, fan_in, fan_out, self.seed, self.next_stream)
    }
}

/// Keras `Conv2D`: y = act(conv(x, kernel) + bias), NHWC input, HWIO kernel
/// `[kh, kw, in, out]`.
pub struct Conv2D {
    name: String,
    /// `<name>/kernel`, `[kh, kw, in, out]`.
    pub kernel: Param,
    /// `<name>/bias`, `[out]` (Keras `use_bias=True`).
    pub bias: Option<Param>,
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// Keras `padding`: `Same` or `Valid`.
    pub padding: Padding,
    /// The fused activation.
    pub activation: Activation,
    /// The convolution's compute precision (f32 unless [`WeightedLayer::set_precision`] says otherwise).
    precision: RwLock<Precision>,
}

impl Conv2D {
    /// A conv layer from `c_in` to `c_out` channels with a `kh`×`kw` kernel
    /// and a bias, Glorot-initialised.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        (kh, kw): (usize, usize),
        c_in: usize,
        c_out: usize,
        stride: usize,
        padding: Padding,
        activation: Activation,
        init: &mut Init,
    ) -> Conv2D {
        let kernel = init.glorot(&[kh, kw, c_in, c_out], kh * kw * c_in, kh * kw * c_out);
        Conv2D {
            name: name.to_string(),
            kernel: Param::new(format!("{name}/kernel"), kernel),
            bias: Some(Param::new(
                format!("{name}/bias"),
                Tensor::zeros(&[c_out], DType::F32),
            )),
            stride: (stride, stride),
            padding,
            activation,
            precision: RwLock::new(Precision::F32),
        }
    }

    /// A 1x1, stride-1 convolution without bias or activation (the
    /// expansions and projections of inverted residual blocks).
    pub fn pointwise(name: &str, c_in: usize, c_out: usize, init: &mut Init) -> Conv2D {
        Conv2D::new(
            name,
            (1, 1),
            c_in,
            c_out,
            1,
            Padding::Same,
            Activation::Linear,
            init,
        )
        .without_bias()
    }

    /// The same layer without its bias (Keras `use_bias=False`).
    pub fn without_bias(mut self) -> Conv2D {
        self.bias = None;
        self
    }

    /// Output channels.
    pub fn filters(&self) -> usize {
        *self.kernel.shape().last().unwrap_or(&0)
    }

    /// Runs the layer.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(|b| b.tensor());
        let y = self.convolve(x, &self.kernel.tensor(), bias.as_ref())?;
        self.activation
            .apply(y)
            .map_err(Error::in_layer(&self.name))
    }
}

impl Convolution for Conv2D {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Conv2D::forward(self, x)
    }
    fn filters(&self) -> usize {
        Conv2D::filters(self)
    }
    fn kernel_and_bias(&self) -> (&Param, Option<&Param>) {
        (&self.kernel, self.bias.as_ref())
    }
    fn is_plain_f32(&self) -> bool {
        self.activation == Activation::Linear && WeightedLayer::precision(self) == Precision::F32
    }
    fn convolve(&self, x: &Tensor, kernel: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        ops::conv2d_in(
            WeightedLayer::precision(self),
            x,
            kernel,
            bias,
            self.stride,
            self.padding,
        )
        .map_err(Error::in_layer(&self.name))
    }
    fn convolve_relu6(&self, x: &Tensor, kernel: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        ops::conv2d_relu6(x, kernel, bias, self.stride, self.padding)
            .map_err(Error::in_layer(&self.name))
    }
}

impl WeightedLayer for Conv2D {
    fn name(&self) -> &str {
        &self.name
    }
    fn weights(&self) -> Vec<Param> {
        std::iter::once(self.kernel.clone())
            .chain(self.bias.clone())
            .collect()
    }
    fn set_trainable(&self, trainable: bool) {
        self.weights()
            .iter()
            .for_each(|p| p.set_trainable(trainable));
    }
    fn set_precision(&self, precision: Precision) {
        *self.precision.write().unwrap_or_else(|p| p.into_inner()) = precision;
    }
    fn precision(&self) -> Precision {
        *self.precision.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keras `DepthwiseConv2D`: each input channel convolved with its own
/// `m` filters (depth multiplier m), no mixing across channels; kernel
/// `[kh, kw, c, m]`, output channel `ci·m + j`. The multiply-accumulate is
/// always f32 (a memory-bound layer gains nothing from 16-bit operands).
pub struct DepthwiseConv2D {
    name: String,
    /// `<name>/depthwise_kernel`, `[kh, kw, c, m]` (the published files' name).
    pub kernel: Param,
    /// `<name>/bias`, `[c·m]`, when Keras has `use_bias=True`.
    pub bias: Option<Param>,
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// Keras `padding`: `Same` or `Valid`.
    pub padding: Padding,
}

impl DepthwiseConv2D {
    /// A depthwise layer over `channels` channels with a `kh`×`kw` kernel and
    /// depth multiplier 1, without bias (as MobileNet uses it); Glorot-initialised
    /// with Keras's fans for a `[kh, kw, c, 1]` kernel.
    pub fn new(
        name: &str,
        (kh, kw): (usize, usize),
        channels: usize,
        stride: usize,
        padding: Padding,
        init: &mut Init,
    ) -> DepthwiseConv2D {
        let kernel = init.glorot(&[kh, kw, channels, 1], kh * kw * channels, kh * kw);
        DepthwiseConv2D {
            name: name.to_string(),
            kernel: Param::new(format!("{name}/depthwise_kernel"), kernel),
            bias: None,
            stride: (stride, stride),
            padding,
        }
    }

    /// Runs the layer.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(|b| b.tensor());
        self.convolve(x, &self.kernel.tensor(), bias.as_ref())
    }
}

impl Convolution for DepthwiseConv2D {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        DepthwiseConv2D::forward(self, x)
    }
    fn filters(&self) -> usize {
        self.kernel.shape()[2..].iter().product()
    }
    fn kernel_and_bias(&self) -> (&Param, Option<&Param>) {
        (&self.kernel, self.bias.as_ref())
    }
    fn is_plain_f32(&self) -> bool {
        true
    }
    fn convolve(&self, x: &Tensor, kernel: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        ops::depthwise_conv2d(x, kernel, bias, self.stride, self.padding)
            .map_err(Error::in_layer(&self.name))
    }
    fn convolve_relu6(&self, x: &Tensor, kernel: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        ops::depthwise_conv2d_relu6(x, kernel, bias, self.stride, self.padding)
            .map_err(Error::in_layer(&self.name))
    }
}

impl WeightedLayer for DepthwiseConv2D {
    fn name(&self) -> &str {
        &self.name
    }
    fn weights(&self) -> Vec<Param> {
        std::iter::once(self.kernel.clone())
            .chain(self.bias.clone())
            .collect()
    }
    fn set_trainable(&self, trainable: bool) {
        self.weights()
            .iter()
            .for_each(|p| p.set_trainable(trainable));
    }
}

/// Keras `Dense`: y = act(x·kernel + bias), kernel `[in, out]`.
pub struct Dense {
    name: String,
    /// `<name>/kernel`, `[in, out]`.
    pub kernel: Param,
    /// `<name>/bias`, `[out]`.
    pub bias: Param,
    /// The fused activation.
    pub activation: Activation,
}

impl Dense {
    /// A dense layer from `units_in` to `units_out`, Glorot-initialised.
    pub fn new(
        name: &str,
        units_in: usize,
        units_out: usize,
        activation: Activation,
        init: &mut Init,
    ) -> Dense {
        let kernel = init.glorot(&[units_in, units_out], units_in, units_out);
        Dense {
            name: name.to_string(),
            kernel: Param::new(format!("{name}/kernel"), kernel),
            bias: Param::new(
                format!("{name}/bias"),
                Tensor::zeros(&[units_out], DType::F32),
            ),
            activation,
        }
    }

    /// Runs the layer on `[n, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = ops::matmul(x, &self.kernel.tensor())
            .and_then(|y| ops::add(&y, &self.bias.tensor()))
            .and_then(|y| self.activation.apply(y))
            .map_err(Error::in_layer(&self.name))?;
        Ok(y)
    }
}

impl WeightedLayer for Dense {
    fn name(&self) -> &str {
        &self.name
    }
    fn weights(&self) -> Vec<Param> {
        vec![self.kernel.clone(), self.bias.clone()]
    }
    fn set_trainable(&self, trainable: bool) {
        self.kernel.set_trainable(trainable);
        self.bias.set_trainable(trainable);
    }
}

/// Keras `BatchNormalization` over the channel (last) axis:
/// y = gamma·(x − mean)/sqrt(var + epsilon) + beta. With `scale=False`
/// ([`BatchNormalization::without_scale`], InceptionV3's) the layer has no
/// gamma: it is 1, and the layer's weights are beta, moving_mean,
/// moving_variance.
///
/// Inference mode uses the moving statistics. Training mode (only when the
/// layer is trainable and not pinned to inference, as in Keras, where a
/// frozen BatchNormalization always runs in inference mode) normalises with
/// the batch's own mean and biased variance through
/// `engine::ops::batch_norm_train`, then updates the moving statistics with
/// Keras's rule `moving = moving·momentum + batch·(1 − momentum)`.
pub struct BatchNormalization {
    name: String,
    /// `<name>/gamma`, `[c]`, trainable; None with Keras `scale=False`.
    pub gamma: Option<Param>,
    /// `<name>/beta`, `[c]`, trainable.
    pub beta: Param,
    /// `<name>/moving_mean`, `[c]`, never trainable.
    pub moving_mean: Param,
    /// `<name>/moving_variance`, `[c]`, never trainable.
    pub moving_variance: Param,
    /// Added to the variance (ResNet50 uses 1.001e-5, Keras's default is 1e-3).
    pub epsilon: f64,
    /// Weight of the old value in the moving-average update (Keras: 0.99;
    /// MobileNetV2: 0.999, see [`BatchNormalization::with_momentum`]).
    pub momentum: f64,
    inference_only: AtomicBool,
    /// The weights of the convolution before this layer with this layer
    /// folded in, kept while the weights they came from stay the same
    /// ([`conv_batch_norm`]).
    folded: Mutex<Option<FoldedWeights>>,
}

/// A convolution's kernel and bias with a batch norm folded in, and the
/// ids of the weight tensors they were computed from.
struct FoldedWeights {
    from: Vec<u64>,
    kernel: Tensor,
    bias: Tensor,
}

impl BatchNormalization {
    /// A layer over `channels` channels with Keras's initial values.
    pub fn new(name: &str, channels: usize, epsilon: f64) -> BatchNormalization {
        let vector = |w: &str, v: f64| {
            Param::new(
                format!("{name}/{w}"),
                Tensor::full(v, &[channels], DType::F32),
            )
        };
        let moving_mean = vector("moving_mean", 0.0);
        let moving_variance = vector("moving_variance", 1.0);
        moving_mean.set_trainable(false);
        moving_variance.set_trainable(false);
        BatchNormalization {
            name: name.to_string(),
            gamma: Some(vector("gamma", 1.0)),
            beta: vector("beta", 0.0),
            moving_mean,
            moving_variance,
            epsilon,
            momentum: BN_MOMENTUM,
            inference_only: AtomicBool::new(false),
            folded: Mutex::new(None),
        }
    }

    /// The same layer without gamma (Keras `scale=False`): y = (x − mean)/sqrt(var + epsilon) + beta.
    pub fn without_scale(mut self) -> BatchNormalization {
        self.gamma = None;
        self
    }

    /// The same layer with another moving-average momentum.
    pub fn with_momentum(mut self, momentum: f64) -> BatchNormalization {
        self.momentum = momentum;
        self
    }

    /// Pins the layer to inference mode (true) even when the model runs in
    /// training mode: the usual choice when fine-tuning a pretrained backbone
    /// on small batches.
    pub fn set_inference_only(&self, inference_only: bool) {
        self.inference_only.store(inference_only, Ordering::Relaxed);
    }

    /// Whether a forward pass with `training = true` uses batch statistics.
    pub fn uses_batch_statistics(&self, training: bool) -> bool {
        training && self.beta.is_trainable() && !self.inference_only.load(Ordering::Relaxed)
    }

    /// gamma, or ones on `x`'s device without scale (the op always takes a gamma).
    fn gamma_for(&self, x: &Tensor) -> Result<Tensor> {
        match &self.gamma {
            Some(g) => Ok(g.tensor()),
            None => {
                let c = self.beta.shape()[0];
                Tensor::full_on(1.0, &[c], x.dtype(), x.device())
                    .map_err(Error::in_layer(&self.name))
            }
        }
    }

    /// Runs the layer; in training mode also updates the moving statistics.
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let in_layer = Error::in_layer(&self.name);
        let gamma = self.gamma_for(x)?;
        if !self.uses_batch_statistics(training) {
            return ops::batch_norm(
                x,
                &gamma,
                &self.beta.tensor(),
                &self.moving_mean.value(),
                &self.moving_variance.value(),
                self.epsilon,
            )
            .map_err(in_layer);
        }
        let (y, mean, var) = ops::batch_norm_train(x, &gamma, &self.beta.tensor(), self.epsilon)
            .map_err(in_layer)?;
        self.update_moving(&self.moving_mean, &mean)?;
        self.update_moving(&self.moving_variance, &var)?;
        Ok(y)
    }

    /// moving ← moving·momentum + batch·(1 − momentum), in the parameter's
    /// precision, as Keras assigns it: two products and a sum, each rounded
    /// once (`mul` by a scalar, then `add`), on the statistics' own device,
    /// so on a GPU they never come to the host.
    fn update_moving(&self, moving: &Param, batch: &Tensor) -> Result<()> {
        let old = moving.value();
        if old.shape() != batch.shape() {
            return Err(Error::model(format!(
                "layer {}: batch statistic of shape {:?} for a moving statistic of shape {:?}",
                self.name,
                batch.shape(),
                old.shape()
            )));
        }
        let _no_tape = engine::no_grad();
        // The scalars are made in the statistics' dtype (f32: m rounded once, as Keras).
        let scaled = |t: &Tensor, factor: f64| {
            let factor = Tensor::full_on(factor, &[], t.dtype(), t.device())?;
            ops::mul(t, &factor)
        };
        let new = scaled(&old, self.momentum)
            .and_then(|a| Ok((a, scaled(batch, 1.0 - self.momentum)?)))
            .and_then(|(a, b)| ops::add(&a, &b))
            .map_err(Error::in_layer(&self.name))?;
        moving.set_value(new).map_err(Error::in_layer(&self.name))
    }
}

impl WeightedLayer for BatchNormalization {
    fn name(&self) -> &str {
        &self.name
    }
    fn weights(&self) -> Vec<Param> {
        self.gamma
            .iter()
            .chain([&self.beta, &self.moving_mean, &self.moving_variance])
            .cloned()
            .collect()
    }
    fn set_trainable(&self, trainable: bool) {
        if let Some(g) = &self.gamma {
            g.set_trainable(trainable);
        }
        self.beta.set_trainable(trainable);
    }
}

/// `bn(conv(x))`, then `relu6` when given, tapping every output: the
/// layers in turn, or, when they are frozen, as one convolution with the
/// batch norm folded into its weights. Per output channel, with
/// `s = γ/√(σ²+ε)` and `t = β − μ·s` from the moving statistics,
///
/// ```text
/// bn(conv(x, K) + b) = conv(x, K·s) + (b·s + t)
/// ```
///
/// which spares the batch norm's pass over the activation (a read and a
/// write of every value; at 224 px most of EfficientNet-Lite's layers are
/// bound by such traffic, not by arithmetic). The ReLU6 after it is then
/// applied by the convolution to its output while in cache
/// (`ops::conv2d_relu6`, `ops::depthwise_conv2d_relu6`), sparing another.
///
/// It folds when no weight of either layer is trainable (the frozen
/// backbone of `extract`, the frozen blocks of a fine-tuning run), the batch
/// norm uses its moving statistics, the convolution is plain f32 on the CPU
/// ([`Convolution::is_plain_f32`]), and its own output is not tapped; the
/// ReLU6 is fused when the batch norm's output is not tapped either. The
/// choice does not depend on whether the tape records, so a layer computes
/// the same values under `no_grad()` as outside it. A trainable layer never
/// folds: its gradients are those of the separate layers. Folded weights
/// are computed in f64, rounded once to f32, and kept until one of the
/// weights changes; the result differs from the separate layers' only by
/// rounding (`folded_batch_norm_equals_the_separate_layers_on_efficientnet_lite0`
/// in `tests/tests/models.rs`, and the real checkpoint in `model_parity.rs`).
pub(crate) fn conv_batch_norm(
    conv: &dyn Convolution,
    bn: &BatchNormalization,
    relu6: Option<&ReLU6>,
    x: &Tensor,
    training: bool,
    taps: &mut Taps,
) -> Result<Tensor> {
    let (kernel, bias) = conv.kernel_and_bias();
    let frozen = conv.weights().iter().all(|p| !p.is_trainable())
        && bn.gamma.as_ref().is_none_or(|g| !g.is_trainable())
        && !bn.beta.is_trainable();
    let folds = frozen
        && !bn.uses_batch_statistics(training)
        && conv.is_plain_f32()
        && x.device() == Device::Cpu
        && !taps.wants(conv.name());
    let folded = if folds {
        bn.fold(kernel, bias, conv.filters())
    } else {
        None
    };
    let y = match (folded, relu6) {
        (Some((k, b)), Some(relu6)) if !taps.wants(bn.name()) => {
            let y = conv.convolve_relu6(x, &k, Some(&b))?;
            taps.put(&relu6.name, &y);
            return Ok(y);
        }
        (Some((k, b)), _) => conv.convolve(x, &k, Some(&b))?,
        (None, _) => {
            let y = conv.forward(x)?;
            taps.put(conv.name(), &y);
            bn.forward(&y, training)?
        }
    };
    taps.put(bn.name(), &y);
    let Some(relu6) = relu6 else {
        return Ok(y);
    };
    let y = relu6.forward(&y)?;
    taps.put(&relu6.name, &y);
    Ok(y)
}

impl BatchNormalization {
    /// `K·s` and `b·s + t` for a convolution with kernel `K`, bias `b`
    /// (zero if absent) and `filters` output channels (the kernel's
    /// innermost axis), computed in f64 from the f32 weights on the CPU and
    /// rounded once; None when the weights are not that, their channels
    /// differ from this layer's, or the moving variance plus ε is not
    /// positive (the two layers in turn then say what is wrong).
    fn fold(
        &self,
        kernel: &Param,
        bias: Option<&Param>,
        filters: usize,
    ) -> Option<(Tensor, Tensor)> {
        let weights: Vec<Tensor> = [kernel, &self.beta, &self.moving_mean, &self.moving_variance]
            .into_iter()
            .map(Param::value)
            .collect();
        let gamma = self.gamma.as_ref().map(Param::value);
        let bias = bias.map(Param::value);
        let from: Vec<u64> = weights
            .iter()
            .chain(&gamma)
            .chain(&bias)
            .map(Tensor::id)
            .collect();
        let mut cache = self.folded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = cache.as_ref().filter(|f| f.from == from) {
            return Some((f.kernel.clone(), f.bias.clone()));
        }
        fn f32s(t: &Tensor) -> Option<&[f32]> {
            t.as_slice::<f32>().ok()
        }
        let (k, beta, mean, var) = (
            f32s(&weights[0])?,
            f32s(&weights[1])?,
            f32s(&weights[2])?,
            f32s(&weights[3])?,
        );
        // Without gamma (Keras scale=False) the scale is 1.
        let gamma = gamma.as_ref().map(f32s);
        let b = bias.as_ref().map(f32s);
        let c = beta.len();
        let same = |v: &[f32]| v.len() == c;
        let channels_match = c == filters
            && k.len() % c == 0
            && [mean, var].into_iter().all(same)
            && gamma.is_none_or(|g| g.is_some_and(same))
            && b.is_none_or(|b| b.is_some_and(same));
        if !channels_match {
            return None;
        }
        let mut scale = Vec::with_capacity(c);
        let mut shift = Vec::with_capacity(c);
        for j in 0..c {
            let v = var[j] as f64 + self.epsilon;
            if v.is_nan() || v <= 0.0 {
                return None;
            }
            let s = gamma.flatten().map_or(1.0, |g| g[j] as f64) / v.sqrt();
            let bias = b.flatten().map_or(0.0, |b| b[j] as f64);
            scale.push(s);
            shift.push(bias * s + (beta[j] as f64 - mean[j] as f64 * s));
        }
        let k: Vec<f32> = k
            .chunks_exact(c)
            .flat_map(|tap| tap.iter().zip(&scale).map(|(&k, &s)| (k as f64 * s) as f32))
            .collect();
        let shift: Vec<f32> = shift.into_iter().map(|t| t as f32).collect();
        let folded = FoldedWeights {
            from,
            kernel: Tensor::from_vec(k, &kernel.shape()).ok()?,
            bias: Tensor::from_vec(shift, &[c]).ok()?,
        };
        let pair = (folded.kernel.clone(), folded.bias.clone());
        *cache = Some(folded);
        Some(pair)
    }
}

/// Keras `Activation("relu")` / `ReLU` as its own named layer.
pub struct ReLU {
    /// The Keras layer name (`conv1_relu`).
    pub name: String,
}

impl ReLU {
    /// A named ReLU layer.
    pub fn new(name: &str) -> ReLU {
        ReLU {
            name: name.to_string(),
        }
    }
    /// y = max(x, 0).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::relu(x).map_err(Error::in_layer(&self.name))
    }
}

/// Keras `ReLU(6.0)` as its own named layer (MobileNet's `conv1_relu`).
pub struct ReLU6 {
    /// The Keras layer name.
    pub name: String,
}

impl ReLU6 {
    /// A named ReLU6 layer.
    pub fn new(name: &str) -> ReLU6 {
        ReLU6 {
            name: name.to_string(),
        }
    }
    /// y = min(max(x, 0), 6).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::relu6(x).map_err(Error::in_layer(&self.name))
    }
}

/// Keras `MaxPooling2D` (Keras's default padding is `valid`).
pub struct MaxPooling2D {
    /// The Keras layer name (`block1_pool`).
    pub name: String,
    /// Window (height, width).
    pub pool: (usize, usize),
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// `Valid` or `Same`.
    pub padding: Padding,
}

impl MaxPooling2D {
    /// A square `pool`×`pool` window at `stride`.
    pub fn new(name: &str, pool: usize, stride: usize, padding: Padding) -> MaxPooling2D {
        MaxPooling2D {
            name: name.to_string(),
            pool: (pool, pool),
            stride: (stride, stride),
            padding,
        }
    }
    /// The maximum over each window.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::max_pool2d(x, self.pool, self.stride, self.padding)
            .map_err(Error::in_layer(&self.name))
    }
}

/// Keras `AveragePooling2D`; padded cells are left out of the average.
pub struct AveragePooling2D {
    /// The Keras layer name.
    pub name: String,
    /// Window (height, width).
    pub pool: (usize, usize),
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// `Valid` or `Same`.
    pub padding: Padding,
}

impl AveragePooling2D {
    /// A square `pool`×`pool` window at `stride`.
    pub fn new(name: &str, pool: usize, stride: usize, padding: Padding) -> AveragePooling2D {
        AveragePooling2D {
            name: name.to_string(),
            pool: (pool, pool),
            stride: (stride, stride),
            padding,
        }
    }
    /// The mean over each window.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::avg_pool2d(x, self.pool, self.stride, self.padding)
            .map_err(Error::in_layer(&self.name))
    }
}

/// How many zero rows and columns a [`ZeroPadding2D`] adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroPad {
    /// Keras `padding=((top, bottom), (left, right))`.
    Fixed {
        /// Rows above.
        top: usize,
        /// Rows below.
        bottom: usize,
        /// Columns on the left.
        left: usize,
        /// Columns on the right.
        right: usize,
    },
    /// Keras's `imagenet_utils.correct_pad(x, kernel)`, the padding before a
    /// stride-2 'valid' convolution in MobileNetV2: `k/2` below and on the
    /// right, `k/2` above and on the left for an odd side but `k/2 − 1` for an
    /// even one. Keras computes it from the static input size (assuming even
    /// sides when the size is `None`); thaw computes it from the actual side
    /// of each input, which is Keras's model built with a fixed
    /// `input_shape=(S, S, 3)`.
    CorrectPad {
        /// The kernel side of the convolution that follows.
        kernel: usize,
    },
}

impl ZeroPad {
    /// (top, bottom, left, right) for an input of `h`×`w`.
    pub fn amounts(self, h: usize, w: usize) -> (usize, usize, usize, usize) {
        match self {
            ZeroPad::Fixed {
                top,
                bottom,
                left,
                right,
            } => (top, bottom, left, right),
            ZeroPad::CorrectPad { kernel } => {
                let c = kernel / 2;
                // adjust = 1 − side % 2; before = c − adjust.
                (
                    (c + h % 2).saturating_sub(1),
                    c,
                    (c + w % 2).saturating_sub(1),
                    c,
                )
            }
        }
    }
}

/// Keras `ZeroPadding2D`: zero rows and columns around the image.
pub struct ZeroPadding2D {
    /// The Keras layer name (`conv1_pad`).
    pub name: String,
    /// The rows and columns added.
    pub padding: ZeroPad,
}

impl ZeroPadding2D {
    /// `p` zeros on every side (Keras `padding=((p, p), (p, p))`).
    pub fn new(name: &str, p: usize) -> ZeroPadding2D {
        ZeroPadding2D::with(name, (p, p), (p, p))
    }
    /// Keras `padding=((top, bottom), (left, right))`.
    pub fn with(
        name: &str,
        (top, bottom): (usize, usize),
        (left, right): (usize, usize),
    ) -> ZeroPadding2D {
        ZeroPadding2D {
            name: name.to_string(),
            padding: ZeroPad::Fixed {
                top,
                bottom,
                left,
                right,
            },
        }
    }
    /// Keras `padding=correct_pad(x, kernel)`, from each input's own size (see [`ZeroPad::CorrectPad`]).
    pub fn correct_pad(name: &str, kernel: usize) -> ZeroPadding2D {
        ZeroPadding2D {
            name: name.to_string(),
            padding: ZeroPad::CorrectPad { kernel },
        }
    }
    /// Pads height and width.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        let (h, w) = if s.len() == 4 { (s[1], s[2]) } else { (0, 0) };
        let (t, b, l, r) = self.padding.amounts(h, w);
        ops::zero_pad2d(x, t, b, l, r).map_err(Error::in_layer(&self.name))
    }
}

/// Keras `GlobalAveragePooling2D`: `[n, h, w, c]` to `[n, c]`.
pub struct GlobalAveragePooling2D {
    /// The Keras layer name (`avg_pool` in ResNet50).
    pub name: String,
}

impl GlobalAveragePooling2D {
    /// A named layer.
    pub fn new(name: &str) -> GlobalAveragePooling2D {
        GlobalAveragePooling2D {
            name: name.to_string(),
        }
    }
    /// The mean over height and width.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::global_avg_pool(x).map_err(Error::in_layer(&self.name))
    }
}

/// Keras `GlobalMaxPooling2D`: `[n, h, w, c]` to `[n, c]`.
pub struct GlobalMaxPooling2D {
    /// The Keras layer name (`max_pool` in ResNet50).
    pub name: String,
}

impl GlobalMaxPooling2D {
    /// A named layer.
    pub fn new(name: &str) -> GlobalMaxPooling2D {
        GlobalMaxPooling2D {
            name: name.to_string(),
        }
    }
    /// The maximum over height and width.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::global_max_pool(x).map_err(Error::in_layer(&self.name))
    }
}

/// Keras `Flatten`: `[n, ...]` to `[n, prod(...)]` in row-major (NHWC) order,
/// which is Keras's order for channels-last models.
pub struct Flatten {
    /// The Keras layer name (`flatten`).
    pub name: String,
}

impl Flatten {
    /// A named layer.
    pub fn new(name: &str) -> Flatten {
        Flatten {
            name: name.to_string(),
        }
    }
    /// Flattens all axes but the first.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::flatten(x).map_err(Error::in_layer(&self.name))
    }
}

/// Keras `Reshape`: `[n, ...]` to `[n, target...]` (row-major, as Keras for
/// channels-last tensors).
pub struct Reshape {
    /// The Keras layer name (`reshape_1`).
    pub name: String,
    /// The shape of one sample (Keras's `target_shape`).
    pub target: Vec<usize>,
}

impl Reshape {
    /// A named layer reshaping each sample to `target`.
    pub fn new(name: &str, target: &[usize]) -> Reshape {
        Reshape {
            name: name.to_string(),
            target: target.to_vec(),
        }
    }
    /// Reshapes all axes but the first.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let shape: Vec<usize> = x.shape()[..1.min(x.shape().len())]
            .iter()
            .chain(&self.target)
            .copied()
            .collect();
        ops::reshape(x, &shape).map_err(Error::in_layer(&self.name))
    }
}

/// Keras `Dropout`: in training, inverted dropout with a mask drawn from the
/// counter-based generator at (`seed`, stream = step); every training call
/// advances the step, so each batch gets a fresh, reproducible mask.
/// In inference it is the identity.
pub struct Dropout {
    /// The Keras layer name.
    pub name: String,
    /// Probability of dropping an element, in [0, 1).
    pub rate: f64,
    /// Seed of the masks.
    pub seed: u64,
    step: AtomicU64,
}

impl Dropout {
    /// A dropout layer; `rate` outside [0, 1) is an error.
    pub fn new(name: &str, rate: f64, seed: u64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::model(format!(
                "layer {name}: dropout rate {rate} is outside [0, 1)"
            )));
        }
        Ok(Dropout {
            name: name.to_string(),
            rate,
            seed,
            step: AtomicU64::new(0),
        })
    }

    /// The stream the next training call will use.
    pub fn step(&self) -> u64 {
        self.step.load(Ordering::Relaxed)
    }

    /// Sets the step (to resume a run exactly).
    pub fn set_step(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed);
    }

    /// Drops elements in training; identity otherwise.
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if !training || self.rate == 0.0 {
            return Ok(x.clone());
        }
        let stream = self.step.fetch_add(1, Ordering::Relaxed);
        ops::dropout(x, self.rate, self.seed, stream).map_err(Error::in_layer(&self.name))
    }
}

/// Keras `Add`: elementwise sum of two tensors (the ResNet shortcut join).
pub struct Add {
    /// The Keras layer name (`conv2_block1_add`).
    pub name: String,
}

impl Add {
    /// A named layer.
    pub fn new(name: &str) -> Add {
        Add {
            name: name.to_string(),
        }
    }
    /// a + b.
    pub fn forward(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        ops::add(a, b).map_err(Error::in_layer(&self.name))
    }
}

/// Keras `Concatenate(axis=-1)`: its inputs joined along channels, in order
/// (InceptionV3's `mixed0` .. `mixed10`).
pub struct Concatenate {
    /// The Keras layer name (`mixed0`).
    pub name: String,
}

impl Concatenate {
    /// A named layer.
    pub fn new(name: &str) -> Concatenate {
        Concatenate {
            name: name.to_string(),
        }
    }
    /// `[n, h, w, c_0]`, `[n, h, w, c_1]`, ... to `[n, h, w, c_0 + c_1 + ...]`.
    pub fn forward(&self, xs: &[Tensor]) -> Result<Tensor> {
        ops::concat(xs).map_err(Error::in_layer(&self.name))
    }
}

/// The top a Keras Application has without its classifier: its `pooling`
/// argument, as nothing or as a global average or max pool under the name
/// the model gives it. Every model's `Head` holds one of these beside its
/// own classifier top.
pub(crate) enum FeaturePooling {
    None,
    Avg(GlobalAveragePooling2D),
    Max(GlobalMaxPooling2D),
}

impl FeaturePooling {
    /// `pooling` with the layer names `avg` and `max` (Keras's names differ by model).
    pub(crate) fn new(pooling: crate::backbone::Pooling, avg: &str, max: &str) -> Self {
        match pooling {
            crate::backbone::Pooling::None => FeaturePooling::None,
            crate::backbone::Pooling::Avg => FeaturePooling::Avg(GlobalAveragePooling2D::new(avg)),
            crate::backbone::Pooling::Max => FeaturePooling::Max(GlobalMaxPooling2D::new(max)),
        }
    }

    /// The pooling layer's name, if there is one.
    pub(crate) fn layer_name(&self) -> Option<&str> {
        match self {
            FeaturePooling::None => None,
            FeaturePooling::Avg(p) => Some(&p.name),
            FeaturePooling::Max(p) => Some(&p.name),
        }
    }

    /// Pools `x` (or passes it through), tapping the pool's output.
    pub(crate) fn forward(&self, x: Tensor, taps: &mut crate::backbone::Taps) -> Result<Tensor> {
        let y = match self {
            FeaturePooling::None => return Ok(x),
            FeaturePooling::Avg(p) => p.forward(&x)?,
            FeaturePooling::Max(p) => p.forward(&x)?,
        };
        taps.put(self.layer_name().unwrap_or_default(), &y);
        Ok(y)
    }
}
