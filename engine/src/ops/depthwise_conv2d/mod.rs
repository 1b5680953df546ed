//! Depthwise 2-D convolution (Keras `DepthwiseConv2D`): NHWC input
//! `[n, h, w, c]`, kernel `[kh, kw, c, m]` (Keras's layout; `m` is the depth
//! multiplier), optional bias `[c·m]`, output `[n, oh, ow, c·m]`. Each input
//! channel is convolved with its own `m` filters and nothing is summed across
//! channels; output channel `co = ci·m + j` comes from input channel `ci` and
//! filter `K[.., .., ci, j]` (TensorFlow's order). MobileNet's layers have `m = 1`.
//!
//! ```text
//! y[b, oy, ox, ci·m + j] = bias[ci·m + j] + Σ_{ky, kx} x[b, oy·sh + ky − pt, ox·sw + kx − pl, ci] · K[ky, kx, ci, j]
//! ```
//!
//! with `x = 0` outside the input, and `oh`, `ow`, `pt`, `pl` from TensorFlow's
//! padding rules ([`super::padding`]), exactly as for [`super::conv2d`].
//!
//! Backward, for an output gradient `dy`:
//!
//! ```text
//! dK[ky, kx, ci, j] = Σ_{b, oy, ox} x[b, oy·sh + ky − pt, ox·sw + kx − pl, ci] · dy[b, oy, ox, ci·m + j]
//! dx[b, iy, ix, ci] = Σ over (oy, ky), (ox, kx) with oy·sh + ky − pt = iy, ox·sw + kx − pl = ix
//!                     of Σ_j dy[b, oy, ox, ci·m + j] · K[ky, kx, ci, j]
//! dbias[co]         = Σ_{b, oy, ox} dy[b, oy, ox, co]
//! ```
//!
//! Each is computed only if the tape asks for it. A depthwise layer does
//! `kh·kw` multiply-adds per output value, against `kh·kw·c` for a full
//! convolution: it is bound by memory traffic, not arithmetic, so it is not
//! written as a GEMM (one column per channel would leave the GEMM nothing to
//! reuse). `cpu.rs` holds the plain reference loops; `direct/` the f32
//! path, vectorised along the contiguous channel axis of NHWC; `cuda.rs`
//! launches `kernels/src/depthwise_conv2d.cu`.
//!
//! Tests: gradient checks `depthwise_conv2d_*`
//! (`tests/tests/gradcheck_window.rs`); reference against Keras
//! `depthwise_conv2d_matches_keras` (`tests/tests/reference_window.rs`) and
//! `direct_path_matches_the_reference` (`tests.rs`: `direct/` against
//! `cpu.rs`); GPU parity cases "depthwise_conv2d 3x3 s1 same + bias, 19 channels",
//! "depthwise_conv2d 3x3 s2 same, odd sizes, m=2" and "depthwise_conv2d 3x3 s2
//! explicit (0, 1, 0, 1) (MobileNet's)" (`tests/tests/cuda_parity.rs`).

mod cpu;
mod cuda;
mod direct;
#[cfg(test)]
mod tests;

use super::padding::{window_2d, Padding};
use crate::autograd::record;
use crate::error::{Error, Result};
use crate::tensor::{mixed_devices, same_kind, Storage, Tensor};
use cpu::Geometry;

const OP: &str = "depthwise_conv2d";

