//! Training the head on cached features: Keras's `model.fit` with
//! validation, early stopping and best-weight restoring, written out.
//!
//! One epoch:
//!
//! ```text
//! shuffle the training rows (seeded: stream = epoch)
//! for each batch:  logits = head(x, training)           (dropout on)
//!                  L = softmax_cross_entropy(logits, y)  (mean over the batch)
//!                  L.backward(); Adam.step(); zero_grad  (lr from the schedule)
//! validate:        val_loss, val_acc on the held-out rows (inference mode)
//! ```
//!
//! Early stopping watches `val_acc`: each strict improvement snapshots the
//! head's weights and calls `on_improve` (which saves the model file); after
//! `patience` epochs without one, training stops. Either way the best
//! weights are restored at the end (Keras's `restore_best_weights=True`).
//!
//! A loss that is NaN or infinite stops the run with an error naming the
//! epoch and batch (lower `--lr`). A raised stop flag (Ctrl-C) ends the run
//! after the current batch, best weights restored.
//!
//! The head trains where its weights are (`Head::to_device`): the trainer
//! moves it to the backbone's GPU for this phase, and each batch of cached
//! feature rows is gathered on the host and uploaded.
//!
//! Everything random (initial weights, shuffles, dropout masks) comes from
//! the seed, and the CPU ops are deterministic, so the same seed gives the
//! same losses, bit for bit.

use super::head::Head;
use crate::error::{Error, Result};
use engine::optim::{zero_grad, Adam, Optimizer, Schedule};
use engine::rng::Rng;
use engine::{ops, Device, Tensor};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How the learning rate changes over a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LrSchedule {
    /// Cosine decay from `lr` to `lr / 100` over all the steps of the planned
    /// epochs (Keras `CosineDecay(lr, steps, alpha=0.01)`): the default.
    Cosine,
    /// Divide by 10 after every third of the planned epochs
    /// (Keras `ExponentialDecay(lr, steps / 3, 0.1, staircase=True)`).
    Step,
    /// The same rate throughout.
    Constant,
}

impl LrSchedule {
    /// The engine schedule for a phase of `total_steps` optimizer steps.
    pub fn build(self, lr: f64, total_steps: u64) -> Schedule {
        match self {
            LrSchedule::Cosine => Schedule::Cosine {
                initial: lr,
                decay_steps: total_steps.max(1),
                alpha: 0.01,
            },
            LrSchedule::Step => Schedule::StepDecay {
                initial: lr,
                every: total_steps.div_ceil(3).max(1),
                factor: 0.1,
            },
            LrSchedule::Constant => Schedule::Constant(lr),
        }
    }

    /// The name users write: `cosine`, `step` or `constant`.
    pub fn as_str(self) -> &'static str {
        match self {
            LrSchedule::Cosine => "cosine",
            LrSchedule::Step => "step",
            LrSchedule::Constant => "constant",
        }
    }
}

impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LrSchedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<LrSchedule> {
        match s {
            "cosine" => Ok(LrSchedule::Cosine),
            "step" => Ok(LrSchedule::Step),
            "constant" => Ok(LrSchedule::Constant),
            other => Err(Error::Usage(format!(
                "unknown learning-rate schedule '{other}': use cosine, step or constant"
            ))),
        }
    }
}

/// Settings of one training phase.
#[derive(Debug, Clone)]
pub struct FitConfig {
    /// Maximum epochs (early stopping may end sooner).
    pub epochs: usize,
    /// Rows per optimizer step.
    pub batch_size: usize,
    /// Initial Adam learning rate.
    pub lr: f64,
    /// How the rate decays.
    pub schedule: LrSchedule,
    /// Epochs without a better validation accuracy before stopping; 0 acts
    /// as 1, as in Keras's `EarlyStopping`: stop at the first epoch without
    /// improvement.
    pub patience: usize,
    /// Seed of the shuffles (stream = epoch number).
    pub seed: u64,
}

impl FitConfig {
    /// Whether training stops after `since_best` epochs in a row without a
    /// better validation accuracy (Keras's `EarlyStopping`: `wait >= patience`
    /// counted after the epoch, so patience 0 and 1 both stop at the first
    /// epoch without improvement).
    pub fn stops_early(&self, since_best: usize) -> bool {
        since_best > 0 && since_best >= self.patience
    }

    /// Checks the settings, naming the flag at fault.
    pub fn check(&self, phase: &str) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::Usage(format!(
                "{phase}: --epochs is 0; train at least one epoch"
            )));
        }
        if self.batch_size == 0 {
            return Err(Error::Usage(format!(
                "{phase}: --batch-size is 0; use at least 1"
            )));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::Usage(format!(
                "{phase}: learning rate {} must be a positive number",
                self.lr
            )));
        }
        Ok(())
    }
}

