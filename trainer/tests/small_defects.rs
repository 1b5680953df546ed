//! The small defects of hostile use, each refused or handled with a clear
//! message: the real binary (or the dataset reader) on small inputs
//! (MobileNet alpha 0.25 with seeded weights at 32 px, a few random
//! CIFAR-10 images or 32x32 PNGs).
//!
//! - predict reads a PNG named `.jpg` (decoded by content);
//! - `evaluate --batch-size 0` is refused;
//! - a class folder whose name is not UTF-8 is named as such;
//! - an empty `.h5` is called empty;
//! - `--lr 1e30` ends with "training diverged";
//! - `--patience 0` stops at the first epoch without improvement (Keras);
//! - a `batches.meta.txt` naming one class twice is refused.

mod common;

use common::{
    model_file_with_size, png, random_cifar, refused, run_trainer, s, small_weights, TempDir,
    SMALL_MODEL,
};

#[test]
fn predict_decodes_a_png_named_jpg_by_content() {
    let dir = TempDir::new("predict-content");
    let d = dir.path();
    let model = model_file_with_size(d, 32);
    let image = d.join("really-a-png.jpg");
    png(&image);
    let cache = d.join("cache");
    let args = [
        "predict",
        "--device",
        "cpu",
        "--model-file",
        s(&model),
        s(&image),
    ];
    let (code, stdout, err) = run_trainer(&args, &cache);
    assert_eq!(code, Some(0), "{err}");
    assert!(stdout.contains('%'), "{stdout}");
}

#[test]
fn evaluate_refuses_batch_size_0() {
    let dir = TempDir::new("evaluate-batch-0");
    let d = dir.path();
    let model = model_file_with_size(d, 32);
    let cache = d.join("cache");
    let data = random_cifar(d, 4, 4);
    let args = ["evaluate", "--device", "cpu", "--model-file", s(&model)];
    let mut args = args.to_vec();
    args.extend(["--data", s(&data), "--batch-size", "0"]);
    refused(
        run_trainer(&args, &cache),
        &["--batch-size must be at least 1"],
    );
}

#[cfg(unix)]
#[test]
fn a_class_folder_name_that_is_not_utf8_is_named_as_such() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new("non-utf8");
    let class = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::create_dir_all(&class).unwrap();
    png(&class.join("0.png"));
    let e = trainer::data::load(dir.path(), trainer::Split::Train)
        .unwrap_err()
        .to_string();
    println!("{e}");
    assert!(e.contains("not valid UTF-8") && e.contains("caf"), "{e}");
}

#[test]
fn an_empty_h5_is_called_empty() {
    let dir = TempDir::new("empty-h5");
    let d = dir.path();
    let h5 = d.join("weights.h5");
    std::fs::write(&h5, b"").unwrap();
    let data = random_cifar(d, 4, 4).join("test_batch.bin");
    let mut args = vec!["extract"];
    args.extend(SMALL_MODEL);
    let out = d.join("f.npy");
    args.extend(["--weights", s(&h5), "--data", s(&data), "--pooling", "avg"]);
    args.extend(["--out", s(&out)]);
    let err = refused(
        run_trainer(&args, &d.join("cache")),
        &["is empty (0 bytes)"],
    );
    assert!(!err.contains("safetensors header"), "{err}");
}

#[test]
fn lr_1e30_says_training_diverged() {
    let dir = TempDir::new("lr-1e30");
    let d = dir.path();
    let (w, data) = (small_weights(d, 3), random_cifar(d, 8, 8));
    let out = d.join("m.safetensors");
    let mut args = vec!["train"];
    args.extend(SMALL_MODEL);
    args.extend(["--weights", s(&w), "--data", s(&data), "--out", s(&out)]);
    args.extend(["--epochs", "3", "--lr", "1e30", "--standardize"]);
    refused(
        run_trainer(&args, &d.join("cache")),
        &["training diverged", "lower the learning rate"],
    );
}

#[test]
fn patience_0_stops_at_the_first_epoch_without_improvement() {
    let dir = TempDir::new("patience-0");
    let d = dir.path();
    let (w, data) = (small_weights(d, 3), random_cifar(d, 8, 8));
    let out = d.join("m.safetensors");
    let mut args = vec!["train"];
    args.extend(SMALL_MODEL);
    args.extend(["--weights", s(&w), "--data", s(&data), "--out", s(&out)]);
    args.extend(["--epochs", "40", "--patience", "0", "--standardize"]);
    let (code, _, err) = run_trainer(&args, &d.join("cache"));
    assert_eq!(code, Some(0), "{err}");
    let csv = std::fs::read_to_string(d.join("m.metrics.csv")).unwrap();
    let val_accs: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(5).unwrap().parse().unwrap())
        .collect();
    println!("val_acc per epoch: {val_accs:?}");
    // 4 validation images: at most 5 distinct accuracies, so at most 5
    // strict improvements; the run must end at the first epoch without one.
    let (last, before) = val_accs.split_last().unwrap();
    assert!(val_accs.len() < 40, "never stopped early: {val_accs:?}");
    for (i, &a) in before.iter().enumerate() {
        let best = before[..i].iter().cloned().fold(f64::MIN, f64::max);
        assert!(
            a > best,
            "epoch {} did not improve, yet training went on",
            i + 1
        );
    }
    let best = before.iter().cloned().fold(f64::MIN, f64::max);
    assert!(
        *last <= best,
        "stopped after an improving epoch: {val_accs:?}"
    );
    let (_, help, _) = run_trainer(&["train", "--help"], &d.join("cache"));
    assert!(help.contains("0 acts as 1, as in Keras"), "{help}");
}

#[test]
fn a_class_name_listed_twice_is_refused() {
    let dir = TempDir::new("meta-twice");
    let data = random_cifar(dir.path(), 4, 4);
    let names = ["cat"; 10].join("\n");
    std::fs::write(data.join("batches.meta.txt"), names).unwrap();
    let e = trainer::data::load(&data, trainer::Split::Test)
        .unwrap_err()
        .to_string();
    println!("{e}");
    assert!(e.contains("'cat' twice"), "{e}");
}
