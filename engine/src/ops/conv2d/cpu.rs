//! CPU conv2d, in reading order: [`reference()`], the definition as seven
//! plain loops, which every path is checked against (`tests.rs`); then
//! im2col + GEMM, forward and backward, the path every dtype and CPU can
//! take; last, [`choose`], which picks among it and the fast paths beside
//! it (`implicit_gemm.rs`, `winograd.rs`) in one table.
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
//! Threading has one level: the GEMM threads itself (over the rayon pool),
//! and the im2col/col2im loops between GEMMs use rayon. No GEMM runs inside a
//! rayon task. The output is processed in chunks of output rows `(b, oy)` (a
//! chunk may hold many images, or part of one) so that the `col` buffers stay
//! under [`COL_BUDGET_BYTES`] even at 224 px.
//!
//! Forward chunks are much smaller than that bound: about
//! [`FORWARD_TILE_BYTES`] of `col`, so that the GEMM reads `col` back from
//! cache right after im2col wrote it. On a narrow layer (64 output channels)
//! streaming a whole `col` through memory and back costs more than the
//! GEMM's arithmetic. A chunk is never so small that re-packing the kernel
//! (the GEMM's `B`, `kh·kw·c × o`, copied once per GEMM call) would outweigh
//! that: it has at least [`MIN_ROWS_PER_OUT_CHANNEL`]`·o` pixels.

use super::algorithm::Direction;
use super::{implicit_gemm, scratch, winograd};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::gemm;
use crate::ops::relu6::{relu6_in_place, relu6_value};
use crate::tensor::{CpuStorage, DType};
use rayon::prelude::*;

/// The definition of conv2d (`mod.rs`), one multiply-add at a time, in f64:
/// for each output `y[b, oy, ox, co]`, the bias (or 0) plus every product of
/// a kernel tap `K[ky, kx, ci, co]` with the input pixel under it, taps over
/// the padding reading 0. [`super::reference`] is this on tensors. Slow, and
/// meant to be: it is what the fast paths are checked against.
pub fn reference(x: &[f64], kernel: &[f64], bias: Option<&[f64]>, g: &ConvGeometry) -> Vec<f64> {
    let mut y = Vec::with_capacity(g.n * g.oh * g.ow * g.o);
    for b in 0..g.n {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for co in 0..g.o {
                    let mut sum = bias.map_or(0.0, |bias| bias[co]);
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy = (oy * g.sh + ky).checked_sub(g.pad_top);
                            let ix = (ox * g.sw + kx).checked_sub(g.pad_left);
                            let (Some(iy), Some(ix)) = (iy, ix) else {
                                continue; // above or left of the input
                            };
                            if iy >= g.h || ix >= g.w {
                                continue; // below or right of it
                            }
                            for ci in 0..g.c {
                                sum += x[((b * g.h + iy) * g.w + ix) * g.c + ci]
                                    * kernel[((ky * g.kw + kx) * g.c + ci) * g.o + co];
                            }
                        }
                    }
                    y.push(sum);
                }
            }
        }
    }
    y
}

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
    pub(super) fn col_width(&self) -> usize {
        self.kh * self.kw * self.c
    }

    /// 1×1, stride 1, no padding: `x` as `[n·h·w, c]` is already `col`.
    pub(super) fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.oh == self.h
            && self.ow == self.w
    }

    /// Output rows `(b, oy)` per chunk, so that `buffers` col-sized buffers fit
    /// the budget (at least one row: `ow` pixels).
    pub(super) fn rows_per_chunk<T>(&self, budget_bytes: usize, buffers: usize) -> usize {
        let per_row = self.ow * self.col_width() * std::mem::size_of::<T>() * buffers;
        (budget_bytes / per_row.max(1)).clamp(1, (self.n * self.oh).max(1))
    }

    /// Output rows per forward chunk: about `tile_bytes` of `col`, but at
    /// least [`MIN_ROWS_PER_OUT_CHANNEL`]`·o` pixels, and never more than
    /// `budget_bytes` allows (see the module docs).
    pub(super) fn forward_rows_per_chunk<T>(
        &self,
        tile_bytes: usize,
        budget_bytes: usize,
    ) -> usize {
        let by_tile = self.rows_per_chunk::<T>(tile_bytes, 1);
        let by_kernel = (MIN_ROWS_PER_OUT_CHANNEL * self.o).div_ceil(self.ow);
        by_tile
            .max(by_kernel)
            .min(self.rows_per_chunk::<T>(budget_bytes, 1))
    }

    /// Columns `kx` of the kernel that land inside the input for output
    /// column `ox`, as the half-open range `lo..hi`, and the input column of `kx = 0`.
    pub(super) fn kx_range(&self, ox: usize) -> (usize, usize, isize) {
        let ix0 = (ox * self.sw) as isize - self.pad_left as isize;
        let lo = (-ix0).clamp(0, self.kw as isize) as usize;
        let hi = (self.w as isize - ix0).clamp(lo as isize, self.kw as isize) as usize;
        (lo, hi, ix0)
    }
}

