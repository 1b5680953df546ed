//! Whole-row kernels of the depthwise convolution, written with AVX-512F
//! intrinsics: [`row_3x3`] and [`pixels_3x3`] compute a whole output row of
//! a 3×3 layer with `m = 1` (the forward at strides 1 and 2; `row_3x3` also
//! dx at stride 1), one block of channels at a time or one pixel at a time;
//! [`window_rows`] a group of inner pixels of a 5-wide stride-1 forward;
//! [`dk_3x3`] dK's sums over the inner pixels of 3×3 layers. All but
//! `dk_3x3` sum in the reference's order, so they equal it bit for bit.

use super::sums::{full_range, prefetch, uninit_rows, zeroed};
use super::{Geometry, PIXELS_ABOVE, PREFETCH_ABOVE};
use crate::ops::relu6::relu6_value;
use std::mem::MaybeUninit;
use std::ops::Range;

#[cfg(target_arch = "x86_64")]
/// Whether [`row_3x3`] computes every row: 3×3 kernels with `m = 1`
/// (MobileNet's and MobileNetV2's depthwise layers), strides 1 and 2, on a
/// CPU with AVX-512F.
pub(super) fn row_3x3_applies(g: &Geometry) -> bool {
    g.m == 1
        && (g.kh, g.kw) == (3, 3)
        && matches!((g.sh, g.sw), (1, 1) | (2, 2))
        && crate::gemm::avx512_available()
}

/// [`forward`](super::forward) when [`row_3x3_applies`]: each output row
/// written whole (no zeroing first), by [`pixels_3x3`] in layers whose
/// operands exceed [`PIXELS_ABOVE`] bytes, otherwise by [`row_3x3`].
#[cfg(target_arch = "x86_64")]
pub(super) fn forward_3x3(
    x: &[f32],
    k: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    relu6: bool,
) -> Vec<f32> {
    let (c, image, row_len) = (g.c, g.h * g.w * g.c, g.w * g.c);
    let by_pixel = 4 * (x.len() + g.n * g.oh * g.ow * c) > PIXELS_ABOVE;
    let cols = Columns {
        width: g.w,
        pad: g.pad_left as isize,
    };
    uninit_rows(g.n * g.oh, g.ow * c, |row, out| {
        let (b, oy) = (row / g.oh, row % g.oh);
        let x = &x[b * image..(b + 1) * image];
        let (window, rows) = window_3x3(|ky| g.input_row(oy, ky), row_len, c);
        let window = &window[..rows];
        // SAFETY: `row_3x3_applies` checked for AVX-512F.
        let out = unsafe {
            if by_pixel {
                pixels_3x3_any(g.sw, out, x, window, c, cols, k, bias)
            } else {
                row_3x3_any(false, g.sw, out, x, window, c, cols, k, bias, &[])
            }
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
pub(super) fn dx_3x3(k: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
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
        let (window, rows) = window_3x3(|ky| g.output_row(iy, ky), row_len, c);
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

/// The window of one row of [`row_3x3`]: for each kernel row `ky` whose
/// row `source(ky)` of the operand exists, `ky` ascending, the offset of
/// that row (`row_len` long) and the offset of kernel row `ky` (`c`
/// channels); and how many there are.
#[cfg(target_arch = "x86_64")]
fn window_3x3(
    source: impl Fn(usize) -> Option<usize>,
    row_len: usize,
    c: usize,
) -> ([(usize, usize); 3], usize) {
    let mut window = [(0, 0); 3];
    let mut rows = 0;
    for ky in 0..3 {
        if let Some(row) = source(ky) {
            window[rows] = (row * row_len, ky * 3 * c);
            rows += 1;
        }
    }
    (window, rows)
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
            (_, _, 0) => bias_only(out, c, bias),
            _ => unreachable!("row_3x3 takes strides 1 and 2, and 1 for dx"),
        }
    }
}

/// [`pixels_3x3`] for a window of `window.len()` rows at `stride` (1 or
/// 2), in groups of 4 pixels at stride 1 and of 2 at stride 2 (the
/// fastest on MobileNetV2's 56×56×144 and 112×112×96 layers). A row whose
/// window has no row inside the input is zeros (plus the bias).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn pixels_3x3_any<'o>(
    stride: usize,
    out: &'o mut [MaybeUninit<f32>],
    x: &[f32],
    w: &[(usize, usize)],
    c: usize,
    cols: Columns,
    k: &[f32],
    bias: Option<&[f32]>,
) -> &'o mut [f32] {
    // SAFETY: the caller checked for AVX-512F.
    unsafe {
        match (stride, w.len()) {
            (1, 3) => pixels_3x3::<1, 3, 4, 6>(out, x, w, c, cols, k, bias),
            (1, 2) => pixels_3x3::<1, 2, 4, 6>(out, x, w, c, cols, k, bias),
            (1, 1) => pixels_3x3::<1, 1, 4, 6>(out, x, w, c, cols, k, bias),
            (2, 3) => pixels_3x3::<2, 3, 2, 5>(out, x, w, c, cols, k, bias),
            (2, 2) => pixels_3x3::<2, 2, 2, 5>(out, x, w, c, cols, k, bias),
            (2, 1) => pixels_3x3::<2, 1, 2, 5>(out, x, w, c, cols, k, bias),
            (_, 0) => bias_only(out, c, bias),
            _ => unreachable!("pixels_3x3 takes strides 1 and 2"),
        }
    }
}

/// A row of `c`-channel pixels with no term inside the input: zeros, plus
/// the bias if there is one.
#[cfg(target_arch = "x86_64")]
fn bias_only<'o>(out: &'o mut [MaybeUninit<f32>], c: usize, bias: Option<&[f32]>) -> &'o mut [f32] {
    zeroed(out, |out| {
        if let Some(bias) = bias {
            for px in out.chunks_exact_mut(c) {
                for (a, &b) in px.iter_mut().zip(bias) {
                    *a += b;
                }
            }
        }
    })
}

