//! CPU reference for ReLU6, over rayon for large tensors (`ops::parallel`).

use crate::element::Element;
use crate::error::{Error, Result};
use crate::map_cpu;
use crate::ops::parallel;
use crate::tensor::CpuStorage;

pub fn forward(x: &CpuStorage) -> CpuStorage {
    map_cpu!(x, |v: T| {
        let six = T::from_f64(6.0);
        parallel::map(v, |a| {
            if a > T::ZERO {
                if a < six {
                    a
                } else {
                    six
                }
            } else {
                T::ZERO
            }
        })
    })
}

pub fn backward(x: &CpuStorage, dy: &CpuStorage) -> Result<CpuStorage> {
    Ok(match (x, dy) {
        (CpuStorage::F32(x), CpuStorage::F32(dy)) => CpuStorage::F32(mask(x, dy)),
        (CpuStorage::F64(x), CpuStorage::F64(dy)) => CpuStorage::F64(mask(x, dy)),
        _ => {
            return Err(Error::dtype(
                "relu6",
                "gradient dtype differs from input dtype",
            ))
        }
    })
}

/// dy where 0 < x < 6, else 0.
fn mask<T: Element>(x: &[T], dy: &[T]) -> Vec<T> {
    let six = T::from_f64(6.0);
    parallel::zip(
        x,
        dy,
        |a, g| {
            if a > T::ZERO && a < six {
                g
            } else {
                T::ZERO
            }
        },
    )
}
