//! InceptionV3 as `keras.applications.InceptionV3` builds it
//! (keras/src/applications/inception_v3.py), after Szegedy et al.,
//! "Rethinking the Inception Architecture for Computer Vision" (CVPR 2016).
//! Sides at 299 px (75 px) in brackets:
//!
//! ```text
//! stem:   conv 3x3/2 valid (32) → conv 3x3 valid (32) → conv 3x3 same (64) → max 3x3/2 valid   [73 (17)]
//!         → conv 1x1 (80) → conv 3x3 valid (192) → max 3x3/2 valid                          [35 (7)]
//! mixed0..mixed2   (256, 288, 288 channels)  1x1 | 1x1 → 5x5 | 1x1 → 3x3 → 3x3 | avg → 1x1
//! mixed3           (768, stride 2)          3x3/2 | 1x1 → 3x3 → 3x3/2 | max 3x3/2           [17 (3)]
//! mixed4..mixed7   (768)                    1x1 | 1x1 → 1x7 → 7x1 | 1x1 → 7x1 → 1x7 → 7x1 → 1x7 | avg → 1x1
//! mixed8           (1280, stride 2)         1x1 → 3x3/2 | 1x1 → 1x7 → 7x1 → 3x3/2 | max 3x3/2 [8 (1)]
//! mixed9, mixed10  (2048)                   1x1 | 1x1 → (1x3, 3x1) | 1x1 → 3x3 → (1x3, 3x1) | avg → 1x1
//! → avg_pool + predictions (top, 299 px only) | global_average_pooling2d | global_max_pooling2d | nothing
//! ```
//!
//! Every convolution is Keras's `conv2d_bn`: a Conv2D without bias
//! ('same' and stride 1 unless marked 'valid' or /2), a BatchNormalization
//! with `scale=False` (no gamma; epsilon 1e-3) and an `Activation("relu")`.
//! Every avg pool is 3x3 at stride 1 'same', with the padded cells left out
//! of the mean (TensorFlow's rule, as `engine::ops::avg_pool2d` computes it).
//! Each block's branches are joined along channels by a `Concatenate`
//! named `mixed0` .. `mixed10`; in mixed9 and mixed10, the forks (1x3, 3x1)
//! are joined first, by `mixed9_0` / `mixed9_1` and by unnamed
//! `concatenate` / `concatenate_1`.
//!
//! **Names.** Keras names these layers automatically, by class in creation
//! order: `conv2d`, `conv2d_1`, ... `conv2d_93`, the same for
//! `batch_normalization` and `activation`, `max_pooling2d` ..
//! `max_pooling2d_3`, `average_pooling2d` .. `average_pooling2d_8`, as a
//! fresh Keras 3 session builds the model; thaw uses these names. The
//! published weights file was written by Keras 2, whose counters started at
//! 1 (`conv2d_1`, `batch_normalization_1`), so it is converted by position,
//! as Keras's own loader does (`WeightConversion::KerasH5ByPosition`).
//!
//! **Order.** Keras lists a functional model's layers by depth (the longest
//! path to the output, deepest first), equal depths in the order a
//! depth-first walk from the output meets them: within a block, the branch
//! order. So a block's layers interleave its branches: mixed0 lists
//! `conv2d_8` (the first of the three-convolution branch) before `conv2d_6`
//! and `conv2d_9`, then `conv2d_5`. [`Mixed::keras_order`] computes this
//! order; it is the order of `Backbone::layer_names`, of
//! `Backbone::weighted_layers` and of the published file.
//!
//! `--fine-tune mixed9` unfreezes the last two blocks (the Keras guide's
//! "top 2 inception blocks", `model.layers[249:]`), `--fine-tune mixed10` the last one.