/// The input columns a row of [`row_3x3`] or [`pixels_3x3`] reads: at
/// stride `S`, output pixel `q`'s window column `j` reads column
/// `q·S + j − pad`, inside the input if in `0..width`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Columns {
    width: usize,
    pad: isize,
}

#[cfg(target_arch = "x86_64")]
impl Columns {
    /// The input column of window column `j` of pixel `q` at stride `S`, if
    /// inside the input.
    fn of<const S: usize>(self, q: usize, j: usize) -> Option<usize> {
        let i = (q * S + j) as isize - self.pad;
        (0..self.width as isize).contains(&i).then_some(i as usize)
    }

    /// For a row kernel at stride `S` writing `out_len` floats of `c`
    /// channels per pixel from the `R` window rows of `window` (as
    /// [`row_3x3`] takes them): asserts that every pixel, window column and
    /// kernel tap lies inside `x`, `k` and `bias`, which the kernels' loads
    /// and stores rely on; returns the row's pixel count and its inner pixels
    /// (those whose window the border does not cut).
    fn check_row<const S: usize, const R: usize>(
        self,
        out_len: usize,
        x: &[f32],
        window: &[(usize, usize)],
        c: usize,
        k: &[f32],
        bias: Option<&[f32]>,
    ) -> (usize, Range<usize>) {
        let pixels = out_len / c;
        assert!(window.len() == R && out_len == pixels * c && pixels > 0);
        assert!(bias.is_none_or(|b| b.len() >= c));
        for &(xr, kr) in window {
            assert!(xr + self.width * c <= x.len() && kr + 3 * c <= k.len());
        }
        let inner = full_range(pixels, |q| {
            self.of::<S>(q, 0).is_some() && self.of::<S>(q, 2).is_some()
        });
        (pixels, inner)
    }
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
/// over the window rows, then the taps in ascending `kx`, from zero, each
/// by one fused multiply-add, the bias last: the reference's order, so the
/// result is the reference's to the bit.
///
/// Blocks of 16 channels (the last one masked) are done one at a time over
/// the whole row: the block's `3·R` kernel taps stay in registers, and so
/// do the inputs under the window, which slides along the row, each step
/// loading only the `S` new input columns of each window row (3·R loads
/// for a pixel at the border, whose columns outside the input it skips).
/// So each input vector is loaded once per output row, and the loads
/// follow each row at a fixed stride, which the hardware prefetches.
/// Each pixel of a block also prefetches its share of `next` (for dx, the
/// row of `dy` the next input row reads first; empty when it is in cache).
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
    let (pixels, inner) = cols.check_row::<S, R>(out.len(), x, window, c, k, bias);
    let col = |q: usize, j: usize| cols.of::<S>(q, j);
    // The window column that meets kernel tap kx.
    let column_of = |kx: usize| if FLIP { 2 - kx } else { kx };
    let blocks = c.div_ceil(16);
    let per_pixel = (next.len() / 16).div_ceil(blocks * pixels);
    let (xp, kp, op) = (x.as_ptr(), k.as_ptr(), out.as_mut_ptr().cast::<f32>());
    for (block, ch) in (0..c).step_by(16).enumerate() {
        let mask = block_mask(c - ch);
        // SAFETY (the loads and stores below): `check_row`'s asserts keep
        // every lane the mask lets through inside `x`, `k`, `bias` and
        // `out`; `col` keeps every column inside the row.
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
                        acc = _mm512_fmadd_ps(inputs[column_of(kx)], tap, acc);
                    }
                }
            } else {
                slid = false;
                for (&(xr, _), taps) in window.iter().zip(&taps) {
                    for (kx, &tap) in taps.iter().enumerate() {
                        if let Some(i) = col(q, column_of(kx)) {
                            acc = _mm512_fmadd_ps(load(xr + i * c), tap, acc);
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

/// The mask of the first `lanes` of 16 lanes (all 16 when `lanes ≥ 16`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn block_mask(lanes: usize) -> u16 {
    if lanes >= 16 {
        0xffff
    } else {
        (1 << lanes) - 1
    }
}

/// One output row of a 3×3 depthwise convolution with `m = 1` at stride
/// `S`, written whole into `out` (`c` channels per pixel), which it returns
/// initialised: as [`row_3x3`] computes it, to the same bits, in the other
/// order: pixel by pixel, every block of 16 channels of a pixel before the
/// next pixel.
///
/// `window` and `cols` are as for [`row_3x3`]. That kernel goes through the
/// row once per block of channels, each pass reading one cache line in
/// every `c / 16` of the input rows; this one goes through it once,
/// reading each pixel's channels in order, which the hardware prefetchers
/// follow: in larger layers, the faster order (see [`PIXELS_ABOVE`]). The kernel taps
/// are loaded again for every block (from the L1 cache: `9·c` floats), and
/// `P` neighbouring inner pixels (`J = (P − 1)·S + 3` input columns) are
/// summed side by side, sharing each tap's load and the columns their
/// windows overlap on. Pixels whose window the border cuts are summed one
/// at a time, skipping the columns outside the input.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn pixels_3x3<'o, const S: usize, const R: usize, const P: usize, const J: usize>(
    out: &'o mut [MaybeUninit<f32>],
    x: &[f32],
    window: &[(usize, usize)],
    c: usize,
    cols: Columns,
    k: &[f32],
    bias: Option<&[f32]>,
) -> &'o mut [f32] {
    use std::arch::x86_64::*;
    assert!(J == (P - 1) * S + 3);
    let (pixels, inner) = cols.check_row::<S, R>(out.len(), x, window, c, k, bias);
    let col = |q: usize, j: usize| cols.of::<S>(q, j);
    let (xp, kp, op) = (x.as_ptr(), k.as_ptr(), out.as_mut_ptr().cast::<f32>());
    let bp = bias.map(|b| b.as_ptr());
    // SAFETY (the loads and stores below): `check_row`'s asserts keep every
    // lane the mask lets through inside `x`, `k`, `bias` and `out`; `col`
    // and `inner` keep every column inside the row.
    let load = |mask, p: *const f32, offset: usize| _mm512_maskz_loadu_ps(mask, p.add(offset));
    let store = |mask, q: usize, ch: usize, acc: __m512| {
        let y = match bp {
            Some(b) => _mm512_add_ps(acc, load(mask, b, ch)),
            None => acc,
        };
        _mm512_mask_storeu_ps(op.add(q * c + ch), mask, y);
    };
    let mut q = 0;
    while q < pixels {
        if inner.contains(&q) && q + P <= inner.end {
            let first = ((q * S) as isize - cols.pad) as usize;
            for ch in (0..c).step_by(16) {
                let mask = block_mask(c - ch);
                let mut acc = [_mm512_setzero_ps(); P];
                for &(xr, kr) in window {
                    let row = xr + first * c + ch;
                    let inputs: [__m512; J] = std::array::from_fn(|j| load(mask, xp, row + j * c));
                    for kx in 0..3 {
                        let tap = load(mask, kp, kr + kx * c + ch);
                        for (p, acc) in acc.iter_mut().enumerate() {
                            *acc = _mm512_fmadd_ps(inputs[p * S + kx], tap, *acc);
                        }
                    }
                }
                for (p, &acc) in acc.iter().enumerate() {
                    store(mask, q + p, ch, acc);
                }
            }
            q += P;
        } else {
            for ch in (0..c).step_by(16) {
                let mask = block_mask(c - ch);
                let mut acc = _mm512_setzero_ps();
                for &(xr, kr) in window {
                    for kx in 0..3 {
                        if let Some(i) = col(q, kx) {
                            let input = load(mask, xp, xr + i * c + ch);
                            let tap = load(mask, kp, kr + kx * c + ch);
                            acc = _mm512_fmadd_ps(input, tap, acc);
                        }
                    }
                }
                store(mask, q, ch, acc);
            }
            q += 1;
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
/// products (the generic [`sum_of_products`](super::sums::sum_of_products) loads the input once per
/// product). Blocks of 16 channels are summed in AVX-512 registers (`P`
/// sums, `J` inputs and `KW` taps: 21 to 25 of the 32), the last block
/// masked to the channels left. Written with intrinsics: left to itself,
/// the compiler vectorised these loops across the pixels, with gathers.
/// Each pixel's sum runs over the taps in ascending `(ky, kx)` from zero,
/// by fused multiply-adds, the bias added last, as in the reference.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn window_rows<const P: usize, const KW: usize, const J: usize>(
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
        let mask = block_mask(c - ch);
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
                    *acc = _mm512_fmadd_ps(inputs[p + kx], tap, *acc);
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

/// dK's sums over the inner pixels of a block of output rows, for a 3×3
/// window with `m = 1` at stride `S` (1 or 2), added into `dk` (`[3, 3, c]`).
///
/// `rows` lists, for each output row of the block whose windows lie inside
/// the input along the height, the offset in `x` of the input under tap
/// `(0, 0)` of the row's first inner pixel, and the offset in `dy` of that
/// pixel's gradient; the row has `pixels` inner pixels, one after another,
/// and `x_row` is the length of one input row. Each pixel's gradient
/// `dy[.., q, ..]` multiplies the 3×3 inputs under its window into the nine
/// taps' sums.
///
/// Blocks of 16 channels (the last one masked) are done one at a time over
/// the whole block of rows: the nine sums stay in registers, and so do the
/// inputs under the window, which slides along the row, each step loading
/// only the `S` new input columns of each window row. dK's partial sums are
/// grouped otherwise than the reference's (see the module docs), so it
/// matches the reference to rounding, not to the bit; its result depends on
/// the geometry only.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dk_3x3<const S: usize>(
    dk: &mut [f32],
    x: &[f32],
    dy: &[f32],
    c: usize,
    x_row: usize,
    rows: &[(usize, usize)],
    pixels: usize,
) {
    use std::arch::x86_64::*;
    assert!(dk.len() == 9 * c);
    if pixels == 0 {
        return;
    }
    for &(xo, dyo) in rows {
        assert!(xo + 2 * x_row + ((pixels - 1) * S + 3) * c <= x.len());
        assert!(dyo + pixels * c <= dy.len());
    }
    let (xp, dyp, dkp) = (x.as_ptr(), dy.as_ptr(), dk.as_mut_ptr());
    for ch in (0..c).step_by(16) {
        let mask = block_mask(c - ch);
        // SAFETY (the loads and stores below): the asserts above keep every
        // lane the mask lets through inside `x`, `dy` and `dk`.
        let mut sums = [_mm512_setzero_ps(); 9];
        for (t, sum) in sums.iter_mut().enumerate() {
            *sum = _mm512_maskz_loadu_ps(mask, dkp.add(t * c + ch));
        }
        for &(xo, dyo) in rows {
            // The inputs under pixel q's window: [window row][window column].
            let mut inputs = [[_mm512_setzero_ps(); 3]; 3];
            for q in 0..pixels {
                for (ky, inputs) in inputs.iter_mut().enumerate() {
                    let first_new = if q == 0 { 0 } else { 3 - S };
                    for j in 0..3 {
                        inputs[j] = if j < first_new {
                            inputs[j + S]
                        } else {
                            let offset = xo + ky * x_row + (q * S + j) * c + ch;
                            _mm512_maskz_loadu_ps(mask, xp.add(offset))
                        };
                    }
                }
                let g = _mm512_maskz_loadu_ps(mask, dyp.add(dyo + q * c + ch));
                for (t, sum) in sums.iter_mut().enumerate() {
                    *sum = _mm512_fmadd_ps(inputs[t / 3][t % 3], g, *sum);
                }
            }
        }
        for (t, &sum) in sums.iter().enumerate() {
            _mm512_mask_storeu_ps(dkp.add(t * c + ch), mask, sum);
        }
    }
}
