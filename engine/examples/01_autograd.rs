//! Example 1 of `docs/engine.md`: reverse-mode autograd on one dense layer.
//!
//!     cargo run --release -p engine --example 01_autograd
//!
//! Computes `loss = Σ relu(x·w + b)` for a batch of two inputs, calls
//! `loss.backward()` and prints the gradients thaw found for `w` and `b`
//! beside the ones worked out by hand (the chain rule, written below).

use engine::ops::{add, matmul, relu, sum};
use engine::{Param, Tensor};

fn main() -> engine::Result<()> {
    // Two inputs of three features: a plain tensor, so no gradient flows to it.
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, -1.0, 0.5, 2.0], &[2, 3])?;
    // The layer's weights are `Param`s: values the tape can send gradients to.
    let w = Param::new(
        "dense/kernel",
        Tensor::from_vec(vec![0.5f32, -1.0, 0.25, 0.5, -0.5, 1.0], &[3, 2])?,
    );
    let b = Param::new("dense/bias", Tensor::from_vec(vec![0.6f32, -0.2], &[2])?);

    // Forward: each op computes its output and records how to go back.
    let z = add(&matmul(&x, &w.tensor())?, &b.tensor())?; // [2, 2]; b broadcasts over rows
    let y = relu(&z)?;
    let loss = sum(&y)?; // a scalar: backward starts from d loss / d loss = 1
    println!("z    = {:?}", z.to_vec_f32());
    println!("loss = {}", loss.item()?);

    // Backward: walks the tape from `loss` and adds into each Param's grad.
    loss.backward()?;
    let dw = w.grad().expect("w took part in the loss").to_vec_f32();
    let db = b.grad().expect("b took part in the loss").to_vec_f32();

    // By hand: dloss/dy = 1 and dy/dz = 1 where z > 0, else 0. With that mask
    // m: dw[i, j] = Σ_r x[r, i]·m[r, j] (dw = xᵀ·m) and db[j] = Σ_r m[r, j].
    let m: Vec<f32> = z
        .to_vec_f32()
        .iter()
        .map(|&v| (v > 0.0) as u8 as f32)
        .collect();
    let xs = x.to_vec_f32();
    let dw_hand: Vec<f32> = (0..6)
        .map(|k| (0..2).map(|r| xs[r * 3 + k / 2] * m[r * 2 + k % 2]).sum())
        .collect();
    let db_hand: Vec<f32> = (0..2).map(|j| m[j] + m[2 + j]).collect();
    println!("dw   = {dw:?}   (by hand {dw_hand:?})");
    println!("db   = {db:?}   (by hand {db_hand:?})");
    Ok(())
}
