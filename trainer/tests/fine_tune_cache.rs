//! The activation cache of fine-tuning (`train --fine-tune BLOCK` on the
//! CPU), through the `trainer` binary: seeded EfficientNet-Lite0 from
//! `_blocks.11`, 30 training and 10 test images per class of real CIFAR-10
//! (`../shared/data/cifar10-jpeg.tar.xz`) at 32 px, two fine-tuning epochs.
//!
//! - Through the cache and end to end (`--no-cache`), the fine-tuning
//!   epochs report the same losses and accuracies, up to what the f16
//!   rounding of the cached activations moves (bounds below).
//! - A second run reuses the cache (its message; the files untouched) and
//!   gives bit for bit the first run's epochs and model.
//! - A damaged cache file is detected (md5), recomputed and not used: the
//!   run again equals the first bit for bit.
//! - With `--flip --tta` the flipped sets are added (the others reused),
//!   and they hold the flipped images' activations, bit for bit.
//! - Too little free disk space (`THAW_TEST_FREE_BYTES`) stops the run
//!   before anything is computed, with the numbers and what to do.
//!
//! Without the archive it prints SKIPPED.

mod common;

use common::{archive, trainer, unpack_subset, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use trainer::data::{Split, IMAGE_BYTES};
use trainer::npy::{self, NpyData};
use trainer::train::feature_cache::image_batch;

/// Asserts that fine-tuning epochs through the cache (`c`) and end to end
/// (`e`) agree up to the f16 rounding of the cached activations: f16 keeps
/// 11 significant bits, so each cached activation differs from the f32 one
/// by at most 2^-11 (5e-4) of itself. Measured (the first case): losses
/// within 4e-4 relative, the same accuracies. The bounds: losses within
/// 1e-3, at most one of the `train` training or `val` validation images
/// decided differently. A cache of wrong activations (another block's, the
/// stem run twice, unflipped for flipped) misses them by far.
fn assert_close(c: &[[f64; 4]], e: &[[f64; 4]], train: f64, val: f64) {
    for (c, e) in c.iter().zip(e) {
        eprintln!("epoch through the cache {c:?}, end to end {e:?}");
        for k in [0, 2] {
            assert!((c[k] - e[k]).abs() <= 1e-3 * e[k].abs(), "{c:?} vs {e:?}");
        }
        assert!((c[1] - e[1]).abs() <= 1.0 / train + 1e-9, "{c:?} vs {e:?}");
        assert!((c[3] - e[3]).abs() <= 1.0 / val + 1e-9, "{c:?} vs {e:?}");
    }
}

/// The fine-tune rows of a metrics.csv: (loss, train_acc, val_loss, val_acc).
fn fine_tune_rows(out: &Path) -> Vec<[f64; 4]> {
    let csv = std::fs::read_to_string(out.with_extension("metrics.csv")).unwrap();
    let rows: Vec<[f64; 4]> = csv
        .lines()
        .filter(|l| l.contains(",fine-tune,"))
        .map(|l| {
            let f: Vec<f64> = l.split(',').skip(2).map(|v| v.parse().unwrap()).collect();
            [f[0], f[1], f[2], f[3]]
        })
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    rows
}

/// The saved model's tensors by name, as bits.
fn model_bits(out: &Path) -> Vec<(String, Vec<u32>)> {
    let (t, _) = weights::load_safetensors(out).unwrap();
    t.into_iter()
        .map(|(n, t)| (n, t.to_vec_f32().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

/// The activation cache's files of `cache` and their modification times.
fn activation_files(cache: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(cache.join("activations"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let t = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p, t)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn fine_tuning_through_the_activation_cache_matches_end_to_end_and_reuses_it() {
    let Some(archive) = archive() else {
        common::skipped(format_args!(
            "../shared/data/cifar10-jpeg.tar.xz not found beside the repository"
        ));
        return;
    };
    let dir = TempDir::new("fine-tune-cache");
    let data = unpack_subset(&archive, dir.path());
    let model = "efficientnet_lite0";
    let backbone = trainer::train::model_file::build_backbone(model, None).unwrap();
    let seeded = weights::seeded::generate(&backbone.weight_spec(), 77);
    let weights_file = dir.path().join("lite0-seeded.safetensors");
    weights::save_safetensors(&weights_file, &seeded, &Default::default()).unwrap();
    drop(backbone);
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--model",
            model,
            "--weights",
            weights_file.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--extract-batch-size",
            "32",
            "--val-split",
            "0.2",
            "--seed",
            "3",
            "--standardize",
            "--fine-tune",
            "_blocks.11",
            "--fine-tune-epochs",
            "2",
            "--fine-tune-lr",
            "1e-5",
            "--device",
            "cpu",
            "--out",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |name: &str, cache: &Path, extra: &[&str]| {
        let out = dir.path().join(format!("{name}.safetensors"));
        let mut a = args(&out);
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (stdout, stderr) = trainer(&a, cache);
        eprintln!("--- {name}\n{stderr}");
        (out, stdout, stderr)
    };
    let cache = dir.path().join("cache");

    // 1. Through the cache: computed and stored.
    let (cached, _, log) = run("cached", &cache, &[]);
    assert!(
        log.contains("activation cache: _blocks.11's input is 2x2x112 an image (0.9 KB in f16)"),
        "{log}"
    );
    assert!(
        log.contains("activations train: 300 images through the frozen layers"),
        "{log}"
    );
    assert!(
        log.contains("activations test: 100 images through the frozen layers"),
        "{log}"
    );
    let files = activation_files(&cache);
    assert_eq!(files.len(), 2, "{files:?}");
    let rows = fine_tune_rows(&cached);
    let bits = model_bits(&cached);

    // 2. End to end (--no-cache): the same epochs up to the f16 rounding.
    let (end_to_end, _, log) = run("end-to-end", &dir.path().join("cache-2"), &["--no-cache"]);
    assert!(
        log.contains("fine-tuning end to end on images (--no-cache"),
        "{log}"
    );
    assert!(!log.contains("activations train"), "{log}");
    assert_close(&rows, &fine_tune_rows(&end_to_end), 240.0, 60.0);
    // The backbone's weights: how far each run moved them from the seeded
    // ones. Measured: the two moves within 3.5% of each other; bound 10%.
    let start: std::collections::BTreeMap<String, Vec<f32>> = seeded
        .iter()
        .map(|(n, t)| (n.clone(), t.to_vec_f32()))
        .collect();
    let (tc, _) = weights::load_safetensors(&cached).unwrap();
    let (te, _) = weights::load_safetensors(&end_to_end).unwrap();
    let te: std::collections::BTreeMap<String, engine::Tensor> = te.into_iter().collect();
    let (mut diff, mut moved) = (0.0f64, 0.0f64);
    for (name, t) in tc.iter().filter(|(n, _)| start.contains_key(n)) {
        let (c, e, s) = (t.to_vec_f32(), te[name].to_vec_f32(), &start[name]);
        for i in 0..s.len() {
            diff += ((c[i] - e[i]) as f64).powi(2);
            moved += ((e[i] - s[i]) as f64).powi(2);
        }
    }
    let ratio = (diff / moved).sqrt();
    eprintln!("weights: |cached - end to end| / |end to end - seeded| = {ratio:.2e}");
    assert!(moved > 0.0 && ratio <= 0.1, "{ratio}");

    // 3. Again through the cache: reused, files untouched, bit for bit the same run.
    let (again, _, log) = run("again", &cache, &[]);
    assert!(
        log.contains("activations train: reused from the activation cache")
            && log.contains("activations test: reused from the activation cache"),
        "{log}"
    );
    assert!(!log.contains("through the frozen layers"), "{log}");
    assert_eq!(
        activation_files(&cache),
        files,
        "the cache files were rewritten"
    );
    assert_eq!(fine_tune_rows(&again), rows);
    assert_eq!(model_bits(&again), bits);

    // 4. A damaged file (one bit of the training activations) is recomputed, not used.
    let train_file = files
        .iter()
        .map(|(p, _)| p)
        .find(|p| p.to_str().unwrap().contains("-train-at_blocks.11.npy"))
        .unwrap_or_else(|| panic!("no training activations in {files:?}"));
    let mut bytes = std::fs::read(train_file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04;
    std::fs::write(train_file, &bytes).unwrap();
    let (repaired, _, log) = run("repaired", &cache, &[]);
    assert!(
        log.contains("fails its md5 checksum (damaged); recomputing it")
            && log.contains("activations train: 300 images through the frozen layers")
            && log.contains("activations test: reused from the activation cache"),
        "{log}"
    );
    assert_eq!(fine_tune_rows(&repaired), rows);
    assert_eq!(model_bits(&repaired), bits);

    // 5. --flip --tta: the flipped sets are computed (the others reused)
    // and fine-tuning trains on 480 rows.
    let (flipped, stdout, log) = run("flip-tta", &cache, &["--flip", "--tta"]);
    assert!(
        log.contains("activations train: reused from the activation cache")
            && log.contains("activations train (flipped): 300 images through the frozen layers")
            && log.contains("activations test (flipped): 100 images through the frozen layers")
            && log.contains("fine-tune epoch 2: 480 images of 480 images"),
        "{log}"
    );
    // The flipped sets hold the prefix of the flipped images, rounded to
    // f16, bit for bit (in the run's batches of 32).
    let backbone = trainer::train::model_file::build_backbone(model, None).unwrap();
    backbone.load(seeded.clone()).unwrap();
    for (split, name) in [(Split::Train, "train"), (Split::Test, "test")] {
        let ds = trainer::data::load(&data, split).unwrap();
        let mut want = Vec::new();
        for chunk in ds.images.chunks(32 * IMAGE_BYTES) {
            let x = image_batch(chunk, 32, true, models::Preprocessing::Lite).unwrap();
            let a = backbone.forward_prefix(&x, "_blocks.11").unwrap();
            want.extend(
                a.to_vec_f32()
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_bits()),
            );
        }
        let file = activation_files(&cache)
            .into_iter()
            .map(|(p, _)| p)
            .find(|p| {
                p.to_str()
                    .unwrap()
                    .ends_with(&format!("-{name}-flip-at_blocks.11.npy"))
            })
            .unwrap_or_else(|| panic!("no flipped {name} activations"));
        let NpyData::F16(got) = npy::read_checksummed(&file).unwrap().data else {
            panic!("{} is not f16", file.display())
        };
        let got: Vec<u16> = got.iter().map(|v| v.to_bits()).collect();
        assert!(
            got == want,
            "{} is not the flipped images' prefix",
            file.display()
        );
    }
    assert!(fine_tune_rows(&flipped).iter().all(|r| r[0].is_finite()));
    let right = common::accuracy_line(stdout.split("== summary ==").nth(1).unwrap()).1;
    eprintln!("--flip --tta through the cache: {right} of 100 test images right");

    // 6. Too little disk: refused before computing, with the numbers and the ways out.
    let out = dir.path().join("no-space.safetensors");
    let result = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args(&out))
        .env("THAW_CACHE_DIR", dir.path().join("cache-3"))
        .env("THAW_TEST_FREE_BYTES", "1000000")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "{log}");
    assert!(
        log.contains("the activation cache needs 0.4 MB")
            && log.contains("(400 images of 2x2x112 f16 values at _blocks.11's input")
            && log.contains("but only 1.0 MB are free")
            && log.contains("--image-size")
            && log.contains("--no-cache"),
        "{log}"
    );
    assert!(!log.contains("through the frozen layers"), "{log}");
}
