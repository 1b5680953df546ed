//! MobileNetV2 as `keras.applications.MobileNetV2` builds it
//! (keras/src/applications/mobilenet_v2.py):
//!
//! ```text
//! Conv1 3x3/2 same (make_divisible(32α, 8)) → bn_Conv1 → Conv1_relu (ReLU6)
//! → 17 inverted residual blocks: expanded_conv (block 0), block_1 ... block_16
//! → Conv_1 1x1 (1280, or make_divisible(1280α, 8) for α > 1) → Conv_1_bn → out_relu
//! → top: global_average_pooling2d → Logits (Dense 1000, softmax)
//!   | or global_average_pooling2d | global_max_pooling2d | nothing
//! ```
//!
//! A block with prefix `P` (`block_B_`, or `expanded_conv_` for block 0),
//! expansion `t`, stride `s` and `f` filters:
//!
//! ```text
//! x ─ [P expand 1x1 (t·c_in) → P expand_BN → P expand_relu, not in block 0]
//!   → [P pad correct_pad(3), if s = 2] → P depthwise 3x3/s ('same' if s = 1, else 'valid')
//!   → P depthwise_BN → P depthwise_relu → P project 1x1 (make_divisible(int(f·α), 8)) → P project_BN ─┐
//! └─ when s = 1 and the channels agree ─────────────────────────────────────────────────── P add
//! ```
//!
//! No convolution has a bias; every BatchNormalization has epsilon 1e-3 and
//! momentum 0.999; every activation is ReLU6; the projection is linear.
//!
//! `P pad` is Keras's `imagenet_utils.correct_pad`, which Keras computes from
//! the model's static input size: (0, 1) for an even side, (1, 1) for an odd
//! one, and (0, 1) when the size is `None`. thaw pads from the actual side of
//! each input ([`ZeroPad::CorrectPad`](crate::layers::ZeroPad)), that is, it
//! equals Keras's model built with a fixed `input_shape=(S, S, 3)` at every
//! size, which is what a user of a fixed image size builds. (Keras's
//! `input_shape=(None, None, 3)` model differs from it when a stride-2 block
//! sees an odd side, e.g. at 75 px.)
//!
//! The top is the one of the published with-top files
//! (`mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5`, written by
//! keras-applications in 2018), whose classifier is named `Logits`; Keras 3
//! names it `predictions`.

use crate::backbone::{check_input, Backbone, ModelOptions, Pooling, Span, Taps};
use crate::error::Result;
use crate::layers::{
    Activation, Add, BatchNormalization, Conv2D, Dense, DepthwiseConv2D, FeaturePooling,
    GlobalAveragePooling2D, Init, ReLU6, WeightedLayer, ZeroPadding2D,
};
use crate::registry::{self, make_divisible, DEFAULT_ALPHA};
use engine::ops::Padding;
use engine::Tensor;

/// The width multipliers Keras publishes MobileNetV2 weights for.
pub const MOBILENET_V2_ALPHAS: [f64; 6] = [0.35, 0.5, 0.75, 1.0, 1.3, 1.4];

/// BatchNormalization epsilon of every MobileNetV2 layer.
pub const MOBILENET_V2_BN_EPSILON: f64 = 1e-3;

/// BatchNormalization momentum of every MobileNetV2 layer.
pub const MOBILENET_V2_BN_MOMENTUM: f64 = 0.999;

/// The 17 blocks: filters (before α), stride, expansion.
const BLOCKS: [(usize, usize, usize); 17] = [
    (16, 1, 1),
    (24, 2, 6),
    (24, 1, 6),
    (32, 2, 6),
    (32, 1, 6),
    (32, 1, 6),
    (64, 2, 6),
    (64, 1, 6),
    (64, 1, 6),
    (64, 1, 6),
    (96, 1, 6),
    (96, 1, 6),
    (96, 1, 6),
    (160, 2, 6),
    (160, 1, 6),
    (160, 1, 6),
    (320, 1, 6),
];

