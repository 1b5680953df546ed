//! CPU conv2d: im2col + one GEMM per batch chunk (the reference), and the
//! f32 forward as one implicit GEMM.
//!
//! With NHWC input and HWIO kernel, the convolution is a matrix product:
//!
//! ```text
//! col[(b, oy, ox), (ky, kx, ci)] = x[b, oy·sh + ky − pt, ox·sw + kx − pl, ci]   (0 outside)
//! Y[(b, oy, ox), co]             = col · K          K = kernel as [kh·kw·c, o]
//! ```
//!
//! `col` is `[n·oh·ow, kh·kw·c]`, the kernel is already `[kh·kw·c, o]` in
//! row-major order, and the product `[n·oh·ow, o]` is the NHWC output, so no
//! layout changes are needed anywhere. A 1×1, stride-1, unpadded conv needs
//! no `col` at all: `x` itself, seen as `[n·h·w, c]`, is the matrix.
//!
//! Backward: `dK = colᵀ·dY` and `dcol = dY·Kᵀ` (the transposes are strides
//! given to the GEMM), then col2im adds every `dcol` entry back onto the
//! input pixel it was copied from.
//!
//! **Implicit GEMM (the f32 forward on AVX-512 CPUs).** A GEMM copies A into
//! small packed blocks anyway, a few hundred rows at a time, to keep them in
//! cache ([`crate::gemm`]). So the f32 forward hands the GEMM the receptive
//! fields themselves ([`ReceptiveFields`]) and its packing step copies them
//! straight from the NHWC input: `col` is never written to memory, which on
//! narrow layers (64 channels, ResNet's 7×7 stem with `kh·kw·c = 147`) cost
//! as much as the arithmetic. At stride 1 the same trick gives `dx`: it is
//! the convolution of `dY` with the kernel turned by 180° (see
//! `backward_dx_implicit`), so no `dcol` is written and nothing is scattered
//! back. Where every window lies inside the input and the field is short
//! (ResNet's stem), even the packing is skipped: the micro-kernel reads the
//! fields where they lie (`forward_direct`). The 64-channel 3×3 layers
//! (VGG16's block1_conv2, ResNet's conv2 blocks) skip it one kernel row at a
//! time: each row of a receptive field is one run of input memory, so after
//! copying each input row once into a zero-padded buffer the micro-kernel
//! reads the runs in place and adds each kernel row's product onto the
//! output (`forward_rows`). 3×3 stride-1 layers of 128 channels and more
//! (and their `dx`) take Winograd's F(2×2, 3×3) instead, 2.25x less
//! arithmetic through the same GEMM (`winograd.rs`). The im2col path below stays as
//! the reference (f64, CPUs without AVX-512), for `dK`, and for `dx` at
//! stride 2.
//!
//! Threading has one level: the GEMM threads itself (over the rayon pool),
//! and the im2col/col2im loops between GEMMs use rayon. No GEMM runs inside a
//! rayon task. The output is processed in chunks of output rows `(b, oy)` (a
//! chunk may hold many images, or part of one) so that the `col` buffers stay
//! under [`COL_BUDGET_BYTES`] even at 224 px.
//!
//! Forward chunks (im2col path) are much smaller than that bound: about [`FORWARD_TILE_BYTES`]
//! of `col`, so that the GEMM reads `col` back from cache right after im2col
//! wrote it. On a narrow layer (64 output channels) streaming a 64 MB `col`
//! through memory and back cost more than the GEMM's arithmetic; cache-sized
//! chunks made VGG16 block1_conv2 and ResNet50 conv2_block1_2_conv about 1.4-1.8x
//! faster. A chunk is never so small that re-packing the kernel (the GEMM's
//! `B`, `kh·kw·c × o`, copied once per GEMM call) would outweigh that: it has
//! at least [`MIN_ROWS_PER_OUT_CHANNEL`]`·o` pixels.

