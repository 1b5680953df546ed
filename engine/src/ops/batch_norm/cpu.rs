//! CPU reference for batch normalisation over the last axis. `x` is seen as
//! rows of `c` channels; the fold, the statistics and the channel sums run
//! in f64 whatever the element type, and only y and dx are rounded to it.

use crate::element::Element;
use crate::error::{Error, Result};
use crate::map_cpu;
use crate::ops::parallel;
use crate::tensor::{CpuStorage, DType, Tensor};

/// The normalisation folded into one scale and shift per channel, with what
/// the backward rules need; every vector is `[c]`.
pub struct Folded {
    /// γ.
    pub gamma: Vec<f64>,
    /// μ: the moving mean (inference) or the batch mean (training).
    pub mean: Vec<f64>,
    /// 1/√(σ²+ε).
    pub inv_std: Vec<f64>,
    /// s = γ/√(σ²+ε).
    pub scale: Vec<f64>,
    /// t = β − μ·s.
    pub shift: Vec<f64>,
}

impl Folded {
    /// Folds γ, β, μ, σ² and ε into `s` and `t`.
    pub fn new(gamma: Vec<f64>, beta: &[f64], mean: Vec<f64>, var: &[f64], eps: f64) -> Folded {
        let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        let scale: Vec<f64> = gamma.iter().zip(&inv_std).map(|(g, i)| g * i).collect();
        let shift = (0..scale.len())
            .map(|j| beta[j] - mean[j] * scale[j])
            .collect();
        Folded {
            gamma,
            mean,
            inv_std,
            scale,
            shift,
        }
    }

    /// y = x · s + t per channel.
    pub fn apply(&self, x: &CpuStorage) -> CpuStorage {
        map_cpu!(x, |v: T| affine(v, &self.scale, &self.shift))
    }
}

/// The inference forward: refuses `moving_var + ε ≤ 0`, folds, and returns
/// `(y, fold)`. The vectors are `[γ, β, moving_mean, moving_var]`.
pub fn inference(x: &CpuStorage, vectors: [&Tensor; 4], eps: f64) -> Result<(CpuStorage, Folded)> {
    let [gamma, beta, mean, var] = vectors.map(Tensor::to_vec_f64);
    if let Some((j, v)) = var
        .iter()
        .map(|v| v + eps)
        .enumerate()
        .find(|(_, v)| v.is_nan() || *v <= 0.0)
    {
        return Err(Error::invalid(
            "batch_norm",
            format!(
                "moving_var[{j}] + epsilon = {v} is not > 0; the variance must be non-negative"
            ),
        ));
    }
    let f = Folded::new(gamma, &beta, mean, &var, eps);
    Ok((f.apply(x), f))
}

