//! The loops every path of `direct` shares: the output rows, written in
//! parallel ([`uninit_rows`], [`zeroed_rows`]), and the sums of products of
//! two rows of channels ([`sum_of_products`], [`mul_add`] and its variants
//! for `m > 1`), compiled for AVX-512 where the CPU has it ([`vectorised`]).

use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// The indices `i < len` with `inside(i)`, which must be one contiguous
/// range (the output pixels whose window the border does not cut).
pub(super) fn full_range(len: usize, inside: impl Fn(usize) -> bool) -> Range<usize> {
    let start = (0..len).find(|&i| inside(i)).unwrap_or(len);
    let end = (start..len).find(|&i| !inside(i)).unwrap_or(len);
    debug_assert!((end..len).all(|i| !inside(i)));
    start..end
}

/// A vector of `rows · row_len` zeros, handed to `write(row, out)` one row at
/// a time in parallel. Each row is zeroed inside its own task, just before
/// `write` adds into it, rather than the whole vector up front: one pass
/// over memory fewer.
pub(super) fn zeroed_rows(
    rows: usize,
    row_len: usize,
    write: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    uninit_rows(rows, row_len, |row, out| zeroed(out, |out| write(row, out)))
}

/// `out` set to zeros, handed to `write`; returns it.
pub(super) fn zeroed(out: &mut [MaybeUninit<f32>], write: impl FnOnce(&mut [f32])) -> &mut [f32] {
    for e in out.iter_mut() {
        e.write(0.0);
    }
    // SAFETY: every element of `out` was initialised just above.
    let out = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
    write(out);
    out
}

/// A vector of `rows · row_len` floats, each row written by
/// `write(row, out)` in parallel; `write` must initialise all of `out`,
/// and returns it as the proof.
pub(super) fn uninit_rows(
    rows: usize,
    row_len: usize,
    write: impl for<'o> Fn(usize, &'o mut [MaybeUninit<f32>]) -> &'o mut [f32] + Sync,
) -> Vec<f32> {
    let len = rows * row_len;
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(row_len.max(1))
        .enumerate()
        .for_each(|(row, out)| {
            let (start, len) = (out.as_ptr() as usize, out.len());
            let done = write(row, out);
            assert!(done.as_ptr() as usize == start && done.len() == len);
        });
    // SAFETY: the rows cover 0..len, and `write` initialised each (it
    // returned the whole row as initialised, checked just above).
    unsafe { v.set_len(len) };
    v
}

/// For each of `P` rows of `out`, `out[outs[p] + i] += Σ_t a[t.0 +
/// steps[p] + i] · b[t.1 + i]` over the pairs `t` of `terms` in order, for
/// `i < len`. `P` outputs that read the same `b` rows (the same kernel taps
/// for `P` pixels; the same `dy` pixel for the `P` taps of dK) are summed
/// side by side, so that each load of a `b` row serves `P` products: a
/// multiply-add of two loaded rows would otherwise take twice the loads the
/// CPU can issue per multiply and add.
///
/// Blocks of channels (64 while they last when `P ≤ 4`, then 16: four
/// AVX-512 vectors, or one) are summed over every term in registers, `P` at
/// a time, and stored once ([`sum_block`]), rather than loaded and stored
/// again for each term; the last few channels accumulate in `out` itself.
/// Every element sees the same sequence of roundings either way.
#[inline(always)]
pub(super) fn sum_of_products<const P: usize>(
    out: &mut [f32],
    outs: [usize; P],
    len: usize,
    a: &[f32],
    steps: [usize; P],
    b: &[f32],
    terms: &[(usize, usize)],
) {
    let mut start = 0;
    // 4·P registers of sums for 64 channels, 2·P for 32: at most 18 of
    // AVX-512's 32.
    while P <= 4 && len - start >= 64 {
        sum_block::<64, P>(out, &outs, a, &steps, b, terms, start);
        start += 64;
    }
    while P <= 9 && len - start >= 32 {
        sum_block::<32, P>(out, &outs, a, &steps, b, terms, start);
        start += 32;
    }
    while len - start >= 16 {
        sum_block::<16, P>(out, &outs, a, &steps, b, terms, start);
        start += 16;
    }
    let rest = len - start;
    for &(ta, tb) in terms {
        let b = &b[tb + start..][..rest];
        for (&o, &step) in outs.iter().zip(&steps) {
            mul_add(
                &mut out[o + start..][..rest],
                &a[ta + step + start..][..rest],
                b,
            );
        }
    }
}

