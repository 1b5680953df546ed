//! Stochastic gradient descent with Keras 3's update
//! (`keras/src/optimizers/sgd.py`), for learning rate η and momentum μ:
//!
//! ```text
//! w ← w − w·wd·η                  (decoupled weight decay, when wd > 0)
//! μ = 0:      w ← w − η·g
//! momentum:   v ← μ·v − η·g;  w ← w + v
//! Nesterov:   v ← μ·v − η·g;  w ← w + μ·v − η·g
//! ```
//!
//! v starts at zero. The elementwise math runs in the parameter's dtype, in
//! Keras's order of operations.
//!
//! On a GPU the same update runs in `kernels/src/sgd.cu` (one thread per
//! element, in place on fresh copies of w and v), in the same order with
//! every operation rounded once as here: the GPU's weights equal the CPU's.
//! The velocity of a GPU parameter lives on the GPU.

use super::{check_state, updatable, Optimizer, Schedule};
use crate::autograd::Param;
use crate::cuda::cudarc::driver::PushKernelArg;
use crate::cuda::{launch_1d, CudaStorage};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::tensor::{DType, Storage, Tensor};
use std::collections::HashMap;

/// SGD with optional (Nesterov) momentum and decoupled weight decay.
///
/// ```
/// use engine::optim::{zero_grad, Optimizer, Sgd};
/// use engine::{ops, Param, Tensor};
/// let w = Param::new("w", Tensor::from_vec(vec![1.0f64, -2.0], &[2])?);
/// let loss = ops::sum(&ops::mul(&w.tensor(), &w.tensor())?)?; // Σ w², gradient 2w
/// loss.backward()?;
/// let mut sgd = Sgd::new(0.25);
/// sgd.step(&[w.clone()])?; // w ← w − 0.25 · 2w
/// zero_grad(&[w.clone()]);
/// assert_eq!(w.value().to_vec_f64(), [0.5, -1.0]);
/// assert_eq!(sgd.iterations(), 1);
/// # Ok::<(), engine::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sgd {
    /// Learning rate η (Keras default 0.01).
    pub lr: Schedule,
    /// Momentum μ in [0, 1) (default 0: plain SGD, no state).
    pub momentum: f64,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
    /// Decoupled weight decay (default 0: none).
    pub weight_decay: f64,
    iterations: u64,
    velocity: HashMap<String, Tensor>,
}

impl Sgd {
    /// Plain SGD with learning rate `lr` (a number or a [`Schedule`]).
    pub fn new(lr: impl Into<Schedule>) -> Sgd {
        Sgd {
            lr: lr.into(),
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            iterations: 0,
            velocity: HashMap::new(),
        }
    }

    /// The same optimizer with momentum `momentum` (Nesterov if `nesterov`).
    pub fn with_momentum(mut self, momentum: f64, nesterov: bool) -> Sgd {
        self.momentum = momentum;
        self.nesterov = nesterov;
        self
    }

    /// The same optimizer with decoupled weight decay `wd`.
    pub fn with_weight_decay(mut self, wd: f64) -> Sgd {
        self.weight_decay = wd;
        self
    }
}

/// One parameter's update; returns the new w and the new velocity (if any).
fn update<T: Element>(
    w: &[T],
    g: &[T],
    v: Option<&[T]>,
    lr: f64,
    momentum: f64,
    nesterov: bool,
    wd: f64,
) -> (Vec<T>, Option<Vec<T>>) {
    let (lr, mu) = (T::from_f64(lr), T::from_f64(momentum));
    let decayed: Vec<T> = if wd != 0.0 {
        let wd = T::from_f64(wd);
        w.iter().map(|&x| x - x * wd * lr).collect()
    } else {
        w.to_vec()
    };
    match v {
        None => (
            decayed.iter().zip(g).map(|(&x, &d)| x - d * lr).collect(),
            None,
        ),
        Some(v) => {
            let v_new: Vec<T> = v.iter().zip(g).map(|(&m, &d)| m * mu - d * lr).collect();
            let w_new = decayed
                .iter()
                .zip(&v_new)
                .zip(g)
                .map(|((&x, &m), &d)| {
                    if nesterov {
                        x + (m * mu - d * lr)
                    } else {
                        x + m
                    }
                })
                .collect();
            (w_new, Some(v_new))
        }
    }
}

/// The f32 scalars of one step as the kernels take them, rounded from f64
/// as the CPU's `T::from_f64` rounds them: (lr, momentum, weight decay,
/// whether to decay).
fn gpu_scalars(lr: f64, momentum: f64, wd: f64) -> (f32, f32, f32, u32) {
    (lr as f32, momentum as f32, wd as f32, u32::from(wd != 0.0))
}

