//! `--flip` and `--tta` through the real `trainer` binary, on a small subset
//! of real CIFAR-10 images (30 training and 10 test images per class from
//! `../shared/data/cifar10-jpeg.tar.xz`), VGG16 with seeded weights at 32 px.
//!
//! - `--flip`: the feature cache gains a `-train-flip` file of the same
//!   shape as the training features, whose rows equal the features of the
//!   horizontally flipped images computed here directly (the flip written
//!   out in this file, then the backbone); the head trains on twice the rows.
//! - `--tta`: the saved model says so, and its probabilities are the mean of
//!   those of the image and of its flip, each computed here directly
//!   (backbone, then head); the test accuracy the run reports (from cached
//!   features of the test images and their flips) is the one `trainer
//!   evaluate` computes end to end from the reloaded file.
//!
//! Without the archive it prints SKIPPED.

mod common;

use common::{archive, entries, trainer, unpack_subset, TempDir};
use engine::Tensor;
use trainer::data::{Split, IMAGE_BYTES};
use trainer::npy::{self, NpyData};
use trainer::train::feature_cache::image_batch;

/// The `accuracy: 0.1234 (12 of 100 images)` line of `text`.
fn accuracy_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("accuracy: ") || l.starts_with("test accuracy: "))
        .unwrap_or_else(|| panic!("no accuracy line in:\n{text}"))
        .trim_start_matches("test ")
        .to_string()
}

/// 32x32 RGB images mirrored left to right, written out independently of
/// the trainer's own flip: pixel (y, x) takes pixel (y, 31 - x).
fn mirrored(images: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; images.len()];
    for (i, img) in images.chunks_exact(IMAGE_BYTES).enumerate() {
        for y in 0..32 {
            for x in 0..32 {
                for c in 0..3 {
                    out[i * IMAGE_BYTES + (y * 32 + x) * 3 + c] = img[(y * 32 + (31 - x)) * 3 + c];
                }
            }
        }
    }
    out
}

