//! Optimizers: the step after `loss.backward()` that turns each trainable
//! parameter's `.grad()` into a new value, with Keras 3's exact update rules
//! so a training run matches its Keras twin step for step.
//!
//! - [`Sgd`]: plain, momentum and Nesterov SGD (`keras.optimizers.SGD`).
//! - [`Adam`], as `keras.optimizers.Adam`.
//! - [`Schedule`]: the learning rate as a function of the step (constant,
//!   step decay, cosine decay).
//!
//! Both take `weight_decay` as Keras 3's base optimizer applies it: decoupled,
//! before the update, `w ← w − w · wd · lr` (not an L2 term in the loss).
//!
//! Both update GPU parameters on the GPU (`kernels/src/sgd.cu`,
//! `kernels/src/adam.cu`), their state (velocity, moments) living there too,
//! with the CPU's order of operations and roundings: equal results.
//!
//! A training step:
//!
//! ```text
//! let loss = softmax_cross_entropy(&model.forward(&x)?, &labels)?;
//! loss.backward()?;
//! optimizer.step(&params)?;   // skips frozen parameters and those without a gradient
//! zero_grad(&params);
//! ```
//!
//! Optimizer state (momenta, Adam's moments) is kept per parameter *name*, so
//! unfreezing more layers mid-run (fine-tuning) simply adds new entries.
//! Like Keras, the step counter is global to the optimizer: it counts calls
//! to `step`, and the learning rate of a step is `schedule(iterations)`
//! taken before the counter increments.

mod adam;
mod schedule;
mod sgd;

pub use adam::Adam;
pub use schedule::Schedule;
pub use sgd::Sgd;

use crate::autograd::Param;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::HashSet;

/// What every optimizer does: one update of the given parameters.
pub trait Optimizer {
    /// Updates every trainable parameter that has a gradient, then counts
    /// one iteration. Errors (changing nothing) if a gradient's shape or
    /// dtype differs from its parameter's, if two parameters share a name,
    /// or if the schedule is invalid.
    fn step(&mut self, params: &[Param]) -> Result<()>;
    /// Steps taken so far (Keras's `optimizer.iterations`).
    fn iterations(&self) -> u64;
    /// The learning rate the next step will use.
    fn current_lr(&self) -> f64;
}

/// Forgets the gradients of all `params` (call after each step: `backward`
/// adds into whatever gradient is already there).
pub fn zero_grad(params: &[Param]) {
    for p in params {
        p.zero_grad();
    }
}

/// The parameters a step updates (trainable, with a gradient), each with its
/// value and gradient, after checking that they fit together.
pub(crate) fn updatable(
    op: &'static str,
    params: &[Param],
) -> Result<Vec<(Param, Tensor, Tensor)>> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for p in params {
        if !names.insert(p.name().to_string()) {
            return Err(Error::invalid(
                op,
                format!("two parameters are named {:?}; optimizer state is kept by name, so names must be unique", p.name()),
            ));
        }
        if !p.is_trainable() {
            continue;
        }
        let Some(grad) = p.grad() else { continue };
        let value = p.value();
        if grad.shape() != value.shape() || grad.dtype() != value.dtype() {
            return Err(Error::shape(
                op,
                format!(
                    "parameter {} is {:?} {} but its gradient is {:?} {}",
                    p.name(),
                    value.shape(),
                    value.dtype(),
                    grad.shape(),
                    grad.dtype()
                ),
            ));
        }
        out.push((p.clone(), value, grad));
    }
    Ok(out)
}

/// Checks that saved state still fits its parameter (same name, new shape
/// means the caller reused a name for another tensor).
pub(crate) fn check_state(
    op: &'static str,
    name: &str,
    state: &Tensor,
    value: &Tensor,
) -> Result<()> {
    if state.device() != value.device() {
        return Err(Error::invalid(
            op,
            format!(
                "optimizer state for {name} is on {} but the parameter is now on {}; move the \
                 model before the first step, or use a new optimizer after moving it",
                state.device(),
                value.device()
            ),
        ));
    }
    if state.shape() != value.shape() || state.dtype() != value.dtype() {
        return Err(Error::shape(
            op,
            format!(
                "optimizer state for {name} is {:?} {} but the parameter is now {:?} {}; use a new optimizer for a different model",
                state.shape(),
                state.dtype(),
                value.shape(),
                value.dtype()
            ),
        ));
    }
    Ok(())
}
