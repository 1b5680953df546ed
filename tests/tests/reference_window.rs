//! Forward values of the window ops (conv2d, depthwise_conv2d, padding,
//! pooling) against real Keras, conv2d against its reference
//! (`ops::conv2d::reference`, the definition as plain loops), the max-pool
//! tie rule, and the errors returned for bad input.
//!
//! The Keras numbers come from `tests/fixtures/window/gen_window.py` (it
//! writes `window.bin` and `window.txt`; see its docstring).
//!
//! Tolerances (f32): selections (zero padding, max pooling) must match
//! exactly, since no arithmetic is involved. Sums (conv, average pooling)
//! may differ by rounding because XLA and our GEMM add in different orders:
//! each f32 addition rounds with relative error 2^-24 ≈ 6e-8, and the
//! largest sum here has 7·7·3 = 147 products of values in [-1, 1], whose
//! rounding stays far below 1e-5; so we require
//! `|ours − keras| ≤ 1e-5 · max(1, |keras|)`. An indexing mistake (a
//! shifted window, a wrong padding side, a wrong count) changes values by
//! about 0.1 or more and cannot hide under it.

use engine::ops::{self, Padding};
use engine::{DType, Error, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The fixture's tensors by name (`case/tensor`), as f32 CPU tensors.
fn fixture() -> HashMap<String, Tensor> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/window");
    let index = std::fs::read_to_string(dir.join("window.txt")).expect("window.txt");
    let bytes = std::fs::read(dir.join("window.bin")).expect("window.bin");
    let mut tensors = HashMap::new();
    let mut at = 0;
    for line in index.lines() {
        let (name, dims) = line.split_once(' ').expect("line: name dims");
        let shape: Vec<usize> = dims.split(',').map(|d| d.parse().unwrap()).collect();
        let n: usize = shape.iter().product();
        let values: Vec<f32> = bytes[at..at + 4 * n]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        at += 4 * n;
        tensors.insert(name.to_string(), Tensor::from_vec(values, &shape).unwrap());
    }
    assert_eq!(at, bytes.len(), "window.bin is longer than window.txt says");
    tensors
}

/// Largest `|a − e| / max(1, |e|)`, after checking the shapes are equal.
fn worst_error(ours: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(ours.shape(), expected.shape());
    ours.to_vec_f64()
        .iter()
        .zip(expected.to_vec_f64())
        .map(|(a, e)| (a - e).abs() / e.abs().max(1.0))
        .fold(0.0, f64::max)
}

fn assert_close(case: &str, ours: &Tensor, expected: &Tensor) {
    let err = worst_error(ours, expected);
    println!("{case}: worst relative error {err:.2e}");
    assert!(err <= 1e-5, "{case}: error {err:.3e} > 1e-5");
}

fn assert_exact(case: &str, ours: &Tensor, expected: &Tensor) {
    assert_eq!(ours.shape(), expected.shape(), "{case}");
    assert_eq!(ours.to_vec_f32(), expected.to_vec_f32(), "{case}");
}

#[test]
fn conv2d_matches_keras() {
    let f = fixture();
    // (case, stride, padding): the settings gen_window.py gave keras.layers.Conv2D.
    let cases = [
        ("conv_s2_same", (2, 2), Padding::Same),
        ("conv_valid", (2, 1), Padding::Valid),
        ("conv_1x1", (1, 1), Padding::Valid),
        ("conv_1x1_s2", (2, 2), Padding::Valid),
        ("conv_even_same", (2, 2), Padding::Same),
    ];
    for (case, stride, padding) in cases {
        let t = |name: &str| f[&format!("{case}/{name}")].clone();
        let bias = f.get(&format!("{case}/bias"));
        let y = ops::conv2d(&t("x"), &t("kernel"), bias, stride, padding).unwrap();
        assert_close(case, &y, &t("y"));
    }
}

