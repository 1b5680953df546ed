//! The whole training pipeline through the `trainer` binary, on real
//! CIFAR-10 images (a subset of `../shared/data/cifar10-jpeg.tar.xz`,
//! relative to the repository root) with the full-size ResNet50 at 32 px and
//! seeded weights (`weights::seeded`: ImageNet weights cannot be downloaded
//! here, so accuracy is far from a pretrained model's; the test proves the
//! pipeline, not the weights):
//!
//! 1. `train` extracts and caches features, trains the head with validation
//!    and early stopping, saves the model, the metrics CSV and the plots;
//!    training accuracy must rise well above chance (10%).
//! 2. `evaluate` reloads the saved file and scores the raw test images end
//!    to end: the very same accuracy and correct count as `train` reported.
//! 3. A second `train` reuses both cached feature files (says so, writes no
//!    new one, extracts nothing) and reproduces the same result.
//! 4. `predict` classifies one image with the saved model.
//!
//! Without the archive (a checkout without shared/), it prints SKIPPED.

mod common;

use common::{accuracy_line, archive, trainer};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("thaw-pipeline-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn train_evaluate_predict_on_real_cifar10_subset() {
    let Some(archive) = archive() else {
        common::skipped(format_args!(
            "../shared/data/cifar10-jpeg.tar.xz not found beside the repository"
        ));
        return;
    };
    let dir = temp_dir("run");
    let t0 = Instant::now();
    // 300 training images per class (0000-0299), 50 test images per class (0000-0049).
    let status = Command::new("tar")
        .arg("-xJf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir)
        .args([
            "--wildcards",
            "cifar10-jpeg/train/*/0[0-2][0-9][0-9].jpg",
            "cifar10-jpeg/test/*/00[0-4][0-9].jpg",
        ])
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar failed to unpack the subset");
    let data = dir.join("cifar10-jpeg");
    eprintln!("unpacked the subset in {:.1} s", t0.elapsed().as_secs_f64());

    // Full-size ResNet50 with seeded weights, as a .safetensors file.
    let backbone = trainer::train::model_file::build_backbone("resnet50", None).unwrap();
    let seeded = weights::seeded::generate(&backbone.weight_spec(), 2024);
    let weights_file = dir.join("resnet50-seeded.safetensors");
    weights::save_safetensors(&weights_file, &seeded, &Default::default()).unwrap();
    drop((backbone, seeded));

    let cache = dir.join("cache");
    let out = dir.join("cifar10.safetensors");
    let (w, d, o) = (
        weights_file.to_str().unwrap(),
        data.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let train_args = [
        "train",
        "--model",
        "resnet50",
        "--weights",
        w,
        "--data",
        d,
        "--image-size",
        "32",
        "--epochs",
        "12",
        "--patience",
        "4",
        "--seed",
        "1",
        "--device",
        "cpu",
        "--out",
        o,
        // Seeded-weight features are in the hundreds with a large common
        // offset; without standardization the head stays at chance (measured:
        // train accuracy 0.10 at lr 1e-3), with it it learns.
        "--standardize",
    ];

    // 1. First run: features computed and cached.
    let t = Instant::now();
    let (stdout1, stderr1) = trainer(&train_args, &cache);
    let first_secs = t.elapsed().as_secs_f64();
    eprintln!("first train run: {first_secs:.1} s\n{stdout1}\n{stderr1}");
    assert!(
        stderr1.contains("features train: computed and cached"),
        "{stderr1}"
    );
    assert!(
        stderr1.contains("features test: computed and cached"),
        "{stderr1}"
    );
    let cached = files_in(&cache.join("features"));
    assert_eq!(cached.len(), 2, "{cached:?}");
    // The time estimate, from the first batch, for every image of both splits.
    let images: usize = ["training images", "test images"]
        .iter()
        .map(|what| number_before(&stderr1, what))
        .sum();
    assert!(
        stderr1.contains(&format!("this run extracts up to {images} images: about ")),
        "{stderr1}"
    );

    let metrics = std::fs::read_to_string(dir.join("cifar10.metrics.csv")).unwrap();
    let mut lines = metrics.lines();
    assert_eq!(
        lines.next(),
        Some("epoch,phase,loss,train_acc,val_loss,val_acc,lr,seconds")
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| *i != 1)
                .map(|(_, v)| v.parse().unwrap())
                .collect()
        })
        .collect();
    assert!(!rows.is_empty());
    let best_train_acc = rows.iter().map(|r| r[2]).fold(0.0, f64::max);
    let best_val_acc = rows.iter().map(|r| r[4]).fold(0.0, f64::max);
    eprintln!(
        "best train accuracy {best_train_acc:.4}, best validation accuracy {best_val_acc:.4}"
    );
    assert!(
        best_train_acc > 0.3,
        "training accuracy {best_train_acc} is not well above chance (0.1)"
    );
    assert!(rows.iter().all(|r| r.iter().all(|v| v.is_finite())));
    for png in ["cifar10.curves.png", "cifar10.confusion.png"] {
        let bytes = std::fs::read(dir.join(png)).unwrap_or_default();
        assert!(bytes.starts_with(b"\x89PNG"), "{png} missing or not a PNG");
    }
    let (train_acc_text, train_correct, train_n) = accuracy_line(
        stdout1
            .split("== summary ==")
            .nth(1)
            .expect("summary printed"),
    );
    assert_eq!(train_n, 500);

    // 2. evaluate: reload the file, raw images end to end, the same accuracy.
    let t = Instant::now();
    let (eval_out, eval_err) = trainer(
        &[
            "evaluate",
            "--model-file",
            o,
            "--data",
            d,
            "--device",
            "cpu",
        ],
        &cache,
    );
    eprintln!(
        "evaluate: {:.1} s\n{eval_out}\n{eval_err}",
        t.elapsed().as_secs_f64()
    );
    let (eval_acc_text, eval_correct, eval_n) = accuracy_line(&eval_out);
    assert_eq!(
        (eval_acc_text.as_str(), eval_correct, eval_n),
        (train_acc_text.as_str(), train_correct, train_n),
        "evaluate disagrees with train"
    );
    assert!(eval_out.contains("confusion matrix"), "{eval_out}");

    // 3. Second run: both feature files reused, nothing extracted, same result.
    let t = Instant::now();
    let (stdout2, stderr2) = trainer(&train_args, &cache);
    let second_secs = t.elapsed().as_secs_f64();
    eprintln!("second train run: {second_secs:.1} s\n{stderr2}");
    assert!(
        stderr2.contains("features train: reused from the feature cache"),
        "{stderr2}"
    );
    assert!(
        stderr2.contains("features test: reused from the feature cache"),
        "{stderr2}"
    );
    assert!(!stderr2.contains("computed"), "{stderr2}");
    assert!(!stderr2.contains("this run extracts"), "{stderr2}");
    assert_eq!(files_in(&cache.join("features")), cached);
    assert!(
        stdout2.contains("every feature set came from the cache"),
        "{stdout2}"
    );
    let again = accuracy_line(stdout2.split("== summary ==").nth(1).unwrap());
    assert_eq!(again, (train_acc_text.clone(), train_correct, train_n));
    assert!(
        second_secs < first_secs,
        "the cached run ({second_secs:.1} s) was not faster than the first ({first_secs:.1} s)"
    );

    // 4. predict: one image, its classes ranked.
    let image = data.join("test/cat/0000.jpg");
    let (pred, _) = trainer(
        &[
            "predict",
            "--model-file",
            o,
            image.to_str().unwrap(),
            "--top",
            "3",
        ],
        &cache,
    );
    let ranked: Vec<&str> = pred.lines().skip(1).collect();
    assert_eq!(ranked.len(), 3, "{pred}");
    assert!(ranked.iter().all(|l| l.contains('%')), "{pred}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The number just before the first `what` in `text` ("data: 200 training
/// images ..., 100 test images" gives 200 for "training images").
fn number_before(text: &str, what: &str) -> usize {
    let at = text
        .find(what)
        .unwrap_or_else(|| panic!("no {what:?} in {text}"));
    let words: Vec<&str> = text[..at].split_whitespace().collect();
    words.last().unwrap().parse().unwrap()
}
