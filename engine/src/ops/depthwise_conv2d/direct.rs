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
//! further on CPUs with AVX-512F ([`row_3x3`]: the forward at strides 1
//! and 2, and dx at stride 1, where it is a forward of `dy` with the
//! kernel turned round): a whole row is computed one block of 16 channels at a time,
//! with the block's kernel taps held in registers and the window's inputs
//! sliding along the row with the pixel, so that each input vector is
//! loaded once per row, and every pixel is written, not added to, with
//! no zeroing first. The stride-1 forward of 5-wide kernels
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
//! ascending `(ky, kx)`, from zero, the bias last), with separate
//! multiplies and adds (Rust never fuses them into FMAs), so they equal it
//! bit for bit, on any number of threads. Forward is split over output rows
//! `(b, oy)`, dx over input rows `(b, iy)`: each task writes its own rows.
//! dK sums over every output pixel, so each block of output rows
//! ([`PIXELS_PER_PARTIAL`]) adds into its own partial dK (its inner pixels
//! first, then the border's), and the partials are summed in order
//! afterwards: the result depends on the geometry only, not on the thread
//! count, and differs from the reference's single running sum only by
//! rounding.

use super::cpu::Geometry;
use crate::ops::relu6::relu6_value;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

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

/// `y` as `[n, oh, ow, c·m]`, one rayon task per output row: by
/// [`row_3x3`] where it applies ([`row_3x3_applies`]), otherwise as follows.
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
                    if wide && full.contains(&ox) {
                        // Groups of WIDE_PIXELS, then of half as many; the
                        // last group ends where `full` ends, computing some
                        // pixels of the group before again (to the same bits:
                        // the groups write their pixels, they do not add).
                        let p = if full.end - ox >= WIDE_PIXELS {
                            WIDE_PIXELS
                        } else {
                            WIDE_PIXELS / 2
                        };
                        let start = ox.min(full.end - p);
                        let out = &mut out[start * cm..(start + p) * cm];
                        let x = &x[(start - g.pad_left) * g.c..];
                        const HALF: usize = WIDE_PIXELS / 2;
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: `wide` only on a CPU with AVX-512F.
                        unsafe {
                            let (c, w) = (g.c, &window);
                            match p {
                                WIDE_PIXELS => {
                                    window_rows::<WIDE_PIXELS, 5, 12>(out, x, c, w, k, bias)
                                }
                                _ => window_rows::<HALF, 5, 8>(out, x, c, w, k, bias),
                            }
                        }
                        ox = start + p;
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

#[cfg(target_arch = "x86_64")]
/// Whether [`row_3x3`] computes every row: 3×3 kernels with `m = 1`
/// (MobileNet's and MobileNetV2's depthwise layers), strides 1 and 2, on a
/// CPU with AVX-512F.
fn row_3x3_applies(g: &Geometry) -> bool {
    g.m == 1
        && (g.kh, g.kw) == (3, 3)
        && matches!((g.sh, g.sw), (1, 1) | (2, 2))
        && crate::gemm::avx512_available()
}

/// [`forward`] when [`row_3x3_applies`]: each output row by [`row_3x3`],
/// which writes every pixel (no zeroing first). In layers that stream
/// from memory (above [`PREFETCH_ABOVE`]), each row prefetches the input
/// rows that the next output row reads first.
#[cfg(target_arch = "x86_64")]
fn forward_3x3(x: &[f32], k: &[f32], bias: Option<&[f32]>, g: &Geometry, relu6: bool) -> Vec<f32> {
    let (c, image, row_len) = (g.c, g.h * g.w * g.c, g.w * g.c);
    let prefetching = 4 * (x.len() + g.n * g.oh * g.ow * c) > PREFETCH_ABOVE;
    let cols = Columns {
        width: g.w,
        pad: g.pad_left as isize,
    };
    uninit_rows(g.n * g.oh, g.ow * c, |row, out| {
        let (b, oy) = (row / g.oh, row % g.oh);
        let x = &x[b * image..(b + 1) * image];
        let mut window = [(0, 0); 3];
        let mut rows = 0;
        for ky in 0..3 {
            if let Some(iy) = g.input_row(oy, ky) {
                window[rows] = (iy * row_len, ky * 3 * c);
                rows += 1;
            }
        }
        // The input rows the next output row reads that this one does not.
        let next = match (prefetching, window[..rows].last()) {
            (true, Some(&(last, _))) if oy + 1 < g.oh => {
                x.get(last + row_len..last + (1 + g.sh) * row_len)
            }
            _ => None,
        };
        // SAFETY: `row_3x3_applies` checked for AVX-512F.
        let out = unsafe {
            row_3x3_any(
                false,
                g.sw,
                out,
                x,
                &window[..rows],
                c,
                cols,
                k,
                bias,
                next.unwrap_or(&[]),
            )
        };
        if relu6 {
            for v in out.iter_mut() {
                *v = relu6_value(*v);
            }
        }
        out
    })
}

/// `dx` when [`row_3x3_applies`] at stride 1: each input row by
/// [`row_3x3`] with `FLIP`, as a forward of `dy` whose kernel is turned
/// round: input pixel `ix` gathers `dy[.., oy, ix + pl − kx, ..] ·
/// K[ky, kx, ..]` over the output rows `oy` whose window row `ky` reads
/// row `iy`, `ky` ascending, as the reference sums.
#[cfg(target_arch = "x86_64")]
fn dx_3x3(k: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (c, image, row_len) = (g.c, g.oh * g.ow * g.c, g.ow * g.c);
    let prefetching = 4 * (dy.len() + g.n * g.h * g.w * c) > PREFETCH_ABOVE;
    // Window column j of input pixel ix reads dy column ix + j − (2 − pl).
    let cols = Columns {
        width: g.ow,
        pad: 2 - g.pad_left as isize,
    };
    uninit_rows(g.n * g.h, g.w * c, |row, out| {
        let (b, iy) = (row / g.h, row % g.h);
        let dy = &dy[b * image..(b + 1) * image];
        let mut window = [(0, 0); 3];
        let mut rows = 0;
        for ky in 0..3 {
            if let Some(oy) = g.output_row(iy, ky) {
                window[rows] = (oy * row_len, ky * 3 * c);
                rows += 1;
            }
        }
        // The row of dy the next input row reads that this one does not
        // (the one below the lowest here, which `ky = 0` reads).
        let next = match (prefetching, window[..rows].first()) {
            (true, Some(&(first, _))) => dy.get(first + row_len..first + 2 * row_len),
            _ => None,
        };
        // SAFETY: `row_3x3_applies` checked for AVX-512F.
        unsafe {
            row_3x3_any(
                true,
                1,
                out,
                dy,
                &window[..rows],
                c,
                cols,
                k,
                None,
                next.unwrap_or(&[]),
            )
        }
    })
}

/// [`row_3x3`] for a window of `window.len()` rows at `stride` (1 or 2;
/// with `flip`, 1). A row whose window has no row inside the input is
/// zeros (plus the bias).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_3x3_any<'o>(
    flip: bool,
    stride: usize,
    out: &'o mut [MaybeUninit<f32>],
    x: &[f32],
    w: &[(usize, usize)],
    c: usize,
    cols: Columns,
    k: &[f32],
    bias: Option<&[f32]>,
    next: &[f32],
) -> &'o mut [f32] {
    // SAFETY: the caller checked for AVX-512F.
    unsafe {
        match (flip, stride, w.len()) {
            (false, 1, 3) => row_3x3::<1, 3, false>(out, x, w, c, cols, k, bias, next),
            (false, 1, 2) => row_3x3::<1, 2, false>(out, x, w, c, cols, k, bias, next),
            (false, 1, 1) => row_3x3::<1, 1, false>(out, x, w, c, cols, k, bias, next),
            (false, 2, 3) => row_3x3::<2, 3, false>(out, x, w, c, cols, k, bias, next),
            (false, 2, 2) => row_3x3::<2, 2, false>(out, x, w, c, cols, k, bias, next),
            (false, 2, 1) => row_3x3::<2, 1, false>(out, x, w, c, cols, k, bias, next),
            (true, 1, 3) => row_3x3::<1, 3, true>(out, x, w, c, cols, k, bias, next),
            (true, 1, 2) => row_3x3::<1, 2, true>(out, x, w, c, cols, k, bias, next),
            (true, 1, 1) => row_3x3::<1, 1, true>(out, x, w, c, cols, k, bias, next),
            (_, _, 0) => zeroed(out, |out| {
                if let Some(bias) = bias {
                    for px in out.chunks_exact_mut(c) {
                        for (a, &b) in px.iter_mut().zip(bias) {
                            *a += b;
                        }
                    }
                }
            }),
            _ => unreachable!("row_3x3 takes strides 1 and 2, and 1 for dx"),
        }
    }
}

