//! Batch normalisation over the last (channel) axis, as Keras's
//! `BatchNormalization(axis=-1)` on NHWC maps or `[n, c]` features.
//!
//! ```text
//! y = γ · (x − μ) / √(σ² + ε) + β          per channel
//! ```
//!
//! **Inference** ([`batch_norm`]): μ, σ² are the layer's moving statistics,
//! constants here. The whole op folds into one per-channel scale and shift,
//! `s = γ/√(σ²+ε)`, `t = β − μ·s`, `y = x·s + t`. Backward, with
//! x̂ = (x − μ)/√(σ²+ε) and sums over every position of a channel:
//!
//! ```text
//! dx = dy · s      dγ = Σ dy·x̂      dβ = Σ dy
//! dμ = −s · Σ dy   dσ² = −½ · γ · (σ²+ε)^(−3/2) · Σ dy·(x − μ)
//! ```
//!
//! (dμ and dσ² are only computed when asked for: moving statistics are not
//! trainable in Keras, but the rule is exact, and gradient-checked.)
//!
//! **Training** ([`batch_norm_train`]): μ, σ² are the batch's own statistics
//! over all axes but the last, m = number of positions per channel, σ² biased
//! (÷ m, as Keras 3's `ops.moments`). They depend on x, so the backward pass
//! goes through them:
//!
//! ```text
//! dx = γ/(m·√(σ²+ε)) · (m·dy − Σ dy − x̂ · Σ dy·x̂)      dγ = Σ dy·x̂      dβ = Σ dy
//! ```
//!
//! The layer (in the models crate) then updates its moving statistics as
//! Keras does: `moving = moving · momentum + batch · (1 − momentum)` with
//! momentum 0.99, the batch variance biased as returned here. As in Keras, a
//! frozen (non-trainable) BN layer runs in inference mode even while training.

mod cpu;
mod cuda;

use crate::autograd::record;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::tensor::{same_kind, DType, Device, Storage, Tensor};

/// Checks x `[..., c]` (rank ≥ 2, no zero dim), the per-channel vectors and
/// ε; returns c.
fn check(
    op: &'static str,
    x: &Tensor,
    channel_vectors: &[(&str, &Tensor)],
    eps: f64,
) -> Result<usize> {
    for (_, t) in channel_vectors {
        same_kind(op, x, t)?;
    }
    if x.rank() < 2 {
        return Err(Error::shape(
            op,
            format!(
                "input has rank {} ({:?}); expected [batch, ..., channels] with rank >= 2",
                x.rank(),
                x.shape()
            ),
        ));
    }
    if x.numel() == 0 {
        return Err(Error::shape(
            op,
            format!(
                "input {:?} has a zero-sized dim; batch statistics need data",
                x.shape()
            ),
        ));
    }
    let c = x.shape()[x.rank() - 1];
    for (name, t) in channel_vectors {
        if t.shape() != [c] {
            return Err(Error::shape(
                op,
                format!("{name} has shape {:?}; expected [{c}] for input {:?} (one value per channel, the last axis)", t.shape(), x.shape()),
            ));
        }
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::invalid(
            op,
            format!("epsilon is {eps}; it must be finite and >= 0 (Keras default 1e-3)"),
        ));
    }
    Ok(c)
}

