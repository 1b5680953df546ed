//! Throughput probe (not a test): the f32 depthwise convolution at
//! MobileNetV2's depthwise shapes (224 px, batch 8, 3×3, the bench's
//! `dw.*` rows), forward under `no_grad`, then dx alone and dK alone.
//!
//!     cargo run --release -p engine --example depthwise_speed [repeats] [threads]
//!
//! Prints the fastest run of each, in milliseconds. Run an old and a new build of it
//! in turn to compare them on a shared machine.

use engine::ops::{self, Padding};
use engine::rng::uniform_f32;
use engine::{no_grad, Param, Tensor};
use std::time::Instant;

/// (h = w, c, stride) of MobileNetV2's depthwise layers at 224 px.
const SHAPES: [(usize, usize, usize); 6] = [
    (112, 96, 2),
    (56, 144, 1),
    (28, 192, 1),
    (14, 384, 1),
    (14, 576, 1),
    (7, 960, 1),
];

fn random(shape: &[usize], stream: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| uniform_f32(7, stream, i as u64) * 2.0 - 1.0)
        .collect();
    Tensor::from_vec(v, shape).expect("shape matches")
}

/// The fastest of `repeats` runs of `f` in milliseconds, after one warm-up
/// run: on a shared machine, the run least disturbed by other processes.
fn fastest_ms(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.into_iter().fold(f64::INFINITY, f64::min)
}

fn main() -> engine::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments: repeats threads"))
        .collect();
    let repeats = args.first().copied().unwrap_or(15);
    let threads = args.get(1).copied().unwrap_or(2);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("the first rayon pool");
    engine::memory::keep_freed_memory();
    let pad = Padding::Explicit {
        top: 1,
        bottom: 1,
        left: 1,
        right: 1,
    };
    println!("shape (n=8, 3x3)      fwd ms    dx ms    dK ms");
    for (i, &(side, c, s)) in SHAPES.iter().enumerate() {
        let x = random(&[8, side, side, c], 2 * i as u64);
        let k = random(&[3, 3, c, 1], 2 * i as u64 + 1);
        let fwd = fastest_ms(repeats, || {
            let _guard = no_grad();
            ops::depthwise_conv2d(&x, &k, None, (s, s), pad).unwrap();
        });
        // dx alone (the kernel a constant), then dK alone: sum(y) as the loss.
        let backward = |grad_of_x: bool| {
            let (xp, kp) = (Param::new("x", x.clone()), Param::new("k", k.clone()));
            let (xt, kt) = if grad_of_x {
                (xp.tensor(), k.clone())
            } else {
                (x.clone(), kp.tensor())
            };
            let y = ops::depthwise_conv2d(&xt, &kt, None, (s, s), pad).unwrap();
            let loss = ops::sum(&y).unwrap();
            fastest_ms(repeats, || {
                xp.zero_grad();
                kp.zero_grad();
                loss.backward().unwrap();
            })
        };
        let (dx, dk) = (backward(true), backward(false));
        println!("{side:>3}x{side:<3}x{c:<4} s{s}     {fwd:8.3} {dx:8.3} {dk:8.3}");
    }
    Ok(())
}
