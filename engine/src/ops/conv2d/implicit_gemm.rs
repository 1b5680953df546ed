//! The f32 forward (and `dx` at stride 1) as one implicit GEMM: the fast
//! paths beside the im2col reference in `cpu.rs`, on CPUs with AVX-512F.
//! `cpu.rs`'s `choose` says which layers take which; `tests.rs` checks each
//! against [`super::cpu::reference`].
//!
//! A GEMM copies A into small packed blocks anyway, a few hundred rows at a
//! time, to keep them in cache ([`crate::gemm`]). So the forward hands the
//! GEMM the receptive fields themselves ([`ReceptiveFields`]) and its
//! packing step copies them straight from the NHWC input: `col` is never
//! written to memory, which on narrow layers (64 channels, ResNet's 7×7 stem
//! with `kh·kw·c = 147`) costs as much as the arithmetic ([`forward_packed`]).
//!
//! Two shapes skip even the packing:
//! - where every window lies inside the input and the field is short
//!   (ResNet's stem), the micro-kernel reads the fields where they lie
//!   ([`forward_direct`]);
//! - the 64-channel 3×3 layers (VGG16's block1_conv2, ResNet's conv2
//!   blocks) do it one kernel row at a time: each row of a receptive field
//!   is one run of input memory, so after copying each input row once into
//!   a zero-padded buffer the micro-kernel reads the runs in place and adds
//!   each kernel row's product onto the output ([`forward_rows`]).
//!
//! At stride 1, `dx` is the convolution of `dY` with the kernel turned by
//! 180° ([`backward_dx`]), so the same trick gives it: no `dcol` is written
//! and nothing is scattered back.

use super::cpu::{row_major, ConvGeometry};
use super::winograd;
use crate::gemm::{self, MatrixA};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

impl ConvGeometry {
    /// Whether [`forward_direct`] applies: every window lies inside the
    /// input (no padding is ever read, so the fields are plain NHWC memory),
    /// the receptive field fits one K block of the GEMM (`kh·kw·c ≤ KC`), and
    /// an output row holds at least one tile of `MR` pixels. 1×1 stride-1
    /// convs are left to the GEMM, for which `x` already is A.
    pub(super) fn suits_direct(&self) -> bool {
        self.pad_top == 0
            && self.pad_left == 0
            && self.oh > 0
            && self.ow >= gemm::MR
            && (self.oh - 1) * self.sh + self.kh <= self.h
            && (self.ow - 1) * self.sw + self.kw <= self.w
            && self.col_width() <= gemm::KC
            && !self.is_pointwise()
    }

    /// Whether [`forward_rows`] applies: stride 1, a 3×3-like kernel whose
    /// rows are each one K block (`kw·c ≤ KC`) and long enough to keep the
    /// kernel busy (`kw·c ≥ 128`: 64-channel 3×3 layers, such as VGG16's
    /// block1_conv2 and ResNet50's conv2 blocks), output rows of at least
    /// one tile, and not already taken by [`forward_direct`].
    pub(super) fn suits_rows(&self) -> bool {
        let run = self.kw * self.c;
        self.sh == 1
            && self.sw == 1
            && self.kh > 1
            && (128..=gemm::KC).contains(&run)
            && self.ow >= gemm::MR
            && self.oh > 0
            && !self.suits_direct()
    }

    /// At stride 1, the forward convolution that gives this one's `dx`: over
    /// `dy` (`oh × ow × o`), with the turned kernel (`o` in, `c` out), to an
    /// `h × w × c` output, padded by `kh − 1 − pt` above and `kw − 1 − pl` on
    /// the left (see [`backward_dx`]).
    pub(super) fn dx_as_forward(&self) -> ConvGeometry {
        debug_assert!(self.sh == 1 && self.sw == 1);
        ConvGeometry {
            h: self.oh,
            w: self.ow,
            c: self.o,
            o: self.c,
            oh: self.h,
            ow: self.w,
            pad_top: self.kh - 1 - self.pad_top,
            pad_left: self.kw - 1 - self.pad_left,
            ..*self
        }
    }
}