use crate::backbone::{check_input, Backbone, ModelOptions, Pooling, Span, Taps};
use crate::error::{Error, Result};
use crate::layers::{
    Activation, AveragePooling2D, BatchNormalization, Concatenate, Conv2D, Dense, FeaturePooling,
    GlobalAveragePooling2D, Init, MaxPooling2D, ReLU, WeightedLayer,
};
use engine::ops::Padding;
use engine::Tensor;
use std::collections::HashMap;

/// BatchNormalization epsilon of every InceptionV3 layer (Keras's default).
pub const INCEPTION_BN_EPSILON: f64 = 1e-3;

/// Keras's automatic layer names: per class prefix, `prefix`, then
/// `prefix_1`, `prefix_2`, ... in creation order.
#[derive(Default)]
struct Names(HashMap<&'static str, usize>);

impl Names {
    fn next(&mut self, prefix: &'static str) -> String {
        let n = self.0.entry(prefix).or_insert(0);
        let name = match *n {
            0 => prefix.to_string(),
            k => format!("{prefix}_{k}"),
        };
        *n += 1;
        name
    }
}

/// Keras's `conv2d_bn`: Conv2D without bias, BatchNormalization without
/// scale, ReLU.
struct ConvBn {
    conv: Conv2D,
    bn: BatchNormalization,
    relu: ReLU,
}

impl ConvBn {
    fn forward(&self, x: &Tensor, training: bool, taps: &mut Taps) -> Result<Tensor> {
        let y = self.conv.forward(x)?;
        taps.put(self.conv.name(), &y);
        let y = self.bn.forward(&y, training)?;
        taps.put(self.bn.name(), &y);
        let y = self.relu.forward(&y)?;
        taps.put(&self.relu.name, &y);
        Ok(y)
    }

    fn filters(&self) -> usize {
        self.conv.filters()
    }

    /// Its three layers in forward order.
    fn listed(&self) -> [Listed<'_>; 3] {
        [
            Listed::weighted(&self.conv),
            Listed::weighted(&self.bn),
            Listed::plain(&self.relu.name),
        ]
    }
}

/// A convolution of a branch: filters, kernel (rows, columns), stride and padding.
#[derive(Clone, Copy)]
struct ConvSpec(usize, (usize, usize), usize, Padding);

/// Stride 1, 'same' (`conv2d_bn`'s defaults).
const fn same(filters: usize, kh: usize, kw: usize) -> ConvSpec {
    ConvSpec(filters, (kh, kw), 1, Padding::Same)
}

/// A 3x3 at stride 2, 'valid': the reductions of mixed3 and mixed8, and the stem's first.
const fn reduce(filters: usize) -> ConvSpec {
    ConvSpec(filters, (3, 3), 2, Padding::Valid)
}

/// The pool that opens a branch.
enum Pool {
    /// 3x3, stride 1, 'same' (padded cells not counted).
    Avg(AveragePooling2D),
    /// 3x3, stride 2, 'valid' (the reductions' third branch).
    Max(MaxPooling2D),
}

impl Pool {
    fn name(&self) -> &str {
        match self {
            Pool::Avg(p) => &p.name,
            Pool::Max(p) => &p.name,
        }
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Pool::Avg(p) => p.forward(x),
            Pool::Max(p) => p.forward(x),
        }
    }
}

/// One branch of a mixed block: an optional pool, `conv2d_bn`s in a chain,
/// and (in mixed9 and mixed10) a fork into a 1x3 and a 3x1 `conv2d_bn`
/// joined along channels.
struct Branch {
    pool: Option<Pool>,
    convs: Vec<ConvBn>,
    fork: Option<(ConvBn, ConvBn, Concatenate)>,
}

impl Branch {
    fn forward(&self, x: &Tensor, training: bool, taps: &mut Taps) -> Result<Tensor> {
        let mut y = x.clone();
        if let Some(pool) = &self.pool {
            y = pool.forward(&y)?;
            taps.put(pool.name(), &y);
        }
        for c in &self.convs {
            y = c.forward(&y, training, taps)?;
        }
        if let Some((a, b, concat)) = &self.fork {
            let ya = a.forward(&y, training, taps)?;
            let yb = b.forward(&y, training, taps)?;
            y = concat.forward(&[ya, yb])?;
            taps.put(&concat.name, &y);
        }
        Ok(y)
    }