use super::{scratch, winograd};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::gemm::{self, MatrixA};
use crate::tensor::{CpuStorage, DType};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Upper bound on the im2col scratch memory of one conv2d call (forward:
/// `col`; backward: `col` and `dcol` together). Chunks are whole output rows
/// `(b, oy)`, so even one 224-px image is split; a single output row always fits.
pub const COL_BUDGET_BYTES: usize = 64 << 20;

/// Target size of one forward `col` chunk: half of the 2 MiB L2 cache per
/// core of the machine it was tuned on (the GEMM's packed blocks use the
/// rest). Measured on VGG16/ResNet50 shapes: 0.5-2 MiB were all within
/// noise of each other, 128 KiB and 64 MiB clearly slower.
const FORWARD_TILE_BYTES: usize = 1 << 20;

/// Lower bound on the pixels (GEMM rows) of one forward chunk, per output
/// channel. Each GEMM call packs the whole kernel (`kh·kw·c·o` values) while
/// im2col copies `rows·kh·kw·c`, so with `rows >= 4·o` packing the kernel costs
/// at most a quarter of the im2col copy. Deep layers (512 channels: a 9 MB
/// kernel) get large chunks from this bound; 1 MiB chunks there were 1.8x slower.
const MIN_ROWS_PER_OUT_CHANNEL: usize = 4;

/// Sizes of one convolution, with the padding already resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels (of the input).
    pub c: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Output channels.
    pub o: usize,
    /// Stride along the height.
    pub sh: usize,
    /// Stride along the width.
    pub sw: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Padded rows above the input.
    pub pad_top: usize,
    /// Padded columns left of the input.
    pub pad_left: usize,
}

impl ConvGeometry {
    /// Width of a `col` row: one receptive field, `kh·kw·c`.
    fn col_width(&self) -> usize {
        self.kh * self.kw * self.c
    }

    /// 1×1, stride 1, no padding: `x` as `[n·h·w, c]` is already `col`.
    fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.oh == self.h
            && self.ow == self.w
    }

    /// Whether [`forward_direct`] applies: every window lies inside the
    /// input (no padding is ever read, so the fields are plain NHWC memory),
    /// the receptive field fits one K block of the GEMM (`kh·kw·c ≤ KC`), and
    /// an output row holds at least one tile of `MR` pixels. 1×1 stride-1
    /// convs are left to the GEMM, for which `x` already is A.
    fn suits_direct(&self) -> bool {
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
    fn suits_rows(&self) -> bool {
        let run = self.kw * self.c;
        self.sh == 1
            && self.sw == 1
            && self.kh > 1
            && (128..=gemm::KC).contains(&run)
            && self.ow >= gemm::MR
            && self.oh > 0
            && !self.suits_direct()
    }

    /// Output rows `(b, oy)` per chunk, so that `buffers` col-sized buffers fit
    /// the budget (at least one row: `ow` pixels).
    fn rows_per_chunk<T>(&self, budget_bytes: usize, buffers: usize) -> usize {
        let per_row = self.ow * self.col_width() * std::mem::size_of::<T>() * buffers;
        (budget_bytes / per_row.max(1)).clamp(1, (self.n * self.oh).max(1))
    }

    /// Output rows per forward chunk: about `tile_bytes` of `col`, but at
    /// least [`MIN_ROWS_PER_OUT_CHANNEL`]`·o` pixels, and never more than
    /// `budget_bytes` allows (see the module docs).
    fn forward_rows_per_chunk<T>(&self, tile_bytes: usize, budget_bytes: usize) -> usize {
        let by_tile = self.rows_per_chunk::<T>(tile_bytes, 1);
        let by_kernel = (MIN_ROWS_PER_OUT_CHANNEL * self.o).div_ceil(self.ow);
        by_tile
            .max(by_kernel)
            .min(self.rows_per_chunk::<T>(budget_bytes, 1))
    }

    /// At stride 1, the forward convolution that gives this one's `dx`: over
    /// `dy` (`oh × ow × o`), with the turned kernel (`o` in, `c` out), to an
    /// `h × w × c` output, padded by `kh − 1 − pt` above and `kw − 1 − pl` on
    /// the left (see `backward_dx_implicit`).
    fn dx_as_forward(&self) -> ConvGeometry {
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

    /// Columns `kx` of the kernel that land inside the input for output
    /// column `ox`, as the half-open range `lo..hi`, and the input column of `kx = 0`.
    fn kx_range(&self, ox: usize) -> (usize, usize, isize) {
        let ix0 = (ox * self.sw) as isize - self.pad_left as isize;
        let lo = (-ix0).clamp(0, self.kw as isize) as usize;
        let hi = (self.w as isize - ix0).clamp(lo as isize, self.kw as isize) as usize;
        (lo, hi, ix0)
    }
}

/// Borrows CPU storage as `&[T]`, or says which operand had the wrong dtype.
fn typed<'a, T: Element>(s: &'a CpuStorage, what: &str) -> Result<&'a [T]> {
    T::unwrap(s).ok_or_else(|| {
        Error::dtype(
            "conv2d",
            format!("{what} is {}, expected {}", s.dtype(), T::DTYPE),
        )
    })
}

