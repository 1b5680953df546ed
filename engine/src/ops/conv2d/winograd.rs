//! Winograd F(2×2, 3×3): the forward pass of a 3×3, stride-1 convolution with
//! 16 multiplies per 2×2 output tile and channel pair instead of 36.
//!
//! The idea (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2015), in one dimension first: two outputs of a 3-tap filter
//! `g` over four inputs `d` take 6 multiplies directly, but 4 this way:
//!
//! ```text
//! m1 = (d0 − d2)·g0              m2 = (d1 + d2)·(g0 + g1 + g2)/2
//! m4 = (d1 − d3)·g2              m3 = (d2 − d1)·(g0 − g1 + g2)/2
//! y0 = m1 + m2 + m3              y1 = m2 − m3 − m4
//! ```
//!
//! As matrices, `y = Aᵀ[(G g) ⊙ (Bᵀ d)]` with
//!
//! ```text
//!       ⎡1  0 −1  0⎤        ⎡ 1    0    0 ⎤
//! Bᵀ =  ⎢0  1  1  0⎥   G =  ⎢ 1/2  1/2  1/2⎥   Aᵀ = ⎡1  1  1  0⎤
//!       ⎢0 −1  1  0⎥        ⎢ 1/2 −1/2  1/2⎥        ⎣0  1 −1 −1⎦
//!       ⎣0  1  0 −1⎦        ⎣ 0    0    1 ⎦
//! ```
//!
//! and nesting it over rows and columns gives the 2-D version for a 4×4
//! input patch `d` (the 2×2 output tile plus its one-pixel halo) and a 3×3
//! filter `g`: `Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A`. The element-wise product is
//! where the multiplies are: 16 of them, for 4 outputs that take 36 directly.
//!
//! Summed over input channels, each of the 16 positions `e` of the 4×4
//! transformed tile becomes a matrix product, which is where a convolution
//! layer spends its time:
//!
//! ```text
//! U[e][ci, co] = (G K[·, ·, ci, co] Gᵀ)[e]            kernel, transformed once per call
//! V[e][t, ci]  = (Bᵀ d(t, ci) B)[e]                     input patch of tile t
//! M[e]         = V[e] · U[e]                           16 GEMMs [tiles × c]·[c × o]
//! y(t, co)     = Aᵀ M(t, co) A                          back to a 2×2 output tile
//! ```
//!
//! So the GEMMs do 16/36 = 4/9 of the direct convolution's multiply-adds;
//! the transforms are additions only, and the transformed input (16 values
//! per tile and channel) is smaller than im2col's `col` (36 per 2×2 outputs).
//!
//! Precision: the transforms add and subtract up to 9 products of similar
//! size, so f32 results differ from the direct sum by a few units in the
//! last place more than direct summation does (tests below bound the
//! relative error against an f64 direct convolution; the Keras parity tests
//! of whole VGG16 and ResNet50 hold at their 1e-5 tolerance). Only f32 takes
//! this path; f64, the reference for gradient checks, keeps the direct im2col
//! GEMM.
//!
//! Backward: the input gradient of a 3×3 stride-1 convolution is another
//! one (`dy` against the kernel turned 180° with its channel axes swapped;
//! [`backward_input`]), so it takes this path too. The kernel gradient
//! stays an im2col GEMM in `cpu.rs`. Both are the exact gradients of this
//! forward pass up to rounding.
//!
//! Tiles are processed in chunks of whole tile rows, so the transformed
//! input and the GEMM output stay near the cache ([`CHUNK_BYTES`]), exactly
//! as `cpu.rs` does with `col`.

use super::cpu::ConvGeometry;
use super::scratch;
use crate::element::Element;
use rayon::prelude::*;

/// The 16 positions of a transformed 4×4 tile.
const E: usize = 16;

/// Target size of one chunk's transformed input plus GEMM output
/// (`16·tiles·(c + o)` values).
const CHUNK_BYTES: usize = 2 << 20;

