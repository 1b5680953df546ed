//! CPU vs CUDA parity of every op with a GPU path, from ONE table of cases.
//!
//! Each case builds its inputs from the seeded generator (`engine::rng`),
//! runs the op on the CPU (the reference) and on GPU 0 with the same values,
//! pulls the same seeded upstream gradient g back through it, and compares
//! the output and the gradient of every input that asks for one. The
//! upstream gradient enters as L = ⟨y, g⟩, a `[1, N]·[N, 1]` matmul that both
//! devices have, so dL/dy = g exactly on both.
//!
//! The error of a tensor is max |gpu − cpu| / max(max |cpu|, 1e-30); each
//! case writes its tolerance next to it, with the reason. Run with
//! `-- --nocapture` for the table of errors.
//!
//! Without a usable GPU the CPU half of every case still runs (so the table
//! itself is checked everywhere), and the comparison prints
//! `SKIPPED: <reason>`. On an H100 (2026-11-23) every case passed; see
//! docs/cuda.md, "Measured".

use engine::ops::{self, Padding};
use engine::{Device, Param, Tensor};

/// One input: its shape, the range its seeded values are drawn from, and
/// whether the case checks its gradient.
struct Input {
    shape: &'static [usize],
    range: (f32, f32),
    grad: bool,
}

const fn input(shape: &'static [usize]) -> Input {
    Input {
        shape,
        range: (-1.0, 1.0),
        grad: true,
    }
}

/// A positive input (a variance), without a gradient.
const fn positive_constant(shape: &'static [usize]) -> Input {
    Input {
        shape,
        range: (0.5, 1.5),
        grad: false,
    }
}

/// One row of the table.
struct Case {
    name: &'static str,
    inputs: Vec<Input>,
    op: fn(&[Tensor]) -> engine::Result<Tensor>,
    /// Largest allowed error of the output and of every gradient.
    tol: f32,
    /// Why that tolerance.
    why: &'static str,
}

