//! Fine-tuning (`--fine-tune block5` for VGG16, `--fine-tune conv5` for
//! ResNet50, and the MobileNets' and EfficientNet-Lite0's last blocks) on a small subset of real CIFAR-10 images (30 training and 10
//! test images per class from `../shared/data/cifar10-jpeg.tar.xz`) at
//! 32 px, with seeded full-size backbones (`weights::seeded`; ImageNet
//! weights cannot be downloaded here), one epoch.
//!
//! Through the library (`train::fine_tune::fine_tune`, started from a best
//! validation accuracy of -inf so that the epoch is always kept and saved),
//! for both backbones, the saved model file is compared tensor by tensor
//! with the seeded weights the run started from:
//! - every trainable tensor of the fine-tuned block (kernels, biases, batch
//!   norm gamma and beta) changed;
//! - every tensor before the block is bit-identical (frozen);
//! - every BatchNormalization moving mean and variance is bit-identical,
//!   the fine-tuned block's included (batch norm stays in inference mode);
//! - the reloaded file reproduces the validation accuracy the epoch
//!   reported, and `evaluate` on it the in-memory model's test accuracy.
//!
//! Through the `trainer` binary (`train --fine-tune block5`, VGG16): the
//! epoch is kept only if it beats the head-only model on validation, so the
//! test reads which happened and checks it exactly (block changed, or
//! restored bit for bit); the layers before block5 are bit-identical either
//! way, and `trainer evaluate` on the saved file prints the very accuracy
//! and correct count of the run's summary.
//!
//! Without the archive each test prints SKIPPED.

mod common;

use common::{accuracy_line, archive, trainer, unpack_subset, TempDir};
use std::time::Instant;

/// The bits of a tensor's values, for exact comparison.
fn bits(t: &engine::Tensor) -> Vec<u32> {
    t.to_vec_f32().iter().map(|v| v.to_bits()).collect()
}

/// Trains `model` with `--fine-tune block` and checks the saved file
/// against the seeded weights (see the module docs).
fn cli_case(model: &str, block: &str) {
    let Some(archive) = archive() else {
        common::skipped(format_args!(
            "../shared/data/cifar10-jpeg.tar.xz not found beside the repository"
        ));
        return;
    };
    let t0 = Instant::now();
    let dir = TempDir::new(&format!("fine-tune-{model}"));
    let data = unpack_subset(&archive, dir.path());

    let backbone = trainer::train::model_file::build_backbone(model, None).unwrap();
    let seeded = weights::seeded::generate(&backbone.weight_spec(), 77);
    let weights_file = dir.path().join(format!("{model}-seeded.safetensors"));
    weights::save_safetensors(&weights_file, &seeded, &Default::default()).unwrap();
    drop(backbone);

    let cache = dir.path().join("cache");
    let out = dir.path().join("ft.safetensors");
    let (w, d, o) = (
        weights_file.to_str().unwrap(),
        data.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let (stdout, stderr) = trainer(
        &[
            "train",
            "--model",
            model,
            "--weights",
            w,
            "--data",
            d,
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--lr",
            "1e-6",
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
            block,
            "--fine-tune-epochs",
            "1",
            "--fine-tune-lr",
            "1e-3",
            "--device",
            "cpu",
            "--out",
            o,
        ],
        &cache,
    );
    let train_secs = t0.elapsed().as_secs_f64();
    eprintln!("{model} --fine-tune {block}: {train_secs:.1} s\n{stdout}\n{stderr}");
    // Whether the fine-tuning epoch beat the head-only model on validation
    // (then its weights are saved) or not (then the weights from before
    // fine-tuning are restored and saved): both are checked exactly below.
    let kept = stderr.contains("fine-tuning: best epoch 2");
    assert!(
        kept || stderr.contains("fine-tuning: no epoch improved"),
        "{stderr}"
    );
    let metrics = std::fs::read_to_string(dir.path().join("ft.metrics.csv")).unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("2,fine-tune,")),
        "{metrics}"
    );

    // The saved file against the seeded weights, tensor by tensor.
    let (saved, _) = weights::load_safetensors(&out).unwrap();
    let saved: std::collections::BTreeMap<String, engine::Tensor> = saved.into_iter().collect();
    assert!(
        saved.keys().any(|k| k.starts_with("head_")),
        "no head in {:?}",
        saved.keys()
    );
    let (changed, frozen, stats) = check_weights(&seeded, &saved, block, kept);
    eprintln!(
        "{model}: fine-tuning kept: {kept}; {changed} tensors of {block} checked, {frozen} \
         earlier tensors and {stats} moving statistics bit-identical"
    );

    // Reload and evaluate: the accuracy the run reported.
    let reported = accuracy_line(stdout.split("== summary ==").nth(1).expect("summary"));
    let (eval_out, _) = trainer(
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
    let evaluated = accuracy_line(&eval_out);
    assert_eq!(evaluated, reported, "evaluate disagrees with train");
    // The run record: the fine-tuning's block, epoch, outcome, and the test accuracy.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ft.run.json")).unwrap()).unwrap();
    let ft = &record["fine_tuning"];
    assert_eq!(
        (&ft["block"], &ft["epochs"]),
        (&block.into(), &1.into()),
        "{ft}"
    );
    assert_eq!(ft["improved"], kept, "{ft}");
    let test = &record["accuracy"]["test"];
    assert_eq!(
        (test["correct"].as_u64(), test["images"].as_u64()),
        (Some(reported.1 as u64), Some(reported.2 as u64))
    );
    assert_eq!(reported.2, 100);
    eprintln!(
        "{model}: test accuracy {} reproduced by evaluate; {:.1} s in all",
        reported.0,
        t0.elapsed().as_secs_f64()
    );
}

