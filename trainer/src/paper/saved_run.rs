//! A saved run as the paper reads it: `NAME.run.json`, and beside it
//! `NAME.predictions.csv` and `NAME.metrics.csv`, each checked as it is
//! read (an error names the file, the line and what to do).
//!
//! `trainer report RUN` takes the record (`NAME.run.json`), the model file
//! (`NAME.safetensors`, or another extension when `NAME.run.json` is
//! beside it) or the prefix `NAME`; the other two files are
//! always the record's siblings, wherever the run was trained from.

use crate::error::{Error, Result};
use crate::train::fit::EpochMetrics;
use crate::train::report::METRICS_HEADER;
use crate::train::run_record::SCHEMA;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One row of `NAME.predictions.csv`.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The image's row in the test split.
    pub index: usize,
    /// Its file, relative to the dataset folder (empty for CIFAR-10 batches).
    pub file: String,
    /// The true class (an index into the classes).
    pub truth: usize,
    /// The predicted class.
    pub predicted: usize,
    /// The probability of each class.
    pub probs: Vec<f64>,
}

impl Prediction {
    /// Whether the prediction is right.
    pub fn right(&self) -> bool {
        self.truth == self.predicted
    }
    /// The probability of the predicted class.
    pub fn confidence(&self) -> f64 {
        self.probs[self.predicted]
    }
}

/// A run's three files, read.
pub struct SavedRun {
    /// `NAME`: the record's file name without `.run.json`.
    pub name: String,
    /// The record's path.
    pub record_path: PathBuf,
    /// The record (`NAME.run.json`).
    pub record: Value,
    /// The predictions file's path.
    pub predictions_path: PathBuf,
    /// Class names, in label order (from the predictions' columns).
    pub classes: Vec<String>,
    /// One row per test image, in index order.
    pub predictions: Vec<Prediction>,
    /// The metrics file's path.
    pub metrics_path: PathBuf,
    /// Every epoch, in order (from the metrics file).
    pub epochs: Vec<EpochMetrics>,
}

/// The record `run` names (see the module docs).
pub fn record_path(run: &Path) -> PathBuf {
    let name = run.file_name().unwrap_or_default().to_string_lossy();
    if name.ends_with(".run.json") {
        return run.to_path_buf();
    }
    let beside = crate::train::report::sibling(run, "run.json");
    let mut prefixed = run.as_os_str().to_owned();
    prefixed.push(".run.json");
    let prefixed = PathBuf::from(prefixed);
    // A model file of another extension (`--out model.bin`) names its record too.
    let model_file = run.extension().is_some_and(|e| e == "safetensors")
        || (!prefixed.is_file() && beside.is_file());
    match model_file {
        true => beside,
        false => prefixed,
    }
}

impl SavedRun {
    /// Reads the run `run` names.
    pub fn read(run: &Path) -> Result<SavedRun> {
        let record_path = record_path(run);
        if !record_path.is_file() {
            return Err(Error::Usage(format!(
                "{}: no run record at {}. HINT: give the NAME.run.json that `trainer train` \
                 wrote, the model file NAME.safetensors beside it, or the prefix NAME",
                run.display(),
                record_path.display()
            )));
        }
        let file_name = record_path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let name = file_name.trim_end_matches(".run.json").to_string();
        let beside = |suffix: &str| record_path.with_file_name(format!("{name}.{suffix}"));
        let record = read_record(&record_path)?;
        let predictions_path = beside("predictions.csv");
        let (classes, predictions) = read_predictions(&predictions_path)?;
        let metrics_path = beside("metrics.csv");
        let epochs = read_metrics(&metrics_path)?;
        Ok(SavedRun {
            name,
            record_path,
            record,
            predictions_path,
            classes,
            predictions,
            metrics_path,
            epochs,
        })
    }

    /// The record's text at `pointer` (a JSON pointer, `/model/backbone`):
    /// strings as they are, other values as JSON; None when absent or null.
    pub fn text(&self, pointer: &str) -> Option<String> {
        match self.record.pointer(pointer)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            v => Some(v.to_string()),
        }
    }

    /// The record's number at `pointer`.
    pub fn number(&self, pointer: &str) -> Option<f64> {
        self.record.pointer(pointer)?.as_f64()
    }

    /// The record's flag at `pointer` (false when absent).
    pub fn flag(&self, pointer: &str) -> bool {
        self.record
            .pointer(pointer)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// Reads and checks the record: JSON, a schema this thaw reads, a finished run.
fn read_record(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "reading", e))?;
    let record: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::data(
            path,
            format!("is not valid JSON ({e}); it should be the run record `trainer train` writes"),
        )
    })?;
    match record.get("schema").and_then(Value::as_u64) {
        Some(s) if (1..=SCHEMA).contains(&s) => {}
        Some(s) => {
            return Err(Error::data(
                path,
                format!(
                    "is a run record of schema {s}, newer than this thaw reads (1 to {SCHEMA}). \
                     HINT: build the report with the thaw that trained the run"
                ),
            ))
        }
        None => {
            return Err(Error::data(
                path,
                "has no \"schema\" number, so it is not a run record of `trainer train`",
            ))
        }
    }
    if record.get("status").and_then(Value::as_str) != Some("finished") {
        return Err(Error::data(
            path,
            "records a run that did not finish (interrupted before the test split was scored), \
             so it has no test predictions to report. HINT: train again to the end",
        ));
    }
    Ok(record)
}

