//! Finite-difference gradient checks (f64, central differences) for every
//! differentiable op, on odd shapes. One test per row of the op table.

use engine::autograd::record;
use engine::gradcheck::GradCheck;
use engine::ops;
use engine::{Storage, Tensor};
use tests::{away_from_zero, uniform};

fn check(f: impl Fn(&[Tensor]) -> engine::Result<Tensor>, inputs: &[Tensor]) {
    let report = GradCheck::default()
        .run(f, inputs)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.elements_checked > 0);
}

#[test]
fn checker_catches_a_wrong_backward_rule() {
    // y = x², with a deliberately wrong backward dx = x·dy (should be 2x·dy).
    let square_wrong = |xs: &[Tensor]| -> engine::Result<Tensor> {
        let x = &xs[0];
        let v: Vec<f64> = x.to_vec_f64().iter().map(|a| a * a).collect();
        let saved = x.clone();
        Ok(record(
            "square_wrong",
            Storage::Cpu(engine::CpuStorage::F64(v)),
            x.shape().to_vec(),
            &[x],
            Box::new(move |dy, _| {
                let g: Vec<f64> = saved
                    .to_vec_f64()
                    .iter()
                    .zip(dy.to_vec_f64())
                    .map(|(a, d)| a * d)
                    .collect();
                Ok(vec![Some(Tensor::from_vec(g, saved.shape())?)])
            }),
        ))
    };
    let x = uniform(&[3, 5], 0.5, 2.0, 1);
    let err = GradCheck::default()
        .run(square_wrong, &[x])
        .expect_err("wrong rule must be caught");
    assert!(err.to_string().contains("relative error"), "{err}");
}

#[test]
fn relu() {
    check(
        |x| ops::relu(&x[0]),
        &[away_from_zero(&[2, 7, 5, 3], 0.05, 2)],
    );
}

#[test]
fn relu6() {
    // Both sides of both kinks (x in [-1, 7)), nothing within 0.05 of 0 or 6.
    let v: Vec<f64> = uniform(&[2, 7, 5, 3], -1.0, 7.0, 3)
        .to_vec_f64()
        .into_iter()
        .map(|v| {
            if v.abs() < 0.05 || (v - 6.0).abs() < 0.05 {
                v + 0.1
            } else {
                v
            }
        })
        .collect();
    let x = Tensor::from_vec(v, &[2, 7, 5, 3]).unwrap();
    check(|x| ops::relu6(&x[0]), &[x]);
}

#[test]
fn matmul() {
    check(
        |x| ops::matmul(&x[0], &x[1]),
        &[
            uniform(&[3, 5], -1.0, 1.0, 3),
            uniform(&[5, 4], -1.0, 1.0, 4),
        ],
    );
}

#[test]
fn add_same_shape() {
    check(
        |x| ops::add(&x[0], &x[1]),
        &[
            uniform(&[2, 7, 5, 3], -1.0, 1.0, 5),
            uniform(&[2, 7, 5, 3], -1.0, 1.0, 6),
        ],
    );
}

#[test]
fn add_bias_broadcast() {
    // [2, 3] + [3]: the bias gradient sums over the batch.
    check(
        |x| ops::add(&x[0], &x[1]),
        &[uniform(&[2, 3], -1.0, 1.0, 7), uniform(&[3], -1.0, 1.0, 8)],
    );
    // Bias on an NHWC map, both operand orders.
    check(
        |x| ops::add(&x[1], &x[0]),
        &[
            uniform(&[2, 7, 5, 3], -1.0, 1.0, 9),
            uniform(&[3], -1.0, 1.0, 10),
        ],
    );
}

#[test]
fn add_two_sided_broadcast() {
    // [2, 1, 4] + [3, 1] -> [2, 3, 4]: both operands are stretched.
    check(
        |x| ops::add(&x[0], &x[1]),
        &[
            uniform(&[2, 1, 4], -1.0, 1.0, 11),
            uniform(&[3, 1], -1.0, 1.0, 12),
        ],
    );
}

#[test]
fn mul_same_shape_and_broadcast() {
    check(
        |x| ops::mul(&x[0], &x[1]),
        &[
            uniform(&[2, 7, 5, 3], -1.0, 1.0, 13),
            uniform(&[2, 7, 5, 3], -1.0, 1.0, 14),
        ],
    );
    check(
        |x| ops::mul(&x[0], &x[1]),
        &[
            uniform(&[2, 3], -1.0, 1.0, 15),
            uniform(&[3], -1.0, 1.0, 16),
        ],
    );
    check(
        |x| ops::mul(&x[0], &x[1]),
        &[
            uniform(&[2, 1, 4], -1.0, 1.0, 17),
            uniform(&[3, 1], -1.0, 1.0, 18),
        ],
    );
}