fn cases() -> Vec<Case> {
    const CONV: f32 = 1e-5;
    const CONV_WHY: &str = "cuDNN sums in another order than im2col+GEMM, f32 FMA math (no TF32)";
    const DEPTHWISE_WHY: &str =
        "y and dx summed in the CPU's order without FMA; dK's partial sums grouped differently";
    vec![
        Case {
            name: "conv2d 3x3 s1 same + bias",
            inputs: vec![input(&[2, 7, 9, 3]), input(&[3, 3, 3, 4]), input(&[4])],
            op: |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), (1, 1), Padding::Same),
            tol: CONV,
            why: CONV_WHY,
        },
        Case {
            name: "conv2d 7x7 s2 valid + bias",
            inputs: vec![input(&[2, 16, 15, 3]), input(&[7, 7, 3, 8]), input(&[8])],
            op: |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), (2, 2), Padding::Valid),
            tol: CONV,
            why: CONV_WHY,
        },
        Case {
            name: "conv2d 1x1 s1 + bias",
            inputs: vec![input(&[2, 5, 6, 8]), input(&[1, 1, 8, 16]), input(&[16])],
            op: |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), (1, 1), Padding::Valid),
            tol: CONV,
            why: CONV_WHY,
        },
        Case {
            name: "conv2d 1x1 s2 (ResNet shortcut)",
            inputs: vec![input(&[2, 9, 7, 4]), input(&[1, 1, 4, 6])],
            op: |t| ops::conv2d(&t[0], &t[1], None, (2, 2), Padding::Valid),
            tol: CONV,
            why: CONV_WHY,
        },
        Case {
            name: "conv2d 3x3 s2 same, odd sizes",
            inputs: vec![input(&[2, 9, 11, 5]), input(&[3, 3, 5, 6]), input(&[6])],
            op: |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), (2, 2), Padding::Same),
            tol: CONV,
            why: CONV_WHY,
        },
        Case {
            name: "conv2d 3x3 s2 same, even sizes (pad 0 above, 1 below)",
            inputs: vec![input(&[2, 8, 10, 3]), input(&[3, 3, 3, 4])],
            op: |t| ops::conv2d(&t[0], &t[1], None, (2, 2), Padding::Same),
            tol: CONV,
            why: CONV_WHY,
        },
        Case {
            name: "depthwise_conv2d 3x3 s1 same + bias, 19 channels",
            inputs: vec![input(&[2, 7, 9, 19]), input(&[3, 3, 19, 1]), input(&[19])],
            op: |t| ops::depthwise_conv2d(&t[0], &t[1], Some(&t[2]), (1, 1), Padding::Same),
            tol: 1e-5,
            why: DEPTHWISE_WHY,
        },
        Case {
            name: "depthwise_conv2d 3x3 s2 same, odd sizes, m=2",
            inputs: vec![input(&[2, 9, 11, 5]), input(&[3, 3, 5, 2]), input(&[10])],
            op: |t| ops::depthwise_conv2d(&t[0], &t[1], Some(&t[2]), (2, 2), Padding::Same),
            tol: 1e-5,
            why: DEPTHWISE_WHY,
        },
        Case {
            name: "depthwise_conv2d 3x3 s2 explicit (0, 1, 0, 1) (MobileNet's)",
            inputs: vec![input(&[2, 8, 10, 4]), input(&[3, 3, 4, 1])],
            op: |t| {
                let pad = Padding::Explicit {
                    top: 0,
                    bottom: 1,
                    left: 0,
                    right: 1,
                };
                ops::depthwise_conv2d(&t[0], &t[1], None, (2, 2), pad)
            },
            tol: 1e-5,
            why: DEPTHWISE_WHY,
        },
        Case {
            name: "matmul [5,7]·[7,3]",
            inputs: vec![input(&[5, 7]), input(&[7, 3])],
            op: |t| ops::matmul(&t[0], &t[1]),
            tol: 1e-5,
            why: "cuBLAS SGEMM sums in another order (TF32 off)",
        },
        Case {
            name: "add bias [5,3] + [3]",
            inputs: vec![input(&[5, 3]), input(&[3])],
            op: |t| ops::add(&t[0], &t[1]),
            tol: 1e-6,
            why: "the bias gradient is a column sum in another order",
        },
        Case {
            name: "add same shapes (shortcut)",
            inputs: vec![input(&[2, 3, 4, 5]), input(&[2, 3, 4, 5])],
            op: |t| ops::add(&t[0], &t[1]),
            tol: 0.0,
            why: "one f32 addition per element on both",
        },
        Case {
            name: "add broadcast [2,1,4] + [3,1]",
            inputs: vec![input(&[2, 1, 4]), input(&[3, 1])],
            op: |t| ops::add(&t[0], &t[1]),
            tol: 0.0,
            why: "one f32 addition per element; gradients summed in f64 in the CPU's order",
        },
        Case {
            name: "mul same shapes",
            inputs: vec![input(&[2, 3, 4, 5]), input(&[2, 3, 4, 5])],
            op: |t| ops::mul(&t[0], &t[1]),
            tol: 0.0,
            why: "one f32 product per element, forward and gradients",
        },
        Case {
            name: "mul per-channel scale [2,3,4,5] · [5]",
            inputs: vec![input(&[2, 3, 4, 5]), input(&[5])],
            op: |t| ops::mul(&t[0], &t[1]),
            tol: 0.0,
            why: "f32 products; the scale's gradient summed in f64 in the CPU's order",
        },
        Case {
            name: "mul [4] · [3,4] (repeating first operand)",
            inputs: vec![input(&[4]), input(&[3, 4])],
            op: |t| ops::mul(&t[0], &t[1]),
            tol: 0.0,
            why: "f32 products; the repeating operand's gradient summed in f64 in the CPU's order",
        },
        Case {
            name: "mul broadcast [2,1,4] · [3,1]",
            inputs: vec![input(&[2, 1, 4]), input(&[3, 1])],
            op: |t| ops::mul(&t[0], &t[1]),
            tol: 0.0,
            why: "f32 products; gradients summed in f64 in the CPU's order",
        },
        Case {
            name: "mul by a scalar [3,4] · []",
            inputs: vec![input(&[3, 4]), input(&[])],
            op: |t| ops::mul(&t[0], &t[1]),
            tol: 0.0,
            why: "f32 products; the scalar's gradient summed in f64 in the CPU's order",
        },
        Case {
            name: "relu",
            inputs: vec![input(&[3, 4, 5])],
            op: |t| ops::relu(&t[0]),
            tol: 0.0,
            why: "a comparison and a copy",
        },
        Case {
            name: "relu6",
            inputs: vec![Input {
                shape: &[3, 4, 5],
                range: (-2.0, 8.0),
                grad: true,
            }],
            op: |t| ops::relu6(&t[0]),
            tol: 0.0,
            why: "comparisons and a copy",
        },
        Case {
            name: "batch_norm inference",
            inputs: vec![
                input(&[2, 3, 4, 6]),
                input(&[6]),
                input(&[6]),
                Input {
                    grad: false,
                    ..input(&[6])
                },
                positive_constant(&[6]),
            ],
            op: |t| ops::batch_norm(&t[0], &t[1], &t[2], &t[3], &t[4], 1e-3),
            tol: 1e-5,
            why: "the fold runs in f32 on the GPU, in f64 on the CPU",
        },
        Case {
            name: "batch_norm training",
            inputs: vec![input(&[4, 3, 3, 6]), input(&[6]), input(&[6])],
            op: |t| ops::batch_norm_train(&t[0], &t[1], &t[2], 1e-3).map(|(y, _, _)| y),
            tol: 1e-4,
            why: "batch statistics and sums in f32 (Welford) on the GPU, f64 on the CPU",
        },
        Case {
            name: "max_pool2d 2x2 s2 valid",
            inputs: vec![input(&[2, 6, 7, 3])],
            op: |t| ops::max_pool2d(&t[0], (2, 2), (2, 2), Padding::Valid),
            tol: 0.0,
            why: "selection only, same tie rule",
        },
        Case {
            name: "max_pool2d 3x3 s2 same",
            inputs: vec![input(&[2, 8, 9, 4])],
            op: |t| ops::max_pool2d(&t[0], (3, 3), (2, 2), Padding::Same),
            tol: 1e-6,
            why: "same selection; overlapping windows add their shares in another order",
        },
        Case {
            name: "avg_pool2d 3x3 s1 same",
            inputs: vec![input(&[2, 5, 6, 3])],
            op: |t| ops::avg_pool2d(&t[0], (3, 3), (1, 1), Padding::Same),
            tol: 1e-6,
            why: "the backward adds shares in another order",
        },
        Case {
            name: "global_avg_pool",
            inputs: vec![input(&[2, 4, 5, 6])],
            op: |t| ops::global_avg_pool(&t[0]),
            tol: 1e-6,
            why: "the same sum order; division rounding",
        },
        Case {
            name: "global_max_pool",
            inputs: vec![input(&[2, 4, 5, 6])],
            op: |t| ops::global_max_pool(&t[0]),
            tol: 0.0,
            why: "selection only",
        },
        Case {
            name: "zero_pad2d (3, 3, 3, 3)",
            inputs: vec![input(&[2, 5, 5, 3])],
            op: |t| ops::zero_pad2d(&t[0], 3, 3, 3, 3),
            tol: 0.0,
            why: "copies",
        },
        Case {
            name: "concat 3 inputs along channels",
            inputs: vec![
                input(&[2, 3, 5, 4]),
                input(&[2, 3, 5, 1]),
                input(&[2, 3, 5, 6]),
            ],
            op: ops::concat,
            tol: 0.0,
            why: "copies",
        },
        Case {
            name: "bilinear_resize up 5x7 -> 11x13",
            inputs: vec![input(&[2, 5, 7, 3])],
            op: |t| ops::bilinear_resize(&t[0], 11, 13),
            tol: 1e-5,
            why: "weights computed in f32 on the GPU; the backward gathers in another order",
        },
        Case {
            name: "bilinear_resize down 9x8 -> 4x5",
            inputs: vec![input(&[2, 9, 8, 2])],
            op: |t| ops::bilinear_resize(&t[0], 4, 5),
            tol: 1e-5,
            why: "weights computed in f32 on the GPU; the backward gathers in another order",
        },
        Case {
            name: "softmax",
            inputs: vec![input(&[4, 10])],
            op: |t| ops::softmax(&t[0]),
            tol: 1e-5,
            why: "row sums in f32 on the GPU, f64 on the CPU",
        },
        Case {
            name: "softmax_cross_entropy",
            inputs: vec![input(&[6, 10])],
            op: |t| ops::softmax_cross_entropy(&t[0], &[3, 0, 9, 9, 1, 5]),
            tol: 1e-5,
            why: "log-sum-exp in f32 on the GPU, f64 on the CPU",
        },
        Case {
            name: "dropout 0.3 (mask equal to the CPU's)",
            inputs: vec![input(&[3, 40, 7])],
            op: |t| ops::dropout(&t[0], 0.3, 7, 3),
            tol: 0.0,
            why: "the same generator and the same f32 rate and scale: bit for bit",
        },
        Case {
            name: "flatten",
            inputs: vec![input(&[2, 3, 4, 5])],
            op: |t| ops::flatten(&t[0]),
            tol: 0.0,
            why: "no data moves",
        },
        Case {
            name: "mean",
            inputs: vec![input(&[3, 7])],
            op: |t| ops::mean(&t[0]),
            tol: 0.0,
            why: "summed on the host in f64 on both",
        },
    ]
}

