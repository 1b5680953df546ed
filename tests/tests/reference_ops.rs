//! Forward values of the engine's ops against Keras 3 (JAX backend) and
//! NumPy: batch norm (inference and training, with the moving-statistics
//! update), bilinear resize, softmax and the cross-entropy loss,
//! broadcasting and concatenation. Expected values:
//! tests/fixtures/ops/ops.txt, written by tests/fixtures/ops/gen_ops.py.
//! Also dropout's mask statistics, and concat's placement of each input and
//! its errors.

use engine::{ops, Tensor};

use tests::{load_ops_fixture as load, OpsFixture as Fixture};

fn tensor(fx: &Fixture, name: &str) -> Tensor {
    let (shape, v) = fx
        .get(name)
        .unwrap_or_else(|| panic!("fixture has no {name}"));
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_vec(v, shape).unwrap()
}

/// Asserts shape equality and |got − want| ≤ tol · max(1, |want|); prints
/// and returns the worst error.
fn compare(fx: &Fixture, name: &str, got: &Tensor, tol: f64) -> f64 {
    let (shape, want) = &fx[name];
    assert_eq!(got.shape(), shape.as_slice(), "{name}: shape");
    let mut worst = 0f64;
    for (i, (g, &w)) in got.to_vec_f64().iter().zip(want).enumerate() {
        // Fixture values are float32 written in their shortest form.
        let w = w as f32 as f64;
        let err = (g - w).abs() / w.abs().max(1.0);
        assert!(
            err <= tol,
            "{name}[{i}]: got {g}, expected {w}, error {err:.2e} > {tol:.0e}"
        );
        worst = worst.max(err);
    }
    eprintln!("{name}: {} values, worst error {worst:.1e}", want.len());
    worst
}

#[test]
fn batch_norm_inference_matches_keras() {
    let fx = load("ops.txt");
    let t = |n: &str| tensor(&fx, &format!("bn_infer/{n}"));
    let y = ops::batch_norm(
        &t("x"),
        &t("gamma"),
        &t("beta"),
        &t("moving_mean"),
        &t("moving_var"),
        1e-3,
    )
    .unwrap();
    compare(&fx, "bn_infer/y", &y, 1e-5);
}

#[test]
fn batch_norm_training_matches_keras_with_moving_update() {
    let fx = load("ops.txt");
    let t = |n: &str| tensor(&fx, &format!("bn_train/{n}"));
    let (y, batch_mean, batch_var) =
        ops::batch_norm_train(&t("x"), &t("gamma"), &t("beta"), 1.001e-5).unwrap();
    compare(&fx, "bn_train/y", &y, 1e-5);
    // The layer's update, as documented on batch_norm_train (momentum 0.99).
    let update = |moving: Tensor, batch: Tensor| {
        let v: Vec<f32> = moving
            .to_vec_f32()
            .iter()
            .zip(batch.to_vec_f32())
            .map(|(m, b)| m * 0.99 + b * (1.0 - 0.99))
            .collect();
        Tensor::from_vec(v, &[3]).unwrap()
    };
    compare(
        &fx,
        "bn_train/new_moving_mean",
        &update(t("moving_mean"), batch_mean),
        1e-6,
    );
    compare(
        &fx,
        "bn_train/new_moving_var",
        &update(t("moving_var"), batch_var),
        1e-6,
    );
}

#[test]
fn bilinear_resize_matches_keras_resizing() {
    let fx = load("ops.txt");
    for (name, h, w) in [
        ("resize_5x7_11x13", 11, 13),
        ("resize_32_48", 48, 48),
        ("resize_7x5_3x4", 3, 4),
    ] {
        let y = ops::bilinear_resize(&tensor(&fx, &format!("{name}/x")), h, w).unwrap();
        // JAX computes the sample positions in f32 (at 32 px one ulp is
        // 4e-6 px) and neighbouring random pixels differ by up to 255, so
        // Keras itself is off the exact formula by up to ~5e-4 here (checked
        // against a float64 NumPy version of the formula while writing this).
        compare(&fx, &format!("{name}/y"), &y, 2e-5);
        // Against our own f64 path the f32 output must be far tighter.
        let x64 = tensor(&fx, &format!("{name}/x"))
            .to_dtype(engine::DType::F64)
            .unwrap();
        let y64 = ops::bilinear_resize(&x64, h, w).unwrap().to_vec_f64();
        for (a, b) in y.to_vec_f64().iter().zip(&y64) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{name}: f32 {a} vs f64 {b}"
            );
        }
    }
}

#[test]
fn softmax_cross_entropy_matches_keras() {
    let fx = load("ops.txt");
    let labels: Vec<usize> = fx["sce/labels"].1.iter().map(|&l| l as usize).collect();
    let loss = ops::softmax_cross_entropy(&tensor(&fx, "sce/logits"), &labels).unwrap();
    compare(&fx, "sce/loss", &loss, 1e-5);
    let y = ops::softmax(&tensor(&fx, "softmax/x")).unwrap();
    compare(&fx, "softmax/y", &y, 1e-6);
}

#[test]
fn cross_entropy_of_huge_logits_is_exact() {
    // exp(1e4) overflows any float: only the log-sum-exp form gets these right.
    let logits = Tensor::from_vec(vec![1e4f32, 0.0, 0.0, 1e4], &[2, 2]).unwrap();
    let right = ops::softmax_cross_entropy(&logits, &[0, 1])
        .unwrap()
        .item()
        .unwrap();
    let wrong = ops::softmax_cross_entropy(&logits, &[1, 0])
        .unwrap()
        .item()
        .unwrap();
    assert_eq!(right, 0.0);
    assert_eq!(wrong, 1e4);
}

