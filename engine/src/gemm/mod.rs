//! thaw's own f32 GEMM, `C = α·A·B + β·C`: the one hot loop under conv2d,
//! matmul and every backward pass on the CPU.
//!
//! # Why our own
//! The `matrixmultiply` crate stays well below MKL on AVX-512 machines (its
//! AVX-512 feature does not close the gap; `BENCHMARKS.md`, "What limits
//! each row now"). And a library GEMM only takes A as a matrix in memory, so
//! conv2d would write every receptive field into an im2col buffer first,
//! which on narrow layers costs as much again as the arithmetic. Here the
//! routine that packs A is a parameter ([`MatrixA`]), so conv2d hands in the
//! NHWC input itself.
//!
//! `matrixmultiply` stays as the fallback: for CPUs without AVX-512
//! ([`Backend::best`]) and for f64 ([`crate::Element::gemm`]), where speed
//! matters less (gradient checks).
//!
//! # The loops (BLIS, Goto & van de Geijn 2008)
//! ```text
//! for jc in 0..n step NC                       B block: pack B[.., jc..] into KC×NR panels
//!   for ic in 0..m step mc   (rayon tasks)     one block of C's rows, all of k
//!     for pc in 0..k step KC                   pack A[ic.., pc..] into an mc×KC block
//!       for ir in 0..mc step MR                one A tile, MR×KC (12 KiB: stays in L1)
//!         for jr in 0..nc step NR              micro-kernel: MR×NR tile of C in registers,
//!                                              streaming one B panel (KC×NR) from L2
//! ```
//! The kernel broadcasts from A and loads vectors from B, so, as in BLIS,
//! the broadcast side (here A) is the one kept in L1 and the vector side
//! streams through it in order. The packed A block is stored row by row
//! (`MR` rows of a tile at a fixed distance [`A_STRIDE`], so the kernel's
//! broadcasts address them with constant offsets), which makes packing A a
//! plain copy of row segments: exactly what conv2d's receptive fields are
//! in NHWC.
//!
//! The other order, `jr` outside `ir` (the B panel kept in L1, A tiles
//! streaming), measured slower.
//!
//! Unlike BLIS, `pc` runs inside the rayon task, not outside it: all of a
//! B block is packed first (`k × nc`: 1.2 MiB for VGG16's block3_conv1, 9
//! MiB for block5_conv1, read from L3), then each task takes its rows
//! through every K block, so its `mc × nc` block of C stays in L2 between
//! K blocks, and the threads meet twice per B block instead of twice per K
//! block. (With `pc` outside, a large output such as block3_conv1's at batch
//! 4 is walked once per K block, with one wait for the slower thread each.)
//!
//! The files: this one holds the API, the loops and the threading;
//! `avx512.rs` the micro-kernel; `packing.rs` packs B and keeps the
//! per-thread buffers; `packed.rs` the products on a B packed once
//! (conv2d's direct paths, Winograd).
//!
//! # Threads and determinism
//! The rayon tasks are the `mc`-row blocks of C inside one `jc` step:
//! they write disjoint rows of C, and every element of C is summed in the same
//! order (K block by K block, each in order) whichever task or thread
//! computes it, so results are bit-for-bit repeatable and do not depend on
//! the number of threads. The GEMM must not be called from inside a rayon
//! task of a caller that splits the same work (one level of threading).
//!
//! # Sizes
//! Chosen for a Sapphire Rapids core (48 KiB L1d, 2 MiB L2): a 12×32 tile
//! (24 of 32 zmm registers hold C), `KC = 256` (an A tile of 12 KiB in L1, a
//! B panel of 32 KiB streaming past it), a K block of B of 1 MiB in L2.
//! `BENCHMARKS.md` has the kernel's rate and whole-conv figures.

mod avx512;
mod packed;
mod packing;
#[cfg(test)]
mod tests;

use rayon::prelude::*;
use std::ops::Range;

pub use avx512::{RowsOfA, MR, NR};
pub use packed::{gemm_packed, tile_in_place, tile_in_place_add, PackedB};
use packing::{give_back, k_block, pack_b, take_aligned, A_PACK, B_PACK};

