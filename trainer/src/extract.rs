//! `trainer extract`: backbone features of a dataset, written as .npy.
//!
//! What Keras does, batch by batch, in input order:
//!
//! ```text
//! uint8 32x32 RGB ─▶ f32 ─▶ bilinear resize 32 -> S (half-pixel centres; skipped at S = 32)
//!   ─▶ the model's preprocessing (caffe: RGB -> BGR minus the ImageNet means; tf: x / 127.5 - 1)
//!   ─▶ backbone (frozen, under engine::no_grad) ─▶ pooling avg | max | none
//!   ─▶ rows appended to FEATURES.npy (streamed: the whole output never sits in memory)
//! ```
//!
//! The labels go to `FEATURES.labels.npy` (int64). Both files appear only
//! once complete (written beside, then renamed), the labels last: an error
//! or a signal (SIGINT, SIGTERM, SIGHUP: extraction stops after the current
//! batch) leaves neither, nor any temporary file.
//!
//! `--precision f16|bf16` runs the backbone's convolutions with 16-bit
//! operands and f32 accumulation (`Backbone::set_precision`); the first
//! batch is then run once more in f32 and the difference printed
//! ([`crate::drift`]).

use crate::cli::{ExtractArgs, PoolingChoice};
use crate::data::{self, Dataset, IMAGE_SIDE};
use crate::drift::{self, Drift};
use crate::error::{Error, Result};
use crate::npy::NpyWriter;
use crate::progress::{Progress, Unit};
use crate::train::feature_cache::for_each_batch;
use engine::Tensor;
use models::{Backbone, ModelOptions, Pooling};
use std::path::{Path, PathBuf};

/// What an extraction wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractReport {
    /// Shape of the features array.
    pub shape: Vec<usize>,
    /// The features file.
    pub features: PathBuf,
    /// The labels file.
    pub labels: PathBuf,
    /// Wall time of the backbone passes and the writing, in seconds
    /// (the extra f32 pass of the drift measurement included).
    pub seconds: f64,
    /// How far the features are from f32 (first batch), when the backbone
    /// runs in f16 or bf16.
    pub drift: Option<Drift>,
}

/// `FEATURES.npy` -> `FEATURES.labels.npy` (any other name gets `.labels.npy` appended).
pub fn labels_path(features: &Path) -> PathBuf {
    let name = features
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".npy").unwrap_or(&name);
    features.with_file_name(format!("{stem}.labels.npy"))
}

/// One batch of uint8 NHWC 32x32 images to the backbone's output:
/// [`features_of_batch_at`] side 32.
pub fn features_of_batch(backbone: &dyn Backbone, images: &[u8], size: usize) -> Result<Tensor> {
    features_of_batch_at(backbone, images, IMAGE_SIDE, size)
}

/// One batch of uint8 NHWC `side` x `side` images to the backbone's
/// output, as Keras computes it: resize the raw pixels to `size`, the
/// model's preprocessing, forward in inference mode with recording off, on
/// the backbone's device (see [`crate::train::feature_cache::model_input`]);
/// the features come back to the host.
pub fn features_of_batch_at(
    backbone: &dyn Backbone,
    images: &[u8],
    side: usize,
    size: usize,
) -> Result<Tensor> {
    crate::train::feature_cache::output_on_host(backbone, images, side, size, false)
}