/// Compares the weights `now` (by name) with the seeded `start`: trainable
/// tensors of `block` and after it changed (or, when `block_changed` is false, all
/// bit-identical: the weights from before fine-tuning were restored),
/// everything before it and every batch norm moving statistic bit-identical.
/// Returns (block tensors, earlier tensors, moving statistics).
fn check_weights(
    start: &[(String, engine::Tensor)],
    now: &std::collections::BTreeMap<String, engine::Tensor>,
    block: &str,
    block_changed: bool,
) -> (usize, usize, usize) {
    let (mut changed, mut frozen, mut stats) = (0, 0, 0);
    // `start` is in Keras order: `block` and everything after it (as
    // `set_trainable_from` unfreezes: MobileNet's conv_pw_13 after
    // conv_dw_13, MobileNetV2's Conv_1 after block_16) is trainable.
    let mut in_block = false;
    for (name, before) in start {
        in_block |= name.starts_with(block);
        let after = now
            .get(name)
            .unwrap_or_else(|| panic!("the saved model lacks {name}"));
        assert_eq!(after.shape(), before.shape(), "{name}");
        let same = bits(after) == bits(before);
        if name.ends_with("/moving_mean") || name.ends_with("/moving_variance") {
            assert!(same, "{name}: batch norm moving statistic changed");
            stats += 1;
        } else if in_block {
            if block_changed {
                assert!(!same, "{name}: in the fine-tuned block but unchanged");
            } else {
                assert!(
                    same,
                    "{name}: fine-tuning was not kept, yet the block changed"
                );
            }
            changed += 1;
        } else {
            assert!(same, "{name}: before {block} but changed");
            frozen += 1;
        }
    }
    assert!(
        changed > 0 && frozen > 0,
        "{changed} changed, {frozen} frozen"
    );
    (changed, frozen, stats)
}