#[test]
fn depthwise_conv2d_matches_keras() {
    let f = fixture();
    // (case, stride, padding): the settings gen_window.py gave
    // keras.layers.DepthwiseConv2D; its ZeroPadding2D(((0, 1), (0, 1))) + 'valid'
    // is thaw's explicit padding.
    let zero_pad = Padding::Explicit {
        top: 0,
        bottom: 1,
        left: 0,
        right: 1,
    };
    let cases = [
        ("dw_s2_same", (2, 2), Padding::Same),
        ("dw_m2_valid", (2, 1), Padding::Valid),
        ("dw_s1_same", (1, 1), Padding::Same),
        ("dw_zero_pad_valid", (2, 2), zero_pad),
    ];
    for (case, stride, padding) in cases {
        let t = |name: &str| f[&format!("{case}/{name}")].clone();
        let bias = f.get(&format!("{case}/bias"));
        let y = ops::depthwise_conv2d(&t("x"), &t("kernel"), bias, stride, padding).unwrap();
        assert_close(case, &y, &t("y"));
    }
}

#[test]
fn resnet_stem_zero_pad_then_conv_matches_keras() {
    let f = fixture();
    let padded = ops::zero_pad2d(&f["stem/x"], 3, 3, 3, 3).unwrap();
    let y = ops::conv2d(
        &padded,
        &f["stem/kernel"],
        Some(&f["stem/bias"]),
        (2, 2),
        Padding::Valid,
    )
    .unwrap();
    assert_close("stem", &y, &f["stem/y"]);
}

#[test]
fn zero_pad2d_matches_keras() {
    let f = fixture();
    let y = ops::zero_pad2d(&f["zero_pad/x"], 1, 2, 3, 0).unwrap();
    assert_exact("zero_pad", &y, &f["zero_pad/y"]);
}

#[test]
fn pools_match_keras() {
    let f = fixture();
    let x = |case: &str| f[&format!("{case}/x")].clone();
    let y = |case: &str| f[&format!("{case}/y")].clone();
    let same2 = ((2, 2), (2, 2));
    let same3 = ((3, 3), (2, 2));
    let max = ops::max_pool2d(&x("max_s2_same"), same3.0, same3.1, Padding::Same).unwrap();
    assert_exact("max_s2_same", &max, &y("max_s2_same"));
    let max = ops::max_pool2d(&x("max_valid"), same2.0, same2.1, Padding::Valid).unwrap();
    assert_exact("max_valid", &max, &y("max_valid"));
    let avg = ops::avg_pool2d(&x("avg_s2_same"), same3.0, same3.1, Padding::Same).unwrap();
    assert_close("avg_s2_same", &avg, &y("avg_s2_same"));
    let avg = ops::avg_pool2d(&x("avg_2_same"), same2.0, same2.1, Padding::Same).unwrap();
    assert_close("avg_2_same", &avg, &y("avg_2_same"));
    let gap = ops::global_avg_pool(&x("global_avg")).unwrap();
    assert_close("global_avg", &gap, &y("global_avg"));
    let gmp = ops::global_max_pool(&x("global_max")).unwrap();
    assert_exact("global_max", &gmp, &y("global_max"));
}

#[test]
fn gemm_conv_matches_the_reference() {
    // (x shape, kernel (kh, kw, o), stride, padding): odd sizes, every path.
    let explicit = Padding::Explicit {
        top: 2,
        bottom: 1,
        left: 0,
        right: 3,
    };
    let cases = [
        ([3, 13, 11, 5], (3, 3, 7), (1, 1), Padding::Same),
        ([2, 13, 11, 5], (3, 3, 7), (2, 2), Padding::Same),
        ([2, 12, 10, 3], (5, 2, 4), (2, 3), Padding::Same),
        ([2, 9, 9, 6], (2, 4, 5), (1, 2), Padding::Valid),
        ([2, 9, 7, 4], (3, 2, 3), (2, 1), explicit),
        ([2, 6, 5, 8], (1, 1, 9), (1, 1), Padding::Valid),
        ([2, 7, 6, 8], (1, 1, 3), (2, 2), Padding::Valid),
        ([1, 19, 17, 3], (7, 7, 4), (2, 2), Padding::Same),
        // InceptionV3's 1x7 and 7x1 'same': padding along one axis only.
        ([2, 9, 17, 5], (1, 7, 6), (1, 1), Padding::Same),
        ([2, 9, 17, 5], (7, 1, 6), (1, 1), Padding::Same),
    ];
    for (seed, (xs, (kh, kw, o), stride, padding)) in cases.into_iter().enumerate() {
        let seed = seed as u64 * 3;
        let x = tests::uniform(&xs, -1.0, 1.0, seed);
        let k = tests::uniform(&[kh, kw, xs[3], o], -1.0, 1.0, seed + 1);
        let b = tests::uniform(&[o], -1.0, 1.0, seed + 2);
        let expected = ops::conv2d::reference(&x, &k, Some(&b), stride, padding).unwrap();
        // f64: only rounding differences of order 1e-15.
        let y = ops::conv2d(&x, &k, Some(&b), stride, padding).unwrap();
        let err = worst_error(&y, &expected);
        assert!(err < 1e-12, "case {xs:?} {padding:?}: f64 error {err:.3e}");
        // f32: the same inputs rounded to f32; tolerance as for the Keras fixture.
        let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let y = ops::conv2d(&f32(&x), &f32(&k), Some(&f32(&b)), stride, padding).unwrap();
        let err = worst_error(&y, &expected);
        assert!(err < 1e-5, "case {xs:?} {padding:?}: f32 error {err:.3e}");
    }
}

