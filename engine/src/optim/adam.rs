//! Adam with Keras 3's update (`keras/src/optimizers/adam.py`). At step
//! t = iterations + 1, with learning rate η:
//!
//! ```text
//! w ← w − w·wd·η                                   (decoupled weight decay, when wd > 0)
//! ηₜ = η · √(1 − β₂ᵗ) / (1 − β₁ᵗ)
//! m ← m + (g − m)(1 − β₁)
//! v ← v + (g² − v)(1 − β₂)
//! w ← w − ηₜ · m / (√v + ε)
//! ```
//!
//! m and v start at zero. Note ε is added to √v *after* the bias correction
//! has been folded into ηₜ (Keras's form, "epsilon hat" in the Adam paper),
//! not to √v̂: the two differ slightly, and this one matches Keras.

use super::{check_state, updatable, Optimizer, Schedule};
use crate::autograd::Param;
use crate::cuda::cudarc::driver::PushKernelArg;
use crate::cuda::{launch_1d, CudaStorage};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::tensor::{DType, Storage, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

/// Adam with Keras's defaults: lr 1e-3, β₁ 0.9, β₂ 0.999, ε 1e-7.
///
/// ```
/// use engine::optim::{Adam, Optimizer};
/// use engine::{ops, Param, Tensor};
/// let w = Param::new("w", Tensor::from_vec(vec![1.0f64, -2.0], &[2])?);
/// ops::sum(&ops::mul(&w.tensor(), &w.tensor())?)?.backward()?; // gradient 2w
/// let mut adam = Adam::new(0.01);
/// adam.step(&[w.clone()])?;
/// // Adam's first step moves every weight by about lr against its gradient's
/// // sign, whatever the gradient's size (m/√v = g/|g| at step 1).
/// let w1 = w.value().to_vec_f64();
/// assert!((w1[0] - 0.99).abs() < 1e-6 && (w1[1] + 1.99).abs() < 1e-6);
/// # Ok::<(), engine::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Adam {
    /// Learning rate η.
    pub lr: Schedule,
    /// Decay of the first moment, β₁.
    pub beta_1: f64,
    /// Decay of the second moment, β₂.
    pub beta_2: f64,
    /// ε, added to √v.
    pub epsilon: f64,
    /// Decoupled weight decay (default 0: none).
    pub weight_decay: f64,
    iterations: u64,
    moments: HashMap<String, (Tensor, Tensor)>,
}

impl Default for Adam {
    fn default() -> Self {
        Adam::new(1e-3)
    }
}

impl Adam {
    /// Adam with learning rate `lr` (a number or a [`Schedule`]) and Keras's
    /// other defaults.
    pub fn new(lr: impl Into<Schedule>) -> Adam {
        Adam {
            lr: lr.into(),
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            weight_decay: 0.0,
            iterations: 0,
            moments: HashMap::new(),
        }
    }

    /// The same optimizer with decoupled weight decay `wd`.
    pub fn with_weight_decay(mut self, wd: f64) -> Adam {
        self.weight_decay = wd;
        self
    }
}

/// The scalars of one step, the same for every parameter.
#[derive(Clone, Copy)]
struct Coefficients {
    lr: f64,
    beta_1: f64,
    beta_2: f64,
    /// The step number t = iterations + 1.
    t: f64,
    eps: f64,
    wd: f64,
}