fn bn(name: &str, channels: usize) -> BatchNormalization {
    BatchNormalization::new(name, channels, MOBILENET_V2_BN_EPSILON)
        .with_momentum(MOBILENET_V2_BN_MOMENTUM)
}

/// One inverted residual block (`_inverted_res_block`).
struct Block {
    expand: Option<(Conv2D, BatchNormalization, ReLU6)>,
    pad: Option<ZeroPadding2D>,
    depthwise: DepthwiseConv2D,
    depthwise_bn: BatchNormalization,
    depthwise_relu: ReLU6,
    project: Conv2D,
    project_bn: BatchNormalization,
    add: Option<Add>,
}

impl Block {
    fn new(
        id: usize,
        c_in: usize,
        c_out: usize,
        stride: usize,
        expansion: usize,
        init: &mut Init,
    ) -> Block {
        let p = if id == 0 {
            "expanded_conv_".to_string()
        } else {
            format!("block_{id}_")
        };
        let expand = (id != 0).then(|| {
            let c = expansion * c_in;
            (
                Conv2D::pointwise(&format!("{p}expand"), c_in, c, init),
                bn(&format!("{p}expand_BN"), c),
                ReLU6::new(&format!("{p}expand_relu")),
            )
        });
        let c = if id == 0 { c_in } else { expansion * c_in };
        let padding = if stride == 1 {
            Padding::Same
        } else {
            Padding::Valid
        };
        let depthwise =
            DepthwiseConv2D::new(&format!("{p}depthwise"), (3, 3), c, stride, padding, init);
        let project = Conv2D::pointwise(&format!("{p}project"), c, c_out, init);
        Block {
            expand,
            pad: (stride == 2).then(|| ZeroPadding2D::correct_pad(&format!("{p}pad"), 3)),
            depthwise,
            depthwise_bn: bn(&format!("{p}depthwise_BN"), c),
            depthwise_relu: ReLU6::new(&format!("{p}depthwise_relu")),
            project,
            project_bn: bn(&format!("{p}project_BN"), c_out),
            add: (stride == 1 && c_in == c_out).then(|| Add::new(&format!("{p}add"))),
        }
    }

    fn weighted_layers(&self) -> Vec<&dyn WeightedLayer> {
        let mut v: Vec<&dyn WeightedLayer> = Vec::new();
        if let Some((c, b, _)) = &self.expand {
            v.extend([c as &dyn WeightedLayer, b]);
        }
        v.extend([
            &self.depthwise as &dyn WeightedLayer,
            &self.depthwise_bn,
            &self.project,
            &self.project_bn,
        ]);
        v
    }

    fn layer_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some((c, b, r)) = &self.expand {
            v.extend([c.name().to_string(), b.name().to_string(), r.name.clone()]);
        }
        v.extend(self.pad.iter().map(|p| p.name.clone()));
        v.extend([
            self.depthwise.name().to_string(),
            self.depthwise_bn.name().to_string(),
            self.depthwise_relu.name.clone(),
            self.project.name().to_string(),
            self.project_bn.name().to_string(),
        ]);
        v.extend(self.add.iter().map(|a| a.name.clone()));
        v
    }

    fn batch_norms(&self) -> Vec<&BatchNormalization> {
        let mut v: Vec<&BatchNormalization> = self.expand.iter().map(|(_, b, _)| b).collect();
        v.extend([&self.depthwise_bn, &self.project_bn]);
        v
    }

    fn forward(&self, input: Tensor, training: bool, taps: &mut Taps) -> Result<Tensor> {
        let mut x = input.clone();
        if let Some((conv, bn, relu)) = &self.expand {
            x = conv.forward(&x)?;
            taps.put(conv.name(), &x);
            x = bn.forward(&x, training)?;
            taps.put(bn.name(), &x);
            x = relu.forward(&x)?;
            taps.put(&relu.name, &x);
        }
        if let Some(pad) = &self.pad {
            x = pad.forward(&x)?;
            taps.put(&pad.name, &x);
        }
        x = self.depthwise.forward(&x)?;
        taps.put(self.depthwise.name(), &x);
        x = self.depthwise_bn.forward(&x, training)?;
        taps.put(self.depthwise_bn.name(), &x);
        x = self.depthwise_relu.forward(&x)?;
        taps.put(&self.depthwise_relu.name, &x);
        x = self.project.forward(&x)?;
        taps.put(self.project.name(), &x);
        x = self.project_bn.forward(&x, training)?;
        taps.put(self.project_bn.name(), &x);
        if let Some(add) = &self.add {
            x = add.forward(&input, &x)?;
            taps.put(&add.name, &x);
        }
        Ok(x)
    }
}