/// The rows of `col` read straight from the NHWC input, for the GEMM's
/// packing step: the implicit-GEMM forward never writes `col` out.
struct ReceptiveFields<'a> {
    x: &'a [f32],
    g: &'a ConvGeometry,
}

impl<'a> ReceptiveFields<'a> {
    fn new(x: &'a [f32], g: &'a ConvGeometry) -> Self {
        assert_eq!(x.len(), g.n * g.h * g.w * g.c, "conv2d: input size");
        ReceptiveFields { x, g }
    }
}

impl MatrixA for ReceptiveFields<'_> {
    /// `col[row, cols]` with `row = (b, oy, ox)`: one kernel row `ky` at a
    /// time, the part of `(kx, ci)` inside the input is one contiguous run
    /// of NHWC memory (as in `cpu.rs`'s `im2col`); the rest is padding, zero.
    fn copy_row(&self, row: usize, cols: Range<usize>, mut out: &mut [f32]) {
        let g = self.g;
        let (kwc, c) = (g.kw * g.c, g.c);
        let (b, pixel) = (row / (g.oh * g.ow), row % (g.oh * g.ow));
        let (oy, ox) = (pixel / g.ow, pixel % g.ow);
        let (lo, hi, ix0) = g.kx_range(ox);
        let image = &self.x[b * g.h * g.w * c..(b + 1) * g.h * g.w * c];
        let mut j = cols.start;
        while j < cols.end {
            let ky = j / kwc;
            // This kernel row's part of the range, as offsets s..e into (kx, ci).
            let (s, e) = (j - ky * kwc, cols.end.min((ky + 1) * kwc) - ky * kwc);
            let (dst, rest) = out.split_at_mut(e - s);
            let iy = (oy * g.sh + ky) as isize - g.pad_top as isize;
            if iy < 0 || iy >= g.h as isize {
                dst.fill(0.0);
            } else {
                // Offsets lo·c..hi·c are inside the input; copy their overlap with s..e.
                let (vs, ve) = (s.max(lo * c), e.min(hi * c));
                if vs < ve {
                    let start = ((iy * g.w as isize + ix0) * c as isize) as usize + vs;
                    dst[..vs - s].fill(0.0);
                    dst[vs - s..ve - s].copy_from_slice(&image[start..start + (ve - vs)]);
                    dst[ve - s..].fill(0.0);
                } else {
                    dst.fill(0.0);
                }
            }
            out = rest;
            j = ky * kwc + e;
        }
    }
}

/// The implicit GEMM through [`gemm::gemm`], whose packing step reads `col`
/// through [`ReceptiveFields`].
pub(super) fn forward_packed(
    x: &[f32],
    kernel: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    forward_packed_then(x, kernel, bias, g, None)
}

/// [`forward_packed`], then `finish`, if given, on each finished part of
/// an output row (pixel; the slice holds channels `first..`) while it is
/// in cache ([`gemm::gemm_then`]).
///
/// The bias: with a receptive field of one K block of the GEMM
/// (`kh·kw·c ≤ KC`: every 1×1 conv on up to 256 channels), it is added as
/// the rows are finished, `fl(Σ + bias)`, the same bits as starting C at
/// the bias (beta = 1) gives, without writing the bias over all of C first
/// and reading it back. With more K blocks C starts as the bias, so that
/// each element is summed as the other paths sum it.
pub(super) fn forward_packed_then(
    x: &[f32],
    kernel: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    finish: Option<gemm::Finish>,
) -> Vec<f32> {
    let (cw, o, rows) = (g.col_width(), g.o, g.n * g.oh * g.ow);
    let cols = ReceptiveFields::new(x, g);
    let sb = row_major(o);
    if let (Some(b), true) = (bias, cw <= gemm::KC) {
        let mut y = vec![0.0; rows * o];
        let add_bias = |first: usize, part: &mut [f32]| {
            for (y, &b) in part.iter_mut().zip(&b[first..]) {
                *y += b;
            }
            if let Some(f) = finish {
                f(first, part);
            }
        };
        gemm::gemm_then(
            rows, cw, o, 1.0, &cols, kernel, sb, 0.0, &mut y, sb, &add_bias,
        );
        return y;
    }
    // The bias is written first and the GEMM adds onto it (beta = 1).
    let (mut y, beta) = match bias {
        Some(b) => (b.repeat(rows), 1.0),
        None => (vec![0.0; rows * o], 0.0),
    };
    match finish {
        None => gemm::gemm(rows, cw, o, 1.0, &cols, kernel, sb, beta, &mut y, sb),
        Some(f) => gemm::gemm_then(rows, cw, o, 1.0, &cols, kernel, sb, beta, &mut y, sb, f),
    }
    y
}