#[test]
fn reshape_and_flatten() {
    check(
        |x| ops::reshape(&x[0], &[5, 7, 6]),
        &[uniform(&[2, 7, 5, 3], -1.0, 1.0, 19)],
    );
    // Through a product, so the gradient that flows back is not all ones.
    check(
        |x| ops::mul(&ops::flatten(&x[0])?, &x[1]),
        &[
            uniform(&[2, 7, 5, 3], -1.0, 1.0, 20),
            uniform(&[105], -1.0, 1.0, 21),
        ],
    );
}

#[test]
fn sum_and_mean() {
    check(
        |x| ops::sum(&x[0]),
        &[uniform(&[2, 7, 5, 3], -1.0, 1.0, 22)],
    );
    check(
        |x| ops::mean(&ops::mul(&x[0], &x[0])?),
        &[uniform(&[2, 7, 5, 3], -1.0, 1.0, 23)],
    );
}

#[test]
fn softmax() {
    check(
        |x| ops::softmax(&x[0]),
        &[uniform(&[2, 7, 5], -3.0, 3.0, 24)],
    );
}

#[test]
fn softmax_cross_entropy() {
    let labels = [3, 0, 4, 4, 1, 2, 0];
    check(
        |x| ops::softmax_cross_entropy(&x[0], &labels),
        &[uniform(&[7, 5], -3.0, 3.0, 25)],
    );
}

#[test]
fn softmax_cross_entropy_large_logits() {
    // Logits near 1000: exp would overflow without the max subtraction.
    let labels = [1, 2, 0];
    check(
        |x| ops::softmax_cross_entropy(&x[0], &labels),
        &[uniform(&[3, 5], 997.0, 1003.0, 26)],
    );
}

#[test]
fn batch_norm_inference() {
    // Gradients to x, gamma, beta, and (exact, though Keras never trains
    // them) the moving statistics.
    check(
        |x| ops::batch_norm(&x[0], &x[1], &x[2], &x[3], &x[4], 1e-3),
        &[
            uniform(&[2, 7, 5, 3], -2.0, 2.0, 27),
            uniform(&[3], 0.5, 1.5, 28),
            uniform(&[3], -0.5, 0.5, 29),
            uniform(&[3], -0.3, 0.3, 30),
            uniform(&[3], 0.5, 2.0, 31),
        ],
    );
}

#[test]
fn batch_norm_train() {
    // Through the batch statistics: gradients to x, gamma and beta.
    check(
        |x| Ok(ops::batch_norm_train(&x[0], &x[1], &x[2], 1e-3)?.0),
        &[
            uniform(&[2, 7, 5, 3], -2.0, 2.0, 32),
            uniform(&[3], 0.5, 1.5, 33),
            uniform(&[3], -0.5, 0.5, 34),
        ],
    );
    // Dense-layer shape [n, c], 5 channels.
    check(
        |x| Ok(ops::batch_norm_train(&x[0], &x[1], &x[2], 1.001e-5)?.0),
        &[
            uniform(&[6, 5], -2.0, 2.0, 35),
            uniform(&[5], 0.5, 1.5, 36),
            uniform(&[5], -0.5, 0.5, 37),
        ],
    );
}

#[test]
fn concat_three_inputs() {
    // Three inputs of 2, 5 and 1 channels, one image and a batch of two.
    check(
        ops::concat,
        &[
            uniform(&[1, 3, 4, 2], -1.0, 1.0, 40),
            uniform(&[1, 3, 4, 5], -1.0, 1.0, 41),
            uniform(&[1, 3, 4, 1], -1.0, 1.0, 42),
        ],
    );
    check(
        ops::concat,
        &[
            uniform(&[2, 3, 2, 3], -1.0, 1.0, 43),
            uniform(&[2, 3, 2, 1], -1.0, 1.0, 44),
            uniform(&[2, 3, 2, 4], -1.0, 1.0, 45),
            uniform(&[2, 3, 2, 2], -1.0, 1.0, 46),
        ],
    );
}

#[test]
fn concat_repeated_input_sums_both_slices() {
    // [a, b, a]: a's gradient is the sum of its two slices of dy.
    check(
        |x| ops::concat(&[x[0].clone(), x[1].clone(), x[0].clone()]),
        &[
            uniform(&[2, 2, 3, 2], -1.0, 1.0, 47),
            uniform(&[2, 2, 3, 3], -1.0, 1.0, 48),
        ],
    );
}

#[test]
fn bilinear_resize_up_and_down() {
    check(
        |x| ops::bilinear_resize(&x[0], 11, 13),
        &[uniform(&[2, 5, 7, 3], -1.0, 1.0, 38)],
    );
    check(
        |x| ops::bilinear_resize(&x[0], 3, 4),
        &[uniform(&[2, 7, 5, 3], -1.0, 1.0, 39)],
    );
}

#[test]
fn dropout() {
    check(
        |x| ops::dropout(&x[0], 0.3, 42, 7),
        &[uniform(&[2, 7, 5, 3], -1.0, 1.0, 40)],
    );
}