/// Forward on CPU storage: `[n, oh, ow, o]` as a flat NHWC vector.
pub fn forward(
    x: &CpuStorage,
    kernel: &CpuStorage,
    bias: Option<&CpuStorage>,
    g: &ConvGeometry,
) -> Result<CpuStorage> {
    fn run<T: Element>(
        x: &CpuStorage,
        k: &CpuStorage,
        b: Option<&CpuStorage>,
        g: &ConvGeometry,
    ) -> Result<CpuStorage> {
        let b = b.map(|b| typed::<T>(b, "bias")).transpose()?;
        let (x, k) = (typed::<T>(x, "input")?, typed::<T>(k, "kernel")?);
        Ok(T::wrap(forward_typed(x, k, b, g, COL_BUDGET_BYTES)))
    }
    match x.dtype() {
        DType::F32 if gemm::avx512_available() => {
            let b = bias.map(|b| typed::<f32>(b, "bias")).transpose()?;
            Ok(CpuStorage::F32(forward_implicit(
                typed::<f32>(x, "input")?,
                typed::<f32>(kernel, "kernel")?,
                b,
                g,
            )))
        }
        DType::F32 => run::<f32>(x, kernel, bias, g),
        DType::F64 => run::<f64>(x, kernel, bias, g),
    }
}

/// Gradients `(dx, dkernel, dbias)`, each computed only when asked for.
pub type ConvGrads = (Option<CpuStorage>, Option<CpuStorage>, Option<CpuStorage>);

/// Backward on CPU storage; `need` = (dx, dkernel, dbias).
pub fn backward(
    x: &CpuStorage,
    kernel: &CpuStorage,
    dy: &CpuStorage,
    g: &ConvGeometry,
    need: (bool, bool, bool),
) -> Result<ConvGrads> {
    fn run<T: Element>(
        x: &CpuStorage,
        k: &CpuStorage,
        dy: &CpuStorage,
        g: &ConvGeometry,
        need: (bool, bool, bool),
    ) -> Result<ConvGrads> {
        let (x, k, dy) = (
            typed::<T>(x, "input")?,
            typed::<T>(k, "kernel")?,
            typed::<T>(dy, "output gradient")?,
        );
        let (dx, dk, db) = backward_typed(x, k, dy, g, need, COL_BUDGET_BYTES);
        Ok((dx.map(T::wrap), dk.map(T::wrap), db.map(T::wrap)))
    }
    match x.dtype() {
        // Stride 1 on AVX-512: dx as an implicit GEMM, the rest as below.
        DType::F32 if need.0 && g.sh == 1 && g.sw == 1 && gemm::avx512_available() => {
            let dx = backward_dx_implicit(
                typed::<f32>(kernel, "kernel")?,
                typed::<f32>(dy, "output gradient")?,
                g,
            );
            let (_, dk, db) = run::<f32>(x, kernel, dy, g, (false, need.1, need.2))?;
            Ok((Some(CpuStorage::F32(dx)), dk, db))
        }
        DType::F32 => run::<f32>(x, kernel, dy, g, need),
        DType::F64 => run::<f64>(x, kernel, dy, g, need),
    }
}

/// Writes the `col` rows of output rows `first..first + count` (an output row
/// `(b, oy)` is `ow` rows of `col`; see the module docs). One rayon task per
/// output row; every element of `col[..count·ow·kh·kw·c]` is written.
fn im2col<T: Element>(x: &[T], g: &ConvGeometry, first: usize, count: usize, col: &mut [T]) {
    let (cw, kwc) = (g.col_width(), g.kw * g.c);
    let image = g.h * g.w * g.c;
    col[..count * g.ow * cw]
        .par_chunks_mut(g.ow * cw)
        .enumerate()
        .for_each(|(r, row)| {
            let (b, oy) = ((first + r) / g.oh, (first + r) % g.oh);
            let img = &x[b * image..(b + 1) * image];
            for (ox, patch) in row.chunks_exact_mut(cw).enumerate() {
                let (lo, hi, ix0) = g.kx_range(ox);
                for (ky, seg) in patch.chunks_exact_mut(kwc).enumerate() {
                    let iy = (oy * g.sh + ky) as isize - g.pad_top as isize;
                    if iy < 0 || iy >= g.h as isize || lo == hi {
                        seg.fill(T::ZERO);
                        continue;
                    }
                    // Along one input row, kernel columns lo..hi are contiguous in NHWC.
                    let start = (iy as usize * g.w + (ix0 + lo as isize) as usize) * g.c;
                    seg[..lo * g.c].fill(T::ZERO);
                    seg[lo * g.c..hi * g.c].copy_from_slice(&img[start..start + (hi - lo) * g.c]);
                    seg[hi * g.c..].fill(T::ZERO);
                }
            }
        });
}

