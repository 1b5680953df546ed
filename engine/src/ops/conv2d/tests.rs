//! Tests of the CPU conv2d in f32 and f64: every path against the one
//! definition, [`cpu::reference`] (the plain loops that open `cpu.rs`), the
//! path table of [`cpu::choose`] against the Keras layers it names, and the
//! chunking. Half precision is tested beside its code
//! (`half_precision.rs`), against a definition built from the same
//! reference; the tests in `tests/` reach it as [`super::reference`].

use super::algorithm::Direction;
use super::cpu::{self, backward_typed, choose, forward_typed, ConvGeometry, Needed, Path};
use super::implicit_gemm::{
    backward_dx, backward_dx_winograd, forward_direct, forward_packed, forward_rows,
};
use super::winograd;
use crate::gemm;
use crate::tensor::{CpuStorage, DType};

/// A geometry: input `(h, w, c)`, kernel `(kh, kw, o)`, stride, output
/// `(oh, ow)`, and the padding above and left of the input.
fn conv(
    n: usize,
    (h, w, c): (usize, usize, usize),
    (kh, kw, o): (usize, usize, usize),
    (sh, sw): (usize, usize),
    (oh, ow): (usize, usize),
    (pad_top, pad_left): (usize, usize),
) -> ConvGeometry {
    ConvGeometry {
        n,
        h,
        w,
        c,
        kh,
        kw,
        o,
        sh,
        sw,
        oh,
        ow,
        pad_top,
        pad_left,
    }
}

/// [`conv`] at stride 1.
fn stride_1(
    n: usize,
    input: (usize, usize, usize),
    kernel: (usize, usize, usize),
    out: (usize, usize),
    pad: (usize, usize),
) -> ConvGeometry {
    conv(n, input, kernel, (1, 1), out, pad)
}

/// [`conv`] with 'valid' padding: no padding, every window inside the input.
fn valid(
    n: usize,
    (h, w, c): (usize, usize, usize),
    (kh, kw, o): (usize, usize, usize),
    (sh, sw): (usize, usize),
) -> ConvGeometry {
    let out = ((h - kh) / sh + 1, (w - kw) / sw + 1);
    conv(n, (h, w, c), (kh, kw, o), (sh, sw), out, (0, 0))
}

/// 7×6 input, 3×2 kernel, stride (2, 1), 'same': pads 1/1 rows, 0/1 columns.
fn geometry() -> ConvGeometry {
    conv(5, (7, 6, 3), (3, 2, 4), (2, 1), (4, 6), (1, 0))
}

/// Every gradient, or only some.
const ALL: Needed = Needed {
    dx: true,
    dkernel: true,
    dbias: true,
};

fn values(n: usize, seed: u64) -> Vec<f64> {
    (0..n)
        .map(|i| crate::rng::uniform_f64(seed, 0, i as u64) - 0.5)
        .collect()
}

/// [`values`] rounded to f32.
fn f32_values(n: usize, seed: u64) -> Vec<f32> {
    values(n, seed).iter().map(|&v| v as f32).collect()
}

/// `f` run on a rayon pool of `threads` threads.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(f)
}

/// The f32 forward by the path [`choose`] picks, through `cpu::forward`.
fn chosen_forward(x: &[f32], k: &[f32], bias: Option<&[f32]>, g: &ConvGeometry) -> Vec<f32> {
    let f32s = |v: &[f32]| CpuStorage::F32(v.to_vec());
    match cpu::forward(&f32s(x), &f32s(k), bias.map(f32s).as_ref(), g).unwrap() {
        CpuStorage::F32(y) => y,
        other => panic!("f32 in, {} out", other.dtype()),
    }
}

/// One of the f32 forward paths: `forward_direct`, `forward_rows`, ...
type ForwardPath = fn(&[f32], &[f32], Option<&[f32]>, &ConvGeometry) -> Vec<f32>;

/// How a forward path's result must compare with [`forward_packed`]'s.
#[derive(Debug, Clone, Copy, PartialEq)]
enum AgainstPacked {
    SameBits,
    /// Equal values (`-0.0 == 0.0`).
    SameValues,
    /// Summed in another order: compared with the definition only.
    OtherOrder,
}