/// Upper bound on the im2col scratch memory of one conv2d call (forward:
/// `col`; backward: `col` and `dcol` together). Chunks are whole output rows
/// `(b, oy)`, so even one 224-px image is split; a single output row always fits.
pub const COL_BUDGET_BYTES: usize = 64 << 20;

/// Target size of one forward `col` chunk: half of the 2 MiB L2 cache per
/// core of the machine it was tuned on (the GEMM's packed blocks use the
/// rest). On VGG16/ResNet50 shapes chunks of 0.5-2 MiB run alike; 128 KiB
/// and 64 MiB are clearly slower.
const FORWARD_TILE_BYTES: usize = 1 << 20;

/// Lower bound on the pixels (GEMM rows) of one forward chunk, per output
/// channel. Each GEMM call packs the whole kernel (`kh·kw·c·o` values) while
/// im2col copies `rows·kh·kw·c`, so with `rows >= 4·o` packing the kernel costs
/// at most a quarter of the im2col copy. Deep layers (512 channels: a 9 MB
/// kernel) get large chunks from this bound; 1 MiB chunks would re-pack
/// their kernel far too often.
const MIN_ROWS_PER_OUT_CHANNEL: usize = 4;

/// Which gradients the tape asks for: each is computed only if needed (a
/// frozen first layer pays for neither `dx` nor `dkernel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needed {
    /// The input's gradient.
    pub dx: bool,
    /// The kernel's gradient.
    pub dkernel: bool,
    /// The bias's gradient (false when there is no bias).
    pub dbias: bool,
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
            row_major(cw),
            kernel,
            row_major(o),
            beta,
            &mut y,
            row_major(o),
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
            row_major(cw),
            kernel,
            row_major(o),
            beta,
            y_chunk,
            row_major(o),
        );
    }
    scratch::give_back(col);
    y
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

/// `(dx, dkernel, dbias)` as typed vectors, each present only when asked for.
pub type TypedGrads<T> = (Option<Vec<T>>, Option<Vec<T>>, Option<Vec<T>>);

/// The backward pass on typed slices: the gradients that `need` asks for.
pub fn backward_typed<T: Element>(
    x: &[T],
    kernel: &[T],
    dy: &[T],
    g: &ConvGeometry,
    Needed {
        dx: need_dx,
        dkernel: need_dk,
        dbias: need_db,
    }: Needed,
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
                transposed(cw),
                dy,
                row_major(o),
                T::ZERO,
                dk,
                row_major(o),
            );
        }
        if let Some(dx) = dx.as_mut() {
            T::gemm(
                rows,
                o,
                cw,
                T::ONE,
                dy,
                row_major(o),
                kernel,
                transposed(o),
                T::ZERO,
                dx,
                row_major(cw),
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
                transposed(cw),
                dy_chunk,
                row_major(o),
                beta,
                dk,
                row_major(o),
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
                row_major(o),
                kernel,
                transposed(o),
                T::ZERO,
                &mut dcol,
                row_major(cw),
            );
            col2im(&dcol, g, first, count, dx);
        }
    }
    scratch::give_back(col);
    scratch::give_back(dcol);
    (dx, dk, db)
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

/// How the CPU computes one direction of one conv2d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Path {
    /// im2col + GEMM, col2im for `dx` ([`forward_typed`], [`backward_typed`]).
    Im2col,
    /// Winograd's F(2×2, 3×3) over the same GEMM (`winograd.rs`).
    Winograd,
    /// Implicit GEMM reading the receptive fields in place (`forward_direct`).
    Direct,
    /// Implicit GEMM one kernel row at a time (`forward_rows`).
    Rows,
    /// Implicit GEMM whose packing step copies the receptive fields
    /// (`forward_packed`; for `dx`, `backward_dx`).
    Packed,
}

