//! The fast f32 path of the CPU depthwise convolution: direct loops
//! vectorised along the channel axis, parallel over rows with rayon.
//!
//! In NHWC, one pixel's channels are contiguous, and so are one kernel tap's
//! `K[ky, kx, .., ..]` (`c·m` values, in output-channel order). So for
//! `m = 1` every step of the convolution is a multiply-add of two rows of `c`
//! floats into a third:
//!
//! ```text
//! forward:  y[b, oy, ox, :]  += x[b, iy, ix, :]   · K[ky, kx, :]    for each tap (ky, kx) inside the input
//! dx:       dx[b, iy, ix, :] += dy[b, oy, ox, :]  · K[ky, kx, :]    for each (oy, ky), (ox, kx) that reads (iy, ix)
//! dK:       dK[ky, kx, :]    += x[b, iy, ix, :]   · dy[b, oy, ox, :]
//! ```
//!
//! Each output row (of `y`, `dx`, or one tap of `dK`) is a sum of such
//! products over a list of terms: the window's taps, or the output pixels
//! that use a tap. [`sum_of_products`] sums up to 64 channels at a time over
//! the whole list in registers, in SIMD loops the compiler builds for
//! AVX-512 where the CPU has it ([`vectorised`]).
//!
//! A product of two rows loaded from memory takes two loads per multiply
//! and add, and the CPU issues about one vector load per cycle: the loads,
//! not the arithmetic, would set the pace. So outputs that share one of the
//! two rows are summed side by side, one load of the shared row serving all
//! of them (the blocking of [`sum_of_products`]):
//!
//! ```text
//! forward:  PIXELS neighbouring output pixels share each kernel tap K[ky, kx, :] (stride 1)
//! dx:       PIXELS input pixels sw columns apart share each kernel tap
//! dK:       the 9 taps of a 3×3 window share each output pixel's dy[b, oy, ox, :]
//! ```
//!
//! 3×3 kernels with `m = 1` (MobileNet's and MobileNetV2's layers) go
//! further on CPUs with AVX-512F ([`row_3x3`](rows::row_3x3): the forward at strides 1
//! and 2, and dx at stride 1, where it is a forward of `dy` with the
//! kernel turned round): a whole row is computed one block of 16 channels at a time,
//! with the block's kernel taps held in registers and the window's inputs
//! sliding along the row with the pixel, so that each input vector is
//! loaded once per row, and every pixel is written, not added to, with
//! no zeroing first. In larger layers ([`PIXELS_ABOVE`]), the forward's
//! [`pixels_3x3`](rows::pixels_3x3) writes the row pixel by pixel
//! instead, reading the input in its order in memory. Their dK sums the inner pixels the same way
//! ([`dk_3x3`]: the nine taps' sums in registers, the window sliding along
//! each row). The stride-1 forward of 5-wide kernels
//! (EfficientNet-Lite's 5×5) takes [`window_rows`]: `WIDE_PIXELS`
//! neighbouring output pixels of a row also share their input pixels, each
//! loaded once per window row for all the taps that read it.
//!
//! Only where the border cuts no window do the outputs have the same list
//! of terms; border pixels are summed one at a time. With `m > 1` the input
//! value of channel `ci` multiplies `m` consecutive kernel values
//! ([`mul_add_spread`], [`mul_add_grouped`]), one term at a time.
//!
//! Forward and dx sum in the order of the reference in `cpu.rs` (taps in
//! ascending `(ky, kx)`, from zero, the bias last), each product added by
//! one fused multiply-add (`f32::mul_add`, or the FMA intrinsics), as the
//! reference adds it, so they equal it bit for bit, on any number of
//! threads. A fused multiply-add is one instruction where a separate
//! multiply and add are two, and the 3×3 forward is bound by its
//! arithmetic as much as by memory. Forward is split over output rows
//! `(b, oy)`, dx over input rows `(b, iy)`: each task writes its own rows.
//! dK sums over every output pixel, so each block of output rows
//! ([`PIXELS_PER_PARTIAL`]) adds into its own partial dK (its inner pixels
//! first, then the border's), and the partials are summed in order
//! afterwards: the result depends on the geometry only, not on the thread
//! count, and differs from the reference's single running sum only by
//! rounding.
//!
//! The files: this one holds the three entry points ([`forward`], [`dx`],
//! [`dkernel`]) and the generic loops; `rows.rs` the whole-row AVX-512
//! kernels ([`row_3x3`](rows::row_3x3), [`pixels_3x3`](rows::pixels_3x3), [`window_rows`], [`dk_3x3`]); `sums.rs` the sums of products
//! over channels and the output rows they fill.

