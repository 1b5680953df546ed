//! The f32 forward of 3×3, stride-1 convolutions with Winograd's minimal
//! filtering F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional
//! Neural Networks", 2016): each 2×2 block of output from 16 products per
//! channel pair instead of 36.
//!
//! **In one dimension**, F(2, 3): two outputs of a 3-tap filter `g` from
//! four inputs `d`, `y₀ = d₀g₀ + d₁g₁ + d₂g₂` and `y₁ = d₁g₀ + d₂g₁ + d₃g₂`,
//! with four multiplications instead of six:
//!
//! ```text
//! m₀ = (d₀ − d₂)·g₀            m₂ = (d₂ − d₁)·(g₀ − g₁ + g₂)/2
//! m₁ = (d₁ + d₂)·(g₀ + g₁ + g₂)/2    m₃ = (d₁ − d₃)·g₂
//! y₀ = m₀ + m₁ + m₂            y₁ = m₁ − m₂ − m₃
//! ```
//!
//! that is `y = Aᵀ[(G·g) ⊙ (Bᵀ·d)]` with
//!
//! ```text
//!      ⎡1  0 −1  0⎤        ⎡ 1    0    0 ⎤
//! Bᵀ = ⎢0  1  1  0⎥    G = ⎢1/2  1/2  1/2⎥    Aᵀ = ⎡1  1  1  0⎤
//!      ⎢0 −1  1  0⎥        ⎢1/2 −1/2  1/2⎥         ⎣0  1 −1 −1⎦
//!      ⎣0  1  0 −1⎦        ⎣ 0    0    1 ⎦
//! ```
//!
//! **In two**, nesting it along rows and columns, a 2×2 output tile comes
//! from the 4×4 input window `d` under it: `Y = Aᵀ[(G·g·Gᵀ) ⊙ (Bᵀ·d·B)]A`.
//! The 16 products `⊙` are the only multiplications; `Bᵀ·d·B` and `Aᵀ·M·A`
//! are additions, and `G·g·Gᵀ` depends on the kernel alone.
//!
//! **Over channels** the sum `Σ_ci` goes inside `Aᵀ[…]A` (it is linear), so
//! for each of the 16 positions `ξ` of the 4×4 tile the products summed over
//! input channels are one matrix product over many tiles `t` at once:
//!
//! ```text
//! V[ξ, t, ci]  = (Bᵀ·d_t,ci·B)[ξ]            the input, transformed tile by tile
//! U[ξ, ci, co] = (G·g_ci,co·Gᵀ)[ξ]           the kernel, transformed once per call
//! M[ξ, t, co]  = Σ_ci V[ξ, t, ci]·U[ξ, ci, co]    16 GEMMs: [tiles, c]·[c, o]
//! y[tile t]    = Aᵀ·M[.., t, co]·A (+ bias)
//! ```
//!
//! So our GEMM still does the arithmetic, 2.25x less of it than the direct
//! convolution's `[pixels, 9c]·[9c, o]` (less near the edges of an odd-sized
//! output, whose last tile is only partly stored). The prices:
//! - `V` and `M` hold 16 values per 2×2 pixels, 4x the input and the output.
//!   They are made and used a group of tiles at a time, in one thread's
//!   cache (see [`forward_in_groups`]).
//! - The sums are in another order (each output is a signed sum of 16
//!   products of transformed values rather than 9c products of the inputs),
//!   so results differ from the other paths of [`super::cpu`] in the last
//!   bits. The transforms only add, subtract and halve, and the error stays
//!   at the level of a change of summation order: `tests.rs` compares with
//!   the definition ([`super::cpu::reference`]), and the model parity tests
//!   against Keras keep their tolerance (1e-5 relative L2). Larger tiles (F(4×4, 3×3): 4x fewer products)
//!   need transforms with larger constants and lose more accuracy in f32;
//!   they are not used.
//!
//! The same routine gives `dx` of these convolutions
//! (`implicit_gemm.rs`, `backward_dx_winograd`: at stride 1, `dx` is a
//! convolution of `dy`). `cpu.rs`'s `choose` says which layers take it.

use super::cpu::ConvGeometry;
use super::scratch;
use crate::gemm;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Output pixels per tile side, input pixels per window side.
const OUT: usize = 2;
const WINDOW: usize = 4;
/// Positions of a transformed 4×4 tile: one GEMM each.
const POSITIONS: usize = WINDOW * WINDOW;