/// What follows `out_relu`.
enum Head {
    /// `global_average_pooling2d` then the 1000-class `Logits` (softmax).
    Top(GlobalAveragePooling2D, Dense),
    /// No top: the `pooling` argument.
    Pooled(FeaturePooling),
}

/// Keras MobileNetV2, layer for layer.
pub struct MobileNetV2 {
    options: ModelOptions,
    alpha: f64,
    conv1: Conv2D,
    bn_conv1: BatchNormalization,
    conv1_relu: ReLU6,
    blocks: Vec<Block>,
    conv_1: Conv2D,
    conv_1_bn: BatchNormalization,
    out_relu: ReLU6,
    head: Head,
}

impl MobileNetV2 {
    /// Builds the model with width multiplier `options.alpha` (0.35, 0.5,
    /// 0.75, 1.0, 1.3 or 1.4; None means 1.0; anything else is an error).
    /// Initial weights: Keras's initialisers, seeded by `options.init_seed`.
    pub fn new(options: &ModelOptions) -> Result<MobileNetV2> {
        options.check("mobilenet_v2")?;
        let alpha = registry::find("mobilenet_v2")?
            .alpha(options.alpha)?
            .unwrap_or(DEFAULT_ALPHA);
        let mut init = Init::new(options.init_seed);
        let c1 = make_divisible(32.0 * alpha, 8);
        let conv1 = Conv2D::new(
            "Conv1",
            (3, 3),
            3,
            c1,
            2,
            Padding::Same,
            Activation::Linear,
            &mut init,
        )
        .without_bias();
        let mut c_in = c1;
        let mut blocks = Vec::new();
        for (id, &(filters, stride, expansion)) in BLOCKS.iter().enumerate() {
            // Python's int(filters * alpha), then _make_divisible.
            let c_out = make_divisible(((filters as f64 * alpha) as usize) as f64, 8);
            blocks.push(Block::new(id, c_in, c_out, stride, expansion, &mut init));
            c_in = c_out;
        }
        let last = if alpha > 1.0 {
            make_divisible(1280.0 * alpha, 8)
        } else {
            1280
        };
        let conv_1 = Conv2D::pointwise("Conv_1", c_in, last, &mut init);
        let head = if options.include_top {
            Head::Top(
                GlobalAveragePooling2D::new("global_average_pooling2d"),
                Dense::new("Logits", last, 1000, Activation::Softmax, &mut init),
            )
        } else {
            Head::Pooled(FeaturePooling::new(
                options.pooling,
                "global_average_pooling2d",
                "global_max_pooling2d",
            ))
        };
        Ok(MobileNetV2 {
            options: options.clone(),
            alpha,
            conv1,
            bn_conv1: bn("bn_Conv1", c1),
            conv1_relu: ReLU6::new("Conv1_relu"),
            blocks,
            conv_1,
            conv_1_bn: bn("Conv_1_bn", last),
            out_relu: ReLU6::new("out_relu"),
            head,
        })
    }

    /// The width multiplier α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Channels of `out_relu` (1280, more for α > 1).
    pub fn feature_width(&self) -> usize {
        self.conv_1.filters()
    }
}