/// The implicit GEMM with no packing of A at all, for convolutions whose
/// windows all lie inside the input and whose receptive field is short
/// ([`ConvGeometry::suits_direct`]: ResNet's 7×7 stem, `kh·kw·c = 147`, on
/// its pre-padded input). There a packed row of A is `kh` copies of
/// `kw·c` floats (21 for the stem), used for only `o / NR` tiles of C (2),
/// so packing would be a large share of the work.
///
/// In NHWC the fields of `MR` neighbouring pixels of one output row are
/// already laid out as the micro-kernel reads A: pixel `ox + r` starts
/// `r·sw·c` floats after pixel `ox`, and each field is `kh` runs of `kw·c`
/// contiguous floats, one input row (`w·c`) apart. So the kernel broadcasts
/// straight from `x` ([`gemm::tile_in_place`]); only the kernel (B) is packed, once.
///
/// Each output row `(b, oy)` is one rayon task, cut into tiles of `MR`
/// pixels; the last tile ends at the row's end and may overlap the one
/// before (`ow` is rarely a multiple of `MR`: 112 = 9·12 + 4), which then
/// computes those pixels again, to the same bits (the kernel writes C, never
/// adds to it). Every element is summed in the same order as in
/// [`forward_packed`] (one K block, `k ≤ KC`), so the two paths agree bit
/// for bit, whatever the thread count.
pub(super) fn forward_direct(
    x: &[f32],
    kernel: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.h * g.w * g.c, "conv2d: input size");
    let (o, image, input_row) = (g.o, g.h * g.w * g.c, g.w * g.c);
    let kernel = gemm::PackedB::new(g.col_width(), o, kernel, row_major(o));
    let fields = gemm::RowsOfA {
        row_stride: g.sw * g.c,
        runs: g.kh,
        run_len: g.kw * g.c,
        run_stride: input_row,
    };
    // y is written by the tiles alone, so it is never zero-filled first (a
    // whole pass over the output, for nothing).
    let len = g.n * g.oh * g.ow * o;
    let mut y: Vec<f32> = Vec::with_capacity(len);
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(g.ow * o)
        .enumerate()
        .for_each(|(row, y_row)| {
            let (b, oy) = (row / g.oh, row % g.oh);
            // The window of pixel (oy, 0) starts at input row oy·sh, column 0.
            let top = &x[b * image + oy * g.sh * input_row..(b + 1) * image];
            for ox in (0..g.ow).step_by(gemm::MR) {
                let ox = ox.min(g.ow - gemm::MR);
                let a = &top[ox * g.sw * g.c..];
                gemm::tile_in_place(a, fields, &kernel, &mut y_row[ox * o..], o);
            }
            // The bias is added after the product, one rounding per element
            // as in forward_packed's beta = 1 (fl(bias + sum) either way).
            if let Some(bias) = bias {
                // SAFETY: the tiles above wrote every pixel 0..ow of the row,
                // all o channels of each.
                let y_row = unsafe { &mut *(y_row as *mut [MaybeUninit<f32>] as *mut [f32]) };
                for pixel in y_row.chunks_exact_mut(o) {
                    for (y, &b) in pixel.iter_mut().zip(bias) {
                        *y += b;
                    }
                }
            }
        });
    // SAFETY: every output row was written in full above.
    unsafe { y.set_len(len) };
    y
}

