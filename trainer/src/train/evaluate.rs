//! Measuring and using a trained model: class probabilities of raw images
//! end to end, accuracy, per-class accuracy and the confusion matrix, and the
//! `evaluate` and `predict` subcommands built on them.
//!
//! ```text
//! uint8 images ─▶ model_input (resize, preprocessing) ─▶ backbone ─▶ head ─▶ softmax ─▶ probabilities
//! (the backbone on `--device`; the head on the CPU)
//!                     (with --tta, the same for the flipped images, and the two averaged)
//! ```

use super::feature_cache::model_input;
use super::fit::argmax_rows;
use super::head::Head;
use super::model_file::{load_model, LoadedModel};
use super::report;
use crate::cli::EvaluateArgs;
use crate::data::decode::{read_rgb8, SizeRule};
use crate::data::stream::Images;
use crate::data::IMAGE_SIDE;
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use engine::{ops, Tensor};
use models::Backbone;
use std::path::Path;
use std::time::Instant;

/// Accuracy figures of predictions against labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Number of images.
    pub n: usize,
    /// Correct predictions.
    pub correct: usize,
    /// `correct / n`.
    pub accuracy: f64,
    /// Accuracy of the images of each class (NaN for a class with no image).
    pub per_class: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

impl Evaluation {
    /// Scores `predicted` classes against `labels` over `classes` classes.
    pub fn from_predictions(predicted: &[usize], labels: &[u8], classes: usize) -> Evaluation {
        let mut confusion = vec![vec![0usize; classes]; classes];
        for (&p, &t) in predicted.iter().zip(labels) {
            confusion[t as usize][p] += 1;
        }
        let correct = (0..classes).map(|k| confusion[k][k]).sum();
        let per_class = confusion
            .iter()
            .enumerate()
            .map(|(k, row)| {
                let total: usize = row.iter().sum();
                if total == 0 {
                    f64::NAN
                } else {
                    row[k] as f64 / total as f64
                }
            })
            .collect();
        let n = labels.len();
        Evaluation {
            n,
            correct,
            accuracy: correct as f64 / n.max(1) as f64,
            per_class,
            confusion,
        }
    }

    /// Scores probabilities `[n, classes]` (row-major) against `labels`.
    pub fn from_probabilities(probs: &[f32], labels: &[u8], classes: usize) -> Evaluation {
        Evaluation::from_predictions(&argmax_rows(probs, classes), labels, classes)
    }
}

/// Class probabilities `[n, classes]` of pooled features `[n, dim]`.
pub fn head_probabilities(head: &Head, features: &[f32], dim: usize) -> Result<Vec<f32>> {
    let n = features.len() / dim.max(1);
    let mut out = Vec::with_capacity(n * head.classes());
    for chunk in features.chunks(1024 * dim) {
        let x = Tensor::from_vec(chunk.to_vec(), &[chunk.len() / dim, dim])?;
        out.extend(head.predict_proba(&x)?.to_vec_f32());
    }
    Ok(out)
}

/// The mean of two probability tables (test-time augmentation).
pub fn average(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect()
}

/// Class probabilities of images (from memory or decoded from disk, batch
/// by batch), end to end (backbone and head, inference mode, no tape), with
/// a progress report; with `tta`, averaged with those of the flipped images.
pub fn image_probabilities<'a>(
    backbone: &dyn Backbone,
    head: &Head,
    images: impl Into<Images<'a>>,
    image_size: usize,
    batch_size: usize,
    tta: bool,
    label: &str,
) -> Result<Vec<f32>> {
    let images: Images = images.into();
    let (n, side, bytes) = (images.len(), images.side(), images.image_bytes());
    let _guard = engine::no_grad();
    let mut progress = Progress::new(label, Some(n as u64), Unit::Items("images"));
    let mut out = Vec::with_capacity(n * head.classes());
    let flips: &[bool] = if tta { &[false, true] } else { &[false] };
    for chunk in images.batches(batch_size) {
        let chunk = chunk?;
        let mut probs: Option<Vec<f32>> = None;
        for &flip in flips {
            let x = model_input(backbone, &chunk, side, image_size, flip)?;
            // The features go where the head is: the host, unless fine-tuning
            // moved the head to the backbone's GPU.
            let features = backbone
                .forward(&x, false)
                .map_err(|e| Error::Usage(format!("{} forward pass: {e}", backbone.name())))?
                .to_device(head.device())?;
            let p = head.predict_proba(&features)?.try_to_vec_f32()?;
            probs = Some(match probs {
                None => p,
                Some(q) => average(&q, &p),
            });
        }
        out.extend(probs.expect("at least one pass"));
        progress.inc((chunk.len() / bytes) as u64);
    }
    progress.finish();
    Ok(out)
}