/// Inference batch normalisation with the given moving statistics (see the
/// module docs). `x` is `[..., c]`; `gamma`, `beta`, `moving_mean`,
/// `moving_var` are `[c]`.
///
/// ```
/// use engine::{ops, Tensor};
/// let v = |values: &[f32]| Tensor::from_vec(values.to_vec(), &[values.len()]);
/// // Two positions of two channels: y = γ · (x − μ) / √(σ² + ε) + β per channel.
/// let x = Tensor::from_vec(vec![3.0f32, 1.0, -1.0, 2.0], &[2, 2])?;
/// let (gamma, beta) = (v(&[1.0, 2.0])?, v(&[0.0, 1.0])?);
/// let (mean, var) = (v(&[1.0, 0.0])?, v(&[4.0, 1.0])?);
/// let y = ops::batch_norm(&x, &gamma, &beta, &mean, &var, 0.0)?;
/// assert_eq!(y.to_vec_f32(), [1.0, 3.0, -1.0, 5.0]); // (3 − 1)/2, 2·1 + 1, ...
/// # Ok::<(), engine::Error>(())
/// ```
pub fn batch_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    moving_mean: &Tensor,
    moving_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    const OP: &str = "batch_norm";
    let vectors = [
        ("gamma", gamma),
        ("beta", beta),
        ("moving_mean", moving_mean),
        ("moving_var", moving_var),
    ];
    let c = check(OP, x, &vectors, eps)?;
    if x.device() != Device::Cpu {
        return inference_cuda(x, gamma, beta, moving_mean, moving_var, eps);
    }
    let (g, b, mean, var) = (
        gamma.to_vec_f64(),
        beta.to_vec_f64(),
        moving_mean.to_vec_f64(),
        moving_var.to_vec_f64(),
    );
    if let Some(j) = (0..c).find(|&j| (var[j] + eps).is_nan() || var[j] + eps <= 0.0) {
        return Err(Error::invalid(
            OP,
            format!(
                "moving_var[{j}] + epsilon = {} is not > 0; the variance must be non-negative",
                var[j] + eps
            ),
        ));
    }
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let scale: Vec<f64> = g.iter().zip(&inv).map(|(g, i)| g * i).collect();
    let shift: Vec<f64> = (0..c).map(|j| b[j] - mean[j] * scale[j]).collect();
    let y = match x.dtype() {
        DType::F32 => f32::wrap(cpu::affine(x.as_slice::<f32>()?, &scale, &shift)),
        DType::F64 => f64::wrap(cpu::affine(x.as_slice::<f64>()?, &scale, &shift)),
    };
    let x_saved = x.clone();
    Ok(record(
        OP,
        Storage::Cpu(y),
        x.shape().to_vec(),
        &[x, gamma, beta, moving_mean, moving_var],
        Box::new(move |dy, needs| {
            let (sum_dy, sum_dy_xc) = match x_saved.dtype() {
                DType::F32 => {
                    cpu::channel_sums(x_saved.as_slice::<f32>()?, dy.as_slice::<f32>()?, &mean)
                }
                DType::F64 => {
                    cpu::channel_sums(x_saved.as_slice::<f64>()?, dy.as_slice::<f64>()?, &mean)
                }
            };
            let dtype = x_saved.dtype();
            let vector = |v: Vec<f64>| channel_tensor(v, dtype);
            let dx = if needs[0] {
                let zero = vec![0.0; c];
                let dx = match dtype {
                    DType::F32 => f32::wrap(cpu::affine(dy.as_slice::<f32>()?, &scale, &zero)),
                    DType::F64 => f64::wrap(cpu::affine(dy.as_slice::<f64>()?, &scale, &zero)),
                };
                Some(Tensor::from_storage(Storage::Cpu(dx), x_saved.shape())?)
            } else {
                None
            };
            let dgamma = (0..c).map(|j| sum_dy_xc[j] * inv[j]).collect();
            let dmean = (0..c).map(|j| -scale[j] * sum_dy[j]).collect();
            let dvar = (0..c)
                .map(|j| -0.5 * g[j] * inv[j].powi(3) * sum_dy_xc[j])
                .collect();
            Ok(vec![
                dx,
                needs[1].then(|| vector(dgamma)).transpose()?,
                needs[2].then(|| vector(sum_dy.clone())).transpose()?,
                needs[3].then(|| vector(dmean)).transpose()?,
                needs[4].then(|| vector(dvar)).transpose()?,
            ])
        }),
    ))
}

/// A `[c]` tensor of `dtype` from f64 values.
fn channel_tensor(v: Vec<f64>, dtype: DType) -> Result<Tensor> {
    let c = v.len();
    Tensor::from_vec(v, &[c])?.to_dtype(dtype)
}

