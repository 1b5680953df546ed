//! CPU reference for ReLU6, over rayon for large tensors (`ops::parallel`).

use crate::element::Element;
use crate::error::{Error, Result};
use crate::map_cpu;
use crate::ops::parallel;
use crate::tensor::CpuStorage;

pub fn forward(x: &CpuStorage) -> CpuStorage {
    map_cpu!(x, |v: T| parallel::map(v, relu6))
}

/// `min(max(a, 0), 6)`, NaN to 0: the one definition of the forward, also
/// used where a convolution applies ReLU6 to its own output
/// (`ops::conv2d_relu6`, `ops::depthwise_conv2d_relu6`).
#[inline(always)]
pub(crate) fn relu6<T: Element>(a: T) -> T {
    let six = T::from_f64(6.0);
    if a > T::ZERO {
        if a < six {
            a
        } else {
            six
        }
    } else {
        T::ZERO
    }
}

/// [`relu6`] on every element of `v`, in place, over rayon for large slices.
pub(crate) fn in_place(v: &mut [f32]) {
    use rayon::prelude::*;
    v.par_chunks_mut(1 << 16).for_each(|chunk| {
        for a in chunk {
            *a = relu6(*a);
        }
    });
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
