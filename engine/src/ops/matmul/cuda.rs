//! CUDA path for the matrix product: one cuBLAS SGEMM.
//!
//! cuBLAS is column-major; thaw is row-major. A row-major `[r, c]` buffer
//! read as column-major is the `[c, r]` transpose, so the row-major product
//! `C = op(A)·op(B)` is computed as the column-major product
//! `Cᵀ = op(B)ᵀ·op(A)ᵀ`: swap the operands, swap m and n, and nothing is
//! copied ([`column_major_gemm`] writes the arguments down, and a unit test
//! checks them against a plain loop that follows cuBLAS's definition).
//! TF32 is off unless `THAW_ALLOW_TF32=1` (see `engine::cuda`).

use crate::cuda::cudarc::cublas::sys::cublasOperation_t;
use crate::cuda::cudarc::cublas::{Gemm, GemmConfig};
use crate::cuda::CudaStorage;
use crate::error::Result;

/// The arguments of a column-major GEMM `C = α·op(A)·op(B) + β·C` (cuBLAS's
/// `m, n, k`, transposes and leading dimensions), with `a_is_right` saying
/// that cuBLAS's A is thaw's right operand (always, here: the swap above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnMajorGemm {
    /// Whether cuBLAS transposes its first operand (thaw's B).
    pub trans_first: bool,
    /// Whether cuBLAS transposes its second operand (thaw's A).
    pub trans_second: bool,
    /// Rows of the column-major result (thaw's n).
    pub m: usize,
    /// Columns of the column-major result (thaw's m).
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
    /// Leading dimension of the first operand (thaw's B as stored).
    pub ld_first: usize,
    /// Leading dimension of the second operand (thaw's A as stored).
    pub ld_second: usize,
    /// Leading dimension of the result (thaw's n).
    pub ldc: usize,
}

/// cuBLAS arguments for the row-major `C[m, n] = op(A)[m, k] · op(B)[k, n]`,
/// where `ta`/`tb` say that A is stored `[k, m]` / B is stored `[n, k]`.
pub fn column_major_gemm(m: usize, k: usize, n: usize, ta: bool, tb: bool) -> ColumnMajorGemm {
    ColumnMajorGemm {
        // B stored [k, n] reads as column-major [n, k] = op(B)ᵀ already; stored [n, k] it needs a transpose.
        trans_first: tb,
        trans_second: ta,
        m: n,
        n: m,
        k,
        ld_first: if tb { k } else { n },
        ld_second: if ta { m } else { k },
        ldc: n,
    }
}

/// `op(A)·op(B)` (see [`column_major_gemm`]) as a new `[m, n]` buffer.
pub fn matmul(
    a: &CudaStorage,
    b: &CudaStorage,
    (m, k, n): (usize, usize, usize),
    ta: bool,
    tb: bool,
) -> Result<CudaStorage> {
    let dev = a.device();
    let mut c = dev.alloc::<f32>(m * n)?;
    if m * n == 0 {
        return Ok(CudaStorage::new(c, dev));
    }
    let g = column_major_gemm(m, k, n, ta, tb);
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    let cfg = GemmConfig {
        transa: op(g.trans_first),
        transb: op(g.trans_second),
        m: g.m as i32,
        n: g.n as i32,
        k: g.k as i32,
        alpha: 1.0f32,
        lda: g.ld_first.max(1) as i32,
        ldb: g.ld_second.max(1) as i32,
        beta: 0.0f32,
        ldc: g.ldc.max(1) as i32,
    };
    // SAFETY: the buffers hold k·n (B), m·k (A) and m·n (C) floats, as the
    // dimensions and leading dimensions above describe.
    unsafe { dev.blas()?.gemm(cfg, b.slice(), a.slice(), &mut c) }
        .map_err(dev.error("cuBLAS SGEMM"))?;
    Ok(CudaStorage::new(c, dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cuBLAS's definition, column-major: C[i + j·ldc] = Σ_p opA(i, p) · opB(p, j).
    fn cublas_reference(g: &ColumnMajorGemm, first: &[f32], second: &[f32]) -> Vec<f32> {
        let at = |buf: &[f32], trans: bool, ld: usize, row: usize, col: usize| {
            if trans {
                buf[col + row * ld]
            } else {
                buf[row + col * ld]
            }
        };
        let mut c = vec![0.0; g.ldc * g.n];
        for j in 0..g.n {
            for i in 0..g.m {
                c[i + j * g.ldc] = (0..g.k)
                    .map(|p| {
                        at(first, g.trans_first, g.ld_first, i, p)
                            * at(second, g.trans_second, g.ld_second, p, j)
                    })
                    .sum();
            }
        }
        c
    }

    #[test]
    fn row_major_products_map_onto_column_major_gemm_arguments() {
        let (m, k, n) = (3, 4, 5);
        for ta in [false, true] {
            for tb in [false, true] {
                // A as stored: [m, k] or [k, m]; B as stored: [k, n] or [n, k].
                let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
                let b: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32 * 0.25).collect();
                let op_a = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
                let op_b = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
                let expected: Vec<f32> = (0..m * n)
                    .map(|ij| (0..k).map(|p| op_a(ij / n, p) * op_b(p, ij % n)).sum())
                    .collect();
                let g = column_major_gemm(m, k, n, ta, tb);
                assert_eq!(cublas_reference(&g, &b, &a), expected, "ta={ta} tb={tb}");
            }
        }
    }
}
