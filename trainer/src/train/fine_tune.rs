//! Fine-tuning: after the head has learned on frozen features, unfreeze the
//! last block of the backbone (`block5` of VGG16, `conv5` of ResNet50) and
//! train it together with the head, end to end on images, with a small
//! learning rate. The optional last phase of `train` (`--fine-tune BLOCK`).
//!
//! One step:
//!
//! ```text
//! uint8 batch ─▶ model_input (resize, preprocessing) ─▶ backbone (recording from BLOCK on) ─▶ head (dropout on)
//!   ─▶ softmax cross-entropy ─▶ backward ─▶ Adam on the unfrozen block + head
//! ```
//!
//! It runs where the backbone is. On a GPU the head moves there for the
//! run (and back to the CPU at the end); each batch goes up as uint8 and is
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
//! Validation runs end to end on the held-out images after every epoch, as
//! in [`super::fit`]; the best weights (backbone block and head) are
//! restored at the end, and if no epoch beats the head-only model, the
//! weights from before fine-tuning are.

use super::evaluate::image_probabilities;
use super::feature_cache::model_input;
use super::fit::{argmax_rows, BatchStep, EpochMetrics, FitConfig, FitOutcome, StopReason};
use super::head::Head;
use crate::data::IMAGE_BYTES;
use crate::error::{Error, Result};
use engine::optim::{Adam, Optimizer};
use engine::rng::Rng;
use engine::{Param, Tensor};
use models::Backbone;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Images and their labels (uint8 32x32 RGB, flat HWC per image).
#[derive(Debug, Clone, Copy)]
pub struct ImageRows<'a> {
    /// `n * 3072` bytes.
    pub images: &'a [u8],
    /// `n` labels.
    pub labels: &'a [u8],
}

impl ImageRows<'_> {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    fn gather(&self, idx: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let mut px = Vec::with_capacity(idx.len() * IMAGE_BYTES);
        for &i in idx {
            px.extend_from_slice(&self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]);
        }
        (px, idx.iter().map(|&i| self.labels[i] as usize).collect())
    }
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
    train: &ImageRows,
    val: &ImageRows,
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
    let result = run(
        backbone,
        head,
        train,
        val,
        image_size,
        cfg,
        first_epoch,
        best_val_acc,
        stop,
        on_epoch,
    );
    backbone.set_trainable(false);
    // The head goes back to the CPU, where the rest of the trainer uses it.
    let moved_back = head.to_device(engine::Device::Cpu);
    let outcome = result?;
    moved_back?;
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)]
fn run(
    backbone: &dyn Backbone,
    head: &Head,
    train: &ImageRows,
    val: &ImageRows,
    image_size: usize,
    cfg: &FitConfig,
    first_epoch: usize,
    best_val_acc: f64,
    stop: &AtomicBool,
    on_epoch: &mut dyn FnMut(&EpochMetrics, bool) -> Result<()>,
) -> Result<FitOutcome> {
    let mut params = backbone.trainable_params();
    let unfrozen = params.len();
    params.extend(head.params());
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

    'epochs: for e in 0..cfg.epochs {
        let epoch = first_epoch + e;
        let start = Instant::now();
        let mut order: Vec<usize> = (0..train.len()).collect();
        Rng::new(cfg.seed, 0x4649_4e45_0000 + e as u64).shuffle(&mut order);
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        let mut progress = crate::progress::Progress::new(
            format!("fine-tune epoch {epoch}"),
            Some(train.len() as u64),
            crate::progress::Unit::Items("images"),
        );
        for (b, idx) in order.chunks(cfg.batch_size).enumerate() {
            let (pixels, y) = train.gather(idx);
            let x = model_input(backbone, &pixels, image_size, false)?;
            let features = backbone
                .forward(&x, false)
                .map_err(|e| Error::Usage(format!("{} forward pass: {e}", backbone.name())))?;
            let logits = head.forward(&features, true)?;
            let step = BatchStep {
                phase: "fine-tuning",
                epoch,
                batch: b + 1,
            };
            let (value, right) = step.run(&logits, &y, &mut opt, &params)?;
            loss_sum += value * idx.len() as f64;
            seen += idx.len();
            correct += right;
            progress.inc(idx.len() as u64);
            if stop.load(Ordering::SeqCst) {
                progress.abandon();
                reason = StopReason::Interrupted;
                break 'epochs;
            }
        }
        progress.finish();
        let probs = image_probabilities(
            backbone,
            head,
            val.images,
            image_size,
            cfg.batch_size.max(32),
            false,
            "fine-tune validation",
        )?;
        let (val_loss, val_acc) = probability_scores(&probs, val.labels, head.classes());
        let m = EpochMetrics {
            epoch,
            phase: "fine-tune",
            loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
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
