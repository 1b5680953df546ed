//! Sizes that cannot fit are refused before anything is allocated, with an
//! error that says what fits, never an aborted process: the real binary on
//! small inputs (MobileNet alpha 0.25 with seeded weights, a few random
//! CIFAR-10 images).
//!
//! - `--image-size 100000` to `train` and `extract`;
//! - a batch no memory holds (`extract --image-size 2048 --batch-size 10^8`);
//! - a model file that claims `image_size` 100000 (`predict`, `evaluate`).

mod common;

use common::{
    model_file_with_size, png, random_cifar, refused, run_trainer, s, small_weights, TempDir,
    SMALL_MODEL,
};

#[test]
fn huge_image_size_flags_are_refused_before_any_allocation() {
    let dir = TempDir::new("huge-sizes");
    let d = dir.path();
    let (w, data) = (small_weights(d, 3), random_cifar(d, 4, 4));
    let cache = d.join("cache");
    let base = |cmd: &'static str| {
        let mut v = vec![cmd];
        v.extend(
            SMALL_MODEL
                .iter()
                .filter(|&&a| a != "--image-size" && a != "32"),
        );
        v
    };
    let out = d.join("out.safetensors");
    let mut args = base("train");
    args.extend(["--weights", s(&w), "--data", s(&data), "--out", s(&out)]);
    args.extend(["--image-size", "100000"]);
    refused(run_trainer(&args, &cache), &["--image-size 100000", "2048"]);

    let npy = d.join("f.npy");
    let batch = data.join("test_batch.bin");
    let mut args = base("extract");
    args.extend(["--weights", s(&w), "--data", s(&batch), "--pooling", "avg"]);
    args.extend(["--out", s(&npy), "--image-size", "100000"]);
    refused(run_trainer(&args, &cache), &["--image-size 100000", "2048"]);
    // A size that is accepted, with a batch no memory holds: what fits.
    let mut args = base("extract");
    args.extend(["--weights", s(&w), "--data", s(&batch), "--pooling", "avg"]);
    args.extend(["--out", s(&npy), "--image-size", "2048"]);
    args.extend(["--batch-size", "100000000"]);
    refused(
        run_trainer(&args, &cache),
        &["needs at least", "What fits: at most --batch-size"],
    );

    assert!(!out.exists() && !npy.exists());
}

#[test]
fn a_model_file_claiming_a_huge_size_is_refused() {
    let dir = TempDir::new("huge-model-file");
    let d = dir.path();
    let data = random_cifar(d, 4, 4);
    let cache = d.join("cache");
    let model = model_file_with_size(d, 100_000);
    let image = d.join("x.png");
    png(&image);
    let args = [
        "predict",
        "--device",
        "cpu",
        "--model-file",
        s(&model),
        s(&image),
    ];
    refused(run_trainer(&args, &cache), &["'image_size' is 100000"]);
    let args = ["evaluate", "--device", "cpu", "--model-file", s(&model)];
    let mut args = args.to_vec();
    args.extend(["--data", s(&data)]);
    refused(run_trainer(&args, &cache), &["'image_size' is 100000"]);
}
