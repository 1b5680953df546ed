//! MobileNet (v1) as `keras.applications.MobileNet` builds it
//! (keras/src/applications/mobilenet.py), depth multiplier 1:
//!
//! ```text
//! conv1 3x3/2 same (32α) → conv1_bn → conv1_relu (ReLU6)
//! → 13 depthwise-separable blocks conv_dw_B / conv_pw_B (B = 1..13)
//! → top: global_average_pooling2d → reshape_1 [1, 1, c] → dropout
//!        → conv_preds 1x1 (1000, bias) → act_softmax → reshape_2 [1000]
//!   | or global_average_pooling2d | global_max_pooling2d | nothing
//! ```
//!
//! A block `B` with `f` pointwise filters and stride `s`:
//!
//! ```text
//! [conv_pad_B ((0,1),(0,1)) if s = 2] → conv_dw_B 3x3/s depthwise ('same' if s = 1, else 'valid')
//! → conv_dw_B_bn → conv_dw_B_relu → conv_pw_B 1x1 (int(f·α)) → conv_pw_B_bn → conv_pw_B_relu
//! ```
//!
//! Channel counts are Python's `int(filters * alpha)`; no convolution has a
//! bias but `conv_preds`; every BatchNormalization has Keras's defaults
//! (epsilon 1e-3, momentum 0.99); every activation is ReLU6. The top is the
//! one of the published with-top files (`mobilenet_2_5_224_tf.h5`, written by
//! keras-applications): Keras 3 builds the same math with other names for
//! the weightless layers (`predictions`, no `reshape_1`).

use crate::backbone::{check_input, Backbone, ModelOptions, Pooling, Span, Taps};
use crate::error::{Error, Result};
use crate::layers::{
    Activation, BatchNormalization, Conv2D, DepthwiseConv2D, Dropout, FeaturePooling,
    GlobalAveragePooling2D, Init, ReLU6, Reshape, WeightedLayer, ZeroPadding2D,
};
use crate::registry::{self, DEFAULT_ALPHA};
use engine::ops::{self, Padding};
use engine::Tensor;

/// The width multipliers Keras publishes MobileNet weights for.
pub const MOBILENET_ALPHAS: [f64; 4] = [0.25, 0.5, 0.75, 1.0];

/// BatchNormalization epsilon of every MobileNet layer (Keras's default).
pub const MOBILENET_BN_EPSILON: f64 = 1e-3;

/// Keras's `dropout` argument of MobileNet (the rate before `conv_preds`).
const TOP_DROPOUT: f64 = 1e-3;

/// The 13 blocks: pointwise filters (before α) and stride.
const BLOCKS: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

/// One depthwise-separable block.
struct Block {
    pad: Option<ZeroPadding2D>,
    dw: DepthwiseConv2D,
    dw_bn: BatchNormalization,
    dw_relu: ReLU6,
    pw: Conv2D,
    pw_bn: BatchNormalization,
    pw_relu: ReLU6,
}

impl Block {
    fn new(id: usize, c_in: usize, c_out: usize, stride: usize, init: &mut Init) -> Block {
        let bn = |name: String, c| BatchNormalization::new(&name, c, MOBILENET_BN_EPSILON);
        let padding = if stride == 1 {
            Padding::Same
        } else {
            Padding::Valid
        };
        let dw = DepthwiseConv2D::new(
            &format!("conv_dw_{id}"),
            (3, 3),
            c_in,
            stride,
            padding,
            init,
        );
        let pw = Conv2D::new(
            &format!("conv_pw_{id}"),
            (1, 1),
            c_in,
            c_out,
            1,
            Padding::Same,
            Activation::Linear,
            init,
        )
        .without_bias();
        Block {
            pad: (stride != 1)
                .then(|| ZeroPadding2D::with(&format!("conv_pad_{id}"), (0, 1), (0, 1))),
            dw,
            dw_bn: bn(format!("conv_dw_{id}_bn"), c_in),
            dw_relu: ReLU6::new(&format!("conv_dw_{id}_relu")),
            pw,
            pw_bn: bn(format!("conv_pw_{id}_bn"), c_out),
            pw_relu: ReLU6::new(&format!("conv_pw_{id}_relu")),
        }
    }

