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
//!
//! `cpu.rs` folds and sums in f64 (the reference); `cuda.rs` runs
//! `kernels/src/batch_norm.cu`, folding in f32 on the device.
//!
//! Tests: gradient checks `batch_norm_inference` and `batch_norm_train`
//! (`tests/tests/gradcheck.rs`); against Keras `batch_norm_inference_matches_keras`
//! and `batch_norm_training_matches_keras_with_moving_update`
//! (`tests/tests/reference_ops.rs`); GPU parity cases "batch_norm inference"
//! and "batch_norm training" (`tests/tests/cuda_parity.rs`), and
//! `batch_norm_layer_updates_moving_statistics_on_the_gpu_as_on_the_cpu`.

mod cpu;
mod cuda;

use crate::autograd::{record, BackwardFn};
use crate::cuda::CudaStorage;
use crate::error::{Error, Result};
use crate::tensor::{mixed_devices, same_kind, CpuStorage, Storage, Tensor};

/// The fold of the forward pass, kept for the backward on the device that
/// made it.
enum Folded {
    Cpu(cpu::Folded),
    Cuda(cuda::Folded),
}

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
    check(OP, x, &vectors, eps)?;
    let (y, folded) = match x.storage() {
        Storage::Cpu(xs) => {
            let (y, f) = cpu::inference(xs, [gamma, beta, moving_mean, moving_var], eps)?;
            (Storage::Cpu(y), Folded::Cpu(f))
        }
        Storage::Cuda(xs) => {
            let (y, f) = cuda::inference(xs, [gamma, beta, moving_mean, moving_var], eps)?;
            (Storage::Cuda(y), Folded::Cuda(f))
        }
    };
    let inputs = [x, gamma, beta, moving_mean, moving_var];
    let backward = backward(OP, folded, x.clone(), INFERENCE);
    Ok(record(OP, y, x.shape().to_vec(), &inputs, backward))
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
    let ([y, mean, var], folded) = match x.storage() {
        Storage::Cpu(xs) => {
            let (y, m, v, f) = cpu::train(xs, gamma, beta, eps)?;
            ([y, m, v].map(Storage::Cpu), Folded::Cpu(f))
        }
        Storage::Cuda(xs) => {
            let (y, m, v, f) = cuda::train(xs, gamma, beta, eps)?;
            ([y, m, v].map(Storage::Cuda), Folded::Cuda(f))
        }
    };
    let backward = backward(OP, folded, x.clone(), TRAIN);
    let y = record(OP, y, x.shape().to_vec(), &[x, gamma, beta], backward);
    let vector = |s| Tensor::from_storage(s, &[c]);
    Ok((y, vector(mean)?, vector(var)?))
}

/// A device's backward rule: (x, dy, fold, needs) -> the gradients asked for.
type Rule<S, F> = fn(&S, &S, &F, &[bool]) -> Result<Vec<Option<S>>>;
/// One mode's rules: the CPU's and the GPU's.
type Rules = (
    Rule<CpuStorage, cpu::Folded>,
    Rule<CudaStorage, cuda::Folded>,
);
const INFERENCE: Rules = (cpu::inference_backward, cuda::inference_backward);
const TRAIN: Rules = (cpu::train_backward, cuda::train_backward);

/// The tape entry of either mode: the rule of the device that ran the
/// forward, then each gradient shaped (dx as x, the others `[c]`).
fn backward(op: &'static str, folded: Folded, x: Tensor, rules: Rules) -> BackwardFn {
    Box::new(move |dy, needs| {
        let grads: Vec<Option<Storage>> = match (&folded, x.storage(), dy.storage()) {
            (Folded::Cpu(f), Storage::Cpu(xs), Storage::Cpu(dys)) => {
                let g = rules.0(xs, dys, f, needs)?;
                g.into_iter().map(|g| g.map(Storage::Cpu)).collect()
            }
            (Folded::Cuda(f), Storage::Cuda(xs), Storage::Cuda(dys)) => {
                let g = rules.1(xs, dys, f, needs)?;
                g.into_iter().map(|g| g.map(Storage::Cuda)).collect()
            }
            (_, xs, dys) => return Err(mixed_devices(op, xs.device(), dys.device())),
        };
        let c = [*x.shape().last().expect("checked: rank >= 2")];
        let shape = |i| if i == 0 { x.shape() } else { &c[..] };
        grads
            .into_iter()
            .enumerate()
            .map(|(i, g)| g.map(|g| Tensor::from_storage(g, shape(i))).transpose())
            .collect()
    })
}