    /// Output channels, given the input's.
    fn channels(&self, c_in: usize) -> usize {
        match (&self.fork, self.convs.last()) {
            (Some((a, b, _)), _) => a.filters() + b.filters(),
            (None, Some(c)) => c.filters(),
            (None, None) => c_in,
        }
    }
}

/// One layer, for listing: its name and, if it has weights, the layer.
struct Listed<'a> {
    name: &'a str,
    weighted: Option<&'a dyn WeightedLayer>,
}

impl<'a> Listed<'a> {
    fn weighted(l: &'a dyn WeightedLayer) -> Listed<'a> {
        Listed {
            name: l.name(),
            weighted: Some(l),
        }
    }
    fn plain(name: &'a str) -> Listed<'a> {
        Listed {
            name,
            weighted: None,
        }
    }
}

/// An Inception block: branches from the same input, joined along channels.
struct Mixed {
    branches: Vec<Branch>,
    concat: Concatenate,
}

impl Mixed {
    /// Block `mixed{i}` of `branches`.
    fn new(i: usize, branches: Vec<Branch>) -> Mixed {
        Mixed {
            branches,
            concat: Concatenate::new(&format!("mixed{i}")),
        }
    }

    fn forward(&self, x: Tensor, training: bool, taps: &mut Taps) -> Result<Tensor> {
        let outs = self
            .branches
            .iter()
            .map(|b| b.forward(&x, training, taps))
            .collect::<Result<Vec<_>>>()?;
        drop(x);
        let y = self.concat.forward(&outs)?;
        taps.put(&self.concat.name, &y);
        Ok(y)
    }

    /// Every layer of the block in Keras's order: by depth below the
    /// block's concatenation, deepest first (the concatenation itself is
    /// depth 0, a branch's last layer depth 1; a fork's two layers of each
    /// kind share a depth, below their own concatenation at depth 1), equal
    /// depths in branch order, then fork order.
    fn keras_order(&self) -> Vec<Listed<'_>> {
        let mut keyed: Vec<(usize, usize, usize, Listed)> = Vec::new();
        for (b, branch) in self.branches.iter().enumerate() {
            let mut chain: Vec<Listed> = branch
                .pool
                .iter()
                .map(|p| Listed::plain(p.name()))
                .collect();
            chain.extend(branch.convs.iter().flat_map(|c| c.listed()));
            // Below a fork: its concatenation (1) and its conv, bn, relu (4, 3, 2).
            let below = if let Some((first, second, concat)) = &branch.fork {
                keyed.push((1, b, 0, Listed::plain(&concat.name)));
                for (part, unit) in [first, second].into_iter().enumerate() {
                    for (depth, l) in (2..=4).rev().zip(unit.listed()) {
                        keyed.push((depth, b, part, l));
                    }
                }
                4
            } else {
                0
            };
            let n = chain.len();
            for (j, l) in chain.into_iter().enumerate() {
                keyed.push((below + n - j, b, 0, l));
            }
        }
        keyed.sort_by_key(|&(depth, b, part, _)| (std::cmp::Reverse(depth), b, part));
        let mut order: Vec<Listed> = keyed.into_iter().map(|(.., l)| l).collect();
        order.push(Listed::plain(&self.concat.name));
        order
    }

    /// Output channels, given the input's.
    fn channels(&self, c_in: usize) -> usize {
        self.branches.iter().map(|b| b.channels(c_in)).sum()
    }

    fn batch_norms(&self) -> impl Iterator<Item = &BatchNormalization> {
        self.branches.iter().flat_map(|b| {
            let fork = b.fork.iter().flat_map(|(x, y, _)| [&x.bn, &y.bn]);
            b.convs.iter().map(|c| &c.bn).chain(fork)
        })
    }
}

/// Makes the layers in Keras's creation order, so that names and initial
/// weights follow it.
struct Builder {
    names: Names,
    init: Init,
}

impl Builder {
    fn conv_bn(
        &mut self,
        c_in: usize,
        ConvSpec(filters, kernel, stride, padding): ConvSpec,
    ) -> ConvBn {
        let conv = Conv2D::new(
            &self.names.next("conv2d"),
            kernel,
            c_in,
            filters,
            stride,
            padding,
            Activation::Linear,
            &mut self.init,
        )
        .without_bias();
        ConvBn {
            conv,
            bn: BatchNormalization::new(
                &self.names.next("batch_normalization"),
                filters,
                INCEPTION_BN_EPSILON,
            )
            .without_scale(),
            relu: ReLU::new(&self.names.next("activation")),
        }
    }

