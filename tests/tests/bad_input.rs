//! Bad input to the engine's ops gives an `Err` that names the op and says
//! what was wrong (with the shapes), never a panic: mismatched shapes, wrong
//! ranks, zero-sized dims, non-finite logits, bad labels, mixed dtypes,
//! arguments out of range.

use engine::{ops, DType, Tensor};

fn t(shape: &[usize]) -> Tensor {
    Tensor::ones(shape, DType::F32)
}

fn t64(shape: &[usize]) -> Tensor {
    Tensor::ones(shape, DType::F64)
}

/// Asserts `r` is an error whose message names `op` and contains every fragment.
#[track_caller]
fn expect_err<T: std::fmt::Debug>(r: engine::Result<T>, op: &str, fragments: &[&str]) {
    let e = r.expect_err("bad input must be an error").to_string();
    assert!(
        e.starts_with(&format!("{op}:")),
        "error does not name {op}: {e}"
    );
    for f in fragments {
        assert!(e.contains(f), "error {e:?} should mention {f:?}");
    }
}

#[test]
fn add_and_mul() {
    expect_err(
        ops::add(&t(&[2, 3]), &t(&[4])),
        "add",
        &["[2, 3]", "[4]", "broadcast"],
    );
    expect_err(
        ops::mul(&t(&[2, 3, 4]), &t(&[3, 1, 3])),
        "mul",
        &["[2, 3, 4]", "[3, 1, 3]"],
    );
    expect_err(ops::add(&t(&[3]), &t64(&[3])), "add", &["f32", "f64"]);
    expect_err(ops::mul(&t(&[3]), &t64(&[3])), "mul", &["f32", "f64"]);
    // Zero-sized dims broadcast like any other size (NumPy): no panic, empty result.
    assert_eq!(ops::add(&t(&[0, 3]), &t(&[3])).unwrap().shape(), &[0, 3]);
    assert_eq!(ops::mul(&t(&[2, 0]), &t(&[0])).unwrap().shape(), &[2, 0]);
    assert_eq!(ops::add(&t(&[0]), &t(&[2, 0])).unwrap().shape(), &[2, 0]);
    expect_err(
        ops::add(&t(&[0, 3]), &t(&[2, 3])),
        "add",
        &["[0, 3]", "[2, 3]"],
    );
}

#[test]
fn batch_norm() {
    let c = t(&[3]);
    expect_err(
        ops::batch_norm(&t(&[3]), &c, &c, &c, &c, 1e-3),
        "batch_norm",
        &["rank 1", "[3]"],
    );
    expect_err(
        ops::batch_norm(&t(&[2, 4]), &c, &c, &c, &c, 1e-3),
        "batch_norm",
        &["gamma", "[3]", "[4]"],
    );
    expect_err(
        ops::batch_norm(&t(&[2, 3]), &c, &t(&[2]), &c, &c, 1e-3),
        "batch_norm",
        &["beta", "[2]"],
    );
    expect_err(
        ops::batch_norm(&t(&[0, 3]), &c, &c, &c, &c, 1e-3),
        "batch_norm",
        &["[0, 3]", "zero-sized"],
    );
    expect_err(
        ops::batch_norm(&t(&[2, 3]), &c, &c, &t64(&[3]), &c, 1e-3),
        "batch_norm",
        &["f32", "f64"],
    );
    expect_err(
        ops::batch_norm(&t(&[2, 3]), &c, &c, &c, &c, -1.0),
        "batch_norm",
        &["epsilon"],
    );
    let negative_var = Tensor::from_vec(vec![1.0f32, -2.0, 1.0], &[3]).unwrap();
    expect_err(
        ops::batch_norm(&t(&[2, 3]), &c, &c, &c, &negative_var, 1e-3),
        "batch_norm",
        &["moving_var[1]"],
    );
}

