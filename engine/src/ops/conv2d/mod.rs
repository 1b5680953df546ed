//! 2-D convolution (Keras `Conv2D`): NHWC input `[n, h, w, c]`, HWIO kernel
//! `[kh, kw, c, o]`, optional bias `[o]`, output `[n, oh, ow, o]`.
//!
//! ```text
//! y[b, oy, ox, co] = bias[co] + Σ_{ky, kx, ci} x[b, oy·sh + ky − pt, ox·sw + kx − pl, ci] · K[ky, kx, ci, co]
//! ```
//!
//! with `x = 0` outside the input, and `oh`, `ow`, `pt`, `pl` from TensorFlow's
//! padding rules ([`super::padding`]; at stride 2, 'same' puts the extra row and
//! column at the bottom/right).
//!
//! Backward, for an output gradient `dy`:
//!
//! ```text
//! dK[ky, kx, ci, co] = Σ_{b, oy, ox} x[b, oy·sh + ky − pt, ox·sw + kx − pl, ci] · dy[b, oy, ox, co]
//! dx[b, iy, ix, ci]  = Σ over (oy, ky), (ox, kx) with oy·sh + ky − pt = iy, ox·sw + kx − pl = ix
//!                      of Σ_co dy[b, oy, ox, co] · K[ky, kx, ci, co]
//! dbias[co]          = Σ_{b, oy, ox} dy[b, oy, ox, co]
//! ```
//!
//! Each is computed only if the tape asks for it: a frozen first layer pays
//! for neither dx nor dK.
//!
//! Where to read: [`reference()`] is the definition above as plain loops
//! (`cpu.rs` opens with it), and every path is checked against it. `cpu.rs`
//! then writes all of this as im2col + GEMM, and ends with `choose`: one
//! table of which CPU path each convolution takes, and which Keras layers
//! take it. The fast f32 paths sit beside it: `implicit_gemm.rs` (the
//! forward, and dx at stride 1, reading the input or dy in place) and
//! `winograd.rs` (3×3, 128 channels and more). `cuda.rs` calls cuDNN (and
//! says where the HWIO kernel becomes cuDNN's OHWI, once per kernel).
//!
//! **Half precision** ([`conv2d_in`] with [`Precision::F16`] or
//! [`Precision::Bf16`], for feature extraction):
//!
//! ```text
//! y = f32(round_p(Σ round_p(x) · round_p(K))) + bias        (Σ in f32)
//! ```
//!
//! `half_precision.rs` is the CPU reference (rounding around the f32 convolution);
//! `cuda.rs` runs it as a 16-bit cuDNN convolution with f32 accumulation on
//! tensor cores. It has no backward: a half-precision conv whose inputs need
//! a gradient is an error ("train in f32"), not a gradient of a different
//! function than the one computed.
//!
//! Tests: the gradient check in `tests/tests/gradcheck_window.rs`
//! (`conv2d_*` cases: strides, paddings, 1×1, frozen operands); against the
//! reference in `tests.rs` (every CPU path, the path table, chunking), in
//! `half_precision.rs` (its definition, from the same reference) and
//! `tests/tests/reference_window.rs` (`gemm_conv_matches_the_reference`, and
//! Keras' own numbers in `conv2d_matches_keras`); on the GPU in
//! `tests/tests/cuda_parity.rs` (the `conv2d` cases of
//! `every_op_matches_the_cpu_on_the_gpu`,
//! `conv2d_matches_the_cpu_under_every_algorithm_policy`,
//! `half_precision_conv_matches_the_cpu_emulation`).

mod algorithm;
mod cpu;
mod cuda;
mod cudnn_plan;
mod half_precision;
mod implicit_gemm;
mod scratch;
#[cfg(test)]
mod tests;
mod winograd;

use super::padding::{window_2d, Padding};
use crate::autograd::{is_grad_enabled, record};
use crate::error::{Error, Result};
use crate::precision::Precision;
use crate::tensor::{mixed_devices, same_kind, CpuStorage, Storage, Tensor};
pub use algorithm::{AlgorithmPolicy, Search, BENCHMARK_ENV, DETERMINISTIC_ENV};
pub use cpu::COL_BUDGET_BYTES;
use cpu::{ConvGeometry, Needed};
pub use cuda::{hwio_to_ohwi, ohwi_to_hwio};
pub use cudnn_plan::{PlanCache, FIND_WORKSPACE_LIMIT};

const OP: &str = "conv2d";