/// Runs the f32 forward `path` on `g` with random input and kernel,
/// with and without a bias, on 1 and 3 threads, and checks it against
/// the definition ([`cpu::reference`]), the two thread counts against each
/// other bit for bit, and against the packed path as `packed` says.
fn check_forward_path(g: &ConvGeometry, seed: u64, path: ForwardPath, packed: AgainstPacked) {
    let x = f32_values(g.n * g.h * g.w * g.c, seed);
    let k = f32_values(g.kh * g.kw * g.c * g.o, seed + 1);
    let bias = f32_values(g.o, seed + 2);
    let want = cpu::reference(
        &x.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &k.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        None,
        g,
    );
    for bias in [None, Some(&bias[..])] {
        let got = on_threads(1, || path(&x, &k, bias, g));
        let three = on_threads(3, || path(&x, &k, bias, g));
        let reference = forward_packed(&x, &k, bias, g);
        assert_eq!(got.len(), want.len());
        let tol = 1e-6 * g.col_width() as f64;
        for (i, &y) in got.iter().enumerate() {
            let w = want[i] + bias.map_or(0.0, |b| b[i % g.o] as f64);
            assert!(
                (y as f64 - w).abs() < tol,
                "{g:?} y[{i}] = {y}, expected {w}"
            );
            assert_eq!(
                y.to_bits(),
                three[i].to_bits(),
                "{g:?} y[{i}]: 3 threads differ"
            );
            match packed {
                AgainstPacked::SameBits => assert_eq!(
                    y.to_bits(),
                    reference[i].to_bits(),
                    "{g:?} y[{i}]: packed path differs"
                ),
                AgainstPacked::SameValues => {
                    assert_eq!(y, reference[i], "{g:?} y[{i}]: packed path differs")
                }
                AgainstPacked::OtherOrder => {}
            }
        }
    }
}

#[test]
fn row_chunks_give_the_whole_batch_result() {
    let g = geometry();
    let x = values(g.n * g.h * g.w * g.c, 1);
    let k = values(g.kh * g.kw * g.c * g.o, 2);
    let dy = values(g.n * g.oh * g.ow * g.o, 3);
    let whole = forward_typed(&x, &k, None, &g, usize::MAX);
    let expected = cpu::reference(&x, &k, None, &g);
    for (a, b) in whole.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    // A budget of one byte forces one output row per chunk (20 chunks,
    // 4 per image); 3 rows per chunk makes chunks straddle images.
    assert_eq!(g.rows_per_chunk::<f64>(1, 2), 1);
    let three_rows = 3 * g.ow * g.kh * g.kw * g.c * 8 * 2;
    assert_eq!(g.rows_per_chunk::<f64>(three_rows, 2), 3);
    let close = |a: &[f64], b: &[f64]| {
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(b) {
            assert!((p - q).abs() < 1e-12, "{p} vs {q}");
        }
    };
    let (dx1, dk1, db1) = backward_typed(&x, &k, &dy, &g, ALL, usize::MAX);
    for budget in [1, three_rows] {
        close(&forward_typed(&x, &k, None, &g, budget), &whole);
        let (dx2, dk2, db2) = backward_typed(&x, &k, &dy, &g, ALL, budget);
        close(dx2.as_ref().unwrap(), dx1.as_ref().unwrap());
        close(dk2.as_ref().unwrap(), dk1.as_ref().unwrap());
        assert_eq!(db1, db2);
    }
}

#[test]
fn forward_chunks_follow_the_tile_the_kernel_bound_and_the_budget() {
    // VGG16 block1_conv2 at 32 px, batch 32: a col row (output row) is
    // 32 px · 576 values · 4 bytes = 72 KiB.
    let g = stride_1(32, (32, 32, 64), (3, 3, 64), (32, 32), (1, 1));
    let row = 32 * 576 * 4;
    assert_eq!(g.forward_rows_per_chunk::<f32>(14 * row, usize::MAX), 14);
    // A tiny tile still gets 4·o = 256 pixels (8 output rows) per chunk...
    assert_eq!(g.forward_rows_per_chunk::<f32>(1, usize::MAX), 8);
    // ...unless the scratch budget allows fewer.
    assert_eq!(g.forward_rows_per_chunk::<f32>(1, 3 * row), 3);
    assert_eq!(
        g.forward_rows_per_chunk::<f32>(usize::MAX, usize::MAX),
        32 * 32
    );
}