/// The input columns a row of [`row_3x3`] reads: output pixel `q`'s tap
/// `j` reads column `q·S + j − pad`, inside the input if in `0..width`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Columns {
    width: usize,
    pad: isize,
}

/// One row of a 3×3 depthwise convolution with `m = 1`, written whole into
/// `out` (`c` channels per pixel), which it returns initialised: the
/// forward's output rows, and (with `FLIP`, at stride 1) dx's input rows.
///
/// `window` lists, for each of the `R` window rows inside the input, the
/// offset in `x` of the row it reads and the offset in `k` of its kernel
/// row, in the order of the reference's sum. Pixel `q`'s window column `j`
/// reads column `q·S + j − pad` of that row ([`Columns`]) and meets the
/// kernel tap `kx = j`, or `kx = 2 − j` with `FLIP` (dx, where input pixel
/// `ix` gathers `dy[.., ix + pl − kx, ..]`). Each pixel sums its products
/// over the window rows, then the taps in ascending `kx`, from zero,
/// multiplies and adds separate, the bias last: the reference's order, so
/// the result is the reference's to the bit.
///
/// Blocks of 16 channels (the last one masked) are done one at a time over
/// the whole row: the block's `3·R` kernel taps stay in registers, and so
/// do the inputs under the window, which slides along the row, each step
/// loading only the `S` new input columns of each window row (3·R loads
/// for a pixel at the border, whose columns outside the input it skips).
/// So each input vector is loaded once per output row, and the loads
/// follow each row at a fixed stride, which the hardware prefetches.
/// Each pixel of a block also prefetches its share of `next` (the input
/// rows the next output row reads first; empty when they are in cache).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_3x3<'o, const S: usize, const R: usize, const FLIP: bool>(
    out: &'o mut [MaybeUninit<f32>],
    x: &[f32],
    window: &[(usize, usize)],
    c: usize,
    cols: Columns,
    k: &[f32],
    bias: Option<&[f32]>,
    next: &[f32],
) -> &'o mut [f32] {
    use std::arch::x86_64::*;
    let pixels = out.len() / c;
    assert!(window.len() == R && out.len() == pixels * c && pixels > 0);
    assert!(bias.is_none_or(|b| b.len() >= c));
    for &(xr, kr) in window {
        assert!(xr + cols.width * c <= x.len() && kr + 3 * c <= k.len());
    }
    // Column of tap j of pixel q, if inside the input.
    let col = |q: usize, j: usize| {
        let i = (q * S + j) as isize - cols.pad;
        (0..cols.width as isize).contains(&i).then_some(i as usize)
    };
    let inner = full_range(pixels, |q| col(q, 0).is_some() && col(q, 2).is_some());
    // The window column that meets kernel tap kx.
    let column_of = |kx: usize| if FLIP { 2 - kx } else { kx };
    let blocks = c.div_ceil(16);
    let per_pixel = (next.len() / 16).div_ceil(blocks * pixels);
    let (xp, kp, op) = (x.as_ptr(), k.as_ptr(), out.as_mut_ptr().cast::<f32>());
    for (block, ch) in (0..c).step_by(16).enumerate() {
        let lanes = (c - ch).min(16);
        let mask: __mmask16 = if lanes == 16 {
            0xffff
        } else {
            (1 << lanes) - 1
        };
        // SAFETY (the loads and stores below): the asserts above keep every
        // lane the mask lets through inside `x`, `k`, `bias` and `out`;
        // `col` keeps every column inside the row.
        let load = |offset: usize| _mm512_maskz_loadu_ps(mask, xp.add(offset + ch));
        let mut taps = [[_mm512_setzero_ps(); 3]; R];
        for (taps, &(_, kr)) in taps.iter_mut().zip(window) {
            for (kx, tap) in taps.iter_mut().enumerate() {
                *tap = _mm512_maskz_loadu_ps(mask, kp.add(kr + kx * c + ch));
            }
        }
        let b = bias.map(|b| _mm512_maskz_loadu_ps(mask, b.as_ptr().add(ch)));
        // The inputs under pixel q's window, when `slid` (q inner).
        let mut inputs = [[_mm512_setzero_ps(); 3]; R];
        let mut slid = false;
        for q in 0..pixels {
            let mut acc = _mm512_setzero_ps();
            if inner.contains(&q) {
                for (inputs, &(xr, _)) in inputs.iter_mut().zip(window) {
                    let first_new = if slid { 3 - S.min(3) } else { 0 };
                    for j in 0..3 {
                        inputs[j] = if j < first_new {
                            inputs[j + S]
                        } else {
                            load(xr + ((q * S + j) as isize - cols.pad) as usize * c)
                        };
                    }
                }
                slid = true;
                for (inputs, taps) in inputs.iter().zip(&taps) {
                    for (kx, &tap) in taps.iter().enumerate() {
                        let product = _mm512_mul_ps(inputs[column_of(kx)], tap);
                        acc = _mm512_add_ps(acc, product);
                    }
                }
            } else {
                slid = false;
                for (&(xr, _), taps) in window.iter().zip(&taps) {
                    for (kx, &tap) in taps.iter().enumerate() {
                        if let Some(i) = col(q, column_of(kx)) {
                            acc = _mm512_add_ps(acc, _mm512_mul_ps(load(xr + i * c), tap));
                        }
                    }
                }
            }
            if let Some(b) = b {
                acc = _mm512_add_ps(acc, b);
            }
            _mm512_mask_storeu_ps(op.add(q * c + ch), mask, acc);
            let line = (block * pixels + q) * per_pixel * 16;
            prefetch(next, line..line + per_pixel * 16);
        }
    }
    // SAFETY: every block of every pixel was stored above.
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Output pixels `0..P` of `out` (each `c` channels; written, not added
/// to) of an output row whose windows all lie inside the input along the
/// width, at stride 1, with kernels `KW` wide, depth multiplier 1:
/// `x` starts at the input column of pixel 0's window, and `window` lists
/// (offset of the input row, offset of the kernel row) for each window row
/// inside the input.
///
/// In each window row, the `P` pixels read `J = P + KW − 1`
/// neighbouring input pixels, each of them under up to `KW` taps: so each
/// input vector is loaded once, and each kernel tap once, for `P·KW`
/// products (the generic [`sum_of_products`] loads the input once per
/// product). Blocks of 16 channels are summed in AVX-512 registers (`P`
/// sums, `J` inputs and `KW` taps: 21 to 25 of the 32), the last block
/// masked to the channels left. Written with intrinsics: left to itself,
/// the compiler vectorised these loops across the pixels, with gathers.
/// Each pixel's sum runs over the taps in ascending `(ky, kx)` from zero,
/// multiplies and adds separate, the bias added last, as in the reference.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn window_rows<const P: usize, const KW: usize, const J: usize>(
    out: &mut [f32],
    x: &[f32],
    c: usize,
    window: &[(usize, usize)],
    k: &[f32],
    bias: Option<&[f32]>,
) {
    use std::arch::x86_64::*;
    assert!(J == P + KW - 1 && out.len() >= P * c);
    assert!(bias.is_none_or(|b| b.len() >= c));
    for &(xr, kr) in window {
        assert!(xr + J * c <= x.len() && kr + KW * c <= k.len());
    }
    let (x, k, out) = (x.as_ptr(), k.as_ptr(), out.as_mut_ptr());
    for ch in (0..c).step_by(16) {
        let lanes = (c - ch).min(16);
        let mask: __mmask16 = if lanes == 16 {
            0xffff
        } else {
            (1 << lanes) - 1
        };
        // SAFETY (the loads and stores below): the asserts above keep every
        // lane the mask lets through inside `x`, `k`, `bias` and `out`.
        let mut acc = [_mm512_setzero_ps(); P];
        for &(xr, kr) in window {
            let mut taps = [_mm512_setzero_ps(); KW];
            for (kx, tap) in taps.iter_mut().enumerate() {
                *tap = _mm512_maskz_loadu_ps(mask, k.add(kr + kx * c + ch));
            }
            let mut inputs = [_mm512_setzero_ps(); J];
            for (j, input) in inputs.iter_mut().enumerate() {
                *input = _mm512_maskz_loadu_ps(mask, x.add(xr + j * c + ch));
            }
            for (kx, &tap) in taps.iter().enumerate() {
                for (p, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_add_ps(*acc, _mm512_mul_ps(inputs[p + kx], tap));
                }
            }
        }
        for (p, &acc) in acc.iter().enumerate() {
            let y = match bias {
                Some(b) => _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mask, b.as_ptr().add(ch))),
                None => acc,
            };
            _mm512_mask_storeu_ps(out.add(p * c + ch), mask, y);
        }
    }
}