/// Adds `dcol` (output rows `first..first + count`) back onto `dx`. Written
/// as a gather: one rayon task per input row `(b, iy)` of the images these
/// output rows belong to collects every `dcol` entry copied from that row, so
/// tasks never write the same memory. Contributions of output rows outside
/// the chunk are left for the chunk that holds them.
fn col2im<T: Element>(dcol: &[T], g: &ConvGeometry, first: usize, count: usize, dx: &mut [T]) {
    let (cw, kwc) = (g.col_width(), g.kw * g.c);
    let (b_first, b_last) = (first / g.oh, (first + count - 1) / g.oh);
    let image = g.h * g.w * g.c;
    dx[b_first * image..(b_last + 1) * image]
        .par_chunks_mut(g.w * g.c)
        .enumerate()
        .for_each(|(r, dx_row)| {
            let (b, iy) = (b_first + r / g.h, r % g.h);
            for ky in 0..g.kh {
                // Output row oy reads input row iy through kernel row ky iff oy·sh + ky − pt = iy.
                let t = (iy + g.pad_top) as isize - ky as isize;
                if t < 0 || !(t as usize).is_multiple_of(g.sh) || t as usize / g.sh >= g.oh {
                    continue;
                }
                let row = b * g.oh + t as usize / g.sh;
                if row < first || row >= first + count {
                    continue;
                }
                for ox in 0..g.ow {
                    let (lo, hi, ix0) = g.kx_range(ox);
                    if lo == hi {
                        continue;
                    }
                    let src = ((row - first) * g.ow + ox) * cw + ky * kwc;
                    let src = &dcol[src + lo * g.c..src + hi * g.c];
                    let dst = (ix0 + lo as isize) as usize * g.c;
                    for (d, &s) in dx_row[dst..dst + src.len()].iter_mut().zip(src) {
                        *d += s;
                    }
                }
            }
        });
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
    /// of NHWC memory (as in [`im2col`]); the rest is padding, zero.
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

/// The f32 forward on our AVX-512 GEMM: Winograd where it pays
/// ([`winograd::suits`]), else one implicit GEMM, `Y = col · K`:
/// [`forward_direct`] where the receptive fields can be read in place,
/// [`forward_rows`] where each kernel row's part of them can, otherwise
/// [`forward_packed`].
fn forward_implicit(x: &[f32], kernel: &[f32], bias: Option<&[f32]>, g: &ConvGeometry) -> Vec<f32> {
    if winograd::suits(g) {
        winograd::forward(x, kernel, bias, g)
    } else if g.suits_direct() {
        forward_direct(x, kernel, bias, g)
    } else if g.suits_rows() {
        forward_rows(x, kernel, bias, g)
    } else {
        forward_packed(x, kernel, bias, g)
    }
}

/// The implicit GEMM through [`gemm::gemm`], whose packing step reads `col`
/// through [`ReceptiveFields`].
fn forward_packed(x: &[f32], kernel: &[f32], bias: Option<&[f32]>, g: &ConvGeometry) -> Vec<f32> {
    let (cw, o, rows) = (g.col_width(), g.o, g.n * g.oh * g.ow);
    // The bias is written first and the GEMM adds onto it (beta = 1).
    let (mut y, beta) = match bias {
        Some(b) => (b.repeat(rows), 1.0),
        None => (vec![0.0; rows * o], 0.0),
    };
    let cols = ReceptiveFields::new(x, g);
    gemm::gemm(rows, cw, o, 1.0, &cols, kernel, rm(o), beta, &mut y, rm(o));
    y
}

/// The implicit GEMM with no packing of A at all, for convolutions whose
/// windows all lie inside the input and whose receptive field is short
/// ([`ConvGeometry::suits_direct`]: ResNet's 7×7 stem, `kh·kw·c = 147`, on
/// its pre-padded input). There a packed row of A is `kh` copies of
/// `kw·c` floats (21 for the stem), used for only `o / NR` tiles of C (2),
/// and packing cost a third of the time.
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
fn forward_direct(x: &[f32], kernel: &[f32], bias: Option<&[f32]>, g: &ConvGeometry) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.h * g.w * g.c, "conv2d: input size");
    let (o, image, input_row) = (g.o, g.h * g.w * g.c, g.w * g.c);
    let kernel = gemm::PackedB::new(g.col_width(), o, kernel, rm(o));
    let fields = gemm::RowsOfA {
        row_stride: g.sw * g.c,
        runs: g.kh,
        run_len: g.kw * g.c,
        run_stride: input_row,
    };
    // y is written by the tiles alone, so it is never zero-filled first (a
    // pass over 12.8 MB for the stem at batch 4: a tenth of the time).
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
/// There the packed path spends a sixth of its time copying fields into A
/// (each packed tile of A serves only `o / NR = 2` tiles of C).
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
fn forward_rows(x: &[f32], kernel: &[f32], bias: Option<&[f32]>, g: &ConvGeometry) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.h * g.w * g.c, "conv2d: input size");
    let (o, c, run) = (g.o, g.c, g.kw * g.c);
    // B in K blocks of one kernel row: block ky is rows ky·kw·c.. of the
    // [kh·kw·c, o] kernel.
    let kernel = gemm::PackedB::blocked(g.col_width(), o, kernel, rm(o), run);
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
fn backward_dx_implicit(kernel: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    debug_assert!(g.sh == 1 && g.sw == 1);
    let (c, o) = (g.c, g.o);
    // The turned kernel, HWIO with I = o and O = c: [kh, kw, o, c]. Each
    // tap's [c, o] matrix is transposed in 16×16 blocks: a plain loop would
    // walk one of the two (9 MiB for VGG16's block5) at a stride.
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
    let back = g.dx_as_forward();
    if winograd::suits(&back) {
        return winograd::forward(dy, &turned, None, &back);
    }
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
        rm(c),
        0.0,
        &mut dx,
        rm(c),
    );
    dx
}