/// 2-D convolution of an NHWC input with a Keras HWIO kernel `[kh, kw, c, o]`
/// and an optional bias `[o]`, at `stride` (rows, columns) with TensorFlow
/// `padding`. Returns `[n, oh, ow, o]`.
///
/// Errors (never panics) on: ranks other than 4/4/1, a kernel whose input
/// channels differ from the input's, a bias whose length is not `o`, any
/// zero-sized dimension, a zero stride, a window larger than the padded
/// input, or operands of different dtypes.
///
/// ```
/// use engine::ops::{conv2d, Padding};
/// use engine::{DType, Tensor};
/// // One 3×3 image of one channel, 1..9 row by row; a 2×2 kernel of ones
/// // sums each window.
/// let x = Tensor::from_vec((1..=9).map(|v| v as f32).collect(), &[1, 3, 3, 1])?;
/// let k = Tensor::ones(&[2, 2, 1, 1], DType::F32);
/// let bias = Tensor::from_vec(vec![0.5f32], &[1])?;
/// let y = conv2d(&x, &k, Some(&bias), (1, 1), Padding::Valid)?;
/// assert_eq!(y.shape(), [1, 2, 2, 1]);
/// assert_eq!(y.to_vec_f32(), [12.5, 16.5, 24.5, 28.5]); // 1+2+4+5 + 0.5, ...
/// // 'same' at stride 2: ceil(3 / 2) = 2 outputs per side, the one padded
/// // row and column at the bottom and right (TensorFlow's rule).
/// let y = conv2d(&x, &k, None, (2, 2), Padding::Same)?;
/// assert_eq!(y.to_vec_f32(), [12.0, 9.0, 15.0, 9.0]);
/// // A kernel for 3 input channels does not fit: an error, not a panic.
/// let k3 = Tensor::ones(&[2, 2, 3, 1], DType::F32);
/// assert!(conv2d(&x, &k3, None, (1, 1), Padding::Valid).is_err());
/// # Ok::<(), engine::Error>(())
/// ```
pub fn conv2d(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    conv2d_in(Precision::F32, x, kernel, bias, stride, padding)
}

/// [`conv2d`] with its products formed in `precision` (see the module docs):
/// `Precision::F32` is [`conv2d`] itself; `F16` and `Bf16` round input and
/// kernel to 16 bits, accumulate in f32, round the result to 16 bits and add
/// the bias in f32. The output is f32 either way.
///
/// Half precision is for inference (feature extraction): it errors if the
/// tape would need a gradient through it (run under `no_grad()`, or freeze
/// the layer), and on tensors other than f32.
pub fn conv2d_in(
    precision: Precision,
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    let g = geometry(x, kernel, bias, stride, padding)?;
    let mut inputs = vec![x, kernel];
    inputs.extend(bias);
    if precision.is_half() && is_grad_enabled() && inputs.iter().any(|t| t.requires_grad()) {
        return Err(Error::unsupported(
            OP,
            format!(
                "{precision} precision is for feature extraction; train in f32 (this conv's \
                 input or weights need a gradient: run it under no_grad(), freeze the layer, or \
                 use Precision::F32)"
            ),
        ));
    }
    let y = match (x.storage(), kernel.storage()) {
        (Storage::Cpu(xs), Storage::Cpu(ks)) => {
            let bs = bias.map(|b| b.cpu_storage(OP)).transpose()?;
            Storage::Cpu(match precision {
                Precision::F32 => cpu::forward(xs, ks, bs, &g)?,
                p => half_precision::forward(p, xs, ks, bs, &g)?,
            })
        }
        (Storage::Cuda(xs), Storage::Cuda(ks)) => {
            let bs = match bias.map(|b| b.storage()) {
                None => None,
                Some(Storage::Cuda(b)) => Some(b),
                Some(b) => return Err(mixed_devices(OP, x.device(), b.device())),
            };
            Storage::Cuda(cuda::forward(precision, xs, ks, bs, &g)?)
        }
        (xs, ks) => return Err(mixed_devices(OP, xs.device(), ks.device())),
    };
    if precision.is_half() {
        // Nothing needs a gradient (checked above): a constant, as record() would make it.
        return Tensor::from_storage(y, &[g.n, g.oh, g.ow, g.o]);
    }
    let (x_saved, k_saved) = (x.clone(), kernel.clone());
    let has_bias = bias.is_some();
    Ok(record(
        OP,
        y,
        vec![g.n, g.oh, g.ow, g.o],
        &inputs,
        Box::new(move |dy, needs| {
            same_kind(OP, &x_saved, dy)?;
            let needed = Needed {
                dx: needs[0],
                dkernel: needs[1],
                dbias: has_bias && needs.get(2).copied().unwrap_or(false),
            };
            let (dx, dk, db) = match (x_saved.storage(), k_saved.storage(), dy.storage()) {
                (Storage::Cpu(xs), Storage::Cpu(ks), Storage::Cpu(dys)) => {
                    let (dx, dk, db) = cpu::backward(xs, ks, dys, &g, needed)?;
                    let cpu = |s: Option<_>| s.map(Storage::Cpu);
                    (cpu(dx), cpu(dk), cpu(db))
                }
                (Storage::Cuda(xs), Storage::Cuda(ks), Storage::Cuda(dys)) => {
                    let (dx, dk, db) = cuda::backward(xs, ks, dys, &g, needed)?;
                    let gpu = |s: Option<_>| s.map(Storage::Cuda);
                    (gpu(dx), gpu(dk), gpu(db))
                }
                (xs, _, dys) => return Err(mixed_devices(OP, xs.device(), dys.device())),
            };
            let wrap = |s: Option<Storage>, shape: &[usize]| {
                s.map(|s| Tensor::from_storage(s, shape)).transpose()
            };
            let mut grads = vec![wrap(dx, x_saved.shape())?, wrap(dk, k_saved.shape())?];
            if has_bias {
                grads.push(wrap(db, &[g.o])?);
            }
            Ok(grads)
        }),
    ))
}

