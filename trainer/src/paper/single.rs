//! The paper of one run, in the order a journal article has its parts:
//! title, the picture at the top, abstract, introduction, materials and
//! methods, results, discussion, references.

use super::document::{Block, Document};
use super::facts::{pct, pct_of, standard_error, Facts};
use super::prose;

/// The paper of the run `f`; `byline` says who wrote it from which files.
pub fn paper(f: &Facts, byline: String) -> Document {
    let fine_tune = f.run.text("/options/fine_tune");
    let mut doc = Document::new(
        format!(
            "Transfer learning from ImageNet to {} with {}{}",
            f.dataset(),
            match &fine_tune {
                Some(_) => "a fine-tuned ",
                None => "a frozen ",
            },
            f.backbone()
        ),
        byline,
    );
    if let Some(note) = f.disagreement() {
        eprintln!("warning: {note}");
        doc.push(Block::Note(format!("Check the files: {note}.")));
    }
    prose::samples_figure(&mut doc, f, "");
    abstract_(&mut doc, f);
    prose::introduction(&mut doc, f, fine_tune.is_some());
    methods(&mut doc, f);
    results(&mut doc, f);
    discussion(&mut doc, f);
    prose::references(&mut doc, std::slice::from_ref(f));
    doc
}

fn abstract_(doc: &mut Document, f: &Facts) {
    let (train, val, test) = f.split_sizes();
    let tuned = match f.run.text("/options/fine_tune") {
        Some(block) => {
            format!(", then fine-tuned together with the backbone's layers from {block} on")
        }
        None => ", whose layers stay frozen".into(),
    };
    doc.section("Abstract");
    doc.para(format!(
        "We classify the {} classes of {} ({} training and {test} test images) with a head \
         trained on the features of {} ({}){tuned}. On the {test} test \
         images, which played no part in training or model selection, the model reaches a \
         test accuracy of {}. The best validation accuracy, on {val} training images held out, \
         was {} (epoch {}). The run took {:.0} s on {}.",
        f.run.classes.len(),
        f.dataset(),
        train + val,
        f.backbone(),
        f.weights_words(),
        f.test_words(),
        pct_of(f.best.val_acc),
        f.best.epoch,
        f.seconds(),
        f.machine_words()
    ));
}

fn methods(doc: &mut Document, f: &Facts) {
    doc.section("2. Materials and methods");
    prose::data_paragraph(doc, f);
    doc.para(format!(
        "Model. The backbone is {} [1, 2] with {} (md5 {}), without its classifier, its last \
         feature map averaged over space. Each image is resized to {s}x{s} \
         pixels (bilinear) and preprocessed as the weights expect ({}). The head is {}.",
        f.backbone(),
        f.weights_words(),
        f.text("/weights/hash"),
        f.preprocessing_words(),
        f.head_words(),
        s = f.image_size(),
    ));
    training_paragraph(doc, f);
    settings_table(doc, f);
    let command = f
        .run
        .record
        .pointer("/command_line")
        .and_then(|c| c.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "not recorded".into());
    doc.para(format!(
        "Hardware and software: {}, {}. To repeat the run: {command}",
        f.machine_words(),
        f.text("/machine/os")
    ));
}

/// The training paragraph: optimizer, batches, epochs and early stopping,
/// then fine-tuning and augmentation as the run used them.
fn training_paragraph(doc: &mut Document, f: &Facts) {
    let tune = match f.run.text("/options/fine_tune") {
        Some(block) => format!(
            " Then block {block} is unfrozen and trained with the head for at most {} epochs \
             at learning rate {}, the same schedule and early stopping; the model of the best \
             validation accuracy over both phases is kept.",
            f.text("/options/fine_tune_epochs"),
            f.text("/options/fine_tune_lr")
        ),
        None => " There is no fine-tuning: the backbone stays as ImageNet trained it.".into(),
    };
    let flip = match (f.run.flag("/options/flip"), f.run.flag("/options/tta")) {
        (true, true) => {
            " The head also trains on each image's horizontal mirror, and each test \
                         prediction averages the image's and its mirror's probabilities."
        }
        (true, false) => " The head also trains on each image's horizontal mirror.",
        (false, true) => {
            " Each test prediction averages the probabilities of the image and \
                          its horizontal mirror."
        }
        (false, false) => " No augmentation is used.",
    };
    doc.para(format!(
        "Training. The head is trained with Adam [5] (learning rate {}, {}) on mini-batches of \
         {} to minimize the cross-entropy, for at most {} epochs; early stopping ends training \
         after {} epochs without a better validation accuracy and restores the best epoch's \
         weights. In this run head training {}.{tune}{flip} Seed {} fixes the weight \
         initialization, the shuffling, dropout and the validation draw.",
        f.text("/options/lr"),
        f.schedule_words(),
        f.text("/options/batch_size"),
        f.text("/options/epochs"),
        f.text("/options/patience"),
        f.stop_words(),
        f.text("/options/seed"),
    ));
}

