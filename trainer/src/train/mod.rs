//! `trainer train`: CIFAR-10 transfer learning end to end, from raw images
//! to a saved model that reloads.
//!
//! ```text
//! data (uint8: 32x32 in memory, or photos decoded + resized batch by batch) ──┐
//! weights (.h5/.st) ───┴─▶ feature_cache: resize → preprocessing → frozen backbone → GAP → features [N, C]
//!                            (computed once, cached as .npy, keyed by model/alpha/weights/size/data/flip)
//!   ─▶ fit: head (Dense 256 relu → Dropout 0.5 → Dense K) with Adam, validation, early stopping
//!   ─▶ fine_tune (optional): unfreeze the --fine-tune block, train it with the head on the
//!      activations at its input (activation_cache: computed once, cached as f16 .npy; on a GPU
//!      or with --no-cache, end to end on images)
//!   ─▶ model_file: backbone + head + metadata in one .safetensors (saved at each improvement)
//!   ─▶ evaluate: test accuracy, per class, confusion matrix;  report: metrics CSV, PNGs, summary
//!   ─▶ run_record: NAME.run.json (options, machine, data, times, accuracies), NAME.predictions.csv
//!   ─▶ crate::paper: NAME.report.html and NAME.report.md, from those files alone
//! ```
//!
//! [`run_train`] reads as this diagram: `checks.rs` checks everything it
//! can before any work, then `pipeline.rs` holds one function per phase.
//!
//! Validation: `--val-split` (default 10%) of the training images are held
//! out (a seeded draw) and never trained on, or a `validation/` folder is
//! the validation set (see [`crate::data::sets`] for every layout and
//! `--test-split`); early stopping and "best model" use their accuracy, and
//! the test split is only scored at the end. With `--flip`, the flipped
//! copies of the held-out images are left out too.
//!
//! Defaults: ResNet50, Keras's ImageNet weights (downloaded into the cache
//! when missing), the model's ImageNet image size (224 for the Keras
//! models; the expected extraction time is printed after the first batch), head
//! `mlp`, 30 epochs of batch 64, Adam lr 1e-3 with cosine decay to lr/100,
//! patience 5, seed 0.

pub mod activation_cache;
mod checks;
pub mod evaluate;
pub mod feature_cache;
pub mod fine_tune;
pub mod fit;
pub mod head;
pub mod model_file;
mod pipeline;
pub mod predict;
pub mod predictions;
pub mod report;
pub mod run_record;
pub mod split_file;

pub use evaluate::{run_evaluate, Evaluation};
pub use feature_cache::{CacheOutcome, FeatureCache, FeatureKey};
pub use fit::{fit_head, EpochMetrics, FitConfig, FitOutcome, LrSchedule, Rows, StopReason};
pub use head::{Head, HeadKind};
pub use model_file::{load_model, save_model, LoadedModel, ModelMeta};
pub use predict::run_predict;

use crate::cli::{DeviceChoice, HeadChoice, TrainArgs};
use crate::error::Result;
use pipeline::Log;
use std::path::PathBuf;

/// Everything `train` needs to know (the flags of `trainer train`).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Backbone name (a registered one: `resnet50`, `vgg16`, ...).
    pub model: String,
    /// Its alpha, for models with variants (None: the model's default).
    pub alpha: Option<f64>,
    /// Backbone weights file (.h5 or .safetensors); None: Keras's ImageNet weights.
    pub weights: Option<PathBuf>,
    /// Dataset folder; None: CIFAR-10 from the cache (downloaded when missing).
    pub data: Option<PathBuf>,
    /// Input size; None: the model's ImageNet size (224 for most, 240 and
    /// 260 for EfficientNet-Lite1 and -Lite2), on the CPU as on a GPU.
    pub image_size: Option<usize>,
    /// Head training settings (epochs, batch size, lr, schedule, patience, seed).
    pub fit: FitConfig,
    /// Images per backbone pass during extraction.
    pub extract_batch_size: usize,
    /// Head kind.
    pub head: HeadKind,
    /// Train on the flipped images too.
    pub flip: bool,
    /// Average test predictions over image and flip.
    pub tta: bool,
    /// Standardize the features (a Keras `Normalization` adapted on the training rows) in the head.
    pub standardize: bool,
    /// Block to unfreeze for fine-tuning (`block5`, `conv5`), if any.
    pub fine_tune: Option<String>,
    /// Fine-tuning learning rate.
    pub fine_tune_lr: f64,
    /// Fine-tuning epochs.
    pub fine_tune_epochs: usize,
    /// Fraction of the training images held out for validation (None: the
    /// default, or the `validation/` folder).
    pub val_split: Option<f64>,
    /// Fraction of the images split off as the test set, for a dataset
    /// without one.
    pub test_split: Option<f64>,
    /// How image folders are read.
    pub images: crate::cli::ImageArgs,
    /// Where to compute.
    pub device: DeviceChoice,
    /// Precision of the backbone's convolutions during feature extraction.
    pub precision: engine::Precision,
    /// Recompute features and write no cache.
    pub no_cache: bool,
    /// The model file to write.
    pub out: PathBuf,
    /// The command line, as the run record keeps it.
    pub command_line: Vec<String>,
    /// Write the run's paper after the run record (`--no-report`: not).
    pub report: bool,
}