    /// A chain of `conv2d_bn`s from `c_in` channels.
    fn chain(&mut self, mut c_in: usize, specs: &[ConvSpec]) -> Vec<ConvBn> {
        specs
            .iter()
            .map(|&s| {
                let c = self.conv_bn(c_in, s);
                c_in = c.filters();
                c
            })
            .collect()
    }

    fn branch(&mut self, c_in: usize, specs: &[ConvSpec]) -> Branch {
        Branch {
            pool: None,
            convs: self.chain(c_in, specs),
            fork: None,
        }
    }

    /// Avg pool 3x3/1 'same', then one 1x1 `conv2d_bn`.
    fn avg_branch(&mut self, c_in: usize, filters: usize) -> Branch {
        let pool =
            AveragePooling2D::new(&self.names.next("average_pooling2d"), 3, 1, Padding::Same);
        Branch {
            pool: Some(Pool::Avg(pool)),
            convs: self.chain(c_in, &[same(filters, 1, 1)]),
            fork: None,
        }
    }

    /// Max pool 3x3/2 'valid' alone.
    fn max_branch(&mut self) -> Branch {
        let pool = MaxPooling2D::new(&self.names.next("max_pooling2d"), 3, 2, Padding::Valid);
        Branch {
            pool: Some(Pool::Max(pool)),
            convs: Vec::new(),
            fork: None,
        }
    }

