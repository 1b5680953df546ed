//! The f32 path of `direct/` against the reference loops of `cpu.rs`,
//! on shapes and thread counts that reach every branch of the direct path.

use super::cpu::{dkernel_reference, dx_reference, forward_reference, Geometry};
use super::direct::{dkernel, dx, forward, PIXELS_ABOVE};
use crate::ops::padding::{window_2d, Padding};

fn values(len: usize, seed: u64) -> Vec<f32> {
    (0..len)
        .map(|i| crate::rng::uniform_f32(seed, 0, i as u64) * 2.0 - 1.0)
        .collect()
}

/// Input `[n, h, w, c]`, kernel `[k, k, c, m]`.
fn geometry(
    [n, h, w, c, m]: [usize; 5],
    k: (usize, usize),
    stride: usize,
    padding: Padding,
) -> Geometry {
    let win = window_2d("test", (h, w), k, (stride, stride), padding).unwrap();
    Geometry {
        n,
        h,
        w,
        c,
        m,
        kh: k.0,
        kw: k.1,
        sh: stride,
        sw: stride,
        oh: win.out_h,
        ow: win.out_w,
        pad_top: win.pad_top,
        pad_left: win.pad_left,
    }
}

fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// Largest |a − b| over the largest |b|.
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |s, v| s.max(v.abs())).max(1e-30);
    a.iter()
        .zip(b)
        .fold(0.0f32, |e, (u, v)| e.max((u - v).abs()))
        / scale
}

/// The direct forward equals the reference bit for bit, without and with
/// `bias`, on 1 and 3 threads.
fn assert_forward_is_the_reference(
    x: &[f32],
    kernel: &[f32],
    bias: &[f32],
    g: &Geometry,
    what: &str,
) {
    for b in [None, Some(bias)] {
        let want = forward_reference(x, kernel, b, g);
        for threads in [1, 3] {
            let got = on_threads(threads, || forward(x, kernel, b, g, false));
            assert!(
                got == want,
                "{what}: forward on {threads} threads, bias {}",
                b.is_some()
            );
        }
    }
}

/// Forward and dx equal the reference bit for bit, dK to 1e-6 of its
/// largest value (its partial sums are grouped differently; see
/// `direct/`) and bit for bit between 1 and 3 threads, over odd sizes,
/// m = 1, 2 and 3, strides 1 and 2, every padding kind, with and without bias,
/// channel counts that are not multiples of 16, and more than one register
/// block (`direct/sums.rs`'s `sum_block`); the 3×3 cases cover groups of
/// `PIXELS` pixels next to single border pixels, and dK's taps summed side
/// by side (on a CPU without AVX-512F, for the forward; with it, 3×3
/// forwards with m = 1 take `row_3x3` and their dK `dk_3x3`, and the 5×5 stride-1 case with 6
/// inner output columns covers those groups); the 5×5 stride-1 cases with
/// 8 or more inner output columns cover the forward's window-row kernel
/// (groups of 8 and of 4; the test sizes all stay below its streaming
/// threshold).
#[test]
fn direct_path_matches_the_reference() {
    let explicit = Padding::Explicit {
        top: 2,
        bottom: 0,
        left: 1,
        right: 3,
    };
    let cases = [
        ([2, 9, 7, 5, 1], (3, 3), 1, Padding::Same),
        ([2, 9, 7, 5, 1], (3, 3), 2, Padding::Same),
        ([1, 8, 10, 17, 1], (3, 3), 2, Padding::Same),
        ([3, 7, 5, 3, 2], (3, 3), 1, Padding::Same),
        ([2, 11, 9, 4, 2], (3, 3), 2, Padding::Valid),
        ([2, 6, 7, 19, 3], (2, 3), 2, explicit),
        ([1, 5, 6, 33, 1], (5, 5), 1, Padding::Same),
        ([2, 12, 12, 40, 1], (3, 3), 2, Padding::Same),
        // Many output rows: several partial dK blocks; with 9·128
        // channels, also summed in more than one chunk.
        ([4, 16, 9, 24, 1], (3, 3), 1, Padding::Same),
        ([4, 12, 6, 128, 1], (3, 3), 1, Padding::Same),
        // Register blocks of 64 + a rest of 6; 64 + 64; 3·64 + 2·16 + 3.
        ([2, 7, 6, 70, 1], (3, 3), 2, Padding::Same),
        ([1, 5, 5, 128, 1], (3, 3), 1, explicit),
        ([1, 6, 5, 227, 1], (3, 3), 1, Padding::Same),
        // The forward's window-row kernel (`window_rows`, 5×5; 3×3 on a
        // CPU with AVX-512F take `row_3x3`):
        // groups that fit the inner pixels exactly and groups whose last
        // one overlaps the one before; 16-channel blocks and a masked rest
        // (and the same at stride 2, which takes the single-pixel path).
        ([2, 6, 13, 37, 1], (3, 3), 1, Padding::Same),
        ([1, 5, 14, 19, 1], (3, 3), 1, Padding::Same),
        ([1, 4, 12, 16, 1], (3, 3), 1, Padding::Valid),
        ([1, 7, 14, 21, 1], (5, 5), 1, Padding::Same),
        ([2, 11, 13, 20, 1], (5, 5), 2, Padding::Same),
        ([2, 6, 10, 24, 1], (5, 5), 1, Padding::Same),
        ([1, 9, 19, 48, 1], (3, 3), 2, Padding::Same),
        // 3×3 rows whose window has one row inside the input, and border
        // pixels with one or no column inside it (`row_3x3`).
        ([2, 6, 9, 20, 1], (3, 3), 1, explicit),
        ([1, 7, 9, 33, 1], (3, 3), 2, explicit),
    ];
    for (i, (dims, k, s, padding)) in cases.into_iter().enumerate() {
        let g = geometry(dims, k, s, padding);
        let seed = 10 * i as u64;
        let x = values(g.n * g.h * g.w * g.c, seed);
        let kernel = values(g.kh * g.kw * g.cm(), seed + 1);
        let bias = values(g.cm(), seed + 2);
        let dy = values(g.n * g.oh * g.ow * g.cm(), seed + 3);
        let what = format!("case {i}: {g:?}");
        assert_forward_is_the_reference(&x, &kernel, &bias, &g, &what);
        let want_dx = dx_reference(&kernel, &dy, &g);
        let want_dk = dkernel_reference(&x, &dy, &g);
        let dk_1 = on_threads(1, || dkernel(&x, &dy, &g));
        for threads in [1, 3] {
            let got = on_threads(threads, || dx(&kernel, &dy, &g));
            assert!(got == want_dx, "{what}: dx on {threads} threads");
            let got = on_threads(threads, || dkernel(&x, &dy, &g));
            assert!(
                got == dk_1,
                "{what}: dK differs between 1 and {threads} threads"
            );
        }
        let e = relative_error(&dk_1, &want_dk);
        assert!(e <= 1e-6, "{what}: dK relative error {e:e}");
    }
}

