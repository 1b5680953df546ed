//! Throughput probe (not a test): VGG16's 13 conv layers and 5 max pools,
//! forward only, under `no_grad`, random weights, batch 32 at 32×32.
//!
//!     cargo run --release -p engine --example conv_speed [batch] [size] [repeats]
//!
//! Prints images/s and GFLOP/s (2 FLOPs per multiply-add, convs only), and
//! the time spent in each layer of the last repeat.

use engine::autograd::record;
use engine::ops::{self, Padding};
use engine::rng::uniform_f32;
use engine::{no_grad, CpuStorage, DType, Param, Storage, Tensor};
use std::time::Instant;

/// VGG16's feature extractor: output channels of each 3×3 'same' conv, 0 = 2×2 max pool.
const VGG16: [usize; 18] = [
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];

fn random(shape: &[usize], scale: f32, stream: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (uniform_f32(7, stream, i as u64) - 0.5) * 2.0 * scale)
        .collect();
    Tensor::from_vec(v, shape).expect("shape matches")
}

fn main() -> engine::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments: batch size repeats"))
        .collect();
    let batch = args.first().copied().unwrap_or(32);
    let size = args.get(1).copied().unwrap_or(32);
    let repeats = args.get(2).copied().unwrap_or(5);

    // He-uniform weights keep activations in range through 13 ReLU layers.
    let mut layers = Vec::new();
    let (mut c, mut flops, mut side) = (3usize, 0f64, size);
    for (i, &o) in VGG16.iter().enumerate() {
        if o == 0 {
            layers.push(None);
            side /= 2;
            continue;
        }
        let scale = (6.0 / (9 * c) as f32).sqrt();
        let kernel = random(&[3, 3, c, o], scale, 2 * i as u64);
        let bias = random(&[o], 0.01, 2 * i as u64 + 1);
        flops += 2.0 * (side * side * 9 * c * o) as f64;
        layers.push(Some((kernel, bias)));
        c = o;
    }
    let x = random(&[batch, size, size, 3], 1.0, 1000);

    let _guard = no_grad();
    let cpu_start = process_cpu_seconds();
    let wall_start = Instant::now();
    let mut best = f64::INFINITY;
    let mut per_layer = vec![0f64; layers.len()];
    for _ in 0..repeats {
        let start = Instant::now();
        let mut y = x.clone();
        for (i, layer) in layers.iter().enumerate() {
            let t = Instant::now();
            y = match layer {
                Some((k, b)) => ops::relu(&ops::conv2d(&y, k, Some(b), (1, 1), Padding::Same)?)?,
                None => ops::max_pool2d(&y, (2, 2), (2, 2), Padding::Valid)?,
            };
            per_layer[i] = t.elapsed().as_secs_f64();
        }
        best = best.min(start.elapsed().as_secs_f64());
        assert!(y.to_vec_f32().iter().all(|v| v.is_finite()));
    }
    for (i, (&o, t)) in VGG16.iter().zip(&per_layer).enumerate() {
        let what = if o == 0 {
            "max_pool 2x2".to_string()
        } else {
            format!("conv3x3 -> {o}")
        };
        println!("layer {i:2} {what:>14}: {:7.2} ms", t * 1e3);
    }
    println!(
        "VGG16 convs+pools forward, batch {batch} at {size}x{size}: best of {repeats}: {:.1} ms, \
         {:.1} images/s, {:.1} GFLOP/s ({:.3} GFLOP/image)",
        best * 1e3,
        batch as f64 / best,
        flops * batch as f64 / best / 1e9,
        flops / 1e9
    );
    // On a shared machine the wall clock also counts other processes' turns; the
    // process's CPU time spread over the cores says what an idle machine would do.
    if let Some(cpu_start) = cpu_start {
        let cpu = process_cpu_seconds().unwrap_or(cpu_start) - cpu_start;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wall = wall_start.elapsed().as_secs_f64();
        println!(
            "CPU time {cpu:.2} s over {wall:.2} s wall ({:.0}% of {cores} cores): \
             {:.1} images/s if the {cores} cores were ours alone",
            100.0 * cpu / wall / cores as f64,
            (batch * repeats) as f64 / (cpu / cores as f64)
        );
    }
    drop(_guard);
    training_step(&layers, &x)?;
    gemm_ceiling(batch * size * size, 9 * 64, 64);
    gemm_ceiling(batch * size * size / 16, 9 * 256, 256);
    Ok(())
}

/// One forward + backward pass with every kernel and bias trainable (full
/// fine-tuning), the loss being the sum of the last feature map.
fn training_step(layers: &[Option<(Tensor, Tensor)>], x: &Tensor) -> engine::Result<()> {
    let params: Vec<Option<(Param, Param)>> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.as_ref().map(|(k, b)| {
                (
                    Param::new(format!("conv{i}/kernel"), k.clone()),
                    Param::new(format!("conv{i}/bias"), b.clone()),
                )
            })
        })
        .collect();
    let start = Instant::now();
    let mut y = x.clone();
    for layer in &params {
        y = match layer {
            Some((k, b)) => ops::relu(&ops::conv2d(
                &y,
                &k.tensor(),
                Some(&b.tensor()),
                (1, 1),
                Padding::Same,
            )?)?,
            None => ops::max_pool2d(&y, (2, 2), (2, 2), Padding::Valid)?,
        };
    }
    let forward = start.elapsed().as_secs_f64();
    let total: f32 = y.to_vec_f32().iter().sum();
    let shape = y.shape().to_vec();
    let loss = record(
        "sum",
        Storage::Cpu(CpuStorage::F32(vec![total])),
        vec![],
        &[&y],
        Box::new(move |_, _| Ok(vec![Some(Tensor::ones(&shape, DType::F32))])),
    );
    loss.backward()?;
    let all = start.elapsed().as_secs_f64();
    let batch = x.shape()[0];
    println!(
        "training step (all convs trainable, batch {batch}): forward {:.1} ms, backward {:.1} ms, \
         {:.1} images/s",
        forward * 1e3,
        (all - forward) * 1e3,
        batch as f64 / all
    );
    Ok(())
}

/// User + system CPU time of this process so far (Linux: /proc/self/stat, in clock
/// ticks of 1/100 s), or None where that file does not exist.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The GEMM alone, at the shape of one conv layer: the ceiling for that layer.
fn gemm_ceiling(m: usize, k: usize, n: usize) {
    let a: Vec<f32> = (0..m * k).map(|i| uniform_f32(1, 0, i as u64)).collect();
    let b: Vec<f32> = (0..k * n).map(|i| uniform_f32(1, 1, i as u64)).collect();
    let mut c = vec![0f32; m * n];
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        <f32 as engine::Element>::gemm(
            m,
            k,
            n,
            1.0,
            &a,
            (k as isize, 1),
            &b,
            (n as isize, 1),
            0.0,
            &mut c,
            (n as isize, 1),
        );
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "sgemm alone [{m}, {k}] x [{k}, {n}]: {:.2} ms, {:.1} GFLOP/s",
        best * 1e3,
        2.0 * (m * k * n) as f64 / best / 1e9
    );
}