/// One parameter's update; returns the new w, m and v.
fn update<T: Element>(
    w: &[T],
    g: &[T],
    m: &[T],
    v: &[T],
    k: Coefficients,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    // As Keras, βᵗ is taken of β cast to the parameter's dtype: in f32,
    // 1 − 0.999 is 0.000999987, which moves ηₜ by 6e-6 relative at t = 1.
    let (b1, b2) = (
        T::from_f64(k.beta_1).to_f64(),
        T::from_f64(k.beta_2).to_f64(),
    );
    let lr_t = T::from_f64(k.lr * (1.0 - b2.powf(k.t)).sqrt() / (1.0 - b1.powf(k.t)));
    let lr = T::from_f64(k.lr);
    let (c1, c2, eps, wd) = (
        T::from_f64(1.0 - k.beta_1),
        T::from_f64(1.0 - k.beta_2),
        T::from_f64(k.eps),
        T::from_f64(k.wd),
    );
    let n = w.len();
    let (mut w_new, mut m_new, mut v_new) = (vec![T::ZERO; n], vec![T::ZERO; n], vec![T::ZERO; n]);
    // Every element on its own, so blocks run in parallel (rayon) and the
    // result is the same on any number of threads.
    const BLOCK: usize = 1 << 14;
    let blocks = w_new
        .par_chunks_mut(BLOCK)
        .zip(m_new.par_chunks_mut(BLOCK))
        .zip(v_new.par_chunks_mut(BLOCK))
        .enumerate();
    blocks.for_each(|(b, ((w_out, m_out), v_out))| {
        let at = b * BLOCK..(b * BLOCK + w_out.len());
        let (w, g, m, v) = (&w[at.clone()], &g[at.clone()], &m[at.clone()], &v[at]);
        for i in 0..w_out.len() {
            let x = if k.wd != 0.0 {
                w[i] - w[i] * wd * lr
            } else {
                w[i]
            };
            let mi = m[i] + (g[i] - m[i]) * c1;
            let vi = v[i] + (g[i] * g[i] - v[i]) * c2;
            w_out[i] = x - (mi * lr_t) / (vi.sqrt() + eps);
            m_out[i] = mi;
            v_out[i] = vi;
        }
    });
    (w_new, m_new, v_new)
}

/// One parameter's update on the GPU (`kernels/src/adam.cu`): copies of w,
/// m and v updated in place by `adam_update_f32`, so the old tensors stay
/// as they were (tensors never change). ηₜ, 1 − β₁ and 1 − β₂ are computed
/// here exactly as on the CPU, and the kernel rounds every operation once in
/// the CPU's order: the GPU's weights equal the CPU's.
fn update_on_gpu(
    w: &CudaStorage,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: Coefficients,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "Adam::step";
    let dev = w.device();
    let copy = |s: &CudaStorage| {
        dev.stream()
            .clone_dtod(s.slice())
            .map_err(dev.error("copying Adam state"))
    };
    let (mut w_new, mut m_new, mut v_new) = (
        copy(w)?,
        copy(m.cuda_storage(OP)?)?,
        copy(v.cuda_storage(OP)?)?,
    );
    let (b1, b2) = (k.beta_1 as f32 as f64, k.beta_2 as f32 as f64);
    let lr_t = (k.lr * (1.0 - b2.powf(k.t)).sqrt() / (1.0 - b1.powf(k.t))) as f32;
    let (c1, c2) = ((1.0 - k.beta_1) as f32, (1.0 - k.beta_2) as f32);
    let (eps, lr, wd, decay) = (
        k.eps as f32,
        k.lr as f32,
        k.wd as f32,
        u32::from(k.wd != 0.0),
    );
    let n = w.len();
    let n64 = n as u64;
    let f = dev.function("adam", "adam_update_f32")?;
    let mut args = dev.stream().launch_builder(&f);
    args.arg(&mut w_new)
        .arg(g.cuda_storage(OP)?.slice())
        .arg(&mut m_new)
        .arg(&mut v_new)
        .arg(&n64)
        .arg(&lr_t)
        .arg(&c1)
        .arg(&c2)
        .arg(&eps)
        .arg(&lr)
        .arg(&wd)
        .arg(&decay);
    // SAFETY: (w, g, m, v: n floats each, u64 n, six f32, u32 decay); w, m, v are fresh copies.
    unsafe { args.launch(launch_1d(n)) }.map_err(dev.error("adam_update_f32"))?;
    let wrap = |s| Tensor::from_storage(Storage::Cuda(CudaStorage::new(s, dev)), g.shape());
    Ok((wrap(w_new)?, wrap(m_new)?, wrap(v_new)?))
}

