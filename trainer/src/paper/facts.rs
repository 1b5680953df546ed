//! What the paper says about a run, computed from its files: the test
//! scores from the predictions (not from the record's claim, which is
//! checked against them), the epochs from the metrics file, and the
//! settings in words from the record and the model registry.

use super::saved_run::SavedRun;
use crate::train::evaluate::Evaluation;
use crate::train::fit::EpochMetrics;
use models::registry::{self, ModelEntry};

/// A run and what its files say.
pub struct Facts<'a> {
    /// The run.
    pub run: &'a SavedRun,
    /// Test accuracy, per class and the confusion matrix, from the predictions.
    pub test: Evaluation,
    /// The epoch of the best validation accuracy (the first, on a tie):
    /// the saved model's.
    pub best: &'a EpochMetrics,
    /// The best head-training epoch.
    pub head_best: Option<&'a EpochMetrics>,
    /// The best fine-tuning epoch.
    pub tune_best: Option<&'a EpochMetrics>,
    /// Epochs of head training and of fine-tuning.
    pub epochs: (usize, usize),
    /// The backbone's registration, if this thaw knows it.
    pub entry: Option<&'static ModelEntry>,
}

/// The first epoch of highest validation accuracy among `epochs`.
fn best_of<'a>(epochs: impl Iterator<Item = &'a EpochMetrics>) -> Option<&'a EpochMetrics> {
    epochs.fold(None, |b: Option<&EpochMetrics>, m| match b {
        Some(b) if b.val_acc >= m.val_acc => Some(b),
        _ => Some(m),
    })
}

/// `c` of `n` as a percentage with two decimals ("n/a" when `n` is 0).
pub fn pct(c: usize, n: usize) -> String {
    match n {
        0 => "n/a".into(),
        _ => format!("{:.2}%", 100.0 * c as f64 / n as f64),
    }
}