/// Fewest tiles per chunk, per output channel: each chunk's 16 GEMMs
/// re-pack the transformed kernel (`16·c·o` values, 16 MiB at 512
/// channels) while reading `16·tiles·c` transformed inputs, so with
/// `tiles >= 4·o` re-packing costs at most a quarter of that (as
/// `MIN_ROWS_PER_OUT_CHANNEL` in `cpu.rs`).
const MIN_TILES_PER_OUT_CHANNEL: usize = 4;

/// Upper bound on one chunk's transformed input plus GEMM output.
const MAX_CHUNK_BYTES: usize = 64 << 20;

/// Fewest tiles (2×2 output blocks, over the whole batch) for the Winograd
/// path. Below it the 16 GEMMs have so few rows that packing the transformed
/// kernel dominates: VGG16's block5 at 32 px (32 images of 2×2 outputs, 32
/// tiles) ran about 20% slower than im2col, block4 (128 tiles) slightly faster.
const MIN_TILES: usize = 128;

/// Whether this geometry takes the Winograd path: a 3×3 window at stride 1
/// with enough input and output channels that the 16 GEMMs are worth
/// their transforms (a 3-channel first layer is not: its im2col GEMM is
/// tiny anyway), and at least [`MIN_TILES`] tiles.
pub fn applies(g: &ConvGeometry) -> bool {
    let tiles = g.n * g.oh.div_ceil(2) * g.ow.div_ceil(2);
    handles(g) && g.c >= 16 && g.o >= 16 && tiles >= MIN_TILES
}

/// Whether [`forward`] computes this geometry at all: F(2×2, 3×3) is for
/// 3×3 windows at stride 1 (any padding).
fn handles(g: &ConvGeometry) -> bool {
    g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1
}

/// Forward pass, `[n, oh, ow, o]` NHWC, of a 3×3 stride-1 convolution.
pub fn forward<T: Element>(x: &[T], kernel: &[T], bias: Option<&[T]>, g: &ConvGeometry) -> Vec<T> {
    assert!(
        handles(g),
        "winograd::forward is for 3x3 stride-1 windows, got {g:?}"
    );
    let (c, o) = (g.c, g.o);
    let (tiles_y, tiles_x) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
    let u = transform_kernel(kernel, c, o);

    let mut y = vec![T::ZERO; g.n * g.oh * g.ow * o];
    // One mutable slice per tile row (b, ty): output rows 2ty and 2ty + 1 of
    // image b, contiguous in NHWC (one row only at the bottom of an odd height).
    let mut tile_rows: Vec<&mut [T]> = y
        .chunks_mut(g.oh * g.ow * o)
        .flat_map(|image| image.chunks_mut(2 * g.ow * o))
        .collect();

    let per_row = E * (c + o) * std::mem::size_of::<T>() * tiles_x;
    let rows_per_chunk = (CHUNK_BYTES / per_row)
        .max((MIN_TILES_PER_OUT_CHANNEL * o).div_ceil(tiles_x))
        .min(MAX_CHUNK_BYTES / per_row)
        .clamp(1, tile_rows.len());
    let mut v = scratch::take::<T>(rows_per_chunk * tiles_x * E * c);
    let mut m = scratch::take::<T>(rows_per_chunk * tiles_x * E * o);

    for (chunk, out_rows) in tile_rows.chunks_mut(rows_per_chunk).enumerate() {
        let first_row = chunk * rows_per_chunk;
        let tiles = out_rows.len() * tiles_x;
        let (v, m) = (&mut v[..tiles * E * c], &mut m[..tiles * E * o]);
        transform_input(x, g, first_row, tiles_y, tiles_x, v);
        // M[e] = V[e]·U[e]: V[e] is [tiles, c] inside v's [tiles][16][c]
        // layout (row stride 16c), U[e] is [c, o] inside [c][16][o].
        for e in 0..E {
            T::gemm(
                tiles,
                c,
                o,
                T::ONE,
                &v[e * c..],
                ((E * c) as isize, 1),
                &u[e * o..],
                ((E * o) as isize, 1),
                T::ZERO,
                &mut m[e * o..],
                ((E * o) as isize, 1),
            );
        }
        out_rows.par_iter_mut().enumerate().for_each(|(r, out)| {
            let tiles_of_row = &m[r * tiles_x * E * o..(r + 1) * tiles_x * E * o];
            transform_output(tiles_of_row, bias, g, out);
        });
    }
    scratch::give_back(v);
    scratch::give_back(m);
    y
}