/// What one epoch measured (one row of the metrics file).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch number within the run (fine-tuning continues the count).
    pub epoch: usize,
    /// `head` or `fine-tune`.
    pub phase: &'static str,
    /// Mean training loss over the epoch's batches.
    pub loss: f64,
    /// Training accuracy over the epoch's batches (dropout on, as Keras reports it).
    pub train_acc: f64,
    /// Validation loss (inference mode).
    pub val_loss: f64,
    /// Validation accuracy (inference mode).
    pub val_acc: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
}

/// Why a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// All planned epochs ran.
    Completed,
    /// `patience` epochs without improvement.
    EarlyStopped,
    /// The stop flag was raised (Ctrl-C).
    Interrupted,
}

/// The result of a phase.
#[derive(Debug, Clone)]
pub struct FitOutcome {
    /// One entry per finished epoch.
    pub history: Vec<EpochMetrics>,
    /// Epoch (1-based, as in `history`) whose weights were restored; None if
    /// no epoch beat the starting validation accuracy.
    pub best_epoch: Option<usize>,
    /// Best validation accuracy seen (the starting one if nothing beat it).
    pub best_val_acc: f64,
    /// Why training ended.
    pub stop: StopReason,
}

/// Training rows: features `[n, dim]` row-major and one label per row.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// `n * dim` values.
    pub x: &'a [f32],
    /// `n` labels.
    pub y: &'a [u8],
    /// Values per row.
    pub dim: usize,
}

impl<'a> Rows<'a> {
    /// Rows after checking that `x` holds `y.len()` rows of `dim` values.
    pub fn new(x: &'a [f32], y: &'a [u8], dim: usize) -> Result<Rows<'a>> {
        if dim == 0 || x.len() != y.len() * dim {
            return Err(Error::Usage(format!(
                "training rows: {} values for {} labels of dimension {dim}; expected {}",
                x.len(),
                y.len(),
                y.len() * dim
            )));
        }
        Ok(Rows { x, y, dim })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The rows at `idx` as a `[idx.len(), dim]` tensor on `device`, with
    /// their labels.
    pub fn gather(&self, idx: &[usize], device: Device) -> Result<(Tensor, Vec<usize>)> {
        let mut x = Vec::with_capacity(idx.len() * self.dim);
        for &i in idx {
            x.extend_from_slice(&self.x[i * self.dim..(i + 1) * self.dim]);
        }
        let y = idx.iter().map(|&i| self.y[i] as usize).collect();
        let x = Tensor::from_vec(x, &[idx.len(), self.dim])?.to_device(device)?;
        Ok((x, y))
    }
}

