//! Finite-difference gradient checks (f64, central differences, tolerance
//! 1e-6 relative) of the window ops: conv2d, depthwise_conv2d, zero_pad2d, max_pool2d,
//! avg_pool2d, global average/max pooling. Odd shapes (7×5, 3 or 5
//! channels, batch 2), strides 1 and 2, 'same', 'valid' and explicit
//! padding, non-square windows (InceptionV3's 1x7, 7x1, 1x3, 3x1 among them). Max-pool inputs are pairwise distinct
//! ([`tests::distinct`]) so no window has a tie.

use engine::gradcheck::GradCheck;
use engine::ops::{self, Padding};
use engine::Tensor;
use tests::{distinct, uniform};

fn check(f: impl Fn(&[Tensor]) -> engine::Result<Tensor>, inputs: &[Tensor]) {
    let report = GradCheck::default()
        .run(f, inputs)
        .unwrap_or_else(|e| panic!("{e}"));
    let expected: usize = inputs.iter().map(|t| t.numel()).sum();
    assert_eq!(report.elements_checked, expected);
}

const EXPLICIT: Padding = Padding::Explicit {
    top: 2,
    bottom: 0,
    left: 1,
    right: 3,
};

/// conv2d with bias, on a 7×5 input, for one stride/padding/kernel size.
fn conv_with_bias(kh: usize, kw: usize, stride: (usize, usize), padding: Padding) {
    let x = uniform(&[2, 7, 5, 3], -1.0, 1.0, 10);
    let k = uniform(&[kh, kw, 3, 4], -1.0, 1.0, 11);
    let b = uniform(&[4], -1.0, 1.0, 12);
    check(
        |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), stride, padding),
        &[x, k, b],
    );
}

#[test]
fn conv2d_3x3_stride1_same_bias() {
    conv_with_bias(3, 3, (1, 1), Padding::Same);
}

#[test]
fn conv2d_3x3_stride2_same_bias() {
    // 7 → 4 rows (pads 1/1), 5 → 3 columns (pads 1/1).
    conv_with_bias(3, 3, (2, 2), Padding::Same);
}

#[test]
fn conv2d_3x2_stride_2x1_valid_bias() {
    conv_with_bias(3, 2, (2, 1), Padding::Valid);
}

#[test]
fn conv2d_2x3_stride2_explicit_bias() {
    conv_with_bias(2, 3, (2, 2), EXPLICIT);
}

#[test]
fn conv2d_4x2_stride2_same_even_kernel_bias() {
    // Even kernel at stride 2 on 7×5: 'same' pads 1/2 rows, 0/1 columns (extra at the bottom/right).
    conv_with_bias(4, 2, (2, 2), Padding::Same);
}

#[test]
fn conv2d_1x7_and_7x1_stride1_same_bias() {
    // InceptionV3's factorized 7x7: 'same' pads 3 and 3 along the long side
    // only (the window is wider than the 5 columns), nothing along the other.
    conv_with_bias(1, 7, (1, 1), Padding::Same);
    conv_with_bias(7, 1, (1, 1), Padding::Same);
}

#[test]
fn conv2d_1x3_and_3x1_stride1_same_bias() {
    // InceptionV3's forks in mixed9 and mixed10.
    conv_with_bias(1, 3, (1, 1), Padding::Same);
    conv_with_bias(3, 1, (1, 1), Padding::Same);
}

#[test]
fn conv2d_without_bias_5_channels() {
    let x = uniform(&[2, 7, 5, 5], -1.0, 1.0, 13);
    let k = uniform(&[3, 3, 5, 2], -1.0, 1.0, 14);
    check(
        |t| ops::conv2d(&t[0], &t[1], None, (1, 2), Padding::Same),
        &[x, k],
    );
}

#[test]
fn conv2d_1x1_stride1_pointwise_path() {
    // 1×1, stride 1, unpadded: the GEMM runs on x itself, no im2col.
    let x = uniform(&[2, 7, 5, 3], -1.0, 1.0, 15);
    let k = uniform(&[1, 1, 3, 5], -1.0, 1.0, 16);
    let b = uniform(&[5], -1.0, 1.0, 17);
    check(
        |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), (1, 1), Padding::Valid),
        &[x, k, b],
    );
}

#[test]
fn conv2d_1x1_stride2_shortcut() {
    // ResNet's projection shortcut: 1×1 at stride 2, 'valid'.
    let x = uniform(&[2, 7, 5, 3], -1.0, 1.0, 18);
    let k = uniform(&[1, 1, 3, 4], -1.0, 1.0, 19);
    check(
        |t| ops::conv2d(&t[0], &t[1], None, (2, 2), Padding::Valid),
        &[x, k],
    );
}

#[test]
fn conv2d_frozen_kernel_still_gives_dx() {
    // Only x is checked: the kernel and bias are constants (frozen weights).
    let k = uniform(&[3, 3, 3, 4], -1.0, 1.0, 21);
    let b = uniform(&[4], -1.0, 1.0, 22);
    check(
        |t| ops::conv2d(&t[0], &k, Some(&b), (2, 2), Padding::Same),
        &[uniform(&[2, 7, 5, 3], -1.0, 1.0, 20)],
    );
}