/// Depth of one packed block (the `k` of one pass of the micro-kernel).
pub const KC: usize = 256;
/// Most rows of A packed per rayon task (a multiple of [`MR`]).
const MC: usize = 16 * MR;
/// Most columns of B packed at once (a multiple of [`NR`]): a `KC × NC`
/// K block of B is 1 MiB, half of the L2 it is read from once per A tile.
const NC: usize = 32 * NR;
/// Most floats of B packed at once (16 MiB): for a deep product (a dense
/// layer on 25,088 flattened features) the B block is narrowed below `NC`
/// columns so that all `k` of its rows fit.
const B_BLOCK: usize = 4 << 20;
/// Distance between packed rows of A, in floats: `KC` plus one cache line, so
/// that the `MR` rows a tile reads do not all fall into the same L1 sets.
pub const A_STRIDE: usize = KC + 16;

/// Which implementation [`sgemm_on`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Ours, with the AVX-512F micro-kernel.
    Avx512,
    /// The `matrixmultiply` crate (any CPU).
    MatrixMultiply,
}

impl Backend {
    /// Ours where the CPU has AVX-512F, otherwise `matrixmultiply`.
    pub fn best() -> Backend {
        if avx512_available() {
            Backend::Avx512
        } else {
            Backend::MatrixMultiply
        }
    }
}

/// Whether this CPU can run our micro-kernel (checked once, then cached by std).
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The rows of A, as the packing step reads them. A GEMM never needs A as a
/// matrix in memory, only segments of its rows: a strided matrix
/// ([`Strided`]) is one source, conv2d's receptive fields are another.
pub trait MatrixA: Sync {
    /// Writes `A[row, cols]` into `out` (`out.len() == cols.len()`).
    fn copy_row(&self, row: usize, cols: Range<usize>, out: &mut [f32]);

    /// Writes `A[rows, cols]` into `out`, row `rows.start + r` at
    /// `out[r·A_STRIDE..]`: the packing step. Row by row unless a source
    /// knows a faster order.
    fn pack_rows(&self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) {
        pack_row_by_row(self, rows, cols, out);
    }
}

/// The default packing order: one [`MatrixA::copy_row`] per row.
fn pack_row_by_row<A: MatrixA + ?Sized>(
    a: &A,
    rows: Range<usize>,
    cols: Range<usize>,
    out: &mut [f32],
) {
    for (r, row) in rows.enumerate() {
        let dst = &mut out[r * A_STRIDE..r * A_STRIDE + cols.len()];
        a.copy_row(row, cols.clone(), dst);
    }
}

/// A matrix stored in a slice with (row stride, column stride) in elements.
pub struct Strided<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Strided<'a> {
    /// A row-major matrix with `cols` columns (rows `cols` floats apart).
    pub fn row_major(data: &'a [f32], cols: usize) -> Strided<'a> {
        Strided {
            data,
            rs: cols,
            cs: 1,
        }
    }
}

impl MatrixA for Strided<'_> {
    fn copy_row(&self, row: usize, cols: Range<usize>, out: &mut [f32]) {
        let start = row * self.rs + cols.start * self.cs;
        if self.cs == 1 {
            out.copy_from_slice(&self.data[start..start + cols.len()]);
        } else {
            for (j, o) in out.iter_mut().enumerate() {
                *o = self.data[start + j * self.cs];
            }
        }
    }

    /// A transposed matrix (`rs == 1`, as `colᵀ` in conv2d's `dK = colᵀ·dY`)
    /// is contiguous down its columns: read it that way, one column of the
    /// block at a time, instead of gathering every row at a stride.
    fn pack_rows(&self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) {
        if self.rs != 1 || self.cs == 1 {
            return pack_row_by_row(self, rows, cols, out);
        }
        for (p, col) in cols.enumerate() {
            let start = rows.start + col * self.cs;
            for (r, &v) in self.data[start..start + rows.len()].iter().enumerate() {
                out[r * A_STRIDE + p] = v;
            }
        }
    }
}

/// Index of the last element a `rows × cols` matrix with these strides touches.
fn last(rows: usize, cols: usize, (rs, cs): (isize, isize)) -> usize {
    assert!(
        rs >= 0 && cs >= 0,
        "gemm: negative strides are not supported"
    );
    rows.saturating_sub(1) * rs as usize + cols.saturating_sub(1) * cs as usize
}