#[cfg(target_arch = "x86_64")]
mod rows;
mod sums;

use super::cpu::Geometry;
use crate::ops::relu6::relu6_value;
use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use rows::{dk_3x3, dx_3x3, forward_3x3, row_3x3_applies, window_rows};
use std::ops::Range;
use sums::{
    full_range, mul_add_grouped, mul_add_spread, prefetch, sum_of_products, vectorised, zeroed_rows,
};

/// Output pixels per partial dK, at least: whole output rows `(b, oy)`, as
/// many as reach this count (2 rows of MobileNetV2's 56-pixel rows, 8 of
/// its 14-pixel rows). Set by the geometry alone, so that the sum's
/// grouping (and its rounding) never depends on the machine. Each tap of a
/// partial reads the block's rows of `x` and `dy` again, so they should
/// stay in the L2 cache (two rows of the 112×112×96 stride-2 layer: dy 43
/// KB, x 215 KB); and each partial costs `kh·kw·c·m` adds at the end, which
/// dominate when a partial covers few pixels (two rows of the 7×7×960
/// layer). This count balances the two.
const PIXELS_PER_PARTIAL: usize = 100;

/// Pixels that forward and dx sum side by side (see [`sum_of_products`]).
const PIXELS: usize = 4;

/// Pixels of one output row that the forward's window-row kernel sums side
/// by side (see [`window_rows`]); the inner pixels of a row go in groups of
/// this many, then of half as many, the last group overlapping the one
/// before. Rows with fewer inner pixels than this do not take it: the
/// overlap would redo too many. Nor do layers whose operands stream from
/// memory (above [`PREFETCH_ABOVE`]), where the groups of [`PIXELS`] with
/// their prefetching were as fast or faster.
const WIDE_PIXELS: usize = 8;

/// How many pixels ahead of a group forward and dx prefetch the rows they
/// read ([`prefetch`]), in layers whose operands exceed [`PREFETCH_ABOVE`]
/// bytes: that helps the layers that stream from memory (MobileNetV2's
/// 56×56×144 at batch 8, 29 MB) and slows the ones that stay in the caches
/// (28×28×192 and smaller, 9.6 MB or less), which therefore do not prefetch.
const PREFETCH_AHEAD: usize = 8;

/// See [`PREFETCH_AHEAD`].
const PREFETCH_ABOVE: usize = 16 << 20;

/// The operand bytes (input and output) above which the 3×3 forward with
/// `m = 1` goes pixel by pixel ([`pixels_3x3`](rows::pixels_3x3)) rather
/// than one block of channels at a time ([`row_3x3`](rows::row_3x3)). On
/// an AVX-512 Xeon, at MobileNetV2's layers with batch 8, pixel by pixel
/// was the faster for 112×112×96 at stride 2 (48 MB), 56×56×144 (29 MB)
/// and 28×28×192 (9.6 MB), and as fast or slower for 14×14×576 (7.2 MB)
/// and the smaller layers, whose rows stay in the caches.
pub(super) const PIXELS_ABOVE: usize = 8 << 20;