/// Channels per step of the transforms (one AVX-512 register of f32): the
/// transforms run on `[f32; LANES]` arrays, which the compiler vectorises.
const LANES: usize = 16;
type Lanes = [f32; LANES];

/// Whether the Winograd forward applies, and pays: a CPU with AVX-512F (its
/// GEMMs are [`gemm::gemm_packed`]'s), a 3×3 kernel at stride 1, at least
/// 128 input channels, at least 1.5x fewer products than the direct
/// convolution once the partial tiles of an odd-sized output are counted
/// (7×7: 1.7x; 3×3: 1.3x, not used; 1×1: never), and enough of them saved
/// to pay for transforming the kernel: [`MIN_SAVED_PER_PAIR`].
///
/// The 64-channel layers keep their row-by-row path: with 64 channels the
/// GEMMs are 64 deep and 64 wide, too small for the saved products to pay
/// for the transforms (VGG16's block1_conv2, ResNet50's conv2 3×3 run no
/// faster this way).
pub(super) fn suits(g: &ConvGeometry) -> bool {
    let tiles = g.n * g.oh.div_ceil(OUT) * g.ow.div_ceil(OUT);
    let (direct, winograd) = (9 * g.n * g.oh * g.ow, POSITIONS * tiles);
    gemm::avx512_available()
        && g.kh == 3
        && g.kw == 3
        && g.sh == 1
        && g.sw == 1
        && g.c >= 128
        && g.o > 0
        && 3 * winograd <= 2 * direct
        && direct - winograd >= MIN_SAVED_PER_PAIR
}

/// Fewest multiply-adds per (input, output) channel pair that Winograd must
/// save. Transforming and packing the kernel (16 values per pair, written
/// and read back once per call) costs, beyond the direct path's packing of
/// the kernel, about the time of 1,000-2,000 multiply-adds per pair (the
/// more, the wider the layer). Convolutions on few pixels (VGG16's block5 at
/// 32 px, ResNet50's conv5 at batch 4) keep the direct path.
const MIN_SAVED_PER_PAIR: usize = 2048;

/// Most bytes of transformed input and products (`V` and `M`) one group
/// of tiles has: half the 2 MiB L2 per core of the machine this was tuned
/// on, so that they stay there from one step to the next.
const GROUP_BYTES: usize = 1 << 20;

/// Fewest tiles in a group: the group's GEMMs read all of the packed
/// transformed kernel (`16·c·o` floats, from L3), once per group; with 48
/// rows of A they do 24 FLOPs per byte of it.
const MIN_GROUP_TILES: usize = 4 * gemm::MR;

/// The forward pass, `[n, oh, ow, o]`, for a geometry that [`suits`] (any
/// padding: window pixels outside the input read as zeros).
pub(super) fn forward(
    x: &[f32],
    kernel: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    let per_tile = POSITIONS * (g.c + g.o) * std::mem::size_of::<f32>();
    let tiles = (GROUP_BYTES / per_tile).max(MIN_GROUP_TILES);
    let tile_rows = g.n * g.oh.div_ceil(OUT);
    // At least one group per thread.
    let most = tile_rows.div_ceil(rayon::current_num_threads());
    let rows = tiles.div_ceil(g.ow.div_ceil(OUT)).clamp(1, most.max(1));
    forward_in_groups(x, kernel, bias, g, rows)
}

