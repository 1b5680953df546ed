//! The optimizers against Keras 3's own: the same initial values and the
//! same gradient at each step must give the same parameters after 5 steps.
//! Expected values: tests/fixtures/ops/optim.txt, written by
//! tests/fixtures/ops/gen_optim.py (Keras 3, JAX backend, float32).

use engine::optim::{zero_grad, Adam, Optimizer, Schedule, Sgd};
use engine::{ops, Param, Tensor};
use tests::{load_ops_fixture as load, OpsFixture};

const STEPS: usize = 5;

/// The optimizers of gen_optim.py's CASES, same hyper-parameters.
fn cases() -> Vec<(&'static str, Box<dyn Optimizer>)> {
    vec![
        ("sgd_plain", Box::new(Sgd::new(0.1))),
        (
            "sgd_momentum",
            Box::new(Sgd::new(0.1).with_momentum(0.9, false)),
        ),
        (
            "sgd_nesterov",
            Box::new(Sgd::new(0.1).with_momentum(0.9, true)),
        ),
        (
            "sgd_cosine_wd",
            Box::new(
                Sgd::new(Schedule::Cosine {
                    initial: 0.1,
                    decay_steps: 4,
                    alpha: 0.1,
                })
                .with_momentum(0.5, false)
                .with_weight_decay(0.05),
            ),
        ),
        ("adam_default", Box::new(Adam::default())),
        ("adam_fast", Box::new(Adam::new(0.05))),
        (
            "adam_step_decay_wd",
            Box::new(
                Adam::new(Schedule::StepDecay {
                    initial: 0.05,
                    every: 2,
                    factor: 0.5,
                })
                .with_weight_decay(0.1),
            ),
        ),
    ]
}

fn f32_tensor(fx: &OpsFixture, name: &str) -> Tensor {
    let (shape, v) = &fx[name];
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_vec(v, shape).unwrap()
}

/// Fills each parameter's gradient with exactly `g` through the tape:
/// L = Σ w ⊙ g has dL/dw = g.
fn set_grads(params: &[Param], grads: &[Tensor]) {
    let mut loss: Option<Tensor> = None;
    for (p, g) in params.iter().zip(grads) {
        let term = ops::sum(&ops::mul(&p.tensor(), g).unwrap()).unwrap();
        loss = Some(match loss {
            Some(l) => ops::add(&l, &term).unwrap(),
            None => term,
        });
    }
    loss.unwrap().backward().unwrap();
}

/// Asserts |got − want| ≤ tol · max(1, |want|) everywhere; returns the worst error.
fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        // Fixture values are float32 written in their shortest form.
        let w = w as f32 as f64;
        let err = (g as f64 - w).abs() / w.abs().max(1.0);
        assert!(
            err <= tol,
            "{what}[{i}]: got {g}, Keras {w}, error {err:.2e} > {tol:.0e}"
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn optimizers_match_keras_after_five_steps() {
    let fx = load("optim.txt");
    for (case, mut opt) in cases() {
        let params = vec![
            Param::new("w0", f32_tensor(&fx, "init/w0")),
            Param::new("w1", f32_tensor(&fx, "init/w1")),
        ];
        for s in 0..STEPS {
            let grads = [
                f32_tensor(&fx, &format!("grad{s}/w0")),
                f32_tensor(&fx, &format!("grad{s}/w1")),
            ];
            set_grads(&params, &grads);
            opt.step(&params).unwrap();
            zero_grad(&params);
        }
        assert_eq!(opt.iterations(), STEPS as u64);
        for p in &params {
            let want = &fx[&format!("{case}/{}", p.name())].1;
            let moved = p
                .value()
                .to_vec_f64()
                .iter()
                .zip(&fx[&format!("init/{}", p.name())].1)
                .any(|(a, b)| a != b);
            assert!(moved, "{case}: {} never changed", p.name());
            let worst = assert_close(
                &format!("{case}/{}", p.name()),
                &p.value().to_vec_f32(),
                want,
                1e-6,
            );
            eprintln!("{case}/{}: worst relative error {worst:.1e}", p.name());
        }
    }
}

#[test]
fn schedules_match_keras() {
    let fx = load("optim.txt");
    let cosine = Schedule::Cosine {
        initial: 0.1,
        decay_steps: 10,
        alpha: 0.2,
    };
    let step = Schedule::StepDecay {
        initial: 0.1,
        every: 3,
        factor: 0.5,
    };
    for (name, s) in [("schedule/cosine", cosine), ("schedule/step_decay", step)] {
        let got: Vec<f32> = (0..13).map(|t| s.at(t) as f32).collect();
        assert_close(name, &got, &fx[name].1, 1e-6);
    }
    // The cosine floor is alpha · initial, held after decay_steps.
    assert!((cosine.at(10) - 0.02).abs() < 1e-12 && cosine.at(1000) == cosine.at(10));
    assert_eq!(Schedule::Constant(0.3).at(12345), 0.3);
}

#[test]
fn frozen_and_gradless_parameters_are_skipped() {
    let a = Param::new("a", Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap());
    let frozen = Param::new("frozen", Tensor::from_vec(vec![3.0f32], &[1]).unwrap());
    let unused = Param::new("unused", Tensor::from_vec(vec![4.0f32], &[1]).unwrap());
    let g = Tensor::from_vec(vec![1.0f32, -1.0], &[2]).unwrap();
    let g1 = Tensor::from_vec(vec![1.0f32], &[1]).unwrap();
    set_grads(&[a.clone(), frozen.clone()], &[g, g1]);
    frozen.set_trainable(false);
    let params = [a.clone(), frozen.clone(), unused.clone()];
    let mut opt = Sgd::new(0.5);
    opt.step(&params).unwrap();
    assert_eq!(a.value().to_vec_f32(), vec![0.5, 2.5]);
    assert_eq!(frozen.value().to_vec_f32(), vec![3.0]);
    assert_eq!(unused.value().to_vec_f32(), vec![4.0]);
    zero_grad(&params);
    assert!(a.grad().is_none() && frozen.grad().is_none());
}

#[test]
fn bad_settings_are_errors_that_change_nothing() {
    let p = Param::new("p", Tensor::from_vec(vec![1.0f32], &[1]).unwrap());
    set_grads(
        &[p.clone()],
        &[Tensor::from_vec(vec![1.0f32], &[1]).unwrap()],
    );
    let e = Sgd::new(-1.0).step(&[p.clone()]).unwrap_err().to_string();
    assert!(
        e.contains("Sgd::step") && e.contains("learning rate"),
        "{e}"
    );
    let e = Sgd::new(0.1)
        .with_momentum(1.5, false)
        .step(&[p.clone()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("momentum"), "{e}");
    let mut adam = Adam::new(0.1);
    adam.beta_1 = 1.0;
    let e = adam.step(&[p.clone()]).unwrap_err().to_string();
    assert!(e.contains("Adam::step") && e.contains("beta_1"), "{e}");
    let e = Adam::new(Schedule::StepDecay {
        initial: 0.1,
        every: 0,
        factor: 0.5,
    })
    .step(&[p.clone()])
    .unwrap_err()
    .to_string();
    assert!(e.contains("period"), "{e}");
    let twin = Param::new("p", Tensor::from_vec(vec![1.0f32], &[1]).unwrap());
    let e = Adam::new(0.1)
        .step(&[p.clone(), twin])
        .unwrap_err()
        .to_string();
    assert!(e.contains("named \"p\""), "{e}");
    assert_eq!(p.value().to_vec_f32(), vec![1.0]);
}
