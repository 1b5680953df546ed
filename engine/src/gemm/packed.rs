//! Products on a B packed once and used many times: [`PackedB`], the
//! products of [`gemm_packed`] on chosen K blocks of it, and the tiles of
//! [`tile_in_place`] / [`tile_in_place_add`], which run the micro-kernel on
//! rows of A read where they lie (conv2d's direct and row-by-row paths,
//! Winograd's per-position products). Each sums every element of C in the
//! order [`gemm`](super::gemm) does, so the paths give the same bits.

use super::packing::{give_back, k_block, pack_b, take_aligned, AlignedBuf, B_PACK};
use super::{avx512, avx512_available, last, multiply_rows, MatrixA, RowsOfA, KC, MR, NR};
use std::mem::MaybeUninit;
use std::ops::Range;

/// `C = A·B_blocks` on the calling thread, for a caller that runs many small
/// products on a B it packed once ([`PackedB::blocked`]), each in its own
/// rayon task: A is `m × k`, `k` the depth of K blocks `blocks` of B
/// together (A's column 0 meets the first row of block `blocks.start`), and
/// C is `m × b.n`, rows `rsc` floats apart, overwritten. Each element is
/// summed as [`gemm`](super::gemm) sums it when its K blocks are these.
///
/// Panics without AVX-512F, if `blocks` is empty or past B's end, or if C
/// is too short or its rows overlap.
pub fn gemm_packed<A: MatrixA>(
    m: usize,
    a: &A,
    b: &PackedB,
    blocks: Range<usize>,
    c: &mut [f32],
    rsc: usize,
) {
    assert!(avx512_available(), "gemm: this CPU has no AVX-512F");
    assert!(!blocks.is_empty() && b.n > 0, "gemm: empty product");
    if m == 0 {
        return;
    }
    assert!(
        rsc >= b.n && (m - 1) * rsc + b.n <= c.len(),
        "gemm: C out of bounds or overlapping"
    );
    let mut col = 0;
    let k_blocks = blocks.map(|i| {
        let (depth, panels) = b.block(i);
        col += depth;
        (col - depth..col, panels)
    });
    // SAFETY: AVX-512F was checked, and the assert keeps the m × n elements
    // of C, written with beta = 0, inside `c` (borrowed mutably here).
    unsafe { multiply_rows(a, 0..m, k_blocks, b.n, c.as_mut_ptr(), (rsc, 1), 1.0, 0.0) };
}

/// B (`k × n`) packed into `NR`-column panels once, for a caller that runs
/// the micro-kernel on A in place ([`tile_in_place`]) instead of through [`gemm`](super::gemm).
pub struct PackedB {
    panels: AlignedBuf,
    /// Rows of B.
    k: usize,
    /// Rows of B in each K block (the last block may be shorter).
    kc: usize,
    n: usize,
}

impl PackedB {
    /// Packs all of B, given by its slice and (row stride, column stride),
    /// as one K block. Panics if B is too short for its shape.
    pub fn new(k: usize, n: usize, b: &[f32], sb: (isize, isize)) -> PackedB {
        PackedB::blocked(k, n, b, sb, k)
    }

    /// Packs all of B in K blocks of `kc` rows, for callers that take block
    /// `i` (rows `i·kc..`) at a time ([`tile_in_place_add`]'s `block`).
    /// Panics if B is too short for its shape or `kc` is 0 with `k > 0`.
    pub fn blocked(k: usize, n: usize, b: &[f32], sb: (isize, isize), kc: usize) -> PackedB {
        assert!(
            k == 0 || n == 0 || last(k, n, sb) < b.len(),
            "gemm: B out of bounds"
        );
        assert!(kc > 0 || k == 0, "gemm: K blocks of 0 rows");
        let mut panels = take_aligned(&B_PACK, k * n.next_multiple_of(NR));
        let kc = kc.min(k);
        pack_b(b, sb, k, 0..n, kc, &mut panels);
        PackedB { panels, k, kc, n }
    }

    /// K block `i`'s depth and its `NR`-column panels, one after another.
    fn block(&self, i: usize) -> (usize, &[f32]) {
        let start = i * self.kc;
        assert!(start < self.k, "gemm: B has no K block {i}");
        let depth = self.kc.min(self.k - start);
        (depth, k_block(&self.panels, self.n, start..start + depth))
    }
}

impl Drop for PackedB {
    fn drop(&mut self) {
        let panels = std::mem::replace(&mut self.panels, AlignedBuf::empty());
        give_back(&B_PACK, panels);
    }
}

