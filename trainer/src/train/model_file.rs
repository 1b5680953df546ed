//! The saved model: ONE self-describing safetensors file holding the
//! backbone's weights, the head's weights and everything needed to rebuild
//! and run them on raw images: the last stage of `train`, the first of
//! `evaluate` and `predict`.
//!
//! Tensors keep the Keras names (`conv1_conv/kernel`, ...), head weights are
//! `head_dense1/kernel`, `head_dense1/bias`, ...; the safetensors
//! `__metadata__` holds strings:
//!
//! | key             | example                                         |
//! |-----------------|-------------------------------------------------|
//! | `format`        | `thaw-classifier-v1`                            |
//! | `model`         | `resnet50` (a registered name)                  |
//! | `alpha`         | `0.35` (only for models with variants; files without it: 1.0) |
//! | `classes`       | `["airplane","automobile",...]` (JSON)          |
//! | `image_size`    | `224` (the model's input size)                  |
//! | `input_side`    | `32`: images are brought to 32x32, then resized to `image_size` (CIFAR-10); `224`: straight to `image_size` (image folders of other sizes); files without it: 32 |
//! | `crop_to_aspect_ratio` | `true` when images were centre-cropped to a square first |
//! | `preprocessing` | `caffe`, `tf` or `lite` (the model's, see `models::Preprocessing`) |
//! | `pooling`       | `avg`                                           |
//! | `head`          | `mlp` or `linear`                               |
//! | `input_layout`  | `NHWC uint8 RGB 32x32, bilinear resize to image_size` (`input_side` in words) |
//! | `tta`           | `true` when predictions average image and flip  |
//! | `standardize`   | `true` when the head starts with `head_norm`    |
//! | `val_accuracy`  | best validation accuracy when saved             |
//!
//! Written with `weights::save_safetensors`, which writes a temporary file
//! and renames it into place: an interrupted save leaves the previous file
//! whole.

use super::head::{Head, HeadKind, HEAD_PREFIX};
use crate::error::{Error, Result};
use engine::Tensor;
use models::{registry, Backbone, ModelOptions, Pooling, Preprocessing};
use std::collections::BTreeMap;
use std::path::Path;

/// The value of the `format` metadata key of files this version writes.
pub const FORMAT: &str = "thaw-classifier-v1";
/// How the saved model expects its input, for `input_side` S.
pub fn input_layout(input_side: usize) -> String {
    format!("NHWC uint8 RGB {input_side}x{input_side}, bilinear resize to image_size")
}

/// What a saved model says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMeta {
    /// Backbone name (`resnet50`, `vgg16`, `mobilenet_v2`: a registered name).
    pub model: String,
    /// The backbone's alpha, for models with variants (None: the model's default).
    pub alpha: Option<f64>,
    /// Class names; output `k` is `classes[k]`.
    pub classes: Vec<String>,
    /// Side the images are resized to before the backbone.
    pub image_size: usize,
    /// Side images are brought to first (bilinear, rounded to 8 bits),
    /// before the resize to `image_size`: 32 for CIFAR-10 (and image folders
    /// of 32x32 images), `image_size` for image folders of other sizes.
    /// `predict` and `evaluate` read new images the same way.
    pub input_side: usize,
    /// Whether images were centre-cropped to a square before that resize.
    pub crop_to_aspect_ratio: bool,
    /// Head kind.
    pub head: HeadKind,
    /// Whether predictions average the image and its horizontal flip.
    pub tta: bool,
    /// Whether the head standardizes the features first (`head_norm`).
    pub standardize: bool,
    /// Best validation accuracy at the time of saving (informational).
    pub val_accuracy: Option<f64>,
}