#[test]
fn conv2d_frozen_input_gives_dkernel_only() {
    // Only the kernel is checked: the input is a constant (first layer).
    let x = uniform(&[2, 7, 5, 3], -1.0, 1.0, 23);
    check(
        |t| ops::conv2d(&x, &t[0], None, (1, 1), Padding::Same),
        &[uniform(&[3, 3, 3, 2], -1.0, 1.0, 24)],
    );
}

/// depthwise_conv2d with bias, on a 7×5 input of 3 channels, depth multiplier `m`.
fn depthwise_with_bias(kh: usize, kw: usize, m: usize, stride: (usize, usize), padding: Padding) {
    let x = uniform(&[2, 7, 5, 3], -1.0, 1.0, 20);
    let k = uniform(&[kh, kw, 3, m], -1.0, 1.0, 21);
    let b = uniform(&[3 * m], -1.0, 1.0, 22);
    check(
        |t| ops::depthwise_conv2d(&t[0], &t[1], Some(&t[2]), stride, padding),
        &[x, k, b],
    );
}

#[test]
fn depthwise_conv2d_3x3_stride1_same_bias() {
    depthwise_with_bias(3, 3, 1, (1, 1), Padding::Same);
}

#[test]
fn depthwise_conv2d_3x3_stride2_same_multiplier_2() {
    // 7 → 4 rows (pads 1/1), 5 → 3 columns (pads 1/1); output channel ci·2 + j.
    depthwise_with_bias(3, 3, 2, (2, 2), Padding::Same);
}

#[test]
fn depthwise_conv2d_3x2_stride_2x1_valid() {
    depthwise_with_bias(3, 2, 1, (2, 1), Padding::Valid);
}

#[test]
fn depthwise_conv2d_2x3_stride2_explicit_multiplier_2() {
    depthwise_with_bias(2, 3, 2, (2, 2), EXPLICIT);
}

#[test]
fn depthwise_conv2d_without_bias_stride2_valid_multiplier_3() {
    let x = uniform(&[2, 7, 5, 2], -1.0, 1.0, 23);
    let k = uniform(&[3, 3, 2, 3], -1.0, 1.0, 24);
    check(
        |t| ops::depthwise_conv2d(&t[0], &t[1], None, (2, 2), Padding::Valid),
        &[x, k],
    );
}

#[test]
fn zero_pad2d_uneven_sides() {
    check(
        |t| ops::zero_pad2d(&t[0], 1, 2, 3, 0),
        &[uniform(&[2, 7, 5, 3], -1.0, 1.0, 30)],
    );
}

/// max_pool2d on distinct values (no ties), for one window/stride/padding.
fn max_pool(pool: (usize, usize), stride: (usize, usize), padding: Padding) {
    check(
        |t| ops::max_pool2d(&t[0], pool, stride, padding),
        &[distinct(&[2, 7, 5, 3], 31)],
    );
}

#[test]
fn max_pool2d_2x2_stride2_valid() {
    max_pool((2, 2), (2, 2), Padding::Valid);
}

#[test]
fn max_pool2d_3x3_stride2_same() {
    max_pool((3, 3), (2, 2), Padding::Same);
}

#[test]
fn max_pool2d_3x2_stride1_same_overlapping() {
    max_pool((3, 2), (1, 1), Padding::Same);
}

#[test]
fn max_pool2d_2x3_stride_1x2_explicit() {
    max_pool(
        (2, 3),
        (1, 2),
        Padding::Explicit {
            top: 1,
            bottom: 0,
            left: 2,
            right: 1,
        },
    );
}

fn avg_pool(pool: (usize, usize), stride: (usize, usize), padding: Padding) {
    check(
        |t| ops::avg_pool2d(&t[0], pool, stride, padding),
        &[uniform(&[2, 7, 5, 3], -1.0, 1.0, 32)],
    );
}

#[test]
fn avg_pool2d_2x2_stride2_valid() {
    avg_pool((2, 2), (2, 2), Padding::Valid);
}

#[test]
fn avg_pool2d_3x3_stride2_same() {
    avg_pool((3, 3), (2, 2), Padding::Same);
}

#[test]
fn avg_pool2d_3x2_stride1_same_overlapping() {
    avg_pool((3, 2), (1, 1), Padding::Same);
}

#[test]
fn avg_pool2d_2x3_stride_1x2_explicit() {
    avg_pool(
        (2, 3),
        (1, 2),
        Padding::Explicit {
            top: 1,
            bottom: 0,
            left: 2,
            right: 1,
        },
    );
}

#[test]
fn global_avg_pool() {
    check(
        |t| ops::global_avg_pool(&t[0]),
        &[uniform(&[2, 7, 5, 3], -1.0, 1.0, 33)],
    );
}

#[test]
fn global_max_pool() {
    check(
        |t| ops::global_max_pool(&t[0]),
        &[distinct(&[2, 7, 5, 5], 34)],
    );
}

#[test]
fn conv_pool_chain() {
    // A VGG-like block: conv → max pool → global average, gradients flowing through all three.
    let x = uniform(&[2, 7, 5, 3], -1.0, 1.0, 35);
    let k = uniform(&[3, 3, 3, 4], -1.0, 1.0, 36);
    check(
        |t| {
            let y = ops::conv2d(&t[0], &t[1], None, (1, 1), Padding::Same)?;
            let y = ops::max_pool2d(&y, (2, 2), (2, 2), Padding::Same)?;
            ops::global_avg_pool(&y)
        },
        &[x, k],
    );
}
