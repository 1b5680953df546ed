//! The AVX-512F micro-kernel: one `MR × NR` tile of C, `C = α·A·B + β·C`,
//! from `MR` rows of A (a packed block, or rows read in place: [`RowsOfA`])
//! and a packed `k × NR` panel of B.
//!
//! C is row-major in every caller (NHWC activations, `[k, n]` weights), so
//! the kernel runs along a row of C: the tile is `MR` rows of `NV` zmm
//! registers (16 floats each). Per step `p` of the sum it loads one row of
//! the B panel (`NV` vectors) and, for each of the `MR` rows, broadcasts one
//! value of A and does `NV` fused multiply-adds:
//!
//! ```text
//! acc[r][v] += broadcast(A[r, p]) · B[p, 16v .. 16v + 16]      r < MR, v < NV
//! ```
//!
//! With `MR = 12`, `NV = 2` that is 24 accumulators, 2 B registers and the
//! broadcast folded into the FMA's memory operand: 26 of the 32 zmm
//! registers, and 24 FMAs per 14 loads, so the two FMA units (not the load
//! ports) set the pace. See the parent module for how the sizes were chosen.
//!
//! Each accumulator lane is one element of C summed in order `p = 0, 1, ...`,
//! so the result of an element does not depend on where its tile starts: the
//! threads' split of C cannot change any bit of it.

use std::arch::x86_64::*;

/// Rows of C per tile.
pub const MR: usize = 12;
/// zmm registers per tile row.
const NV: usize = 2;
/// Columns of C per tile.
pub const NR: usize = 16 * NV;

/// Where the kernel reads A: row `r` of the tile is `runs` runs of
/// `run_len` floats, run `s` starting at `a + r·row_stride + s·run_stride`
/// (so `k = runs·run_len`). A packed block is one run per row; a
/// convolution's receptive fields, read in place from NHWC memory, are one
/// run per kernel row (see [`super::tile_in_place`]).
#[derive(Debug, Clone, Copy)]
pub struct RowsOfA {
    /// Floats from one row of the tile to the next.
    pub row_stride: usize,
    /// Runs per row.
    pub runs: usize,
    /// Floats per run.
    pub run_len: usize,
    /// Floats from one run of a row to the next.
    pub run_stride: usize,
}

impl RowsOfA {
    /// A packed block: `kc` floats per row, rows `row_stride` apart.
    pub fn packed(row_stride: usize, kc: usize) -> RowsOfA {
        RowsOfA {
            row_stride,
            runs: 1,
            run_len: kc,
            run_stride: 0,
        }
    }
}

/// The signature of every [`tile`] variant.
pub type TileFn =
    unsafe fn(*const f32, RowsOfA, *const f32, *mut f32, (isize, isize), (usize, usize), f32, f32);

/// The [`tile`] variant for a tile that keeps `mr` rows: a partial tile
/// (the end of a conv output row, the last rows of a row block) runs only
/// the rows it keeps, in steps of 4: 8 of 12 for VGG16's 32-pixel rows
/// (32 = 12 + 12 + 8), 4 for a block of 49 rows (4 tiles of 12 and one of 4).
pub fn tile_for<const A_STRIDE: usize>(mr: usize) -> TileFn {
    match mr {
        1..=4 => tile::<A_STRIDE, 4>,
        5..=8 => tile::<A_STRIDE, 8>,
        _ => tile::<A_STRIDE, MR>,
    }
}