/// `C = α·A·B + β·C` in f32, with A `m×k`, B `k×n`, C `m×n`, each given by
/// its slice and (row stride, column stride): the contract of
/// [`crate::Element::gemm`], on the best [`Backend`].
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    sa: (isize, isize),
    b: &[f32],
    sb: (isize, isize),
    beta: f32,
    c: &mut [f32],
    sc: (isize, isize),
) {
    sgemm_on(Backend::best(), m, k, n, alpha, a, sa, b, sb, beta, c, sc);
}

/// [`sgemm`] on a chosen backend (tests run both). Panics if an operand is
/// too short for its shape and strides, or `Avx512` is asked for on a CPU
/// without it.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_on(
    backend: Backend,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    sa: (isize, isize),
    b: &[f32],
    sb: (isize, isize),
    beta: f32,
    c: &mut [f32],
    sc: (isize, isize),
) {
    if m == 0 || n == 0 {
        return;
    }
    match backend {
        Backend::Avx512 => {
            // (on_matrixmultiply checks its own operands.)
            assert!(k == 0 || last(m, k, sa) < a.len(), "gemm: A out of bounds");
            let a = Strided {
                data: a,
                rs: sa.0 as usize,
                cs: sa.1 as usize,
            };
            gemm(m, k, n, alpha, &a, b, sb, beta, c, sc);
        }
        Backend::MatrixMultiply => on_matrixmultiply(
            matrixmultiply::sgemm,
            m,
            k,
            n,
            alpha,
            a,
            sa,
            b,
            sb,
            beta,
            c,
            sc,
        ),
    }
}

/// The f64 GEMM, `matrixmultiply`'s dgemm, with the contract of [`sgemm`].
#[allow(clippy::too_many_arguments)]
pub fn dgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f64,
    a: &[f64],
    sa: (isize, isize),
    b: &[f64],
    sb: (isize, isize),
    beta: f64,
    c: &mut [f64],
    sc: (isize, isize),
) {
    on_matrixmultiply(
        matrixmultiply::dgemm,
        m,
        k,
        n,
        alpha,
        a,
        sa,
        b,
        sb,
        beta,
        c,
        sc,
    );
}

/// matrixmultiply's `sgemm` or `dgemm` (same signature, one element type
/// each), called with the bounds checks that make the raw-pointer call safe.
type MatrixMultiplyFn<T> = unsafe fn(
    usize,
    usize,
    usize,
    T,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    isize,
    T,
    *mut T,
    isize,
    isize,
);

/// [`sgemm`]'s contract on matrixmultiply (`mm`: its sgemm or dgemm).
#[allow(clippy::too_many_arguments)]
fn on_matrixmultiply<T>(
    mm: MatrixMultiplyFn<T>,
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: &[T],
    sa: (isize, isize),
    b: &[T],
    sb: (isize, isize),
    beta: T,
    c: &mut [T],
    sc: (isize, isize),
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k == 0 || last(m, k, sa) < a.len(), "gemm: A out of bounds");
    assert!(k == 0 || last(k, n, sb) < b.len(), "gemm: B out of bounds");
    assert!(last(m, n, sc) < c.len(), "gemm: C out of bounds");
    // SAFETY: the asserts above keep every access inside the slices.
    unsafe {
        mm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            sa.0,
            sa.1,
            b.as_ptr(),
            sb.0,
            sb.1,
            beta,
            c.as_mut_ptr(),
            sc.0,
            sc.1,
        )
    }
}

/// `C = α·A·B + β·C` with A given by its rows ([`MatrixA`], `m×k`), on our
/// AVX-512 kernel. B and C as in [`sgemm`]. `beta == 0` overwrites C without
/// reading it; `k == 0` leaves `C = β·C`. Panics without AVX-512F
/// ([`avx512_available`]), or if B or C is too short, or C's strides would
/// make two of its elements share memory.
#[allow(clippy::too_many_arguments)]
pub fn gemm<A: MatrixA>(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &A,
    b: &[f32],
    sb: (isize, isize),
    beta: f32,
    c: &mut [f32],
    sc: (isize, isize),
) {
    gemm_finishing(m, k, n, alpha, a, b, sb, beta, c, sc, None);
}