/// `y` as `[n, oh, ow, c·m]`, one rayon task per output row: by
/// [`row_3x3`](rows::row_3x3) or [`pixels_3x3`](rows::pixels_3x3) where they apply
/// ([`row_3x3_applies`]), otherwise as follows.
///
/// Where no window is cut by the left or right border, neighbouring output
/// pixels have the same taps, their input pixels `sw` columns apart. At
/// stride 1 with `m = 1`, [`WIDE_PIXELS`] of them are summed by
/// [`window_rows`] (5-wide kernels, on CPUs with AVX-512F, in
/// layers that stay in the caches), or [`PIXELS`] by [`sum_of_products`]
/// (others), one load of each kernel tap serving all of them. Pixels at the border, every pixel when
/// `m > 1`, and every pixel at larger strides, are summed one at a time: at
/// stride 2 (MobileNetV2's 112×112×96 layer, whose 38.5 MB input streams
/// from memory) both kinds of groups were slower than single pixels.
///
/// With `relu6`, each finished row is clamped to `[0, 6]` while it is in
/// cache (`super::depthwise_conv2d_relu6`).
pub fn forward(x: &[f32], k: &[f32], bias: Option<&[f32]>, g: &Geometry, relu6: bool) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if row_3x3_applies(g) {
        return forward_3x3(x, k, bias, g, relu6);
    }
    let cm = g.cm();
    let image = g.h * g.w * g.c;
    let full = full_range(g.ow, |ox| (0..g.kw).all(|kx| g.input_col(ox, kx).is_some()));
    let prefetching = 4 * (x.len() + g.n * g.oh * g.ow * cm) > PREFETCH_ABOVE;
    // Whether the window-row kernel takes the inner pixels.
    let wide = g.m == 1
        && g.sw == 1
        && g.kw == 5
        && full.len() >= WIDE_PIXELS
        && !prefetching
        && crate::gemm::avx512_available();
    zeroed_rows(g.n * g.oh, g.ow * cm, |row, out| {
        let (b, oy) = (row / g.oh, row % g.oh);
        let x = &x[b * image..(b + 1) * image];
        let mut taps = Vec::with_capacity(g.kh * g.kw);
        // (offset of the input row, offset of the kernel row) per window row inside the input.
        let window: Vec<(usize, usize)> = (0..g.kh)
            .filter_map(|ky| {
                g.input_row(oy, ky)
                    .map(|iy| (iy * g.w * g.c, ky * g.kw * cm))
            })
            .collect();
        vectorised(
            #[inline(always)]
            || {
                let mut ox = 0;
                while ox < g.ow {
                    #[cfg(target_arch = "x86_64")]
                    if wide && full.contains(&ox) {
                        // SAFETY: `wide` only on a CPU with AVX-512F.
                        ox = unsafe { wide_group(out, x, ox, &full, g, &window, k, bias) };
                        continue;
                    }
                    // (offset of the input pixel, offset of the kernel tap) per tap inside the input.
                    taps.clear();
                    for ky in 0..g.kh {
                        let Some(iy) = g.input_row(oy, ky) else {
                            continue;
                        };
                        for kx in 0..g.kw {
                            if let Some(ix) = g.input_col(ox, kx) {
                                taps.push(((iy * g.w + ix) * g.c, (ky * g.kw + kx) * cm));
                            }
                        }
                    }
                    let grouped = g.m == 1 && g.sw == 1 && full.contains(&ox);
                    let pixels = if grouped && ox + PIXELS <= full.end {
                        let outs = std::array::from_fn(|p| (ox + p) * cm);
                        // At stride 1, input pixels one column apart.
                        let steps = std::array::from_fn(|p| p * g.c);
                        // The window's last row is new to this output row
                        // (the rows above were read for the one before):
                        // start loading it a few groups ahead.
                        if let (true, Some(&(last, _))) = (prefetching, taps.last()) {
                            let ahead = last + (PREFETCH_AHEAD + 1) * g.c;
                            prefetch(x, ahead..ahead + PIXELS * g.c);
                        }
                        sum_of_products::<PIXELS>(out, outs, cm, x, steps, k, &taps);
                        PIXELS
                    } else if g.m == 1 {
                        sum_of_products::<1>(out, [ox * cm], cm, x, [0], k, &taps);
                        1
                    } else {
                        let acc = &mut out[ox * cm..(ox + 1) * cm];
                        for &(xi, ki) in &taps {
                            mul_add_spread(acc, &x[xi..][..g.c], &k[ki..][..cm], g.m);
                        }
                        1
                    };
                    if let Some(bias) = bias {
                        for acc in out[ox * cm..(ox + pixels) * cm].chunks_exact_mut(cm) {
                            for (a, &b) in acc.iter_mut().zip(bias) {
                                *a += b;
                            }
                        }
                    }
                    ox += pixels;
                }
                if relu6 {
                    for v in out.iter_mut() {
                        *v = relu6_value(*v);
                    }
                }
            },
        )
    })
}