/// Depthwise convolution of an NHWC input with a Keras kernel `[kh, kw, c, m]`
/// and an optional bias `[c·m]`, at `stride` (rows, columns) with TensorFlow
/// `padding`. Returns `[n, oh, ow, c·m]`.
///
/// Errors (never panics) on: ranks other than 4/4/1, a kernel whose channels
/// differ from the input's, a bias whose length is not `c·m`, any zero-sized
/// dimension, a zero stride, a window larger than the padded input, or
/// operands of different dtypes or devices.
///
/// ```
/// use engine::ops::{depthwise_conv2d, Padding};
/// use engine::Tensor;
/// // One 3×3 image of 2 channels, a 2×2 window of ones per channel.
/// let x = Tensor::from_vec((0..18).map(|v| v as f32).collect(), &[1, 3, 3, 2])?;
/// let k = Tensor::from_vec(vec![1.0f32; 8], &[2, 2, 2, 1])?;
/// let y = depthwise_conv2d(&x, &k, None, (1, 1), Padding::Valid)?;
/// assert_eq!(y.shape(), &[1, 2, 2, 2]);
/// // Channel 0 of the top-left window: 0 + 2 + 6 + 8.
/// assert_eq!(y.to_vec_f32()[0], 16.0);
/// # Ok::<(), engine::Error>(())
/// ```
pub fn depthwise_conv2d(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    let g = geometry(x, kernel, bias, stride, padding)?;
    let mut inputs = vec![x, kernel];
    inputs.extend(bias);
    let y = match (x.storage(), kernel.storage()) {
        (Storage::Cpu(xs), Storage::Cpu(ks)) => {
            let bs = bias.map(|b| b.cpu_storage(OP)).transpose()?;
            Storage::Cpu(cpu::forward(xs, ks, bs, &g)?)
        }
        (Storage::Cuda(xs), Storage::Cuda(ks)) => {
            let bs = match bias.map(|b| b.storage()) {
                None => None,
                Some(Storage::Cuda(b)) => Some(b),
                Some(b) => return Err(mixed_devices(OP, x.device(), b.device())),
            };
            Storage::Cuda(cuda::forward(xs, ks, bs, &g)?)
        }
        (xs, ks) => return Err(mixed_devices(OP, xs.device(), ks.device())),
    };
    let (x_saved, k_saved) = (x.clone(), kernel.clone());
    let has_bias = bias.is_some();
    Ok(record(
        OP,
        y,
        vec![g.n, g.oh, g.ow, g.c * g.m],
        &inputs,
        Box::new(move |dy, needs| {
            same_kind(OP, &x_saved, dy)?;
            let need_db = has_bias && needs.get(2).copied().unwrap_or(false);
            let needed = (needs[0], needs[1], need_db);
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
                grads.push(wrap(db, &[g.c * g.m])?);
            }
            Ok(grads)
        }),
    ))
}

/// `relu6(depthwise_conv2d(x, kernel, bias))`, equal to the two ops bit for
/// bit (MobileNet's and EfficientNet-Lite's depthwise layers are followed
/// by ReLU6). On the CPU in f32, when nothing needs a gradient, each output
/// row is clamped as soon as it is computed, while it is in cache, instead
/// of in a pass of its own over the output; otherwise (a gradient to
/// compute, f64, a GPU) it is the two ops. Errors as [`depthwise_conv2d`].
pub fn depthwise_conv2d_relu6(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    if !super::fused_inference_applies(&[Some(x), Some(kernel), bias]) {
        return super::relu6(&depthwise_conv2d(x, kernel, bias, stride, padding)?);
    }
    let g = geometry(x, kernel, bias, stride, padding)?;
    let b = bias.map(|b| b.as_slice::<f32>()).transpose()?;
    let y = direct::forward(x.as_slice::<f32>()?, kernel.as_slice::<f32>()?, b, &g, true);
    Tensor::from_vec(y, &[g.n, g.oh, g.ow, g.c * g.m])
}

/// Checks every operand and resolves the output size and padding.
fn geometry(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: Padding,
) -> Result<Geometry> {
    same_kind(OP, x, kernel)?;
    let [n, h, w, c] = x.dims(OP, "input (NHWC [n, h, w, c])")?;
    let [kh, kw, kc, m] = kernel.dims(OP, "kernel ([kh, kw, c, depth_multiplier])")?;
    if n == 0 || h == 0 || w == 0 || c == 0 {
        return Err(Error::shape(
            OP,
            format!("input {:?} has a zero-sized dimension", x.shape()),
        ));
    }
    if kh == 0 || kw == 0 || kc == 0 || m == 0 {
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
                 (HINT: depthwise kernels are [kh, kw, c, depth_multiplier], inputs NHWC)",
                x.shape(),
                kernel.shape()
            ),
        ));
    }
    if let Some(b) = bias {
        same_kind(OP, x, b)?;
        if b.shape() != [c * m] {
            return Err(Error::shape(
                OP,
                format!(
                    "bias {:?} does not match kernel {:?}: expected [{}] \
                     (one per output channel, c·depth_multiplier)",
                    b.shape(),
                    kernel.shape(),
                    c * m
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
    Ok(Geometry {
        n,
        h,
        w,
        c,
        m,
        kh,
        kw,
        sh: stride.0,
        sw: stride.1,
        oh: win.out_h,
        ow: win.out_w,
        pad_top: win.pad_top,
        pad_left: win.pad_left,
    })
}