impl Backbone for MobileNetV2 {
    fn name(&self) -> &'static str {
        "mobilenet_v2"
    }

    fn options(&self) -> &ModelOptions {
        &self.options
    }

    fn layer_names(&self) -> Vec<String> {
        let mut v = vec![
            self.conv1.name().to_string(),
            self.bn_conv1.name().to_string(),
            self.conv1_relu.name.clone(),
        ];
        for b in &self.blocks {
            v.extend(b.layer_names());
        }
        v.extend([
            self.conv_1.name().to_string(),
            self.conv_1_bn.name().to_string(),
            self.out_relu.name.clone(),
        ]);
        match &self.head {
            Head::Top(p, d) => v.extend([p.name.clone(), d.name().to_string()]),
            Head::Pooled(p) => v.extend(p.layer_name().map(String::from)),
        }
        v
    }

    fn weighted_layers(&self) -> Vec<&dyn WeightedLayer> {
        let mut v: Vec<&dyn WeightedLayer> = vec![&self.conv1, &self.bn_conv1];
        for b in &self.blocks {
            v.extend(b.weighted_layers());
        }
        v.extend([&self.conv_1 as &dyn WeightedLayer, &self.conv_1_bn]);
        if let Head::Top(_, d) = &self.head {
            v.push(d);
        }
        v
    }

    fn block_names(&self) -> Vec<String> {
        // expanded_conv, block_1, ... block_16: the prefix of the block's layer names.
        self.blocks
            .iter()
            .map(|b| {
                b.depthwise
                    .name()
                    .trim_end_matches("_depthwise")
                    .to_string()
            })
            .collect()
    }

    fn run_span(&self, x: &Tensor, span: Span, training: bool, taps: &mut Taps) -> Result<Tensor> {
        check_input(
            "MobileNetV2",
            x,
            span,
            self.options.input_size,
            self.options.include_top,
        )?;
        let mut x = x.clone();
        if span.from_image() {
            x = self.conv1.forward(&x)?;
            taps.put(self.conv1.name(), &x);
            x = self.bn_conv1.forward(&x, training)?;
            taps.put(self.bn_conv1.name(), &x);
            x = self.conv1_relu.forward(&x)?;
            taps.put(&self.conv1_relu.name, &x);
        }
        for b in &self.blocks[span.blocks(self.blocks.len())] {
            x = b.forward(x, training, taps)?;
        }
        if !span.to_output() {
            return Ok(x);
        }
        x = self.conv_1.forward(&x)?;
        taps.put(self.conv_1.name(), &x);
        x = self.conv_1_bn.forward(&x, training)?;
        taps.put(self.conv_1_bn.name(), &x);
        x = self.out_relu.forward(&x)?;
        taps.put(&self.out_relu.name, &x);
        match &self.head {
            Head::Top(pool, dense) => {
                x = pool.forward(&x)?;
                taps.put(&pool.name, &x);
                x = dense.forward(&x)?;
                taps.put(dense.name(), &x);
            }
            Head::Pooled(p) => x = p.forward(x, taps)?,
        }
        Ok(x)
    }

    fn output_shape(&self, n: usize, h: usize, w: usize) -> Result<Vec<usize>> {
        registry::find(self.name())?.check_size((h, w), self.options.include_top)?;
        if self.options.include_top {
            return Ok(vec![n, 1000]);
        }
        // Conv1 ('same', stride 2): ceil(s / 2); each stride-2 block pads to
        // an odd side (s + 1 if s is even, s + 2 if odd), then a 'valid'
        // 3x3/2: ceil(s / 2) again.
        let down = |s: usize| {
            BLOCKS
                .iter()
                .filter(|b| b.1 == 2)
                .fold(s.div_ceil(2), |s, _| s.div_ceil(2))
        };
        let c = self.feature_width();
        Ok(match self.options.pooling {
            Pooling::None => vec![n, down(h), down(w), c],
            Pooling::Avg | Pooling::Max => vec![n, c],
        })
    }

    fn set_bn_inference_only(&self, inference_only: bool) {
        self.bn_conv1.set_inference_only(inference_only);
        for b in &self.blocks {
            for bn in b.batch_norms() {
                bn.set_inference_only(inference_only);
            }
        }
        self.conv_1_bn.set_inference_only(inference_only);
    }
}