/// The inner pixels of [`forward`]'s row from `ox` in one group of
/// [`window_rows`]: [`WIDE_PIXELS`], or half as many near the end of
/// `full`, where the last group ends, computing some pixels of the group
/// before again (to the same bits: the groups write their pixels, they do
/// not add). Returns the pixel after the group.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn wide_group(
    out: &mut [f32],
    x: &[f32],
    ox: usize,
    full: &Range<usize>,
    g: &Geometry,
    window: &[(usize, usize)],
    k: &[f32],
    bias: Option<&[f32]>,
) -> usize {
    const HALF: usize = WIDE_PIXELS / 2;
    let cm = g.cm();
    let p = if full.end - ox >= WIDE_PIXELS {
        WIDE_PIXELS
    } else {
        HALF
    };
    let start = ox.min(full.end - p);
    let out = &mut out[start * cm..(start + p) * cm];
    let x = &x[(start - g.pad_left) * g.c..];
    // SAFETY: the caller checked for AVX-512F.
    unsafe {
        match p {
            WIDE_PIXELS => window_rows::<WIDE_PIXELS, 5, 12>(out, x, g.c, window, k, bias),
            _ => window_rows::<HALF, 5, 8>(out, x, g.c, window, k, bias),
        }
    }
    start + p
}

/// `dx` as `[n, h, w, c]`, one rayon task per input row: a gather over the
/// output pixels whose windows read each input pixel. At stride 1, where
/// [`row_3x3_applies`], each row is one [`row_3x3`](rows::row_3x3) ([`dx_3x3`]); otherwise
/// as follows.
///
/// Input columns `ix, ix + sw, ix + 2·sw, ..` read the same kernel taps of
/// output columns `ox, ox + 1, ox + 2, ..` where no window is cut by the
/// border: [`PIXELS`] of them are summed together, sharing each tap's load.
/// So the columns are visited by their remainder modulo `sw`: `0, sw, 2·sw,
/// ..`, then `1, 1 + sw, ..`, and so on.
pub fn dx(k: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if row_3x3_applies(g) && g.sw == 1 {
        return dx_3x3(k, dy, g);
    }
    let cm = g.cm();
    // The (kx, ox) pairs whose window column reads input column ix, per ix:
    // the same for every row, and found once (each costs a division by the stride).
    let col_taps: Vec<Vec<(usize, usize)>> = (0..g.w)
        .map(|ix| {
            (0..g.kw)
                .filter_map(|kx| g.output_col(ix, kx).map(|ox| (kx, ox)))
                .collect()
        })
        .collect();
    // Whether input column ix + p·sw reads the taps of ix, p output columns on.
    let shifted = |ix: usize, p: usize| {
        let (first, other) = (&col_taps[ix], col_taps.get(ix + p * g.sw));
        other.is_some_and(|other| {
            other.len() == first.len()
                && first
                    .iter()
                    .zip(other)
                    .all(|(&(kx, ox), &o)| o == (kx, ox + p))
        })
    };
    let prefetching = 4 * (dy.len() + g.n * g.h * g.w * g.c) > PREFETCH_ABOVE;
    zeroed_rows(g.n * g.h, g.w * g.c, |row, out| {
        let (b, iy) = (row / g.h, row % g.h);
        let dy = &dy[b * g.oh * g.ow * cm..(b + 1) * g.oh * g.ow * cm];
        let row_taps: Vec<(usize, usize)> = (0..g.kh)
            .filter_map(|ky| g.output_row(iy, ky).map(|oy| (ky, oy)))
            .collect();
        let mut taps = Vec::with_capacity(g.kh * g.kw);
        vectorised(
            #[inline(always)]
            || {
                for first in 0..g.sw.min(g.w) {
                    let mut ix = first;
                    while ix < g.w {
                        // (offset of the output pixel's gradient, offset of the kernel tap).
                        taps.clear();
                        for &(ky, oy) in &row_taps {
                            for &(kx, ox) in &col_taps[ix] {
                                taps.push(((oy * g.ow + ox) * cm, (ky * g.kw + kx) * cm));
                            }
                        }
                        let pixels = if g.m == 1 && (1..PIXELS).all(|p| shifted(ix, p)) {
                            let outs = std::array::from_fn(|p| (ix + p * g.sw) * g.c);
                            let steps = std::array::from_fn(|p| p * cm);
                            // The first tap's row of dy (the lowest output row
                            // that reads this input row) is new to this row.
                            if let (true, Some(&(first, _))) = (prefetching, taps.first()) {
                                let ahead = first + (PREFETCH_AHEAD + 1) * cm;
                                prefetch(dy, ahead..ahead + PIXELS * cm);
                            }
                            sum_of_products::<PIXELS>(out, outs, g.c, dy, steps, k, &taps);
                            PIXELS
                        } else if g.m == 1 {
                            sum_of_products::<1>(out, [ix * g.c], g.c, dy, [0], k, &taps);
                            1
                        } else {
                            let acc = &mut out[ix * g.c..(ix + 1) * g.c];
                            for &(di, ki) in &taps {
                                mul_add_grouped(acc, &dy[di..][..cm], &k[ki..][..cm], g.m);
                            }
                            1
                        };
                        ix += pixels * g.sw;
                    }
                }
            },
        )
    })
}

