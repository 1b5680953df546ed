//! Phase 0 of `trainer train`: everything that can be checked is checked
//! before the weights are read (the flags, the image size against memory,
//! `--out` and the files beside it, the `--fine-tune` block, the cache
//! folder), then the signal handler is installed and the folders where the
//! run writes temporary files are watched ([`crate::temp_files`]).
//! The dataset is checked by phase 1 ([`super::pipeline::load_data`]).

use super::feature_cache::FeatureCache;
use super::fit::FitConfig;
use super::{model_file, report, TrainOptions};
use crate::download;
use crate::error::{Error, Result};
use models::registry::{self, ModelEntry};
use models::Backbone;
use std::path::{Path, PathBuf};

/// What the checks settle, used by every later phase.
pub struct Run {
    /// The model's registration.
    pub entry: &'static ModelEntry,
    /// The input size: `--image-size` or the model's default.
    pub image_size: usize,
    /// Where to compute.
    pub device: engine::Device,
    /// The backbone, built (its weights are loaded by phase 2).
    pub backbone: Box<dyn Backbone>,
    /// The cache folder (weights, features, activations).
    pub cache_root: PathBuf,
    /// The feature cache, or a disabled one (`--no-cache`, or not writable).
    pub cache: FeatureCache,
}

/// Checks `opts` before any work (see the module docs) and builds the backbone.
pub fn prepare(opts: &TrainOptions) -> Result<Run> {
    refuse_overwriting_inputs(opts)?;
    crate::outputs::check_writable_file("--out", &opts.out)?;
    let device = crate::device::resolve(opts.device)?;
    let entry = registry::find(&opts.model)?;
    let image_size = opts.image_size.unwrap_or(entry.sizes.default);
    if opts.extract_batch_size == 0 {
        return Err(Error::Usage(
            "--extract-batch-size is 0; use at least 1".into(),
        ));
    }
    opts.fit.check("head training")?;
    let (batch, batch_flag) = match &opts.fine_tune {
        Some(_) if opts.fit.batch_size > opts.extract_batch_size => {
            (opts.fit.batch_size, "--batch-size")
        }
        _ => (opts.extract_batch_size, "--extract-batch-size"),
    };
    crate::limits::check_image_size(
        entry.name,
        entry.sizes.min,
        image_size,
        "--image-size",
        batch,
        batch_flag,
        host_memory(device),
    )?;
    if opts.fine_tune.is_some() {
        FitConfig {
            epochs: opts.fine_tune_epochs,
            lr: opts.fine_tune_lr,
            ..opts.fit.clone()
        }
        .check("fine-tuning (--fine-tune-epochs, --fine-tune-lr)")?;
    }
    let backbone = model_file::build_backbone(&opts.model, opts.alpha)?;
    if let Some(block) = &opts.fine_tune {
        check_fine_tune_block(backbone.as_ref(), block)?;
    }
    let cache_root = download::cache_dir()?;
    let cache = if opts.no_cache {
        FeatureCache::disabled()
    } else {
        usable_feature_cache(&cache_root.join("features"))
    };
    crate::signals::install_ctrlc_handler();
    crate::temp_files::watch(opts.out.parent().unwrap_or(Path::new(".")));
    crate::temp_files::watch(&cache_root);
    if let Some(dir) = cache.dir() {
        crate::temp_files::watch(dir);
        crate::temp_files::remove_stale(dir);
    }
    Ok(Run {
        entry,
        image_size,
        device,
        backbone,
        cache_root,
        cache,
    })
}

/// The host memory a batch may use on `device` (the CPU computes in it);
/// None on a GPU, whose memory the engine reports when it runs out.
fn host_memory(device: engine::Device) -> Option<u128> {
    match device {
        engine::Device::Cpu => crate::limits::available_memory(),
        engine::Device::Cuda(_) => None,
    }
}

/// Refuses a `--fine-tune` block that `backbone` does not have, before any
/// work (the same test fine-tuning applies, undone at once).
fn check_fine_tune_block(backbone: &dyn Backbone, block: &str) -> Result<()> {
    let result = backbone.set_trainable_from(block);
    backbone.set_trainable(false);
    result.map_err(|e| {
        let meant: Vec<&str> = registry::find(backbone.name())
            .map(|m| m.fine_tune.iter().map(|b| b.name).collect())
            .unwrap_or_default();
        Error::Usage(format!(
            "--fine-tune {block}: {e} (the blocks meant for {}: {}); nothing was run",
            backbone.name(),
            meant.join(", ")
        ))
    })
}

/// The feature cache in `dir`, or none (with a warning) when no file can
/// be made there (or, while it does not exist, in its nearest existing
/// folder): the run then computes its features without it.
fn usable_feature_cache(dir: &Path) -> FeatureCache {
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("."));
    match crate::outputs::probe_writable(existing) {
        Ok(()) => FeatureCache::new(dir),
        Err(e) => {
            eprintln!(
                "warning: the feature cache {} is not writable ({e}); running without it \
                 (features are computed and not stored). HINT: make it writable, or set \
                 THAW_CACHE_DIR to a writable folder",
                dir.display()
            );
            FeatureCache::disabled()
        }
    }
}

/// Refuses a `--out` (or a file written beside it) that is an input: the
/// weights, the dataset or the cache folder when the run reads it.
fn refuse_overwriting_inputs(opts: &TrainOptions) -> Result<()> {
    use crate::outputs::{refuse_inputs_as_outputs, Input, Output};
    let cache = download::cache_dir().ok();
    let mut inputs = Vec::new();
    if let Some(w) = &opts.weights {
        inputs.push(Input {
            what: "--weights",
            path: w,
        });
    }
    if let Some(d) = &opts.data {
        inputs.push(Input {
            what: "--data",
            path: d,
        });
    }
    let uses_cache = opts.weights.is_none() || opts.data.is_none() || !opts.no_cache;
    if let (Some(c), true) = (&cache, uses_cache) {
        inputs.push(Input {
            what: "the cache folder",
            path: c,
        });
    }
    let siblings = [
        "metrics.csv",
        "curves.png",
        "confusion.png",
        "split.json",
        "run.json",
        "predictions.csv",
    ]
    .map(|s| report::sibling(&opts.out, s));
    let paper = crate::paper::files_beside_model(&opts.out);
    let mut outputs = vec![Output {
        what: "--out",
        path: &opts.out,
    }];
    outputs.extend(siblings.iter().chain(&paper).map(|p| Output {
        what: "the report file of --out",
        path: p,
    }));
    refuse_inputs_as_outputs(&inputs, &outputs)
}