    /// `specs`, then the fork into 1x3 and 3x1 (`filters` each), joined by `concat`
    /// (Keras's automatic `concatenate` name when None).
    fn forked_branch(
        &mut self,
        c_in: usize,
        specs: &[ConvSpec],
        filters: usize,
        concat: Option<&str>,
    ) -> Branch {
        let convs = self.chain(c_in, specs);
        let c = convs.last().map_or(c_in, ConvBn::filters);
        let a = self.conv_bn(c, same(filters, 1, 3));
        let b = self.conv_bn(c, same(filters, 3, 1));
        let name = concat.map_or_else(|| self.names.next("concatenate"), str::to_string);
        Branch {
            pool: None,
            convs,
            fork: Some((a, b, Concatenate::new(&name))),
        }
    }
}

/// What follows mixed10.
enum Head {
    /// `avg_pool` then the 1000-class `predictions` (softmax).
    Top(GlobalAveragePooling2D, Dense),
    /// No top: the `pooling` argument.
    Pooled(FeaturePooling),
}

/// Keras InceptionV3, layer for layer.
pub struct InceptionV3 {
    options: ModelOptions,
    /// Two stages of `conv2d_bn`s (three, then two), each closed by a max pool.
    stem: [(Vec<ConvBn>, MaxPooling2D); 2],
    blocks: Vec<Mixed>,
    head: Head,
}

impl InceptionV3 {
    /// Builds the model (initial weights: Keras's initialisers, seeded by
    /// `options.init_seed`). Errors on options Keras refuses (inputs below 75 px).
    pub fn new(options: &ModelOptions) -> Result<InceptionV3> {
        options.check("InceptionV3")?;
        let mut b = Builder {
            names: Names::default(),
            init: Init::new(options.init_seed),
        };
        let valid = |filters, k| ConvSpec(filters, (k, k), 1, Padding::Valid);
        let stem_1 = b.chain(3, &[reduce(32), valid(32, 3), same(64, 3, 3)]);
        let pool_1 = MaxPooling2D::new(&b.names.next("max_pooling2d"), 3, 2, Padding::Valid);
        let stem_2 = b.chain(64, &[valid(80, 1), valid(192, 3)]);
        let pool_2 = MaxPooling2D::new(&b.names.next("max_pooling2d"), 3, 2, Padding::Valid);

        let mut blocks = Vec::new();
        let mut c = 192;
        // mixed0..2: 35x35 at 299 px.
        for (i, pool_filters) in [32, 64, 64].into_iter().enumerate() {
            let branches = vec![
                b.branch(c, &[same(64, 1, 1)]),
                b.branch(c, &[same(48, 1, 1), same(64, 5, 5)]),
                b.branch(c, &[same(64, 1, 1), same(96, 3, 3), same(96, 3, 3)]),
                b.avg_branch(c, pool_filters),
            ];
            blocks.push(Mixed::new(i, branches));
            c = blocks[i].channels(c);
        }
        // mixed3: to 17x17.
        let branches = vec![
            b.branch(c, &[reduce(384)]),
            b.branch(c, &[same(64, 1, 1), same(96, 3, 3), reduce(96)]),
            b.max_branch(),
        ];
        blocks.push(Mixed::new(3, branches));
        c = blocks[3].channels(c);
        // mixed4..7: 17x17, factorized 7x7s of c7 channels.
        for (i, c7) in [(4, 128), (5, 160), (6, 160), (7, 192)] {
            let branches = vec![
                b.branch(c, &[same(192, 1, 1)]),
                b.branch(c, &[same(c7, 1, 1), same(c7, 1, 7), same(192, 7, 1)]),
                b.branch(
                    c,
                    &[
                        same(c7, 1, 1),
                        same(c7, 7, 1),
                        same(c7, 1, 7),
                        same(c7, 7, 1),
                        same(192, 1, 7),
                    ],
                ),
                b.avg_branch(c, 192),
            ];
            blocks.push(Mixed::new(i, branches));
            c = blocks[i].channels(c);
        }
        // mixed8: to 8x8.
        let branches = vec![
            b.branch(c, &[same(192, 1, 1), reduce(320)]),
            b.branch(
                c,
                &[
                    same(192, 1, 1),
                    same(192, 1, 7),
                    same(192, 7, 1),
                    reduce(192),
                ],
            ),
            b.max_branch(),
        ];
        blocks.push(Mixed::new(8, branches));
        c = blocks[8].channels(c);
        // mixed9, mixed10: 8x8, forked 3x3s.
        for i in [9, 10] {
            let branches = vec![
                b.branch(c, &[same(320, 1, 1)]),
                b.forked_branch(
                    c,
                    &[same(384, 1, 1)],
                    384,
                    Some(&format!("mixed9_{}", i - 9)),
                ),
                b.forked_branch(c, &[same(448, 1, 1), same(384, 3, 3)], 384, None),
                b.avg_branch(c, 192),
            ];
            blocks.push(Mixed::new(i, branches));
            c = blocks[i].channels(c);
        }

        let head = if options.include_top {
            Head::Top(
                GlobalAveragePooling2D::new("avg_pool"),
                Dense::new("predictions", c, 1000, Activation::Softmax, &mut b.init),
            )
        } else {
            Head::Pooled(FeaturePooling::new(
                options.pooling,
                "global_average_pooling2d",
                "global_max_pooling2d",
            ))
        };
        Ok(InceptionV3 {
            options: options.clone(),
            stem: [(stem_1, pool_1), (stem_2, pool_2)],
            blocks,
            head,
        })
    }