/// Index of the largest value of each row of `[n, c]` values (first on ties).
pub fn argmax_rows(values: &[f32], c: usize) -> Vec<usize> {
    values
        .chunks_exact(c)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Errors unless the loss is finite, naming where training diverged
/// (`batch` 0: in the validation after the epoch).
pub(crate) fn check_loss(
    loss: f64,
    phase: &str,
    epoch: usize,
    batch: usize,
    lr: f64,
) -> Result<()> {
    if loss.is_finite() {
        return Ok(());
    }
    let at = match batch {
        0 => format!("while validating epoch {epoch}"),
        _ => format!("at epoch {epoch}, batch {batch}"),
    };
    Err(Error::Engine(engine::Error::non_finite(
        "training",
        format!(
            "{phase}: the loss became {loss} {at} (learning rate \
             {lr:.3e}); training diverged and was stopped. The model file keeps the last best \
             weights. HINT: lower the learning rate (--lr / --fine-tune-lr), or check the \
             inputs for NaN or infinite values"
        ),
    )))
}

/// Turns the engine's non-finite-logits error into the same diverged message.
pub(crate) fn diverged(e: Error, phase: &str, epoch: usize, batch: usize, lr: f64) -> Error {
    match e {
        Error::Engine(engine::Error::NonFinite { .. }) => {
            check_loss(f64::NAN, phase, epoch, batch, lr).unwrap_err()
        }
        other => other,
    }
}

/// Where one optimizer step happens, for the messages of a diverged run.
pub(crate) struct BatchStep {
    /// "head training" or "fine-tuning".
    pub phase: &'static str,
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Batch number within the epoch, from 1.
    pub batch: usize,
}

impl BatchStep {
    /// The loss of `logits` against `y`, backward, one Adam step on
    /// `params` and their gradients cleared; returns the batch's mean loss and
    /// how many rows were classified correctly. A non-finite loss stops the
    /// run with a message naming this step and the learning rate.
    pub(crate) fn run(
        &self,
        logits: &Tensor,
        y: &[usize],
        opt: &mut Adam,
        params: &[engine::Param],
    ) -> Result<(f64, usize)> {
        let lr = opt.current_lr();
        let loss = ops::softmax_cross_entropy(logits, y)
            .map_err(|e| diverged(e.into(), self.phase, self.epoch, self.batch, lr))?;
        let value = loss.item()?;
        check_loss(value, self.phase, self.epoch, self.batch, lr)?;
        loss.backward()?;
        opt.step(params)?;
        zero_grad(params);
        let classes = logits.shape().last().copied().unwrap_or(0);
        let correct = argmax_rows(&logits.try_to_vec_f32()?, classes)
            .iter()
            .zip(y)
            .filter(|(p, t)| p == t)
            .count();
        Ok((value, correct))
    }
}

/// Mean loss and accuracy of the head on `rows`, inference mode, in batches.
pub fn evaluate_rows(head: &Head, rows: &Rows, batch_size: usize) -> Result<(f64, f64)> {
    let _guard = engine::no_grad();
    let (mut loss_sum, mut correct) = (0.0, 0usize);
    let idx: Vec<usize> = (0..rows.len()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        let (x, y) = rows.gather(chunk, head.device())?;
        let logits = head.forward(&x, false)?;
        let loss = ops::softmax_cross_entropy(&logits, &y)?.item()?;
        loss_sum += loss * chunk.len() as f64;
        correct += argmax_rows(&logits.to_vec_f32(), head.classes())
            .iter()
            .zip(&y)
            .filter(|(p, t)| p == t)
            .count();
    }
    let n = rows.len().max(1) as f64;
    Ok((loss_sum / n, correct as f64 / n))
}

/// Trains `head` on `train`, validating on `val` every epoch (see the module
/// docs). `on_epoch` sees every epoch's metrics and whether it improved on
/// the best validation accuracy (save the model there); `stop` is polled
/// after every batch.
pub fn fit_head(
    head: &Head,
    train: &Rows,
    val: &Rows,
    cfg: &FitConfig,
    stop: &AtomicBool,
    on_epoch: &mut dyn FnMut(&EpochMetrics, bool) -> Result<()>,
) -> Result<FitOutcome> {
    cfg.check("head training")?;
    if train.is_empty() || val.is_empty() {
        return Err(Error::Usage(format!(
            "head training needs training and validation rows; got {} and {}",
            train.len(),
            val.len()
        )));
    }
    if train.dim != head.features() || val.dim != head.features() {
        return Err(Error::Usage(format!(
            "head training: rows have {} (train) and {} (validation) features, the head takes {}",
            train.dim,
            val.dim,
            head.features()
        )));
    }
    let params = head.params();
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size) as u64;
    let mut opt = Adam::new(
        cfg.schedule
            .build(cfg.lr, steps_per_epoch * cfg.epochs as u64),
    );
    let mut best: Option<(usize, f64, Vec<(String, Tensor)>)> = None;
    let mut history = Vec::new();
    let mut since_best = 0;
    let mut reason = StopReason::Completed;

    for epoch in 1..=cfg.epochs {
        let start = Instant::now();
        let Some((loss, train_acc)) =
            train_epoch(head, train, cfg, epoch, &mut opt, &params, stop)?
        else {
            reason = StopReason::Interrupted;
            break;
        };
        let lr = opt.lr.at(opt.iterations().saturating_sub(1));
        let (val_loss, val_acc) = evaluate_rows(head, val, cfg.batch_size.max(256))
            .map_err(|e| diverged(e, "head training", epoch, 0, lr))?;
        let m = EpochMetrics {
            epoch,
            phase: "head",
            loss,
            train_acc,
            val_loss,
            val_acc,
            lr: opt.lr.at(opt.iterations().saturating_sub(1)),
            seconds: start.elapsed().as_secs_f64(),
        };
        let improved = best.as_ref().is_none_or(|(_, acc, _)| val_acc > *acc);
        if improved {
            best = Some((epoch, val_acc, head.named_tensors()));
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
    let (best_epoch, best_val_acc) = match &best {
        Some((epoch, acc, weights)) => {
            head.load(weights)?;
            (Some(*epoch), *acc)
        }
        None => (None, f64::NAN),
    };
    Ok(FitOutcome {
        history,
        best_epoch,
        best_val_acc,
        stop: reason,
    })
}

/// One pass of head training over `train` in the order seeded by `epoch`,
/// stepping `opt` on `params`: the mean loss and the training accuracy, or
/// None when the stop flag ended it after a batch.
fn train_epoch(
    head: &Head,
    train: &Rows,
    cfg: &FitConfig,
    epoch: usize,
    opt: &mut Adam,
    params: &[engine::Param],
    stop: &AtomicBool,
) -> Result<Option<(f64, f64)>> {
    let mut order: Vec<usize> = (0..train.len()).collect();
    Rng::new(cfg.seed, 0x5348_5546_0000 + epoch as u64).shuffle(&mut order);
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
    for (b, idx) in order.chunks(cfg.batch_size).enumerate() {
        let (x, y) = train.gather(idx, head.device())?;
        let lr = opt.current_lr();
        let logits = head
            .forward(&x, true)
            .map_err(|e| diverged(e, "head training", epoch, b + 1, lr))?;
        let step = BatchStep {
            phase: "head training",
            epoch,
            batch: b + 1,
        };
        let (value, right) = step.run(&logits, &y, opt, params)?;
        loss_sum += value * idx.len() as f64;
        seen += idx.len();
        correct += right;
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
    }
    Ok(Some((loss_sum / seen as f64, correct as f64 / seen as f64)))
}