/// Row-major `[r, c]` as GEMM strides, and its transpose.
fn rm(cols: usize) -> (isize, isize) {
    (cols as isize, 1)
}
fn tr(cols: usize) -> (isize, isize) {
    (1, cols as isize)
}

/// The forward pass on typed slices, with the col buffer bounded by `budget_bytes`.
pub fn forward_typed<T: Element>(
    x: &[T],
    kernel: &[T],
    bias: Option<&[T]>,
    g: &ConvGeometry,
    budget_bytes: usize,
) -> Vec<T> {
    let (cw, o) = (g.col_width(), g.o);
    let rows_per_image = g.oh * g.ow;
    // The bias is written first and the GEMM adds onto it (beta = 1).
    let (mut y, beta) = match bias {
        Some(b) => (b.repeat(g.n * rows_per_image), T::ONE),
        None => (vec![T::ZERO; g.n * rows_per_image * o], T::ZERO),
    };
    if g.is_pointwise() {
        let rows = g.n * rows_per_image;
        T::gemm(
            rows,
            cw,
            o,
            T::ONE,
            x,
            rm(cw),
            kernel,
            rm(o),
            beta,
            &mut y,
            rm(o),
        );
        return y;
    }
    let per = g.forward_rows_per_chunk::<T>(FORWARD_TILE_BYTES, budget_bytes);
    let mut col = scratch::take::<T>(per * g.ow * cw);
    for first in (0..g.n * g.oh).step_by(per) {
        let count = per.min(g.n * g.oh - first);
        let rows = count * g.ow;
        im2col(x, g, first, count, &mut col);
        let y_chunk = &mut y[first * g.ow * o..(first + count) * g.ow * o];
        T::gemm(
            rows,
            cw,
            o,
            T::ONE,
            &col,
            rm(cw),
            kernel,
            rm(o),
            beta,
            y_chunk,
            rm(o),
        );
    }
    scratch::give_back(col);
    y
}

/// `(dx, dkernel, dbias)` as typed vectors, each present only when asked for.
pub type TypedGrads<T> = (Option<Vec<T>>, Option<Vec<T>>, Option<Vec<T>>);

