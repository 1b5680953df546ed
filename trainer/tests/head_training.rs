//! Unit tests of the training stage (trainer::train): head initialisation,
//! early stopping with best-weight restoring, a diverged (NaN) loss, the
//! saved model file's round trip, and determinism (same seed, same losses).
//!
//! Data here is synthetic and small (drawn from the seeded `engine::rng`),
//! so each test runs in well under a second, except the model-file round
//! trip, which writes a full-size seeded ResNet50.

use engine::rng::Rng;
use engine::Tensor;
use std::sync::atomic::AtomicBool;
use trainer::train::{
    fit_head, load_model, model_file, save_model, EpochMetrics, FitConfig, Head, HeadKind,
    LrSchedule, ModelMeta, Rows, StopReason,
};

/// A temporary folder unique to this test process and `name`.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("thaw-head-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `n` rows of `dim` features in 3 classes: class k has mean +2 on feature
/// k, plus uniform noise in [-1, 1) everywhere. Learnable, not trivially.
fn blobs(n: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut rng = Rng::new(seed, 1);
    let mut x = Vec::with_capacity(n * dim);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let k = (i % 3) as u8;
        for j in 0..dim {
            let centre = if j == k as usize { 2.0 } else { 0.0 };
            x.push((centre + rng.uniform(-1.0, 1.0)) as f32);
        }
        y.push(k);
    }
    (x, y)
}

/// A patience no run reaches: early stopping never triggers.
const NEVER: usize = usize::MAX;

fn config(epochs: usize, patience: usize, seed: u64) -> FitConfig {
    FitConfig {
        epochs,
        batch_size: 16,
        lr: 1e-2,
        schedule: LrSchedule::Cosine,
        patience,
        seed,
    }
}

fn run(
    head: &Head,
    train: &Rows,
    val: &Rows,
    cfg: &FitConfig,
) -> (trainer::train::FitOutcome, Vec<Vec<(String, Tensor)>>) {
    let mut snapshots = Vec::new();
    let outcome = fit_head(
        head,
        train,
        val,
        cfg,
        &AtomicBool::new(false),
        &mut |_, _| {
            snapshots.push(head.named_tensors());
            Ok(())
        },
    )
    .expect("training runs");
    (outcome, snapshots)
}

fn values(t: &[(String, Tensor)]) -> Vec<(String, Vec<f32>)> {
    t.iter().map(|(n, t)| (n.clone(), t.to_vec_f32())).collect()
}

#[test]
fn head_starts_as_keras_glorot_uniform_with_zero_biases() {
    let head = Head::new(HeadKind::Mlp, 2048, 10, 7).unwrap();
    let params = head.params();
    let names: Vec<&str> = params.iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        [
            "head_dense1/kernel",
            "head_dense1/bias",
            "head_dense2/kernel",
            "head_dense2/bias"
        ]
    );
    for (p, fan_in, fan_out) in [(&params[0], 2048, 256), (&params[2], 256, 10)] {
        assert_eq!(p.shape(), vec![fan_in, fan_out]);
        let v = p.value().to_vec_f64();
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(max <= limit, "{}: |w| up to {max}, limit {limit}", p.name());
        assert!(
            max > 0.98 * limit,
            "{}: |w| only up to {max} of {limit}",
            p.name()
        );
        // U(-l, l): mean 0, variance l²/3 (standard errors: l/sqrt(3n), ~l²·0.9/sqrt(n)).
        assert!(
            mean.abs() < 5.0 * limit / (3.0 * n).sqrt(),
            "{}: mean {mean}",
            p.name()
        );
        let expected = limit * limit / 3.0;
        assert!(
            (var - expected).abs() < 5.0 * 0.9 * limit * limit / n.sqrt(),
            "{}: variance {var}, expected {expected}",
            p.name()
        );
    }
    for b in [&params[1], &params[3]] {
        assert!(
            b.value().to_vec_f32().iter().all(|&x| x == 0.0),
            "{}",
            b.name()
        );
    }
    // Same seed, same head; another seed, another head.
    let again = Head::new(HeadKind::Mlp, 2048, 10, 7).unwrap();
    let other = Head::new(HeadKind::Mlp, 2048, 10, 8).unwrap();
    assert_eq!(
        values(&head.named_tensors()),
        values(&again.named_tensors())
    );
    assert_ne!(
        values(&head.named_tensors()),
        values(&other.named_tensors())
    );

    let linear = Head::new(HeadKind::Linear, 512, 10, 7).unwrap();
    let shapes: Vec<Vec<usize>> = linear.params().iter().map(|p| p.shape()).collect();
    assert_eq!(shapes, vec![vec![512, 10], vec![10]]);
}