impl Optimizer for Adam {
    fn step(&mut self, params: &[Param]) -> Result<()> {
        const OP: &str = "Adam::step";
        self.lr.validate(OP)?;
        for (name, b) in [("beta_1", self.beta_1), ("beta_2", self.beta_2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::invalid(
                    OP,
                    format!("{name} is {b}; it must be in [0, 1)"),
                ));
            }
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(Error::invalid(
                OP,
                format!("epsilon is {}; it must be > 0", self.epsilon),
            ));
        }
        let lr = self.lr.at(self.iterations);
        let t = (self.iterations + 1) as f64;
        let k = Coefficients {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            t,
            eps: self.epsilon,
            wd: self.weight_decay,
        };
        // Compute every update first, so an error leaves all parameters unchanged.
        let mut updates = Vec::new();
        for (p, w, g) in &updatable(OP, params)? {
            if !self.moments.contains_key(p.name()) {
                let zeros = (w.zeros_like()?, w.zeros_like()?);
                self.moments.insert(p.name().to_string(), zeros);
            }
            let (m, v) = self.moments[p.name()].clone();
            check_state(OP, p.name(), &m, w)?;
            if let Storage::Cuda(ws) = w.storage() {
                let (w_new, m_new, v_new) = update_on_gpu(ws, g, &m, &v, k)?;
                updates.push((p.clone(), w_new, m_new, v_new));
                continue;
            }
            let (w_new, m_new, v_new) = match w.dtype() {
                DType::F32 => {
                    let (a, b, c) = update(
                        w.as_slice::<f32>()?,
                        g.as_slice::<f32>()?,
                        m.as_slice::<f32>()?,
                        v.as_slice::<f32>()?,
                        k,
                    );
                    (
                        Tensor::from_vec(a, w.shape())?,
                        Tensor::from_vec(b, w.shape())?,
                        Tensor::from_vec(c, w.shape())?,
                    )
                }
                DType::F64 => {
                    let (a, b, c) = update(
                        w.as_slice::<f64>()?,
                        g.as_slice::<f64>()?,
                        m.as_slice::<f64>()?,
                        v.as_slice::<f64>()?,
                        k,
                    );
                    (
                        Tensor::from_vec(a, w.shape())?,
                        Tensor::from_vec(b, w.shape())?,
                        Tensor::from_vec(c, w.shape())?,
                    )
                }
            };
            updates.push((p.clone(), w_new, m_new, v_new));
        }
        for (p, w_new, m_new, v_new) in updates {
            p.set_value(w_new)?;
            self.moments.insert(p.name().to_string(), (m_new, v_new));
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
    fn the_parallel_update_is_the_elementwise_formula_across_block_edges() {
        // Several 16Ki blocks and a partial one, so every block edge is crossed.
        let n = 3 * (1 << 14) + 5;
        let val = |i: usize, s: f32| (i as f32 * s).sin() * 0.5;
        let w: Vec<f32> = (0..n).map(|i| val(i, 0.37)).collect();
        let g: Vec<f32> = (0..n).map(|i| val(i, 1.91)).collect();
        let m: Vec<f32> = (0..n).map(|i| val(i, 0.11) * 0.1).collect();
        let v: Vec<f32> = (0..n).map(|i| val(i, 0.23).abs() * 0.01).collect();
        let k = Coefficients {
            lr: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            t: 3.0,
            eps: 1e-7,
            wd: 0.004,
        };
        let (w_new, m_new, v_new) = update(&w, &g, &m, &v, k);
        let (b1, b2) = (0.9f32 as f64, 0.999f32 as f64);
        let lr_t = (1e-3 * (1.0 - b2.powf(3.0)).sqrt() / (1.0 - b1.powf(3.0))) as f32;
        let (c1, c2) = ((1.0 - 0.9) as f32, (1.0 - 0.999) as f32);
        for i in 0..n {
            let x = w[i] - w[i] * 0.004f32 * 1e-3f32;
            let mi = m[i] + (g[i] - m[i]) * c1;
            let vi = v[i] + (g[i] * g[i] - v[i]) * c2;
            let wi = x - (mi * lr_t) / (vi.sqrt() + 1e-7f32);
            assert_eq!(
                (w_new[i].to_bits(), m_new[i].to_bits(), v_new[i].to_bits()),
                (wi.to_bits(), mi.to_bits(), vi.to_bits()),
                "element {i}"
            );
        }
    }
}
