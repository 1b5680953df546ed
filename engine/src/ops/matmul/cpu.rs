//! CPU reference for the matrix product: one call to the threaded GEMM.

use crate::element::Element;
use crate::error::{Error, Result};
use crate::tensor::CpuStorage;

/// `op(A)·op(B)` where op(A) is `[m, k]` and op(B) is `[k, n]`; `ta`/`tb` say
/// whether the stored matrix is the transpose (stored `[k, m]` / `[n, k]`).
pub fn matmul(
    a: &CpuStorage,
    b: &CpuStorage,
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
) -> Result<CpuStorage> {
    Ok(match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(gemm(a, b, m, k, n, ta, tb)),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(gemm(a, b, m, k, n, ta, tb)),
        _ => return Err(Error::dtype("matmul", "operands have different dtypes")),
    })
}

fn gemm<T: Element>(a: &[T], b: &[T], m: usize, k: usize, n: usize, ta: bool, tb: bool) -> Vec<T> {
    let mut c = vec![T::ZERO; m * n];
    // Row-major [r, c] has strides (c, 1); its transpose has strides (1, c).
    let sa = if ta { (1, m as isize) } else { (k as isize, 1) };
    let sb = if tb { (1, k as isize) } else { (n as isize, 1) };
    T::gemm(
        m,
        k,
        n,
        T::ONE,
        a,
        sa,
        b,
        sb,
        T::ZERO,
        &mut c,
        (n as isize, 1),
    );
    c
}
