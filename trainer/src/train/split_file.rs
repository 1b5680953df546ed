//! `NAME.split.json` beside the model file: what a second opinion needs to
//! train the same head on the same features with the same split
//! (`trainer/scripts/second_opinion.py` trains it in PyTorch and compares).
//!
//! ```text
//! { "validation_indices": [...],      rows of the training split held out
//!   "train_labels": [...], "test_labels": [...],
//!   "features": { "train": PATH|null, "train_flipped": ..., "test": ..., "test_flipped": ... },
//!   "head": "mlp"|"linear", "standardize": bool, "tta": bool, "fine_tuned": bool,
//!   "fit": { "epochs", "batch_size", "lr", "schedule", "patience", "seed" },
//!   "thaw": { "best_val_accuracy", "test_accuracy" } }
//! ```
//!
//! The feature paths are the feature cache's files (`null` with
//! `--no-cache`): float32 `.npy` rows in dataset order, followed by the
//! cache's md5 trailer, which `numpy.load` ignores. Written atomically, after
//! the test score, so the file only exists for a finished run.

use super::feature_cache::CacheOutcome;
use super::fit::FitConfig;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;

/// The feature files of one run, as the cache reported them.
#[derive(Debug, Default)]
pub struct FeatureFiles<'a> {
    /// Training split.
    pub train: Option<&'a CacheOutcome>,
    /// Its horizontal flips (`--flip`).
    pub train_flipped: Option<&'a CacheOutcome>,
    /// Test split.
    pub test: Option<&'a CacheOutcome>,
    /// Its horizontal flips (`--tta`).
    pub test_flipped: Option<&'a CacheOutcome>,
}

/// Everything written to the split file.
#[derive(Debug)]
pub struct SplitRecord<'a> {
    /// Rows of the training split held out for validation.
    pub validation_indices: &'a [usize],
    /// Labels of the training split, in dataset order.
    pub train_labels: &'a [u8],
    /// Labels of the test split.
    pub test_labels: &'a [u8],
    /// Where the features are.
    pub features: FeatureFiles<'a>,
    /// `mlp` or `linear`.
    pub head: String,
    /// `--standardize`.
    pub standardize: bool,
    /// `--tta`.
    pub tta: bool,
    /// Whether the saved model was fine-tuned (then its test accuracy is not
    /// the head-only protocol's).
    pub fine_tuned: bool,
    /// Head training settings.
    pub fit: &'a FitConfig,
    /// thaw's best validation accuracy.
    pub best_val_accuracy: f64,
    /// thaw's test accuracy.
    pub test_accuracy: f64,
}

fn path_of(outcome: Option<&CacheOutcome>) -> Value {
    match outcome {
        Some(CacheOutcome::Hit(p) | CacheOutcome::Stored(p)) => {
            json!(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        }
        _ => Value::Null,
    }
}

/// Writes `record` to `path` (atomically: a temporary file beside it, renamed).
pub fn write(path: &Path, record: &SplitRecord) -> Result<()> {
    let f = &record.features;
    let value = json!({
        "validation_indices": record.validation_indices,
        "train_labels": record.train_labels,
        "test_labels": record.test_labels,
        "features": {
            "train": path_of(f.train),
            "train_flipped": path_of(f.train_flipped),
            "test": path_of(f.test),
            "test_flipped": path_of(f.test_flipped),
        },
        "head": record.head,
        "standardize": record.standardize,
        "tta": record.tta,
        "fine_tuned": record.fine_tuned,
        "fit": {
            "epochs": record.fit.epochs,
            "batch_size": record.fit.batch_size,
            "lr": record.fit.lr,
            "schedule": record.fit.schedule.to_string(),
            "patience": record.fit.patience,
            "seed": record.fit.seed,
        },
        "thaw": {
            "best_val_accuracy": record.best_val_accuracy,
            "test_accuracy": record.test_accuracy,
        },
    });
    let text = serde_json::to_string(&value)
        .map_err(|e| Error::Usage(format!("{}: cannot encode the split: {e}", path.display())))?;
    crate::npy::write_atomically(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::LrSchedule;

    #[test]
    fn the_split_file_names_the_held_out_rows_and_the_feature_files() {
        let dir = std::env::temp_dir().join(format!("thaw-split-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let features = dir.join("train.npy");
        std::fs::write(&features, b"x").unwrap();
        let stored = CacheOutcome::Stored(features.clone());
        let fit = FitConfig {
            epochs: 30,
            batch_size: 64,
            lr: 1e-3,
            schedule: LrSchedule::Cosine,
            patience: 5,
            seed: 7,
        };
        let out = dir.join("m.split.json");
        write(
            &out,
            &SplitRecord {
                validation_indices: &[3, 8],
                train_labels: &[0, 1, 0, 1, 0, 1, 0, 1, 0, 1],
                test_labels: &[1, 0],
                features: FeatureFiles {
                    train: Some(&stored),
                    test: Some(&CacheOutcome::Disabled),
                    ..Default::default()
                },
                head: "mlp".into(),
                standardize: false,
                tta: false,
                fine_tuned: false,
                fit: &fit,
                best_val_accuracy: 0.5,
                test_accuracy: 0.25,
            },
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(v["validation_indices"], json!([3, 8]));
        assert_eq!(v["test_labels"], json!([1, 0]));
        assert_eq!(
            v["features"]["train"],
            json!(std::fs::canonicalize(&features).unwrap())
        );
        assert_eq!(v["features"]["test"], Value::Null);
        assert_eq!(v["fit"]["seed"], json!(7));
        assert_eq!(v["fit"]["schedule"], json!("cosine"));
        assert_eq!(v["thaw"]["test_accuracy"], json!(0.25));
        // Nothing but the file itself is left in the folder.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