/// The forward of 3×3 layers with m = 1 whose operands exceed
/// [`PIXELS_ABOVE`] bytes of input and output (on a CPU with AVX-512F they
/// take `pixels_3x3`) equals the reference bit for bit, on 1
/// and 3 threads, with and without bias: strides 1 and 2, groups of pixels
/// next to border pixels, a masked rest of channels, and (explicit padding)
/// rows whose window has one or two rows inside the input and border
/// pixels with one or two columns inside it. The shapes are checked to be
/// above the threshold, so that the test keeps reaching that path.
#[test]
fn pixel_by_pixel_forward_matches_the_reference() {
    let explicit = Padding::Explicit {
        top: 2,
        bottom: 1,
        left: 2,
        right: 0,
    };
    let cases = [
        ([1, 101, 100, 211, 1], 1, Padding::Same),
        ([2, 161, 158, 70, 1], 2, Padding::Same),
        ([1, 100, 103, 209, 1], 1, explicit),
        ([2, 160, 161, 73, 1], 2, explicit),
    ];
    for (i, (dims, s, padding)) in cases.into_iter().enumerate() {
        let g = geometry(dims, (3, 3), s, padding);
        let bytes = 4 * (g.n * g.h * g.w * g.c + g.n * g.oh * g.ow * g.cm());
        assert!(
            bytes > PIXELS_ABOVE,
            "case {i}: {bytes} bytes, under the threshold"
        );
        let seed = 300 + 10 * i as u64;
        let x = values(g.n * g.h * g.w * g.c, seed);
        let kernel = values(9 * g.cm(), seed + 1);
        let bias = values(g.cm(), seed + 2);
        assert_forward_is_the_reference(&x, &kernel, &bias, &g, &format!("case {i}: {g:?}"));
    }
}

/// `depthwise_conv2d_relu6` equals `relu6(depthwise_conv2d(..))` bit for
/// bit (3×3 and 5×5, strides 1 and 2, m = 1 and 2, with and without bias)
/// on values whose outputs reach both clamps.
#[test]
fn depthwise_relu6_equals_relu6_of_depthwise() {
    use crate::ops::{depthwise_conv2d, depthwise_conv2d_relu6, relu6};
    use crate::Tensor;
    let cases = [
        ([2, 9, 13, 37, 1], 3, 1),
        ([1, 11, 13, 20, 1], 5, 2),
        ([1, 7, 14, 16, 2], 3, 1),
    ];
    for (i, ([n, h, w, c, m], k, s)) in cases.into_iter().enumerate() {
        let seed = 200 + 10 * i as u64;
        let tensor = |v: Vec<f32>, shape: &[usize]| Tensor::from_vec(v, shape).unwrap();
        let scaled = |len: usize, scale: f32, seed: u64| -> Vec<f32> {
            values(len, seed).iter().map(|v| v * scale).collect()
        };
        let x = tensor(scaled(n * h * w * c, 8.0, seed), &[n, h, w, c]);
        let kernel = tensor(scaled(k * k * c * m, 2.0, seed + 1), &[k, k, c, m]);
        let bias = tensor(scaled(c * m, 3.0, seed + 2), &[c * m]);
        for b in [None, Some(&bias)] {
            let want = relu6(&depthwise_conv2d(&x, &kernel, b, (s, s), Padding::Same).unwrap())
                .unwrap()
                .to_vec_f32();
            let got = depthwise_conv2d_relu6(&x, &kernel, b, (s, s), Padding::Same)
                .unwrap()
                .to_vec_f32();
            assert!(got == want, "case {i}, bias {}", b.is_some());
            assert!(
                want.contains(&0.0) && want.contains(&6.0),
                "case {i}: the outputs should reach both clamps"
            );
        }
    }
}
