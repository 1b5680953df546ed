//! CUDA path for batch normalisation: `kernels/src/batch_norm.cu`, with x
//! seen as `[rows, c]`. Unlike the CPU (which folds in f64 on the host), the
//! fold `scale = γ/√(σ²+ε)`, `shift = β − μ·scale` runs on the GPU in f32,
//! so no per-layer copy to the host is needed; results differ from the CPU
//! by a few f32 roundings. The moving statistics get no gradient here (they
//! are never trainable in Keras), and two CPU checks are skipped because
//! they would copy to the host at every layer: `moving_var + ε > 0`, and a
//! constant channel with ε = 0 (it gives inf/NaN instead of an error).

use crate::cuda::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use crate::cuda::{launch_1d, CudaDevice, CudaStorage};
use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};
use std::sync::Arc;

/// The folded per-channel normalisation and what its backward needs.
pub struct Folded {
    /// γ/√(σ²+ε).
    pub scale: CudaSlice<f32>,
    /// β − μ·scale.
    pub shift: CudaSlice<f32>,
    /// 1/√(σ²+ε).
    pub inv_std: CudaSlice<f32>,
    /// μ: the moving mean (inference) or a copy of the batch mean (training).
    pub mean: Tensor,
    /// γ.
    pub gamma: Tensor,
}