/// `MR` rows of `C = A·B` with A read where it lies, not packed.
///
/// Row `r` of A is `rows.runs` runs of `rows.run_len` floats, run `s` at
/// `a[r·rows.row_stride + s·rows.run_stride..]`: the shape of a
/// convolution's receptive fields in NHWC memory, where packing would copy
/// each field once per tile of C for nothing (conv2d's direct path). Row `r`
/// of C is `c[r·rsc..r·rsc + b.n]`; it is written, never read, so C may be
/// memory not yet initialised (a fresh output: no pass to zero it first).
/// Each element of C is summed in the same order as in [`gemm`](super::gemm) with a
/// single K block, so the two give the same bits.
///
/// Panics without AVX-512F, if `runs·run_len` is not B's `k` or is above
/// [`KC`] (B's panels are read from L1 once per tile), or if A or C is too
/// short or C's rows overlap.
pub fn tile_in_place(
    a: &[f32],
    rows: RowsOfA,
    b: &PackedB,
    c: &mut [MaybeUninit<f32>],
    rsc: usize,
) {
    assert_eq!(b.kc, b.k, "gemm: B is packed in K blocks, not one");
    // SAFETY (of in_place's contract): with beta = 0 C is only written.
    unsafe { in_place(a, rows, b, 0, c.as_mut_ptr().cast(), c.len(), rsc, MR, 0.0) }
}

/// `C += A·B_block` on the first `mr` rows of a tile, with `B_block` K
/// block `block` of B ([`PackedB::blocked`]) and A read in place as in
/// [`tile_in_place`] (A's rows must be that block's depth long; all `MR`
/// of them are read, the ones past `mr` computed and thrown away, so A must
/// hold them). Each element becomes
/// `fl(C + Σ)`, `Σ` summed in order: what [`gemm`](super::gemm) does with a K block after
/// the first. conv2d's row-by-row forward sums a kernel row at a time with it.
///
/// Panics as [`tile_in_place`] does, or if `mr` is 0 or above [`MR`].
pub fn tile_in_place_add(
    a: &[f32],
    rows: RowsOfA,
    b: &PackedB,
    block: usize,
    c: &mut [f32],
    rsc: usize,
    mr: usize,
) {
    assert!(
        mr > 0 && mr <= MR,
        "gemm: mr = {mr} rows, expected 1..={MR}"
    );
    // SAFETY (of in_place's contract): C is initialised (`&mut [f32]`).
    unsafe { in_place(a, rows, b, block, c.as_mut_ptr(), c.len(), rsc, mr, 1.0) }
}

/// The checks and panel loop of [`tile_in_place`] and [`tile_in_place_add`]:
/// rows `0..mr` of `C = A·B_block + β·C`, C given as `c_len` floats at `c`.
///
/// # Safety
/// `c` must be valid for writes of `c_len` floats that nothing else touches
/// meanwhile, and initialised unless `beta == 0`.
#[allow(clippy::too_many_arguments)]
unsafe fn in_place(
    a: &[f32],
    rows: RowsOfA,
    b: &PackedB,
    block: usize,
    c: *mut f32,
    c_len: usize,
    rsc: usize,
    mr: usize,
    beta: f32,
) {
    assert!(avx512_available(), "gemm: this CPU has no AVX-512F");
    assert!(b.k > 0 && b.n > 0, "gemm: empty product");
    let (k, panels) = b.block(block);
    assert_eq!(
        rows.runs * rows.run_len,
        k,
        "gemm: A's rows are not B's k long"
    );
    assert!(k <= KC, "gemm: k = {k} is too deep for one pass");
    let a_last = (MR - 1) * rows.row_stride + (rows.runs - 1) * rows.run_stride + rows.run_len;
    assert!(a_last <= a.len(), "gemm: A out of bounds");
    assert!(
        rsc >= b.n && (mr - 1) * rsc + b.n <= c_len,
        "gemm: C out of bounds or overlapping"
    );
    for jr in (0..b.n).step_by(NR) {
        let panel = &panels[jr * k..(jr + NR) * k];
        // SAFETY: AVX-512F was checked; the asserts keep A's reads inside
        // `a`, the panel holds k·NR floats, and the mr × min(NR, n - jr)
        // elements written are inside `c`, which the caller vouched for
        // (only read when beta != 0, and then initialised).
        unsafe {
            avx512::tile_for::<0>(mr)(
                a.as_ptr(),
                rows,
                panel.as_ptr(),
                c.add(jr),
                (rsc as isize, 1),
                (mr, NR.min(b.n - jr)),
                1.0,
                beta,
            );
        }
    }
}