impl TrainOptions {
    /// The options of a parsed `train` command line.
    pub fn from_args(a: &TrainArgs) -> TrainOptions {
        TrainOptions {
            model: a.model.clone(),
            alpha: a.alpha,
            weights: a.weights.clone(),
            data: a.data.clone(),
            image_size: a.image_size,
            fit: FitConfig {
                epochs: a.epochs,
                batch_size: a.batch_size,
                lr: a.lr,
                schedule: a.schedule,
                patience: a.patience,
                seed: a.seed,
            },
            extract_batch_size: a.extract_batch_size,
            head: match a.head {
                HeadChoice::Mlp => HeadKind::Mlp,
                HeadChoice::Linear => HeadKind::Linear,
            },
            flip: a.flip,
            tta: a.tta,
            standardize: a.standardize,
            fine_tune: a.fine_tune.clone(),
            // An unknown model keeps Keras's rate here; it is refused,
            // with the list of models, before anything runs.
            fine_tune_lr: a.fine_tune_lr.unwrap_or_else(|| {
                models::registry::find(&a.model)
                    .map_or(models::registry::KERAS_FINE_TUNE_LR, |m| m.fine_tune_lr)
            }),
            fine_tune_epochs: a.fine_tune_epochs,
            val_split: a.val_split,
            test_split: a.test_split,
            images: a.images,
            device: a.device,
            precision: a.precision.precision(),
            no_cache: a.no_cache,
            out: a.out.clone(),
            command_line: std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            report: !a.no_report,
        }
    }
}

/// What a training run did.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Every epoch of every phase, in order.
    pub history: Vec<EpochMetrics>,
    /// Best validation accuracy (the saved model's).
    pub best_val_acc: f64,
    /// Test-split figures of the saved model (None if interrupted first).
    pub test: Option<Evaluation>,
    /// How each feature set was obtained, in order: train, test, then flips;
    /// then the fine-tuning activation sets (train, test, then flips).
    pub cache: Vec<CacheOutcome>,
    /// Wall seconds per phase, in order.
    pub phases: Vec<(String, f64)>,
    /// Whether Ctrl-C ended the run early.
    pub interrupted: bool,
    /// The model file.
    pub out: PathBuf,
}

/// Runs `train` (see the module docs) and prints its summary: the table of
/// contents of the run, the checks (`checks.rs`), then one call per phase
/// of the diagram above (`pipeline.rs`, in this order).
///
/// Everything that can be checked is checked before the weights are read:
/// the flags, the image size against memory, `--out`, the `--fine-tune`
/// block, the cache folder, and the dataset (two splits, two classes).
pub fn run_train(opts: &TrainOptions) -> Result<TrainSummary> {
    // 0. Checks before any work; the backbone built, the signal handler installed.
    let run = checks::prepare(opts)?;
    let mut log = Log::new();

    // 1. Data: a training split and a separate test split, two classes at
    // least; the validation images held out.
    let data = pipeline::load_data(opts, &run, &mut log)?;

    // 2. Backbone: its weights read (or downloaded, converted and cached) and loaded.
    let weights = pipeline::load_backbone(opts, &run, &mut log)?;

    // 3. Cached features: once per image set, on `--device`, in `--precision`.
    let features = pipeline::cached_features(opts, &run, &data, &weights, &mut log)?;

    // 4. Head training on the features; the model is saved at each improvement.
    let mut trained = pipeline::train_head(opts, &run, &data, &weights, &features, &mut log)?;

    // 5. Optional fine-tuning of the `--fine-tune` block with the head.
    pipeline::fine_tune(opts, &run, &data, &weights, &mut trained, &mut log)?;
    pipeline::report_training(opts, &trained, &log)?;
    let parts = |log, test| run_record::RunParts {
        opts,
        run: &run,
        data: &data,
        weights: &weights,
        features: &features,
        log,
        test,
    };
    if log.interrupted {
        // The run record, without test figures (the test split was not scored).
        run_record::write(&parts(&log, None), None)?;
        return Ok(log.into_summary(None, &opts.out));
    }

    // 6. Evaluation: the saved model's accuracy on the test split.
    let (test, probs) =
        pipeline::evaluate_test(opts, &run, &data, &weights, &features, &trained, &mut log)?;

    // 7. Report: split file, confusion matrix, summary.
    pipeline::report(opts, &run, &data, &weights, &features, &test, &log)?;

    // 8. Run record: the test predictions and NAME.run.json.
    run_record::write(&parts(&log, Some(&test)), Some(&probs))?;

    // 9. The paper, written from those files alone (`crate::paper`).
    if opts.report {
        crate::paper::after_training(&opts.out);
    }
    Ok(log.into_summary(Some(test), &opts.out))
}

#[cfg(test)]
mod tests {
    use super::TrainOptions;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// The fine-tuning learning rate `train ARGS` runs with.
    fn fine_tune_lr(args: &[&str]) -> f64 {
        let cli = Cli::try_parse_from([&["trainer", "train"], args].concat()).unwrap();
        let Command::Train(a) = cli.into_command() else {
            panic!("not a train command: {args:?}");
        };
        TrainOptions::from_args(&a).fine_tune_lr
    }

    #[test]
    fn the_fine_tuning_learning_rate_is_the_models_unless_given() {
        let lite0 = ["--model", "efficientnet_lite0"];
        assert_eq!(fine_tune_lr(&lite0), models::registry::LITE_FINE_TUNE_LR);
        assert_eq!(fine_tune_lr(&["--model", "efficientnet_lite2"]), 3e-4);
        assert_eq!(fine_tune_lr(&["--model", "vgg16"]), 1e-5);
        assert_eq!(fine_tune_lr(&[]), models::registry::KERAS_FINE_TUNE_LR);
        let given = [&lite0[..], &["--fine-tune-lr", "2e-5"]].concat();
        assert_eq!(fine_tune_lr(&given), 2e-5);
    }
}
