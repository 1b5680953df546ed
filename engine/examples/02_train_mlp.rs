//! Example 2 of `docs/engine.md`: a small MLP learns XOR with Adam.
//!
//!     cargo run --release -p engine --example 02_train_mlp
//!
//! Points (a, b) drawn uniformly from [-1, 1]² belong to class 1 when a·b > 0
//! (the quadrants of XOR), else to class 0. No straight line separates the
//! classes, so a linear model stays near 50%; two hidden ReLU layers learn
//! it. The example trains on 256 points, prints the loss as it falls, then
//! the accuracy on 1,000 points it never saw, and exits with status 1 if
//! that accuracy is below 90% (so CI, which runs it, fails when training breaks).

use engine::ops::{add, matmul, relu, softmax_cross_entropy};
use engine::optim::{zero_grad, Adam, Optimizer};
use engine::rng::Rng;
use engine::{no_grad, Param, Tensor};

/// `n` points and their labels, from the seeded generator's `stream`.
fn xor_points(n: usize, stream: u64) -> engine::Result<(Tensor, Vec<usize>)> {
    let mut rng = Rng::new(42, stream);
    let xy: Vec<f32> = (0..2 * n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
    let labels = xy.chunks(2).map(|p| (p[0] * p[1] > 0.0) as usize).collect();
    Ok((Tensor::from_vec(xy, &[n, 2])?, labels))
}

/// A dense layer's kernel `[fan_in, fan_out]` (Glorot uniform, as Keras) and zero bias.
fn dense(name: &str, fan_in: usize, fan_out: usize, rng: &mut Rng) -> engine::Result<[Param; 2]> {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    let w: Vec<f32> = (0..fan_in * fan_out)
        .map(|_| rng.uniform(-limit, limit) as f32)
        .collect();
    Ok([
        Param::new(
            format!("{name}/kernel"),
            Tensor::from_vec(w, &[fan_in, fan_out])?,
        ),
        Param::new(
            format!("{name}/bias"),
            Tensor::from_vec(vec![0f32; fan_out], &[fan_out])?,
        ),
    ])
}

/// Logits `[n, 2]` of the MLP 2 → 16 → 16 → 2 whose parameters are `p`.
fn forward(p: &[Param], x: &Tensor) -> engine::Result<Tensor> {
    let mut h = x.clone();
    for (i, layer) in p.chunks(2).enumerate() {
        h = add(&matmul(&h, &layer[0].tensor())?, &layer[1].tensor())?;
        if i + 1 < p.len() / 2 {
            h = relu(&h)?; // no ReLU on the logits
        }
    }
    Ok(h)
}

fn main() -> engine::Result<()> {
    let (x, labels) = xor_points(256, 0)?;
    let mut rng = Rng::new(7, 1);
    let mut params = Vec::new();
    for (name, fan_in, fan_out) in [("dense_1", 2, 16), ("dense_2", 16, 16), ("logits", 16, 2)] {
        params.extend(dense(name, fan_in, fan_out, &mut rng)?);
    }
    let mut adam = Adam::new(0.02);
    // Full-batch training: forward, loss, backward, one optimizer step.
    for step in 0..=300 {
        let loss = softmax_cross_entropy(&forward(&params, &x)?, &labels)?;
        loss.backward()?;
        adam.step(&params)?; // w ← w − ηₜ·m/(√v + ε) for every parameter with a gradient
        zero_grad(&params); // backward adds into .grad(): clear it before the next step
        if step % 50 == 0 {
            println!("step {step:3}  loss {:.4}", loss.item()?);
        }
    }
    // Evaluation records nothing on the tape.
    let _guard = no_grad();
    let (x_test, y_test) = xor_points(1000, 1)?;
    let logits = forward(&params, &x_test)?.to_vec_f32();
    let correct = (logits.chunks(2).zip(&y_test))
        .filter(|(l, &y)| ((l[1] > l[0]) as usize) == y)
        .count();
    let accuracy = correct as f64 / y_test.len() as f64;
    println!(
        "test accuracy {correct}/{} = {:.1}%",
        y_test.len(),
        100.0 * accuracy
    );
    if accuracy < 0.9 {
        eprintln!("the MLP did not learn XOR (accuracy under 90%): training is broken");
        std::process::exit(1);
    }
    Ok(())
}
