//! Reshape and flatten: a new shape over the same data. No data moves: the
//! output shares its input's storage (the `Arc`), only the shape and the
//! tape entry are new, so there is no `cpu.rs` here.
//!
//! Backward: dx = dy viewed with x's shape (again without a copy).
//!
//! Tests: gradient check `reshape_and_flatten` (`tests/tests/gradcheck.rs`);
//! GPU parity case "flatten" (`tests/tests/cuda_parity.rs`).

use crate::autograd::record_shared;
use crate::error::{Error, Result};
use crate::tensor::{numel, Tensor};

/// `t`'s data viewed with `shape`, with no autograd history.
fn view(t: &Tensor, shape: &[usize]) -> Tensor {
    Tensor::new_unchecked(t.storage_arc().clone(), shape.to_vec(), None)
}

fn reshape_named(op: &'static str, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if numel(shape) != x.numel() {
        return Err(Error::shape(
            op,
            format!(
                "cannot view {:?} ({} elements) as {shape:?} ({} elements); the element counts must match",
                x.shape(),
                x.numel(),
                numel(shape)
            ),
        ));
    }
    let x_shape = x.shape().to_vec();
    Ok(record_shared(
        op,
        x.storage_arc().clone(),
        shape.to_vec(),
        &[x],
        Box::new(move |dy, _| Ok(vec![Some(view(dy, &x_shape))])),
    ))
}

/// The same elements, in the same row-major order, with shape `shape`
/// (which must have as many elements as `x`).
pub fn reshape(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    reshape_named("reshape", x, shape)
}

/// `[n, ...]` to `[n, prod(...)]`, as Keras `Flatten` (a `[n]` input becomes
/// `[n, 1]`). Errors on a scalar, which has no batch axis.
pub fn flatten(x: &Tensor) -> Result<Tensor> {
    let Some((&n, rest)) = x.shape().split_first() else {
        return Err(Error::shape(
            "flatten",
            "input is a scalar (shape []); flatten expects [batch, ...]",
        ));
    };
    reshape_named("flatten", x, &[n, numel(rest)])
}