/// [`forward`] with groups of `rows_per_group` rows of tiles: one rayon task
/// per group transforms its tiles' windows, runs the 16 GEMMs for them on
/// the calling thread, and transforms the products into its rows of output,
/// so that `V` and `M` stay in the thread's cache from one step to the
/// next, rather than going through L3 as they would if all tiles were
/// transformed first and each GEMM then ran over all of them.
pub(super) fn forward_in_groups(
    x: &[f32],
    kernel: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    rows_per_group: usize,
) -> Vec<f32> {
    assert!(
        g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1,
        "winograd: {g:?}"
    );
    assert_eq!(x.len(), g.n * g.h * g.w * g.c, "conv2d: input size");
    assert_eq!(kernel.len(), 9 * g.c * g.o, "conv2d: kernel size");
    let (c, o) = (g.c, g.o);
    let tiles_x = g.ow.div_ceil(OUT);
    let rows_per_group = rows_per_group.max(1);

    // U as one [16·c, o] matrix packed for the GEMM in K blocks that divide
    // c, so that plane ξ is blocks ξ·blocks..(ξ + 1)·blocks.
    let kc = (1..=c.min(gemm::KC))
        .rev()
        .find(|d| c % d == 0)
        .unwrap_or(1);
    let blocks = c / kc;
    let u = transform_kernel(kernel, c, o);
    let u_packed = gemm::PackedB::blocked(POSITIONS * c, o, &u, (o as isize, 1), kc);
    scratch::give_back(u);

    // The output, written once, tile by tile: one slice per row of tiles
    // (two output rows, or the last one of an odd height).
    let len = g.n * g.oh * g.ow * o;
    let mut y: Vec<f32> = Vec::with_capacity(len);
    let mut out_rows: Vec<&mut [MaybeUninit<f32>]> = y.spare_capacity_mut()[..len]
        .chunks_mut(g.oh * g.ow * o)
        .flat_map(|image| image.chunks_mut(OUT * g.ow * o))
        .collect();

    out_rows
        .par_chunks_mut(rows_per_group)
        .enumerate()
        .for_each(|(group, y_rows)| {
            let first = group * rows_per_group;
            let tiles = y_rows.len() * tiles_x;
            // V and M as 16 planes, one per position ξ: V[ξ] is [tiles, c]
            // and M[ξ] is [tiles, o], plain row-major matrices for the GEMM.
            let mut buf = scratch::take::<f32>(POSITIONS * tiles * (c + o));
            let (v, m) = buf.split_at_mut(POSITIONS * tiles * c);
            for (i, mut v_row) in split_planes(v, tiles * c, tiles_x * c)
                .into_iter()
                .enumerate()
            {
                with_avx512(
                    #[inline(always)]
                    || transform_input_row(x, g, first + i, &mut v_row),
                );
            }
            for xi in 0..POSITIONS {
                let v = gemm::Strided::row_major(&v[xi * tiles * c..(xi + 1) * tiles * c], c);
                let m = &mut m[xi * tiles * o..(xi + 1) * tiles * o];
                gemm::gemm_packed(tiles, &v, &u_packed, xi * blocks..(xi + 1) * blocks, m, o);
            }
            for (i, y_rows) in y_rows.iter_mut().enumerate() {
                // Row i's tiles in each plane of M.
                let m_row: [&[f32]; POSITIONS] = std::array::from_fn(|xi| {
                    let at = (xi * tiles + i * tiles_x) * o;
                    &m[at..at + tiles_x * o]
                });
                with_avx512(
                    #[inline(always)]
                    || transform_output_row(&m_row, bias, g, y_rows),
                );
            }
            scratch::give_back(buf);
        });
    drop(out_rows);
    // SAFETY: every row of tiles is in one group, whose task wrote its
    // output rows in full (`transform_output_row`).
    unsafe { y.set_len(len) };
    y
}

/// Cuts each of the 16 planes (`plane` floats each) of `v` into parts of
/// `part` floats and groups them by part: item `i` holds part `i` of every
/// plane, so that one task can write its part (a row of tiles, an input
/// channel) of all 16.
fn split_planes(v: &mut [f32], plane: usize, part: usize) -> Vec<Vec<&mut [f32]>> {
    let mut rows: Vec<Vec<&mut [f32]>> = (0..plane / part)
        .map(|_| Vec::with_capacity(POSITIONS))
        .collect();
    for plane in v.chunks_exact_mut(plane) {
        for (row, part) in rows.iter_mut().zip(plane.chunks_exact_mut(part)) {
            row.push(part);
        }
    }
    rows
}

/// `U[ξ, ci, co] = (G·g·Gᵀ)[ξ]` for each 3×3 kernel `g = K[.., .., ci, co]`,
/// as 16 planes `[c, o]`: one task per input channel, `LANES` output
/// channels at a time.
fn transform_kernel(kernel: &[f32], c: usize, o: usize) -> Vec<f32> {
    // Every element is written below; a pooled buffer saves the page faults
    // of a fresh one (16 MB for a 512-channel layer).
    let mut u = scratch::take::<f32>(POSITIONS * c * o);
    split_planes(&mut u, c * o, o)
        .into_par_iter()
        .enumerate()
        .for_each(|(ci, mut u)| {
            with_avx512(
                #[inline(always)]
                || transform_kernel_channel(kernel, c, o, ci, &mut u),
            )
        });
    u
}

