//! Finite-difference gradient checking.
//!
//! For an op `y = f(x₁, …, xₙ)` we pick a fixed random weighting `r` of the
//! output and check the scalar `L = Σ r ⊙ f(x)`: its analytic gradient comes
//! from `backward()` (which starts the op's backward rule with dy = r), its
//! numeric gradient from central differences,
//!
//! ```text
//! ∂L/∂xᵢ ≈ (L(x + ε eᵢ) − L(x − ε eᵢ)) / 2ε      (error O(ε²))
//! ```
//!
//! evaluated in f64. Every element must satisfy
//! `|analytic − numeric| ≤ tol · max(1, |analytic|, |numeric|)`.

use crate::autograd::{record, with_no_grad, Param};
use crate::error::{Error, Result};
use crate::rng::uniform_f64;
use crate::tensor::{CpuStorage, DType, Storage, Tensor};

/// Settings of a gradient check.
#[derive(Debug, Clone, Copy)]
pub struct GradCheck {
    /// Step of the central difference.
    pub eps: f64,
    /// Allowed error, relative to max(1, |analytic|, |numeric|).
    pub tol: f64,
    /// Seed of the output weighting `r`.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            eps: 1e-5,
            tol: 1e-6,
            seed: 1234,
        }
    }
}

/// The worst element found by a check that passed.
#[derive(Debug, Clone)]
pub struct GradCheckReport {
    /// The largest relative error seen.
    pub worst_error: f64,
    /// How many input elements were checked.
    pub elements_checked: usize,
}

/// `Σ y ⊙ r` as a recorded op: its backward hands `r` to `y`'s backward rule.
fn weighted_sum(y: &Tensor, r: &[f64]) -> Result<Tensor> {
    let yv = y.to_vec_f64();
    let total: f64 = yv.iter().zip(r).map(|(a, b)| a * b).sum();
    let r_saved = r.to_vec();
    let shape = y.shape().to_vec();
    Ok(record(
        "weighted_sum",
        Storage::Cpu(CpuStorage::F64(vec![total])),
        vec![],
        &[y],
        Box::new(move |dl, _| {
            let s = dl.item()?;
            let g: Vec<f64> = r_saved.iter().map(|x| x * s).collect();
            Ok(vec![Some(Tensor::from_vec(g, &shape)?)])
        }),
    ))
}

impl GradCheck {
    /// Checks every input's gradient of `f` at `inputs` (f64 tensors). Returns
    /// the worst error, or an error naming the input and element that failed.
    pub fn run(
        &self,
        f: impl Fn(&[Tensor]) -> Result<Tensor>,
        inputs: &[Tensor],
    ) -> Result<GradCheckReport> {
        for (i, x) in inputs.iter().enumerate() {
            if x.dtype() != DType::F64 {
                return Err(Error::dtype(
                    "gradcheck",
                    format!("input {i} is {}, expected f64", x.dtype()),
                ));
            }
        }
        // The weighting r: fixed, random, away from zero so no element is ignored.
        let y0 = with_no_grad(|| f(inputs))?;
        let r: Vec<f64> = (0..y0.numel())
            .map(|j| {
                let u = uniform_f64(self.seed, 0, j as u64);
                if u < 0.5 {
                    -0.5 - u
                } else {
                    u
                }
            })
            .collect();

        // Analytic gradients through the tape.
        let params: Vec<Param> = inputs
            .iter()
            .enumerate()
            .map(|(i, x)| Param::new(format!("input{i}"), x.clone()))
            .collect();
        let tracked: Vec<Tensor> = params.iter().map(|p| p.tensor()).collect();
        let loss = weighted_sum(&f(&tracked)?, &r)?;
        loss.backward()?;

        let loss_at = |xs: &[Tensor]| -> Result<f64> {
            let y = with_no_grad(|| f(xs))?;
            Ok(y.to_vec_f64().iter().zip(&r).map(|(a, b)| a * b).sum())
        };

        let mut worst = 0.0f64;
        let mut checked = 0;
        for (i, p) in params.iter().enumerate() {
            let analytic = match p.grad() {
                Some(g) => g.to_vec_f64(),
                None => vec![0.0; inputs[i].numel()],
            };
            let base = inputs[i].to_vec_f64();
            for e in 0..base.len() {
                let mut shifted = inputs.to_vec();
                let mut plus = base.clone();
                plus[e] += self.eps;
                shifted[i] = Tensor::from_vec(plus, inputs[i].shape())?;
                let lp = loss_at(&shifted)?;
                let mut minus = base.clone();
                minus[e] -= self.eps;
                shifted[i] = Tensor::from_vec(minus, inputs[i].shape())?;
                let lm = loss_at(&shifted)?;
                let numeric = (lp - lm) / (2.0 * self.eps);
                let a = analytic[e];
                let err = (a - numeric).abs() / 1f64.max(a.abs()).max(numeric.abs());
                if err.is_nan() || err > self.tol {
                    return Err(Error::invalid(
                        "gradcheck",
                        format!(
                            "input {i} (shape {:?}) element {e}: analytic {a:.12e}, numeric {numeric:.12e}, relative error {err:.3e} > {:.1e}",
                            inputs[i].shape(),
                            self.tol
                        ),
                    ));
                }
                worst = worst.max(err);
                checked += 1;
            }
        }
        Ok(GradCheckReport {
            worst_error: worst,
            elements_checked: checked,
        })
    }
}