/// [`batch_norm`] on the GPU: fold and scale-shift in f32 on the device
/// (see `cuda.rs`). Gradients: dx, dγ and dβ; the moving statistics are
/// never trainable in Keras and asking for their gradients on the GPU is an
/// error. Unlike the CPU, the GPU does not check `moving_var + ε > 0` (that
/// would copy the variance to the host at every layer).
fn inference_cuda(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    moving_mean: &Tensor,
    moving_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    const OP: &str = "batch_norm";
    let (xs, mean) = (x.cuda_storage(OP)?, moving_mean.cuda_storage(OP)?);
    let folded = cuda::fold(
        gamma.cuda_storage(OP)?.slice(),
        beta.cuda_storage(OP)?.slice(),
        mean.slice(),
        moving_var.cuda_storage(OP)?.slice(),
        eps,
        xs.device(),
    )?;
    let y = cuda::scale_shift(xs, &folded)?;
    let (x_saved, mean_saved) = (x.clone(), moving_mean.clone());
    Ok(record(
        OP,
        Storage::Cuda(y),
        x.shape().to_vec(),
        &[x, gamma, beta, moving_mean, moving_var],
        Box::new(move |dy, needs| {
            if needs[3] || needs[4] {
                return Err(Error::unsupported(
                    OP,
                    "gradients of the moving statistics are computed on the CPU only (they are \
                     never trainable in Keras); freeze moving_mean and moving_variance",
                ));
            }
            let dys = dy.cuda_storage(OP)?;
            let dx = needs[0]
                .then(|| cuda::channel_scale(dys, &folded.scale))
                .transpose()?;
            let (dbeta, dgamma) = if needs[1] || needs[2] {
                let xs = x_saved.cuda_storage(OP)?;
                let mean = mean_saved.cuda_storage(OP)?.slice();
                let (db, dg) = cuda::channel_sums(xs, dys, mean, &folded.inv_std)?;
                (Some(db), Some(dg))
            } else {
                (None, None)
            };
            let wrap = |s: Option<_>, shape: &[usize]| {
                s.map(|s| Tensor::from_storage(Storage::Cuda(s), shape))
                    .transpose()
            };
            let dev = dys.device();
            let vector = |v: Option<crate::cuda::cudarc::driver::CudaSlice<f32>>| {
                v.map(|v| crate::cuda::CudaStorage::new(v, dev))
            };
            let c = [*x_saved.shape().last().expect("rank >= 2")];
            Ok(vec![
                wrap(dx, x_saved.shape())?,
                wrap(vector(dgamma).filter(|_| needs[1]), &c)?,
                wrap(vector(dbeta).filter(|_| needs[2]), &c)?,
                None,
                None,
            ])
        }),
    ))
}

/// [`batch_norm_train`] on the GPU: the batch statistics by Welford's
/// update (`cuda.rs`), then the same fold and scale-shift as inference.
/// Unlike the CPU, ε = 0 with a constant channel is not detected (it gives
/// inf/NaN instead of an error).
fn train_cuda(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "batch_norm_train";
    let xs = x.cuda_storage(OP)?;
    let dev = xs.device();
    let c = *x.shape().last().expect("checked: rank >= 2");
    let (mean, var) = cuda::moments(xs, c)?;
    let gs = gamma.cuda_storage(OP)?;
    let folded = cuda::fold(
        gs.slice(),
        beta.cuda_storage(OP)?.slice(),
        &mean,
        &var,
        eps,
        dev,
    )?;
    let y = cuda::scale_shift(xs, &folded)?;
    // The statistics go to the layer's moving averages; the backward keeps its own copy of the mean.
    let copy = |v: &crate::cuda::cudarc::driver::CudaSlice<f32>| {
        dev.stream()
            .clone_dtod(v)
            .map_err(dev.error("copying batch statistics"))
    };
    let mean_for_backward = copy(&mean)?;
    let batch_mean = Tensor::from_storage(
        Storage::Cuda(crate::cuda::CudaStorage::new(mean, dev)),
        &[c],
    )?;
    let batch_var =
        Tensor::from_storage(Storage::Cuda(crate::cuda::CudaStorage::new(var, dev)), &[c])?;
    let (x_saved, gamma_saved) = (x.clone(), gamma.clone());
    let y = record(
        OP,
        Storage::Cuda(y),
        x.shape().to_vec(),
        &[x, gamma, beta],
        Box::new(move |dy, needs| {
            let (xs, dys) = (x_saved.cuda_storage(OP)?, dy.cuda_storage(OP)?);
            let dev = xs.device();
            let (dbeta, dgamma) = cuda::channel_sums(xs, dys, &mean_for_backward, &folded.inv_std)?;
            let dx = if needs[0] {
                let rule = cuda::TrainBackward {
                    x: xs,
                    mean: &mean_for_backward,
                    inv_std: &folded.inv_std,
                    gamma: gamma_saved.cuda_storage(OP)?.slice(),
                };
                Some(rule.dx(dys, &dbeta, &dgamma)?)
            } else {
                None
            };
            let vector = |v| {
                Tensor::from_storage(Storage::Cuda(crate::cuda::CudaStorage::new(v, dev)), &[c])
            };
            Ok(vec![
                dx.map(|d| Tensor::from_storage(Storage::Cuda(d), x_saved.shape()))
                    .transpose()?,
                needs[1].then(|| vector(dgamma)).transpose()?,
                needs[2].then(|| vector(dbeta)).transpose()?,
            ])
        }),
    );
    Ok((y, batch_mean, batch_var))
}