    fn weighted_layers(&self) -> [&dyn WeightedLayer; 4] {
        [&self.dw, &self.dw_bn, &self.pw, &self.pw_bn]
    }

    fn layer_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.pad.iter().map(|p| p.name.clone()).collect();
        v.extend([
            self.dw.name().to_string(),
            self.dw_bn.name().to_string(),
            self.dw_relu.name.clone(),
            self.pw.name().to_string(),
            self.pw_bn.name().to_string(),
            self.pw_relu.name.clone(),
        ]);
        v
    }

    fn forward(&self, x: Tensor, training: bool, taps: &mut Taps) -> Result<Tensor> {
        let mut x = x;
        if let Some(pad) = &self.pad {
            x = pad.forward(&x)?;
            taps.put(&pad.name, &x);
        }
        let x = self.dw.forward(&x)?;
        taps.put(self.dw.name(), &x);
        let x = self.dw_bn.forward(&x, training)?;
        taps.put(self.dw_bn.name(), &x);
        let x = self.dw_relu.forward(&x)?;
        taps.put(&self.dw_relu.name, &x);
        let x = self.pw.forward(&x)?;
        taps.put(self.pw.name(), &x);
        let x = self.pw_bn.forward(&x, training)?;
        taps.put(self.pw_bn.name(), &x);
        let x = self.pw_relu.forward(&x)?;
        taps.put(&self.pw_relu.name, &x);
        Ok(x)
    }
}

/// The published files' classifier.
struct Top {
    pool: GlobalAveragePooling2D,
    reshape_1: Reshape,
    dropout: Dropout,
    conv_preds: Conv2D,
    reshape_2: Reshape,
}

/// What follows the last block.
enum Head {
    Top(Box<Top>),
    /// No top: the `pooling` argument.
    Pooled(FeaturePooling),
}

/// Keras MobileNet, layer for layer.
pub struct MobileNet {
    options: ModelOptions,
    alpha: f64,
    conv1: Conv2D,
    conv1_bn: BatchNormalization,
    conv1_relu: ReLU6,
    blocks: Vec<Block>,
    head: Head,
}

impl MobileNet {
    /// Builds the model with width multiplier `options.alpha` (0.25, 0.5,
    /// 0.75 or 1.0; None means 1.0; anything else is an error). Initial
    /// weights: Keras's initialisers, seeded by `options.init_seed`.
    pub fn new(options: &ModelOptions) -> Result<MobileNet> {
        options.check("mobilenet")?;
        let alpha = registry::find("mobilenet")?
            .alpha(options.alpha)?
            .unwrap_or(DEFAULT_ALPHA);
        // Python's int(filters * alpha): truncation of the f64 product.
        let width = |filters: usize| (filters as f64 * alpha) as usize;
        let mut init = Init::new(options.init_seed);
        let c1 = width(32);
        let conv1 = Conv2D::new(
            "conv1",
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
        for (i, &(filters, stride)) in BLOCKS.iter().enumerate() {
            let c_out = width(filters);
            blocks.push(Block::new(i + 1, c_in, c_out, stride, &mut init));
            c_in = c_out;
        }
        let head = if options.include_top {
            Head::Top(Box::new(Top {
                pool: GlobalAveragePooling2D::new("global_average_pooling2d"),
                reshape_1: Reshape::new("reshape_1", &[1, 1, c_in]),
                dropout: Dropout::new("dropout", TOP_DROPOUT, options.init_seed)?,
                conv_preds: Conv2D::new(
                    "conv_preds",
                    (1, 1),
                    c_in,
                    1000,
                    1,
                    Padding::Same,
                    Activation::Linear,
                    &mut init,
                ),
                reshape_2: Reshape::new("reshape_2", &[1000]),
            }))
        } else {
            Head::Pooled(FeaturePooling::new(
                options.pooling,
                "global_average_pooling2d",
                "global_max_pooling2d",
            ))
        };
        Ok(MobileNet {
            options: options.clone(),
            alpha,
            conv1,
            conv1_bn: BatchNormalization::new("conv1_bn", c1, MOBILENET_BN_EPSILON),
            conv1_relu: ReLU6::new("conv1_relu"),
            blocks,
            head,
        })
    }

    /// The width multiplier α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Channels of the last block's output (`int(1024·α)`).
    pub fn feature_width(&self) -> usize {
        self.blocks.last().map_or(0, |b| b.pw.filters())
    }
}

impl Backbone for MobileNet {
    fn name(&self) -> &'static str {
        "mobilenet"
    }

