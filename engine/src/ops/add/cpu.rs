//! CPU reference for the broadcast sum.

use super::broadcast::{self, Plan};
use crate::error::{Error, Result};
use crate::tensor::CpuStorage;

/// y = a + b over the broadcast shape.
pub fn forward(a: &CpuStorage, b: &CpuStorage, plan: &Plan) -> Result<CpuStorage> {
    Ok(match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => {
            CpuStorage::F32(broadcast::zip_with(plan, a, b, |x, y| x + y))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b)) => {
            CpuStorage::F64(broadcast::zip_with(plan, a, b, |x, y| x + y))
        }
        _ => return Err(Error::dtype("add", "operands have different dtypes")),
    })
}

/// d(operand `side`) = dy summed over the dims that operand was broadcast along.
pub fn backward(dy: &CpuStorage, plan: &Plan, side: usize, len: usize) -> CpuStorage {
    crate::map_cpu!(dy, |g: T| broadcast::reduce_to::<T>(
        plan, side, len, g, None
    ))
}