#[test]
fn head_rejects_bad_input_with_an_error() {
    let head = Head::new(HeadKind::Mlp, 8, 3, 0).unwrap();
    let x = Tensor::zeros(&[4, 9], engine::DType::F32);
    let e = head.forward(&x, false).unwrap_err().to_string();
    assert!(e.contains("[4, 9]") && e.contains("[n, 8]"), "{e}");
    assert!(Head::new(HeadKind::Mlp, 8, 1, 0).is_err());
    assert!(Head::new(HeadKind::Linear, 0, 3, 0).is_err());
}

#[test]
fn training_learns_and_the_same_seed_gives_the_same_losses() {
    let dim = 6;
    let (x, y) = blobs(240, dim, 1);
    let (vx, vy) = blobs(60, dim, 2);
    let train = Rows::new(&x, &y, dim).unwrap();
    let val = Rows::new(&vx, &vy, dim).unwrap();
    let losses = |seed: u64| -> Vec<EpochMetrics> {
        let head = Head::new(HeadKind::Mlp, dim, 3, seed).unwrap();
        run(&head, &train, &val, &config(6, NEVER, seed)).0.history
    };
    let a = losses(3);
    let b = losses(3);
    let c = losses(4);
    assert_eq!(a.len(), 6);
    let bits = |h: &[EpochMetrics]| -> Vec<(u64, u64, u64)> {
        h.iter()
            .map(|m| {
                (
                    m.loss.to_bits(),
                    m.val_loss.to_bits(),
                    m.train_acc.to_bits(),
                )
            })
            .collect()
    };
    assert_eq!(bits(&a), bits(&b), "same seed, different losses");
    assert_ne!(bits(&a), bits(&c), "another seed gave the very same losses");
    // It learns: the loss falls and validation accuracy is far above chance (1/3).
    assert!(a.last().unwrap().loss < 0.6 * a[0].loss, "{a:?}");
    assert!(
        a.iter().map(|m| m.val_acc).fold(0.0, f64::max) > 0.8,
        "{a:?}"
    );
}

#[test]
fn early_stopping_restores_the_best_epochs_weights() {
    let dim = 6;
    let (x, y) = blobs(240, dim, 5);
    // Validation labels that have nothing to do with the features: accuracy
    // wanders around chance, so early stopping must trigger.
    let (vx, _) = blobs(90, dim, 6);
    let mut rng = Rng::new(9, 3);
    let vy: Vec<u8> = (0..90).map(|_| rng.below(3) as u8).collect();
    let train = Rows::new(&x, &y, dim).unwrap();
    let val = Rows::new(&vx, &vy, dim).unwrap();
    let head = Head::new(HeadKind::Mlp, dim, 3, 11).unwrap();
    let (outcome, snapshots) = run(&head, &train, &val, &config(40, 3, 11));

    assert_eq!(
        outcome.stop,
        StopReason::EarlyStopped,
        "{:?}",
        outcome.history
    );
    let h = &outcome.history;
    assert!(h.len() < 40);
    let best_acc = h.iter().map(|m| m.val_acc).fold(f64::MIN, f64::max);
    let best_epoch = h.iter().position(|m| m.val_acc == best_acc).unwrap() + 1;
    assert_eq!(outcome.best_epoch, Some(best_epoch));
    assert_eq!(outcome.best_val_acc, best_acc);
    // Stopped exactly `patience` epochs after the best one, which is not the last.
    assert_eq!(h.len(), best_epoch + 3);
    let restored = values(&head.named_tensors());
    assert_eq!(restored, values(&snapshots[best_epoch - 1]));
    assert_ne!(restored, values(snapshots.last().unwrap()));
    // And the restored head scores the best accuracy again.
    let (_, acc) = trainer::train::fit::evaluate_rows(&head, &val, 64).unwrap();
    assert_eq!(acc, best_acc);
}

