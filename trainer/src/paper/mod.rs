//! The experiment write-up: a journal-style paper of a training run, or a
//! comparative one of several, written by thaw from the run's files alone.
//!
//! ```text
//! NAME.run.json ────────┐  (settings, machine, times: saved_run.rs reads and checks all three)
//! NAME.predictions.csv ─┼─▶ facts.rs: test scores, per class, confusion, confused pairs
//! NAME.metrics.csv ─────┘            best epoch, early stopping, settings in words
//! the dataset's test images ─▶ samples.rs: the picture at the top, the confident mistakes
//!   ─▶ single.rs (one run) | compare.rs (several) ─▶ document.rs ─▶ NAME.report.html
//!                                                              └─▶ NAME.report.md + PNGs
//! ```
//!
//! `trainer train` writes `NAME.report.html` and `NAME.report.md` beside the
//! model after the run record, unless `--no-report`; `trainer report RUN...`
//! writes them again from saved runs (a run is its `NAME.run.json`, its
//! model file or the prefix `NAME`), and given several runs writes one
//! comparative paper to `--out`.
//!
//! The paper's parts: title; a grid of test images with predicted and true
//! classes at the top; abstract; introduction; materials and methods;
//! results (accuracy and per-class tables, learning curves, confusion
//! matrix as a figure and a table, time per phase); discussion (confused
//! pairs, the confident mistakes, what fine-tuning or one changed setting
//! did); references. Every number in it is read or computed from those
//! files: none is typed in. The test scores come from the predictions
//! file; when the run record claims other ones, the paper says so.
//!
//! Files: the HTML is self-contained (figures as base64 PNG `data:` URIs);
//! the Markdown links its figures, written beside it as
//! `NAME.report.<figure>.png`. Each file is written atomically, and an
//! output that would replace one of the run's files or the dataset is
//! refused before anything is written.

mod compare;
mod document;
mod facts;
mod prose;
mod samples;
mod saved_run;
mod single;

pub use saved_run::{record_path, SavedRun};

use crate::cli::ReportArgs;
use crate::error::{Error, Result};
use crate::outputs::{check_writable_file, refuse_inputs_as_outputs, Input, Output};
use crate::train::report::sibling;
use crate::train::run_record::{GIT_COMMIT, VERSION};
use facts::Facts;
use std::path::{Path, PathBuf};

/// The figures of a one-run paper (their file names' middle part).
const FIGURES: [&str; 4] = ["samples", "curves", "confusion", "mistakes"];

/// The Markdown beside the HTML `html`.
fn markdown_path(html: &Path) -> PathBuf {
    html.with_extension("md")
}

/// The PNG of figure `id` beside the HTML `html`: `NAME.report.<id>.png`.
fn figure_path(html: &Path, id: &str) -> PathBuf {
    html.with_extension(format!("{id}.png"))
}

/// The files a one-run paper beside the model file `out` may write (for
/// `train`'s checks and its removal of an earlier run's files).
pub fn files_beside_model(out: &Path) -> Vec<PathBuf> {
    let html = sibling(out, "report.html");
    let mut files = vec![markdown_path(&html)];
    files.extend(FIGURES.iter().map(|id| figure_path(&html, id)));
    files.insert(0, html);
    files
}

/// After `train`: the run's paper beside the model file `out`. A failure
/// is a warning, not an error: the model and the run's files are complete.
pub fn after_training(out: &Path) {
    let record = crate::train::run_record::path(out);
    let html = sibling(out, "report.html");
    match write_report(std::slice::from_ref(&record), &html) {
        Ok(()) => eprintln!(
            "report: {} (and {}, its figures beside it)",
            html.display(),
            markdown_path(&html).display()
        ),
        Err(e) => eprintln!(
            "warning: the report was not written: {e}. The model and the run's files are \
             complete; HINT: `trainer report {}` writes it again",
            record.display()
        ),
    }
}

