//! CPU depthwise convolution: the plain reference loops (f64, and the
//! yardstick for the fast f32 path in `direct/`), and the choice between them.
//!
//! | dtype | forward, dx, dK      | dbias     |
//! |-------|----------------------|-----------|
//! | f32   | `direct/` (parallel) | reference |
//! | f64   | reference            | reference |
//!
//! Every reference loop is a gather, written straight from the formula in
//! `mod.rs`: one output element at a time, its sum taken over the window in
//! ascending `(ky, kx)` order (then `j`, for dx), starting from zero, with the
//! bias added last, each product added by one fused multiply-add
//! ([`Element::mul_add`], rounded once, as the FMA instructions of current
//! CPUs and GPUs do). Window taps that fall in the padding are skipped, not
//! multiplied by zero. `direct/` sums forward and dx in the same order, by
//! the same fused multiply-adds, so its results equal these bit for bit.

use super::direct;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::tensor::{CpuStorage, DType};

/// Sizes of one depthwise convolution, with the padding already resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Batch size.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub c: usize,
    /// Depth multiplier: filters per input channel (output channels `c·m`).
    pub m: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
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

impl Geometry {
    /// Output channels, `c·m`: the length of one output pixel and of one
    /// kernel tap `K[ky, kx, .., ..]`.
    pub fn cm(&self) -> usize {
        self.c * self.m
    }

    /// The input row that window row `ky` of output row `oy` reads, if it is
    /// inside the input (`oy·sh + ky − pt`).
    pub fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.sh + ky)
            .checked_sub(self.pad_top)
            .filter(|&iy| iy < self.h)
    }

    /// The input column that window column `kx` of output column `ox` reads.
    pub fn input_col(&self, ox: usize, kx: usize) -> Option<usize> {
        (ox * self.sw + kx)
            .checked_sub(self.pad_left)
            .filter(|&ix| ix < self.w)
    }

    /// The output row whose window row `ky` reads input row `iy`, if any
    /// (`oy·sh + ky − pt = iy`).
    pub fn output_row(&self, iy: usize, ky: usize) -> Option<usize> {
        let t = (iy + self.pad_top).checked_sub(ky)?;
        (t % self.sh == 0 && t / self.sh < self.oh).then_some(t / self.sh)
    }

    /// The output column whose window column `kx` reads input column `ix`.
    pub fn output_col(&self, ix: usize, kx: usize) -> Option<usize> {
        let t = (ix + self.pad_left).checked_sub(kx)?;
        (t % self.sw == 0 && t / self.sw < self.ow).then_some(t / self.sw)
    }
}

/// Borrows CPU storage as `&[T]`, or says which operand had the wrong dtype.
fn typed<'a, T: Element>(s: &'a CpuStorage, what: &str) -> Result<&'a [T]> {
    T::unwrap(s).ok_or_else(|| {
        Error::dtype(
            "depthwise_conv2d",
            format!("{what} is {}, expected {}", s.dtype(), T::DTYPE),
        )
    })
}

/// Forward on CPU storage: `[n, oh, ow, c·m]` as a flat NHWC vector.
pub fn forward(
    x: &CpuStorage,
    kernel: &CpuStorage,
    bias: Option<&CpuStorage>,
    g: &Geometry,
) -> Result<CpuStorage> {
    Ok(match x.dtype() {
        DType::F32 => CpuStorage::F32(direct::forward(
            typed(x, "input")?,
            typed(kernel, "kernel")?,
            bias.map(|b| typed(b, "bias")).transpose()?,
            g,
            false,
        )),
        DType::F64 => CpuStorage::F64(forward_reference(
            typed(x, "input")?,
            typed(kernel, "kernel")?,
            bias.map(|b| typed(b, "bias")).transpose()?,
            g,
        )),
    })
}

/// Gradients `(dx, dkernel, dbias)`, each computed only when asked for.
pub type Grads = (Option<CpuStorage>, Option<CpuStorage>, Option<CpuStorage>);