/// The CPU path of one direction of a conv2d of geometry `g`: the first
/// row that matches decides. The fast paths are f32 only, on CPUs with
/// AVX-512F ("fast" below); the layers named take the path when the model
/// runs in f32 on such a CPU (at 224 px, batch 1, unless said), and
/// `tests.rs` (`the_path_table_names_the_right_layers`) checks each one.
///
/// | direction | condition | path | Keras layers that take it |
/// |---|---|---|---|
/// | any | f64, or no AVX-512F | `Im2col` (1×1 stride 1 unpadded: `x` is `col`) | all |
/// | forward | 3×3 stride 1, `c ≥ 128`, enough pixels ([`winograd::suits`]) | `Winograd` | VGG16 block2_conv2 to block5_conv3, ResNet50 conv3 to conv5 `_2_conv`; not on few pixels (block5 at batch 1, or at 32 px below batch 128) |
/// | forward | no window reads padding, `ow ≥ MR`, `kh·kw·c ≤ KC`, not 1×1 stride 1 ([`ConvGeometry::suits_direct`]) | `Direct` | ResNet50 conv1_conv (7×7/2 after conv1_pad); conv3_block1_0_conv and `_1_conv` (1×1/2 on 256 channels) |
/// | forward | stride 1, `kh > 1`, `128 ≤ kw·c ≤ KC`, `ow ≥ MR` ([`ConvGeometry::suits_rows`]) | `Rows` | the 64-channel 3×3s: VGG16 block1_conv2 and block2_conv1, ResNet50 conv2 `_2_conv` (at 32 px its 8-wide output is below `MR`: `Packed`) |
/// | forward | any other | `Packed` | VGG16 block1_conv1; the stride-1 1×1s (ResNet50 `_0/_1/_3_conv`, MobileNet `conv_pw_*`, the expand and project convs of MobileNetV2 and EfficientNet-Lite); 1×1/2 on more than 256 channels; the 3×3/2 'same' stems of MobileNet, MobileNetV2, EfficientNet-Lite; 3×3s on too few pixels for `Winograd` |
/// | dx | stride other than 1 | `Im2col` | ResNet50 conv1_conv and the 1×1/2s, the 3×3/2 stems |
/// | dx | 3×3 with `o ≥ 128`, enough pixels (`Winograd` for [`ConvGeometry::dx_as_forward`]) | `Winograd` | VGG16 block2_conv1 to block5_conv3, ResNet50 conv3 to conv5 `_2_conv` |
/// | dx | any other | `Packed` (`backward_dx`) | VGG16 block1_conv2, ResNet50 conv2 `_2_conv`, every stride-1 1×1 |
/// | dkernel | always | `Im2col` | all |
pub(super) fn choose(direction: Direction, dtype: DType, g: &ConvGeometry) -> Path {
    let fast = dtype == DType::F32 && gemm::avx512_available();
    match direction {
        _ if !fast => Path::Im2col,
        Direction::Forward if winograd::suits(g) => Path::Winograd,
        Direction::Forward if g.suits_direct() => Path::Direct,
        Direction::Forward if g.suits_rows() => Path::Rows,
        Direction::Forward => Path::Packed,
        Direction::BackwardData if g.sh != 1 || g.sw != 1 => Path::Im2col,
        Direction::BackwardData if winograd::suits(&g.dx_as_forward()) => Path::Winograd,
        Direction::BackwardData => Path::Packed,
        Direction::BackwardFilter => Path::Im2col,
    }
}

/// Forward on CPU storage, by the [`choose`]n path: `[n, oh, ow, o]` as a
/// flat NHWC vector.
pub fn forward(
    x: &CpuStorage,
    kernel: &CpuStorage,
    bias: Option<&CpuStorage>,
    g: &ConvGeometry,
) -> Result<CpuStorage> {
    fn im2col_forward<T: Element>(
        x: &CpuStorage,
        k: &CpuStorage,
        b: Option<&CpuStorage>,
        g: &ConvGeometry,
    ) -> Result<CpuStorage> {
        let b = b.map(|b| typed::<T>(b, "bias")).transpose()?;
        let (x, k) = (typed::<T>(x, "input")?, typed::<T>(k, "kernel")?);
        Ok(T::wrap(forward_typed(x, k, b, g, COL_BUDGET_BYTES)))
    }
    type Fast = fn(&[f32], &[f32], Option<&[f32]>, &ConvGeometry) -> Vec<f32>;
    let fast: Fast = match choose(Direction::Forward, x.dtype(), g) {
        Path::Im2col => {
            return match x.dtype() {
                DType::F32 => im2col_forward::<f32>(x, kernel, bias, g),
                DType::F64 => im2col_forward::<f64>(x, kernel, bias, g),
            }
        }
        Path::Winograd => winograd::forward,
        Path::Direct => implicit_gemm::forward_direct,
        Path::Rows => implicit_gemm::forward_rows,
        Path::Packed => implicit_gemm::forward_packed,
    };
    let b = bias.map(|b| typed::<f32>(b, "bias")).transpose()?;
    let (x, k) = (typed::<f32>(x, "input")?, typed::<f32>(kernel, "kernel")?);
    Ok(CpuStorage::F32(fast(x, k, b, g)))
}

