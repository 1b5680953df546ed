//! CPU reference for the full reductions.

use crate::element::Element;

/// Σ v, accumulated in f64 from first to last element (a fixed order, so the
/// result never depends on threading), whatever the element type.
pub fn sum<T: Element>(v: &[T]) -> f64 {
    v.iter().fold(0f64, |acc, &x| acc + x.to_f64())
}
