//! Keras's `preprocess_input`, the step between the raw images and a
//! backbone: each model was trained on one mode, named by its registration
//! ([`crate::registry::ModelEntry::preprocessing`]).
//!
//! ```text
//! x: NHWC, RGB, floats in 0..255   →   y[..., c] = x[..., src[c]] / div[c] − off[c]
//!
//! mode   src        div     off                          Keras / models
//! caffe  (2, 1, 0)  1       (103.939, 116.779, 123.68)   RGB → BGR minus the ImageNet means (VGG16, ResNet50)
//! tf     (0, 1, 2)  127.5   1                            x / 127.5 − 1, in [-1, 1] (MobileNet, MobileNetV2)
//! lite   (0, 1, 2)  128     127 / 128                    (x − 127) / 128 (EfficientNet-Lite)
//! ```
//!
//! `lite` as `x / 128 − 127/128` is `(x − 127) / 128` to the bit: dividing
//! by a power of two is exact. In the `extract` pipeline the map comes after
//! the bilinear resize (Keras resizes the raw pixels) and before the
//! backbone; on a GPU the same [`PixelMap`] is applied by the fused kernel
//! `engine::ops::bilinear_resize::resize_u8`.

use crate::error::{Error, Result};
use engine::ops::bilinear_resize::PixelMap;
use engine::{CpuStorage, Element, Storage, Tensor};
use std::fmt;
use std::str::FromStr;

/// ImageNet channel means in BGR order, as Keras's `imagenet_utils` has them.
pub const CAFFE_MEAN_BGR: [f64; 3] = [103.939, 116.779, 123.68];

/// A Keras `preprocess_input` mode: how 0..255 RGB pixels become model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preprocessing {
    /// RGB → BGR, minus [`CAFFE_MEAN_BGR`]; no scaling.
    Caffe,
    /// `x / 127.5 − 1`, channels kept in RGB order.
    Tf,
    /// `(x − 127) / 128`, channels kept in RGB order (EfficientNet-Lite).
    Lite,
}

impl Preprocessing {
    /// Every mode.
    pub const ALL: [Preprocessing; 3] =
        [Preprocessing::Caffe, Preprocessing::Tf, Preprocessing::Lite];

    /// The name used on the command line and in model files.
    pub fn name(self) -> &'static str {
        match self {
            Preprocessing::Caffe => "caffe",
            Preprocessing::Tf => "tf",
            Preprocessing::Lite => "lite",
        }
    }

    /// The mode's numbers: the one place they are written down.
    pub fn pixel_map(self) -> PixelMap {
        match self {
            Preprocessing::Caffe => PixelMap {
                source: [2, 1, 0],
                divisor: [1.0; 3],
                offset: CAFFE_MEAN_BGR,
            },
            Preprocessing::Tf => PixelMap {
                source: [0, 1, 2],
                divisor: [127.5; 3],
                offset: [1.0; 3],
            },
            Preprocessing::Lite => PixelMap {
                source: [0, 1, 2],
                divisor: [128.0; 3],
                offset: [127.0 / 128.0; 3],
            },
        }
    }
}

impl fmt::Display for Preprocessing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preprocessing {
    type Err = Error;
    fn from_str(s: &str) -> Result<Preprocessing> {
        Preprocessing::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                Error::model(format!(
                    "unknown preprocessing '{s}': use caffe, tf or lite"
                ))
            })
    }
}

/// Keras preprocessing `mode` of an NHWC RGB batch with values in 0..255.
/// Works in the input's dtype (the constants are rounded to it once, as
/// Keras adds them as float32 tensors). The result carries no autograd
/// history (it is model input).
pub fn preprocess_input(mode: Preprocessing, x: &Tensor) -> Result<Tensor> {
    let s = x.shape();
    if s.len() != 4 || s[3] != 3 {
        return Err(Error::model(format!(
            "preprocess_input ({mode}): input has shape {s:?}, expected NHWC [n, h, w, 3] RGB \
             images"
        )));
    }
    let map = mode.pixel_map();
    let out = match x.storage() {
        Storage::Cpu(CpuStorage::F32(v)) => f32::wrap(apply(v, &map, |c| c as f32)),
        Storage::Cpu(CpuStorage::F64(v)) => f64::wrap(apply(v, &map, |c| c)),
        Storage::Cuda(_) => {
            return Err(Error::model(format!(
                "preprocess_input ({mode}): input is on {}; on a GPU the uint8 images go \
                 through engine::ops::bilinear_resize::resize_u8, which resizes and \
                 preprocesses in one kernel",
                x.device()
            )))
        }
    };
    Tensor::from_storage(Storage::Cpu(out), s).map_err(Error::Engine)
}

/// `y[c] = x[src[c]] / div[c] − off[c]` per pixel, the constants rounded to `T` once.
fn apply<T>(x: &[T], map: &PixelMap, to: impl Fn(f64) -> T) -> Vec<T>
where
    T: Copy + std::ops::Div<Output = T> + std::ops::Sub<Output = T>,
{
    let (div, off) = (map.divisor.map(&to), map.offset.map(&to));
    x.chunks_exact(3)
        .flat_map(|p| std::array::from_fn::<T, 3, _>(|c| p[map.source[c]] / div[c] - off[c]))
        .collect()
}