#[test]
fn the_chosen_f32_forward_matches_the_definition() {
    if !gemm::avx512_available() {
        crate::skipped("this CPU has no AVX-512F, the implicit-GEMM forward is not used");
        return;
    }
    let cases = [
        geometry(),
        // 'same' 3×3 on 37 channels: a col row is 333 wide, so the GEMM's
        // K blocks (KC = 256) start in the middle of a kernel row.
        conv(2, (9, 8, 37), (3, 3, 70), (1, 1), (9, 8), (1, 1)),
        // ResNet's stem: 7×7 / 2 over 3 channels, 'valid' on a padded input.
        conv(2, (23, 23, 3), (7, 7, 64), (2, 2), (9, 9), (0, 0)),
        // 'same' at stride 2 (TensorFlow pads bottom/right only), and a 1×1.
        conv(3, (6, 7, 5), (3, 3, 33), (2, 2), (3, 4), (0, 1)),
        conv(2, (5, 4, 40), (1, 1, 17), (1, 1), (5, 4), (0, 0)),
        // A window wider than the input with padding on both sides.
        conv(1, (2, 3, 4), (5, 5, 3), (1, 1), (2, 3), (2, 2)),
        // InceptionV3's 1x7 'same': padded 3/3 columns, no rows.
        conv(2, (9, 14, 20), (1, 7, 24), (1, 1), (9, 14), (0, 3)),
    ];
    for g in cases {
        let x = values(g.n * g.h * g.w * g.c, 4);
        let k = values(g.kh * g.kw * g.c * g.o, 5);
        let bias = values(g.o, 6);
        let want = cpu::reference(&x, &k, None, &g);
        let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<_>>();
        let got = chosen_forward(&f32s(&x), &f32s(&k), Some(&f32s(&bias)), &g);
        assert_eq!(got.len(), want.len());
        for (i, (&y, &w)) in got.iter().zip(&want).enumerate() {
            let w = w + bias[i % g.o];
            // Inputs in [-0.5, 0.5): each of the kh·kw·c terms is at most 1/4.
            let tol = 1e-6 * (g.col_width() as f64).max(1.0);
            assert!(
                (y as f64 - w).abs() < tol,
                "{g:?} y[{i}] = {y}, expected {w}"
            );
        }
    }
}

#[test]
fn direct_forward_matches_the_definition_and_the_packed_path_bit_for_bit() {
    if !gemm::avx512_available() {
        crate::skipped("this CPU has no AVX-512F, the direct forward is not used");
        return;
    }
    let cases = [
        // ResNet's stem, smaller: 16 output columns, so the second tile
        // (pixels 4..16) overlaps the first.
        valid(2, (37, 37, 3), (7, 7, 64), (2, 2)),
        // One input channel, exactly one tile per output row (ow = 12).
        valid(1, (14, 14, 1), (3, 3, 32), (1, 1)),
        // Two channels, 5×5 / 2 on a non-square input, n = 40 (a partial panel).
        valid(3, (30, 29, 2), (5, 5, 40), (2, 2)),
        // Four channels, strides differing by axis, an input row longer
        // than the windows use (w not reached by the last window).
        valid(2, (9, 31, 4), (3, 3, 17), (1, 2)),
        // The widest field allowed: kh·kw·c = 252 ≤ KC.
        valid(1, (6, 20, 28), (3, 3, 33), (1, 1)),
    ];
    for g in cases {
        assert!(g.suits_direct(), "{g:?}");
        check_forward_path(&g, 10, forward_direct, AgainstPacked::SameBits);
    }
    // Padding, narrow outputs, deep fields and 1×1 convs take the packed path.
    let mut padded = valid(1, (14, 14, 3), (3, 3, 8), (1, 1));
    padded.pad_top = 1;
    let narrow = valid(1, (13, 13, 3), (3, 3, 8), (1, 1)); // ow = 11 < MR
    let deep = valid(1, (14, 14, 29), (3, 3, 8), (1, 1)); // 261 > KC
    let pointwise = valid(1, (14, 14, 3), (1, 1, 8), (1, 1));
    for g in [padded, narrow, deep, pointwise] {
        assert!(!g.suits_direct(), "{g:?}");
    }
}

