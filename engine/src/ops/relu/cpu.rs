//! CPU reference for ReLU.

use crate::element::Element;
use crate::error::{Error, Result};
use crate::map_cpu;
use crate::ops::parallel;
use crate::tensor::CpuStorage;

pub fn forward(x: &CpuStorage) -> CpuStorage {
    map_cpu!(x, |v: T| parallel::map(v, |a| if a > T::ZERO {
        a
    } else {
        T::ZERO
    }))
}

pub fn backward(x: &CpuStorage, dy: &CpuStorage) -> Result<CpuStorage> {
    Ok(match (x, dy) {
        (CpuStorage::F32(x), CpuStorage::F32(dy)) => CpuStorage::F32(mask(x, dy)),
        (CpuStorage::F64(x), CpuStorage::F64(dy)) => CpuStorage::F64(mask(x, dy)),
        _ => {
            return Err(Error::dtype(
                "relu",
                "gradient dtype differs from input dtype",
            ))
        }
    })
}

fn mask<T: Element>(x: &[T], dy: &[T]) -> Vec<T> {
    x.iter()
        .zip(dy)
        .map(|(&a, &g)| if a > T::ZERO { g } else { T::ZERO })
        .collect()
}