/// `dK` as `[kh, kw, c, m]`: partial sums over blocks of output rows, in
/// parallel, then added in block order (see the module docs).
///
/// One output pixel's gradient `dy[b, oy, ox, :]` multiplies the input under
/// every tap of its window. For a 3×3 window inside the input (`m = 1`),
/// all nine taps are summed together over the block's inner pixels, each
/// load of `dy` serving nine products (by [`dk_3x3`] where
/// [`row_3x3_applies`], a row at a time; otherwise by [`sum_of_products`]
/// over the list of inner pixels); then each tap sums, one at a time, the
/// pixels whose window the border cuts (all pixels, for other kernels).
pub fn dkernel(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let cm = g.cm();
    let rows = g.n * g.oh;
    let full_cols = full_range(g.ow, |ox| (0..g.kw).all(|kx| g.input_col(ox, kx).is_some()));
    let by_window = g.m == 1 && g.kh == 3 && g.kw == 3;
    // Whether the pixels of output row oy in `full_cols` (its inner pixels)
    // have all their taps summed together.
    let inner_row = |oy: usize| by_window && (0..g.kh).all(|ky| g.input_row(oy, ky).is_some());
    // The other output columns of row oy, whose taps are summed one at a
    // time: found once per row and tap, not tested pixel by pixel.
    let others = |oy: usize| {
        let inner = if inner_row(oy) {
            full_cols.clone()
        } else {
            0..0
        };
        (0..inner.start).chain(inner.end..g.ow)
    };
    let per_partial = PIXELS_PER_PARTIAL.div_ceil(g.ow);
    let partials: Vec<Vec<f32>> = (0..rows.div_ceil(per_partial))
        .into_par_iter()
        .map(|p| {
            let rows = p * per_partial..rows.min((p + 1) * per_partial);
            let mut dk = vec![0.0f32; g.kh * g.kw * cm];
            let mut pixels = Vec::with_capacity(rows.len() * g.ow);
            vectorised(
                #[inline(always)]
                || {
                    if by_window {
                        let inner_rows = rows.clone().filter(|&row| inner_row(row % g.oh));
                        add_inner_pixels(&mut dk, x, dy, g, inner_rows, &full_cols, &mut pixels);
                    }
                    for (tap, acc) in dk.chunks_exact_mut(cm).enumerate() {
                        let (ky, kx) = (tap / g.kw, tap % g.kw);
                        // (offset of the input pixel, offset of the output pixel's
                        // gradient) for every other output pixel whose tap (ky, kx)
                        // is inside the input.
                        pixels.clear();
                        for row in rows.clone() {
                            let (b, oy) = (row / g.oh, row % g.oh);
                            let Some(iy) = g.input_row(oy, ky) else {
                                continue;
                            };
                            for ox in others(oy) {
                                if let Some(ix) = g.input_col(ox, kx) {
                                    let xi = ((b * g.h + iy) * g.w + ix) * g.c;
                                    pixels.push((xi, (row * g.ow + ox) * cm));
                                }
                            }
                        }
                        if g.m == 1 {
                            sum_of_products::<1>(acc, [0], cm, x, [0], dy, &pixels);
                        } else {
                            for &(xi, di) in &pixels {
                                mul_add_spread(acc, &x[xi..][..g.c], &dy[di..][..cm], g.m);
                            }
                        }
                    }
                },
            );
            dk
        })
        .collect();
    sum_in_order(&partials, g.kh * g.kw * cm)
}

