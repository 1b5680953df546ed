//! Matrix product: Y = A·B with A `[m, k]` and B `[k, n]`, Y `[m, n]`.
//!
//! A dense layer is `matmul(x, kernel)` with Keras's `[in, out]` kernel,
//! followed by a broadcast add of the bias.
//!
//! Backward: dA = dY·Bᵀ (`[m, k]`), dB = Aᵀ·dY (`[k, n]`). The transposes are
//! free: they are strides passed to the GEMM, no data moves.
//!
//! Tests: gradient check `matmul` (`tests/tests/gradcheck.rs`); reference: the
//! GEMM against plain loops (`engine/src/gemm/tests.rs`); the cuBLAS argument
//! mapping `row_major_products_map_onto_column_major_gemm_arguments`
//! (`cuda.rs`); GPU parity case "matmul [5,7]·[7,3]"
//! (`tests/tests/cuda_parity.rs`).

mod cpu;
mod cuda;
pub use cuda::{column_major_gemm, ColumnMajorGemm};

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::tensor::{mixed_devices, same_kind, Storage, Tensor};

/// Matrix product of two rank-2 tensors.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_kind("matmul", a, b)?;
    let [m, k] = a.dims("matmul", "left operand")?;
    let [k2, n] = b.dims("matmul", "right operand")?;
    if k != k2 {
        return Err(Error::shape(
            "matmul",
            format!("inner dimensions differ: {:?} · {:?}", a.shape(), b.shape()),
        ));
    }
    let y = product(a, b, (m, k, n), false, false)?;
    let (a_saved, b_saved) = (a.clone(), b.clone());
    Ok(record(
        "matmul",
        y,
        vec![m, n],
        &[a, b],
        Box::new(move |dy, needs| {
            // dA[m,k] = dY[m,n] · Bᵀ[n,k]
            let da = if needs[0] {
                let v = product(dy, &b_saved, (m, n, k), false, true)?;
                Some(Tensor::from_storage(v, &[m, k])?)
            } else {
                None
            };
            // dB[k,n] = Aᵀ[k,m] · dY[m,n]
            let db = if needs[1] {
                let v = product(&a_saved, dy, (k, m, n), true, false)?;
                Some(Tensor::from_storage(v, &[k, n])?)
            } else {
                None
            };
            Ok(vec![da, db])
        }),
    ))
}

/// `op(a)·op(b)` on the operands' device, `(m, k, n)` the sizes of the product.
fn product(
    a: &Tensor,
    b: &Tensor,
    (m, k, n): (usize, usize, usize),
    ta: bool,
    tb: bool,
) -> Result<Storage> {
    Ok(match (a.storage(), b.storage()) {
        (Storage::Cpu(a), Storage::Cpu(b)) => Storage::Cpu(cpu::matmul(a, b, m, k, n, ta, tb)?),
        (Storage::Cuda(a), Storage::Cuda(b)) => {
            Storage::Cuda(cuda::matmul(a, b, (m, k, n), ta, tb)?)
        }
        (a, b) => return Err(mixed_devices("matmul", a.device(), b.device())),
    })
}