/// A fraction as a percentage with two decimals.
pub fn pct_of(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// A difference of two fractions in percentage points, signed.
pub fn points(x: f64) -> String {
    format!("{:+.2}", 100.0 * x)
}

/// One binomial standard error of an accuracy `p` over `n` images, in points.
pub fn standard_error(p: f64, n: usize) -> f64 {
    100.0 * (p * (1.0 - p) / n.max(1) as f64).sqrt()
}

impl<'a> Facts<'a> {
    /// The facts of `run`.
    pub fn new(run: &'a SavedRun) -> Facts<'a> {
        let (predicted, labels): (Vec<usize>, Vec<u8>) = run
            .predictions
            .iter()
            .map(|p| (p.predicted, p.truth as u8))
            .unzip();
        let phase = |name: &'a str| run.epochs.iter().filter(move |m| m.phase == name);
        Facts {
            run,
            test: Evaluation::from_predictions(&predicted, &labels, run.classes.len()),
            best: best_of(run.epochs.iter()).expect("the metrics file has an epoch"),
            head_best: best_of(phase("head")),
            tune_best: best_of(phase("fine-tune")),
            epochs: (phase("head").count(), phase("fine-tune").count()),
            entry: run
                .text("/model/backbone")
                .and_then(|b| registry::find(&b).ok()),
        }
    }

    /// Test accuracy with its counts: "47.50% (19 of 40)".
    pub fn test_words(&self) -> String {
        format!(
            "{} ({} of {})",
            pct(self.test.correct, self.test.n),
            self.test.correct,
            self.test.n
        )
    }

    /// The backbone as Keras names it, with its alpha: "MobileNet (alpha 0.25)".
    pub fn backbone(&self) -> String {
        let name = match self.entry {
            Some(e) => e.keras_name.to_string(),
            None => self.text("/model/backbone"),
        };
        match self.run.number("/model/alpha") {
            Some(a) => format!("{name} (alpha {})", registry::python_float(a)),
            None => name,
        }
    }

    /// Where the backbone's weights came from, in words: Keras's published
    /// ImageNet weights (no `--weights`), or the file given.
    pub fn weights_words(&self) -> String {
        match self.run.text("/options/weights") {
            None => format!(
                "Keras's published ImageNet weights ({})",
                self.text("/weights/source")
            ),
            Some(file) => format!("the weights in {file}"),
        }
    }

    /// The record's text at `pointer`, or "not recorded".
    pub fn text(&self, pointer: &str) -> String {
        self.run
            .text(pointer)
            .unwrap_or_else(|| "not recorded".into())
    }

    /// Whether the dataset is CIFAR-10: its ten classes, in order.
    pub fn is_cifar10(&self) -> bool {
        self.run.classes == crate::data::CIFAR10_CLASSES
    }

    /// The dataset's name: CIFAR-10, or its folder's name.
    pub fn dataset(&self) -> String {
        if self.is_cifar10() {
            return "CIFAR-10".into();
        }
        let path = self
            .run
            .text("/dataset/path")
            .or_else(|| self.run.text("/options/data"))
            .unwrap_or_default();
        match std::path::Path::new(&path).file_name() {
            Some(n) => format!("the {} dataset", n.to_string_lossy()),
            None => "the dataset".into(),
        }
    }

    /// Images of the training, validation and test splits.
    pub fn split_sizes(&self) -> (usize, usize, usize) {
        let n = |p: &str| self.run.number(p).unwrap_or(0.0) as usize;
        (n("/dataset/train"), n("/dataset/validation"), self.test.n)
    }

    /// The head in layers.
    pub fn head_words(&self) -> String {
        let k = self.run.classes.len();
        let norm = match self.run.flag("/model/standardize") {
            true => "Normalization (adapted to the training features), then ",
            false => "",
        };
        match self.run.text("/model/head").as_deref() {
            Some("linear") => format!("{norm}Dense({k}, softmax): logistic regression"),
            Some("mlp") => format!("{norm}Dense(256, ReLU), Dropout(0.5), Dense({k}, softmax)"),
            other => other.unwrap_or("not recorded").to_string(),
        }
    }

    /// The preprocessing mode in words.
    pub fn preprocessing_words(&self) -> String {
        let mode = self
            .run
            .text("/model/preprocessing")
            .or_else(|| self.entry.map(|e| e.preprocessing.name().to_string()));
        match mode.as_deref() {
            Some("caffe") => "Keras's 'caffe' mode: RGB to BGR, minus ImageNet's mean of each \
                              channel"
                .into(),
            Some("tf") => "Keras's 'tf' mode: pixels scaled to [-1, 1]".into(),
            Some("lite") => "EfficientNet-Lite's: (pixel - 127) / 128".into(),
            _ => "not recorded".into(),
        }
    }

    /// The learning-rate schedule in words.
    pub fn schedule_words(&self) -> String {
        match self.text("/options/schedule").as_str() {
            "cosine" => "cosine decay to a hundredth over the planned epochs".into(),
            "step" => "divided by 10 every third epoch".into(),
            "constant" => "constant".into(),
            other => other.into(),
        }
    }

    /// The input size in pixels.
    pub fn image_size(&self) -> String {
        self.text("/model/image_size")
    }

    /// How head training ended, from the epochs run and planned.
    pub fn stop_words(&self) -> String {
        let planned = self.run.number("/options/epochs").unwrap_or(0.0) as usize;
        let ran = self.epochs.0;
        match ran < planned {
            true => format!(
                "stopped early after {ran} of at most {planned} epochs (no better validation \
                 accuracy for {} epochs)",
                self.text("/options/patience")
            ),
            false => format!("ran all {ran} epochs"),
        }
    }

    /// Total wall seconds of the run's phases.
    pub fn seconds(&self) -> f64 {
        self.run
            .record
            .pointer("/phases")
            .and_then(|p| p.as_array())
            .map(|ps| ps.iter().filter_map(|p| p["seconds"].as_f64()).sum())
            .unwrap_or(0.0)
    }

    /// Where it ran: "cpu (Intel ..., 2 threads)" or "cuda:0 (NVIDIA H100)".
    pub fn machine_words(&self) -> String {
        let device = self.text("/machine/device");
        match self.run.text("/machine/gpu") {
            Some(gpu) => format!("{device} ({gpu})"),
            None => format!(
                "{device} ({}, {} threads)",
                self.text("/machine/cpu"),
                self.text("/machine/threads")
            ),
        }
    }

    /// When the run record's test figures differ from the predictions',
    /// what the reader must know (the paper follows the predictions).
    pub fn disagreement(&self) -> Option<String> {
        let claimed = (
            self.run.number("/accuracy/test/correct")? as usize,
            self.run.number("/accuracy/test/images")? as usize,
        );
        (claimed != (self.test.correct, self.test.n)).then(|| {
            format!(
                "the predictions file {} gives {} of {} test images right, but the run record \
                 {} says {} of {}: one of them was changed after the run. This paper follows \
                 the predictions file",
                self.run.predictions_path.display(),
                self.test.correct,
                self.test.n,
                self.run.record_path.display(),
                claimed.0,
                claimed.1
            )
        })
    }

    /// The `n` most confused (true, predicted) pairs: off-diagonal counts,
    /// highest first (ties in class order), zeros left out.
    pub fn confused_pairs(&self, n: usize) -> Vec<(usize, usize, usize)> {
        let mut pairs: Vec<(usize, usize, usize)> = self
            .test
            .confusion
            .iter()
            .enumerate()
            .flat_map(|(t, row)| row.iter().enumerate().map(move |(p, &c)| (t, p, c)))
            .filter(|&(t, p, c)| t != p && c > 0)
            .collect();
        pairs.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
        pairs.truncate(n);
        pairs
    }

    /// Right and total test images of class `k`.
    pub fn class_counts(&self, k: usize) -> (usize, usize) {
        let row = &self.test.confusion[k];
        (row[k], row.iter().sum())
    }
}
