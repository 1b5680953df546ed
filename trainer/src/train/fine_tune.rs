//! Fine-tuning: after the head has learned on frozen features, unfreeze the
//! last block of the backbone (`block5` of VGG16, `conv5` of ResNet50) and
//! train it together with the head, with a small learning rate. The
//! optional last phase of `train` (`--fine-tune BLOCK`).
//!
//! One step, on images end to end ([`TuneRows::Images`]) or on the
//! activations at BLOCK's input computed once ([`TuneRows::Activations`],
//! see [`super::activation_cache`]):
//!
//! ```text
//! uint8 batch ─▶ model_input (resize, preprocessing) ─▶ backbone (recording from BLOCK on) ─┐
//! f16 activations at BLOCK's input ─▶ widened to f32 ─▶ backbone from BLOCK on (recording) ──┴▶ head (dropout on)
//!   ─▶ softmax cross-entropy ─▶ backward ─▶ Adam on the unfrozen block + head
//! ```
//!
//! Both give the same features up to the f16 rounding of the activations:
//! the suffix runs the very operations of the whole forward pass from BLOCK
//! on. `train` uses the activations on the CPU, and images on a GPU or with
//! `--no-cache` (see [`super::activation_cache`] for why).
//!
//! It runs where the backbone is. On a GPU the head moves there for the
//! run (and back to the CPU at the end); each image batch goes up as uint8 and is
//! resized + preprocessed there in one kernel (as in extraction), the
//! forward, backward and Adam step stay on the GPU, and only the loss and
//! the logits (for the accuracy) come back per step. Snapshots of the best
//! weights stay on the GPU too; the model file gets host copies.
//!
//! Batch normalization stays in inference mode (moving statistics, never
//! updated; gamma and beta of the unfrozen block do learn), as Keras
//! recommends for fine-tuning: batch statistics of small batches would wreck
//! the pretrained features. Layers before BLOCK stay frozen, so the tape only
//! starts at BLOCK and their activations are not kept.
//!
//! Validation runs on the held-out rows (images or their activations) after
//! every epoch, as in [`super::fit`]; the best weights (backbone block and head) are
//! restored at the end, and if no epoch beats the head-only model, the
//! weights from before fine-tuning are.

use super::activation_cache::Activations;
use super::evaluate::{average, image_probabilities};
use super::feature_cache::flip_horizontal;
use super::feature_cache::model_input;
use super::fit::{argmax_rows, BatchStep, EpochMetrics, FitConfig, FitOutcome, StopReason};
use super::head::Head;
use crate::data::stream::Images;
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use engine::optim::{Adam, Optimizer};
use engine::rng::Rng;
use engine::{Param, Tensor};
use half::f16;
use models::Backbone;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Images and their labels: row `i` is image `i`; with `flips`, rows
/// `n..2n` are images `0..n` mirrored (`--flip`). The images are read batch
/// by batch (decoded from disk when the dataset is streamed).
#[derive(Debug, Clone, Copy)]
pub struct ImageRows<'a> {
    /// `n` images.
    pub images: Images<'a>,
    /// One label per row (`2n` with `flips`).
    pub labels: &'a [u8],
    /// Whether rows `n..2n` are the mirrored images.
    pub flips: bool,
}

impl ImageRows<'_> {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The uint8 pixels of rows `idx` (mirrored where a row is a flip) and
    /// their labels.
    fn gather(&self, idx: &[usize]) -> Result<(Vec<u8>, Vec<usize>)> {
        let n = self.images.len().max(1);
        let base: Vec<usize> = idx.iter().map(|&i| i % n).collect();
        let mut px = self.images.gather(&base)?;
        let (bytes, side) = (self.images.image_bytes(), self.images.side());
        for (k, &i) in idx.iter().enumerate() {
            if i >= n {
                let image = &mut px[k * bytes..(k + 1) * bytes];
                let mirrored = flip_horizontal(image, side);
                image.copy_from_slice(&mirrored);
            }
        }
        Ok((px, idx.iter().map(|&i| self.labels[i] as usize).collect()))
    }
}

/// Activations at BLOCK's input of some images (rows of one or more
/// [`Activations`] sets, in any order) and their labels.
#[derive(Debug, Clone)]
pub struct ActivationRows<'a> {
    /// One `h * w * c` row per image.
    pub rows: Vec<&'a [f16]>,
    /// One label per row.
    pub labels: Vec<u8>,
    /// `[h, w, c]`.
    pub shape: [usize; 3],
}

