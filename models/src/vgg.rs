//! VGG16 and VGG19 as `keras.applications.VGG16` / `VGG19` build them
//! (keras/src/applications/vgg16.py, vgg19.py): five blocks of 3x3 'same'
//! convolutions with a fused ReLU, 64, 128, 256, 512 and 512 filters, each
//! block closed by a 2x2/2 'valid' max pool (`block1_pool` ...
//! `block5_pool`); then either the ImageNet top (`flatten`, `fc1` 4096 relu,
//! `fc2` 4096 relu, `predictions` 1000 softmax; 224x224 inputs only) or
//! optional global pooling. The two differ only in the number of
//! convolutions per block ([`VGG16`]: 2, 2, 3, 3, 3; [`VGG19`]: 2, 2, 4, 4,
//! 4), named `block<b>_conv<i>` from 1.
//!
//! Keras names the optional global pooling layer automatically:
//! `global_average_pooling2d` or `global_max_pooling2d`; so do we.

use crate::backbone::{check_input, Backbone, ModelOptions, Pooling, Span, Taps};
use crate::error::Result;
use crate::layers::{
    Activation, Conv2D, Dense, FeaturePooling, Flatten, Init, MaxPooling2D, WeightedLayer,
};
use engine::ops::Padding;
use engine::Tensor;

/// Filters of the convolutions of each block.
const FILTERS: [usize; 5] = [64, 128, 256, 512, 512];

/// One member of the family: its names and convolutions per block.
#[derive(Debug)]
pub struct VggVariant {
    /// The registered name (`vgg16`).
    pub name: &'static str,
    /// Keras's class name (`VGG16`), for messages.
    pub keras_name: &'static str,
    /// Convolutions in each of the five blocks.
    pub convs: [usize; 5],
}

/// VGG16: 13 convolutions.
pub const VGG16: VggVariant = VggVariant {
    name: "vgg16",
    keras_name: "VGG16",
    convs: [2, 2, 3, 3, 3],
};

/// VGG19: 16 convolutions.
pub const VGG19: VggVariant = VggVariant {
    name: "vgg19",
    keras_name: "VGG19",
    convs: [2, 2, 4, 4, 4],
};

/// The classifier on top (ImageNet, 1000 classes).
struct Top {
    flatten: Flatten,
    fc1: Dense,
    fc2: Dense,
    predictions: Dense,
}

/// What follows block5_pool.
enum Head {
    Top(Top),
    /// No top: the `pooling` argument.
    Pooled(FeaturePooling),
}

/// One block: its convolutions and its closing max pool.
struct Block {
    convs: Vec<Conv2D>,
    pool: MaxPooling2D,
}

/// Keras VGG16 or VGG19, layer for layer.
pub struct Vgg {
    variant: &'static VggVariant,
    options: ModelOptions,
    blocks: Vec<Block>,
    head: Head,
}

impl Vgg {
    /// Builds `variant` ([`VGG16`] or [`VGG19`]) (initial weights: Keras's initialisers, seeded by
    /// `options.init_seed`). Errors on options Keras refuses.
    pub fn new(variant: &'static VggVariant, options: &ModelOptions) -> Result<Vgg> {
        options.check(variant.keras_name)?;
        let mut init = Init::new(options.init_seed);
        let mut c_in = 3;
        let blocks = FILTERS
            .iter()
            .zip(variant.convs)
            .enumerate()
            .map(|(b, (&f, n))| {
                let convs = (0..n)
                    .map(|i| {
                        let conv = Conv2D::new(
                            &format!("block{}_conv{}", b + 1, i + 1),
                            (3, 3),
                            c_in,
                            f,
                            1,
                            Padding::Same,
                            Activation::Relu,
                            &mut init,
                        );
                        c_in = f;
                        conv
                    })
                    .collect();
                let pool = MaxPooling2D::new(&format!("block{}_pool", b + 1), 2, 2, Padding::Valid);
                Block { convs, pool }
            })
            .collect();
        let head = if options.include_top {
            Head::Top(Top {
                flatten: Flatten::new("flatten"),
                fc1: Dense::new("fc1", 7 * 7 * 512, 4096, Activation::Relu, &mut init),
                fc2: Dense::new("fc2", 4096, 4096, Activation::Relu, &mut init),
                predictions: Dense::new("predictions", 4096, 1000, Activation::Softmax, &mut init),
            })
        } else {
            Head::Pooled(FeaturePooling::new(
                options.pooling,
                "global_average_pooling2d",
                "global_max_pooling2d",
            ))
        };
        Ok(Vgg {
            variant,
            options: options.clone(),
            blocks,
            head,
        })
    }
}

impl Backbone for Vgg {
    fn name(&self) -> &'static str {
        self.variant.name
    }

    fn options(&self) -> &ModelOptions {
        &self.options
    }

    fn layer_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for b in &self.blocks {
            names.extend(b.convs.iter().map(|c| c.name().to_string()));
            names.push(b.pool.name.clone());
        }
        match &self.head {
            Head::Top(t) => names.extend([
                t.flatten.name.clone(),
                t.fc1.name().to_string(),
                t.fc2.name().to_string(),
                t.predictions.name().to_string(),
            ]),
            Head::Pooled(p) => names.extend(p.layer_name().map(String::from)),
        }
        names
    }

    fn weighted_layers(&self) -> Vec<&dyn WeightedLayer> {
        let mut layers: Vec<&dyn WeightedLayer> = Vec::new();
        for b in &self.blocks {
            layers.extend(b.convs.iter().map(|c| c as &dyn WeightedLayer));
        }
        if let Head::Top(t) = &self.head {
            layers.extend([
                &t.fc1 as &dyn WeightedLayer,
                &t.fc2 as &dyn WeightedLayer,
                &t.predictions as &dyn WeightedLayer,
            ]);
        }
        layers
    }

    fn block_names(&self) -> Vec<String> {
        (1..=self.blocks.len())
            .map(|b| format!("block{b}"))
            .collect()
    }

    fn run_span(&self, x: &Tensor, span: Span, _training: bool, taps: &mut Taps) -> Result<Tensor> {
        check_input(
            self.variant.keras_name,
            x,
            span,
            self.options.input_size,
            self.options.include_top,
        )?;
        let mut x = x.clone();
        for b in &self.blocks[span.blocks(self.blocks.len())] {
            for conv in &b.convs {
                x = conv.forward(&x)?;
                taps.put(conv.name(), &x);
            }
            x = b.pool.forward(&x)?;
            taps.put(&b.pool.name, &x);
        }
        if !span.to_output() {
            return Ok(x);
        }
        match &self.head {
            Head::Top(t) => {
                x = t.flatten.forward(&x)?;
                taps.put(&t.flatten.name, &x);
                for dense in [&t.fc1, &t.fc2, &t.predictions] {
                    x = dense.forward(&x)?;
                    taps.put(dense.name(), &x);
                }
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
        // Five 2x2/2 'valid' pools: floor(h / 2) each time.
        let (oh, ow) = (h >> 5, w >> 5);
        Ok(match self.options.pooling {
            Pooling::None => vec![n, oh, ow, 512],
            Pooling::Avg | Pooling::Max => vec![n, 512],
        })
    }

    fn set_bn_inference_only(&self, _inference_only: bool) {
        // VGG has no BatchNormalization.
    }
}
