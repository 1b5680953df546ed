//! Non-finite numbers are stopped where they enter, with an error naming
//! them, instead of training on nonsense: the real binary on small inputs
//! (the 4 CIFAR-10 images of `tests/fixtures/keras/cifar_sample.bin`; for
//! `train`, a folder of a few random CIFAR-10 batches).
//!
//! - weights with a NaN or an infinity, or a negative batch-norm moving
//!   variance (MobileNet alpha 0.25, seeded): `extract` and `train` name
//!   the tensor;
//! - finite but absurd weights (VGG16, seeded, two kernels all 1e30) whose
//!   features overflow: refused before anything is written or cached;
//! - a model file with a NaN in its head or backbone: `evaluate` names it.

mod common;

use common::{repo_root, TempDir};
use engine::Tensor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn small_batch() -> PathBuf {
    repo_root().join("tests/fixtures/keras/cifar_sample.bin")
}

/// `model`'s seeded weights (no top) with `edit` applied, saved in `dir`.
fn weights_file(
    dir: &Path,
    model: &str,
    alpha: Option<f64>,
    edit: impl Fn(&str, &mut Vec<f32>),
) -> PathBuf {
    let options = models::ModelOptions {
        alpha,
        ..models::ModelOptions::default()
    };
    let backbone = models::build(model, &options).unwrap();
    let tensors: Vec<(String, Tensor)> = weights::seeded::generate(&backbone.weight_spec(), 7)
        .into_iter()
        .map(|(name, t)| {
            let mut v = t.to_vec_f32();
            edit(&name, &mut v);
            let t = Tensor::from_vec(v, t.shape()).unwrap();
            (name, t)
        })
        .collect();
    let path = dir.join(format!("{model}.safetensors"));
    weights::save_safetensors(&path, &tensors, &Default::default()).unwrap();
    path
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .env("THAW_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap()
}

/// Asserts exit status 1 with every one of `words` in the message.
fn assert_fails(o: &Output, words: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "not refused:\n{err}");
    for w in words {
        assert!(err.contains(w), "the message lacks {w:?}:\n{err}");
    }
    println!("{}", err.lines().last().unwrap_or_default());
    err
}