impl ModelMeta {
    /// The metadata as the file's string map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("format".into(), FORMAT.into());
        m.insert("model".into(), self.model.clone());
        if let Some(a) = self.alpha {
            m.insert("alpha".into(), registry::python_float(a));
        }
        m.insert(
            "classes".into(),
            serde_json::to_string(&self.classes).expect("strings serialise"),
        );
        m.insert("image_size".into(), self.image_size.to_string());
        m.insert("input_side".into(), self.input_side.to_string());
        m.insert(
            "crop_to_aspect_ratio".into(),
            self.crop_to_aspect_ratio.to_string(),
        );
        // Recorded for readers of the file; it is the model's registered one.
        if let Ok(entry) = registry::find(&self.model) {
            m.insert("preprocessing".into(), entry.preprocessing.name().into());
        }
        m.insert("pooling".into(), "avg".into());
        m.insert("head".into(), self.head.as_str().into());
        m.insert("input_layout".into(), input_layout(self.input_side));
        m.insert("tta".into(), self.tta.to_string());
        m.insert("standardize".into(), self.standardize.to_string());
        if let Some(acc) = self.val_accuracy {
            m.insert("val_accuracy".into(), format!("{acc:.6}"));
        }
        m
    }

    /// Reads the metadata of the file at `path`, naming the first missing or
    /// unreadable key.
    pub fn from_map(path: &Path, m: &BTreeMap<String, String>) -> Result<ModelMeta> {
        let bad = |msg: String| {
            Error::Usage(format!(
                "{}: {msg}; it is not a model saved by `trainer train` (a backbone weights \
                 file goes to --weights instead)",
                path.display()
            ))
        };
        let get = |key: &str| {
            m.get(key)
                .ok_or_else(|| bad(format!("metadata has no '{key}' entry")))
        };
        let format = get("format")?;
        if format != FORMAT {
            return Err(bad(format!(
                "metadata format is '{format}', this trainer reads '{FORMAT}'"
            )));
        }
        let model = get("model")?.clone();
        let entry = registry::find(&model).map_err(|e| bad(e.to_string()))?;
        let alpha = match m.get("alpha") {
            None => None,
            Some(a) => Some(
                a.parse::<f64>()
                    .map_err(|_| bad(format!("'alpha' is '{a}', not a number")))?,
            ),
        };
        let alpha = entry.alpha(alpha).map_err(|e| bad(e.to_string()))?;
        let preprocessing: Preprocessing = get("preprocessing")?
            .parse()
            .map_err(|e: models::Error| bad(e.to_string()))?;
        if preprocessing != entry.preprocessing {
            return Err(bad(format!(
                "it records '{preprocessing}' preprocessing, but {model} takes \
                 '{}' (what its ImageNet weights were trained with)",
                entry.preprocessing
            )));
        }
        let classes: Vec<String> = serde_json::from_str(get("classes")?)
            .map_err(|e| bad(format!("'classes' is not a JSON list of names ({e})")))?;
        let image_size: usize = get("image_size")?
            .parse()
            .map_err(|_| bad("'image_size' is not a whole number".into()))?;
        let limit = crate::limits::MAX_IMAGE_SIZE;
        if image_size < entry.sizes.min || image_size > limit {
            return Err(bad(format!(
                "'image_size' is {image_size}, outside {} to {limit} (the sizes {model} runs \
                 at here): the file is damaged",
                entry.sizes.min
            )));
        }
        let input_side = match m.get("input_side") {
            None => crate::data::IMAGE_SIDE,
            Some(v) => match v.parse::<usize>() {
                Ok(s) if s == crate::data::IMAGE_SIDE || s == image_size => s,
                _ => {
                    return Err(bad(format!(
                        "'input_side' is {v:?}; it is 32 or the image_size ({image_size}): the \
                         file is damaged"
                    )))
                }
            },
        };
        let crop_to_aspect_ratio = m.get("crop_to_aspect_ratio").is_some_and(|v| v == "true");
        let head = get("head")?.parse()?;
        let tta = m.get("tta").is_some_and(|v| v == "true");
        let standardize = m.get("standardize").is_some_and(|v| v == "true");
        let val_accuracy = m.get("val_accuracy").and_then(|v| v.parse().ok());
        Ok(ModelMeta {
            model,
            alpha,
            classes,
            image_size,
            input_side,
            crop_to_aspect_ratio,
            head,
            tta,
            standardize,
            val_accuracy,
        })
    }
}

/// Saves backbone + head + metadata to `path` atomically.
pub fn save_model(
    path: &Path,
    backbone: &dyn Backbone,
    head: &Head,
    meta: &ModelMeta,
) -> Result<()> {
    let mut tensors = backbone.named_tensors();
    tensors.extend(head.named_tensors());
    // Weights on a GPU (the backbone's, and the head's while fine-tuning) come back first.
    let tensors = tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_device(engine::Device::Cpu)?)))
        .collect::<Result<Vec<_>>>()?;
    weights::save_safetensors(path, &tensors, &meta.to_map())
        .map_err(|e| Error::Usage(format!("saving the model to {}: {e}", path.display())))
}

/// A model rebuilt from its file.
pub struct LoadedModel {
    /// The backbone with its saved weights (frozen, inference mode).
    pub backbone: Box<dyn Backbone>,
    /// The head with its saved weights.
    pub head: Head,
    /// The file's metadata.
    pub meta: ModelMeta,
}