/// `trainer report RUN... [--out FILE.html]`.
pub fn run_report(args: &ReportArgs) -> Result<()> {
    let html = match (&args.out, args.runs.as_slice()) {
        (Some(out), _) => out.clone(),
        (None, [one]) => {
            let record = record_path(one);
            let name = record.file_name().unwrap_or_default().to_string_lossy();
            record.with_file_name(format!(
                "{}.report.html",
                name.trim_end_matches(".run.json")
            ))
        }
        (None, _) => {
            return Err(Error::Usage(format!(
                "{} runs make one comparative paper, which needs --out FILE.html; nothing was \
                 written. HINT: e.g. --out comparison.report.html",
                args.runs.len()
            )))
        }
    };
    if html.extension().is_none_or(|e| e != "html") {
        return Err(Error::Usage(format!(
            "--out {}: the paper's file name must end in .html (the Markdown goes beside it \
             with .md); nothing was written. HINT: e.g. --out {}.report.html",
            html.display(),
            html.with_extension("").display()
        )));
    }
    check_writable_file("--out", &html)?;
    write_report(&args.runs, &html)?;
    eprintln!(
        "report: {} and {} (figures beside it)",
        html.display(),
        markdown_path(&html).display()
    );
    Ok(())
}

/// Reads `runs`, writes their paper to `html` (and the Markdown and
/// figures beside it), refusing any output that is one of its inputs.
fn write_report(runs: &[PathBuf], html: &Path) -> Result<()> {
    let saved = runs
        .iter()
        .map(|r| SavedRun::read(r))
        .collect::<Result<Vec<_>>>()?;
    let facts: Vec<Facts> = saved.iter().map(Facts::new).collect();
    let files: Vec<String> = saved
        .iter()
        .map(|r| format!("{0}.run.json, {0}.predictions.csv, {0}.metrics.csv", r.name))
        .collect();
    let byline = format!(
        "Written by thaw {VERSION} (commit {}) from the files {}. Every number in this paper \
         is read or computed from them.",
        &GIT_COMMIT[..GIT_COMMIT.len().min(12)],
        files.join("; ")
    );
    let doc = match facts.as_slice() {
        [one] => single::paper(one, byline),
        many => compare::paper(many, byline)?,
    };
    let md = markdown_path(html);
    let pngs: Vec<(PathBuf, &[u8])> = doc
        .figures()
        .map(|f| (figure_path(html, &f.id), f.png.as_slice()))
        .collect();
    refuse_overwriting(&saved, html, &md, &pngs)?;
    for (path, png) in &pngs {
        crate::npy::write_atomically(path, png)?;
    }
    let text = doc.markdown(|f| {
        figure_path(html, &f.id)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    crate::npy::write_atomically(&md, text.as_bytes())?;
    crate::npy::write_atomically(html, doc.html().as_bytes())
}

/// Refuses outputs that name a run's file (its record, predictions,
/// metrics or model) or lie in its dataset.
fn refuse_overwriting(
    saved: &[SavedRun],
    html: &Path,
    md: &Path,
    pngs: &[(PathBuf, &[u8])],
) -> Result<()> {
    let mut paths: Vec<(&str, PathBuf)> = Vec::new();
    for r in saved {
        paths.push(("the run record", r.record_path.clone()));
        paths.push(("the run's predictions", r.predictions_path.clone()));
        paths.push(("the run's metrics", r.metrics_path.clone()));
        let model = format!("{}.safetensors", r.name);
        paths.push(("the run's model file", r.record_path.with_file_name(model)));
        if let Some(data) = r.text("/dataset/path") {
            paths.push(("the run's dataset", PathBuf::from(data)));
        }
    }
    let inputs: Vec<Input> = paths
        .iter()
        .map(|(what, path)| Input { what, path })
        .collect();
    let mut outputs = vec![
        Output {
            what: "--out",
            path: html,
        },
        Output {
            what: "the Markdown paper",
            path: md,
        },
    ];
    outputs.extend(pngs.iter().map(|(p, _)| Output {
        what: "a figure of the paper",
        path: p,
    }));
    refuse_inputs_as_outputs(&inputs, &outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_of_a_paper_sit_beside_its_html() {
        let files = files_beside_model(Path::new("runs/c10.safetensors"));
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "runs/c10.report.html",
                "runs/c10.report.md",
                "runs/c10.report.samples.png",
                "runs/c10.report.curves.png",
                "runs/c10.report.confusion.png",
                "runs/c10.report.mistakes.png",
            ]
        );
    }
}