#[test]
fn row_forward_matches_the_definition_and_the_packed_path() {
    if !gemm::avx512_available() {
        crate::skipped("this CPU has no AVX-512F, the row-by-row forward is not used");
        return;
    }
    // (geometry, how it compares with the packed path: the same values
    // where that path's K blocks are the kernel rows, so that it sums in
    // the same order; a skipped padding row keeps a -0.0 that adding the
    // packed path's +0.0 would turn into +0.0)
    let cases = [
        // VGG16's block1_conv2, small: 'same', 13 columns (a tile of 12
        // and a tile of 1), c = 64 (K = 576: blocks of 192 = kw·c).
        (
            stride_1(2, (11, 13, 64), (3, 3, 64), (11, 13), (1, 1)),
            AgainstPacked::SameValues,
        ),
        // A partial panel (o = 40) on a wide, short input.
        (
            stride_1(1, (4, 29, 64), (3, 3, 40), (4, 29), (1, 1)),
            AgainstPacked::SameValues,
        ),
        // No padding at all ('valid', but too deep for forward_direct).
        (
            stride_1(1, (14, 15, 64), (3, 3, 32), (12, 13), (0, 0)),
            AgainstPacked::SameValues,
        ),
        // c = 48: kw·c = 144, but K = 432 is cut into two blocks of 216
        // by the packed path, so only the definition is compared.
        (
            stride_1(2, (12, 12, 48), (3, 3, 24), (12, 12), (1, 1)),
            AgainstPacked::OtherOrder,
        ),
        // A 2×2 kernel 'same' (TensorFlow pads bottom and right only),
        // kw·c = 128: the shortest run allowed.
        (
            stride_1(1, (12, 14, 64), (2, 2, 16), (12, 14), (0, 0)),
            AgainstPacked::OtherOrder,
        ),
        // InceptionV3's 7x1 'same' on 128 channels (mixed4's): seven kernel
        // rows of one pixel, padded 3/3 rows, no columns.
        (
            stride_1(1, (12, 14, 128), (7, 1, 16), (12, 14), (3, 0)),
            AgainstPacked::OtherOrder,
        ),
    ];
    for (g, packed) in cases {
        assert!(g.suits_rows(), "{g:?}");
        check_forward_path(&g, 20, forward_rows, packed);
    }
    // Strides, short rows, short or long kernel rows and direct-path
    // shapes take the other paths.
    let mut strided = stride_1(1, (14, 28, 64), (3, 3, 8), (6, 13), (0, 0));
    strided.sh = 2;
    strided.sw = 2;
    let narrow = stride_1(1, (11, 11, 64), (3, 3, 8), (11, 11), (1, 1)); // ow < MR
    let thin = stride_1(1, (14, 14, 3), (3, 3, 8), (14, 14), (1, 1)); // kw·c = 9
    let wide = stride_1(1, (14, 14, 128), (3, 3, 8), (14, 14), (1, 1)); // kw·c = 384 > KC
    let direct = stride_1(1, (14, 14, 28), (3, 3, 8), (12, 12), (0, 0));
    for g in [strided, narrow, thin, wide, direct] {
        assert!(!g.suits_rows(), "{g:?}");
    }
}

