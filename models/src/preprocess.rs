//! Keras's `preprocess_input` in 'caffe' mode, the step between the raw
//! images and VGG16 or ResNet50 (both were trained on it):
//!
//! ```text
//! x: NHWC, RGB, floats in 0..255   →   y[..., c] = x[..., 2 − c] − mean_bgr[c]
//! mean_bgr = [103.939, 116.779, 123.68]
//! ```
//!
//! That is: reverse the channels to BGR, then subtract the ImageNet mean of
//! each BGR channel. No scaling. In the `extract` pipeline it comes after the
//! bilinear resize (Keras resizes the raw pixels) and before the backbone.

use crate::error::{Error, Result};
use engine::{CpuStorage, Storage, Tensor};

/// ImageNet channel means in BGR order, as Keras's `imagenet_utils` has them.
pub const CAFFE_MEAN_BGR: [f64; 3] = [103.939, 116.779, 123.68];

/// Keras 'caffe' preprocessing of an NHWC RGB batch with values in 0..255:
/// RGB → BGR, then subtract [`CAFFE_MEAN_BGR`]. Works in the input's dtype
/// (the mean is rounded to it once, as Keras adds it as a float32 tensor).
/// The result carries no autograd history (it is model input).
pub fn preprocess_input_caffe(x: &Tensor) -> Result<Tensor> {
    let s = x.shape();
    if s.len() != 4 || s[3] != 3 {
        return Err(Error::model(format!(
            "preprocess_input_caffe: input has shape {s:?}, expected NHWC [n, h, w, 3] RGB images"
        )));
    }
    let out = match x.storage() {
        Storage::Cpu(CpuStorage::F32(v)) => {
            let mean = CAFFE_MEAN_BGR.map(|m| m as f32);
            CpuStorage::F32(
                v.chunks_exact(3)
                    .flat_map(|p| [p[2] - mean[0], p[1] - mean[1], p[0] - mean[2]])
                    .collect(),
            )
        }
        Storage::Cpu(CpuStorage::F64(v)) => {
            let mean = CAFFE_MEAN_BGR;
            CpuStorage::F64(
                v.chunks_exact(3)
                    .flat_map(|p| [p[2] - mean[0], p[1] - mean[1], p[0] - mean[2]])
                    .collect(),
            )
        }
        Storage::Cuda(_) => {
            return Err(Error::model(format!(
                "preprocess_input_caffe: input is on {}; on a GPU the uint8 images go through \
                 engine::ops::bilinear_resize::resize_u8_caffe, which resizes and preprocesses \
                 in one kernel",
                x.device()
            )))
        }
    };
    Tensor::from_storage(Storage::Cpu(out), s).map_err(Error::Engine)
}