/// Fine-tunes `block` of a seeded `model` through the library
/// (`train::fine_tune::fine_tune`), one epoch, saving the model as `train`
/// does; returns the seeded weights and the saved file's tensors.
fn fine_tune_library_case(model: &str, block: &str) -> Option<(usize, usize, usize)> {
    use trainer::data::holdout::holdout;
    use trainer::data::{Split, IMAGE_BYTES};
    use trainer::train::fine_tune::{fine_tune, probability_scores, ImageRows, TuneRows};
    use trainer::train::{
        evaluate, feature_cache, load_model, save_model, FitConfig, Head, HeadKind, LrSchedule,
        ModelMeta,
    };
    let Some(archive) = archive() else {
        common::skipped(format_args!(
            "../shared/data/cifar10-jpeg.tar.xz not found beside the repository"
        ));
        return None;
    };
    let t0 = Instant::now();
    let dir = TempDir::new(&format!("fine-tune-lib-{model}"));
    let data = unpack_subset(&archive, dir.path());
    let train_ds = trainer::data::load(&data, Split::Train).unwrap();
    let test_ds = trainer::data::load(&data, Split::Test).unwrap();
    assert_eq!((train_ds.len(), test_ds.len()), (300, 100));

    let backbone = trainer::train::model_file::build_backbone(model, None).unwrap();
    let seeded = weights::seeded::generate(&backbone.weight_spec(), 77);
    backbone.load(seeded.clone()).unwrap();
    let dim = backbone.output_shape(1, 32, 32).unwrap()[1];
    // Seeded features are large with a common offset: standardize them (as
    // `--standardize` does), adapted on the features of 64 training images.
    let sample = feature_cache::extract_features(
        backbone.as_ref(),
        &train_ds.images[..64 * IMAGE_BYTES],
        32,
        32,
        false,
        "adapt",
        None,
        None,
    )
    .unwrap();
    let head = Head::new(HeadKind::Mlp, dim, 10, 5)
        .unwrap()
        .adapt(&sample)
        .unwrap();

    let (train_idx, val_idx) = holdout(train_ds.len(), 0.2, 3).unwrap();
    let gather = |idx: &[usize]| {
        let mut px = Vec::new();
        for &i in idx {
            px.extend_from_slice(train_ds.image(i));
        }
        (
            px,
            idx.iter().map(|&i| train_ds.labels[i]).collect::<Vec<u8>>(),
        )
    };
    let (tpx, tly) = gather(&train_idx);
    let (vpx, vly) = gather(&val_idx);
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 16,
        lr: 1e-4,
        schedule: LrSchedule::Cosine,
        patience: 5,
        seed: 3,
    };
    let out = dir.path().join("ft.safetensors");
    let meta = ModelMeta {
        model: model.to_string(),
        alpha: None,
        classes: train_ds.classes.clone(),
        image_size: 32,
        input_side: 32,
        crop_to_aspect_ratio: false,
        head: HeadKind::Mlp,
        tta: false,
        standardize: true,
        val_accuracy: None,
    };
    let mut reported = Vec::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // A start of -inf: the one epoch always counts as an improvement, so its
    // weights are kept and saved whatever its validation accuracy.
    let outcome = fine_tune(
        backbone.as_ref(),
        &head,
        block,
        &TuneRows::Images(ImageRows {
            images: (&tpx).into(),
            labels: &tly,
            flips: false,
        }),
        &TuneRows::Images(ImageRows {
            images: (&vpx).into(),
            labels: &vly,
            flips: false,
        }),
        32,
        &cfg,
        1,
        f64::NEG_INFINITY,
        &stop,
        &mut |m, improved| {
            assert!(improved);
            reported.push(m.val_acc);
            save_model(&out, backbone.as_ref(), &head, &meta)
        },
    )
    .unwrap();
    assert_eq!(outcome.best_epoch, Some(1));
    assert_eq!(outcome.history.len(), 1);
    assert!(outcome.history[0].loss.is_finite());
    assert!(
        backbone.trainable_params().is_empty(),
        "the backbone is frozen again after fine-tuning"
    );

    // The saved file against the seeded weights.
    let (saved, _) = weights::load_safetensors(&out).unwrap();
    let saved: std::collections::BTreeMap<String, engine::Tensor> = saved.into_iter().collect();
    let counts = check_weights(&seeded, &saved, block, true);
    // The in-memory model is the saved one (the best epoch restored).
    for (name, t) in backbone.named_tensors() {
        assert_eq!(bits(&t), bits(&saved[&name]), "{name}");
    }

    // Reloaded: the validation accuracy the run reported, and evaluate's
    // test accuracy equals the in-memory model's.
    let loaded = load_model(&out).unwrap();
    let probs = evaluate::image_probabilities(
        loaded.backbone.as_ref(),
        &loaded.head,
        &vpx,
        32,
        32,
        false,
        "reloaded validation",
    )
    .unwrap();
    let (_, val_acc) = probability_scores(&probs, &vly, 10);
    assert_eq!(val_acc, reported[0], "reloaded model's validation accuracy");
    let in_memory = evaluate::image_probabilities(
        backbone.as_ref(),
        &head,
        &test_ds.images,
        32,
        64,
        false,
        "in-memory test",
    )
    .unwrap();
    let expected = evaluate::Evaluation::from_probabilities(&in_memory, &test_ds.labels, 10);
    let evaluated = evaluate::run_evaluate(&trainer::cli::EvaluateArgs {
        model_file: out.clone(),
        alpha: None,
        data: Some(data.clone()),
        dataset: None,
        split: Split::Test,
        device: trainer::cli::DeviceChoice::Cpu,
        precision: trainer::cli::PrecisionChoice::F32,
        batch_size: 64,
        images: Default::default(),
    })
    .unwrap();
    assert_eq!(evaluated, expected, "evaluate of the reloaded file");
    // --precision bf16: the backbone's convs really run in bf16 (the result
    // differs from f32), and the head still reads its features.
    let in_bf16 = evaluate::run_evaluate(&trainer::cli::EvaluateArgs {
        model_file: out.clone(),
        alpha: None,
        data: Some(data.clone()),
        dataset: None,
        split: Split::Test,
        device: trainer::cli::DeviceChoice::Cpu,
        precision: trainer::cli::PrecisionChoice::Bf16,
        batch_size: 64,
        images: Default::default(),
    })
    .unwrap();
    // What it runs: the same model with bf16 convolutions gives other
    // probabilities (a 16-bit rounding apart), mostly the same classes.
    let bf16_model =
        evaluate::load_for_inference(&out, None, engine::Device::Cpu, engine::Precision::Bf16)
            .unwrap();
    let bf16_probs = evaluate::image_probabilities(
        bf16_model.backbone.as_ref(),
        &bf16_model.head,
        &test_ds.images,
        32,
        64,
        false,
        "bf16 test",
    )
    .unwrap();
    assert_ne!(
        bf16_probs, in_memory,
        "bf16 convolutions gave f32's probabilities"
    );
    let max_diff = bf16_probs
        .iter()
        .zip(&in_memory)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!(
        "{model}: bf16 vs f32 probabilities: max |Δ| {max_diff:.2e}; accuracy f32 {:.4}, bf16 {:.4}",
        expected.accuracy, in_bf16.accuracy
    );
    assert_eq!(
        evaluate::Evaluation::from_probabilities(&bf16_probs, &test_ds.labels, 10),
        in_bf16,
        "evaluate --precision bf16 is the bf16 model's evaluation"
    );
    assert!(
        (in_bf16.accuracy - expected.accuracy).abs() <= 0.05,
        "bf16 features moved the accuracy from {} to {}",
        expected.accuracy,
        in_bf16.accuracy
    );
    eprintln!(
        "{model} library fine-tune of {block}: validation accuracy {val_acc:.4} reproduced, \
         test accuracy {:.4} reproduced by evaluate; {:.1} s",
        evaluated.accuracy,
        t0.elapsed().as_secs_f64()
    );
    Some(counts)
}