/// `dx` as `[n, h, w, c]`, one rayon task per input row: a gather over the
/// output pixels whose windows read each input pixel. At stride 1, where
/// [`row_3x3_applies`], each row is one [`row_3x3`] ([`dx_3x3`]); otherwise
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
/// load of `dy` serving nine products; then each tap sums, one at a time,
/// the pixels whose window the border cuts (all pixels, for other kernels).
pub fn dkernel(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    // The taps of a 3×3 window, summed side by side (the number must be a
    // constant, for the compiler to keep their sums in registers).
    const TAPS: usize = 9;
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
                        // (offset of the input under tap (0, 0), offset of the
                        // output pixel's gradient) for every inner pixel.
                        pixels.clear();
                        for row in rows.clone() {
                            let (b, oy) = (row / g.oh, row % g.oh);
                            if !inner_row(oy) {
                                continue;
                            }
                            for ox in full_cols.clone() {
                                let (iy, ix) = (oy * g.sh - g.pad_top, ox * g.sw - g.pad_left);
                                pixels.push((
                                    ((b * g.h + iy) * g.w + ix) * g.c,
                                    (row * g.ow + ox) * cm,
                                ));
                            }
                        }
                        let outs = std::array::from_fn(|t| t * cm);
                        let steps = std::array::from_fn(|t| ((t / 3) * g.w + t % 3) * g.c);
                        sum_of_products::<TAPS>(&mut dk, outs, cm, x, steps, dy, &pixels);
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
    // Each element sums its partials in order, so chunks of dK can be
    // summed in parallel.
    const CHUNK: usize = 1024;
    let mut dk = vec![0.0f32; g.kh * g.kw * cm];
    dk.par_chunks_mut(CHUNK).enumerate().for_each(|(i, dk)| {
        for partial in &partials {
            for (d, &p) in dk.iter_mut().zip(&partial[i * CHUNK..]) {
                *d += p;
            }
        }
    });
    dk
}