#[test]
fn batch_norm_train() {
    let c = t(&[3]);
    expect_err(
        ops::batch_norm_train(&t(&[3]), &c, &c, 1e-3),
        "batch_norm_train",
        &["rank 1"],
    );
    expect_err(
        ops::batch_norm_train(&t(&[2, 2, 0, 3]), &c, &c, 1e-3),
        "batch_norm_train",
        &["zero-sized"],
    );
    expect_err(
        ops::batch_norm_train(&t(&[2, 5]), &c, &c, 1e-3),
        "batch_norm_train",
        &["gamma", "[3]", "[5]"],
    );
    expect_err(
        ops::batch_norm_train(&t(&[2, 3]), &t64(&[3]), &c, 1e-3),
        "batch_norm_train",
        &["f32", "f64"],
    );
    expect_err(
        ops::batch_norm_train(&t(&[2, 3]), &c, &c, f64::NAN),
        "batch_norm_train",
        &["epsilon"],
    );
    // A constant channel with epsilon 0 would divide by zero.
    expect_err(
        ops::batch_norm_train(&t(&[2, 3]), &c, &c, 0.0),
        "batch_norm_train",
        &["epsilon"],
    );
}

#[test]
fn bilinear_resize() {
    expect_err(
        ops::bilinear_resize(&t(&[5, 7, 3]), 4, 4),
        "bilinear_resize",
        &["rank 3", "[5, 7, 3]"],
    );
    expect_err(
        ops::bilinear_resize(&t(&[1, 5, 7, 3]), 0, 4),
        "bilinear_resize",
        &["0x4"],
    );
    expect_err(
        ops::bilinear_resize(&t(&[1, 0, 7, 3]), 4, 4),
        "bilinear_resize",
        &["[1, 0, 7, 3]"],
    );
}

#[test]
fn dropout() {
    for rate in [1.0, -0.1, 1.5, f64::NAN] {
        expect_err(
            ops::dropout(&t(&[4]), rate, 0, 0),
            "dropout",
            &["rate", "[0, 1)"],
        );
    }
}

#[test]
fn softmax_cross_entropy() {
    const OP: &str = "softmax_cross_entropy";
    let mut v = vec![0.5f32; 6];
    v[4] = f32::NAN;
    let nan = Tensor::from_vec(v.clone(), &[2, 3]).unwrap();
    expect_err(
        ops::softmax_cross_entropy(&nan, &[0, 1]),
        OP,
        &["non-finite", "index 4"],
    );
    v[4] = f32::INFINITY;
    let inf = Tensor::from_vec(v, &[2, 3]).unwrap();
    expect_err(
        ops::softmax_cross_entropy(&inf, &[0, 1]),
        OP,
        &["non-finite"],
    );
    expect_err(
        ops::softmax_cross_entropy(&t(&[2, 3]), &[0, 3]),
        OP,
        &["label 3", "row 1", "3 classes"],
    );
    expect_err(
        ops::softmax_cross_entropy(&t(&[2, 3]), &[0]),
        OP,
        &["1 labels", "[2, 3]"],
    );
    expect_err(
        ops::softmax_cross_entropy(&t(&[6]), &[0]),
        OP,
        &["rank 1", "[6]"],
    );
    expect_err(
        ops::softmax_cross_entropy(&t(&[2, 3, 1]), &[0, 0]),
        OP,
        &["rank 3"],
    );
    expect_err(
        ops::softmax_cross_entropy(&t(&[0, 3]), &[]),
        OP,
        &["[0, 3]"],
    );
    expect_err(
        ops::softmax_cross_entropy(&t(&[2, 0]), &[0, 0]),
        OP,
        &["[2, 0]"],
    );
}

#[test]
fn softmax() {
    expect_err(
        ops::softmax(&Tensor::scalar(1.0, DType::F32)),
        "softmax",
        &["scalar"],
    );
    expect_err(ops::softmax(&t(&[2, 0])), "softmax", &["[2, 0]"]);
}

#[test]
fn reshape_flatten_and_reductions() {
    expect_err(
        ops::reshape(&t(&[2, 3]), &[4, 2]),
        "reshape",
        &["[2, 3]", "[4, 2]", "6", "8"],
    );
    expect_err(
        ops::flatten(&Tensor::scalar(1.0, DType::F32)),
        "flatten",
        &["scalar"],
    );
    expect_err(ops::mean(&t(&[2, 0])), "mean", &["[2, 0]"]);
    // The sum of nothing is 0, and an empty reshape is fine.
    assert_eq!(ops::sum(&t(&[0, 4])).unwrap().item().unwrap(), 0.0);
    assert_eq!(ops::reshape(&t(&[0, 4]), &[4, 0]).unwrap().shape(), &[4, 0]);
}

