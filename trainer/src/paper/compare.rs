//! The comparative paper of several runs on the same test images: which
//! settings they share and which differ (model x image size x head x flip
//! ...), their accuracies side by side, and, for every pair of runs that
//! differ in one setting, what that setting changed.

use super::document::{Block, Document};
use super::facts::{pct, pct_of, points, standard_error, Facts};
use super::{prose, single};
use crate::error::{Error, Result};

/// A setting the runs may differ in: its name, its value in a run, and
/// whether a difference in it alone can be put down to it (the weights'
/// hash follows the backbone and, for some models, the image size).
struct Setting {
    name: &'static str,
    value: fn(&Facts) -> String,
    alone: bool,
}

const SETTINGS: &[Setting] = &[
    Setting {
        name: "backbone",
        value: |f| f.backbone(),
        alone: true,
    },
    Setting {
        name: "weights md5",
        value: |f| f.text("/weights/hash"),
        alone: false,
    },
    Setting {
        name: "image size",
        value: |f| f.image_size(),
        alone: true,
    },
    Setting {
        name: "head",
        value: |f| f.text("/model/head"),
        alone: true,
    },
    Setting {
        name: "standardize",
        value: |f| f.text("/model/standardize"),
        alone: true,
    },
    Setting {
        name: "flip",
        value: |f| f.text("/options/flip"),
        alone: true,
    },
    Setting {
        name: "test-time flip",
        value: |f| f.text("/options/tta"),
        alone: true,
    },
    Setting {
        name: "fine-tuning",
        value: |f| {
            f.run
                .text("/options/fine_tune")
                .unwrap_or_else(|| "none".into())
        },
        alone: true,
    },
    Setting {
        name: "epochs",
        value: |f| f.text("/options/epochs"),
        alone: true,
    },
    Setting {
        name: "learning rate",
        value: |f| f.text("/options/lr"),
        alone: true,
    },
    Setting {
        name: "schedule",
        value: |f| f.text("/options/schedule"),
        alone: true,
    },
    Setting {
        name: "batch size",
        value: |f| f.text("/options/batch_size"),
        alone: true,
    },
    Setting {
        name: "patience",
        value: |f| f.text("/options/patience"),
        alone: true,
    },
    Setting {
        name: "validation split",
        value: |f| f.text("/options/val_split"),
        alone: true,
    },
    Setting {
        name: "precision",
        value: |f| f.text("/options/precision"),
        alone: true,
    },
    Setting {
        name: "seed",
        value: |f| f.text("/options/seed"),
        alone: true,
    },
];

/// Refuses runs scored on different test images (classes or true labels).
fn same_test_set(runs: &[Facts]) -> Result<()> {
    let first = runs[0].run;
    for f in &runs[1..] {
        let same_truth = f.run.predictions.len() == first.predictions.len()
            && f.run
                .predictions
                .iter()
                .zip(&first.predictions)
                .all(|(a, b)| a.truth == b.truth);
        if f.run.classes != first.classes || !same_truth {
            return Err(Error::Usage(format!(
                "runs {} and {} were scored on different test images (their classes or true \
                 labels differ), so their accuracies cannot be compared; nothing was written. \
                 HINT: compare runs trained on the same dataset",
                first.record_path.display(),
                f.run.record_path.display()
            )));
        }
    }
    Ok(())
}

/// The comparative paper of `runs` (two or more).
pub fn paper(runs: &[Facts], byline: String) -> Result<Document> {
    same_test_set(runs)?;
    let best = (0..runs.len()).fold(0, |b, i| {
        if runs[i].test.accuracy > runs[b].test.accuracy {
            i
        } else {
            b
        }
    });
    let worst = (0..runs.len()).fold(0, |b, i| {
        if runs[i].test.accuracy < runs[b].test.accuracy {
            i
        } else {
            b
        }
    });
    let (varying, shared): (Vec<&Setting>, Vec<&Setting>) = SETTINGS
        .iter()
        .partition(|s| runs.iter().any(|f| (s.value)(f) != (s.value)(&runs[0])));
    let b = &runs[best];
    let mut doc = Document::new(
        format!(
            "Transfer learning from ImageNet to {}: {} runs compared",
            b.dataset(),
            runs.len()
        ),
        byline,
    );
    for f in runs {
        if let Some(note) = f.disagreement() {
            eprintln!("warning: {note}");
            doc.push(Block::Note(format!(
                "Check the files of run {}: {note}.",
                f.run.name
            )));
        }
    }
    prose::samples_figure(&mut doc, b, &format!(" of the best run, {}", b.run.name));

    abstract_paragraph(&mut doc, runs, best, worst, &varying);
    prose::introduction(&mut doc, b, runs.iter().any(|f| f.epochs.1 > 0));

    methods(&mut doc, runs, &varying, &shared);
    results(&mut doc, runs, best);
    discussion(&mut doc, runs, best, &varying);
    prose::references(&mut doc, runs);
    Ok(doc)
}