#[test]
fn the_path_table_names_the_right_layers() {
    use Path::{Direct, Im2col, Packed, Rows, Winograd};
    if !gemm::avx512_available() {
        crate::skipped("this CPU has no AVX-512F, every path is im2col");
        return;
    }
    let same = |n, (h, w, c), o| stride_1(n, (h, w, c), (3, 3, o), (h, w), (1, 1));
    // 3×3/2 'same' on 224 px: TensorFlow pads only below and right.
    let mobilenet_conv1 = conv(1, (224, 224, 3), (3, 3, 32), (2, 2), (112, 112), (0, 0));
    // (layer, its geometry at 224 px unless said, (forward path, dx path)),
    // as the table in cpu::choose says.
    #[rustfmt::skip]
    let cases = [
        ("VGG16 block1_conv1", same(1, (224, 224, 3), 64), (Packed, Packed)),
        ("VGG16 block1_conv2", same(1, (224, 224, 64), 64), (Rows, Packed)),
        ("VGG16 block2_conv1", same(1, (112, 112, 64), 128), (Rows, Winograd)),
        ("VGG16 block3_conv1", same(1, (56, 56, 128), 256), (Winograd, Winograd)),
        ("VGG16 block5_conv3", same(4, (14, 14, 512), 512), (Winograd, Winograd)),
        ("block5_conv3, batch 1", same(1, (14, 14, 512), 512), (Packed, Packed)),
        ("block5_conv3, 32 px", same(32, (2, 2, 512), 512), (Packed, Packed)),
        ("ResNet50 conv1_conv", valid(1, (230, 230, 3), (7, 7, 64), (2, 2)), (Direct, Im2col)),
        ("conv2_block1_1_conv", valid(1, (56, 56, 64), (1, 1, 64), (1, 1)), (Packed, Packed)),
        ("conv2_block1_2_conv", same(1, (56, 56, 64), 64), (Rows, Packed)),
        ("conv2_block1_2_conv, 32 px", same(1, (8, 8, 64), 64), (Packed, Packed)),
        ("conv3_block1_1_conv", valid(1, (56, 56, 256), (1, 1, 128), (2, 2)), (Direct, Im2col)),
        ("conv3_block1_2_conv", same(1, (28, 28, 128), 128), (Winograd, Winograd)),
        ("conv4_block1_1_conv", valid(1, (28, 28, 512), (1, 1, 256), (2, 2)), (Packed, Im2col)),
        ("conv5_block1_2_conv", same(16, (7, 7, 512), 512), (Winograd, Winograd)),
        ("MobileNet conv1", mobilenet_conv1, (Packed, Im2col)),
        ("MobileNet conv_pw_1", valid(1, (112, 112, 32), (1, 1, 64), (1, 1)), (Packed, Packed)),
    ];
    for (layer, g, (forward, dx)) in cases {
        let path = |direction| choose(direction, DType::F32, &g);
        assert_eq!(path(Direction::Forward), forward, "{layer}: forward");
        assert_eq!(path(Direction::BackwardData), dx, "{layer}: dx");
        assert_eq!(path(Direction::BackwardFilter), Im2col, "{layer}: dkernel");
        for direction in [Direction::Forward, Direction::BackwardData] {
            assert_eq!(choose(direction, DType::F64, &g), Im2col, "{layer}: f64");
        }
    }
}

#[test]
fn winograd_forward_matches_the_definition() {
    if !gemm::avx512_available() {
        crate::skipped(
            "this CPU has no AVX-512F, the packed path the checker also runs is not there",
        );
        return;
    }
    let cases = [
        // 'same' on an even size; c and o not multiples of 16 lanes.
        stride_1(2, (6, 8, 19), (3, 3, 21), (6, 8), (1, 1)),
        // Odd height and width: the last row and column of tiles are
        // half outside the output.
        stride_1(1, (7, 5, 17), (3, 3, 33), (7, 5), (1, 1)),
        // 'valid': windows never read padding; odd output 7×5.
        stride_1(2, (9, 7, 16), (3, 3, 8), (7, 5), (0, 0)),
        // One output pixel.
        stride_1(3, (3, 3, 5), (3, 3, 3), (1, 1), (0, 0)),
        // 128 channels on a 7×7 map, as ResNet50's conv5 at 224 px (smaller).
        stride_1(2, (7, 7, 128), (3, 3, 40), (7, 7), (1, 1)),
    ];
    for g in cases {
        check_forward_path(&g, 30, winograd::forward, AgainstPacked::OtherOrder);
        // Groups of one row of tiles give the same bits as one group.
        let x = f32_values(g.n * g.h * g.w * g.c, 31);
        let k = f32_values(9 * g.c * g.o, 32);
        let whole = winograd::forward(&x, &k, None, &g);
        let by_rows = winograd::forward_in_groups(&x, &k, None, &g, 1);
        assert!(
            whole
                .iter()
                .zip(&by_rows)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{g:?}"
        );
    }
    // Chosen for VGG16's and ResNet50's 3×3 layers of 128 channels and
    // more at stride 1 with outputs of 2×2 and larger (not 3×3: 64
    // products for 81, nor 1×1) on enough pixels, not for the
    // 64-channel ones, strides or other windows.
    for (g, chosen) in [
        (
            stride_1(8, (14, 14, 512), (3, 3, 512), (14, 14), (1, 1)),
            true,
        ),
        (
            stride_1(4, (56, 56, 128), (3, 3, 256), (56, 56), (1, 1)),
            true,
        ),
        (stride_1(16, (7, 7, 512), (3, 3, 512), (7, 7), (1, 1)), true),
        (
            stride_1(4, (14, 14, 256), (3, 3, 256), (14, 14), (1, 1)),
            true,
        ),
        (
            stride_1(128, (2, 2, 512), (3, 3, 512), (2, 2), (1, 1)),
            true,
        ),
        // Too few pixels to pay for transforming the kernel.
        (
            stride_1(32, (2, 2, 512), (3, 3, 512), (2, 2), (1, 1)),
            false,
        ),
        (stride_1(4, (7, 7, 512), (3, 3, 512), (7, 7), (1, 1)), false),
        (
            stride_1(32, (3, 3, 512), (3, 3, 512), (3, 3), (1, 1)),
            false,
        ),
        (
            stride_1(32, (1, 1, 512), (3, 3, 512), (1, 1), (1, 1)),
            false,
        ),
        (
            stride_1(2, (224, 224, 64), (3, 3, 64), (224, 224), (1, 1)),
            false,
        ),
        (
            stride_1(2, (14, 14, 512), (1, 1, 512), (14, 14), (0, 0)),
            false,
        ),
    ] {
        assert_eq!(winograd::suits(&g), chosen, "{g:?}");
    }
    let mut strided = stride_1(1, (14, 14, 256), (3, 3, 256), (7, 7), (0, 0));
    strided.sh = 2;
    strided.sw = 2;
    assert!(!winograd::suits(&strided));
}