/// The geometry of `dx` as a convolution of `dy`: for a 3×3 stride-1
/// layer, `dx[iy, ix, ci] = Σ dy[iy + pt − ky, ix + pl − kx, co]·K[ky, kx, ci, co]`
/// is `dy` correlated with the kernel turned 180° and its channels swapped
/// (`[kh, kw, o, c]`), padded by `2 − pt` and `2 − pl`, with the input's size
/// as output size. None if the forward window is not 3×3 at stride 1.
fn input_gradient_geometry(g: &ConvGeometry) -> Option<ConvGeometry> {
    if !handles(g) {
        return None;
    }
    Some(ConvGeometry {
        n: g.n,
        h: g.oh,
        w: g.ow,
        c: g.o,
        o: g.c,
        oh: g.h,
        ow: g.w,
        pad_top: 2usize.checked_sub(g.pad_top)?,
        pad_left: 2usize.checked_sub(g.pad_left)?,
        ..*g
    })
}

/// Whether [`backward_input`] is worth using for this (forward) geometry:
/// the same test as [`applies`], on the convolution that computes `dx`.
pub fn applies_to_backward_input(g: &ConvGeometry) -> bool {
    input_gradient_geometry(g).is_some_and(|gdx| applies(&gdx))
}

/// `dx` of a 3×3 stride-1 convolution, `[n, h, w, c]`, computed as the
/// Winograd convolution of `dy` described at `input_gradient_geometry`.
pub fn backward_input<T: Element>(dy: &[T], kernel: &[T], g: &ConvGeometry) -> Vec<T> {
    let gdx = input_gradient_geometry(g).expect("backward_input is for 3x3 stride-1 windows");
    let (c, o) = (g.c, g.o);
    // K'[a, b, co, ci] = K[2 − a, 2 − b, ci, co].
    let mut flipped = vec![T::ZERO; 9 * o * c];
    for tap in 0..9 {
        for ci in 0..c {
            for co in 0..o {
                flipped[(tap * o + co) * c + ci] = kernel[((8 - tap) * c + ci) * o + co];
            }
        }
    }
    forward(dy, &flipped, None, &gdx)
}

/// `U = G g Gᵀ` for every (ci, co), laid out `[c][16][o]` so that `U[e]` is
/// the `[c, o]` matrix at offset `e·o` with row stride `16·o`.
fn transform_kernel<T: Element>(kernel: &[T], c: usize, o: usize) -> Vec<T> {
    let half = T::from_f64(0.5);
    let mut u = vec![T::ZERO; c * E * o];
    u.par_chunks_mut(E * o).enumerate().for_each(|(ci, u_ci)| {
        for co in 0..o {
            // HWIO: tap (ky, kx) of filter (ci, co).
            let k = |ky: usize, kx: usize| kernel[((ky * 3 + kx) * c + ci) * o + co];
            // G g: 4×3, one column per kx.
            let mut gg = [[T::ZERO; 3]; 4];
            for kx in 0..3 {
                let (g0, g1, g2) = (k(0, kx), k(1, kx), k(2, kx));
                gg[0][kx] = g0;
                gg[1][kx] = (g0 + g1 + g2) * half;
                gg[2][kx] = (g0 - g1 + g2) * half;
                gg[3][kx] = g2;
            }
            // (G g) Gᵀ: 4×4.
            for (r, row) in gg.iter().enumerate() {
                let [g0, g1, g2] = *row;
                let out = [g0, (g0 + g1 + g2) * half, (g0 - g1 + g2) * half, g2];
                for (s, value) in out.into_iter().enumerate() {
                    u_ci[(r * 4 + s) * o + co] = value;
                }
            }
        }
    });
    u
}

