//! How far features computed in half precision (`--precision f16|bf16`)
//! are from the f32 ones: measured once per extraction, on its first batch,
//! by running that batch again with the convolutions in f32, and printed as
//! one line (largest absolute difference and relative L2 error).

use crate::error::Result;
use engine::Precision;
use models::Backbone;
use std::fmt;

/// The difference between 16-bit and f32 features of the same images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drift {
    /// The precision the features were computed in.
    pub precision: Precision,
    /// Images compared.
    pub images: usize,
    /// max |half − f32| over every feature.
    pub max_abs: f64,
    /// ‖half − f32‖₂ / ‖f32‖₂.
    pub rel_l2: f64,
    /// Features that are inf or NaN in `precision` (f16 overflows past 65504).
    pub non_finite: usize,
}

impl Drift {
    /// Compares `half` with `full` (same images, same order).
    pub fn between(precision: Precision, images: usize, half: &[f32], full: &[f32]) -> Drift {
        let (mut max_abs, mut diff2, mut norm2, mut non_finite) = (0f64, 0f64, 0f64, 0);
        for (&h, &f) in half.iter().zip(full) {
            if !h.is_finite() {
                non_finite += 1;
            }
            let d = (h as f64 - f as f64).abs();
            max_abs = max_abs.max(d);
            diff2 += d * d;
            norm2 += f as f64 * f as f64;
        }
        let rel_l2 = if norm2 > 0.0 {
            (diff2 / norm2).sqrt()
        } else {
            diff2.sqrt()
        };
        Drift {
            precision,
            images,
            max_abs,
            rel_l2,
            non_finite,
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} features against f32 on the first batch ({} images): max |Δ| {:.3e}, relative \
             L2 {:.3e}",
            self.precision, self.images, self.max_abs, self.rel_l2
        )?;
        if self.non_finite > 0 {
            write!(
                f,
                "; {} features are inf/NaN: activations exceeded {}'s range (f16: 65504), use \
                 --precision bf16 or f32",
                self.non_finite, self.precision
            )?;
        }
        Ok(())
    }
}

/// Runs `features` (one batch through `backbone`) again with the backbone's
/// convolutions in f32, and compares with `half`, the same batch's features
/// in the backbone's current precision. The precision is restored after.
pub fn against_f32(
    backbone: &dyn Backbone,
    images: usize,
    half: &[f32],
    features: impl FnOnce() -> Result<Vec<f32>>,
) -> Result<Drift> {
    let precision = backbone.precision();
    backbone.set_precision(Precision::F32);
    let full = features();
    backbone.set_precision(precision);
    Ok(Drift::between(precision, images, half, &full?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_the_largest_and_the_relative_l2_difference() {
        let d = Drift::between(Precision::F16, 1, &[3.0, 4.5, 0.0], &[3.0, 4.0, 0.0]);
        assert_eq!((d.max_abs, d.rel_l2, d.non_finite), (0.5, 0.1, 0));
        let line = d.to_string();
        assert!(line.contains("f16") && line.contains("5.000e-1"), "{line}");
        let inf = Drift::between(Precision::F16, 1, &[f32::INFINITY], &[70000.0]);
        assert_eq!(inf.non_finite, 1);
        assert!(inf.to_string().contains("--precision bf16"), "{inf}");
    }
}