thread_local! {
    /// [`forward_rows`]' padded input row, kept per thread between calls.
    /// Its own pool, not [`scratch`]'s: that one keeps two buffers a
    /// thread, for backward's `col` and `dcol`, and this small one would
    /// take a place there.
    static PADDED_ROWS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The implicit GEMM one kernel row at a time, for stride-1 convs whose
/// kernel rows span `128 ≤ kw·c ≤ KC` floats of a receptive field
/// ([`ConvGeometry::suits_rows`]: the 64-channel 3×3 layers, `kw·c = 192`).
/// There copying the fields into A is a large share of the packed path's
/// work (each packed tile of A serves only `o / NR = 2` tiles of C).
///
/// For output pixel `(oy, ox)` and kernel row `ky`, the field's part is one
/// run of `kw·c` floats of input row `iy = oy + ky - pad_top`, starting at
/// column `ox - pad_left`, and the next pixel's run starts `c` floats later:
/// exactly what the micro-kernel reads in place ([`gemm::tile_in_place_add`],
/// rows `c` apart). Only the columns of padding are missing, so each task
/// (one output row) copies its `kh` input rows into zero-padded buffers,
/// 24 KiB for block1_conv2@32 where packing copied 72 KiB, then goes along
/// the output row a tile of `MR` pixels at a time, adding each kernel row's
/// product onto the tile while it stays in L1. Input rows in the vertical
/// padding contribute zeros and are skipped.
///
/// The output starts as the bias (or zeros) and every kernel row adds onto
/// it, so each element is `fl(fl(bias + Σ₀) + Σ₁) + …`: what
/// [`forward_packed`] computes when its K blocks are the kernel rows
/// (`kw·c` divides into `kh` blocks of equal depth, as 192 does 576).
pub(super) fn forward_rows(
    x: &[f32],
    kernel: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.h * g.w * g.c, "conv2d: input size");
    let (o, c, run) = (g.o, g.c, g.kw * g.c);
    // B in K blocks of one kernel row: block ky is rows ky·kw·c.. of the
    // [kh·kw·c, o] kernel.
    let kernel = gemm::PackedB::blocked(g.col_width(), o, kernel, row_major(o), run);
    let fields = gemm::RowsOfA {
        row_stride: c,
        runs: 1,
        run_len: run,
        run_stride: 0,
    };
    // One padded input row: pad_left pixels of zeros, the row, zeros up to
    // where the last tile's (discarded) rows read, up to MR pixels past the end.
    let row_len = (g.ow.next_multiple_of(gemm::MR) + g.kw) * c;
    let (inside, after) = (g.pad_left * c, (g.pad_left + g.w) * c);
    // y is written tile by tile below (bias first, then each kernel row
    // added), so it is never filled beforehand: no pass over it but those.
    let len = g.n * g.oh * g.ow * o;
    let mut y: Vec<f32> = Vec::with_capacity(len);
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(g.ow * o)
        .enumerate()
        .for_each(|(row, y_row)| {
            let (b, oy) = (row / g.oh, row % g.oh);
            // Kernel rows ky read input row iy = oy + ky - pad_top; those
            // inside the input (a range of ky) are copied, each zero-padded,
            // into a buffer kept by this thread between calls (not
            // allocated per task); the others only read padding: skipped.
            let kys = g.pad_top.saturating_sub(oy)..(g.h + g.pad_top - oy).min(g.kh);
            let mut padded = PADDED_ROWS.with(|b| b.take());
            padded.resize(g.kh * row_len, 0.0);
            for ky in kys.clone() {
                let iy = oy + ky - g.pad_top;
                let start = ((b * g.h + iy) * g.w) * c;
                let dst = &mut padded[ky * row_len..(ky + 1) * row_len];
                dst[..inside].fill(0.0);
                dst[inside..after].copy_from_slice(&x[start..start + g.w * c]);
                dst[after..].fill(0.0);
            }
            // Tile by tile, so that the tile of y stays in L1 while every
            // kernel row adds onto it.
            for ox in (0..g.ow).step_by(gemm::MR) {
                let mr = gemm::MR.min(g.ow - ox);
                let tile = &mut y_row[ox * o..(ox + mr) * o];
                match bias {
                    Some(bias) => {
                        for pixel in tile.chunks_exact_mut(o) {
                            for (y, &b) in pixel.iter_mut().zip(bias) {
                                y.write(b);
                            }
                        }
                    }
                    None => tile.fill(MaybeUninit::new(0.0)),
                }
                // SAFETY: every element of the tile was written just above.
                let tile = unsafe { &mut *(tile as *mut [MaybeUninit<f32>] as *mut [f32]) };
                for ky in kys.clone() {
                    let a = &padded[ky * row_len + ox * c..(ky + 1) * row_len];
                    gemm::tile_in_place_add(a, fields, &kernel, ky, tile, o, mr);
                }
            }
            PADDED_ROWS.with(|b| b.set(padded));
        });
    // SAFETY: every output row's tiles were written in full above.
    unsafe { y.set_len(len) };
    y
}