/// Gradient of `sum(op(x))` with respect to x, through the tape. The sum is a
/// tiny recorded op here so that this test depends on the window ops alone.
fn input_gradient(x: &Tensor, op: impl Fn(&Tensor) -> engine::Result<Tensor>) -> Vec<f64> {
    let p = engine::Param::new("x", x.clone());
    let y = op(&p.tensor()).unwrap();
    let total: f64 = y.to_vec_f64().iter().sum();
    let shape = y.shape().to_vec();
    let loss = engine::autograd::record(
        "sum",
        engine::Storage::Cpu(engine::CpuStorage::F64(vec![total])),
        vec![],
        &[&y],
        Box::new(move |_, _| Ok(vec![Some(Tensor::ones(&shape, DType::F64))])),
    );
    loss.backward().unwrap();
    p.grad().unwrap().to_vec_f64()
}

#[test]
fn max_pool_tie_goes_to_the_first_maximum_in_row_major_order() {
    // One 2×3 window of equal values (a tie everywhere) plus a larger value later in a
    // second channel: channel 0 sends its gradient to cell (0, 0), channel 1 to (1, 1).
    let x = Tensor::from_vec(
        vec![
            5.0, 1.0, 5.0, 1.0, 5.0, 1.0, //
            5.0, 1.0, 5.0, 9.0, 5.0, 9.0,
        ],
        &[1, 2, 3, 2],
    )
    .unwrap();
    let dx = input_gradient(&x, |t| ops::max_pool2d(t, (2, 3), (1, 1), Padding::Valid));
    assert_eq!(
        dx,
        vec![
            1.0, 0.0, 0.0, 0.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 1.0, 0.0, 0.0
        ]
    );
    let dx = input_gradient(&x, ops::global_max_pool);
    assert_eq!(
        dx,
        vec![
            1.0, 0.0, 0.0, 0.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 1.0, 0.0, 0.0
        ]
    );
}

#[test]
fn max_pool_never_chooses_padding_and_avg_pool_does_not_count_it() {
    // All values negative: a zero from padding would win a max; a count that included
    // padding would shrink an average's magnitude.
    let x = Tensor::from_vec(vec![-4.0f64, -3.0, -2.0, -1.0], &[1, 2, 2, 1]).unwrap();
    let max = ops::max_pool2d(&x, (3, 3), (2, 2), Padding::Same).unwrap();
    assert_eq!(max.to_vec_f64(), vec![-1.0]);
    let avg = ops::avg_pool2d(&x, (3, 3), (2, 2), Padding::Same).unwrap();
    assert_eq!(avg.to_vec_f64(), vec![-2.5]);
}

