//! [`Precision`]: the number format the multiply-accumulate ops (the
//! convolutions) read their operands in, like a Keras mixed-precision policy
//! (`mixed_float16`, `mixed_bfloat16`): tensors stay f32, only the products
//! are formed from 16-bit values.
//!
//! | format | bits (sign, exponent, mantissa) | largest finite | spacing near 1 |
//! | --- | --- | --- | --- |
//! | f32  | 1, 8, 23 | 3.4e38  | 2⁻²³ ≈ 1.2e-7 |
//! | f16  | 1, 5, 10 | 65504   | 2⁻¹⁰ ≈ 9.8e-4 |
//! | bf16 | 1, 8, 7  | 3.4e38  | 2⁻⁷ ≈ 7.8e-3 |
//!
//! f16 keeps more digits, bf16 keeps f32's range. Rounding is to nearest,
//! ties to even, as the `half` crate does on the CPU and as
//! `kernels/src/half_precision.cu` does on the GPU, so both devices round a
//! value to the same bits. An f32 beyond f16's range rounds to ±inf.
//!
//! The product of two f16 (11 significant bits each) or two bf16 (8 bits)
//! values fits in f32's 24 bits exactly, so "16-bit inputs, f32
//! accumulation" loses precision only in the input roundings, in the f32
//! sums, and in the final rounding of the result. What that means for one op
//! is written in the op (`ops::conv2d::conv2d_in`).

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The compute precision of a multiply-accumulate op; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// IEEE single precision throughout (the default; training needs it).
    #[default]
    F32,
    /// IEEE half precision (binary16) operands, f32 accumulation.
    F16,
    /// bfloat16 operands, f32 accumulation.
    Bf16,
}

impl Precision {
    /// Every precision, in the order `--help` lists them.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

    /// The name used on the command line and in cache keys: "f32", "f16", "bf16".
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether this is one of the 16-bit formats.
    pub fn is_half(self) -> bool {
        self != Precision::F32
    }

    /// `v` rounded to this format (to nearest, ties to even) and widened
    /// back to f32, which holds every f16 and bf16 value exactly.
    pub fn round(self, v: f32) -> f32 {
        match self {
            Precision::F32 => v,
            Precision::F16 => half::f16::from_f32(v).to_f32(),
            Precision::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }

    /// Every value of `v` rounded with [`Precision::round`].
    pub fn round_all(self, v: &[f32]) -> Vec<f32> {
        v.iter().map(|&x| self.round(x)).collect()
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Precision> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                Error::invalid(
                    "precision",
                    format!("unknown precision '{s}': use f32, f16 or bf16"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_the_digits_each_format_has() {
        // 1 + 2⁻⁹ needs 9 mantissa bits: f16 (10) keeps it, bf16 (7) rounds it to 1.
        let v = 1.0 + 2f32.powi(-9);
        assert_eq!(Precision::F32.round(v), v);
        assert_eq!(Precision::F16.round(v), v);
        assert_eq!(Precision::Bf16.round(v), 1.0);
        // 70000 is beyond f16's largest finite value (65504): inf. bf16 has f32's range.
        assert_eq!(Precision::F16.round(70000.0), f32::INFINITY);
        assert_eq!(Precision::Bf16.round(70000.0), 70144.0);
        // A tie rounds to the even neighbour: 1 + 2⁻⁸ lies halfway between
        // bf16's 1 and 1 + 2⁻⁷, and 1 is even.
        assert_eq!(Precision::Bf16.round(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(
            Precision::Bf16.round(1.0 + 3.0 * 2f32.powi(-8)),
            1.0 + 2.0 * 2f32.powi(-7)
        );
    }

    #[test]
    fn names_parse_back_and_unknown_ones_are_refused() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        let e = "fp8".parse::<Precision>().unwrap_err().to_string();
        assert!(e.contains("fp8") && e.contains("bf16"), "{e}");
    }
}