/// The indices `i < len` with `inside(i)`, which must be one contiguous
/// range (the output pixels whose window the border does not cut).
fn full_range(len: usize, inside: impl Fn(usize) -> bool) -> Range<usize> {
    let start = (0..len).find(|&i| inside(i)).unwrap_or(len);
    let end = (start..len).find(|&i| !inside(i)).unwrap_or(len);
    debug_assert!((end..len).all(|i| !inside(i)));
    start..end
}

/// A vector of `rows · row_len` zeros, handed to `write(row, out)` one row at
/// a time in parallel. Each row is zeroed inside its own task, just before
/// `write` adds into it, rather than the whole vector up front: one pass
/// over memory fewer.
fn zeroed_rows(rows: usize, row_len: usize, write: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    uninit_rows(rows, row_len, |row, out| zeroed(out, |out| write(row, out)))
}

/// `out` set to zeros, handed to `write`; returns it.
fn zeroed(out: &mut [MaybeUninit<f32>], write: impl FnOnce(&mut [f32])) -> &mut [f32] {
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
fn uninit_rows(
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
fn sum_of_products<const P: usize>(
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
                acc[i] += a[i] * b[i];
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
fn prefetch(v: &[f32], range: Range<usize>) {
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

/// `acc[i] += a[i] · b[i]`.
#[inline(always)]
fn mul_add(acc: &mut [f32], a: &[f32], b: &[f32]) {
    for ((s, &u), &v) in acc.iter_mut().zip(a).zip(b) {
        *s += u * v;
    }
}

/// `acc[ci·m + j] += a[ci] · b[ci·m + j]`: one input channel's value times
/// its `m` filters (forward and dK; [`mul_add`] when `m = 1`).
#[inline(always)]
fn mul_add_spread(acc: &mut [f32], a: &[f32], b: &[f32], m: usize) {
    if m == 1 {
        return mul_add(acc, a, b);
    }
    for ((s, &u), v) in acc.chunks_exact_mut(m).zip(a).zip(b.chunks_exact(m)) {
        for (s, &v) in s.iter_mut().zip(v) {
            *s += u * v;
        }
    }
}

/// `acc[ci] += Σ_j a[ci·m + j] · b[ci·m + j]`, `j` ascending: the `m` output
/// channels of one input channel summed back (dx; [`mul_add`] when `m = 1`).
#[inline(always)]
fn mul_add_grouped(acc: &mut [f32], a: &[f32], b: &[f32], m: usize) {
    if m == 1 {
        return mul_add(acc, a, b);
    }
    for ((s, u), v) in acc.iter_mut().zip(a.chunks_exact(m)).zip(b.chunks_exact(m)) {
        for (&u, &v) in u.iter().zip(v) {
            *s += u * v;
        }
    }
}

/// Runs `f`, compiled for AVX-512 when the CPU has it. `f` (an
/// `#[inline(always)]` closure) and the `#[inline(always)]` helpers above
/// are inlined into `avx512`, whose target feature lets the compiler
/// vectorise their loops 16 lanes wide (the default x86-64 target stops at
/// 4). The arithmetic is the same either way.
#[inline(always)]
fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if crate::gemm::avx512_available() {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU supports AVX-512F (checked just above).
        return unsafe { avx512(f) };
    }
    f()
}