/// `V = Bᵀ d B` for the tiles of tile rows `first_row..`, written as
/// `[tiles][16][c]`. One rayon task per tile: it gathers its 4×4×c input
/// patch `d` (zeros outside the image) position-major, `[16][c]`, then
/// applies the 1-D transform `(a, b, c, d) ↦ (a − c, b + c, c − b, b − d)`
/// down the patch's columns (`Bᵀ d`) and then along its rows (`· B`), each
/// as loops over channels that the compiler vectorises.
fn transform_input<T: Element>(
    x: &[T],
    g: &ConvGeometry,
    first_row: usize,
    tiles_y: usize,
    tiles_x: usize,
    v: &mut [T],
) {
    let c = g.c;
    let v_tiles = v.par_chunks_mut(E * c).enumerate();
    v_tiles.for_each_init(
        || vec![T::ZERO; E * c],
        |d, (t, vt)| {
            let row = first_row + t / tiles_x;
            let (b, ty, tx) = (row / tiles_y, row % tiles_y, t % tiles_x);
            for (e, dst) in d.chunks_exact_mut(c).enumerate() {
                let iy = (2 * ty + e / 4) as isize - g.pad_top as isize;
                let ix = (2 * tx + e % 4) as isize - g.pad_left as isize;
                if iy < 0 || iy >= g.h as isize || ix < 0 || ix >= g.w as isize {
                    dst.fill(T::ZERO);
                } else {
                    let src = ((b * g.h + iy as usize) * g.w + ix as usize) * c;
                    dst.copy_from_slice(&x[src..src + c]);
                }
            }
            // Bᵀ d, into vt: row r of the result mixes rows 0..4 of d.
            let d = |r: usize, s: usize| &d[(r * 4 + s) * c..(r * 4 + s + 1) * c];
            for s in 0..4 {
                let (d0, d1, d2, d3) = (d(0, s), d(1, s), d(2, s), d(3, s));
                for ci in 0..c {
                    vt[s * c + ci] = d0[ci] - d2[ci];
                    vt[(4 + s) * c + ci] = d1[ci] + d2[ci];
                    vt[(8 + s) * c + ci] = d2[ci] - d1[ci];
                    vt[(12 + s) * c + ci] = d1[ci] - d3[ci];
                }
            }
            // (Bᵀ d) B, in place: row r's four entries mix among themselves.
            for row in vt.chunks_exact_mut(4 * c) {
                for ci in 0..c {
                    let (w0, w1, w2, w3) = (row[ci], row[c + ci], row[2 * c + ci], row[3 * c + ci]);
                    row[ci] = w0 - w2;
                    row[c + ci] = w1 + w2;
                    row[2 * c + ci] = w2 - w1;
                    row[3 * c + ci] = w1 - w3;
                }
            }
        },
    );
}