#[test]
fn implicit_gemm_dx_at_stride_1_matches_col2im() {
    if !gemm::avx512_available() {
        crate::skipped("this CPU has no AVX-512F, the implicit-GEMM dx is not used");
        return;
    }
    let cases = [
        // 'same' 3×3, 'valid' 3×2, 'same' 4×4 (pads 1 above/left, 2 below/right),
        // a window wider than the input, and a 1×1 on a wide channel count.
        stride_1(2, (7, 6, 5), (3, 3, 33), (7, 6), (1, 1)),
        stride_1(3, (6, 7, 4), (3, 2, 7), (4, 6), (0, 0)),
        stride_1(2, (5, 6, 3), (4, 4, 9), (5, 6), (1, 1)),
        stride_1(1, (2, 3, 4), (5, 5, 3), (2, 3), (2, 2)),
        stride_1(2, (3, 3, 300), (1, 1, 20), (3, 3), (0, 0)),
        // 'same' 3×3 with 128 output channels: dx through the Winograd forward.
        stride_1(2, (24, 23, 8), (3, 3, 128), (24, 23), (1, 1)),
    ];
    let winograd_dx = |g: &ConvGeometry| winograd::suits(&g.dx_as_forward());
    assert!(winograd_dx(&cases[5]) && !winograd_dx(&cases[0]));
    for g in cases {
        let x = values(g.n * g.h * g.w * g.c, 7);
        let k = values(g.kh * g.kw * g.c * g.o, 8);
        let dy = values(g.n * g.oh * g.ow * g.o, 9);
        let (want, _, _) = backward_typed(
            &x,
            &k,
            &dy,
            &g,
            Needed {
                dx: true,
                dkernel: false,
                dbias: false,
            },
            usize::MAX,
        );
        let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<_>>();
        let implicit_dx = match choose(Direction::BackwardData, DType::F32, &g) {
            Path::Winograd => backward_dx_winograd,
            Path::Packed => backward_dx,
            other => panic!("{g:?}: dx at stride 1 by {other:?}"),
        };
        let got = implicit_dx(&f32s(&k), &f32s(&dy), &g);
        let want = want.unwrap();
        assert_eq!(got.len(), want.len());
        let tol = 1e-6 * (g.kh * g.kw * g.o) as f64;
        for (i, (&d, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (d as f64 - w).abs() < tol,
                "{g:?} dx[{i}] = {d}, expected {w}"
            );
        }
    }
}

