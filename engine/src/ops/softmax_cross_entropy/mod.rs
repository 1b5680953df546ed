//! Softmax along the last axis, and the fused softmax cross-entropy loss.
//!
//! Softmax: yⱼ = exp(xⱼ − m) / Σₖ exp(xₖ − m) with m = maxₖ xₖ (subtracting
//! the max changes nothing mathematically and keeps every exponent ≤ 0).
//! Backward: dxⱼ = yⱼ (dyⱼ − Σₖ dyₖ yₖ).
//!
//! Cross-entropy of logits `[n, c]` against integer labels, the mean over the
//! batch (Keras `SparseCategoricalCrossentropy(from_logits=True)`):
//!
//! ```text
//! L = (1/n) Σᵢ (log Σⱼ exp(xᵢⱼ) − xᵢ,labelᵢ)          (log-sum-exp with max subtraction)
//! ∂L/∂xᵢⱼ = (softmax(xᵢ)ⱼ − [j = labelᵢ]) / n
//! ```
//!
//! Fused, the loss never takes the log of a probability that underflowed to
//! 0, so it stays finite for logits in the thousands.
//!
//! Tests: gradient checks `softmax`, `softmax_cross_entropy` and
//! `softmax_cross_entropy_large_logits` (`tests/tests/gradcheck.rs`); reference
//! against Keras `softmax_cross_entropy_matches_keras` and
//! `cross_entropy_of_huge_logits_is_exact` (`tests/tests/reference_ops.rs`);
//! GPU parity cases "softmax" and "softmax_cross_entropy"
//! (`tests/tests/cuda_parity.rs`).

mod cpu;
mod cuda;

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::map_cpu;
use crate::tensor::{mixed_devices, CpuStorage, DType, Storage, Tensor};

/// Fused softmax + cross-entropy of `logits` `[n, c]` against `labels`
/// (one class index per row), the mean over the batch, as a scalar.
///
/// Errors if the logits are not rank 2 or have a zero dim, if
/// `labels.len() != n`, if a label is `>= c`, or if a logit is NaN or ±inf
/// (a diverged model: lower the learning rate).
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<Tensor> {
    const OP: &str = "softmax_cross_entropy";
    let [n, c] = logits.dims(OP, "logits")?;
    if n == 0 || c == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "logits have shape {:?}; need at least one row and one class",
                logits.shape()
            ),
        ));
    }
    if labels.len() != n {
        return Err(Error::shape(
            OP,
            format!(
                "{} labels for logits of shape {:?}; expected one label per row ({n})",
                labels.len(),
                logits.shape()
            ),
        ));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= c) {
        return Err(Error::invalid(
            OP,
            format!("label {l} at row {i} is out of range for {c} classes (logits {:?}); labels must be in 0..{c}", logits.shape()),
        ));
    }
    logits.check_finite(OP, "logits")?;
    if let Storage::Cuda(xs) = logits.storage() {
        let (loss, probs, labels) = cuda::cross_entropy(xs, labels, c)?;
        return Ok(record(
            OP,
            Storage::Cuda(loss),
            vec![],
            &[logits],
            Box::new(move |dy, _| {
                let dx = cuda::cross_entropy_backward(&probs, &labels, dy.cuda_storage(OP)?, c)?;
                Ok(vec![Some(Tensor::from_storage(
                    Storage::Cuda(dx),
                    &[n, c],
                )?)])
            }),
        ));
    }
    let (loss, probs) = match logits.storage() {
        Storage::Cpu(CpuStorage::F32(v)) => {
            let (l, p) = cpu::cross_entropy(v, labels, c);
            (l, CpuStorage::F32(p))
        }
        Storage::Cpu(CpuStorage::F64(v)) => {
            let (l, p) = cpu::cross_entropy(v, labels, c);
            (l, CpuStorage::F64(p))
        }
        Storage::Cuda(_) => unreachable!("the GPU returned above"),
    };
    let loss = Storage::Cpu(match logits.dtype() {
        DType::F32 => CpuStorage::F32(vec![loss as f32]),
        DType::F64 => CpuStorage::F64(vec![loss]),
    });
    let labels = labels.to_vec();
    Ok(record(
        OP,
        loss,
        vec![],
        &[logits],
        Box::new(move |dy, _| {
            let g = dy.item()?;
            let dx = map_cpu!(&probs, |p: T| cpu::cross_entropy_backward(p, &labels, c, g));
            Ok(vec![Some(Tensor::from_storage(Storage::Cpu(dx), &[n, c])?)])
        }),
    ))
}

/// Softmax along the last axis (any rank ≥ 1). Errors on a scalar or an
/// empty last axis (no distribution over zero classes).
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let Some(&c) = x.shape().last() else {
        return Err(Error::shape(
            "softmax",
            "input is a scalar (shape []); softmax runs along the last axis",
        ));
    };
    if c == 0 {
        return Err(Error::shape(
            "softmax",
            format!(
                "input {:?} has an empty last axis; softmax needs at least one class",
                x.shape()
            ),
        ));
    }
    let y = match x.storage() {
        Storage::Cpu(xs) => Storage::Cpu(map_cpu!(xs, |v: T| cpu::softmax(v, c))),
        Storage::Cuda(xs) => Storage::Cuda(cuda::softmax(xs, c)?),
    };
    // The backward needs y: the CPU keeps a copy, the GPU shares the output's buffer.
    let y = std::sync::Arc::new(y);
    let y_saved = Tensor::new_unchecked(y.clone(), x.shape().to_vec(), None);
    Ok(crate::autograd::record_shared(
        "softmax",
        y,
        x.shape().to_vec(),
        &[x],
        Box::new(move |dy, _| {
            let dx = match (y_saved.storage(), dy.storage()) {
                (Storage::Cpu(CpuStorage::F32(y)), Storage::Cpu(CpuStorage::F32(g))) => {
                    Storage::Cpu(CpuStorage::F32(cpu::softmax_backward(y, g, c)))
                }
                (Storage::Cpu(CpuStorage::F64(y)), Storage::Cpu(CpuStorage::F64(g))) => {
                    Storage::Cpu(CpuStorage::F64(cpu::softmax_backward(y, g, c)))
                }
                (Storage::Cuda(y), Storage::Cuda(g)) => {
                    Storage::Cuda(cuda::softmax_backward(y, g, c)?)
                }
                (Storage::Cpu(_), Storage::Cpu(_)) => {
                    return Err(Error::dtype(
                        "softmax",
                        "gradient dtype differs from input dtype",
                    ))
                }
                (y, g) => return Err(mixed_devices("softmax", y.device(), g.device())),
            };
            Ok(vec![Some(Tensor::from_storage(dx, y_saved.shape())?)])
        }),
    ))
}