/// A saved model (`train`'s file) with its backbone on `device`, running its
/// convolutions in `precision` (what `evaluate` and `predict` run). The
/// model is rebuilt from the file's model name and alpha; an `alpha` given
/// on the command line must be the file's.
pub fn load_for_inference(
    model_file: &Path,
    alpha: Option<f64>,
    device: engine::Device,
    precision: engine::Precision,
) -> Result<LoadedModel> {
    let model = load_model(model_file)?;
    if let Some(requested) = alpha {
        let entry = models::registry::find(&model.meta.model)?;
        if entry.alpha(Some(requested))? != model.meta.alpha {
            return Err(Error::Usage(format!(
                "--alpha {requested}: {} holds {} with alpha {}; drop --alpha (the file says \
                 which model it is) or pass another model file",
                model_file.display(),
                model.meta.model,
                model
                    .meta
                    .alpha
                    .map_or("-".into(), models::registry::python_float)
            )));
        }
    }
    model.backbone.to_device(device)?;
    model.backbone.set_precision(precision);
    Ok(model)
}

/// Checks that one batch of `batch` images at the model file's image size
/// fits in memory on `device`, before any image is read.
pub(crate) fn check_batch_fits(
    model: &LoadedModel,
    batch: usize,
    batch_flag: &str,
    device: engine::Device,
) -> Result<()> {
    let entry = models::registry::find(&model.meta.model)?;
    crate::limits::check_image_size(
        entry.name,
        entry.sizes.min,
        model.meta.image_size,
        "the model file's image_size",
        batch * if model.meta.tta { 2 } else { 1 },
        batch_flag,
        match device {
            engine::Device::Cpu => crate::limits::available_memory(),
            engine::Device::Cuda(_) => None,
        },
    )
}

/// `trainer evaluate`: reloads the model file, rebuilds backbone + head from
/// its metadata and evaluates them on raw images end to end.
pub fn run_evaluate(args: &EvaluateArgs) -> Result<Evaluation> {
    if args.batch_size == 0 {
        return Err(Error::Usage("--batch-size must be at least 1".into()));
    }
    let device = crate::device::resolve(args.device)?;
    let start = Instant::now();
    let LoadedModel {
        backbone,
        head,
        meta,
    } = load_for_inference(
        &args.model_file,
        args.alpha,
        device,
        args.precision.precision(),
    )?;
    let loaded = LoadedModel {
        backbone,
        head,
        meta,
    };
    check_batch_fits(&loaded, args.batch_size, "--batch-size", device)?;
    let LoadedModel {
        backbone,
        head,
        meta,
    } = loaded;
    eprintln!(
        "evaluate: {} ({} + {} head, {} classes, {}x{} input{}, {} convs) loaded in {:.1} s",
        args.model_file.display(),
        meta.model,
        meta.head,
        meta.classes.len(),
        meta.image_size,
        meta.image_size,
        if meta.tta { ", flip TTA" } else { "" },
        args.precision.precision(),
        start.elapsed().as_secs_f64()
    );
    let dataset = crate::data::load_split(
        args.data.as_deref(),
        args.split,
        &crate::data::ImageOptions::resized(meta.image_size, &args.images),
    )?;
    if dataset.classes != meta.classes {
        return Err(Error::Usage(format!(
            "the dataset's classes [{}] differ from the model's [{}]; evaluate on data with the \
             classes the model was trained on",
            dataset.classes.join(", "),
            meta.classes.join(", ")
        )));
    }
    let t = Instant::now();
    let probs = image_probabilities(
        backbone.as_ref(),
        &head,
        &dataset,
        meta.image_size,
        args.batch_size,
        meta.tta,
        &format!("evaluate {}", args.split.name()),
    )?;
    let secs = t.elapsed().as_secs_f64();
    let eval = Evaluation::from_probabilities(&probs, &dataset.labels, meta.classes.len());
    println!("{}", report::evaluation_text(&eval, &meta.classes));
    println!(
        "evaluated {} images in {secs:.1} s ({:.1} images/s)",
        eval.n,
        eval.n as f64 / secs.max(1e-9)
    );
    Ok(eval)
}

/// Reads one image (JPEG or PNG, told apart by content; any size up to
/// [`crate::data::decode::MAX_DECODED_SIDE`], any colour type, read as 8-bit
/// RGB by [`crate::data::decode`]) as 32x32 RGB uint8: other sizes are
/// resized to 32x32 bilinearly (the model was trained on 32x32 CIFAR-like
/// images).
pub fn read_image_32(path: &Path) -> Result<Vec<u8>> {
    let rgb = read_rgb8(path, SizeRule::Any)?;
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if (w, h) == (IMAGE_SIDE, IMAGE_SIDE) {
        return Ok(rgb.into_raw());
    }
    let x: Vec<f32> = rgb.as_raw().iter().map(|&p| p as f32).collect();
    let x = Tensor::from_vec(x, &[1, h, w, 3])?;
    let y = ops::bilinear_resize(&x, IMAGE_SIDE, IMAGE_SIDE)?;
    Ok(y.to_vec_f32()
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect())
}
