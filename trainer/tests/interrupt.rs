//! Exit statuses of the `trainer` binary that a script relies on.
//!
//! - Ctrl-C (SIGINT) during training: the real binary trains a head on a
//!   small subset of real CIFAR-10 images (30 training and 10 test images per
//!   class from `../shared/data/cifar10-jpeg.tar.xz`, VGG16 with seeded
//!   weights at 32 px) for far more epochs than it can finish; once the first
//!   best model is on disk, the test sends SIGINT (`kill -INT`). The run must
//!   stop within a bounded time with exit status 130 after naming the model
//!   file; the file must be whole (it loads, its metadata names the best
//!   validation accuracy of the metrics CSV, `trainer evaluate` scores it)
//!   and no temporary file may be left beside it or in the feature cache;
//!   the run record says "interrupted" and holds no test figures.
//!   Without the archive it prints SKIPPED.
//! - `trainer bench` points to the bench crate and exits non-zero.

mod common;

use common::{archive, entries, unpack_subset, TempDir};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Entries of `dir` that look like temporary files (`.NAME.tmp-<pid>-<n>`
/// of the atomic writers, or anything with `tmp`/`partial` in its name).
fn temp_files(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|n| n.contains("tmp") || n.contains("partial"))
        .collect()
}

#[test]
fn sigint_keeps_the_best_model_intact_and_exits_130() {
    let Some(archive) = archive() else {
        common::skipped(format_args!(
            "../shared/data/cifar10-jpeg.tar.xz not found beside the repository"
        ));
        return;
    };
    let t0 = Instant::now();
    let dir = TempDir::new("interrupt");
    let data = unpack_subset(&archive, dir.path());
    let backbone = trainer::train::model_file::build_backbone("vgg16", None).unwrap();
    let seeded = weights::seeded::generate(&backbone.weight_spec(), 11);
    let weights_file = dir.path().join("vgg16-seeded.safetensors");
    weights::save_safetensors(&weights_file, &seeded, &Default::default()).unwrap();
    drop((backbone, seeded));

    let cache = dir.path().join("cache");
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let out = run_dir.join("model.safetensors");
    let stdout_path = dir.path().join("stdout.txt");
    let stderr_path = dir.path().join("stderr.txt");
    // 100,000 epochs and as much patience (no early stop): hours of work, so the run is
    // certainly still training when the signal comes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["train", "--model", "vgg16", "--weights"])
        .arg(&weights_file)
        .arg("--data")
        .arg(&data)
        .args([
            "--image-size",
            "32",
            "--epochs",
            "100000",
            "--patience",
            "100000",
            "--batch-size",
            "8",
            "--standardize",
            "--seed",
            "2",
            "--device",
            "cpu",
            "--out",
        ])
        .arg(&out)
        .env("THAW_CACHE_DIR", &cache)
        .stdout(Stdio::from(std::fs::File::create(&stdout_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&stderr_path).unwrap()))
        .spawn()
        .expect("trainer binary starts");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();

    // Wait (bounded) for the first best model.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !out.is_file() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "trainer exited ({status}) before saving a model:\n{}",
                read(&stderr_path)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no model file after 120 s:\n{}", read(&stderr_path));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let saved_after = t0.elapsed().as_secs_f64();
    // A few more epochs, so that the signal lands in the middle of training
    // (and possibly of a later save): wait (bounded) for the third epoch's
    // line, however slow a loaded machine makes each epoch.
    let third_epoch = |log: &str| log.contains("] epoch 3/");
    while !third_epoch(&(read(&stdout_path) + &read(&stderr_path))) {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fewer than 3 epochs after 120 s:\n{}", read(&stderr_path));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "trainer finished on its own:\n{}",
        read(&stderr_path)
    );
    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());

    // Wait (bounded) for the exit.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!(
                "trainer still running 60 s after SIGINT:\n{}",
                read(&stderr_path)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stop_secs = signalled.elapsed().as_secs_f64();
    let (stdout, stderr) = (read(&stdout_path), read(&stderr_path));
    eprintln!(
        "model saved after {saved_after:.1} s; stopped {stop_secs:.2} s after SIGINT with \
         {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert_eq!(
        status.code(),
        Some(trainer::cli::INTERRUPTED_EXIT_STATUS),
        "a run stopped by Ctrl-C exits with 130"
    );
    assert_eq!(trainer::cli::INTERRUPTED_EXIT_STATUS, 130);
    assert!(
        stderr.contains("interrupt: stopping after the current batch"),
        "{stderr}"
    );
    let named = format!("is in {}", out.display());
    assert!(
        stderr.contains("interrupted: the best model so far") && stderr.contains(&named),
        "the run does not say where the best model is:\n{stderr}"
    );
    assert!(!stdout.contains("== summary =="), "{stdout}");

    // No temporary file anywhere.
    assert_eq!(
        temp_files(&run_dir),
        Vec::<String>::new(),
        "beside the model"
    );
    let features = cache.join("features");
    assert_eq!(
        temp_files(&features),
        Vec::<String>::new(),
        "in the feature cache"
    );
    assert_eq!(
        entries(&run_dir),
        [
            "model.curves.png",
            "model.metrics.csv",
            "model.run.json",
            "model.safetensors"
        ],
        "files beside the model"
    );
    // The run record says the run was interrupted, with no test figures.
    let record: serde_json::Value =
        serde_json::from_str(&read(&run_dir.join("model.run.json"))).unwrap();
    assert_eq!(record["status"], "interrupted", "{record}");
    assert_eq!(record["accuracy"]["test"], serde_json::Value::Null);

    // The model file is whole and holds the best epoch.
    let metrics = read(&run_dir.join("model.metrics.csv"));
    let val_accs: Vec<f64> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(5).unwrap().parse().unwrap())
        .collect();
    assert!(
        val_accs.len() >= 2,
        "too few epochs before the signal:\n{metrics}"
    );
    let best = val_accs.iter().cloned().fold(f64::MIN, f64::max);
    let loaded = trainer::train::load_model(&out).expect("the saved model loads");
    assert_eq!(loaded.meta.model, "vgg16");
    assert_eq!(
        loaded.meta.val_accuracy,
        Some(best),
        "the saved model is not the best epoch of {metrics}"
    );
    let eval = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["evaluate", "--device", "cpu", "--model-file"])
        .arg(&out)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let eval_out = String::from_utf8_lossy(&eval.stdout);
    assert!(
        eval.status.success(),
        "evaluate of the interrupted run's model failed:\n{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    assert!(eval_out.contains("of 100 images"), "{eval_out}");
    eprintln!(
        "{} epochs before the signal, best val_acc {best:.4}; {:.1} s in all",
        val_accs.len(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn bench_points_to_the_bench_crate_and_exits_non_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["bench", "--model", "vgg16"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cargo run --release -p bench"),
        "no pointer to the bench crate:\n{stderr}"
    );
    assert!(!stderr.contains("not yet available"), "{stderr}");
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bench/Cargo.toml")
        .is_file());
}