/// Builds a frozen backbone by name (and alpha, for models with variants)
/// with global average pooling (the trainer's feature extractor).
pub fn build_backbone(model: &str, alpha: Option<f64>) -> Result<Box<dyn Backbone>> {
    let options = ModelOptions {
        include_top: false,
        pooling: Pooling::Avg,
        input_size: None,
        init_seed: 0,
        alpha,
    };
    let backbone = models::build(model, &options).map_err(|e| Error::Usage(e.to_string()))?;
    backbone.set_trainable(false);
    backbone.set_bn_inference_only(true);
    Ok(backbone)
}

/// Reads a model file written by [`save_model`]: metadata first, then the
/// backbone (validated tensor by tensor against the architecture) and the head.
pub fn load_model(path: &Path) -> Result<LoadedModel> {
    let (tensors, map) = weights::load_safetensors(path).map_err(|e| {
        Error::Usage(format!(
            "cannot read the model file {}: {e}; HINT: pass a file written by `trainer train` \
             (--out, default cifar10.safetensors)",
            path.display()
        ))
    })?;
    let meta = ModelMeta::from_map(path, &map)?;
    let (head_tensors, backbone_tensors): (Vec<(String, Tensor)>, Vec<(String, Tensor)>) = tensors
        .into_iter()
        .partition(|(name, _)| name.starts_with(HEAD_PREFIX));
    let backbone = build_backbone(&meta.model, meta.alpha)?;
    backbone.load(backbone_tensors).map_err(|e| {
        Error::Usage(format!(
            "{}: the {} weights in this model file cannot be used: {e}",
            path.display(),
            meta.model
        ))
    })?;
    let features = backbone
        .output_shape(1, meta.image_size, meta.image_size)
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?[1];
    let mut head = Head::new(meta.head, features, meta.classes.len(), 0)?;
    if meta.standardize {
        // Placeholder statistics of the right shape; `load` sets the saved ones.
        head = head.adapt(&vec![0.0; features])?;
    }
    weights::check_values(&head_tensors)
        .map_err(|e| Error::Usage(format!("{}: the head's weights: {e}", path.display())))?;
    head.load(&head_tensors)
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    Ok(LoadedModel {
        backbone,
        head,
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(model: &str, alpha: Option<f64>) -> ModelMeta {
        ModelMeta {
            model: model.into(),
            alpha,
            classes: vec!["cat".into(), "dog".into()],
            image_size: 96,
            input_side: 32,
            crop_to_aspect_ratio: false,
            head: HeadKind::Linear,
            tta: false,
            standardize: false,
            val_accuracy: Some(0.75),
        }
    }

    #[test]
    fn metadata_round_trips_with_alpha() {
        let path = Path::new("m.safetensors");
        for (model, alpha, prep) in [
            ("mobilenet_v2", Some(0.35), Preprocessing::Tf),
            ("mobilenet", Some(1.0), Preprocessing::Tf),
            ("vgg16", None, Preprocessing::Caffe),
        ] {
            let m = meta(model, alpha);
            let map = m.to_map();
            assert_eq!(map.get("alpha").cloned(), alpha.map(registry::python_float));
            assert_eq!(map["preprocessing"], prep.name());
            assert_eq!(ModelMeta::from_map(path, &map).unwrap(), m);
        }
    }

    #[test]
    fn a_file_written_before_alpha_existed_still_loads() {
        let path = Path::new("old.safetensors");
        // What this trainer wrote before models had variants: no `alpha` key.
        let mut old = meta("resnet50", None).to_map();
        assert!(!old.contains_key("alpha"));
        assert_eq!(
            ModelMeta::from_map(path, &old).unwrap(),
            meta("resnet50", None)
        );
        // For a model with variants, a missing alpha is the default one.
        old.insert("model".into(), "mobilenet".into());
        old.insert("preprocessing".into(), "tf".into());
        assert_eq!(ModelMeta::from_map(path, &old).unwrap().alpha, Some(1.0));
    }

    #[test]
    fn inconsistent_metadata_is_refused() {
        let path = Path::new("bad.safetensors");
        let mut map = meta("vgg16", None).to_map();
        map.insert("preprocessing".into(), "tf".into());
        let e = ModelMeta::from_map(path, &map).unwrap_err().to_string();
        assert!(e.contains("'tf'") && e.contains("'caffe'"), "{e}");
        let mut map = meta("vgg16", None).to_map();
        map.insert("alpha".into(), "0.5".into());
        let e = ModelMeta::from_map(path, &map).unwrap_err().to_string();
        assert!(e.contains("no variants"), "{e}");
        let mut map = meta("mobilenet_v2", Some(0.5)).to_map();
        map.insert("alpha".into(), "half".into());
        let e = ModelMeta::from_map(path, &map).unwrap_err().to_string();
        assert!(e.contains("'half'"), "{e}");
    }
}