/// [`transform_kernel`] for input channel `ci`, into `u[ξ]` (`o` floats of each plane).
#[inline(always)]
fn transform_kernel_channel(kernel: &[f32], c: usize, o: usize, ci: usize, u: &mut [&mut [f32]]) {
    for co in (0..o).step_by(LANES) {
        let width = LANES.min(o - co);
        // g[ky][kx]: row (ky, kx, ci) of the [9·c, o] kernel.
        let mut g = [[[0.0; LANES]; 3]; 3];
        for (tap, g) in g.as_flattened_mut().iter_mut().enumerate() {
            let at = (tap * c + ci) * o + co;
            load(g, &kernel[at..at + width]);
        }
        let mut gg = [[[0.0; LANES]; WINDOW]; WINDOW];
        per_lane(&g, &mut gg, kernel_tile);
        for (plane, value) in u.iter_mut().zip(gg.as_flattened()) {
            store(&mut plane[co..co + width], value);
        }
    }
}

/// `V[ξ, t, ..] = (Bᵀ·d·B)[ξ]` for every tile `t` of the row of tiles
/// `tile_row` (image `tile_row / tiles_y`), into `v[ξ]` (`tiles_x·c`
/// floats of each plane).
#[inline(always)]
fn transform_input_row(x: &[f32], g: &ConvGeometry, tile_row: usize, v: &mut [&mut [f32]]) {
    let c = g.c;
    let tiles_y = g.oh.div_ceil(OUT);
    let (b, ty) = (tile_row / tiles_y, tile_row % tiles_y);
    // Input row of window row i: 2·ty + i − pad_top, if inside the input.
    let iy = |i: usize| (OUT * ty + i).checked_sub(g.pad_top).filter(|&iy| iy < g.h);
    let ix = |tx: usize, j: usize| {
        (OUT * tx + j)
            .checked_sub(g.pad_left)
            .filter(|&ix| ix < g.w)
    };
    for tx in 0..g.ow.div_ceil(OUT) {
        // The window's pixels (None: padding).
        let pixel: [[Option<&[f32]>; WINDOW]; WINDOW] = std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                let (iy, ix) = (iy(i)?, ix(tx, j)?);
                let at = ((b * g.h + iy) * g.w + ix) * c;
                Some(&x[at..at + c])
            })
        });
        for ci in (0..c).step_by(LANES) {
            let width = LANES.min(c - ci);
            let mut d = [[[0.0; LANES]; WINDOW]; WINDOW];
            for (pixel, d) in pixel.as_flattened().iter().zip(d.as_flattened_mut()) {
                if let Some(p) = pixel {
                    load(d, &p[ci..ci + width]);
                }
            }
            let mut vv = [[[0.0; LANES]; WINDOW]; WINDOW];
            per_lane(&d, &mut vv, input_tile);
            for (plane, value) in v.iter_mut().zip(vv.as_flattened()) {
                let at = tx * c + ci;
                store(&mut plane[at..at + width], value);
            }
        }
    }
}

/// `y = Aᵀ·M·A (+ bias)` for every tile of one row of tiles, from its
/// products `m[ξ]` (`tiles_x·o` floats of each plane), into the output rows under it
/// (`y_rows`: two rows of `ow·o`, or one at the bottom of an odd height);
/// the columns and rows of a tile past the output are dropped.
#[inline(always)]
fn transform_output_row(
    m: &[&[f32]; POSITIONS],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    y_rows: &mut [MaybeUninit<f32>],
) {
    let o = g.o;
    let height = y_rows.len() / (g.ow * o);
    for tx in 0..g.ow.div_ceil(OUT) {
        let width_px = OUT.min(g.ow - OUT * tx);
        for co in (0..o).step_by(LANES) {
            let width = LANES.min(o - co);
            let mut mm = [[[0.0; LANES]; WINDOW]; WINDOW];
            for (plane, mm) in m.iter().zip(mm.as_flattened_mut()) {
                let at = tx * o + co;
                load(mm, &plane[at..at + width]);
            }
            let mut yy = [[[0.0; LANES]; OUT]; OUT];
            per_lane(&mm, &mut yy, output_tile);
            let mut bias_lanes = [0.0; LANES];
            if let Some(bias) = bias {
                load(&mut bias_lanes, &bias[co..co + width]);
            }
            for (r, row) in yy.iter().enumerate().take(height) {
                for (s, value) in row.iter().enumerate().take(width_px) {
                    let at = (r * g.ow + OUT * tx + s) * o + co;
                    let sum: Lanes = std::array::from_fn(|l| value[l] + bias_lanes[l]);
                    store_uninit(&mut y_rows[at..at + width], &sum);
                }
            }
        }
    }
}

