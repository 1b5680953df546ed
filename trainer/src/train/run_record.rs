//! `NAME.run.json` beside the model file: the record of a `train` run that
//! a report (or a reader) needs, every number as the run measured it.
//!
//! ```text
//! { "schema": 2, "status": "finished"|"interrupted",
//!   "command_line": [...], "options": { every TrainOptions value },
//!   "thaw": { "version", "git_commit" },          (commit: "unknown" without git at build time)
//!   "machine": { "cpu", "threads", "device", "gpu", "os" },
//!   "dataset": { "source", "path", "format", "classes", "train", "validation", "test",
//!     "skipped_files" },
//!   "model": { "backbone", "alpha", "image_size", "preprocessing", "head", "standardize",
//!              "flip", "tta" },
//!   "weights": { "source", "hash" },
//!   "phases": [ { "name", "seconds" } ], "epochs": N (head and fine-tuning),
//!   "extraction": { "images", "images_per_second" },
//!   "accuracy": { "best_validation", "head_best_validation",
//!                 "test": { "accuracy", "correct", "images",
//!                           "per_class": [ { "class", "accuracy", "correct", "images" } ] } | null },
//!   "fine_tuning": { "block", "epochs", "best_validation", "improved" } | null,
//!   "files": { "model", "metrics", "predictions", "split" } }
//! ```
//!
//! Schema 2 added what the report ([`crate::paper`]) needs to find the test
//! images again and describe the run: `dataset.path` (absolute: `--data`,
//! or CIFAR-10 in the cache), `dataset.format` (`cifar-binary` or
//! `image-folder`), `model.preprocessing` and `machine.os`. The report reads
//! schema 1 too, taking those from `options` and the model registry.
//!
//! A finished run writes it after the test score, with the predictions; an
//! interrupted one writes it with `"status": "interrupted"` and no test
//! figures (`"test": null`, no predictions file). Training removes an
//! earlier run's record, predictions and split file for the same `--out`
//! when it starts, as it starts its metrics file anew, so no record outlives
//! its model.
//! Written atomically (a temporary file beside it, renamed).

use super::evaluate::Evaluation;
use super::pipeline::{Data, Features, Log, Weights};
use super::report::sibling;
use super::{checks::Run, TrainOptions};
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;

/// thaw's version, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the trainer was built from (`build.rs`), or "unknown".
pub const GIT_COMMIT: &str = env!("THAW_GIT_COMMIT");

/// The record's path for the model file `out`.
pub fn path(out: &Path) -> std::path::PathBuf {
    sibling(out, "run.json")
}

/// The version of the record this thaw writes.
pub const SCHEMA: u64 = 2;