fn extract_args<'a>(model: &'a [&'a str], w: &'a str, out: &'a str) -> Vec<&'a str> {
    let data = small_batch().to_str().unwrap().to_string().leak();
    let mut v = vec!["extract"];
    v.extend(model);
    v.extend(["--weights", w, "--data", data, "--image-size", "32"]);
    v.extend(["--pooling", "avg", "--device", "cpu", "--out", out]);
    v
}

/// `train` needs a separate test split: a CIFAR-10 folder of 4 x 5 random
/// training and 4 test images, made beside `out`.
fn train_args<'a>(model: &'a [&'a str], w: &'a str, out: &'a str) -> Vec<&'a str> {
    let dir = Path::new(out).parent().unwrap();
    let data = common::random_cifar(dir, 4, 4);
    let data = data.to_str().unwrap().to_string().leak();
    let mut v = vec!["train"];
    v.extend(model);
    v.extend(["--weights", w, "--data", data, "--image-size", "32"]);
    v.extend(["--epochs", "1", "--device", "cpu", "--out", out]);
    v
}

const MOBILENET: &[&str] = &["--model", "mobilenet", "--alpha", "0.25"];

#[test]
fn weights_with_nan_inf_or_negative_variance_are_refused_by_name() {
    let dir = TempDir::new("non-finite-weights");
    let d = dir.path();
    let out = d.join("out.npy");
    let out = out.to_str().unwrap();
    for (tensor, value, says) in [
        ("conv_dw_3/depthwise_kernel", f32::NAN, "NaN"),
        ("conv_pw_5/kernel", f32::INFINITY, "inf"),
        ("conv1_bn/moving_variance", -1.0, "-1"),
    ] {
        let w = weights_file(d, "mobilenet", Some(0.25), |name, v| {
            if name == tensor {
                v[1] = value;
            }
        });
        let w = w.to_str().unwrap();
        for args in [
            extract_args(MOBILENET, w, out),
            train_args(MOBILENET, w, out),
        ] {
            let err = assert_fails(&run(d, &args), &[tensor, says, "HINT"]);
            assert!(!Path::new(out).exists(), "{args:?} wrote {out}:\n{err}");
            assert!(
                !d.join("cache/features").exists(),
                "{args:?} cached:\n{err}"
            );
        }
    }
}

#[test]
fn absurd_weights_whose_features_overflow_are_refused_before_caching() {
    let dir = TempDir::new("non-finite-features");
    let d = dir.path();
    // Every kernel value of the last two convolutions 1e30: their inputs
    // are >= 0 (after ReLU), so the sums grow to 1e30 * 1e30 * ... = +inf.
    // (Spread signs would give inf - inf = NaN, which ReLU turns into 0.)
    let w = weights_file(d, "vgg16", None, |name, v| {
        if name == "block5_conv2/kernel" || name == "block5_conv3/kernel" {
            v.iter_mut().for_each(|x| *x = 1e30);
        }
    });
    let (w, out) = (w.to_str().unwrap(), d.join("out.npy"));
    let out = out.to_str().unwrap();
    let vgg = &["--model", "vgg16"][..];
    let words = ["features", "not finite", "HINT"];
    assert_fails(&run(d, &extract_args(vgg, w, out)), &words);
    assert!(!Path::new(out).exists());
    let model = d.join("model.safetensors");
    let model = model.to_str().unwrap();
    assert_fails(&run(d, &train_args(vgg, w, model)), &words);
    assert!(!Path::new(model).exists());
    let features = d.join("cache/features");
    assert!(
        !features.exists() || common::entries(&features).is_empty(),
        "something was cached: {:?}",
        common::entries(&features)
    );
}

#[test]
fn a_model_file_with_nan_in_its_head_or_backbone_is_refused_by_name() {
    use trainer::train::{save_model, Head, HeadKind, ModelMeta};
    let dir = TempDir::new("non-finite-model");
    let d = dir.path();
    let backbone = trainer::train::model_file::build_backbone("mobilenet", Some(0.25)).unwrap();
    backbone
        .load(weights::seeded::generate(&backbone.weight_spec(), 7))
        .unwrap();
    let head = Head::new(HeadKind::Mlp, 256, 10, 0).unwrap();
    let meta = ModelMeta {
        model: "mobilenet".into(),
        alpha: Some(0.25),
        classes: trainer::data::CIFAR10_CLASSES.map(String::from).to_vec(),
        image_size: 32,
        input_side: 32,
        crop_to_aspect_ratio: false,
        head: HeadKind::Mlp,
        tta: false,
        standardize: false,
        val_accuracy: None,
    };
    let good = d.join("good.safetensors");
    save_model(&good, backbone.as_ref(), &head, &meta).unwrap();
    let data = small_batch();
    let evaluate = |file: &Path| {
        run(
            d,
            &[
                "evaluate",
                "--model-file",
                file.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
                "--device",
                "cpu",
            ],
        )
    };
    assert!(evaluate(&good).status.success());
    let (tensors, metadata) = weights::load_safetensors(&good).unwrap();
    for tensor in [
        "head_dense2/kernel",
        "head_dense1/bias",
        "conv_pw_13/kernel",
    ] {
        let damaged: Vec<(String, Tensor)> = tensors
            .iter()
            .map(|(name, t)| {
                let mut v = t.to_vec_f32();
                if name == tensor {
                    v[0] = f32::NAN;
                }
                (name.clone(), Tensor::from_vec(v, t.shape()).unwrap())
            })
            .collect();
        let bad = d.join("bad.safetensors");
        weights::save_safetensors(&bad, &damaged, &metadata).unwrap();
        assert_fails(&evaluate(&bad), &[tensor, "NaN", "HINT"]);
    }
}
