//! ResNet50 (v1) as `keras.applications.ResNet50` builds it
//! (keras/src/applications/resnet.py, `ResNet` with `preact=False`,
//! `use_bias=True`, and `residual_block_v1`):
//!
//! ```text
//! conv1_pad (zero 3) → conv1_conv 7x7/2 valid → conv1_bn → conv1_relu
//! → pool1_pad (zero 1) → pool1_pool 3x3/2 valid max
//! → conv2 (64, 3 blocks, stride 1) → conv3 (128, 4) → conv4 (256, 6) → conv5 (512, 3)
//! → avg_pool + predictions (top) | avg_pool | max_pool | nothing
//! ```
//!
//! A bottleneck block `convS_blockB` with `f` filters:
//!
//! ```text
//! x ─ _1_conv 1x1/s → _1_bn → _1_relu → _2_conv 3x3 same → _2_bn → _2_relu → _3_conv 1x1 (4f) → _3_bn ─┐
//! └─ shortcut: x itself, or (first block of a stage) _0_conv 1x1/s (4f) → _0_bn ──────────────────── _add → _out (relu)
//! ```
//!
//! The stride `s` (1 in conv2, 2 in conv3..conv5) sits on the first 1x1
//! conv and on the shortcut conv, as in Keras's v1 code. Every
//! BatchNormalization uses epsilon 1.001e-5.
//!
//! Weight order follows Keras's `model.weights`, which lists layers in the
//! graph's topological order: in a first block that is `_1_conv, _1_bn,
//! _2_conv, _2_bn, _0_conv, _3_conv, _0_bn, _3_bn`.

use crate::backbone::{check_input, Backbone, ModelOptions, Pooling, Span, Taps};
use crate::error::Result;
use crate::layers::{
    Activation, Add, BatchNormalization, Conv2D, Dense, FeaturePooling, GlobalAveragePooling2D,
    Init, MaxPooling2D, ReLU, WeightedLayer, ZeroPadding2D,
};
use engine::ops::Padding;
use engine::Tensor;

/// BatchNormalization epsilon of every ResNet50 layer (Keras's resnet.py).
pub const RESNET_BN_EPSILON: f64 = 1.001e-5;

/// The four stages: name, bottleneck filters, blocks, stride of the first block.
const STAGES: [(&str, usize, usize, usize); 4] = [
    ("conv2", 64, 3, 1),
    ("conv3", 128, 4, 2),
    ("conv4", 256, 6, 2),
    ("conv5", 512, 3, 2),
];

/// One bottleneck residual block (`residual_block_v1`).
struct Bottleneck {
    /// `_0_conv` and `_0_bn`, in the first block of each stage.
    shortcut: Option<(Conv2D, BatchNormalization)>,
    conv_1: Conv2D,
    bn_1: BatchNormalization,
    relu_1: ReLU,
    conv_2: Conv2D,
    bn_2: BatchNormalization,
    relu_2: ReLU,
    conv_3: Conv2D,
    bn_3: BatchNormalization,
    add: Add,
    out: ReLU,
}

impl Bottleneck {
    fn new(
        name: &str,
        c_in: usize,
        filters: usize,
        stride: usize,
        conv_shortcut: bool,
        init: &mut Init,
    ) -> Bottleneck {
        let conv =
            |suffix: &str, k: usize, c_in: usize, c_out: usize, s: usize, init: &mut Init| {
                let padding = if k == 1 {
                    Padding::Valid
                } else {
                    Padding::Same
                };
                let n = format!("{name}_{suffix}_conv");
                Conv2D::new(
                    &n,
                    (k, k),
                    c_in,
                    c_out,
                    s,
                    padding,
                    Activation::Linear,
                    init,
                )
            };
        let bn = |suffix: &str, c: usize| {
            BatchNormalization::new(&format!("{name}_{suffix}_bn"), c, RESNET_BN_EPSILON)
        };
        // Construction order = Keras's weight order, so initial streams follow it too.
        let conv_1 = conv("1", 1, c_in, filters, stride, init);
        let conv_2 = conv("2", 3, filters, filters, 1, init);
        let shortcut = conv_shortcut.then(|| {
            (
                conv("0", 1, c_in, 4 * filters, stride, init),
                bn("0", 4 * filters),
            )
        });
        let conv_3 = conv("3", 1, filters, 4 * filters, 1, init);
        Bottleneck {
            shortcut,
            conv_1,
            bn_1: bn("1", filters),
            relu_1: ReLU::new(&format!("{name}_1_relu")),
            conv_2,
            bn_2: bn("2", filters),
            relu_2: ReLU::new(&format!("{name}_2_relu")),
            conv_3,
            bn_3: bn("3", 4 * filters),
            add: Add::new(&format!("{name}_add")),
            out: ReLU::new(&format!("{name}_out")),
        }
    }