/// Largest |a - b| over the largest |b|.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn flip_doubles_the_training_rows_and_tta_averages_image_and_flip() {
    let Some(archive) = archive() else {
        common::skipped(format_args!(
            "../shared/data/cifar10-jpeg.tar.xz not found beside the repository"
        ));
        return;
    };
    let t0 = std::time::Instant::now();
    let dir = TempDir::new("augment");
    let data = unpack_subset(&archive, dir.path());
    let backbone = trainer::train::model_file::build_backbone("vgg16", None).unwrap();
    let seeded = weights::seeded::generate(&backbone.weight_spec(), 5);
    let weights_file = dir.path().join("vgg16-seeded.safetensors");
    weights::save_safetensors(&weights_file, &seeded, &Default::default()).unwrap();
    backbone.load(seeded).unwrap();

    let cache = dir.path().join("cache");
    let out = dir.path().join("aug.safetensors");
    let (w, d, o) = (
        weights_file.to_str().unwrap(),
        data.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let (stdout, stderr) = trainer(
        &[
            "train",
            "--model",
            "vgg16",
            "--weights",
            w,
            "--data",
            d,
            "--image-size",
            "32",
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--standardize",
            "--flip",
            "--tta",
            "--seed",
            "4",
            "--device",
            "cpu",
            "--out",
            o,
        ],
        &cache,
    );
    eprintln!(
        "train --flip --tta: {:.1} s\n{stdout}\n{stderr}",
        t0.elapsed().as_secs_f64()
    );
    for what in ["train", "test", "train (flipped)", "test (flipped)"] {
        assert!(
            stderr.contains(&format!("features {what}: computed and cached")),
            "features {what} not extracted:\n{stderr}"
        );
    }
    // 300 training images, 30 held out: 270 images and their 270 flips.
    assert!(
        stderr.contains("on 540 rows (images and their flips)"),
        "{stderr}"
    );

    // The cached flipped features against a direct computation.
    let features_dir = cache.join("features");
    let files = entries(&features_dir);
    assert_eq!(files.len(), 4, "{files:?}");
    let find = |suffix: &str| {
        let name = files
            .iter()
            .find(|f| f.ends_with(suffix))
            .unwrap_or_else(|| panic!("no *{suffix} in {files:?}"));
        let array = npy::read(features_dir.join(name)).unwrap();
        let NpyData::F32(v) = array.data else {
            panic!("{name} is not f32");
        };
        (array.shape, v)
    };
    let (plain_shape, plain) = find("-train.npy");
    let (flip_shape, flipped) = find("-train-flip.npy");
    assert_eq!(plain_shape, [300, 512]);
    assert_eq!(flip_shape, plain_shape);
    let train_ds = trainer::data::load(&data, Split::Train).unwrap();
    // One image of each class (rows 0, 30, ..., 270).
    let picks: Vec<usize> = (0..10).map(|k| 30 * k).collect();
    let mut px = Vec::new();
    for &i in &picks {
        px.extend_from_slice(train_ds.image(i));
    }
    let _guard = engine::no_grad();
    let direct_flip = backbone
        .forward(
            &image_batch(&mirrored(&px), 32, false, models::Preprocessing::Caffe).unwrap(),
            false,
        )
        .unwrap()
        .to_vec_f32();
    let direct_plain = backbone
        .forward(
            &image_batch(&px, 32, false, models::Preprocessing::Caffe).unwrap(),
            false,
        )
        .unwrap()
        .to_vec_f32();
    let rows = |all: &[f32]| -> Vec<f32> {
        picks
            .iter()
            .flat_map(|&i| all[i * 512..(i + 1) * 512].to_vec())
            .collect()
    };
    let (cached_flip, cached_plain) = (rows(&flipped), rows(&plain));
    let flip_err = rel_diff(&cached_flip, &direct_flip);
    let plain_err = rel_diff(&cached_plain, &direct_plain);
    let flip_vs_plain = rel_diff(&cached_flip, &cached_plain);
    eprintln!(
        "cached flipped features vs direct: {flip_err:.2e}; plain: {plain_err:.2e}; \
         flipped vs plain: {flip_vs_plain:.2e}"
    );
    assert!(flip_err < 1e-5, "flipped features differ by {flip_err}");
    assert!(plain_err < 1e-5, "plain features differ by {plain_err}");
    assert!(
        flip_vs_plain > 1e-2,
        "flipped features equal the plain ones ({flip_vs_plain}): no flip happened"
    );

    // TTA: the saved model's probabilities are the mean over image and flip.
    let model = trainer::train::load_model(&out).unwrap();
    assert!(model.meta.tta, "the saved model does not record --tta");
    let test_ds = trainer::data::load(&data, Split::Test).unwrap();
    let picks: Vec<usize> = (0..10).map(|k| 10 * k + 3).collect();
    let mut px = Vec::new();
    for &i in &picks {
        px.extend_from_slice(test_ds.image(i));
    }
    let tta = trainer::train::evaluate::image_probabilities(
        model.backbone.as_ref(),
        &model.head,
        &px,
        32,
        4,
        true,
        "tta",
    )
    .unwrap();
    let probs = |pixels: &[u8]| -> Vec<f32> {
        let x: Tensor = image_batch(pixels, 32, false, models::Preprocessing::Caffe).unwrap();
        let features = model.backbone.forward(&x, false).unwrap();
        model.head.predict_proba(&features).unwrap().to_vec_f32()
    };
    let (p_image, p_flip) = (probs(&px), probs(&mirrored(&px)));
    let expected: Vec<f32> = p_image
        .iter()
        .zip(&p_flip)
        .map(|(a, b)| (a + b) / 2.0)
        .collect();
    let tta_err = rel_diff(&tta, &expected);
    let flip_gap = rel_diff(&p_flip, &p_image);
    eprintln!("TTA vs direct mean: {tta_err:.2e}; image vs flip probabilities: {flip_gap:.2e}");
    assert!(tta_err < 1e-5, "TTA probabilities differ by {tta_err}");
    assert!(
        flip_gap > 1e-3,
        "image and flip give the same probabilities ({flip_gap}): the check above proves nothing"
    );

    // The run's TTA accuracy (cached features) equals evaluate's (end to end).
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
    assert_eq!(accuracy_line(&eval_out), reported);
    assert!(reported.ends_with("of 100 images)"), "{reported}");
    eprintln!("{:.1} s in all", t0.elapsed().as_secs_f64());
}
