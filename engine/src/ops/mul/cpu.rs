//! CPU reference for the broadcast product.

use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::add::broadcast::{self, Plan};
use crate::ops::parallel;
use crate::tensor::CpuStorage;

/// y = a · b over the broadcast shape.
pub fn forward(a: &CpuStorage, b: &CpuStorage, plan: &Plan) -> Result<CpuStorage> {
    Ok(match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => {
            CpuStorage::F32(broadcast::zip_with(plan, a, b, |x, y| x * y))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b)) => {
            CpuStorage::F64(broadcast::zip_with(plan, a, b, |x, y| x * y))
        }
        _ => return Err(Error::dtype("mul", "operands have different dtypes")),
    })
}

/// d(operand `side`) = dy · (the other operand), summed over the dims that
/// operand was broadcast along.
pub fn backward(
    dy: &CpuStorage,
    other: &CpuStorage,
    plan: &Plan,
    side: usize,
    len: usize,
) -> Result<CpuStorage> {
    Ok(match (dy, other) {
        (CpuStorage::F32(g), CpuStorage::F32(o)) => {
            CpuStorage::F32(broadcast::reduce_to(plan, side, len, g, Some(o)))
        }
        (CpuStorage::F64(g), CpuStorage::F64(o)) => {
            CpuStorage::F64(broadcast::reduce_to(plan, side, len, g, Some(o)))
        }
        _ => {
            return Err(Error::dtype(
                "mul",
                "gradient dtype differs from operand dtype",
            ))
        }
    })
}

/// `g · o[i]` for every element of `o`: the gradient of a product of two
/// tensors of one shape for a scalar `dy = g` (the same roundings as the
/// elementwise `dy[i] · o[i]` of [`backward`]).
pub fn scaled<T: Element>(g: T, o: &[T]) -> Vec<T> {
    parallel::map(o, move |v| g * v)
}