#[test]
fn relu_and_matmul() {
    expect_err(
        ops::matmul(&t(&[2, 3]), &t(&[4, 5])),
        "matmul",
        &["[2, 3]", "[4, 5]"],
    );
    expect_err(
        ops::matmul(&t(&[2, 3, 4]), &t(&[4, 5])),
        "matmul",
        &["rank 3"],
    );
    expect_err(ops::matmul(&t(&[2, 3]), &t(&[3])), "matmul", &["rank 1"]);
    expect_err(
        ops::matmul(&t(&[2, 3]), &t64(&[3, 4])),
        "matmul",
        &["f32", "f64"],
    );
    // Zero-sized dims are well defined for these two: empty results, no panic.
    assert_eq!(
        ops::matmul(&t(&[0, 3]), &t(&[3, 4])).unwrap().shape(),
        &[0, 4]
    );
    assert_eq!(
        ops::matmul(&t(&[2, 0]), &t(&[0, 4])).unwrap().to_vec_f32(),
        vec![0.0; 8]
    );
    assert_eq!(ops::relu(&t(&[0, 3])).unwrap().shape(), &[0, 3]);
    assert_eq!(ops::relu6(&t(&[0, 3])).unwrap().shape(), &[0, 3]);
    expect_err(
        ops::relu6(&t(&[2, 3])).and_then(|y| ops::mul(&y, &t64(&[2, 3]))),
        "mul",
        &["f32", "f64"],
    );
}

#[test]
fn depthwise_conv2d() {
    use engine::ops::Padding;
    let op = "depthwise_conv2d";
    let dw = |x: &Tensor, k: &Tensor, b: Option<&Tensor>, stride: (usize, usize)| {
        ops::depthwise_conv2d(x, k, b, stride, Padding::Same)
    };
    let (x, k) = (t(&[2, 7, 5, 3]), t(&[3, 3, 3, 2]));
    // Ranks: a 3-D input, a conv2d-style 3-D kernel, a 2-D bias.
    expect_err(dw(&t(&[7, 5, 3]), &k, None, (1, 1)), op, &["[7, 5, 3]"]);
    expect_err(dw(&x, &t(&[3, 3, 3]), None, (1, 1)), op, &["[3, 3, 3]"]);
    expect_err(
        dw(&x, &k, Some(&t(&[1, 6])), (1, 1)),
        op,
        &["[1, 6]", "[6]"],
    );
    // Channels: the kernel's third dim must be the input's channels.
    expect_err(
        dw(&x, &t(&[3, 3, 4, 1]), None, (1, 1)),
        op,
        &["3 channels", "[3, 3, 4, 1]", "HINT"],
    );
    // A bias of c instead of c·m values.
    expect_err(dw(&x, &k, Some(&t(&[3])), (1, 1)), op, &["[3]", "[6]"]);
    // Zero-sized dims, a zero stride, a window larger than the input.
    expect_err(dw(&t(&[0, 7, 5, 3]), &k, None, (1, 1)), op, &["zero-sized"]);
    expect_err(dw(&x, &t(&[3, 3, 3, 0]), None, (1, 1)), op, &["zero-sized"]);
    expect_err(dw(&x, &k, None, (0, 1)), op, &["stride 0"]);
    expect_err(
        ops::depthwise_conv2d(&t(&[1, 2, 5, 3]), &k, None, (1, 1), Padding::Valid),
        op,
        &["[1, 2, 5, 3]", "smaller than the window 3"],
    );
    // Mixed dtypes.
    expect_err(
        dw(&x, &t64(&[3, 3, 3, 2]), None, (1, 1)),
        op,
        &["f32", "f64"],
    );
    expect_err(dw(&x, &k, Some(&t64(&[6])), (1, 1)), op, &["f32", "f64"]);
    // And good input works: [2, 7, 5, 3] at stride 2 'same' → [2, 4, 3, 6].
    assert_eq!(dw(&x, &k, None, (2, 2)).unwrap().shape(), &[2, 4, 3, 6]);
}