/// Channels `start..start + N` of [`sum_of_products`], summed in `P` arrays
/// `[f32; N]` that the compiler keeps in vector registers.
#[inline(always)]
fn sum_block<const N: usize, const P: usize>(
    out: &mut [f32],
    outs: &[usize; P],
    a: &[f32],
    steps: &[usize; P],
    b: &[f32],
    terms: &[(usize, usize)],
    start: usize,
) {
    let mut acc = [[0.0f32; N]; P];
    for (acc, &o) in acc.iter_mut().zip(outs) {
        acc.copy_from_slice(&out[o + start..][..N]);
    }
    for &(ta, tb) in terms {
        // Copied into registers once: read from memory, it would be loaded
        // again for each of the P products.
        let b: [f32; N] = b[tb + start..][..N].try_into().unwrap();
        for (acc, &step) in acc.iter_mut().zip(steps) {
            let a = &a[ta + step + start..][..N];
            for i in 0..N {
                acc[i] = a[i].mul_add(b[i], acc[i]);
            }
        }
    }
    for (acc, &o) in acc.iter().zip(outs) {
        out[o + start..][..N].copy_from_slice(acc);
    }
}

/// Asks the CPU to start loading `v[range]` into its caches, one 64-byte
/// line (16 floats) at a time, so that later reads do not wait for memory
/// (x86-64; nothing elsewhere). Indices past the end are skipped.
#[inline(always)]
pub(super) fn prefetch(v: &[f32], range: Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    for i in range.step_by(16).take_while(|&i| i < v.len()) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch never faults and changes no value; the
        // address is inside `v`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(v[i..].as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (v, range);
}

/// `acc[i] += a[i] · b[i]`, by fused multiply-adds (as every sum here).
#[inline(always)]
pub(super) fn mul_add(acc: &mut [f32], a: &[f32], b: &[f32]) {
    for ((s, &u), &v) in acc.iter_mut().zip(a).zip(b) {
        *s = u.mul_add(v, *s);
    }
}

/// `acc[ci·m + j] += a[ci] · b[ci·m + j]`: one input channel's value times
/// its `m` filters (forward and dK; [`mul_add`] when `m = 1`).
#[inline(always)]
pub(super) fn mul_add_spread(acc: &mut [f32], a: &[f32], b: &[f32], m: usize) {
    if m == 1 {
        return mul_add(acc, a, b);
    }
    for ((s, &u), v) in acc.chunks_exact_mut(m).zip(a).zip(b.chunks_exact(m)) {
        for (s, &v) in s.iter_mut().zip(v) {
            *s = u.mul_add(v, *s);
        }
    }
}

/// `acc[ci] += Σ_j a[ci·m + j] · b[ci·m + j]`, `j` ascending: the `m` output
/// channels of one input channel summed back (dx; [`mul_add`] when `m = 1`).
#[inline(always)]
pub(super) fn mul_add_grouped(acc: &mut [f32], a: &[f32], b: &[f32], m: usize) {
    if m == 1 {
        return mul_add(acc, a, b);
    }
    for ((s, u), v) in acc.iter_mut().zip(a.chunks_exact(m)).zip(b.chunks_exact(m)) {
        for (&u, &v) in u.iter().zip(v) {
            *s = u.mul_add(v, *s);
        }
    }
}

/// Runs `f`, compiled for AVX-512 when the CPU has it, else for AVX2 with
/// FMA when it has those. `f` (an `#[inline(always)]` closure) and the
/// `#[inline(always)]` helpers above are inlined into `avx512` or
/// `avx2_fma`, whose target features let the compiler vectorise their loops
/// 16 or 8 lanes wide (the default x86-64 target stops at 4) and compile
/// each `f32::mul_add` to one FMA instruction (the default target has none
/// and calls the C library's `fmaf` for each). The arithmetic is the same
/// either way: `mul_add` rounds once on every CPU.
#[inline(always)]
pub(super) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::gemm::avx512_available() {
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2_fma<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { avx2_fma(f) };
        }
    }
    f()
}