/// `n` seeded values in `range` (stream = the input's position in the case).
fn values(n: usize, range: (f32, f32), seed: u64, stream: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| range.0 + (range.1 - range.0) * engine::rng::uniform_f32(seed, stream, i))
        .collect()
}

/// The op's output and the gradients of the inputs that ask for one, on `device`.
fn run(case: &Case, seed: u64, device: Device) -> engine::Result<(Vec<f32>, Vec<Vec<f32>>)> {
    let params: Vec<Param> = case
        .inputs
        .iter()
        .enumerate()
        .map(|(k, inp)| {
            let n = inp.shape.iter().product();
            let t = Tensor::from_vec(values(n, inp.range, seed, k as u64), inp.shape)?;
            let p = Param::new(format!("input{k}"), t.to_device(device)?);
            p.set_trainable(inp.grad);
            Ok(p)
        })
        .collect::<engine::Result<_>>()?;
    let inputs: Vec<Tensor> = params.iter().map(Param::tensor).collect();
    let y = (case.op)(&inputs)?;
    let n = y.numel();
    // L = <y, g> with the seeded upstream gradient g (stream 1000).
    let g = Tensor::from_vec(values(n, (-1.0, 1.0), seed, 1000), &[n, 1])?.to_device(device)?;
    let loss = ops::matmul(&ops::reshape(&y, &[1, n])?, &g)?;
    ops::reshape(&loss, &[])?.backward()?;
    let grads = params
        .iter()
        .filter(|p| p.is_trainable())
        .map(|p| {
            p.grad().map(|g| g.to_vec_f32()).ok_or_else(|| {
                engine::Error::Cuda(format!("{}: no gradient reached {}", case.name, p.name()))
            })
        })
        .collect::<engine::Result<_>>()?;
    Ok((y.to_vec_f32(), grads))
}

