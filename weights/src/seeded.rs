//! Seeded full-size weights: deterministic, non-trivial values for every
//! weight of a model, from integer arithmetic only, so that the Python twin
//! (`tests/fixtures/keras/seeded.py`) produces the very same bits. Tests give
//! these weights to Keras and to thaw and compare the outputs, without
//! committing 58-98 MB of weights.
//!
//! Element `i` of the `t`-th weight of the spec (`t` counted from 0 in spec
//! order) draws `x = random_u64(seed, t, i)` (SplitMix64, see `engine::rng`)
//! and maps its top 24 bits exactly to `u = (x >> 40) · 2^-24` in [0, 1), then
//! `r = 2u - 1` in [-1, 1) (also exact in f32). By the weight's kind:
//!
//! | kind              | value                                  | range              |
//! |-------------------|----------------------------------------|--------------------|
//! | `kernel`          | `r · c`, `c = sqrt(3) · sqrt(2 / fan_in)` | He-scaled uniform: variance 2 / fan_in |
//! | `depthwise_kernel` | the same, `fan_in = kh · kw`          | He-scaled uniform  |
//! | `bias`, `beta`    | `r · 0.1`                              | [-0.1, 0.1)        |
//! | `gamma`           | `r · 0.5 + 1`                          | [0.5, 1.5)         |
//! | `gamma` of a `*_3_bn` layer | `r · 0.1 + 0.2`              | [0.1, 0.3)         |
//! | `moving_mean`     | `r · 0.1`                              | [-0.1, 0.1)        |
//! | `moving_variance` | `u · 1.5 + 0.5`                        | [0.5, 2)           |
//! | anything else     | `r · 0.1`                              | [-0.1, 0.1)        |
//!
//! A `*_3_bn` layer is the last BatchNormalization of a ResNet bottleneck
//! branch (`conv3_block2_3_bn`): a small gamma there keeps each residual
//! branch small next to its shortcut (as zero-initialising it does in "Bag of
//! Tricks"), so the activations do not grow by ~2x per block through 16
//! blocks. `fan_in` is the product of all kernel dimensions but the last (kh·kw·in for
//! a conv, in for a dense layer); a depthwise kernel `[kh, kw, c, m]` mixes no
//! channels, so its `fan_in` is kh·kw (with kh·kw·c, 17-28 depthwise layers of
//! MobileNet would shrink the activations to nothing). Each constant is computed in f64 and rounded
//! to f32 once; every step after is one f32 operation (rounded to nearest
//! even), so numpy's float32 arithmetic in the same order gives the same bits.
//! With these scales the activations of VGG16, ResNet50, MobileNet and MobileNetV2 stay finite and
//! non-degenerate through every layer (checked in Keras by `gen_keras.py`).

use crate::{NamedTensors, WeightSpec};
use engine::rng::random_u64;
use engine::Tensor;
use rayon::prelude::*;

/// How one kind of weight maps `u` in [0, 1) to a value: `scale · (2u - 1) + offset`,
/// or, for `moving_variance`, `scale · u + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mapping {
    /// Multiplies `2u - 1` (or `u` when `from_unit` is true).
    pub scale: f32,
    /// Added after the multiplication (skipped when 0).
    pub offset: f32,
    /// Use `u` itself instead of `2u - 1`.
    pub from_unit: bool,
}

/// The mapping for one weight of `spec`, from its kind and shape.
pub fn mapping(spec: &WeightSpec) -> Mapping {
    let sym = |scale: f64, offset: f64| Mapping {
        scale: scale as f32,
        offset: offset as f32,
        from_unit: false,
    };
    match spec.kind() {
        "kernel" => {
            let last = spec.shape.len().saturating_sub(1);
            let fan_in: usize = spec.shape[..last].iter().product::<usize>().max(1);
            sym(3f64.sqrt() * (2.0 / fan_in as f64).sqrt(), 0.0)
        }
        "depthwise_kernel" => {
            let fan_in: usize = spec.shape.iter().take(2).product::<usize>().max(1);
            sym(3f64.sqrt() * (2.0 / fan_in as f64).sqrt(), 0.0)
        }
        "gamma" if spec.layer().ends_with("_3_bn") => sym(0.1, 0.2),
        "gamma" => sym(0.5, 1.0),
        "moving_variance" => Mapping {
            scale: 1.5,
            offset: 0.5,
            from_unit: true,
        },
        // bias, beta, moving_mean and anything else: small, centred on 0.
        _ => sym(0.1, 0.0),
    }
}

/// The value of element `index` of weight number `stream` with mapping `m`.
pub fn value(seed: u64, stream: u64, index: u64, m: Mapping) -> f32 {
    let x = random_u64(seed, stream, index);
    let u = (x >> 40) as f32 * (1.0 / (1u64 << 24) as f32); // exact: 24 bits
    let r = if m.from_unit { u } else { 2.0 * u - 1.0 }; // exact in f32
    let v = r * m.scale; // the one rounding of the product
    if m.offset != 0.0 {
        v + m.offset
    } else {
        v
    }
}

/// Every weight of `spec`, seeded: the same `seed` always gives the same bits,
/// here and in `tests/fixtures/keras/seeded.py`.
pub fn generate(spec: &[WeightSpec], seed: u64) -> NamedTensors {
    spec.iter()
        .enumerate()
        .map(|(t, w)| {
            let m = mapping(w);
            let n: usize = w.shape.iter().product();
            let v: Vec<f32> = (0..n as u64)
                .into_par_iter()
                .map(|i| value(seed, t as u64, i, m))
                .collect();
            let tensor = Tensor::from_vec(v, &w.shape).expect("length is the shape's product");
            (w.name.clone(), tensor)
        })
        .collect()
}