#[test]
fn a_nan_loss_stops_training_with_a_clear_error() {
    let dim = 4;
    let (mut x, y) = blobs(64, dim, 7);
    let (vx, vy) = blobs(30, dim, 8);
    x[5 * dim + 2] = f32::NAN;
    let train = Rows::new(&x, &y, dim).unwrap();
    let val = Rows::new(&vx, &vy, dim).unwrap();
    let head = Head::new(HeadKind::Linear, dim, 3, 0).unwrap();
    let mut epochs = 0;
    let err = fit_head(
        &head,
        &train,
        &val,
        &config(3, NEVER, 0),
        &AtomicBool::new(false),
        &mut |_, _| {
            epochs += 1;
            Ok(())
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("diverged") && err.contains("epoch 1"), "{err}");
    assert!(err.contains("lower the learning rate"), "{err}");
    assert_eq!(epochs, 0, "no epoch may finish after a NaN loss");

    // A learning rate that blows the weights up ends the same way, not in a panic.
    let (x, y) = blobs(64, dim, 7);
    let train = Rows::new(&x, &y, dim).unwrap();
    let head = Head::new(HeadKind::Mlp, dim, 3, 0).unwrap();
    let mut cfg = config(50, NEVER, 0);
    cfg.lr = 1e35;
    cfg.schedule = LrSchedule::Constant;
    let r = fit_head(
        &head,
        &train,
        &val,
        &cfg,
        &AtomicBool::new(false),
        &mut |_, _| Ok(()),
    );
    let err = r.expect_err("lr 1e35 must diverge").to_string();
    assert!(err.contains("diverged"), "{err}");
}

#[test]
fn a_raised_stop_flag_ends_training_after_the_current_batch() {
    let dim = 4;
    let (x, y) = blobs(64, dim, 1);
    let (vx, vy) = blobs(30, dim, 2);
    let train = Rows::new(&x, &y, dim).unwrap();
    let val = Rows::new(&vx, &vy, dim).unwrap();
    let head = Head::new(HeadKind::Linear, dim, 3, 0).unwrap();
    let outcome = fit_head(
        &head,
        &train,
        &val,
        &config(5, NEVER, 0),
        &AtomicBool::new(true),
        &mut |_, _| Ok(()),
    )
    .unwrap();
    assert_eq!(outcome.stop, StopReason::Interrupted);
    assert!(outcome.history.is_empty());
}

#[test]
fn model_file_round_trip_keeps_metadata_and_every_weight() {
    let dir = temp_dir("roundtrip");
    let backbone = model_file::build_backbone("resnet50", None).unwrap();
    let seeded = weights::seeded::generate(&backbone.weight_spec(), 21);
    backbone.load(seeded).unwrap();
    let (rows, _) = blobs(10, 2048, 3);
    let head = Head::new(HeadKind::Mlp, 2048, 3, 5)
        .unwrap()
        .adapt(&rows)
        .unwrap();
    let meta = ModelMeta {
        model: "resnet50".into(),
        alpha: None,
        classes: vec!["cat".into(), "dog, big".into(), "\"quoted\"".into()],
        image_size: 48,
        input_side: 32,
        crop_to_aspect_ratio: false,
        head: HeadKind::Mlp,
        tta: true,
        standardize: true,
        val_accuracy: Some(0.5),
    };
    let path = dir.join("m.safetensors");
    save_model(&path, backbone.as_ref(), &head, &meta).unwrap();

    let loaded = load_model(&path).unwrap();
    assert_eq!(loaded.meta, meta);
    assert_eq!(loaded.backbone.name(), "resnet50");
    assert_eq!(
        values(&loaded.backbone.named_tensors()),
        values(&backbone.named_tensors())
    );
    assert_eq!(
        values(&loaded.head.named_tensors()),
        values(&head.named_tensors())
    );
    assert!(
        loaded.backbone.trainable_params().is_empty(),
        "a loaded backbone is frozen"
    );

    // The raw file is plain safetensors with the documented metadata.
    let (tensors, map) = weights::load_safetensors(&path).unwrap();
    assert_eq!(map.get("preprocessing").map(String::as_str), Some("caffe"));
    assert_eq!(map.get("head").map(String::as_str), Some("mlp"));
    assert_eq!(map.get("image_size").map(String::as_str), Some("48"));
    assert!(tensors.iter().any(|(n, _)| n == "head_dense1/kernel"));
    assert!(tensors.iter().any(|(n, _)| n == "head_norm/variance"));
    assert!(tensors
        .iter()
        .any(|(n, _)| n == "conv5_block3_3_bn/moving_variance"));

    // A backbone weights file without model metadata is refused with a hint.
    let plain = dir.join("plain.safetensors");
    weights::save_safetensors(&plain, &head.named_tensors(), &Default::default()).unwrap();
    let e = load_model(&plain)
        .err()
        .expect("not a model file")
        .to_string();
    assert!(e.contains("not a model saved by `trainer train`"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