/// The training forward: the batch's mean and biased variance, a refusal
/// of a constant channel when ε = 0, the fold; returns `(y, batch_mean,
/// batch_var, fold)`, the statistics rounded to x's element type.
pub fn train(
    x: &CpuStorage,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(CpuStorage, CpuStorage, CpuStorage, Folded)> {
    let (mean, var) = match x {
        CpuStorage::F32(v) => moments(v, gamma.numel()),
        CpuStorage::F64(v) => moments(v, gamma.numel()),
    };
    if let Some(j) = var.iter().position(|&v| eps == 0.0 && v == 0.0) {
        return Err(Error::invalid("batch_norm_train", format!("channel {j} is constant over the batch and epsilon is 0: division by zero; use epsilon > 0")));
    }
    let f = Folded::new(gamma.to_vec_f64(), &beta.to_vec_f64(), mean, &var, eps);
    let dtype = x.dtype();
    Ok((
        f.apply(x),
        round(f.mean.clone(), dtype),
        round(var, dtype),
        f,
    ))
}

/// The inference backward of the module docs: `[dx, dγ, dβ, dμ, dσ²]`, each
/// only where `needs` asks for it.
pub fn inference_backward(
    x: &CpuStorage,
    dy: &CpuStorage,
    f: &Folded,
    needs: &[bool],
) -> Result<Vec<Option<CpuStorage>>> {
    let c = f.mean.len();
    let (sum_dy, sum_dy_xc) = channel_sums(x, dy, &f.mean)?;
    let zero = vec![0.0; c];
    let dx = needs[0].then(|| map_cpu!(dy, |g: T| affine(g, &f.scale, &zero)));
    let dgamma = (0..c).map(|j| sum_dy_xc[j] * f.inv_std[j]).collect();
    let dmean = (0..c).map(|j| -f.scale[j] * sum_dy[j]).collect();
    let dvar = (0..c)
        .map(|j| -0.5 * f.gamma[j] * f.inv_std[j].powi(3) * sum_dy_xc[j])
        .collect();
    let vectors = [dgamma, sum_dy, dmean, dvar];
    Ok(with_dx(dx, vectors, &needs[1..], x.dtype()))
}

/// The training backward of the module docs: `[dx, dγ, dβ]`, each only where
/// `needs` asks for it.
pub fn train_backward(
    x: &CpuStorage,
    dy: &CpuStorage,
    f: &Folded,
    needs: &[bool],
) -> Result<Vec<Option<CpuStorage>>> {
    let c = f.mean.len();
    let (sum_dy, sum_dy_xc) = channel_sums(x, dy, &f.mean)?;
    let sum_dy_xhat: Vec<f64> = (0..c).map(|j| sum_dy_xc[j] * f.inv_std[j]).collect();
    let dx = match (needs[0], x, dy) {
        (false, _, _) => None,
        (true, CpuStorage::F32(x), CpuStorage::F32(dy)) => {
            Some(f32::wrap(train_dx(x, dy, f, &sum_dy, &sum_dy_xhat)))
        }
        (true, CpuStorage::F64(x), CpuStorage::F64(dy)) => {
            Some(f64::wrap(train_dx(x, dy, f, &sum_dy, &sum_dy_xhat)))
        }
        _ => return Err(dtype_mismatch()),
    };
    Ok(with_dx(dx, [sum_dy_xhat, sum_dy], &needs[1..], x.dtype()))
}

/// `dx` followed by the asked-for `[c]` vectors, rounded to `dtype`.
fn with_dx<const N: usize>(
    dx: Option<CpuStorage>,
    vectors: [Vec<f64>; N],
    needs: &[bool],
    dtype: DType,
) -> Vec<Option<CpuStorage>> {
    let round = |v: Vec<f64>| match dtype {
        DType::F32 => CpuStorage::F32(v.into_iter().map(|a| a as f32).collect()),
        DType::F64 => CpuStorage::F64(v),
    };
    let rest = vectors
        .into_iter()
        .zip(needs)
        .map(|(v, &n)| n.then(|| round(v)));
    std::iter::once(dx).chain(rest).collect()
}

/// A `[c]` vector of f64 rounded to `dtype`.
fn round(v: Vec<f64>, dtype: DType) -> CpuStorage {
    match dtype {
        DType::F32 => CpuStorage::F32(v.into_iter().map(|a| a as f32).collect()),
        DType::F64 => CpuStorage::F64(v),
    }
}

fn dtype_mismatch() -> Error {
    Error::dtype("batch_norm", "gradient dtype differs from input dtype")
}

/// Per-channel mean and biased variance (Σ(x − mean)² / rows), two passes.
fn moments<T: Element>(x: &[T], c: usize) -> (Vec<f64>, Vec<f64>) {
    let rows = (x.len() / c) as f64;
    let mut mean = vec![0f64; c];
    for row in x.chunks(c) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v.to_f64();
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows);
    let mut var = vec![0f64; c];
    for row in x.chunks(c) {
        for ((s, &v), &m) in var.iter_mut().zip(row).zip(&mean) {
            let d = v.to_f64() - m;
            *s += d * d;
        }
    }
    var.iter_mut().for_each(|s| *s /= rows);
    (mean, var)
}

/// y = x · scale + shift per channel.
fn affine<T: Element>(x: &[T], scale: &[f64], shift: &[f64]) -> Vec<T> {
    let scale_shift: Vec<(T, T)> = scale
        .iter()
        .zip(shift)
        .map(|(&s, &t)| (T::from_f64(s), T::from_f64(t)))
        .collect();
    parallel::zip_rows(x, &scale_shift, |v, &(s, t)| v * s + t)
}

/// Per-channel Σ dy and Σ dy · (x − center).
fn channel_sums(x: &CpuStorage, dy: &CpuStorage, center: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
    match (x, dy) {
        (CpuStorage::F32(x), CpuStorage::F32(dy)) => Ok(channel_sums_typed(x, dy, center)),
        (CpuStorage::F64(x), CpuStorage::F64(dy)) => Ok(channel_sums_typed(x, dy, center)),
        _ => Err(dtype_mismatch()),
    }
}

fn channel_sums_typed<T: Element>(x: &[T], dy: &[T], center: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let c = center.len();
    let mut sum_dy = vec![0f64; c];
    let mut sum_dy_xc = vec![0f64; c];
    for (row, grow) in x.chunks(c).zip(dy.chunks(c)) {
        for j in 0..c {
            let g = grow[j].to_f64();
            sum_dy[j] += g;
            sum_dy_xc[j] += g * (row[j].to_f64() - center[j]);
        }
    }
    (sum_dy, sum_dy_xc)
}

/// Training-mode dx = γ·inv/m · (m·dy − Σdy − x̂ · Σ(dy·x̂)), with
/// x̂ = (x − mean)·inv and m the number of rows.
fn train_dx<T: Element>(
    x: &[T],
    dy: &[T],
    f: &Folded,
    sum_dy: &[f64],
    sum_dy_xhat: &[f64],
) -> Vec<T> {
    let (gamma, mean, inv) = (&f.gamma, &f.mean, &f.inv_std);
    let c = mean.len();
    let m = (x.len() / c) as f64;
    let mut dx = Vec::with_capacity(x.len());
    for (row, grow) in x.chunks(c).zip(dy.chunks(c)) {
        for j in 0..c {
            let xhat = (row[j].to_f64() - mean[j]) * inv[j];
            let v =
                gamma[j] * inv[j] / m * (m * grow[j].to_f64() - sum_dy[j] - xhat * sum_dy_xhat[j]);
            dx.push(T::from_f64(v));
        }
    }
    dx
}