/// The table of the run's settings, as its record gives them.
fn settings_table(doc: &mut Document, f: &Facts) {
    let rows = [
        ("Backbone", f.backbone()),
        ("Weights", f.text("/weights/source")),
        ("Weights md5", f.text("/weights/hash")),
        ("Input size", format!("{0}x{0}", f.image_size())),
        ("Preprocessing", f.preprocessing_words()),
        ("Head", f.head_words()),
        (
            "Optimizer",
            format!("Adam, learning rate {}", f.text("/options/lr")),
        ),
        ("Schedule", f.schedule_words()),
        ("Batch size", f.text("/options/batch_size")),
        (
            "Epochs (head, fine-tuning)",
            format!("{}, {}", f.epochs.0, f.epochs.1),
        ),
        ("Early stopping patience", f.text("/options/patience")),
        (
            "Fine-tuning",
            f.run
                .text("/options/fine_tune")
                .unwrap_or_else(|| "none".into()),
        ),
        ("Flipped training images", f.text("/options/flip")),
        ("Test-time flip averaging", f.text("/options/tta")),
        ("Feature precision", f.text("/options/precision")),
        ("Seed", f.text("/options/seed")),
        ("Device", f.machine_words()),
        ("Operating system", f.text("/machine/os")),
        (
            "Software",
            format!(
                "thaw {} (commit {})",
                f.text("/thaw/version"),
                f.text("/thaw/git_commit")
            ),
        ),
    ];
    doc.push_table(
        "setup",
        "The run's settings, as its record gives them.",
        &["Setting", "Value"],
        rows.into_iter()
            .map(|(k, v)| vec![k.to_string(), v])
            .collect(),
    );
}