impl<'a> ActivationRows<'a> {
    /// Rows `idx` of `set`, labelled from `labels` (indexed as the set).
    pub fn gather(set: &'a Activations, labels: &[u8], idx: &[usize]) -> ActivationRows<'a> {
        let [_, h, w, c] = set.shape;
        ActivationRows {
            rows: idx.iter().map(|&i| set.row(i)).collect(),
            labels: idx.iter().map(|&i| labels[i]).collect(),
            shape: [h, w, c],
        }
    }

    /// Every row of `set`, in order.
    pub fn all(set: &'a Activations, labels: &[u8]) -> ActivationRows<'a> {
        let idx: Vec<usize> = (0..set.shape[0]).collect();
        ActivationRows::gather(set, labels, &idx)
    }

    /// These rows followed by `more`'s.
    pub fn chain(mut self, more: ActivationRows<'a>) -> ActivationRows<'a> {
        self.rows.extend(more.rows);
        self.labels.extend(more.labels);
        self
    }

    /// Rows `idx` widened to f32, as a `[n, h, w, c]` batch.
    fn batch(&self, idx: &[usize]) -> Result<Tensor> {
        let [h, w, c] = self.shape;
        let mut v = Vec::with_capacity(idx.len() * h * w * c);
        for &i in idx {
            v.extend(self.rows[i].iter().map(|x| x.to_f32()));
        }
        Ok(Tensor::from_vec(v, &[idx.len(), h, w, c])?)
    }
}

/// What fine-tuning trains and validates on.
#[derive(Debug, Clone)]
pub enum TuneRows<'a> {
    /// Images, run end to end every epoch.
    Images(ImageRows<'a>),
    /// Activations at BLOCK's input, computed once: only BLOCK on runs.
    Activations(ActivationRows<'a>),
}

impl TuneRows<'_> {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels().len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.labels().is_empty()
    }

    /// One label per row.
    pub fn labels(&self) -> &[u8] {
        match self {
            TuneRows::Images(r) => r.labels,
            TuneRows::Activations(r) => &r.labels,
        }
    }

    /// The backbone's output (inference mode, recorded from BLOCK on unless
    /// under `no_grad`) for rows `idx`, and their labels.
    fn features(
        &self,
        backbone: &dyn Backbone,
        block: &str,
        image_size: usize,
        idx: &[usize],
    ) -> Result<(Tensor, Vec<usize>)> {
        let pass =
            |e: models::Error| Error::Usage(format!("{} forward pass: {e}", backbone.name()));
        match self {
            TuneRows::Images(r) => {
                let (pixels, y) = r.gather(idx)?;
                let x = model_input(backbone, &pixels, r.images.side(), image_size, false)?;
                Ok((backbone.forward(&x, false).map_err(pass)?, y))
            }
            TuneRows::Activations(r) => {
                let a = r.batch(idx)?.to_device(backbone.device())?;
                let y = idx.iter().map(|&i| r.labels[i] as usize).collect();
                Ok((backbone.forward_suffix(&a, block, false).map_err(pass)?, y))
            }
        }
    }
}

/// The head's class probabilities `[n, classes]` for every row of `rows`
/// (averaged with those of `flipped`, the same images mirrored, when given:
/// test-time augmentation), in batches of `batch_size`, with a progress
/// report labelled `label`.
#[allow(clippy::too_many_arguments)]
pub fn tune_probabilities(
    backbone: &dyn Backbone,
    head: &Head,
    block: &str,
    rows: &TuneRows,
    flipped: Option<&TuneRows>,
    image_size: usize,
    batch_size: usize,
    label: &str,
) -> Result<Vec<f32>> {
    if let TuneRows::Images(r) = rows {
        // End to end: the flips are made on the fly.
        return image_probabilities(
            backbone,
            head,
            r.images,
            image_size,
            batch_size,
            flipped.is_some(),
            label,
        );
    }
    let _guard = engine::no_grad();
    let n = rows.len();
    let mut progress = Progress::new(label, Some(n as u64), Unit::Items("images"));
    let mut out = Vec::with_capacity(n * head.classes());
    let order: Vec<usize> = (0..n).collect();
    for idx in order.chunks(batch_size.max(1)) {
        let mut probs: Option<Vec<f32>> = None;
        for set in std::iter::once(rows).chain(flipped) {
            let (features, _) = set.features(backbone, block, image_size, idx)?;
            let p = head
                .predict_proba(&features.to_device(head.device())?)?
                .try_to_vec_f32()?;
            probs = Some(match probs {
                None => p,
                Some(q) => average(&q, &p),
            });
        }
        out.extend(probs.expect("at least one pass"));
        progress.inc(idx.len() as u64);
    }
    progress.finish();
    Ok(out)
}

/// Mean cross-entropy and accuracy of probabilities `[n, c]` against labels.
pub fn probability_scores(probs: &[f32], labels: &[u8], c: usize) -> (f64, f64) {
    let n = labels.len().max(1) as f64;
    let loss: f64 = probs
        .chunks_exact(c)
        .zip(labels)
        .map(|(row, &l)| -(row[l as usize].max(1e-30) as f64).ln())
        .sum();
    let correct = argmax_rows(probs, c)
        .iter()
        .zip(labels)
        .filter(|(p, &t)| **p == t as usize)
        .count();
    (loss / n, correct as f64 / n)
}

fn snapshot(params: &[Param]) -> Vec<Tensor> {
    params.iter().map(|p| p.value()).collect()
}

fn restore(params: &[Param], values: &[Tensor]) -> Result<()> {
    for (p, v) in params.iter().zip(values) {
        p.set_value(v.clone())?;
    }
    Ok(())
}

/// Fine-tunes `block` of `backbone` together with `head` (see the module
/// docs). Epoch numbers continue from `first_epoch`; `best_val_acc` is the
/// head-only model's, which an epoch must beat to count as an improvement.
/// The backbone is frozen again before returning.
#[allow(clippy::too_many_arguments)]
pub fn fine_tune(
    backbone: &dyn Backbone,
    head: &Head,
    block: &str,
    train: &TuneRows,
    val: &TuneRows,
    image_size: usize,
    cfg: &FitConfig,
    first_epoch: usize,
    best_val_acc: f64,
    stop: &AtomicBool,
    on_epoch: &mut dyn FnMut(&EpochMetrics, bool) -> Result<()>,
) -> Result<FitOutcome> {
    cfg.check("fine-tuning")?;
    if train.is_empty() || val.is_empty() {
        return Err(Error::Usage(
            "fine-tuning needs training and validation images".into(),
        ));
    }
    backbone.set_trainable_from(block).map_err(|e| {
        let meant: Vec<&str> = models::registry::find(backbone.name())
            .map(|m| m.fine_tune.iter().map(|b| b.name).collect())
            .unwrap_or_default();
        Error::Usage(format!(
            "--fine-tune {block}: {e} (the blocks meant for it: {})",
            meant.join(", ")
        ))
    })?;
    backbone.set_bn_inference_only(true);
    let device = backbone.device();
    if let Err(e) = head.to_device(device) {
        backbone.set_trainable(false);
        return Err(e);
    }
    let tuning = Tuning {
        backbone,
        head,
        block,
        image_size,
        cfg,
    };
    let result = tuning.run(train, val, first_epoch, best_val_acc, stop, on_epoch);
    backbone.set_trainable(false);
    // The head goes back to the CPU, where the rest of the trainer uses it.
    let moved_back = head.to_device(engine::Device::Cpu);
    let outcome = result?;
    moved_back?;
    Ok(outcome)
}

/// What stays fixed while fine-tuning runs: the model, the unfrozen block,
/// the input size and the settings.
struct Tuning<'a> {
    backbone: &'a dyn Backbone,
    head: &'a Head,
    block: &'a str,
    image_size: usize,
    cfg: &'a FitConfig,
}

impl Tuning<'_> {
    /// The epochs of [`fine_tune`]: train, validate, keep the best weights
    /// (restored at the end), stop early or on the stop flag.
    fn run(
        &self,
        train: &TuneRows,
        val: &TuneRows,
        first_epoch: usize,
        best_val_acc: f64,
        stop: &AtomicBool,
        on_epoch: &mut dyn FnMut(&EpochMetrics, bool) -> Result<()>,
    ) -> Result<FitOutcome> {
        let (backbone, cfg) = (self.backbone, self.cfg);
        let mut params = backbone.trainable_params();
        let unfrozen = params.len();
        params.extend(self.head.params());
        eprintln!(
            "fine-tuning {} weight tensors of {} ({} values) and the head, lr {:.1e}",
            unfrozen,
            backbone.name(),
            params[..unfrozen]
                .iter()
                .map(|p| p.value().numel())
                .sum::<usize>(),
            cfg.lr
        );
        let before = snapshot(&params);
        let steps_per_epoch = train.len().div_ceil(cfg.batch_size) as u64;
        let mut opt = Adam::new(
            cfg.schedule
                .build(cfg.lr, steps_per_epoch * cfg.epochs as u64),
        );
        let mut best: Option<(usize, f64, Vec<Tensor>)> = None;
        let mut best_acc = best_val_acc;
        let mut history = Vec::new();
        let mut since_best = 0;
        let mut reason = StopReason::Completed;

        for e in 0..cfg.epochs {
            let epoch = first_epoch + e;
            let start = Instant::now();
            let Some((loss, train_acc)) =
                self.train_epoch(train, epoch, e, &mut opt, &params, stop)?
            else {
                reason = StopReason::Interrupted;
                break;
            };
            let (val_loss, val_acc) = self.validate(val)?;
            let m = EpochMetrics {
                epoch,
                phase: "fine-tune",
                loss,
                train_acc,
                val_loss,
                val_acc,
                lr: opt.lr.at(opt.iterations().saturating_sub(1)),
                seconds: start.elapsed().as_secs_f64(),
            };
            let improved = best_acc.is_nan() || val_acc > best_acc;
            if improved {
                best_acc = val_acc;
                best = Some((epoch, val_acc, snapshot(&params)));
                since_best = 0;
            } else {
                since_best += 1;
            }
            on_epoch(&m, improved)?;
            history.push(m);
            if cfg.stops_early(since_best) {
                reason = StopReason::EarlyStopped;
                break;
            }
        }
        let (best_epoch, best_val_acc) = match best {
            Some((epoch, acc, values)) => {
                restore(&params, &values)?;
                (Some(epoch), acc)
            }
            None => {
                restore(&params, &before)?;
                (None, best_val_acc)
            }
        };
        Ok(FitOutcome {
            history,
            best_epoch,
            best_val_acc,
            stop: reason,
        })
    }