    /// Every layer in Keras's order (`model.layers` without the input).
    fn keras_order(&self) -> Vec<Listed<'_>> {
        let mut v = Vec::new();
        for (convs, pool) in &self.stem {
            v.extend(convs.iter().flat_map(ConvBn::listed));
            v.push(Listed::plain(&pool.name));
        }
        for block in &self.blocks {
            v.extend(block.keras_order());
        }
        match &self.head {
            Head::Top(pool, dense) => {
                v.extend([Listed::plain(&pool.name), Listed::weighted(dense)])
            }
            Head::Pooled(p) => v.extend(p.layer_name().map(Listed::plain)),
        }
        v
    }
}

impl Backbone for InceptionV3 {
    fn name(&self) -> &'static str {
        "inception_v3"
    }

    fn options(&self) -> &ModelOptions {
        &self.options
    }

    fn layer_names(&self) -> Vec<String> {
        self.keras_order()
            .iter()
            .map(|l| l.name.to_string())
            .collect()
    }

    fn weighted_layers(&self) -> Vec<&dyn WeightedLayer> {
        self.keras_order()
            .into_iter()
            .filter_map(|l| l.weighted)
            .collect()
    }

    fn block_names(&self) -> Vec<String> {
        self.blocks.iter().map(|b| b.concat.name.clone()).collect()
    }

    fn run_span(&self, x: &Tensor, span: Span, training: bool, taps: &mut Taps) -> Result<Tensor> {
        check_input(
            "InceptionV3",
            x,
            span,
            self.options.input_size,
            self.options.include_top,
        )?;
        let mut x = x.clone();
        if span.from_image() {
            for (convs, pool) in &self.stem {
                for c in convs {
                    x = c.forward(&x, training, taps)?;
                }
                x = pool.forward(&x)?;
                taps.put(&pool.name, &x);
            }
        }
        for block in &self.blocks[span.blocks(self.blocks.len())] {
            x = block.forward(x, training, taps)?;
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
        // 3x3/2 valid: s → (s − 3)/2 + 1; 3x3 valid: s − 2. The stem's first
        // conv, two valid 3x3s and two pools, then mixed3 and mixed8.
        let half = |s: usize| (s - 3) / 2 + 1;
        let side = |s: usize| half(half(half(half(half(s) - 2) - 2)));
        Ok(match self.options.pooling {
            Pooling::None => vec![n, side(h), side(w), 2048],
            Pooling::Avg | Pooling::Max => vec![n, 2048],
        })
    }

    fn set_bn_inference_only(&self, inference_only: bool) {
        let stem = self
            .stem
            .iter()
            .flat_map(|(convs, _)| convs.iter().map(|c| &c.bn));
        for bn in stem.chain(self.blocks.iter().flat_map(Mixed::batch_norms)) {
            bn.set_inference_only(inference_only);
        }
    }

    /// Unfreezes the block `block` (`mixed9`: its layers are `conv2d_N`,
    /// which carry no block name) or the layer `block` (`conv2d_85`), and
    /// every layer after it in Keras's order; freezes every layer before.
    fn set_trainable_from(&self, block: &str) -> Result<()> {
        let layers = self.weighted_layers();
        // A block: from its first layer with weights in Keras's order.
        let first_layer = match self.blocks.iter().find(|b| b.concat.name == block) {
            Some(b) => b
                .keras_order()
                .into_iter()
                .find_map(|l| l.weighted)
                .map(|l| l.name().to_string()),
            None => Some(block.to_string()),
        };
        let first = first_layer.and_then(|name| layers.iter().position(|l| l.name() == name));
        let Some(first) = first else {
            return Err(Error::model(format!(
                "inception_v3 has no block or layer '{block}' to unfreeze from; use one of {} \
                 (or a layer name such as conv2d_85)",
                self.block_names().join(", ")
            )));
        };
        for (i, l) in layers.iter().enumerate() {
            l.set_trainable(i >= first);
        }
        Ok(())
    }
}