fn results(doc: &mut Document, f: &Facts) {
    doc.section("3. Results");
    let (_, val, test) = f.split_sizes();
    doc.para(format!(
        "Table {} gives the accuracies: the model reaches a test accuracy of {}, against a \
         best validation accuracy of {} at epoch {}. With {test} test images, one binomial standard error of the test \
         accuracy is ±{:.2} points; with {val} validation images, ±{:.2}.",
        doc.next_table(),
        f.test_words(),
        pct_of(f.best.val_acc),
        f.best.epoch,
        standard_error(f.test.accuracy, test),
        standard_error(f.best.val_acc, val),
    ));
    let mut rows = vec![
        vec![
            "Best validation accuracy".into(),
            format!("{} (epoch {})", pct_of(f.best.val_acc), f.best.epoch),
        ],
        vec![
            "Training accuracy at that epoch".into(),
            pct_of(f.best.train_acc),
        ],
        vec!["Test accuracy".into(), f.test_words()],
    ];
    if let (Some(h), Some(t)) = (f.head_best, f.tune_best) {
        rows.insert(
            1,
            vec![
                "Best validation accuracy, head alone".into(),
                format!("{} (epoch {})", pct_of(h.val_acc), h.epoch),
            ],
        );
        rows.insert(
            2,
            vec![
                "Best validation accuracy, fine-tuning".into(),
                format!("{} (epoch {})", pct_of(t.val_acc), t.epoch),
            ],
        );
    }
    doc.push_table(
        "accuracy",
        "Accuracy of the saved model.",
        &["Measure", "Value"],
        rows,
    );
    let per_class = (0..f.run.classes.len())
        .map(|k| {
            let (right, n) = f.class_counts(k);
            vec![
                f.run.classes[k].clone(),
                right.to_string(),
                n.to_string(),
                pct(right, n),
            ]
        })
        .collect();
    doc.push_table(
        "per-class",
        "Test accuracy per class.",
        &["Class", "Right", "Images", "Accuracy"],
        per_class,
    );
    prose::curves_figure(doc, f, "curves", "");
    prose::confusion_figure(doc, f, "");
    confusion_table(doc, f);
    let mut phases: Vec<Vec<String>> = f
        .run
        .record
        .pointer("/phases")
        .and_then(|p| p.as_array())
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let secs = p["seconds"].as_f64().unwrap_or(f64::NAN);
                    vec![
                        p["name"].as_str().unwrap_or("?").to_string(),
                        format!("{secs:.1}"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    phases.push(vec!["total".into(), format!("{:.1}", f.seconds())]);
    doc.push_table(
        "phases",
        &format!("Wall time per phase, in seconds, on {}.", f.machine_words()),
        &["Phase", "Seconds"],
        phases,
    );
}

/// The confusion matrix as a table (the figure's counts, for reading and checking).
pub fn confusion_table(doc: &mut Document, f: &Facts) {
    let mut header = vec!["True \\ predicted"];
    header.extend(f.run.classes.iter().map(String::as_str));
    let rows = f
        .test
        .confusion
        .iter()
        .zip(&f.run.classes)
        .map(|(row, c)| {
            std::iter::once(c.clone())
                .chain(row.iter().map(|v| v.to_string()))
                .collect()
        })
        .collect();
    doc.push_table(
        "confusion",
        "Confusion matrix of the test predictions (rows: true class; columns: predicted class).",
        &header,
        rows,
    );
}

/// The most confused pairs as a table, and a sentence naming the first.
pub fn confused_pairs(doc: &mut Document, f: &Facts) {
    let pairs = f.confused_pairs(5);
    let Some(&(t, p, c)) = pairs.first() else {
        return;
    };
    let classes = &f.run.classes;
    doc.para(format!(
        "The pair confused most is {} taken for {}: {c} of the {} {} test images.",
        classes[t],
        classes[p],
        f.class_counts(t).1,
        classes[t]
    ));
    let rows = pairs
        .iter()
        .map(|&(t, p, c)| {
            let n = f.class_counts(t).1;
            vec![
                classes[t].clone(),
                classes[p].clone(),
                c.to_string(),
                pct(c, n),
            ]
        })
        .collect();
    doc.push_table(
        "confused-pairs",
        "The most confused pairs of classes on the test images.",
        &[
            "True class",
            "Predicted as",
            "Images",
            "Share of the true class",
        ],
        rows,
    );
}

fn discussion(doc: &mut Document, f: &Facts) {
    doc.section("4. Discussion");
    let k = f.run.classes.len();
    let acc = |c: usize| {
        let (r, n) = f.class_counts(c);
        if n == 0 {
            -1.0
        } else {
            r as f64 / n as f64
        }
    };
    let best = (0..k).fold(0, |b, c| if acc(c) > acc(b) { c } else { b });
    let worst = (0..k).fold(0, |b, c| {
        if acc(c) < acc(b) && acc(c) >= 0.0 {
            c
        } else {
            b
        }
    });
    let words = |c: usize| {
        let (r, n) = f.class_counts(c);
        format!("{} ({})", f.run.classes[c], pct(r, n))
    };
    doc.para(format!(
        "The model is best on {} and worst on {} (test accuracy per class, in the results).",
        words(best),
        words(worst)
    ));
    confused_pairs(doc, f);
    prose::mistakes_figure(doc, f, "");
    match (f.head_best, f.tune_best) {
        (Some(h), Some(t)) => {
            let change = match t.val_acc > h.val_acc {
                true => format!(
                    "raised the best validation accuracy from {} (head alone, epoch {}) to {} \
                     (epoch {})",
                    pct_of(h.val_acc),
                    h.epoch,
                    pct_of(t.val_acc),
                    t.epoch
                ),
                false => format!(
                    "did not raise the best validation accuracy above the head alone's {} \
                     (epoch {}); its best was {} (epoch {})",
                    pct_of(h.val_acc),
                    h.epoch,
                    pct_of(t.val_acc),
                    t.epoch
                ),
            };
            doc.para(format!(
                "Fine-tuning from {} for {} epoch(s) {change}; the saved model is {}.",
                f.text("/options/fine_tune"),
                f.epochs.1,
                if f.run.flag("/fine_tuning/improved") {
                    "the fine-tuned one"
                } else {
                    "the head-only one"
                }
            ))
        }
        (_, None) if f.run.text("/options/fine_tune").is_some() => {
            doc.para("Fine-tuning was asked for but ran no epoch (head training was interrupted).")
        }
        _ => {}
    }
    let flip = f.run.flag("/options/flip") || f.run.flag("/options/tta");
    doc.para(format!(
        "{} A single run cannot tell what one setting changed: train the same setup with that \
         setting changed and compare the runs with `trainer report RUN1 RUN2`, which lists \
         every pair of runs that differ in one setting and the difference in accuracy.",
        if flip {
            "Horizontal flips were used (Materials and methods)."
        } else if f.run.text("/options/fine_tune").is_some() {
            "No flips were used."
        } else {
            "Neither fine-tuning nor flips were used."
        }
    ));
    let (_, _, test) = f.split_sizes();
    let gap = 100.0 * (f.test.accuracy - f.best.val_acc);
    let versus = if gap.abs() < 5e-3 {
        "equal to".to_string()
    } else if gap > 0.0 {
        format!("{gap:.2} points above")
    } else {
        format!("{:.2} points below", -gap)
    };
    doc.para(format!(
        "The test accuracy is {versus} the best validation accuracy. The validation \
         images chose the epoch, so their accuracy is slightly optimistic; the test images \
         did not, so the test accuracy is the unbiased figure, within about ±{:.2} points \
         (two standard errors over {test} images). This is one run with one seed: a \
         difference from another run smaller than that is not evidence of a better setup.",
        2.0 * standard_error(f.test.accuracy, test)
    ));
}
