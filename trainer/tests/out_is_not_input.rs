//! `--out` naming one of the command's inputs is refused before any work,
//! with exit status 1 and a message naming both, and the input keeps its
//! bytes: the real binary, run on small inputs (MobileNet alpha 0.25 with
//! seeded weights, the 4 CIFAR-10 images of
//! `tests/fixtures/keras/cifar_sample.bin`).
//!
//! Each case is a way the output and an input are one file: the same path,
//! a `..` detour, a symbolic link, a hard link, a file inside a dataset
//! folder, the labels file `extract` writes beside `--out`.

mod common;

use common::{repo_root, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// MobileNet alpha 0.25's seeded weights (no top) in `dir`.
fn small_weights(dir: &Path) -> PathBuf {
    let options = models::ModelOptions {
        alpha: Some(0.25),
        ..models::ModelOptions::default()
    };
    let backbone = models::build("mobilenet", &options).unwrap();
    let tensors = weights::seeded::generate(&backbone.weight_spec(), 5);
    let path = dir.join("w.safetensors");
    weights::save_safetensors(&path, &tensors, &Default::default()).unwrap();
    path
}

/// A copy of the 4-image CIFAR-10 batch in `dir` under `name`.
fn small_batch(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(
        repo_root().join("tests/fixtures/keras/cifar_sample.bin"),
        &path,
    )
    .unwrap();
    path
}

const SMALL: &[&str] = &["--model", "mobilenet", "--alpha", "0.25", "--device", "cpu"];

/// Runs the trainer with `args` (cache in `dir/cache`) and checks that it
/// refused: exit status 1, a message naming `flag` and `input`, and the
/// bytes of `input` (of the `--out` file, for a folder input) unchanged.
fn assert_refused(dir: &Path, args: &[&str], flag: &str, input: &Path) {
    let out = Path::new(args[args.iter().position(|&a| a == "--out").unwrap() + 1]);
    let kept = if input.is_dir() { out } else { input };
    let before = std::fs::read(kept).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .env("THAW_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?} was not refused:\n{err}");
    assert!(
        err.contains(flag)
            && err.contains(&input.display().to_string())
            && err.contains("nothing was written")
            && err.contains("HINT"),
        "{args:?}: unclear message:\n{err}"
    );
    assert!(
        std::fs::read(kept).unwrap() == before,
        "{args:?} changed {}",
        kept.display()
    );
    assert!(
        !dir.join("cache").exists(),
        "{args:?} did work before refusing"
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn train_refuses_out_naming_its_weights_or_data() {
    let dir = TempDir::new("out-train");
    let d = dir.path();
    let w = small_weights(d);
    let batch = small_batch(d, "batch.bin");
    let train = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<&str> = vec!["train"];
        v.extend(SMALL);
        v.extend(["--epochs", "1", "--image-size", "32"]);
        v.extend(extra);
        v.iter().map(|s| s.to_string()).collect()
    };
    let run = |extra: &[&str], flag: &str, input: &Path| {
        let args = train(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(d, &args, flag, input);
    };
    let (w, b) = (s(&w), s(&batch));
    run(
        &["--weights", w, "--data", b, "--out", w],
        "--weights",
        Path::new(w),
    );
    run(&["--weights", w, "--data", b, "--out", b], "--data", &batch);
    // The same file by another path: `..`, a symbolic link, a hard link.
    std::fs::create_dir(d.join("sub")).unwrap();
    let detour = d.join("sub/../w.safetensors");
    run(
        &["--weights", w, "--data", b, "--out", s(&detour)],
        "--weights",
        Path::new(w),
    );
    #[cfg(unix)]
    {
        let soft = d.join("soft.safetensors");
        std::os::unix::fs::symlink(w, &soft).unwrap();
        run(
            &["--weights", w, "--data", b, "--out", s(&soft)],
            "--weights",
            Path::new(w),
        );
        let hard = d.join("hard.safetensors");
        std::fs::hard_link(w, &hard).unwrap();
        run(
            &["--weights", w, "--data", b, "--out", s(&hard)],
            "--weights",
            Path::new(w),
        );
    }
    // A file inside a folder of CIFAR-10 batches.
    let batches = d.join("batches");
    std::fs::create_dir(&batches).unwrap();
    for name in (1..=5)
        .map(|i| format!("data_batch_{i}.bin"))
        .chain(["test_batch.bin".into()])
    {
        small_batch(&batches, &name);
    }
    let member = batches.join("data_batch_1.bin");
    run(
        &["--weights", w, "--data", s(&batches), "--out", s(&member)],
        "--data",
        &batches,
    );
    assert_eq!(
        std::fs::read(&member).unwrap(),
        std::fs::read(&batch).unwrap()
    );
}

#[test]
fn extract_and_convert_refuse_out_naming_an_input() {
    let dir = TempDir::new("out-extract");
    let d = dir.path();
    let w = small_weights(d);
    let batch = small_batch(d, "feats.labels.npy");
    let extract = |out: &Path| -> Vec<String> {
        let mut v: Vec<&str> = vec!["extract"];
        v.extend(SMALL);
        v.extend([
            "--weights",
            s(&w),
            "--data",
            s(&batch),
            "--image-size",
            "32",
        ]);
        v.extend(["--pooling", "avg", "--out", s(out)]);
        v.iter().map(|s| s.to_string()).collect()
    };
    let run = |out: &Path, flag: &str, input: &Path| {
        let args = extract(out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(d, &args, flag, input);
    };
    run(&w, "--weights", &w);
    run(&batch, "--data", &batch);
    // --out feats.npy writes its labels to feats.labels.npy: the data here.
    run(&d.join("feats.npy"), "--data", &batch);
    assert!(!d.join("feats.npy").exists());

    let convert = ["convert", "--model", "mobilenet", "--alpha", "0.25"];
    let args = [&convert[..], &["--keras-h5", s(&w), "--out", s(&w)]].concat();
    assert_refused(d, &args, "--keras-h5", &w);
}