/// Training-mode batch normalisation: normalises with the batch's own
/// statistics over all axes but the last and returns `(y, batch_mean,
/// batch_var)` (biased variance, as Keras) for the layer's moving-average
/// update `moving = moving · 0.99 + batch · 0.01` (see the module docs).
/// Gradients flow to x, gamma and beta through y; the returned statistics
/// carry no gradient.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "batch_norm_train";
    let c = check(OP, x, &[("gamma", gamma), ("beta", beta)], eps)?;
    if x.device() != Device::Cpu {
        return train_cuda(x, gamma, beta, eps);
    }
    let (mean, var) = match x.dtype() {
        DType::F32 => cpu::moments(x.as_slice::<f32>()?, c),
        DType::F64 => cpu::moments(x.as_slice::<f64>()?, c),
    };
    if eps == 0.0 {
        if let Some(j) = (0..c).find(|&j| var[j] == 0.0) {
            return Err(Error::invalid(OP, format!("channel {j} is constant over the batch and epsilon is 0: division by zero; use epsilon > 0")));
        }
    }
    let (g, b) = (gamma.to_vec_f64(), beta.to_vec_f64());
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let scale: Vec<f64> = g.iter().zip(&inv).map(|(g, i)| g * i).collect();
    let shift: Vec<f64> = (0..c).map(|j| b[j] - mean[j] * scale[j]).collect();
    let y = match x.dtype() {
        DType::F32 => f32::wrap(cpu::affine(x.as_slice::<f32>()?, &scale, &shift)),
        DType::F64 => f64::wrap(cpu::affine(x.as_slice::<f64>()?, &scale, &shift)),
    };
    let dtype = x.dtype();
    let batch_mean = channel_tensor(mean.clone(), dtype)?;
    let batch_var = channel_tensor(var, dtype)?;
    let x_saved = x.clone();
    let y = record(
        OP,
        Storage::Cpu(y),
        x.shape().to_vec(),
        &[x, gamma, beta],
        Box::new(move |dy, needs| {
            let (sum_dy, sum_dy_xc) = match dtype {
                DType::F32 => {
                    cpu::channel_sums(x_saved.as_slice::<f32>()?, dy.as_slice::<f32>()?, &mean)
                }
                DType::F64 => {
                    cpu::channel_sums(x_saved.as_slice::<f64>()?, dy.as_slice::<f64>()?, &mean)
                }
            };
            let sum_dy_xhat: Vec<f64> = (0..c).map(|j| sum_dy_xc[j] * inv[j]).collect();
            let dx = if needs[0] {
                let dx = match dtype {
                    DType::F32 => f32::wrap(cpu::train_backward(
                        x_saved.as_slice::<f32>()?,
                        dy.as_slice::<f32>()?,
                        &g,
                        &mean,
                        &inv,
                        &sum_dy,
                        &sum_dy_xhat,
                    )),
                    DType::F64 => f64::wrap(cpu::train_backward(
                        x_saved.as_slice::<f64>()?,
                        dy.as_slice::<f64>()?,
                        &g,
                        &mean,
                        &inv,
                        &sum_dy,
                        &sum_dy_xhat,
                    )),
                };
                Some(Tensor::from_storage(Storage::Cpu(dx), x_saved.shape())?)
            } else {
                None
            };
            Ok(vec![
                dx,
                needs[1]
                    .then(|| channel_tensor(sum_dy_xhat.clone(), dtype))
                    .transpose()?,
                needs[2]
                    .then(|| channel_tensor(sum_dy.clone(), dtype))
                    .transpose()?,
            ])
        }),
    );
    Ok((y, batch_mean, batch_var))
}