#[test]
fn broadcasting_matches_numpy() {
    let fx = load("ops.txt");
    let (a, b) = (tensor(&fx, "bcast/a"), tensor(&fx, "bcast/b"));
    compare(&fx, "bcast/sum", &ops::add(&a, &b).unwrap(), 0.0);
    compare(&fx, "bcast/product", &ops::mul(&a, &b).unwrap(), 0.0);
    compare(&fx, "bcast/sum", &ops::add(&b, &a).unwrap(), 0.0);
}

#[test]
fn concat_matches_keras_concatenate() {
    let fx = load("ops.txt");
    let xs: Vec<Tensor> = (0..3)
        .map(|i| tensor(&fx, &format!("concat/x{i}")))
        .collect();
    compare(&fx, "concat/y", &ops::concat(&xs).unwrap(), 0.0);
}

#[test]
fn concat_places_each_input_in_its_channels() {
    // Value 100·input + 10·row + channel names where each element came from.
    let part = |k: usize, rows: usize, c: usize| {
        let v: Vec<f64> = (0..rows * c)
            .map(|i| (100 * k + 10 * (i / c) + i % c) as f64)
            .collect();
        Tensor::from_vec(v, &[2, rows / 2, c]).unwrap()
    };
    let xs = [part(1, 4, 2), part(2, 4, 3), part(3, 4, 1)];
    let y = ops::concat(&xs).unwrap();
    assert_eq!(y.shape(), [2, 2, 6]);
    let mut want = Vec::new();
    for r in 0..4 {
        for (k, c) in [(1, 2), (2, 3), (3, 1)] {
            want.extend((0..c).map(|ch| (100 * k + 10 * r + ch) as f64));
        }
    }
    assert_eq!(y.to_vec_f64(), want);
    // One input: a copy. Rank 1: the plain join of vectors.
    assert_eq!(
        ops::concat(&xs[..1]).unwrap().to_vec_f64(),
        xs[0].to_vec_f64()
    );
    let (a, b) = (
        Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap(),
        Tensor::from_vec(vec![3.0f32], &[1]).unwrap(),
    );
    assert_eq!(ops::concat(&[a, b]).unwrap().to_vec_f32(), [1.0, 2.0, 3.0]);
}

#[test]
fn concat_rejects_bad_inputs_clearly() {
    let t = |shape: &[usize]| Tensor::zeros(shape, engine::DType::F32);
    let err = |xs: &[Tensor]| ops::concat(xs).unwrap_err().to_string();
    let e = err(&[]);
    assert!(
        e.contains("no tensors") && e.contains("at least one"),
        "{e}"
    );
    let e = err(&[t(&[2, 4, 4, 3]), t(&[2, 4, 5, 3])]);
    assert!(e.contains("input 1") && e.contains("[2, 4, 5, 3]"), "{e}");
    assert!(e.contains("except the last"), "{e}");
    let e = err(&[t(&[2, 4, 4, 3]), t(&[2, 16, 3])]);
    assert!(e.contains("input 1") && e.contains("rank"), "{e}");
    let e = err(&[t(&[]), t(&[])]);
    assert!(e.contains("scalar"), "{e}");
    let e = err(&[t(&[2, 3]), t(&[2, 0])]);
    assert!(e.contains("input 1") && e.contains("zero-sized"), "{e}");
    let e = err(&[t(&[2, 3]), Tensor::zeros(&[2, 1], engine::DType::F64)]);
    assert!(
        e.contains("input 1 is f64") && e.contains("to_dtype"),
        "{e}"
    );
}

#[test]
fn dropout_mask_is_seeded_unbiased_and_scaled() {
    let n = 100_000;
    let x = Tensor::from_vec(vec![1.0f32; n], &[n]).unwrap();
    let rate = 0.3;
    let y = ops::dropout(&x, rate, 5, 0).unwrap().to_vec_f32();
    let kept = y.iter().filter(|&&v| v != 0.0).count();
    let frac = kept as f64 / n as f64;
    assert!(
        (frac - 0.7).abs() < 0.01,
        "kept fraction {frac}, expected 0.7"
    );
    let scale = (1.0 / (1.0 - rate)) as f32;
    assert!(y.iter().all(|&v| v == 0.0 || v == scale));
    // The expected output equals the input (inverted dropout).
    let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    assert!((mean - 1.0).abs() < 0.015, "mean {mean}");
    // Same seed and stream: same mask; another stream: another mask.
    assert_eq!(ops::dropout(&x, rate, 5, 0).unwrap().to_vec_f32(), y);
    assert_ne!(ops::dropout(&x, rate, 5, 1).unwrap().to_vec_f32(), y);
    // Element i is kept iff uniform_f32(seed, stream, i) >= rate.
    for i in 0..1000 {
        let keep = engine::rng::uniform_f32(5, 0, i as u64) >= rate as f32;
        assert_eq!(y[i] != 0.0, keep, "element {i}");
    }
    // Rate 0 is the identity.
    assert_eq!(
        ops::dropout(&x, 0.0, 5, 0).unwrap().to_vec_f32(),
        vec![1.0f32; n]
    );
}