/// `relu6(conv2d(x, kernel, bias))`, equal to the two ops bit for bit
/// (MobileNet's and EfficientNet-Lite's convolutions are followed by ReLU6).
/// On the CPU in f32, when nothing needs a gradient, the clamp is applied
/// to each block of the output right after it is computed, while it is in
/// cache, instead of in a pass of its own over the output: the `Packed`
/// path's GEMM finishes its rows with it ([`crate::gemm::gemm_then`]); the
/// other paths clamp the finished output. Otherwise (a gradient to
/// compute, f64, a GPU) it is the two ops. Errors as [`conv2d`].
pub fn conv2d_relu6(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    if !super::fused_inference_applies(&[Some(x), Some(kernel), bias]) {
        return super::relu6(&conv2d(x, kernel, bias, stride, padding)?);
    }
    let g = geometry(x, kernel, bias, stride, padding)?;
    let b = bias.map(|b| b.as_slice::<f32>()).transpose()?;
    let y = cpu::forward_relu6(x.as_slice::<f32>()?, kernel.as_slice::<f32>()?, b, &g);
    Tensor::from_vec(y, &[g.n, g.oh, g.ow, g.o])
}

/// The definition of [`conv2d`] (the module docs' sum), one multiply-add at
/// a time: the reference every path is checked against (im2col, the
/// implicit GEMMs, Winograd, cuDNN, half precision). Same conventions and
/// errors as [`conv2d`]: NHWC input, HWIO kernel, optional bias, TensorFlow
/// padding. It sums in f64 whatever the dtype (f32 widens exactly) and
/// returns an f64 tensor with no gradient. CPU tensors only, and slow on
/// purpose: it is for tests.
pub fn reference(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    let g = geometry(x, kernel, bias, stride, padding)?;
    let f64s = |t: &Tensor| -> Result<Vec<f64>> {
        Ok(match t.cpu_storage(OP)? {
            CpuStorage::F32(v) => v.iter().map(|&v| v as f64).collect(),
            CpuStorage::F64(v) => v.clone(),
        })
    };
    let bias = bias.map(f64s).transpose()?;
    let y = cpu::reference(&f64s(x)?, &f64s(kernel)?, bias.as_deref(), &g);
    Tensor::from_vec(y, &[g.n, g.oh, g.ow, g.o])
}

/// Checks every operand and resolves the output size and padding.
fn geometry(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: Padding,
) -> Result<ConvGeometry> {
    same_kind(OP, x, kernel)?;
    let [n, h, w, c] = x.dims(OP, "input (NHWC [n, h, w, c])")?;
    let [kh, kw, kc, o] = kernel.dims(OP, "kernel (HWIO [kh, kw, c_in, c_out])")?;
    if n == 0 || h == 0 || w == 0 || c == 0 {
        return Err(Error::shape(
            OP,
            format!("input {:?} has a zero-sized dimension", x.shape()),
        ));
    }
    if kh == 0 || kw == 0 || kc == 0 || o == 0 {
        return Err(Error::shape(
            OP,
            format!("kernel {:?} has a zero-sized dimension", kernel.shape()),
        ));
    }
    if kc != c {
        return Err(Error::shape(
            OP,
            format!(
                "input {:?} has {c} channels but kernel {:?} expects {kc} \
                 (HINT: kernels are HWIO [kh, kw, c_in, c_out], inputs NHWC)",
                x.shape(),
                kernel.shape()
            ),
        ));
    }
    if let Some(b) = bias {
        same_kind(OP, x, b)?;
        if b.shape() != [o] {
            return Err(Error::shape(
                OP,
                format!(
                    "bias {:?} does not match kernel {:?}: expected [{o}] (one per output channel)",
                    b.shape(),
                    kernel.shape()
                ),
            ));
        }
    }
    let win = window_2d(OP, (h, w), (kh, kw), stride, padding).map_err(|e| match e {
        Error::Shape { op, msg } => Error::shape(
            op,
            format!("input {:?}, kernel {:?}: {msg}", x.shape(), kernel.shape()),
        ),
        other => other,
    })?;
    Ok(ConvGeometry {
        n,
        h,
        w,
        c,
        kh,
        kw,
        o,
        sh: stride.0,
        sw: stride.1,
        oh: win.out_h,
        ow: win.out_w,
        pad_top: win.pad_top,
        pad_left: win.pad_left,
    })
}