/// Backward on CPU storage; `need` = (dx, dkernel, dbias).
pub fn backward(
    x: &CpuStorage,
    kernel: &CpuStorage,
    dy: &CpuStorage,
    g: &Geometry,
    need: (bool, bool, bool),
) -> Result<Grads> {
    /// dx from (kernel, dy); dK from (input, dy).
    type GradFn<T> = fn(&[T], &[T], &Geometry) -> Vec<T>;
    fn run<T: Element>(
        (x, k, dy): (&CpuStorage, &CpuStorage, &CpuStorage),
        g: &Geometry,
        need: (bool, bool, bool),
        (dx, dk): (GradFn<T>, GradFn<T>),
    ) -> Result<Grads> {
        let (x, k, dy) = (
            typed::<T>(x, "input")?,
            typed::<T>(k, "kernel")?,
            typed::<T>(dy, "output gradient")?,
        );
        Ok((
            need.0.then(|| T::wrap(dx(k, dy, g))),
            need.1.then(|| T::wrap(dk(x, dy, g))),
            need.2.then(|| T::wrap(dbias_reference(dy, g))),
        ))
    }
    let operands = (x, kernel, dy);
    match x.dtype() {
        DType::F32 => run::<f32>(operands, g, need, (direct::dx, direct::dkernel)),
        DType::F64 => run::<f64>(operands, g, need, (dx_reference, dkernel_reference)),
    }
}

/// `y = bias + Σ_{ky, kx} x · K`, one output element at a time (see `mod.rs`).
pub fn forward_reference<T: Element>(x: &[T], k: &[T], bias: Option<&[T]>, g: &Geometry) -> Vec<T> {
    let cm = g.cm();
    let mut y = vec![T::ZERO; g.n * g.oh * g.ow * cm];
    for b in 0..g.n {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for ci in 0..g.c {
                    for j in 0..g.m {
                        let co = ci * g.m + j;
                        let mut acc = T::ZERO;
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let (Some(iy), Some(ix)) =
                                    (g.input_row(oy, ky), g.input_col(ox, kx))
                                else {
                                    continue;
                                };
                                let (xv, kv) = (
                                    x[((b * g.h + iy) * g.w + ix) * g.c + ci],
                                    k[(ky * g.kw + kx) * cm + co],
                                );
                                acc = xv.mul_add(kv, acc);
                            }
                        }
                        let out = &mut y[((b * g.oh + oy) * g.ow + ox) * cm + co];
                        *out = bias.map_or(acc, |bias| acc + bias[co]);
                    }
                }
            }
        }
    }
    y
}

/// `dx[b, iy, ix, ci]`: over the taps `(ky, kx)` whose output pixel reads
/// `(iy, ix)`, then over the channel's `m` filters.
pub fn dx_reference<T: Element>(k: &[T], dy: &[T], g: &Geometry) -> Vec<T> {
    let cm = g.cm();
    let mut dx = vec![T::ZERO; g.n * g.h * g.w * g.c];
    for b in 0..g.n {
        for iy in 0..g.h {
            for ix in 0..g.w {
                for ci in 0..g.c {
                    let mut acc = T::ZERO;
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let (Some(oy), Some(ox)) = (g.output_row(iy, ky), g.output_col(ix, kx))
                            else {
                                continue;
                            };
                            for j in 0..g.m {
                                let co = ci * g.m + j;
                                let (dyv, kv) = (
                                    dy[((b * g.oh + oy) * g.ow + ox) * cm + co],
                                    k[(ky * g.kw + kx) * cm + co],
                                );
                                acc = dyv.mul_add(kv, acc);
                            }
                        }
                    }
                    dx[((b * g.h + iy) * g.w + ix) * g.c + ci] = acc;
                }
            }
        }
    }
    dx
}

/// `dK[ky, kx, ci, j]`: over every output pixel `(b, oy, ox)` in order.
pub fn dkernel_reference<T: Element>(x: &[T], dy: &[T], g: &Geometry) -> Vec<T> {
    let cm = g.cm();
    let mut dk = vec![T::ZERO; g.kh * g.kw * cm];
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            for co in 0..cm {
                let ci = co / g.m;
                let mut acc = T::ZERO;
                for b in 0..g.n {
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let (Some(iy), Some(ix)) = (g.input_row(oy, ky), g.input_col(ox, kx))
                            else {
                                continue;
                            };
                            let (xv, dyv) = (
                                x[((b * g.h + iy) * g.w + ix) * g.c + ci],
                                dy[((b * g.oh + oy) * g.ow + ox) * cm + co],
                            );
                            acc = xv.mul_add(dyv, acc);
                        }
                    }
                }
                dk[(ky * g.kw + kx) * cm + co] = acc;
            }
        }
    }
    dk
}

/// `dbias[co]`: the sum of `dy` over every output pixel, in order.
pub fn dbias_reference<T: Element>(dy: &[T], g: &Geometry) -> Vec<T> {
    let mut db = vec![T::ZERO; g.cm()];
    for pixel in dy.chunks_exact(g.cm()) {
        for (d, &v) in db.iter_mut().zip(pixel) {
            *d += v;
        }
    }
    db
}
