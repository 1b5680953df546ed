//! Learning-rate schedules: the rate as a function of the optimizer's step
//! counter, with the formulas of Keras's `keras.optimizers.schedules`.

use crate::error::{Error, Result};

/// A learning rate that may change with the step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// The same rate at every step.
    Constant(f64),
    /// `initial · factor^⌊step / every⌋`: multiply by `factor` every `every`
    /// steps (Keras `ExponentialDecay(initial, every, factor, staircase=True)`).
    StepDecay {
        /// The rate of the first `every` steps.
        initial: f64,
        /// Steps between two decays (>= 1).
        every: u64,
        /// Multiplier applied at each decay.
        factor: f64,
    },
    /// Keras `CosineDecay(initial, decay_steps, alpha)` (no warmup): with
    /// `s = min(step, decay_steps)`,
    /// `initial · ((1 − alpha) · ½(1 + cos(π s / decay_steps)) + alpha)`,
    /// falling from `initial` to the floor `alpha · initial`.
    Cosine {
        /// The rate at step 0.
        initial: f64,
        /// Steps over which the rate falls to its floor (>= 1).
        decay_steps: u64,
        /// The floor, as a fraction of `initial` (in [0, 1]).
        alpha: f64,
    },
}

impl Schedule {
    /// The learning rate at `step` (0 for the first update).
    pub fn at(&self, step: u64) -> f64 {
        match *self {
            Schedule::Constant(lr) => lr,
            Schedule::StepDecay {
                initial,
                every,
                factor,
            } => initial * factor.powi((step / every.max(1)) as i32),
            Schedule::Cosine {
                initial,
                decay_steps,
                alpha,
            } => {
                let s = step.min(decay_steps) as f64;
                let cosine =
                    0.5 * (1.0 + (std::f64::consts::PI * s / decay_steps.max(1) as f64).cos());
                initial * ((1.0 - alpha) * cosine + alpha)
            }
        }
    }

    /// Errors naming `op` if a rate is negative or not finite, or a period is 0.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        let (rate, period) = match *self {
            Schedule::Constant(lr) => (lr, 1),
            Schedule::StepDecay {
                initial,
                every,
                factor,
            } => {
                if !(factor.is_finite() && factor >= 0.0) {
                    return Err(Error::invalid(
                        op,
                        format!("step decay factor is {factor}; it must be finite and >= 0"),
                    ));
                }
                (initial, every)
            }
            Schedule::Cosine {
                initial,
                decay_steps,
                alpha,
            } => {
                if !(alpha.is_finite() && (0.0..=1.0).contains(&alpha)) {
                    return Err(Error::invalid(
                        op,
                        format!("cosine decay alpha is {alpha}; it must be in [0, 1]"),
                    ));
                }
                (initial, decay_steps)
            }
        };
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(Error::invalid(
                op,
                format!("learning rate is {rate}; it must be finite and >= 0"),
            ));
        }
        if period == 0 {
            return Err(Error::invalid(
                op,
                "schedule period (every / decay_steps) is 0; it must be >= 1",
            ));
        }
        Ok(())
    }
}

impl From<f64> for Schedule {
    fn from(lr: f64) -> Schedule {
        Schedule::Constant(lr)
    }
}