/// [`gemm`], then `finish(first, part)` on each finished part of a row of
/// C (row-major C only; `part` holds columns `first..first + part.len()`),
/// right after the task that computed it, while that block of C is still
/// in its core's cache: an elementwise step that would otherwise be a pass
/// of its own over C in memory (conv2d's bias and fused ReLU6). Every
/// element is handed to `finish` exactly once. Panics as [`gemm`] does, and
/// if C's columns are not contiguous.
#[allow(clippy::too_many_arguments)]
pub fn gemm_then<A: MatrixA>(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &A,
    b: &[f32],
    sb: (isize, isize),
    beta: f32,
    c: &mut [f32],
    sc: (isize, isize),
    finish: Finish,
) {
    assert_eq!(sc.1, 1, "gemm_then: C's rows must be contiguous");
    gemm_finishing(m, k, n, alpha, a, b, sb, beta, c, sc, Some(finish));
}

/// A step that finishes parts of C's rows ([`gemm_then`]): called with the
/// first column of the part and its values.
pub type Finish<'a> = &'a (dyn Fn(usize, &mut [f32]) + Sync);

/// [`gemm`] and [`gemm_then`].
#[allow(clippy::too_many_arguments)]
fn gemm_finishing<A: MatrixA>(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &A,
    b: &[f32],
    sb: (isize, isize),
    beta: f32,
    c: &mut [f32],
    sc: (isize, isize),
    finish: Option<Finish>,
) {
    assert!(
        avx512_available(),
        "gemm: this CPU has no AVX-512F (HINT: use sgemm, which falls back to matrixmultiply)"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(k == 0 || last(k, n, sb) < b.len(), "gemm: B out of bounds");
    assert!(last(m, n, sc) < c.len(), "gemm: C out of bounds");
    // Tasks write C through a shared pointer, so distinct (i, j) must be
    // distinct memory: one dimension must nest inside the other.
    let (rsc, csc) = (sc.0 as usize, sc.1 as usize);
    assert!(
        m == 1 || n == 1 || csc * n <= rsc || rsc * m <= csc,
        "gemm: C strides {sc:?} make rows and columns overlap"
    );
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                let e = &mut c[i * rsc + j * csc];
                *e = if beta == 0.0 { 0.0 } else { beta * *e };
            }
            if let Some(finish) = finish {
                finish(0, &mut c[i * rsc..i * rsc + n]);
            }
        }
        return;
    }

    let blocks = row_block_count(m, rayon::current_num_threads());
    // K blocks of equal depth (k = 576 as 3 × 192, not 256 + 256 + 64): a
    // thin last block would cost a full pass over C for little arithmetic.
    let kc_step = k.div_ceil(k.div_ceil(KC));
    let c_ptr = SharedC(c.as_mut_ptr());
    let nc_step = (B_BLOCK / k / NR * NR).clamp(NR, NC);
    let mut b_pack = take_aligned(&B_PACK, k * nc_step.min(n.next_multiple_of(NR)));
    for jc in (0..n).step_by(nc_step) {
        let nc = nc_step.min(n - jc);
        // All of B[.., jc..jc + nc], K block by K block.
        pack_b(b, sb, k, jc..jc + nc, kc_step, &mut b_pack);
        let b_pack = &b_pack[..];
        let c_ptr = &c_ptr;
        (0..blocks).into_par_iter().for_each(move |block| {
            let rows = row_block(m, blocks, block);
            // One task runs every K block of its rows: its block of C stays
            // in L2 from one K block to the next, and the threads meet once
            // per B block, not once per K block.
            let k_blocks = (0..k).step_by(kc_step).map(|pc| {
                let kc = kc_step.min(k - pc);
                (pc..pc + kc, k_block(b_pack, nc, pc..pc + kc))
            });
            // SAFETY: AVX-512F was checked above; the asserts on C keep every
            // element of rows × (jc..jc + nc) inside `c` and distinct, and
            // this task alone owns these rows of C during this B block.
            unsafe {
                multiply_rows(
                    a,
                    rows.clone(),
                    k_blocks,
                    nc,
                    c_ptr.0.add(jc * csc),
                    (rsc, csc),
                    alpha,
                    beta,
                )
            };
            if let Some(finish) = finish {
                for r in rows {
                    // SAFETY: as above; with csc = 1 (gemm_then) the row's
                    // columns jc..jc + nc are these nc contiguous floats.
                    let row =
                        unsafe { std::slice::from_raw_parts_mut(c_ptr.0.add(r * rsc + jc), nc) };
                    finish(jc, row);
                }
            }
        });
    }
    give_back(&B_PACK, b_pack);
}