    fn options(&self) -> &ModelOptions {
        &self.options
    }

    fn layer_names(&self) -> Vec<String> {
        let mut v = vec![
            self.conv1.name().to_string(),
            self.conv1_bn.name().to_string(),
            self.conv1_relu.name.clone(),
        ];
        for b in &self.blocks {
            v.extend(b.layer_names());
        }
        match &self.head {
            Head::Top(t) => v.extend([
                t.pool.name.clone(),
                t.reshape_1.name.clone(),
                t.dropout.name.clone(),
                t.conv_preds.name().to_string(),
                "act_softmax".to_string(),
                t.reshape_2.name.clone(),
            ]),
            Head::Pooled(p) => v.extend(p.layer_name().map(String::from)),
        }
        v
    }

    fn weighted_layers(&self) -> Vec<&dyn WeightedLayer> {
        let mut v: Vec<&dyn WeightedLayer> = vec![&self.conv1, &self.conv1_bn];
        for b in &self.blocks {
            v.extend(b.weighted_layers());
        }
        if let Head::Top(t) = &self.head {
            v.push(&t.conv_preds);
        }
        v
    }

    fn block_names(&self) -> Vec<String> {
        self.blocks
            .iter()
            .map(|b| b.dw.name().to_string())
            .collect()
    }

    fn run_span(&self, x: &Tensor, span: Span, training: bool, taps: &mut Taps) -> Result<Tensor> {
        check_input(
            "MobileNet",
            x,
            span,
            self.options.input_size,
            self.options.include_top,
        )?;
        let mut x = x.clone();
        if span.from_image() {
            x = self.conv1.forward(&x)?;
            taps.put(self.conv1.name(), &x);
            x = self.conv1_bn.forward(&x, training)?;
            taps.put(self.conv1_bn.name(), &x);
            x = self.conv1_relu.forward(&x)?;
            taps.put(&self.conv1_relu.name, &x);
        }
        for b in &self.blocks[span.blocks(self.blocks.len())] {
            x = b.forward(x, training, taps)?;
        }
        if !span.to_output() {
            return Ok(x);
        }
        match &self.head {
            Head::Top(t) => {
                x = t.pool.forward(&x)?;
                taps.put(&t.pool.name, &x);
                x = t.reshape_1.forward(&x)?;
                taps.put(&t.reshape_1.name, &x);
                x = t.dropout.forward(&x, training)?;
                taps.put(&t.dropout.name, &x);
                x = t.conv_preds.forward(&x)?;
                taps.put(t.conv_preds.name(), &x);
                // act_softmax, over the last axis of [n, 1, 1, 1000].
                x = ops::softmax(&x).map_err(Error::in_layer("act_softmax"))?;
                taps.put("act_softmax", &x);
                x = t.reshape_2.forward(&x)?;
                taps.put(&t.reshape_2.name, &x);
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
        // conv1 ('same', stride 2): ceil(s / 2); each stride-2 block pads one
        // row and column at the end, then a 'valid' 3x3/2: (s + 1 − 3)/2 + 1.
        let down = |s: usize| {
            let s = s.div_ceil(2);
            BLOCKS
                .iter()
                .filter(|b| b.1 == 2)
                .fold(s, |s, _| (s - 2) / 2 + 1)
        };
        let c = self.feature_width();
        Ok(match self.options.pooling {
            Pooling::None => vec![n, down(h), down(w), c],
            Pooling::Avg | Pooling::Max => vec![n, c],
        })
    }

    fn set_bn_inference_only(&self, inference_only: bool) {
        self.conv1_bn.set_inference_only(inference_only);
        for b in &self.blocks {
            b.dw_bn.set_inference_only(inference_only);
            b.pw_bn.set_inference_only(inference_only);
        }
    }
}