#[test]
fn only_the_requested_gradients_are_computed() {
    let g = geometry();
    let x = values(g.n * g.h * g.w * g.c, 1);
    let k = values(g.kh * g.kw * g.c * g.o, 2);
    let dy = values(g.n * g.oh * g.ow * g.o, 3);
    let (dx, dk, db) = backward_typed(
        &x,
        &k,
        &dy,
        &g,
        Needed {
            dx: false,
            dkernel: true,
            dbias: false,
        },
        usize::MAX,
    );
    assert!(dx.is_none() && dk.is_some() && db.is_none());
}

/// `conv2d_relu6` equals `relu6(conv2d(..))` bit for bit on each CPU
/// path (the 1×1 and the 3×3/2 stem take `Packed`, whose GEMM clamps its
/// rows; a 64-channel 3×3 `Rows`; an unpadded 3×3 `Direct`), with and
/// without bias, on values whose outputs reach both clamps; and with a
/// gradient to compute it is the two ops, gradient included.
#[test]
fn conv2d_relu6_equals_relu6_of_conv2d() {
    use crate::ops::{conv2d, conv2d_relu6, relu6, Padding};
    use crate::{Param, Tensor};
    let tensor = |shape: &[usize], scale: f64, seed: u64| {
        let n = shape.iter().product();
        let v: Vec<f32> = values(n, seed).iter().map(|v| (v * scale) as f32).collect();
        Tensor::from_vec(v, shape).unwrap()
    };
    let cases: [(&[usize], &[usize], usize, Padding); 4] = [
        (&[2, 5, 7, 24], &[1, 1, 24, 40], 1, Padding::Same),
        (&[2, 9, 9, 3], &[3, 3, 3, 32], 2, Padding::Same),
        (&[1, 6, 14, 64], &[3, 3, 64, 16], 1, Padding::Same),
        (&[1, 6, 16, 8], &[3, 3, 8, 8], 1, Padding::Valid),
    ];
    for (i, (xs, ks, stride, padding)) in cases.into_iter().enumerate() {
        let seed = 100 + 10 * i as u64;
        let x = tensor(xs, 16.0, seed);
        let k = tensor(ks, 2.0, seed + 1);
        let bias = tensor(&[ks[3]], 4.0, seed + 2);
        for b in [None, Some(&bias)] {
            let _no_grad = crate::no_grad();
            let s = (stride, stride);
            let want = relu6(&conv2d(&x, &k, b, s, padding).unwrap()).unwrap();
            let got = conv2d_relu6(&x, &k, b, s, padding).unwrap();
            let (want, got) = (want.to_vec_f32(), got.to_vec_f32());
            assert!(got == want, "case {i}, bias {}", b.is_some());
            assert!(
                want.contains(&0.0)
                    && want.contains(&6.0)
                    && want.iter().any(|v| *v > 0.0 && *v < 6.0),
                "case {i}: the outputs should reach both clamps"
            );
        }
        // With a trainable kernel it is the two ops, on the tape.
        let kp = Param::new("k", k.clone());
        let y = conv2d_relu6(&x, &kp.tensor(), None, (stride, stride), padding).unwrap();
        assert!(y.requires_grad(), "case {i}");
        crate::ops::sum(&y).unwrap().backward().unwrap();
        let dk = kp.grad().unwrap().to_vec_f32();
        let kp2 = Param::new("k", k);
        let y2 = relu6(&conv2d(&x, &kp2.tensor(), None, (stride, stride), padding).unwrap());
        crate::ops::sum(&y2.unwrap()).unwrap().backward().unwrap();
        assert!(dk == kp2.grad().unwrap().to_vec_f32(), "case {i}: gradient");
    }
}

/// The path each `conv2d_relu6_equals_relu6_of_conv2d` case is meant to
/// take, where the CPU has the fast paths.
#[test]
fn conv2d_relu6_cases_take_every_path() {
    if !gemm::avx512_available() {
        return;
    }
    let paths = [
        stride_1(2, (5, 7, 24), (1, 1, 40), (5, 7), (0, 0)),
        conv(2, (9, 9, 3), (3, 3, 32), (2, 2), (5, 5), (1, 1)),
        stride_1(1, (6, 14, 64), (3, 3, 16), (6, 14), (1, 1)),
        valid(1, (6, 16, 8), (3, 3, 8), (1, 1)),
    ]
    .map(|g| choose(Direction::Forward, DType::F32, &g));
    assert_eq!(
        paths,
        [Path::Packed, Path::Packed, Path::Rows, Path::Direct]
    );
}