/// One parameter's update on the GPU (`kernels/src/sgd.cu`): `sgd_update_f32`
/// without velocity, `sgd_momentum_update_f32` with it, on fresh copies of w
/// and v (tensors never change). Returns the new w and velocity.
fn update_on_gpu(
    w: &CudaStorage,
    g: &Tensor,
    v: Option<&Tensor>,
    lr: f64,
    momentum: f64,
    nesterov: bool,
    wd: f64,
) -> Result<(Tensor, Option<Tensor>)> {
    const OP: &str = "Sgd::step";
    let dev = w.device();
    let copy = |s: &CudaStorage| {
        dev.stream()
            .clone_dtod(s.slice())
            .map_err(dev.error("copying SGD state"))
    };
    let (lr, mu, wd, decay) = gpu_scalars(lr, momentum, wd);
    let n = w.len();
    let n64 = n as u64;
    let gs = g.cuda_storage(OP)?.slice();
    let mut w_new = copy(w)?;
    let v_new = match v {
        None => {
            let f = dev.function("sgd", "sgd_update_f32")?;
            let mut args = dev.stream().launch_builder(&f);
            args.arg(&mut w_new)
                .arg(gs)
                .arg(&n64)
                .arg(&lr)
                .arg(&wd)
                .arg(&decay);
            // SAFETY: (w, g: n floats each, u64 n, f32 lr, f32 wd, u32 decay); w is a fresh copy.
            unsafe { args.launch(launch_1d(n)) }.map_err(dev.error("sgd_update_f32"))?;
            None
        }
        Some(v) => {
            let mut v_new = copy(v.cuda_storage(OP)?)?;
            let nesterov = u32::from(nesterov);
            let f = dev.function("sgd", "sgd_momentum_update_f32")?;
            let mut args = dev.stream().launch_builder(&f);
            args.arg(&mut w_new)
                .arg(gs)
                .arg(&mut v_new)
                .arg(&n64)
                .arg(&lr)
                .arg(&mu)
                .arg(&wd)
                .arg(&decay)
                .arg(&nesterov);
            // SAFETY: (w, g, v: n floats each, u64 n, f32 lr, mu, wd, u32 decay, nesterov);
            // w and v are fresh copies.
            unsafe { args.launch(launch_1d(n)) }.map_err(dev.error("sgd_momentum_update_f32"))?;
            Some(v_new)
        }
    };
    let wrap = |s| Tensor::from_storage(Storage::Cuda(CudaStorage::new(s, dev)), g.shape());
    Ok((wrap(w_new)?, v_new.map(wrap).transpose()?))
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &[Param]) -> Result<()> {
        const OP: &str = "Sgd::step";
        self.lr.validate(OP)?;
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(Error::invalid(
                OP,
                format!("momentum is {}; it must be in [0, 1)", self.momentum),
            ));
        }
        let lr = self.lr.at(self.iterations);
        // Compute every update first, so an error leaves all parameters unchanged.
        let mut updates = Vec::new();
        for (p, w, g) in &updatable(OP, params)? {
            let v = if self.momentum != 0.0 {
                if !self.velocity.contains_key(p.name()) {
                    self.velocity.insert(p.name().to_string(), w.zeros_like()?);
                }
                let v = &self.velocity[p.name()];
                check_state(OP, p.name(), v, w)?;
                Some(v.clone())
            } else {
                None
            };
            let (m, n, wd) = (self.momentum, self.nesterov, self.weight_decay);
            if let Storage::Cuda(ws) = w.storage() {
                let (w_new, v_new) = update_on_gpu(ws, g, v.as_ref(), lr, m, n, wd)?;
                updates.push((p.clone(), w_new, v_new));
                continue;
            }
            let (w_new, v_new) = match w.dtype() {
                DType::F32 => {
                    let vs = v.as_ref().map(|v| v.as_slice::<f32>()).transpose()?;
                    let (a, b) =
                        update(w.as_slice::<f32>()?, g.as_slice::<f32>()?, vs, lr, m, n, wd);
                    (
                        Tensor::from_vec(a, w.shape())?,
                        b.map(|b| Tensor::from_vec(b, w.shape())).transpose()?,
                    )
                }
                DType::F64 => {
                    let vs = v.as_ref().map(|v| v.as_slice::<f64>()).transpose()?;
                    let (a, b) =
                        update(w.as_slice::<f64>()?, g.as_slice::<f64>()?, vs, lr, m, n, wd);
                    (
                        Tensor::from_vec(a, w.shape())?,
                        b.map(|b| Tensor::from_vec(b, w.shape())).transpose()?,
                    )
                }
            };
            updates.push((p.clone(), w_new, v_new));
        }
        for (p, w_new, v_new) in updates {
            p.set_value(w_new)?;
            if let Some(v_new) = v_new {
                self.velocity.insert(p.name().to_string(), v_new);
            }
        }
        self.iterations += 1;
        Ok(())
    }

    fn iterations(&self) -> u64 {
        self.iterations
    }

    fn current_lr(&self) -> f64 {
        self.lr.at(self.iterations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_scalars_are_the_cpus_f32_roundings_and_decay_follows_the_f64_setting() {
        let (lr, mu, wd) = (0.1f64, 0.9f64, 1e-50f64);
        let (l, m, w, decay) = gpu_scalars(lr, mu, wd);
        assert_eq!(l.to_bits(), f32::from_f64(lr).to_bits());
        assert_eq!(m.to_bits(), f32::from_f64(mu).to_bits());
        // A decay too small for f32 still counts as "decay on", as on the CPU.
        assert_eq!((w, decay), (0.0, 1));
        assert_eq!(gpu_scalars(lr, 0.0, 0.0).3, 0);
    }
}