/// Folds γ, β, μ, σ² into a scale and a shift (`batch_norm_fold_f32`).
fn fold(
    gamma: &Tensor,
    beta: &Tensor,
    mean: Tensor,
    var: &CudaSlice<f32>,
    eps: f64,
    dev: &Arc<CudaDevice>,
) -> Result<Folded> {
    const OP: &str = "batch_norm";
    let c = var.len();
    let (mut scale, mut shift, mut inv_std) = (dev.alloc(c)?, dev.alloc(c)?, dev.alloc(c)?);
    let (eps32, c32) = (eps as f32, c as u32);
    let f = dev.function("batch_norm", "batch_norm_fold_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(gamma.cuda_storage(OP)?.slice())
        .arg(beta.cuda_storage(OP)?.slice())
        .arg(mean.cuda_storage(OP)?.slice())
        .arg(var)
        .arg(&eps32)
        .arg(&mut scale)
        .arg(&mut shift)
        .arg(&mut inv_std)
        .arg(&c32);
    // SAFETY: seven [c] buffers, a float and u32 c; grid-stride over c.
    unsafe { args.launch(launch_1d(c)) }.map_err(dev.error("batch_norm_fold_f32"))?;
    Ok(Folded {
        scale,
        shift,
        inv_std,
        mean,
        gamma: gamma.clone(),
    })
}

/// The inference forward: fold and y. The vectors are `[γ, β,
/// moving_mean, moving_var]`.
pub fn inference(
    x: &CudaStorage,
    vectors: [&Tensor; 4],
    eps: f64,
) -> Result<(CudaStorage, Folded)> {
    let [gamma, beta, mean, var] = vectors;
    let var = var.cuda_storage("batch_norm")?.slice();
    let folded = fold(gamma, beta, mean.clone(), var, eps, x.device())?;
    Ok((scale_shift(x, &folded)?, folded))
}

/// Training forward: the batch statistics (Welford), their fold and y.
/// Returns `(y, batch_mean, batch_var, fold)`; the fold keeps its own copy
/// of the mean, as the statistics go on to the layer's moving averages.
pub fn train(
    x: &CudaStorage,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(CudaStorage, CudaStorage, CudaStorage, Folded)> {
    let dev = x.device();
    let c = gamma.numel();
    let (mean, var) = moments(x, c)?;
    let mean_copy = dev
        .stream()
        .clone_dtod(&mean)
        .map_err(dev.error("copying batch statistics"))?;
    let mean_copy = Tensor::from_storage(Storage::Cuda(CudaStorage::new(mean_copy, dev)), &[c])?;
    let folded = fold(gamma, beta, mean_copy, &var, eps, dev)?;
    let y = scale_shift(x, &folded)?;
    let (mean, var) = (CudaStorage::new(mean, dev), CudaStorage::new(var, dev));
    Ok((y, mean, var, folded))
}

/// The inference backward: `[dx, dγ, dβ, None, None]`, each only where
/// `needs` asks for it; asking for the moving statistics' gradients is an
/// error on the GPU.
pub fn inference_backward(
    x: &CudaStorage,
    dy: &CudaStorage,
    f: &Folded,
    needs: &[bool],
) -> Result<Vec<Option<CudaStorage>>> {
    const OP: &str = "batch_norm";
    if needs[3] || needs[4] {
        return Err(Error::unsupported(
            OP,
            "gradients of the moving statistics are computed on the CPU only (they are \
             never trainable in Keras); freeze moving_mean and moving_variance",
        ));
    }
    let dev = dy.device();
    let dx = needs[0].then(|| channel_scale(dy, &f.scale)).transpose()?;
    let (dbeta, dgamma) = if needs[1] || needs[2] {
        let mean = f.mean.cuda_storage(OP)?.slice();
        let (db, dg) = channel_sums(x, dy, mean, &f.inv_std)?;
        (Some(db), Some(dg))
    } else {
        (None, None)
    };
    let vector = |v: Option<CudaSlice<f32>>, need: bool| {
        v.filter(|_| need).map(|v| CudaStorage::new(v, dev))
    };
    Ok(vec![
        dx,
        vector(dgamma, needs[1]),
        vector(dbeta, needs[2]),
        None,
        None,
    ])
}

/// The training backward: `[dx, dγ, dβ]`, each only where `needs` asks for it.
pub fn train_backward(
    x: &CudaStorage,
    dy: &CudaStorage,
    f: &Folded,
    needs: &[bool],
) -> Result<Vec<Option<CudaStorage>>> {
    const OP: &str = "batch_norm_train";
    let dev = x.device();
    let mean = f.mean.cuda_storage(OP)?.slice();
    let (dbeta, dgamma) = channel_sums(x, dy, mean, &f.inv_std)?;
    let dx = if needs[0] {
        let rule = TrainBackward {
            x,
            mean,
            inv_std: &f.inv_std,
            gamma: f.gamma.cuda_storage(OP)?.slice(),
        };
        Some(rule.dx(dy, &dbeta, &dgamma)?)
    } else {
        None
    };
    let vector = |v, need: bool| need.then(|| CudaStorage::new(v, dev));
    Ok(vec![dx, vector(dgamma, needs[1]), vector(dbeta, needs[2])])
}

/// y = x · scale + shift per channel (`scale_shift_f32`).
fn scale_shift(x: &CudaStorage, f: &Folded) -> Result<CudaStorage> {
    let dev = x.device();
    let n = x.len();
    let mut y = dev.alloc::<f32>(n)?;
    let (n64, c32) = (n as u64, f.scale.len() as u32);
    let func = dev.function("batch_norm", "scale_shift_f32")?;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(x.slice())
        .arg(&f.scale)
        .arg(&f.shift)
        .arg(&mut y)
        .arg(&n64)
        .arg(&c32);
    // SAFETY: (x, scale [c], shift [c], y, u64 n, u32 c); x and y hold n floats.
    unsafe { args.launch(launch_1d(n)) }.map_err(dev.error("scale_shift_f32"))?;
    Ok(CudaStorage::new(y, dev))
}

/// dx = dy · scale per channel (`channel_scale_f32`), the inference backward.
fn channel_scale(dy: &CudaStorage, scale: &CudaSlice<f32>) -> Result<CudaStorage> {
    let dev = dy.device();
    let n = dy.len();
    let mut dx = dev.alloc::<f32>(n)?;
    let (n64, c32) = (n as u64, scale.len() as u32);
    let f = dev.function("batch_norm", "channel_scale_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(dy.slice())
        .arg(scale)
        .arg(&mut dx)
        .arg(&n64)
        .arg(&c32);
    // SAFETY: (dy, scale [c], dx, u64 n, u32 c); dy and dx hold n floats.
    unsafe { args.launch(launch_1d(n)) }.map_err(dev.error("channel_scale_f32"))?;
    Ok(CudaStorage::new(dx, dev))
}

/// Row groups of the column reductions: grid (ceil(c / 32), groups), block (32, 8).
fn column_grid(rows: usize, c: usize) -> (usize, LaunchConfig) {
    let groups = rows.div_ceil(8).clamp(1, 64);
    let cfg = LaunchConfig {
        grid_dim: (c.div_ceil(32) as u32, groups as u32, 1),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    };
    (groups, cfg)
}

/// The batch's per-channel mean and biased variance (Welford per thread,
/// Chan's merge across threads and row groups).
fn moments(x: &CudaStorage, c: usize) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
    let dev = x.device();
    let rows = x.len() / c;
    let (groups, cfg) = column_grid(rows, c);
    let (mut count, mut part_mean, mut m2) = (
        dev.alloc::<f32>(groups * c)?,
        dev.alloc::<f32>(groups * c)?,
        dev.alloc::<f32>(groups * c)?,
    );
    let (rows64, c32, groups32) = (rows as u64, c as u32, groups as u32);
    let f = dev.function("batch_norm", "batch_norm_welford_partial_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x.slice())
        .arg(&mut count)
        .arg(&mut part_mean)
        .arg(&mut m2)
        .arg(&rows64)
        .arg(&c32);
    // SAFETY: (x [rows, c], three [groups, c] partials, u64 rows, u32 c), grid (ceil(c/32), groups).
    unsafe { args.launch(cfg) }.map_err(dev.error("batch_norm_welford_partial_f32"))?;
    let (mut mean, mut var) = (dev.alloc::<f32>(c)?, dev.alloc::<f32>(c)?);
    let f = dev.function("batch_norm", "batch_norm_welford_final_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(&count)
        .arg(&part_mean)
        .arg(&m2)
        .arg(&mut mean)
        .arg(&mut var)
        .arg(&groups32)
        .arg(&c32);
    // SAFETY: three [groups, c] partials, mean and var [c], u32 groups, u32 c; one thread per channel.
    unsafe { args.launch(launch_1d(c)) }.map_err(dev.error("batch_norm_welford_final_f32"))?;
    Ok((mean, var))
}

/// `(Σ dy, Σ dy·x̂)` per channel, x̂ = (x − mean)·inv_std: dβ and dγ.
fn channel_sums(
    x: &CudaStorage,
    dy: &CudaStorage,
    mean: &CudaSlice<f32>,
    inv_std: &CudaSlice<f32>,
) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
    let dev = x.device();
    let c = mean.len();
    let rows = x.len() / c;
    let (groups, cfg) = column_grid(rows, c);
    let (mut part_dbeta, mut part_dgamma) =
        (dev.alloc::<f32>(groups * c)?, dev.alloc::<f32>(groups * c)?);
    let (rows64, c32, groups32) = (rows as u64, c as u32, groups as u32);
    let f = dev.function("batch_norm", "batch_norm_backward_partial_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(x.slice())
        .arg(dy.slice())
        .arg(mean)
        .arg(inv_std)
        .arg(&mut part_dbeta)
        .arg(&mut part_dgamma)
        .arg(&rows64)
        .arg(&c32);
    // SAFETY: x, dy [rows, c], mean, inv_std [c], two [groups, c] partials; grid (ceil(c/32), groups).
    unsafe { args.launch(cfg) }.map_err(dev.error("batch_norm_backward_partial_f32"))?;
    let (mut dbeta, mut dgamma) = (dev.alloc::<f32>(c)?, dev.alloc::<f32>(c)?);
    let f = dev.function("batch_norm", "batch_norm_backward_final_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(&part_dbeta)
        .arg(&part_dgamma)
        .arg(&mut dbeta)
        .arg(&mut dgamma)
        .arg(&groups32)
        .arg(&c32);
    // SAFETY: two [groups, c] partials, dbeta and dgamma [c], u32 groups, u32 c.
    unsafe { args.launch(launch_1d(c)) }.map_err(dev.error("batch_norm_backward_final_f32"))?;
    Ok((dbeta, dgamma))
}

/// The training backward's dx (`batch_norm_backward_dx_f32`, see the `.cu` header).
struct TrainBackward<'a> {
    /// The input of the forward pass.
    pub x: &'a CudaStorage,
    /// The batch mean.
    pub mean: &'a CudaSlice<f32>,
    /// The batch 1/√(σ²+ε).
    pub inv_std: &'a CudaSlice<f32>,
    /// γ.
    pub gamma: &'a CudaSlice<f32>,
}

impl TrainBackward<'_> {
    /// dx from dy and the channel sums dβ = Σ dy, dγ = Σ dy·x̂.
    fn dx(
        &self,
        dy: &CudaStorage,
        dbeta: &CudaSlice<f32>,
        dgamma: &CudaSlice<f32>,
    ) -> Result<CudaStorage> {
        let dev = self.x.device();
        let c = self.mean.len();
        let rows = self.x.len() / c;
        let mut dx = dev.alloc::<f32>(rows * c)?;
        let (rows64, c32) = (rows as u64, c as u32);
        let f = dev.function("batch_norm", "batch_norm_backward_dx_f32")?;
        let mut args = dev.stream().launch_builder(&f);
        args.arg(self.x.slice())
            .arg(dy.slice())
            .arg(self.mean)
            .arg(self.inv_std)
            .arg(self.gamma)
            .arg(dbeta)
            .arg(dgamma)
            .arg(&mut dx)
            .arg(&rows64)
            .arg(&c32);
        // SAFETY: x, dy, dx [rows, c]; five [c] vectors; u64 rows, u32 c; grid-stride over dx.
        unsafe { args.launch(launch_1d(rows * c)) }
            .map_err(dev.error("batch_norm_backward_dx_f32"))?;
        Ok(CudaStorage::new(dx, dev))
    }
}
