//! Packing B into the micro-kernel's panels, and the 64-byte-aligned
//! buffers, kept per thread between calls, that packing writes into.

use super::NR;
use rayon::prelude::*;
use std::cell::Cell;
use std::ops::Range;
use std::thread::LocalKey;

/// Packs `B[0..k, js]` K block by K block (`kc_step` rows each, the last
/// one shorter), each block into `NR`-column panels of `kc × NR` row-major:
/// block `i` is the `kc·width` floats at `i·kc_step·width` ([`k_block`]),
/// `width` being `js.len()` rounded up to `NR`, and its panel `p` starts
/// `p·NR·kc` into it. The last panel's missing columns are zero.
pub(super) fn pack_b(
    b: &[f32],
    (rsb, csb): (isize, isize),
    k: usize,
    js: Range<usize>,
    kc_step: usize,
    out: &mut [f32],
) {
    if k == 0 || js.is_empty() {
        return;
    }
    let (rsb, csb) = (rsb as usize, csb as usize);
    let width = js.len().next_multiple_of(NR);
    // Panels are independent copies: the threads share them (a serial pack
    // left the other thread idle for a sixth of a 256×2048×256 product).
    let blocks = out[..k * width].par_chunks_mut(kc_step * width);
    blocks.enumerate().for_each(|(block, out)| {
        let (k0, kc) = (block * kc_step, out.len() / width);
        let panels = out.par_chunks_exact_mut(NR * kc).with_min_len(4);
        panels.enumerate().for_each(|(p, panel)| {
            let j0 = js.start + p * NR;
            let cols = NR.min(js.end - j0);
            for (dst, k) in panel.chunks_exact_mut(NR).zip(k0..k0 + kc) {
                let start = k * rsb + j0 * csb;
                if csb == 1 && cols == NR {
                    // A whole panel row as one fixed-size copy: vector moves,
                    // not a call to memcpy per 128 bytes.
                    let src: &[f32; NR] = b[start..start + NR].try_into().unwrap();
                    *<&mut [f32; NR]>::try_from(&mut *dst).unwrap() = *src;
                } else if csb == 1 {
                    dst[..cols].copy_from_slice(&b[start..start + cols]);
                } else {
                    for (j, d) in dst[..cols].iter_mut().enumerate() {
                        *d = b[start + j * csb];
                    }
                }
                dst[cols..].fill(0.0);
            }
        });
    });
}

/// The panels of K block `rows` (a block [`pack_b`] wrote: rows
/// `rows.start..rows.end` of B) in a packed B block `n` columns wide.
pub(super) fn k_block(packed: &[f32], n: usize, rows: Range<usize>) -> &[f32] {
    let width = n.next_multiple_of(NR);
    &packed[rows.start * width..rows.end * width]
}

thread_local! {
    /// The packing buffers kept per thread between calls (B's by the calling
    /// thread, A's by every worker): a fresh megabyte-sized vector would cost
    /// page faults on every call.
    pub(super) static A_PACK: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    pub(super) static B_PACK: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// A buffer of `len` floats starting on a 64-byte boundary (each packed row
/// of B is then exactly two cache lines), reusing the one kept in `pool`. It
/// is taken out of the thread-local, so a nested call on the same thread (a
/// rayon worker stealing another GEMM's task) gets a buffer of its own.
pub(super) fn take_aligned(pool: &'static LocalKey<Cell<Vec<f32>>>, len: usize) -> AlignedBuf {
    let mut v = pool.with(|b| b.take());
    if v.len() < len + 16 {
        v = vec![0.0; len + 16];
    }
    let offset = v.as_ptr().align_offset(64);
    AlignedBuf { v, offset, len }
}

/// Keeps the larger of `buf` and the buffer already in `pool`.
pub(super) fn give_back(pool: &'static LocalKey<Cell<Vec<f32>>>, buf: AlignedBuf) {
    pool.with(|b| {
        let kept = b.take();
        b.set(if kept.len() >= buf.v.len() {
            kept
        } else {
            buf.v
        });
    });
}

/// `len` floats inside `v`, starting at the aligned `offset`.
pub(super) struct AlignedBuf {
    v: Vec<f32>,
    offset: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of no floats (what a dropped owner leaves behind).
    pub(super) fn empty() -> AlignedBuf {
        AlignedBuf {
            v: Vec::new(),
            offset: 0,
            len: 0,
        }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.v[self.offset..self.offset + self.len]
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.v[self.offset..self.offset + self.len]
    }
}
