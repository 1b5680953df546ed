//! Example 3 of `docs/engine.md`: its walk through one conv layer, as code.
//! Each numbered step below is the section of the same number there.
//!
//!     cargo run --release -p engine --example 03_conv_layer
//!
//! VGG16's first layer, `block1_conv1` (3×3, 3 → 64 channels, stride 1,
//! 'same'), on two small random images: forward, the tape, backward, and a
//! finite-difference check of the gradients. Exits with an error if a value
//! worked out by hand differs from thaw's.

use engine::gradcheck::GradCheck;
use engine::ops::{conv2d, sum, Padding};
use engine::rng::{uniform_f32, uniform_f64};
use engine::{no_grad, DType, Error, Param, Tensor};

/// Uniform values in [-1, 1) from the seeded generator's `stream`.
fn random(shape: &[usize], stream: u64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| uniform_f32(3, stream, i as u64) * 2.0 - 1.0)
        .collect()
}

/// Stops the example when a value worked out by hand is not thaw's.
fn agree(what: &str, thaw: f32, by_hand: f32) -> engine::Result<()> {
    println!("  {what}: thaw {thaw:.6}, by hand {by_hand:.6}");
    match (thaw - by_hand).abs() <= 1e-4 * by_hand.abs().max(1.0) {
        true => Ok(()),
        false => Err(Error::invalid("03_conv_layer", format!("{what} differs"))),
    }
}

fn main() -> engine::Result<()> {
    // 1. Tensors: images are NHWC, [n, h, w, c], row-major: element (b, y, x, ci)
    //    sits at index ((b·h + y)·w + x)·c + ci.
    let (n, h, w, c, o) = (2, 5, 6, 3, 64);
    let xs = random(&[n, h, w, c], 0);
    let x = Tensor::from_vec(xs.clone(), &[n, h, w, c])?;
    let at = |b: usize, y: usize, x: usize, ci: usize| ((b * h + y) * w + x) * c + ci;
    println!("1. input x: {:?} {}", x.shape(), x.dtype());

    // 2. Parameters, named like the Keras weights; the kernel is HWIO [kh, kw, c, o].
    let k_value = Tensor::from_vec(random(&[3, 3, c, o], 1), &[3, 3, c, o])?;
    let kernel = Param::new("block1_conv1/kernel", k_value);
    let bias = Param::new(
        "block1_conv1/bias",
        Tensor::from_vec(random(&[o], 2), &[o])?,
    );
    println!(
        "2. {} {:?}, {} {:?}",
        kernel.name(),
        kernel.shape(),
        bias.name(),
        bias.shape()
    );
    let k_at = |ky: usize, kx: usize, ci: usize, oc: usize| ((ky * 3 + kx) * c + ci) * o + oc;

    // 3. Forward: checks, 'same' geometry (out = ceil(in / stride)), Y = col·K + bias.
    //    `Param::tensor()` is a leaf on the tape while recording, a constant otherwise.
    let layer = |x: &Tensor| {
        let (k, b) = (kernel.tensor(), bias.tensor());
        conv2d(x, &k, Some(&b), (1, 1), Padding::Same)
    };
    let y = layer(&x)?;
    println!("3. output y: {:?}", y.shape());
    let wrong = Tensor::zeros(&[3, 3, 4, o], DType::F32); // 4 input channels; x has 3
    let error = conv2d(&x, &wrong, None, (1, 1), Padding::Same).unwrap_err();
    println!("  a kernel that does not fit is an error: {error}");
    // One output value by hand: the row of col for pixel (b, oy, ox) times column oc of K.
    // 'same' pads one pixel on each side here: tap (ky, kx) reads input row oy + ky − 1.
    let (b, oy, ox, oc) = (1, 0, 2, 5);
    let (ks, bs) = (kernel.value().to_vec_f32(), bias.value().to_vec_f32());
    let mut by_hand = bs[oc];
    for ky in 0..3 {
        for kx in 0..3 {
            let (iy, ix) = (oy + ky, ox + kx); // row and column in the padded input
            if (1..=h).contains(&iy) && (1..=w).contains(&ix) {
                for ci in 0..c {
                    by_hand += xs[at(b, iy - 1, ix - 1, ci)] * ks[k_at(ky, kx, ci, oc)];
                }
            }
        }
    }
    let y_value = y.to_vec_f32()[((b * h + oy) * w + ox) * o + oc];
    agree("y[1, 0, 2, 5]", y_value, by_hand)?;

    // 4. Record: y points to its tape entry; under no_grad nothing is recorded
    //    (the kernel and bias are constants there).
    println!(
        "4. y made by {:?}, requires grad: {}",
        y.op_name(),
        y.requires_grad()
    );
    {
        let _guard = no_grad();
        let frozen = layer(&x)?;
        let (op, grad) = (frozen.op_name(), frozen.requires_grad());
        println!("  under no_grad: made by {op:?}, requires grad: {grad}");
    }

    // 5. Backward of loss = Σ y, so dY = 1 everywhere: dbias = Σ over rows of
    //    dY = n·oh·ow, and dK = colᵀ·dY sums, per tap, the inputs it read.
    sum(&y)?.backward()?;
    let dk = kernel.grad().expect("the kernel is trainable");
    let db = bias.grad().expect("the bias is trainable").to_vec_f32();
    println!("5. dK {:?}, dbias [{}]", dk.shape(), db.len());
    agree("dbias[0]", db[0], (n * h * w) as f32)?;
    // The top-left tap (0, 0) reads x[b, oy − 1, ox − 1]: every input pixel but
    // the last row and column.
    let mut tap = 0.0;
    for b in 0..n {
        for iy in 0..h - 1 {
            for ix in 0..w - 1 {
                tap += xs[at(b, iy, ix, 1)];
            }
        }
    }
    agree("dK[0, 0, 1, 7]", dk.to_vec_f32()[k_at(0, 0, 1, 7)], tap)?;

    // 6. Proving it: every gradient against central finite differences in
    //    f64, on odd shapes at stride 2 (7×5 images, 3 → 4 channels).
    let f64_input = |shape: &[usize], stream: u64| {
        let count: usize = shape.iter().product();
        let v = (0..count).map(|i| uniform_f64(9, stream, i as u64) - 0.5);
        Tensor::from_vec(v.collect(), shape)
    };
    let inputs = [
        f64_input(&[2, 7, 5, 3], 0)?,
        f64_input(&[3, 3, 3, 4], 1)?,
        f64_input(&[4], 2)?,
    ];
    let conv = |t: &[Tensor]| conv2d(&t[0], &t[1], Some(&t[2]), (2, 2), Padding::Same);
    let report = GradCheck::default().run(conv, &inputs)?;
    println!(
        "6. gradient check: {} elements, worst relative error {:.1e} (tolerance 1e-6)",
        report.elements_checked, report.worst_error
    );
    Ok(())
}