/// Writes the features of every image of `dataset` to `out` and its labels
/// beside it, `batch_size` images per forward pass.
pub fn extract(
    backbone: &dyn Backbone,
    dataset: &Dataset,
    size: usize,
    batch_size: usize,
    out: &Path,
) -> Result<ExtractReport> {
    if batch_size == 0 {
        return Err(Error::Usage("--batch-size must be at least 1".into()));
    }
    if dataset.is_empty() {
        return Err(Error::Usage("extract: the dataset holds no image".into()));
    }
    let start = std::time::Instant::now();
    let shape = backbone.output_shape(dataset.len(), size, size)?;
    // The labels are written first, to a temporary file renamed into place
    // only after the features: no result without its companion.
    let labels = labels_path(out);
    let mut labels_writer = NpyWriter::<i64>::create(&labels, &[dataset.len()])?;
    let label_values: Vec<i64> = dataset.labels.iter().map(|&l| l as i64).collect();
    labels_writer.append(&label_values)?;
    let mut writer = NpyWriter::<f32>::create(out, &shape)?;
    let mut progress = Progress::new(
        format!("extracting {} features", backbone.name()),
        Some(dataset.len() as u64),
        Unit::Items("images"),
    );
    let mut drift = None;
    let (side, bytes) = (dataset.side, dataset.image_bytes());
    for_each_batch(
        backbone,
        dataset.into(),
        size,
        batch_size,
        false,
        |_, batch, y| {
            if drift.is_none() && backbone.precision().is_half() {
                let d = drift::against_f32(backbone, batch.len() / bytes, y.as_slice()?, || {
                    Ok(features_of_batch_at(backbone, batch, side, size)?.to_vec_f32())
                })?;
                eprintln!("{d}");
                drift = Some(d);
            }
            let rows = writer.rows_written();
            let values = y.as_slice::<f32>()?;
            let row_len = values.len() / y.shape()[0].max(1);
            crate::train::feature_cache::check_finite_features("extract", values, row_len, rows)?;
            writer.append(values)?;
            crate::train::feature_cache::pause_for_tests();
            progress.inc((batch.len() / bytes) as u64);
            Ok(())
        },
    )
    .map_err(|e| match e {
        Error::Interrupted(what) => Error::Interrupted(format!(
            "{what}; nothing was written ({} and {} were not created)",
            out.display(),
            labels.display()
        )),
        e => e,
    })?;
    writer.finish()?;
    if let Err(e) = labels_writer.finish() {
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    progress.finish();
    Ok(ExtractReport {
        shape,
        features: out.to_path_buf(),
        labels,
        seconds: start.elapsed().as_secs_f64(),
        drift,
    })
}

/// Builds `model` (at `alpha`) without its top, with `pooling`, for inputs of any size.
pub fn build_backbone(
    model: &str,
    alpha: Option<f64>,
    pooling: PoolingChoice,
) -> Result<Box<dyn Backbone>> {
    let pooling = match pooling {
        PoolingChoice::Avg => Pooling::Avg,
        PoolingChoice::Max => Pooling::Max,
        PoolingChoice::None => Pooling::None,
    };
    let options = ModelOptions {
        include_top: false,
        pooling,
        alpha,
        ..ModelOptions::default()
    };
    Ok(models::build(model, &options)?)
}

/// Runs `trainer extract` and prints what was written.
pub fn run(args: &ExtractArgs) -> Result<()> {
    use crate::outputs::{refuse_inputs_as_outputs, Input, Output};
    let cache = crate::download::cache_dir()?;
    let weights = match &args.weights {
        Some(w) => Input {
            what: "--weights",
            path: w,
        },
        None => Input {
            what: "the cache folder (of the default weights)",
            path: &cache,
        },
    };
    let data = Input {
        what: "--data",
        path: &args.data,
    };
    let labels = labels_path(&args.out);
    refuse_inputs_as_outputs(
        &[weights, data],
        &[
            Output {
                what: "--out",
                path: &args.out,
            },
            Output {
                what: "the labels file of --out",
                path: &labels,
            },
        ],
    )?;
    crate::outputs::check_writable_file("--out", &args.out)?;
    if args.batch_size == 0 {
        return Err(Error::Usage("--batch-size must be at least 1".into()));
    }
    let device = crate::device::resolve(args.device)?;
    let min = models::registry::find(&args.model)?.sizes.min;
    crate::limits::check_image_size(
        &args.model,
        min,
        args.image_size,
        "--image-size",
        args.batch_size,
        "--batch-size",
        match device {
            engine::Device::Cpu => crate::limits::available_memory(),
            engine::Device::Cuda(_) => None,
        },
    )?;
    crate::signals::install_ctrlc_handler();
    crate::temp_files::watch(args.out.parent().unwrap_or(Path::new(".")));
    crate::temp_files::watch(&cache);
    let backbone = build_backbone(&args.model, args.alpha, args.pooling)?;
    crate::weights_source::load_weights(
        backbone.as_ref(),
        args.weights.as_deref(),
        args.image_size,
        &crate::download::cache_dir()?,
    )?;
    backbone.to_device(device)?;
    backbone.set_precision(args.precision.precision());
    let t = std::time::Instant::now();
    let dataset = data::load_with(
        &args.data,
        args.split,
        &data::ImageOptions::resized(args.image_size, &args.images),
    )?;
    eprintln!(
        "read {} images ({} classes) from {} in {:.2} s",
        dataset.len(),
        dataset.classes.len(),
        args.data.display(),
        t.elapsed().as_secs_f64()
    );
    let r = extract(
        backbone.as_ref(),
        &dataset,
        args.image_size,
        args.batch_size,
        &args.out,
    )?;
    eprintln!(
        "wrote {} features {:?} to {} and labels to {} in {:.2} s ({:.1} images/s)",
        args.precision.precision(),
        r.shape,
        r.features.display(),
        r.labels.display(),
        r.seconds,
        dataset.len() as f64 / r.seconds.max(1e-9)
    );
    Ok(())
}