/// dK's sums over the inner pixels (columns `full_cols`) of the output rows
/// `(b, oy)` numbered `rows`, for a 3×3 window with `m = 1`, added into
/// `dk`: the nine taps together, each load of `dy` serving nine products;
/// by [`dk_3x3`] a row at a time where [`row_3x3_applies`], otherwise by
/// [`sum_of_products`] over the list of pixels (kept in `pixels`).
#[inline(always)]
fn add_inner_pixels(
    dk: &mut [f32],
    x: &[f32],
    dy: &[f32],
    g: &Geometry,
    rows: impl Iterator<Item = usize>,
    full_cols: &Range<usize>,
    pixels: &mut Vec<(usize, usize)>,
) {
    // The taps of a 3×3 window, summed side by side (the number must be a
    // constant, for the compiler to keep their sums in registers).
    const TAPS: usize = 9;
    let cm = g.cm();
    // (offset of the input under tap (0, 0), offset of the gradient) of
    // the first inner pixel of each row.
    let starts: Vec<(usize, usize)> = rows
        .map(|row| {
            let (b, oy) = (row / g.oh, row % g.oh);
            let (iy, ix) = (oy * g.sh - g.pad_top, full_cols.start * g.sw - g.pad_left);
            (
                ((b * g.h + iy) * g.w + ix) * g.c,
                (row * g.ow + full_cols.start) * cm,
            )
        })
        .collect();
    #[cfg(target_arch = "x86_64")]
    if row_3x3_applies(g) {
        let (w, n) = (g.w * g.c, full_cols.len());
        // SAFETY: `row_3x3_applies` checked for AVX-512F.
        unsafe {
            match g.sw {
                1 => dk_3x3::<1>(dk, x, dy, cm, w, &starts, n),
                _ => dk_3x3::<2>(dk, x, dy, cm, w, &starts, n),
            }
        }
        return;
    }
    pixels.clear();
    for &(xi, di) in &starts {
        pixels.extend((0..full_cols.len()).map(|q| (xi + q * g.sw * g.c, di + q * cm)));
    }
    let outs = std::array::from_fn(|t| t * cm);
    let steps = std::array::from_fn(|t| ((t / 3) * g.w + t % 3) * g.c);
    sum_of_products::<TAPS>(dk, outs, cm, x, steps, dy, pixels);
}

/// The element-wise sum of `partials` (each `len` long), each element
/// summing its partials in order: so chunks of it are summed in parallel
/// and the result does not depend on the thread count.
fn sum_in_order(partials: &[Vec<f32>], len: usize) -> Vec<f32> {
    const CHUNK: usize = 1024;
    let mut sum = vec![0.0f32; len];
    sum.par_chunks_mut(CHUNK).enumerate().for_each(|(i, sum)| {
        for partial in partials {
            for (s, &p) in sum.iter_mut().zip(&partial[i * CHUNK..]) {
                *s += p;
            }
        }
    });
    sum
}