    /// One pass over `train` in the order seeded by the epoch index `e`,
    /// stepping `opt` on `params`: the mean loss and the training accuracy,
    /// or None when the stop flag ended it after a batch.
    fn train_epoch(
        &self,
        train: &TuneRows,
        epoch: usize,
        e: usize,
        opt: &mut Adam,
        params: &[Param],
        stop: &AtomicBool,
    ) -> Result<Option<(f64, f64)>> {
        let mut order: Vec<usize> = (0..train.len()).collect();
        Rng::new(self.cfg.seed, 0x4649_4e45_0000 + e as u64).shuffle(&mut order);
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        let mut progress = Progress::new(
            format!("fine-tune epoch {epoch}"),
            Some(train.len() as u64),
            Unit::Items("images"),
        );
        for (b, idx) in order.chunks(self.cfg.batch_size).enumerate() {
            let (features, y) = train.features(self.backbone, self.block, self.image_size, idx)?;
            let logits = self.head.forward(&features, true)?;
            let step = BatchStep {
                phase: "fine-tuning",
                epoch,
                batch: b + 1,
            };
            let (value, right) = step.run(&logits, &y, opt, params)?;
            loss_sum += value * idx.len() as f64;
            seen += idx.len();
            correct += right;
            progress.inc(idx.len() as u64);
            if stop.load(Ordering::SeqCst) {
                progress.abandon();
                return Ok(None);
            }
        }
        progress.finish();
        Ok(Some((loss_sum / seen as f64, correct as f64 / seen as f64)))
    }

    /// The validation loss and accuracy of the current weights on `val`.
    fn validate(&self, val: &TuneRows) -> Result<(f64, f64)> {
        let probs = tune_probabilities(
            self.backbone,
            self.head,
            self.block,
            val,
            None,
            self.image_size,
            self.cfg.batch_size.max(32),
            "fine-tune validation",
        )?;
        Ok(probability_scores(
            &probs,
            val.labels(),
            self.head.classes(),
        ))
    }
}