/// `G·g·Gᵀ` of one 3×3 kernel: the filter side of F(2×2, 3×3).
#[inline(always)]
fn kernel_tile(g: [[f32; 3]; 3]) -> [[f32; WINDOW]; WINDOW] {
    let g_1d = |[g0, g1, g2]: [f32; 3]| [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2];
    // Columns first: cols[kx][i] = (G·g)[i][kx]; then each row of G·g.
    let cols: [[f32; WINDOW]; 3] = std::array::from_fn(|kx| g_1d([g[0][kx], g[1][kx], g[2][kx]]));
    std::array::from_fn(|i| g_1d([cols[0][i], cols[1][i], cols[2][i]]))
}

/// `Bᵀ·d·B` of one 4×4 window: the input side of F(2×2, 3×3).
#[inline(always)]
fn input_tile(d: [[f32; WINDOW]; WINDOW]) -> [[f32; WINDOW]; WINDOW] {
    let d_1d = |[d0, d1, d2, d3]: [f32; WINDOW]| [d0 - d2, d1 + d2, d2 - d1, d1 - d3];
    let cols: [[f32; WINDOW]; WINDOW] =
        std::array::from_fn(|j| d_1d([d[0][j], d[1][j], d[2][j], d[3][j]]));
    std::array::from_fn(|i| d_1d([cols[0][i], cols[1][i], cols[2][i], cols[3][i]]))
}

/// `Aᵀ·m·A` of one 4×4 tile of products: the output side of F(2×2, 3×3).
#[inline(always)]
fn output_tile(m: [[f32; WINDOW]; WINDOW]) -> [[f32; OUT]; OUT] {
    let m_1d = |[m0, m1, m2, m3]: [f32; WINDOW]| [m0 + m1 + m2, m1 - m2 - m3];
    let cols: [[f32; OUT]; WINDOW] =
        std::array::from_fn(|j| m_1d([m[0][j], m[1][j], m[2][j], m[3][j]]));
    std::array::from_fn(|r| m_1d([cols[0][r], cols[1][r], cols[2][r], cols[3][r]]))
}

/// `out = f(input)` for each of the `LANES` channels side by side: lane `l`
/// of every element is one channel's matrix. The loop over lanes is what
/// the compiler turns into vector instructions.
#[inline(always)]
fn per_lane<const R: usize, const C: usize, const R2: usize, const C2: usize>(
    input: &[[Lanes; C]; R],
    out: &mut [[Lanes; C2]; R2],
    f: impl Fn([[f32; C]; R]) -> [[f32; C2]; R2],
) {
    for l in 0..LANES {
        let y = f(std::array::from_fn(|i| {
            std::array::from_fn(|j| input[i][j][l])
        }));
        for (out, y) in out.iter_mut().zip(y) {
            for (out, y) in out.iter_mut().zip(y) {
                out[l] = y;
            }
        }
    }
}

/// Runs `f` compiled for AVX-512F where the CPU has it: the transforms'
/// `[f32; 16]` arithmetic then takes one instruction per step instead of
/// four (SSE2, the baseline of x86-64 builds). `f` must be inlined into it
/// (the transforms are `#[inline(always)]`).
#[inline(always)]
fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if gemm::avx512_available() {
        #[target_feature(enable = "avx512f")]
        unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has AVX-512F.
        return unsafe { run(f) };
    }
    f()
}

/// `src` (at most `LANES` floats) into the first lanes of `dst`. (The full
/// case is its own branch so that it compiles to one vector move, not a call
/// to `memcpy`.)
#[inline(always)]
fn load(dst: &mut Lanes, src: &[f32]) {
    match <&Lanes>::try_from(src) {
        Ok(full) => *dst = *full,
        Err(_) => dst[..src.len()].copy_from_slice(src),
    }
}

/// [`store`] into memory not yet initialised.
#[inline(always)]
fn store_uninit(dst: &mut [MaybeUninit<f32>], value: &Lanes) {
    match <&mut [MaybeUninit<f32>; LANES]>::try_from(&mut *dst) {
        Ok(full) => *full = value.map(MaybeUninit::new),
        Err(_) => {
            for (d, &v) in dst.iter_mut().zip(value) {
                d.write(v);
            }
        }
    }
}

/// The first `dst.len()` (at most `LANES`) floats of `value` into `dst`.
#[inline(always)]
fn store(dst: &mut [f32], value: &Lanes) {
    match <&mut Lanes>::try_from(&mut *dst) {
        Ok(full) => *full = *value,
        Err(_) => {
            let width = dst.len();
            dst.copy_from_slice(&value[..width]);
        }
    }
}