/// The abstract: what the runs differ in, the best and the lowest.
fn abstract_paragraph(
    doc: &mut Document,
    runs: &[Facts],
    best: usize,
    worst: usize,
    varying: &[&Setting],
) {
    let b = &runs[best];
    doc.section("Abstract");
    let names: Vec<&str> = varying.iter().map(|s| s.name).collect();
    let lowest = match runs[worst].test.correct == b.test.correct {
        true => "all runs reach the same".to_string(),
        false => format!(
            "the lowest, {}, reaches {}",
            runs[worst].run.name,
            runs[worst].test_words()
        ),
    };
    doc.para(format!(
        "We compare {} runs of transfer learning from ImageNet to {}, which differ in {}. All \
         were scored on the same {} test images. The best, {} ({}), reaches a test accuracy of \
         {}; {lowest}.",
        runs.len(),
        b.dataset(),
        if names.is_empty() {
            "no recorded setting".to_string()
        } else {
            names.join(", ")
        },
        b.test.n,
        b.run.name,
        b.backbone(),
        b.test_words(),
    ));
}

/// Materials and methods: the data, then the shared settings and the
/// settings in which the runs differ, as two tables.
fn methods(doc: &mut Document, runs: &[Facts], varying: &[&Setting], shared: &[&Setting]) {
    doc.section("2. Materials and methods");
    prose::data_paragraph(doc, &runs[0]);
    doc.para(format!(
        "Each run trains a head on the features of a backbone pretrained on ImageNet [1, 2] \
         with Adam [5] and early stopping on the held-out validation images; Table {} gives the \
         settings all runs share, Table {} those that differ.",
        doc.next_table(),
        doc.next_table() + 1
    ));
    doc.push_table(
        "setup",
        "Settings shared by all runs.",
        &["Setting", "Value"],
        shared
            .iter()
            .map(|s| vec![s.name.to_string(), (s.value)(&runs[0])])
            .collect(),
    );
    let mut header = vec!["Run"];
    header.extend(varying.iter().map(|s| s.name));
    header.push("Device");
    let rows = runs
        .iter()
        .map(|f| {
            let mut row = vec![f.run.name.clone()];
            row.extend(varying.iter().map(|s| (s.value)(f)));
            row.push(f.machine_words());
            row
        })
        .collect();
    doc.push_table(
        "runs",
        "The runs and the settings in which they differ.",
        &header,
        rows,
    );
}

fn results(doc: &mut Document, runs: &[Facts], best: usize) {
    doc.section("3. Results");
    let rows = runs
        .iter()
        .map(|f| {
            vec![
                f.run.name.clone(),
                format!("{} (epoch {})", pct_of(f.best.val_acc), f.best.epoch),
                f.test_words(),
                format!("{}, {}", f.epochs.0, f.epochs.1),
                format!("{:.1}", f.seconds()),
            ]
        })
        .collect();
    doc.push_table(
        "runs-accuracy",
        "Accuracy of each run's saved model.",
        &[
            "Run",
            "Best validation",
            "Test accuracy",
            "Epochs (head, fine-tuning)",
            "Seconds",
        ],
        rows,
    );
    let mut header = vec!["Class"];
    header.extend(runs.iter().map(|f| f.run.name.as_str()));
    let rows = runs[0]
        .run
        .classes
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let mut row = vec![c.clone()];
            row.extend(runs.iter().map(|f| {
                let (r, n) = f.class_counts(k);
                pct(r, n)
            }));
            row
        })
        .collect();
    doc.push_table(
        "per-class",
        "Test accuracy per class and run.",
        &header,
        rows,
    );
    for (i, f) in runs.iter().enumerate() {
        prose::curves_figure(
            doc,
            f,
            &format!("curves-{}", i + 1),
            &format!(" of run {}", f.run.name),
        );
    }
    let b = &runs[best];
    prose::confusion_figure(doc, b, &format!(" of the best run, {}", b.run.name));
    single::confusion_table(doc, b);
}

fn discussion(doc: &mut Document, runs: &[Facts], best: usize, varying: &[&Setting]) {
    doc.section("4. Discussion");
    let mut rows = Vec::new();
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            let differ: Vec<&&Setting> = varying
                .iter()
                .filter(|s| (s.value)(a) != (s.value)(b))
                .collect();
            let causal: Vec<&&Setting> = differ.iter().copied().filter(|s| s.alone).collect();
            if causal.len() != 1 {
                continue;
            }
            let s = causal[0];
            rows.push(vec![
                s.name.to_string(),
                format!("{} ({})", (s.value)(a), a.run.name),
                format!("{} ({})", (s.value)(b), b.run.name),
                points(b.test.accuracy - a.test.accuracy),
                points(b.best.val_acc - a.best.val_acc),
            ]);
        }
    }
    let n = runs[best].test.n;
    let se = standard_error(runs[best].test.accuracy, n);
    if rows.is_empty() {
        doc.para(
            "No two runs differ in exactly one setting, so no difference in accuracy can be put \
             down to one setting.",
        );
    } else {
        doc.para(format!(
            "Table {} lists every pair of runs that differ in one setting, and what changing it \
             did to the accuracies, in percentage points. Over {n} test images one standard \
             error of an accuracy near the best run's is ±{se:.2} points, so a change smaller \
             than about {:.2} points (two standard errors) is within noise.",
            doc.next_table(),
            2.0 * se
        ));
        doc.push_table(
            "changes",
            "One change at a time: pairs of runs that differ in one setting.",
            &[
                "Setting",
                "From (run)",
                "To (run)",
                "Test accuracy change",
                "Validation change",
            ],
            rows,
        );
    }
    let b = &runs[best];
    doc.para(format!(
        "The rest of this section looks at the best run, {}.",
        b.run.name
    ));
    single::confused_pairs(doc, b);
    prose::mistakes_figure(doc, b, &format!(" (run {})", b.run.name));
}