/// Computes a tile of `M` rows (`MR`, or fewer for the last, partial tile
/// of a row: the FMAs of rows that would be thrown away are not done) and
/// writes its first `mr` rows and `nr` columns into C.
///
/// A is read as `rows` says (a packed block: [`RowsOfA::packed`]); `b` holds
/// `k = runs·run_len` rows of `NR` floats. `A_STRIDE`, when not 0, is
/// `rows.row_stride` known at compile time: the packed GEMM's case, where
/// every broadcast then addresses A at a constant offset. With 0 the row
/// stride is read from `rows` (A in place: [`super::tile_in_place`]).
/// The rows and columns past `mr`/`nr` are computed from whatever A and B
/// hold there and thrown away. `beta == 0` writes C without reading it (NaN
/// there is overwritten, as in BLAS).
///
/// # Safety
/// The CPU must support AVX-512F. A must be readable at every
/// `a + r·row_stride + s·run_stride + p` for `r < M`, `s < runs`,
/// `p < run_len`, `b` for `k·NR` floats, and `c + r·rsc + j·csc` must be
/// valid for writes for every `r < mr`, `j < nr`, with no other thread
/// touching those elements. `A_STRIDE` must be 0 or `rows.row_stride`, and
/// `mr <= M <= MR`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub unsafe fn tile<const A_STRIDE: usize, const M: usize>(
    a: *const f32,
    rows: RowsOfA,
    b: *const f32,
    c: *mut f32,
    (rsc, csc): (isize, isize),
    (mr, nr): (usize, usize),
    alpha: f32,
    beta: f32,
) {
    debug_assert!(A_STRIDE == 0 || A_STRIDE == rows.row_stride);
    let row_stride = if A_STRIDE != 0 {
        A_STRIDE
    } else {
        rows.row_stride
    };
    debug_assert!(mr <= M && M <= MR && nr <= NR);
    // Ask for the tile of C now: it is read only after the kc steps below,
    // and a miss there would stall on every row.
    for r in 0..mr {
        let row = c.offset(r as isize * rsc) as *const i8;
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.offset(((nr - 1) as isize * csc) * 4));
    }
    let mut acc = [[_mm512_setzero_ps(); NV]; M];
    for s in 0..rows.runs {
        // SAFETY (this loop): s < runs and p < run_len, so every read is
        // inside the ranges the caller vouched for.
        let a = a.add(s * rows.run_stride);
        let b = b.add(s * rows.run_len * NR);
        for p in 0..rows.run_len {
            let bp = b.add(p * NR);
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, bv) in bv.iter_mut().enumerate() {
                *bv = _mm512_loadu_ps(bp.add(16 * v));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let ar = _mm512_set1_ps(*a.add(r * row_stride + p));
                for v in 0..NV {
                    acc[v] = _mm512_fmadd_ps(ar, bv[v], acc[v]);
                }
            }
        }
    }

    let alpha = _mm512_set1_ps(alpha);
    if csc == 1 {
        // Rows of C are contiguous: masked vector loads and stores.
        for (r, acc) in acc.iter().enumerate().take(mr) {
            // SAFETY: r < mr, and lanes past nr are masked off.
            let row = c.offset(r as isize * rsc);
            for (v, &acc) in acc.iter().enumerate() {
                let lanes = nr.saturating_sub(16 * v).min(16);
                if lanes == 0 {
                    break;
                }
                let mask: __mmask16 = if lanes == 16 {
                    0xffff
                } else {
                    ((1u32 << lanes) - 1) as u16
                };
                let dst = row.add(16 * v);
                let mut out = _mm512_mul_ps(acc, alpha);
                if beta != 0.0 {
                    let old = _mm512_maskz_loadu_ps(mask, dst);
                    out = _mm512_fmadd_ps(old, _mm512_set1_ps(beta), out);
                }
                _mm512_mask_storeu_ps(dst, mask, out);
            }
        }
    } else {
        // Any other layout: spill the tile and write it one element at a time.
        let mut t = [[0f32; NR]; M];
        for (row, acc) in t.iter_mut().zip(&acc) {
            for (v, &acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(row.as_mut_ptr().add(16 * v), _mm512_mul_ps(acc, alpha));
            }
        }
        for (r, row) in t.iter().enumerate().take(mr) {
            for (j, &ab) in row.iter().enumerate().take(nr) {
                // SAFETY: r < mr and j < nr.
                let dst = c.offset(r as isize * rsc + j as isize * csc);
                *dst = if beta == 0.0 { ab } else { beta * *dst + ab };
            }
        }
    }
}