/// Removes an earlier run's record, predictions, split file and report for
/// `out` (called when training starts, so an interrupted or failed run
/// leaves none that is not its own).
pub fn remove_stale(out: &Path) -> Result<()> {
    let report = crate::paper::files_beside_model(out);
    for p in [
        path(out),
        sibling(out, "predictions.csv"),
        sibling(out, "split.json"),
    ]
    .into_iter()
    .chain(report)
    {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(&p, "removing", e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// What the run got to: everything the record is made from.
pub struct RunParts<'a> {
    /// The options.
    pub opts: &'a TrainOptions,
    /// What the checks settled (backbone, image size, device).
    pub run: &'a Run,
    /// The datasets and the validation split.
    pub data: &'a Data,
    /// The backbone's weights: where from, their hash.
    pub weights: &'a Weights,
    /// The features (how many images were extracted, how fast).
    pub features: &'a Features,
    /// Phase times, epochs, best validation accuracy.
    pub log: &'a Log,
    /// The test figures (None when interrupted before the test phase).
    pub test: Option<&'a Evaluation>,
}

/// The CPU's model name (Linux: `/proc/cpuinfo`), or "unknown".
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn machine(device: engine::Device) -> Value {
    let gpu = match device {
        engine::Device::Cpu => Value::Null,
        engine::Device::Cuda(_) => engine::cuda::probe()
            .map(|info| json!(info.name))
            .unwrap_or(Value::Null),
    };
    json!({
        "cpu": cpu_model(),
        "threads": rayon::current_num_threads(),
        "device": match device {
            engine::Device::Cpu => "cpu".to_string(),
            engine::Device::Cuda(i) => format!("cuda:{i}"),
        },
        "gpu": gpu,
        "os": format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

fn options(o: &TrainOptions) -> Value {
    json!({
        "model": o.model,
        "alpha": o.alpha,
        "weights": o.weights,
        "data": o.data,
        "image_size": o.image_size,
        "epochs": o.fit.epochs,
        "batch_size": o.fit.batch_size,
        "lr": o.fit.lr,
        "schedule": o.fit.schedule.to_string(),
        "patience": o.fit.patience,
        "seed": o.fit.seed,
        "extract_batch_size": o.extract_batch_size,
        "head": o.head.to_string(),
        "flip": o.flip,
        "tta": o.tta,
        "standardize": o.standardize,
        "fine_tune": o.fine_tune,
        "fine_tune_lr": o.fine_tune_lr,
        "fine_tune_epochs": o.fine_tune_epochs,
        "val_split": o.val_split,
        "test_split": o.test_split,
        "crop_to_aspect_ratio": o.images.crop_to_aspect_ratio,
        "skip_bad_images": o.images.skip_bad_images,
        "device": format!("{:?}", o.device).to_lowercase(),
        "precision": o.precision.name(),
        "no_cache": o.no_cache,
        "out": o.out,
    })
}

fn test_figures(e: &Evaluation, classes: &[String]) -> Value {
    let per_class: Vec<Value> = classes
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let row = &e.confusion[k];
            json!({
                "class": c,
                "accuracy": e.per_class[k],
                "correct": row[k],
                "images": row.iter().sum::<usize>(),
            })
        })
        .collect();
    json!({
        "accuracy": e.accuracy,
        "correct": e.correct,
        "images": e.n,
        "per_class": per_class,
    })
}

/// The best validation accuracy of the epochs of `phase`, if any ran.
fn best_val(log: &Log, phase: &str) -> Option<f64> {
    log.history
        .iter()
        .filter(|m| m.phase == phase)
        .map(|m| m.val_acc)
        .reduce(f64::max)
}

fn fine_tuning(opts: &TrainOptions, log: &Log) -> Value {
    let Some(block) = &opts.fine_tune else {
        return Value::Null;
    };
    json!({
        "block": block,
        "lr": opts.fine_tune_lr,
        "epochs": log.history.iter().filter(|m| m.phase == "fine-tune").count(),
        "best_validation": best_val(log, "fine-tune"),
        "improved": log.fine_tuned,
    })
}

/// Where the dataset is, absolute (so that `trainer report` finds the test
/// images from any folder), and its format.
fn dataset_place(opts: &TrainOptions) -> (Value, Value) {
    let path = match &opts.data {
        Some(d) => std::path::absolute(d).unwrap_or_else(|_| d.clone()),
        None => match crate::download::cache_dir() {
            Ok(cache) => crate::download::cifar10_batches(&cache),
            Err(_) => return (Value::Null, json!("cifar-binary")),
        },
    };
    let format = match crate::data::detect(&path) {
        Ok(crate::data::Format::ImageFolder) => json!("image-folder"),
        Ok(_) => json!("cifar-binary"),
        Err(_) => Value::Null,
    };
    (json!(path), format)
}

/// The record of `p` (see the module docs).
pub fn record(p: &RunParts) -> Value {
    let (opts, data, log) = (p.opts, p.data, p.log);
    let backbone = p.run.backbone.as_ref();
    let phases: Vec<Value> = log
        .phases
        .list()
        .iter()
        .map(|(name, secs)| json!({ "name": name, "seconds": secs }))
        .collect();
    let f = p.features;
    let (data_path, data_format) = dataset_place(opts);
    json!({
        "schema": SCHEMA,
        "status": if p.test.is_some() { "finished" } else { "interrupted" },
        "command_line": opts.command_line,
        "options": options(opts),
        "thaw": { "version": VERSION, "git_commit": GIT_COMMIT },
        "machine": machine(p.run.device),
        "dataset": {
            "source": match &opts.data {
                Some(d) => json!(d),
                None => json!("CIFAR-10 (the official binary batches, from the cache)"),
            },
            "path": data_path,
            "format": data_format,
            "classes": data.classes,
            "train": data.train_idx.len(),
            "validation": data.val_idx.len(),
            "test": data.test.len(),
            "skipped_files": data.train.skipped.iter().chain(&data.test.skipped).collect::<std::collections::BTreeSet<_>>(),
        },
        "model": {
            "backbone": backbone.name(),
            "alpha": backbone.options().alpha,
            "image_size": p.run.image_size,
            "preprocessing": p.run.entry.preprocessing.name(),
            "head": opts.head.to_string(),
            "standardize": opts.standardize,
            "flip": opts.flip,
            "tta": opts.tta,
        },
        "weights": { "source": p.weights.from, "hash": p.weights.hash },
        "phases": phases,
        "epochs": log.history.len(),
        "extraction": {
            "images": f.extracted_images,
            "images_per_second": (f.extracted_images > 0)
                .then(|| f.extracted_images as f64 / f.secs.max(1e-9)),
        },
        "accuracy": {
            "best_validation": log.best_val_acc,
            "head_best_validation": best_val(log, "head"),
            "test": p.test.map(|e| test_figures(e, &data.classes)),
        },
        "fine_tuning": fine_tuning(opts, log),
        "files": {
            "model": opts.out,
            "metrics": sibling(&opts.out, "metrics.csv"),
            "predictions": p.test.map(|_| sibling(&opts.out, "predictions.csv")),
            "split": p.test.map(|_| sibling(&opts.out, "split.json")),
        },
    })
}

/// Writes the record of `p` beside the model file and, for a finished run,
/// the predictions (`probs`, `[n, classes]`, the test accuracy's own) before
/// it; each atomically.
pub fn write(p: &RunParts, probs: Option<&[f32]>) -> Result<()> {
    if let Some(probs) = probs {
        let path = sibling(&p.opts.out, "predictions.csv");
        super::predictions::write(
            &path,
            &super::predictions::Predictions {
                probs,
                labels: &p.data.test.labels,
                classes: &p.data.classes,
                files: &p.data.test.files,
                data_root: p.opts.data.as_deref(),
            },
        )?;
        eprintln!("test predictions: {}", path.display());
    }
    let path = path(&p.opts.out);
    let text = serde_json::to_string_pretty(&record(p)).map_err(|e| {
        Error::Usage(format!(
            "{}: cannot encode the run record: {e}",
            path.display()
        ))
    })?;
    crate::npy::write_atomically(&path, text.as_bytes())?;
    eprintln!("run record: {}", path.display());
    Ok(())
}