/// The fields of one CSV line (RFC 4180 quoting, as the predictions
/// writer produces; no line breaks inside fields).
fn fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::data(
            path,
            format!(
                "is missing: the report needs the run's {what}, written by `trainer train` \
                 beside its run record. HINT: keep the run's files together"
            ),
        ),
        _ => Error::io(path, "reading", e),
    })
}

/// Reads the predictions file: the class names and every row.
fn read_predictions(path: &Path) -> Result<(Vec<String>, Vec<Prediction>)> {
    let text = read_text(path, "test predictions")?;
    let bad = |line: usize, what: String| {
        Error::data(
            path,
            format!(
                "line {line}: {what}. HINT: the file is written by `trainer train`; restore \
                 it, or train again"
            ),
        )
    };
    let mut lines = text.lines();
    let header = fields(lines.next().unwrap_or(""));
    let classes: Vec<String> = header
        .iter()
        .skip(4)
        .map(|h| h.strip_prefix("p_").map(String::from))
        .collect::<Option<_>>()
        .unwrap_or_default();
    if header.len() < 6
        || header[..4] != ["index", "file", "true_class", "predicted_class"]
        || classes.len() != header.len() - 4
    {
        return Err(bad(
            1,
            "the header is not index,file,true_class,predicted_class,p_<class>... \
             (two classes at least)"
                .into(),
        ));
    }
    let class = |name: &str, line: usize| {
        classes
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| bad(line, format!("class '{name}' is not one of the columns")))
    };
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let f = fields(line);
        if f.len() != header.len() {
            return Err(bad(
                n,
                format!("{} fields, the header has {}", f.len(), header.len()),
            ));
        }
        if f[0] != i.to_string() {
            return Err(bad(
                n,
                format!("index '{}', expected {i} (rows in index order)", f[0]),
            ));
        }
        let probs = f[4..]
            .iter()
            .map(|v| v.parse::<f64>().ok().filter(|p| p.is_finite()))
            .collect::<Option<Vec<f64>>>()
            .ok_or_else(|| bad(n, "a probability is not a finite number".into()))?;
        rows.push(Prediction {
            index: i,
            file: f[1].clone(),
            truth: class(&f[2], n)?,
            predicted: class(&f[3], n)?,
            probs,
        });
    }
    if rows.is_empty() {
        return Err(bad(2, "no test image".into()));
    }
    Ok((classes, rows))
}

/// Reads the metrics file: every epoch.
fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = read_text(path, "metrics (one row per epoch)")?;
    let bad = |line: usize, what: &str| {
        Error::data(
            path,
            format!(
                "line {line}: {what}. HINT: the file is written by `trainer train`; restore \
                 it, or train again"
            ),
        )
    };
    let mut lines = text.lines();
    if lines.next() != Some(METRICS_HEADER) {
        return Err(bad(1, &format!("the header is not {METRICS_HEADER}")));
    }
    let mut epochs = Vec::new();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let num = |k: usize| f.get(k).and_then(|v| v.parse::<f64>().ok());
        let phase = match f.get(1) {
            Some(&"head") => "head",
            Some(&"fine-tune") => "fine-tune",
            _ => return Err(bad(i + 2, "the phase is neither head nor fine-tune")),
        };
        let (
            Some(epoch),
            [Some(loss), Some(train_acc), Some(val_loss), Some(val_acc), Some(lr), Some(seconds)],
        ) = (
            f[0].parse::<usize>().ok(),
            [num(2), num(3), num(4), num(5), num(6), num(7)],
        )
        else {
            return Err(bad(i + 2, "a field is missing or not a number"));
        };
        epochs.push(EpochMetrics {
            epoch,
            phase,
            loss,
            train_acc,
            val_loss,
            val_acc,
            lr,
            seconds,
        });
    }
    if epochs.is_empty() {
        return Err(bad(2, "no epoch"));
    }
    Ok(epochs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_named_by_its_record_its_model_or_its_prefix() {
        let want = PathBuf::from("runs/a.b.run.json");
        assert_eq!(record_path(Path::new("runs/a.b.run.json")), want);
        assert_eq!(record_path(Path::new("runs/a.b.safetensors")), want);
        assert_eq!(record_path(Path::new("runs/a.b")), want);
    }

    #[test]
    fn quoted_fields_keep_their_commas_and_quotes() {
        assert_eq!(
            fields(r#"0,"a,b","say ""c""",x"#),
            ["0", "a,b", "say \"c\"", "x"]
        );
    }
}