/// `relu6(forward)` in f32 (`super::conv2d_relu6`): the `Packed` path
/// clamps each row of its output as its GEMM finishes it; the others clamp
/// their finished output. Bit for bit what the two ops give.
pub fn forward_relu6(
    x: &[f32],
    kernel: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
) -> Vec<f32> {
    let mut y = match choose(Direction::Forward, DType::F32, g) {
        Path::Packed => {
            let finish =
                |_: usize, part: &mut [f32]| part.iter_mut().for_each(|v| *v = relu6_value(*v));
            return implicit_gemm::forward_packed_then(x, kernel, bias, g, Some(&finish));
        }
        Path::Im2col => forward_typed(x, kernel, bias, g, COL_BUDGET_BYTES),
        Path::Winograd => winograd::forward(x, kernel, bias, g),
        Path::Direct => implicit_gemm::forward_direct(x, kernel, bias, g),
        Path::Rows => implicit_gemm::forward_rows(x, kernel, bias, g),
    };
    relu6_in_place(&mut y);
    y
}

/// Gradients `(dx, dkernel, dbias)`, each computed only when asked for.
pub type ConvGrads = (Option<CpuStorage>, Option<CpuStorage>, Option<CpuStorage>);

/// Backward on CPU storage, by the [`choose`]n paths: the gradients that
/// `need` asks for.
pub fn backward(
    x: &CpuStorage,
    kernel: &CpuStorage,
    dy: &CpuStorage,
    g: &ConvGeometry,
    need: Needed,
) -> Result<ConvGrads> {
    fn im2col_backward<T: Element>(
        x: &CpuStorage,
        k: &CpuStorage,
        dy: &CpuStorage,
        g: &ConvGeometry,
        need: Needed,
    ) -> Result<ConvGrads> {
        let (x, k, dy) = (
            typed::<T>(x, "input")?,
            typed::<T>(k, "kernel")?,
            typed::<T>(dy, "output gradient")?,
        );
        let (dx, dk, db) = backward_typed(x, k, dy, g, need, COL_BUDGET_BYTES);
        Ok((dx.map(T::wrap), dk.map(T::wrap), db.map(T::wrap)))
    }
    type FastDx = fn(&[f32], &[f32], &ConvGeometry) -> Vec<f32>;
    let fast_dx: Option<FastDx> = match choose(Direction::BackwardData, x.dtype(), g) {
        _ if !need.dx => None,
        Path::Winograd => Some(implicit_gemm::backward_dx_winograd),
        Path::Packed => Some(implicit_gemm::backward_dx),
        Path::Im2col | Path::Direct | Path::Rows => None,
    };
    match (x.dtype(), fast_dx) {
        // dx by its fast path, dkernel and dbias as below.
        (DType::F32, Some(fast_dx)) => {
            let dx = fast_dx(
                typed::<f32>(kernel, "kernel")?,
                typed::<f32>(dy, "output gradient")?,
                g,
            );
            let rest = Needed { dx: false, ..need };
            let (_, dk, db) = im2col_backward::<f32>(x, kernel, dy, g, rest)?;
            Ok((Some(CpuStorage::F32(dx)), dk, db))
        }
        (DType::F32, _) => im2col_backward::<f32>(x, kernel, dy, g, need),
        (DType::F64, _) => im2col_backward::<f64>(x, kernel, dy, g, need),
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

/// GEMM strides (row stride, column stride) of a row-major matrix with
/// `cols` columns.
pub(super) fn row_major(cols: usize) -> (isize, isize) {
    (cols as isize, 1)
}

/// GEMM strides that read a row-major matrix with `cols` columns as its
/// transpose.
fn transposed(cols: usize) -> (isize, isize) {
    (1, cols as isize)
}
