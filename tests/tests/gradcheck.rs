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
fn matmul() {
    check(
        |x| ops::matmul(&x[0], &x[1]),
        &[
            uniform(&[3, 5], -1.0, 1.0, 3),
            uniform(&[5, 4], -1.0, 1.0, 4),
        ],
    );
}