#[test]
fn vgg16_fine_tune_block5_moves_only_block5() {
    if let Some((changed, frozen, stats)) = fine_tune_library_case("vgg16", "block5") {
        // block5_conv1..3: kernel and bias each; 20 tensors before; no batch norm.
        assert_eq!((changed, frozen, stats), (6, 20, 0));
    }
}

#[test]
fn resnet50_fine_tune_conv5_moves_only_conv5_and_keeps_bn_statistics() {
    if let Some((changed, frozen, stats)) = fine_tune_library_case("resnet50", "conv5") {
        // 53 batch norm layers, two moving statistics each, all unchanged;
        // conv5: 10 convolutions (kernel, bias) and 10 batch norms (gamma, beta).
        assert_eq!(stats, 2 * 53);
        assert_eq!(changed, 40);
        assert!(frozen > 0);
    }
}

#[test]
fn mobilenet_fine_tune_conv_dw_13_moves_only_the_last_pair() {
    if let Some((changed, frozen, stats)) = fine_tune_library_case("mobilenet", "conv_dw_13") {
        // 27 batch norms (conv1_bn, then a depthwise and a pointwise one per
        // block), two moving statistics each, all unchanged; conv_dw_13 and
        // conv_pw_13: a kernel (no bias) and a batch norm's gamma and beta each.
        assert_eq!(stats, 2 * 27);
        assert_eq!(changed, 6);
        assert!(frozen > 0);
    }
}

#[test]
fn mobilenet_v2_fine_tune_block_16_moves_only_block_16_and_conv_1() {
    if let Some((changed, frozen, stats)) = fine_tune_library_case("mobilenet_v2", "block_16") {
        // 52 batch norms (bn_Conv1, 2 in expanded_conv, 3 in each of
        // block_1..block_16, Conv_1_bn), two moving statistics each, all
        // unchanged; block_16's expand, depthwise and project and Conv_1: a
        // kernel (no bias) and a batch norm's gamma and beta each.
        assert_eq!(stats, 2 * 52);
        assert_eq!(changed, 12);
        assert!(frozen > 0);
    }
}

#[test]
fn efficientnet_lite0_fine_tune_blocks_15_moves_only_the_last_stage_and_head() {
    if let Some((changed, frozen, stats)) =
        fine_tune_library_case("efficientnet_lite0", "_blocks.15")
    {
        // 49 batch norms (_bn0, 2 in _blocks.0, 3 in each of _blocks.1..15,
        // _bn1), two moving statistics each, all unchanged; _blocks.15's
        // expand, depthwise and project convs and _conv_head: a kernel (no
        // bias) and a batch norm's gamma and beta each.
        assert_eq!(stats, 2 * 49);
        assert_eq!(changed, 12);
        assert!(frozen > 0);
    }
}

#[test]
fn vgg16_cli_fine_tune_block5_saves_a_model_that_evaluate_reproduces() {
    cli_case("vgg16", "block5");
}