    /// Layers with weights in Keras's (topological) order.
    fn weighted_layers(&self) -> Vec<&dyn WeightedLayer> {
        let mut v: Vec<&dyn WeightedLayer> =
            vec![&self.conv_1, &self.bn_1, &self.conv_2, &self.bn_2];
        match &self.shortcut {
            Some((c0, b0)) => v.extend([
                c0 as &dyn WeightedLayer,
                &self.conv_3,
                b0 as &dyn WeightedLayer,
                &self.bn_3,
            ]),
            None => v.extend([&self.conv_3 as &dyn WeightedLayer, &self.bn_3]),
        }
        v
    }

    /// Every layer name in Keras's order.
    fn layer_names(&self) -> Vec<String> {
        let n = |l: &dyn WeightedLayer| l.name().to_string();
        let mut v = vec![
            n(&self.conv_1),
            n(&self.bn_1),
            self.relu_1.name.clone(),
            n(&self.conv_2),
            n(&self.bn_2),
            self.relu_2.name.clone(),
        ];
        match &self.shortcut {
            Some((c0, b0)) => v.extend([n(c0), n(&self.conv_3), n(b0), n(&self.bn_3)]),
            None => v.extend([n(&self.conv_3), n(&self.bn_3)]),
        }
        v.extend([self.add.name.clone(), self.out.name.clone()]);
        v
    }

    /// The block's name, the prefix of its layers' (`conv2_block1`).
    fn name(&self) -> String {
        self.add.name.trim_end_matches("_add").to_string()
    }

    fn forward(&self, x: Tensor, training: bool, taps: &mut Taps) -> Result<Tensor> {
        let shortcut = match &self.shortcut {
            Some((conv, bn)) => {
                let s = conv.forward(&x)?;
                taps.put(conv.name(), &s);
                let s = bn.forward(&s, training)?;
                taps.put(bn.name(), &s);
                s
            }
            None => x.clone(),
        };
        let y = self.conv_1.forward(&x)?;
        drop(x);
        taps.put(self.conv_1.name(), &y);
        let y = self.bn_1.forward(&y, training)?;
        taps.put(self.bn_1.name(), &y);
        let y = self.relu_1.forward(&y)?;
        taps.put(&self.relu_1.name, &y);
        let y = self.conv_2.forward(&y)?;
        taps.put(self.conv_2.name(), &y);
        let y = self.bn_2.forward(&y, training)?;
        taps.put(self.bn_2.name(), &y);
        let y = self.relu_2.forward(&y)?;
        taps.put(&self.relu_2.name, &y);
        let y = self.conv_3.forward(&y)?;
        taps.put(self.conv_3.name(), &y);
        let y = self.bn_3.forward(&y, training)?;
        taps.put(self.bn_3.name(), &y);
        let y = self.add.forward(&shortcut, &y)?;
        drop(shortcut);
        taps.put(&self.add.name, &y);
        let y = self.out.forward(&y)?;
        taps.put(&self.out.name, &y);
        Ok(y)
    }

    fn batch_norms(&self) -> Vec<&BatchNormalization> {
        let mut v = vec![&self.bn_1, &self.bn_2, &self.bn_3];
        v.extend(self.shortcut.as_ref().map(|(_, b)| b));
        v
    }
}

/// What follows the last stage.
enum Head {
    /// `avg_pool` then the 1000-class `predictions` (softmax).
    Top(GlobalAveragePooling2D, Dense),
    /// No top: the `pooling` argument.
    Pooled(FeaturePooling),
}

/// Keras ResNet50, layer for layer.
pub struct ResNet50 {
    options: ModelOptions,
    conv1_pad: ZeroPadding2D,
    conv1_conv: Conv2D,
    conv1_bn: BatchNormalization,
    conv1_relu: ReLU,
    pool1_pad: ZeroPadding2D,
    pool1_pool: MaxPooling2D,
    blocks: Vec<Bottleneck>,
    head: Head,
}