/// `Y = Aᵀ M A` for the tiles of one tile row, plus the bias, written into
/// that tile row's output rows `out` (2·ow·o values, or ow·o for the last
/// row of an odd height); columns beyond `ow` of the last tile of an odd
/// width are dropped. `m` holds the row's tiles as `[tiles_x][16][o]`.
fn transform_output<T: Element>(m: &[T], bias: Option<&[T]>, g: &ConvGeometry, out: &mut [T]) {
    let o = g.o;
    let rows = out.len() / (g.ow * o);
    let mut z = vec![T::ZERO; 8 * o];
    for (tx, mt) in m.chunks_exact(E * o).enumerate() {
        // Aᵀ M: 2×4, from the columns of M.
        let mm = |r: usize, s: usize| &mt[(r * 4 + s) * o..(r * 4 + s + 1) * o];
        for s in 0..4 {
            let (m0, m1, m2, m3) = (mm(0, s), mm(1, s), mm(2, s), mm(3, s));
            for co in 0..o {
                z[s * o + co] = m0[co] + m1[co] + m2[co];
                z[(4 + s) * o + co] = m1[co] - m2[co] - m3[co];
            }
        }
        // (Aᵀ M) A: 2×2, from the rows of z; pixel (i, j) of the tile.
        for i in 0..rows {
            let zr = |s: usize| &z[(i * 4 + s) * o..(i * 4 + s + 1) * o];
            let (z0, z1, z2, z3) = (zr(0), zr(1), zr(2), zr(3));
            for j in 0..2 {
                let ox = 2 * tx + j;
                if ox >= g.ow {
                    continue;
                }
                let px = &mut out[(i * g.ow + ox) * o..(i * g.ow + ox + 1) * o];
                for co in 0..o {
                    let value = if j == 0 {
                        z0[co] + z1[co] + z2[co]
                    } else {
                        z1[co] - z2[co] - z3[co]
                    };
                    px[co] = match bias {
                        Some(b) => value + b[co],
                        None => value,
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d::cpu::forward_typed;

    /// A 3×3 stride-1 geometry; `same` pads one pixel on every side.
    fn geometry(n: usize, h: usize, w: usize, c: usize, o: usize, same: bool) -> ConvGeometry {
        let pad = usize::from(same);
        ConvGeometry {
            n,
            h,
            w,
            c,
            kh: 3,
            kw: 3,
            o,
            sh: 1,
            sw: 1,
            oh: h + 2 * pad - 2,
            ow: w + 2 * pad - 2,
            pad_top: pad,
            pad_left: pad,
        }
    }

    fn values(n: usize, seed: u64) -> Vec<f64> {
        (0..n)
            .map(|i| crate::rng::uniform_f64(seed, 0, i as u64) - 0.5)
            .collect()
    }

    /// max |a − b| / max |b|.
    fn rel_max(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        worst / scale
    }

    /// Odd and even heights/widths (tiles hanging over the edge), 'same'
    /// and 'valid', channel counts that are not multiples of a vector, one
    /// image of 1×1 output, and batches large enough to span several chunks.
    fn cases() -> Vec<ConvGeometry> {
        vec![
            geometry(2, 7, 5, 16, 19, true),
            geometry(3, 6, 8, 17, 16, false),
            geometry(1, 3, 3, 16, 16, false),
            geometry(9, 9, 7, 20, 18, true),
            geometry(40, 4, 4, 16, 24, true),
        ]
    }

    #[test]
    fn equals_the_direct_convolution_in_f64() {
        // In exact arithmetic Winograd is the convolution: in f64 the two
        // agree to rounding, which catches any wrong index or sign.
        for g in cases() {
            let x = values(g.n * g.h * g.w * g.c, 1);
            let k = values(9 * g.c * g.o, 2);
            let bias = values(g.o, 3);
            for b in [None, Some(&bias[..])] {
                let ours = forward(&x, &k, b, &g);
                let direct = forward_typed(&x, &k, b, &g, 1 << 20);
                let err = rel_max(&ours, &direct);
                assert!(
                    err < 1e-13,
                    "{g:?} bias {}: max rel error {err:e}",
                    b.is_some()
                );
            }
        }
    }

    #[test]
    fn f32_error_stays_within_a_few_ulps_of_the_f64_result() {
        // The transforms cost some precision in f32; bound it against the
        // exact (f64) convolution of the same f32 inputs, next to what the
        // direct f32 im2col GEMM achieves on the same data.
        for g in cases() {
            let x64 = values(g.n * g.h * g.w * g.c, 4);
            let k64 = values(9 * g.c * g.o, 5);
            let x: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
            let k: Vec<f32> = k64.iter().map(|&v| v as f32).collect();
            let exact = forward_typed(
                &x.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                &k.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                None,
                &g,
                1 << 20,
            );
            let to64 = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
            let wino = rel_max(&to64(forward(&x, &k, None, &g)), &exact);
            let direct = rel_max(&to64(forward_typed(&x, &k, None, &g, 1 << 20)), &exact);
            eprintln!(
                "{}x{}x{}->{}: winograd {wino:.2e}, direct {direct:.2e}",
                g.h, g.w, g.c, g.o
            );
            // f32 epsilon is 1.2e-7; sums of 9·c products of values in ±0.5.
            assert!(
                wino < 1e-6,
                "{g:?}: winograd f32 max rel error {wino:e} (direct {direct:e})"
            );
        }
    }

    #[test]
    fn input_gradient_equals_the_direct_col2im_in_f64() {
        for g in cases() {
            let x = values(g.n * g.h * g.w * g.c, 6);
            let k = values(9 * g.c * g.o, 7);
            let dy = values(g.n * g.oh * g.ow * g.o, 8);
            let ours = backward_input(&dy, &k, &g);
            let (direct, _, _) = crate::ops::conv2d::cpu::backward_typed(
                &x,
                &k,
                &dy,
                &g,
                (true, false, false),
                1 << 20,
            );
            let err = rel_max(&ours, &direct.unwrap());
            assert!(err < 1e-13, "{g:?}: dx max rel error {err:e}");
        }
    }

    #[test]
    fn f32_backward_through_the_dispatcher_matches_f64() {
        // Through cpu::backward, the dispatcher: for f32 at a geometry where
        // the input gradient takes this path, dx, dK and dbias all match the
        // f64 reference computed by im2col alone.
        use crate::tensor::CpuStorage;
        let g = geometry(9, 9, 7, 20, 18, true);
        assert!(applies_to_backward_input(&g));
        let x = values(g.n * g.h * g.w * g.c, 9);
        let k = values(9 * g.c * g.o, 10);
        let dy = values(g.n * g.oh * g.ow * g.o, 11);
        let f32s = |v: &[f64]| CpuStorage::F32(v.iter().map(|&a| a as f32).collect());
        let back64 = |s: &CpuStorage| match s {
            CpuStorage::F32(v) => v.iter().map(|&a| f64::from(a)).collect::<Vec<_>>(),
            CpuStorage::F64(_) => unreachable!("f32 in, f32 out"),
        };
        let round = |v: &[f64]| v.iter().map(|&a| f64::from(a as f32)).collect::<Vec<_>>();
        let (x, k, dy) = (round(&x), round(&k), round(&dy));
        let (dx, dk, db) =
            super::super::cpu::backward(&f32s(&x), &f32s(&k), &f32s(&dy), &g, (true, true, true))
                .unwrap();
        let (ex, ek, eb) =
            crate::ops::conv2d::cpu::backward_typed(&x, &k, &dy, &g, (true, true, true), 1 << 20);
        for (name, ours, exact) in [("dx", dx, ex), ("dK", dk, ek), ("dbias", db, eb)] {
            let err = rel_max(&back64(&ours.unwrap()), &exact.unwrap());
            assert!(err < 1e-6, "{name}: f32 max rel error {err:e}");
        }
    }

    #[test]
    fn applies_only_to_3x3_stride_1_with_enough_channels_and_tiles() {
        // 8 images of 8×8 outputs: 128 tiles.
        assert!(applies(&geometry(8, 8, 8, 64, 64, true)));
        assert!(!applies(&geometry(7, 8, 8, 64, 64, true)), "112 tiles");
        assert!(
            !applies(&geometry(8, 8, 8, 3, 64, true)),
            "first layer: 3 input channels"
        );
        let mut strided = geometry(8, 8, 8, 64, 64, true);
        strided.sh = 2;
        assert!(!applies(&strided));
        let mut wide = geometry(8, 8, 8, 64, 64, true);
        (wide.kh, wide.kw) = (7, 7);
        assert!(!applies(&wide));
    }
}
