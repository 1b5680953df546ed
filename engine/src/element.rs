//! The element types a CPU tensor can hold: `f32` (models) and `f64`
//! (gradient checks, where finite differences need the extra precision).
//!
//! CPU kernels are written once, generic over [`Element`]; the trait carries
//! the few math functions they need and the matching GEMM from
//! [`crate::gemm`] (f32: ours on AVX-512 CPUs; f64: `matrixmultiply`).

use crate::tensor::{CpuStorage, DType};
use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point element type of CPU storage.
pub trait Element:
    Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
    + 'static
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Negative infinity (the padding value of max pooling).
    const NEG_INFINITY: Self;
    /// The matching [`DType`].
    const DTYPE: DType;

    /// Rounds an f64 to this type.
    fn from_f64(x: f64) -> Self;
    /// Widens to f64 (exact).
    fn to_f64(self) -> f64;
    /// e to the power of self.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// False for NaN and ±infinity.
    fn is_finite(self) -> bool;
    /// `self · a + b` rounded once (a fused multiply-add), on any CPU.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// The larger of two values (self when they compare equal or unordered).
    fn max(self, other: Self) -> Self {
        if other > self {
            other
        } else {
            self
        }
    }

    /// Wraps a vector of this type as CPU storage.
    fn wrap(v: Vec<Self>) -> CpuStorage;
    /// Borrows CPU storage as a slice of this type (None if the dtype differs).
    fn unwrap(s: &CpuStorage) -> Option<&[Self]>;

    /// C = alpha * A·B + beta * C, with A m×k, B k×n, C m×n, each given by
    /// its slice and (row stride, column stride) in elements. `beta == 0`
    /// overwrites C without reading it. Panics if a slice is too short.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        sa: (isize, isize),
        b: &[Self],
        sb: (isize, isize),
        beta: Self,
        c: &mut [Self],
        sc: (isize, isize),
    );
}

macro_rules! impl_element {
    ($t:ty, $dtype:ident, $gemm:ident) => {
        impl Element for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            const DTYPE: DType = DType::$dtype;

            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            fn wrap(v: Vec<Self>) -> CpuStorage {
                CpuStorage::$dtype(v)
            }
            fn unwrap(s: &CpuStorage) -> Option<&[Self]> {
                match s {
                    CpuStorage::$dtype(v) => Some(v),
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: &[Self],
                sa: (isize, isize),
                b: &[Self],
                sb: (isize, isize),
                beta: Self,
                c: &mut [Self],
                sc: (isize, isize),
            ) {
                crate::gemm::$gemm(m, k, n, alpha, a, sa, b, sb, beta, c, sc);
            }
        }
    };
}

impl_element!(f32, F32, sgemm);
impl_element!(f64, F64, dgemm);