/// The backward pass on typed slices; `need` = (dx, dkernel, dbias).
pub fn backward_typed<T: Element>(
    x: &[T],
    kernel: &[T],
    dy: &[T],
    g: &ConvGeometry,
    (need_dx, need_dk, need_db): (bool, bool, bool),
    budget_bytes: usize,
) -> TypedGrads<T> {
    let (cw, o) = (g.col_width(), g.o);
    let rows_per_image = g.oh * g.ow;
    let image = g.h * g.w * g.c;

    // dbias[co] = Σ over every output pixel of dY[.., co].
    let db = need_db.then(|| {
        let mut acc = vec![T::ZERO; o];
        for row in dy.chunks_exact(o) {
            for (a, &d) in acc.iter_mut().zip(row) {
                *a += d;
            }
        }
        acc
    });
    if !need_dx && !need_dk {
        return (None, None, db);
    }

    let mut dx = need_dx.then(|| vec![T::ZERO; g.n * image]);
    let mut dk = need_dk.then(|| vec![T::ZERO; cw * o]);

    if g.is_pointwise() {
        let rows = g.n * rows_per_image;
        if let Some(dk) = dk.as_mut() {
            T::gemm(
                cw,
                rows,
                o,
                T::ONE,
                x,
                tr(cw),
                dy,
                rm(o),
                T::ZERO,
                dk,
                rm(o),
            );
        }
        if let Some(dx) = dx.as_mut() {
            T::gemm(
                rows,
                o,
                cw,
                T::ONE,
                dy,
                rm(o),
                kernel,
                tr(o),
                T::ZERO,
                dx,
                rm(cw),
            );
        }
        return (dx, dk, db);
    }

    let buffers = need_dx as usize + need_dk as usize;
    let per = g.rows_per_chunk::<T>(budget_bytes, buffers);
    let mut col = if need_dk {
        scratch::take::<T>(per * g.ow * cw)
    } else {
        Vec::new()
    };
    let mut dcol = if need_dx {
        scratch::take::<T>(per * g.ow * cw)
    } else {
        Vec::new()
    };
    for first in (0..g.n * g.oh).step_by(per) {
        let count = per.min(g.n * g.oh - first);
        let rows = count * g.ow;
        let dy_chunk = &dy[first * g.ow * o..(first + count) * g.ow * o];
        if let Some(dk) = dk.as_mut() {
            // dK[cw, o] += colᵀ[cw, rows] · dY[rows, o]
            im2col(x, g, first, count, &mut col);
            let beta = if first == 0 { T::ZERO } else { T::ONE };
            T::gemm(
                cw,
                rows,
                o,
                T::ONE,
                &col,
                tr(cw),
                dy_chunk,
                rm(o),
                beta,
                dk,
                rm(o),
            );
        }
        if let Some(dx) = dx.as_mut() {
            // dcol[rows, cw] = dY[rows, o] · Kᵀ[o, cw], then scattered back onto dx.
            T::gemm(
                rows,
                o,
                cw,
                T::ONE,
                dy_chunk,
                rm(o),
                kernel,
                tr(o),
                T::ZERO,
                &mut dcol,
                rm(cw),
            );
            col2im(&dcol, g, first, count, dx);
        }
    }
    scratch::give_back(col);
    scratch::give_back(dcol);
    (dx, dk, db)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one multiply-add at a time.
    fn naive(x: &[f64], k: &[f64], g: &ConvGeometry) -> Vec<f64> {
        let mut y = vec![0.0; g.n * g.oh * g.ow * g.o];
        for b in 0..g.n {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy = (oy * g.sh + ky) as isize - g.pad_top as isize;
                            let ix = (ox * g.sw + kx) as isize - g.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                continue;
                            }
                            for ci in 0..g.c {
                                let xv =
                                    x[((b * g.h + iy as usize) * g.w + ix as usize) * g.c + ci];
                                for co in 0..g.o {
                                    y[((b * g.oh + oy) * g.ow + ox) * g.o + co] +=
                                        xv * k[((ky * g.kw + kx) * g.c + ci) * g.o + co];
                                }
                            }
                        }
                    }
                }
            }
        }
        y
    }

    fn geometry() -> ConvGeometry {
        // 7×6 input, 3×2 kernel, stride (2, 1), 'same': pads 1/1 rows, 0/1 columns.
        ConvGeometry {
            n: 5,
            h: 7,
            w: 6,
            c: 3,
            kh: 3,
            kw: 2,
            o: 4,
            sh: 2,
            sw: 1,
            oh: 4,
            ow: 6,
            pad_top: 1,
            pad_left: 0,
        }
    }

    fn values(n: usize, seed: u64) -> Vec<f64> {
        (0..n)
            .map(|i| crate::rng::uniform_f64(seed, 0, i as u64) - 0.5)
            .collect()
    }

    /// [`values`] rounded to f32.
    fn f32_values(n: usize, seed: u64) -> Vec<f32> {
        values(n, seed).iter().map(|&v| v as f32).collect()
    }

    /// A stride-1 geometry: input `(h, w, c)`, kernel `(kh, kw, o)`, output
    /// `(oh, ow)` and the padding above and left of the input.
    fn stride_1(
        n: usize,
        (h, w, c): (usize, usize, usize),
        (kh, kw, o): (usize, usize, usize),
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
            sh: 1,
            sw: 1,
            oh,
            ow,
            pad_top,
            pad_left,
        }
    }

    /// `f` run on a rayon pool of `threads` threads.
    fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(f)
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
    /// the definition, the two thread counts against each other bit for
    /// bit, and against the packed path as `packed` says.
    fn check_forward_path(g: &ConvGeometry, seed: u64, path: ForwardPath, packed: AgainstPacked) {
        let x = f32_values(g.n * g.h * g.w * g.c, seed);
        let k = f32_values(g.kh * g.kw * g.c * g.o, seed + 1);
        let bias = f32_values(g.o, seed + 2);
        let want = naive(
            &x.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            &k.iter().map(|&v| v as f64).collect::<Vec<_>>(),
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
        let expected = naive(&x, &k, &g);
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
        let all = (true, true, true);
        let (dx1, dk1, db1) = backward_typed(&x, &k, &dy, &g, all, usize::MAX);
        for budget in [1, three_rows] {
            close(&forward_typed(&x, &k, None, &g, budget), &whole);
            let (dx2, dk2, db2) = backward_typed(&x, &k, &dy, &g, all, budget);
            close(dx2.as_ref().unwrap(), dx1.as_ref().unwrap());
            close(dk2.as_ref().unwrap(), dk1.as_ref().unwrap());
            assert_eq!(db1, db2);
        }
    }

    #[test]
    fn forward_chunks_follow_the_tile_the_kernel_bound_and_the_budget() {
        // VGG16 block1_conv2 at 32 px, batch 32: a col row (output row) is
        // 32 px · 576 values · 4 bytes = 72 KiB.
        let g = ConvGeometry {
            n: 32,
            h: 32,
            w: 32,
            c: 64,
            kh: 3,
            kw: 3,
            o: 64,
            sh: 1,
            sw: 1,
            oh: 32,
            ow: 32,
            pad_top: 1,
            pad_left: 1,
        };
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
    fn implicit_gemm_forward_matches_the_definition() {
        if !gemm::avx512_available() {
            crate::skipped("this CPU has no AVX-512F, the implicit-GEMM forward is not used");
            return;
        }
        let conv =
            |n, (h, w, c), (kh, kw, o), (sh, sw), (oh, ow), (pad_top, pad_left)| ConvGeometry {
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
            };
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
        ];
        for g in cases {
            let x = values(g.n * g.h * g.w * g.c, 4);
            let k = values(g.kh * g.kw * g.c * g.o, 5);
            let bias = values(g.o, 6);
            let want = naive(&x, &k, &g);
            let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<_>>();
            let got = forward_implicit(&f32s(&x), &f32s(&k), Some(&f32s(&bias)), &g);
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
        let valid = |n, (h, w, c), (kh, kw, o), (sh, sw): (usize, usize)| ConvGeometry {
            n,
            h,
            w,
            c,
            kh,
            kw,
            o,
            sh,
            sw,
            oh: (h - kh) / sh + 1,
            ow: (w - kw) / sw + 1,
            pad_top: 0,
            pad_left: 0,
        };
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
        let conv = stride_1;
        // (geometry, how it compares with the packed path: the same values
        // where that path's K blocks are the kernel rows, so that it sums in
        // the same order; a skipped padding row keeps a -0.0 that adding the
        // packed path's +0.0 would turn into +0.0)
        let cases = [
            // VGG16's block1_conv2, small: 'same', 13 columns (a tile of 12
            // and a tile of 1), c = 64 (K = 576: blocks of 192 = kw·c).
            (
                conv(2, (11, 13, 64), (3, 3, 64), (11, 13), (1, 1)),
                AgainstPacked::SameValues,
            ),
            // A partial panel (o = 40) on a wide, short input.
            (
                conv(1, (4, 29, 64), (3, 3, 40), (4, 29), (1, 1)),
                AgainstPacked::SameValues,
            ),
            // No padding at all ('valid', but too deep for forward_direct).
            (
                conv(1, (14, 15, 64), (3, 3, 32), (12, 13), (0, 0)),
                AgainstPacked::SameValues,
            ),
            // c = 48: kw·c = 144, but K = 432 is cut into two blocks of 216
            // by the packed path, so only the definition is compared.
            (
                conv(2, (12, 12, 48), (3, 3, 24), (12, 12), (1, 1)),
                AgainstPacked::OtherOrder,
            ),
            // A 2×2 kernel 'same' (TensorFlow pads bottom and right only),
            // kw·c = 128: the shortest run allowed.
            (
                conv(1, (12, 14, 64), (2, 2, 16), (12, 14), (0, 0)),
                AgainstPacked::OtherOrder,
            ),
        ];
        for (g, packed) in cases {
            assert!(g.suits_rows(), "{g:?}");
            check_forward_path(&g, 20, forward_rows, packed);
        }
        // Strides, short rows, short or long kernel rows and direct-path
        // shapes take the other paths.
        let mut strided = conv(1, (14, 28, 64), (3, 3, 8), (6, 13), (0, 0));
        strided.sh = 2;
        strided.sw = 2;
        let narrow = conv(1, (11, 11, 64), (3, 3, 8), (11, 11), (1, 1)); // ow < MR
        let thin = conv(1, (14, 14, 3), (3, 3, 8), (14, 14), (1, 1)); // kw·c = 9
        let wide = conv(1, (14, 14, 128), (3, 3, 8), (14, 14), (1, 1)); // kw·c = 384 > KC
        let direct = conv(1, (14, 14, 28), (3, 3, 8), (12, 12), (0, 0));
        for g in [strided, narrow, thin, wide, direct] {
            assert!(!g.suits_rows(), "{g:?}");
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
        let conv = stride_1;
        let cases = [
            // 'same' on an even size; c and o not multiples of 16 lanes.
            conv(2, (6, 8, 19), (3, 3, 21), (6, 8), (1, 1)),
            // Odd height and width: the last row and column of tiles are
            // half outside the output.
            conv(1, (7, 5, 17), (3, 3, 33), (7, 5), (1, 1)),
            // 'valid': windows never read padding; odd output 7×5.
            conv(2, (9, 7, 16), (3, 3, 8), (7, 5), (0, 0)),
            // One output pixel.
            conv(3, (3, 3, 5), (3, 3, 3), (1, 1), (0, 0)),
            // 128 channels on a 7×7 map, as ResNet50's conv5 at 224 px (smaller).
            conv(2, (7, 7, 128), (3, 3, 40), (7, 7), (1, 1)),
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
            (conv(8, (14, 14, 512), (3, 3, 512), (14, 14), (1, 1)), true),
            (conv(4, (56, 56, 128), (3, 3, 256), (56, 56), (1, 1)), true),
            (conv(16, (7, 7, 512), (3, 3, 512), (7, 7), (1, 1)), true),
            (conv(4, (14, 14, 256), (3, 3, 256), (14, 14), (1, 1)), true),
            (conv(128, (2, 2, 512), (3, 3, 512), (2, 2), (1, 1)), true),
            // Too few pixels to pay for transforming the kernel.
            (conv(32, (2, 2, 512), (3, 3, 512), (2, 2), (1, 1)), false),
            (conv(4, (7, 7, 512), (3, 3, 512), (7, 7), (1, 1)), false),
            (conv(32, (3, 3, 512), (3, 3, 512), (3, 3), (1, 1)), false),
            (conv(32, (1, 1, 512), (3, 3, 512), (1, 1), (1, 1)), false),
            (
                conv(2, (224, 224, 64), (3, 3, 64), (224, 224), (1, 1)),
                false,
            ),
            (conv(2, (14, 14, 512), (1, 1, 512), (14, 14), (0, 0)), false),
        ] {
            assert_eq!(winograd::suits(&g), chosen, "{g:?}");
        }
        let mut strided = conv(1, (14, 14, 256), (3, 3, 256), (7, 7), (0, 0));
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
        let conv = stride_1;
        let cases = [
            // 'same' 3×3, 'valid' 3×2, 'same' 4×4 (pads 1 above/left, 2 below/right),
            // a window wider than the input, and a 1×1 on a wide channel count.
            conv(2, (7, 6, 5), (3, 3, 33), (7, 6), (1, 1)),
            conv(3, (6, 7, 4), (3, 2, 7), (4, 6), (0, 0)),
            conv(2, (5, 6, 3), (4, 4, 9), (5, 6), (1, 1)),
            conv(1, (2, 3, 4), (5, 5, 3), (2, 3), (2, 2)),
            conv(2, (3, 3, 300), (1, 1, 20), (3, 3), (0, 0)),
            // 'same' 3×3 with 128 output channels: dx through the Winograd forward.
            conv(2, (24, 23, 8), (3, 3, 128), (24, 23), (1, 1)),
        ];
        let winograd_dx = |g: &ConvGeometry| winograd::suits(&g.dx_as_forward());
        assert!(winograd_dx(&cases[5]) && !winograd_dx(&cases[0]));
        for g in cases {
            let x = values(g.n * g.h * g.w * g.c, 7);
            let k = values(g.kh * g.kw * g.c * g.o, 8);
            let dy = values(g.n * g.oh * g.ow * g.o, 9);
            let (want, _, _) = backward_typed(&x, &k, &dy, &g, (true, false, false), usize::MAX);
            let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<_>>();
            let got = backward_dx_implicit(&f32s(&k), &f32s(&dy), &g);
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
        let (dx, dk, db) = backward_typed(&x, &k, &dy, &g, (false, true, false), usize::MAX);
        assert!(dx.is_none() && dk.is_some() && db.is_none());
    }
}