/// max |b − a| / max |a|.
fn error(cpu: &[f32], gpu: &[f32]) -> f32 {
    assert_eq!(cpu.len(), gpu.len(), "sizes differ");
    let scale = cpu.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let diff = cpu.iter().zip(gpu).fold(0f32, |m, (a, b)| {
        if (a - b).abs() > m || (a - b).is_nan() {
            (a - b).abs()
        } else {
            m
        }
    });
    diff / scale
}

/// Why the GPU half cannot run here, or None when it can.
fn no_gpu() -> Option<String> {
    match engine::cuda::probe() {
        Err(e) => Some(e.to_string()),
        Ok(info) => {
            // A GPU without its libraries is a broken setup, not a skip.
            assert!(
                info.cublas && info.cudnn,
                "{info}: cuBLAS and cuDNN must be on LD_LIBRARY_PATH to test the GPU"
            );
            None
        }
    }
}

#[test]
fn every_op_matches_the_cpu_on_the_gpu() {
    const SEED: u64 = 2024;
    let table = cases();
    // The CPU half runs everywhere: every case must be valid and give every gradient.
    let cpu: Vec<_> = table
        .iter()
        .map(|c| run(c, SEED, Device::Cpu).unwrap_or_else(|e| panic!("{} on the CPU: {e}", c.name)))
        .collect();
    for (c, (_, grads)) in table.iter().zip(&cpu) {
        let wanted = c.inputs.iter().filter(|i| i.grad).count();
        assert_eq!(grads.len(), wanted, "{}: gradients", c.name);
    }
    if let Some(why) = no_gpu() {
        tests::skipped(format_args!(
            "{} cases ran on the CPU only; no GPU: {why}",
            table.len()
        ));
        return;
    }
    let mut failures = Vec::new();
    println!(
        "{:<55} {:>10} {:>10}  tolerance",
        "case", "output", "worst grad"
    );
    for (c, (y_cpu, g_cpu)) in table.iter().zip(&cpu) {
        let (y_gpu, g_gpu) = match run(c, SEED, Device::Cuda(0)) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: {e}", c.name));
                continue;
            }
        };
        let out = error(y_cpu, &y_gpu);
        let grad = g_cpu
            .iter()
            .zip(&g_gpu)
            .map(|(a, b)| error(a, b))
            .fold(0f32, f32::max);
        println!(
            "{:<55} {out:>10.2e} {grad:>10.2e}  {:.0e} ({})",
            c.name, c.tol, c.why
        );
        if !(out <= c.tol && grad <= c.tol) {
            failures.push(format!(
                "{}: output error {out:.2e}, worst gradient error {grad:.2e} > {:.0e}",
                c.name, c.tol
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "GPU differs from CPU:\n{}",
        failures.join("\n")
    );
}

#[test]
fn fused_uint8_input_matches_resize_then_preprocess_in_every_mode() {
    let (n, h, w, size) = (3, 32, 32, 67);
    let bytes: Vec<u8> = (0..n * h * w * 3)
        .map(|i| (engine::rng::random_u64(5, 0, i as u64) % 256) as u8)
        .collect();
    let floats: Vec<f32> = bytes.iter().map(|&b| b as f32).collect();
    let x = Tensor::from_vec(floats, &[n, h, w, 3]).unwrap();
    let resized = ops::bilinear_resize(&x, size, size).unwrap();
    // On the CPU the fused path is refused with a message naming the CPU path.
    let map = models::Preprocessing::Caffe.pixel_map();
    let e = ops::bilinear_resize::resize_u8(&bytes, [n, h, w], size, size, &map, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("preprocess_input"), "{e}");
    if let Some(why) = no_gpu() {
        tests::skipped(format_args!("no GPU: {why}"));
        return;
    }
    for mode in models::Preprocessing::ALL {
        let cpu = models::preprocess_input(mode, &resized)
            .unwrap()
            .to_vec_f32();
        let gpu = ops::bilinear_resize::resize_u8(
            &bytes,
            [n, h, w],
            size,
            size,
            &mode.pixel_map(),
            Device::Cuda(0),
        )
        .unwrap()
        .to_vec_f32();
        let err = error(&cpu, &gpu);
        let equal = cpu
            .iter()
            .zip(&gpu)
            .filter(|(a, b)| a.to_bits() == b.to_bits())
            .count();
        println!(
            "fused u8 -> resize -> {mode}: max error {err:.2e} (relative to max |x|), {equal} of {} \
             bit-equal",
            cpu.len()
        );
        // The kernel repeats the CPU's taps, products, division and
        // subtraction operation for operation (no FMA contraction), so the
        // two are equal bit for bit.
        assert_eq!(
            equal,
            cpu.len(),
            "fused {mode} input path differs: {err:.2e}"
        );
    }
}

/// Three steps of every optimizer variant on one parameter, on the CPU and
/// on GPU 0, from the same seeded weights and gradients.
#[test]
fn optimizers_step_on_the_gpu_as_on_the_cpu() {
    use engine::optim::{Adam, Optimizer, Sgd};
    type Make = fn() -> Box<dyn Optimizer>;
    let variants: [(&str, Make); 6] = [
        ("SGD", || Box::new(Sgd::new(0.1))),
        ("SGD momentum 0.9", || {
            Box::new(Sgd::new(0.1).with_momentum(0.9, false))
        }),
        ("SGD Nesterov 0.9 + weight decay 0.01", || {
            Box::new(
                Sgd::new(0.1)
                    .with_momentum(0.9, true)
                    .with_weight_decay(0.01),
            )
        }),
        ("SGD + weight decay 0.01", || {
            Box::new(Sgd::new(0.1).with_weight_decay(0.01))
        }),
        ("Adam", || Box::new(Adam::new(1e-2))),
        ("Adam + weight decay 0.004", || {
            Box::new(Adam::new(1e-2).with_weight_decay(0.004))
        }),
    ];
    let n = 1000;
    let steps = |make: Make, device: Device| -> engine::Result<Vec<f32>> {
        let w = Tensor::from_vec(values(n, (-1.0, 1.0), 9, 0), &[10, 100])?;
        let p = Param::new("w", w.to_device(device)?);
        let mut opt = make();
        for s in 0..3 {
            let g = Tensor::from_vec(values(n, (-1.0, 1.0), 9, 1 + s), &[10, 100])?;
            // A gradient as backward would leave it: L = <w, g>.
            let g = g.to_device(device)?;
            let y = ops::reshape(&p.tensor(), &[1, n])?;
            let loss = ops::matmul(&y, &ops::reshape(&g, &[n, 1])?)?;
            ops::reshape(&loss, &[])?.backward()?;
            opt.step(std::slice::from_ref(&p))?;
            p.zero_grad();
            // The weights stay where they were: no round trip through the host.
            assert_eq!(p.value().device(), device);
        }
        Ok(p.value().to_vec_f32())
    };
    let cpu: Vec<Vec<f32>> = variants
        .iter()
        .map(|(name, make)| steps(*make, Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect();
    if let Some(why) = no_gpu() {
        tests::skipped(format_args!(
            "{} optimizers stepped on the CPU only; no GPU: {why}",
            variants.len()
        ));
        return;
    }
    let mut failures = Vec::new();
    for ((name, make), cpu) in variants.iter().zip(&cpu) {
        match steps(*make, Device::Cuda(0)) {
            Ok(gpu) => {
                let err = error(cpu, &gpu);
                println!("{name:<40} 3 steps: max error {err:.2e}");
                // Same scalars, same order, every operation rounded once (sgd.cu, adam.cu).
                if err != 0.0 {
                    failures.push(format!("{name}: error {err:.2e}, expected bit for bit"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "optimizers on the GPU differ from the CPU:\n{}",
        failures.join("\n")
    );
}

/// A BatchNormalization layer in training mode on the GPU: its moving
/// statistics are updated there (a `mul` by a scalar and an `add`, never
/// through the host) to the CPU's values.
#[test]
fn batch_norm_layer_updates_moving_statistics_on_the_gpu_as_on_the_cpu() {
    use models::layers::BatchNormalization;
    let x = Tensor::from_vec(values(4 * 3 * 3 * 6, (-1.0, 2.0), 4, 0), &[4, 3, 3, 6]).unwrap();
    let run = |device: Device| -> engine::Result<(Vec<f32>, Vec<f32>)> {
        let bn = BatchNormalization::new("bn", 6, 1e-3);
        for p in models::layers::WeightedLayer::weights(&bn) {
            p.set_value(p.value().to_device(device)?)?;
        }
        for _ in 0..2 {
            bn.forward(&x.to_device(device)?, true)
                .map_err(|e| engine::Error::Cuda(e.to_string()))?;
        }
        let (mean, var) = (bn.moving_mean.value(), bn.moving_variance.value());
        assert_eq!((mean.device(), var.device()), (device, device));
        Ok((mean.to_vec_f32(), var.to_vec_f32()))
    };
    let (mean_cpu, var_cpu) = run(Device::Cpu).unwrap();
    assert!(mean_cpu.iter().all(|m| *m != 0.0), "{mean_cpu:?}");
    if let Some(why) = no_gpu() {
        tests::skipped(format_args!("no GPU: {why}"));
        return;
    }
    let (mean_gpu, var_gpu) = run(Device::Cuda(0)).unwrap();
    let (em, ev) = (error(&mean_cpu, &mean_gpu), error(&var_cpu, &var_gpu));
    println!("batch norm moving statistics, 2 steps: mean {em:.2e}, variance {ev:.2e}");
    // The batch statistics themselves differ by ~1e-6 (f32 Welford vs f64).
    assert!(em <= 1e-5 && ev <= 1e-5, "mean {em:.2e}, variance {ev:.2e}");
}

#[test]
fn mixed_devices_and_missing_gpus_are_clear_errors() {
    let x = Tensor::from_vec(vec![1f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    match no_gpu() {
        Some(why) => {
            // Without a GPU, moving a tensor there says what is missing and what to do.
            let e = x.to_device(Device::Cuda(0)).unwrap_err().to_string();
            assert!(e.contains("--device cpu"), "{e}");
            tests::skipped(format_args!(
                "(mixed devices need a GPU): to_device without one says: {e}"
            ));
            let _ = why;
        }
        None => {
            let g = x.to_device(Device::Cuda(0)).unwrap();
            let e = ops::matmul(&x, &g).unwrap_err().to_string();
            assert!(
                e.contains("cpu and cuda:0") && e.contains("to_device"),
                "{e}"
            );
            let e = ops::add(&g, &x).unwrap_err().to_string();
            assert!(e.contains("cuda:0 and cpu"), "{e}");
            assert_eq!(g.to_vec_f32(), x.to_vec_f32());
            assert_eq!(
                g.to_device(Device::Cpu).unwrap().to_vec_f32(),
                x.to_vec_f32()
            );
        }
    }
    // f64 never goes to a GPU, whatever the machine: the dtype is checked first.
    let e = x
        .to_dtype(engine::DType::F64)
        .unwrap()
        .to_device(Device::Cuda(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("f32"), "{e}");
}

/// Half precision (`conv2d_in` with f16/bf16, feature extraction only, so
/// outside the gradient table above): cuDNN's 16-bit convolution with f32
/// accumulation on tensor cores against the CPU emulation (`conv2d/half_precision.rs`).
/// Also checks that the OHWI filter kept with a kernel's storage is reused
/// and kept apart per precision: f32 after f16 on the same kernel is still
/// the f32 result.
/// The conv2d cases again under each cuDNN algorithm policy
/// (`docs/cuda.md`, "Convolution algorithms"), each run twice: the first run
/// makes the plans (in benchmark mode timing the candidates with
/// cudnnFind), the second reuses them. Any allowed algorithm must match the
/// CPU within the case's tolerance (FMA math, no TF32), and with
/// deterministic algorithms only the two runs must agree bit for bit. (The
/// policy is the device's: other tests of this binary running meanwhile use
/// it too, and any allowed algorithm meets their tolerances as well.)
#[test]
fn conv2d_matches_the_cpu_under_every_algorithm_policy() {
    use engine::ops::conv2d::{AlgorithmPolicy, Search};
    const SEED: u64 = 77;
    let convs: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.name.starts_with("conv2d"))
        .collect();
    let cpu: Vec<_> = convs
        .iter()
        .map(|c| run(c, SEED, Device::Cpu).unwrap_or_else(|e| panic!("{} on the CPU: {e}", c.name)))
        .collect();
    if let Some(why) = no_gpu() {
        tests::skipped(format_args!(
            "{} conv2d cases x 3 algorithm policies ran on the CPU only; no GPU: {why}",
            convs.len()
        ));
        return;
    }
    let device = engine::cuda::CudaDevice::open(0).unwrap();
    let before = device.conv_algorithm_policy();
    let policies = [
        (Search::Heuristic, true),
        (Search::Benchmark, true),
        (Search::Benchmark, false),
    ];
    let mut failures = Vec::new();
    for (search, deterministic_only) in policies {
        device.set_conv_algorithm_policy(AlgorithmPolicy {
            search,
            deterministic_only,
        });
        for (c, (y_cpu, g_cpu)) in convs.iter().zip(&cpu) {
            let label = format!(
                "{} ({search:?}, deterministic only: {deterministic_only})",
                c.name
            );
            let runs = [run(c, SEED, Device::Cuda(0)), run(c, SEED, Device::Cuda(0))];
            let [Ok(first), Ok(second)] = runs else {
                let e = runs.into_iter().find_map(Result::err).unwrap();
                failures.push(format!("{label}: {e}"));
                continue;
            };
            let out = error(y_cpu, &first.0);
            let grad = g_cpu
                .iter()
                .zip(&first.1)
                .map(|(a, b)| error(a, b))
                .fold(0f32, f32::max);
            println!("{label:<90} {out:>10.2e} {grad:>10.2e}");
            if !(out <= c.tol && grad <= c.tol) {
                failures.push(format!(
                    "{label}: output error {out:.2e}, worst gradient error {grad:.2e} > {:.0e}",
                    c.tol
                ));
            }
            if deterministic_only && first != second {
                failures.push(format!(
                    "{label}: two runs differ (deterministic algorithms)"
                ));
            }
        }
    }
    device.set_conv_algorithm_policy(before);
    assert!(
        failures.is_empty(),
        "GPU conv2d differs from the CPU or between runs:\n{}",
        failures.join("\n")
    );
}

#[test]
fn half_precision_conv_matches_the_cpu_emulation() {
    use engine::Precision;
    // (name, input NHWC, kernel HWIO, stride, padding, bias)
    #[allow(clippy::type_complexity)]
    let cases: [(&str, [usize; 4], [usize; 4], usize, Padding, bool); 5] = [
        (
            "3x3 s1 same + bias, 3 -> 4",
            [2, 7, 9, 3],
            [3, 3, 3, 4],
            1,
            Padding::Same,
            true,
        ),
        (
            "7x7 s2 valid + bias (stem)",
            [2, 16, 15, 3],
            [7, 7, 3, 8],
            2,
            Padding::Valid,
            true,
        ),
        (
            "1x1 s1, 32 -> 64",
            [2, 5, 6, 32],
            [1, 1, 32, 64],
            1,
            Padding::Valid,
            false,
        ),
        (
            "3x3 s2 same, even (pad below)",
            [1, 8, 10, 8],
            [3, 3, 8, 16],
            2,
            Padding::Same,
            true,
        ),
        (
            "3x3 s1 same, 64 -> 64",
            [2, 12, 12, 64],
            [3, 3, 64, 64],
            1,
            Padding::Same,
            true,
        ),
    ];
    let make = |(_, xs, ks, _, _, _): &(&str, [usize; 4], [usize; 4], usize, Padding, bool)| {
        let n = |s: &[usize]| s.iter().product::<usize>();
        (
            Tensor::from_vec(values(n(xs), (-2.0, 2.0), 11, 0), xs).unwrap(),
            Tensor::from_vec(values(n(ks), (-0.5, 0.5), 11, 1), ks).unwrap(),
            Tensor::from_vec(values(ks[3], (-1.0, 1.0), 11, 2), &[ks[3]]).unwrap(),
        )
    };
    let conv = |p: Precision,
                c: &(&str, [usize; 4], [usize; 4], usize, Padding, bool),
                t: &(Tensor, Tensor, Tensor)| {
        let _g = engine::no_grad();
        let bias = c.5.then_some(&t.2);
        ops::conv2d_in(p, &t.0, &t.1, bias, (c.3, c.3), c.4).map(|y| y.to_vec_f32())
    };
    // The CPU half runs everywhere.
    let mut cpu = Vec::new();
    for c in &cases {
        let t = make(c);
        for p in Precision::ALL {
            cpu.push(conv(p, c, &t).unwrap_or_else(|e| panic!("{} {p} on the CPU: {e}", c.0)));
        }
    }
    if let Some(why) = no_gpu() {
        tests::skipped(format_args!(
            "{} half-precision conv cases ran on the CPU only; no GPU: {why}",
            cases.len() * 2
        ));
        return;
    }
    let info = engine::cuda::probe().unwrap();
    let mut failures = Vec::new();
    let mut i = 0;
    for c in &cases {
        let cpu_t = make(c);
        let gpu_t = (
            cpu_t.0.to_device(Device::Cuda(0)).unwrap(),
            cpu_t.1.to_device(Device::Cuda(0)).unwrap(),
            cpu_t.2.to_device(Device::Cuda(0)).unwrap(),
        );
        // f16 and bf16 first, then f32 on the same kernel storage (its own cached filter).
        for p in [Precision::F16, Precision::Bf16, Precision::F32] {
            let want = &cpu[i + Precision::ALL.iter().position(|&q| q == p).unwrap()];
            // Tolerance, relative to max |y|: the GPU sums the exact
            // products of 16-bit values in another order (tensor-core
            // tiles) than the CPU's GEMM, which can move a result across a
            // 16-bit rounding boundary: one ulp of its format, at most
            // 2⁻¹⁰ (f16) or 2⁻⁷ (bf16) of the value. Two such ulps of the
            // largest output: f16 2⁻⁹ ≈ 2.0e-3, bf16 2⁻⁶ ≈ 1.6e-2. f32:
            // the table's 1e-5 (FMA math, no TF32).
            let tol = match p {
                Precision::F32 => 1e-5,
                Precision::F16 => 2f32.powi(-9),
                Precision::Bf16 => 2f32.powi(-6),
            };
            let got = match conv(p, c, &gpu_t) {
                Ok(y) => y,
                Err(e) if p == Precision::Bf16 && info.compute_capability.0 < 8 => {
                    let e = e.to_string();
                    assert!(e.contains("compute capability 8.0"), "{e}");
                    println!(
                        "{}: bf16 refused below compute capability 8.0 (as it should)",
                        c.0
                    );
                    continue;
                }
                Err(e) => {
                    failures.push(format!("{} {p}: {e}", c.0));
                    continue;
                }
            };
            // The cached filter is reused: the same call again, the same bits.
            let again = conv(p, c, &gpu_t).unwrap();
            let err = error(want, &got);
            let exact = want.iter().zip(&got).filter(|(a, b)| a == b).count();
            println!(
                "half conv {:<32} {p:>5}: error {err:.2e} (tolerance {tol:.1e}), {exact} of {} bit-equal",
                c.0,
                want.len()
            );
            if err.is_nan() || err > tol || again != got {
                failures.push(format!(
                    "{} {p}: error {err:.2e} > {tol:.1e}, or a second call differs ({})",
                    c.0,
                    again != got
                ));
            }
        }
        i += Precision::ALL.len();
    }
    assert!(
        failures.is_empty(),
        "GPU half precision differs:\n{}",
        failures.join("\n")
    );
}