/// `dx` of a stride-1 conv as one implicit GEMM. At stride 1, `dx` is the
/// convolution of `dy` with the kernel turned by 180° and its channel axes
/// swapped (`o` in, `c` out), padded by `kh − 1 − pt` above and
/// `kw − 1 − pl` on the left:
///
/// ```text
/// dx[b, iy, ix, ci] = Σ_{ky, kx, co} dy[b, iy + pt − ky, ix + pl − kx, co] · K[ky, kx, ci, co]
///                   = Σ_{ky', kx', co} dy[b, iy − (kh−1−pt) + ky', …, co] · K[kh−1−ky', kw−1−kx', ci, co]
/// ```
///
/// so the forward's [`ReceptiveFields`] over `dy` give A, and no `dcol` is
/// written or scattered back (col2im).
pub(super) fn backward_dx(kernel: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let turned = turned_kernel(kernel, g);
    let back = g.dx_as_forward();
    let c = g.c;
    let mut dx = vec![0.0; g.n * g.h * g.w * c];
    let cols = ReceptiveFields::new(dy, &back);
    let rows = g.n * g.h * g.w;
    gemm::gemm(
        rows,
        back.col_width(),
        c,
        1.0,
        &cols,
        &turned,
        row_major(c),
        0.0,
        &mut dx,
        row_major(c),
    );
    dx
}

/// [`backward_dx`]'s convolution of `dy` run by Winograd's forward, for the
/// stride-1 3×3 convs whose turned geometry [`winograd::suits`].
pub(super) fn backward_dx_winograd(kernel: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let turned = turned_kernel(kernel, g);
    winograd::forward(dy, &turned, None, &g.dx_as_forward())
}

/// The kernel of [`backward_dx`]'s convolution: turned by 180°, HWIO with
/// I = o and O = c, `[kh, kw, o, c]`. Each tap's `[c, o]` matrix is
/// transposed in 16×16 blocks: a plain loop would walk one of the two
/// (9 MiB for VGG16's block5) at a stride.
fn turned_kernel(kernel: &[f32], g: &ConvGeometry) -> Vec<f32> {
    debug_assert!(g.sh == 1 && g.sw == 1);
    let (c, o) = (g.c, g.o);
    const BLOCK: usize = 16;
    let mut turned = vec![0.0; kernel.len()];
    turned
        .par_chunks_mut(o * c)
        .enumerate()
        .for_each(|(tap, dst)| {
            let (ky, kx) = (tap / g.kw, tap % g.kw);
            let src = ((g.kh - 1 - ky) * g.kw + (g.kw - 1 - kx)) * c * o;
            let src = &kernel[src..src + c * o];
            for ci0 in (0..c).step_by(BLOCK) {
                for co0 in (0..o).step_by(BLOCK) {
                    for ci in ci0..(ci0 + BLOCK).min(c) {
                        for co in co0..(co0 + BLOCK).min(o) {
                            dst[co * c + ci] = src[ci * o + co];
                        }
                    }
                }
            }
        });
    turned
}