fn assert_err(result: engine::Result<Tensor>, op: &str, mentions: &[&str]) {
    let err = match result {
        Ok(t) => panic!(
            "{op}: expected an error, got a tensor of shape {:?}",
            t.shape()
        ),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(msg.starts_with(op), "error does not name {op}: {msg}");
    for m in mentions {
        assert!(msg.contains(m), "error does not mention {m}: {msg}");
    }
    assert!(!matches!(err, Error::Unsupported { .. }), "{msg}");
}

#[test]
fn bad_input_is_an_error_naming_the_op_and_shapes() {
    let z = |s: &[usize]| Tensor::zeros(s, DType::F32);
    let x = z(&[2, 7, 5, 3]);
    let k = z(&[3, 3, 3, 4]);
    let same = Padding::Same;
    let conv = |x: &Tensor, k: &Tensor, b: Option<&Tensor>| ops::conv2d(x, k, b, (1, 1), same);

    // conv2d
    assert_err(
        conv(&z(&[7, 5, 3]), &k, None),
        "conv2d",
        &["[7, 5, 3]", "rank 4"],
    );
    assert_err(conv(&x, &z(&[3, 3, 4]), None), "conv2d", &["[3, 3, 4]"]);
    assert_err(
        conv(&x, &z(&[3, 3, 5, 4]), None),
        "conv2d",
        &["[2, 7, 5, 3]", "[3, 3, 5, 4]", "channels"],
    );
    assert_err(
        conv(&x, &k, Some(&z(&[5]))),
        "conv2d",
        &["[5]", "[3, 3, 3, 4]"],
    );
    assert_err(conv(&x, &k, Some(&z(&[1, 4]))), "conv2d", &["[1, 4]"]);
    assert_err(
        conv(&z(&[0, 7, 5, 3]), &k, None),
        "conv2d",
        &["[0, 7, 5, 3]"],
    );
    assert_err(
        conv(&z(&[2, 7, 5, 0]), &z(&[3, 3, 0, 4]), None),
        "conv2d",
        &["[2, 7, 5, 0]"],
    );
    assert_err(
        conv(&x, &z(&[3, 3, 3, 0]), None),
        "conv2d",
        &["[3, 3, 3, 0]"],
    );
    assert_err(
        ops::conv2d(&x, &z(&[9, 3, 3, 4]), None, (1, 1), Padding::Valid),
        "conv2d",
        &["[2, 7, 5, 3]", "[9, 3, 3, 4]", "window"],
    );
    assert_err(
        ops::conv2d(&x, &k, None, (0, 1), same),
        "conv2d",
        &["stride"],
    );
    assert_err(
        conv(&x, &Tensor::zeros(&[3, 3, 3, 4], DType::F64), None),
        "conv2d",
        &["f32", "f64"],
    );

    // zero_pad2d
    assert_err(
        ops::zero_pad2d(&z(&[7, 5, 3]), 1, 1, 1, 1),
        "zero_pad2d",
        &["[7, 5, 3]"],
    );
    assert_err(
        ops::zero_pad2d(&z(&[2, 0, 5, 3]), 1, 1, 1, 1),
        "zero_pad2d",
        &["[2, 0, 5, 3]"],
    );

    // max_pool2d and avg_pool2d
    type Pool = fn(&Tensor, (usize, usize), (usize, usize), Padding) -> engine::Result<Tensor>;
    let pools: [(&str, Pool); 2] = [
        ("max_pool2d", ops::max_pool2d),
        ("avg_pool2d", ops::avg_pool2d),
    ];
    for (name, pool) in pools {
        assert_err(
            pool(&z(&[7, 5, 3]), (2, 2), (2, 2), same),
            name,
            &["[7, 5, 3]"],
        );
        assert_err(
            pool(&z(&[2, 7, 0, 3]), (2, 2), (2, 2), same),
            name,
            &["[2, 7, 0, 3]"],
        );
        assert_err(
            pool(&x, (2, 6), (1, 1), Padding::Valid),
            name,
            &["[2, 7, 5, 3]", "(2, 6)", "window"],
        );
        assert_err(pool(&x, (2, 2), (1, 0), same), name, &["stride"]);
        let all_padding = Padding::Explicit {
            top: 2,
            bottom: 0,
            left: 0,
            right: 0,
        };
        assert_err(
            pool(&x, (2, 2), (1, 1), all_padding),
            name,
            &["[2, 7, 5, 3]", "padding"],
        );
    }

    // global pools
    assert_err(
        ops::global_avg_pool(&z(&[2, 3])),
        "global_avg_pool",
        &["[2, 3]"],
    );
    assert_err(
        ops::global_max_pool(&z(&[2, 3, 0, 4])),
        "global_max_pool",
        &["[2, 3, 0, 4]"],
    );
}