impl ResNet50 {
    /// Builds the model (initial weights: Keras's initialisers, seeded by
    /// `options.init_seed`). Errors on options Keras refuses.
    pub fn new(options: &ModelOptions) -> Result<ResNet50> {
        options.check("ResNet50")?;
        let mut init = Init::new(options.init_seed);
        let conv1_conv = Conv2D::new(
            "conv1_conv",
            (7, 7),
            3,
            64,
            2,
            Padding::Valid,
            Activation::Linear,
            &mut init,
        );
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (stage, filters, n_blocks, stride) in STAGES {
            for b in 1..=n_blocks {
                let name = format!("{stage}_block{b}");
                let (s, conv_shortcut) = if b == 1 { (stride, true) } else { (1, false) };
                blocks.push(Bottleneck::new(
                    &name,
                    c_in,
                    filters,
                    s,
                    conv_shortcut,
                    &mut init,
                ));
                c_in = 4 * filters;
            }
        }
        let head = if options.include_top {
            Head::Top(
                GlobalAveragePooling2D::new("avg_pool"),
                Dense::new("predictions", 2048, 1000, Activation::Softmax, &mut init),
            )
        } else {
            Head::Pooled(FeaturePooling::new(options.pooling, "avg_pool", "max_pool"))
        };
        Ok(ResNet50 {
            options: options.clone(),
            conv1_pad: ZeroPadding2D::new("conv1_pad", 3),
            conv1_conv,
            conv1_bn: BatchNormalization::new("conv1_bn", 64, RESNET_BN_EPSILON),
            conv1_relu: ReLU::new("conv1_relu"),
            pool1_pad: ZeroPadding2D::new("pool1_pad", 1),
            pool1_pool: MaxPooling2D::new("pool1_pool", 3, 2, Padding::Valid),
            blocks,
            head,
        })
    }
}

impl Backbone for ResNet50 {
    fn name(&self) -> &'static str {
        "resnet50"
    }

    fn options(&self) -> &ModelOptions {
        &self.options
    }

    fn layer_names(&self) -> Vec<String> {
        let mut v = vec![
            self.conv1_pad.name.clone(),
            self.conv1_conv.name().to_string(),
            self.conv1_bn.name().to_string(),
            self.conv1_relu.name.clone(),
            self.pool1_pad.name.clone(),
            self.pool1_pool.name.clone(),
        ];
        for b in &self.blocks {
            v.extend(b.layer_names());
        }
        match &self.head {
            Head::Top(p, d) => v.extend([p.name.clone(), d.name().to_string()]),
            Head::Pooled(p) => v.extend(p.layer_name().map(String::from)),
        }
        v
    }

    fn weighted_layers(&self) -> Vec<&dyn WeightedLayer> {
        let mut v: Vec<&dyn WeightedLayer> = vec![&self.conv1_conv, &self.conv1_bn];
        for b in &self.blocks {
            v.extend(b.weighted_layers());
        }
        if let Head::Top(_, d) = &self.head {
            v.push(d);
        }
        v
    }

    fn block_names(&self) -> Vec<String> {
        self.blocks.iter().map(|b| b.name()).collect()
    }

    fn run_span(&self, x: &Tensor, span: Span, training: bool, taps: &mut Taps) -> Result<Tensor> {
        check_input(
            "ResNet50",
            x,
            span,
            self.options.input_size,
            self.options.include_top,
        )?;
        let mut x = x.clone();
        if span.from_image() {
            x = self.conv1_pad.forward(&x)?;
            taps.put(&self.conv1_pad.name, &x);
            x = self.conv1_conv.forward(&x)?;
            taps.put(self.conv1_conv.name(), &x);
            x = self.conv1_bn.forward(&x, training)?;
            taps.put(self.conv1_bn.name(), &x);
            x = self.conv1_relu.forward(&x)?;
            taps.put(&self.conv1_relu.name, &x);
            x = self.pool1_pad.forward(&x)?;
            taps.put(&self.pool1_pad.name, &x);
            x = self.pool1_pool.forward(&x)?;
            taps.put(&self.pool1_pool.name, &x);
        }
        for b in &self.blocks[span.blocks(self.blocks.len())] {
            x = b.forward(x, training, taps)?;
        }
        if !span.to_output() {
            return Ok(x);
        }
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
        crate::registry::find(self.name())?.check_size((h, w), self.options.include_top)?;
        if self.options.include_top {
            return Ok(vec![n, 1000]);
        }
        // conv1 (pad 3, 7x7/2), pool1 (pad 1, 3x3/2) and the stride-2 1x1
        // convs of conv3..conv5 each map a side s to (s − 1)/2 + 1.
        let down = |s: usize| (0..5).fold(s, |s, _| (s - 1) / 2 + 1);
        Ok(match self.options.pooling {
            Pooling::None => vec![n, down(h), down(w), 2048],
            Pooling::Avg | Pooling::Max => vec![n, 2048],
        })
    }

    fn set_bn_inference_only(&self, inference_only: bool) {
        self.conv1_bn.set_inference_only(inference_only);
        for b in &self.blocks {
            for bn in b.batch_norms() {
                bn.set_inference_only(inference_only);
            }
        }
    }
}