/// Rows `rows` of `C = α·A·B + β·C` for one block of B's columns (`nc`
/// wide, C's column 0 at `c`), K block by K block: `k_blocks` yields, in
/// order, the columns of A each block covers and its packed panels (`kc × NR`
/// each, [`pack_b`]'s layout). The rows of A are packed block by block into
/// this thread's buffer; the first K block scales C by `beta`, the others add.
///
/// # Safety
/// The CPU must support AVX-512F, and `c + r·rsc + j·csc` must be valid for
/// writes (and reads, unless `beta == 0` and one K block) for every `r` in
/// `rows` and `j < nc`, with no other thread touching those elements.
#[allow(clippy::too_many_arguments)]
unsafe fn multiply_rows<'b, A: MatrixA + ?Sized>(
    a: &A,
    rows: Range<usize>,
    k_blocks: impl Iterator<Item = (Range<usize>, &'b [f32])>,
    nc: usize,
    c: *mut f32,
    (rsc, csc): (usize, usize),
    alpha: f32,
    beta: f32,
) {
    let (ic, m) = (rows.start, rows.len());
    let mut a_pack = take_aligned(&A_PACK, m.next_multiple_of(MR) * A_STRIDE);
    for (i, (cols, b_block)) in k_blocks.enumerate() {
        let kc = cols.len();
        a.pack_rows(rows.clone(), cols, &mut a_pack);
        // The rows padding the last tile are multiplied but never
        // stored; zeros keep stale denormals from slowing the FMAs.
        a_pack[m * A_STRIDE..].fill(0.0);
        // Later K blocks add onto what the first one wrote.
        let beta = if i == 0 { beta } else { 1.0 };
        for ir in (0..m).step_by(MR) {
            let tile_a = &a_pack[ir * A_STRIDE..(ir + MR) * A_STRIDE];
            let tile = avx512::tile_for::<A_STRIDE>(m - ir);
            for jr in (0..nc).step_by(NR) {
                let panel = &b_block[jr * kc..(jr + NR) * kc];
                // SAFETY: tile_a and panel hold the (MR-1)·A_STRIDE + kc and
                // kc·NR floats the kernel reads; the caller vouched for the
                // min(MR, m-ir) × min(NR, nc-jr) elements of C written.
                unsafe {
                    tile(
                        tile_a.as_ptr(),
                        RowsOfA::packed(A_STRIDE, kc),
                        panel.as_ptr(),
                        c.add((ic + ir) * rsc + jr * csc),
                        (rsc as isize, csc as isize),
                        (MR.min(m - ir), NR.min(nc - jr)),
                        alpha,
                        beta,
                    );
                }
            }
        }
    }
    give_back(&A_PACK, a_pack);
}

/// How many row blocks (rayon tasks) [`gemm`] cuts `m` rows into: blocks of
/// at most `MC` rows, as many as a multiple of the thread count, so that with
/// [`row_block`]'s even sizes every thread gets the same work. (Blocks of
/// `MC` rows and a remainder cut m = 2048 into 11, so one of 2 threads did 6
/// while the other waited: a tenth of a 2048³ product, a fifth of VGG16's
/// block5_conv1 at m = 1568.)
fn row_block_count(m: usize, threads: usize) -> usize {
    let tiles = m.div_ceil(MR);
    tiles
        .div_ceil(MC / MR)
        .next_multiple_of(threads.max(1))
        .min(tiles)
}

/// Rows of block `block` of `blocks`: whole tiles of `MR` rows, the blocks'
/// tile counts differing by one at most.
fn row_block(m: usize, blocks: usize, block: usize) -> Range<usize> {
    let tiles = m.div_ceil(MR);
    let (first, end) = (block * tiles / blocks, (block + 1) * tiles / blocks);
    first * MR..(end * MR).min(m)
}

/// C's pointer, shared by the tasks that write its disjoint row blocks.
struct SharedC(*mut f32);
// SAFETY: tasks write disjoint elements (see `gemm`), and the pointer does
// not outlive the `&mut` borrow of C that `gemm` holds.
unsafe impl Sync for SharedC {}
