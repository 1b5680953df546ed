//! Global average and max pooling (Keras `GlobalAveragePooling2D`,
//! `GlobalMaxPooling2D`): NHWC `[n, h, w, c]` to `[n, c]`, one value per
//! image and channel, the head of ResNet50 and of transfer-learning models.
//!
//! ```text
//! avg: y[b, ch] = (1 / hw) Σ_{iy, ix} x[b, iy, ix, ch]      dx[b, iy, ix, ch] = dy[b, ch] / hw
//! max: y[b, ch] = max_{iy, ix} x[b, iy, ix, ch]             dx = dy[b, ch] at the maximum, 0 elsewhere
//! ```
//!
//! Max ties: the FIRST maximum in row-major order (row `iy` outer, column
//! `ix` inner) gets the whole gradient, as in [`super::max_pool2d`].
//!
//! Tests: gradient checks `global_avg_pool` and `global_max_pool`
//! (`tests/tests/gradcheck_window.rs`); reference against Keras
//! `pools_match_keras` (`tests/tests/reference_window.rs`); GPU parity cases
//! "global_avg_pool" and "global_max_pool" (`tests/tests/cuda_parity.rs`).

mod cpu;
mod cuda;

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::tensor::{mixed_devices, same_kind, Storage, Tensor};

/// Checks an NHWC input with no zero-sized dimension.
fn dims(op: &'static str, x: &Tensor) -> Result<[usize; 4]> {
    let d = x.dims(op, "input (NHWC [n, h, w, c])")?;
    if d.contains(&0) {
        return Err(Error::shape(
            op,
            format!("input {:?} has a zero-sized dimension", x.shape()),
        ));
    }
    Ok(d)
}

/// Mean over height and width: `[n, h, w, c]` to `[n, c]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    const OP: &str = "global_avg_pool";
    let [n, h, w, c] = dims(OP, x)?;
    let y = match x.storage() {
        Storage::Cpu(s) => Storage::Cpu(cpu::avg_forward(s, [n, h, w, c])),
        Storage::Cuda(s) => Storage::Cuda(cuda::avg_forward(s, [n, h, w, c])?),
    };
    Ok(record(
        OP,
        y,
        vec![n, c],
        &[x],
        Box::new(move |dy, _| {
            let dx = match dy.storage() {
                Storage::Cpu(s) => Storage::Cpu(cpu::avg_backward(s, [n, h, w, c])),
                Storage::Cuda(s) => Storage::Cuda(cuda::avg_backward(s, [n, h, w, c])?),
            };
            Ok(vec![Some(Tensor::from_storage(dx, &[n, h, w, c])?)])
        }),
    ))
}

/// Maximum over height and width: `[n, h, w, c]` to `[n, c]`.
pub fn global_max_pool(x: &Tensor) -> Result<Tensor> {
    const OP: &str = "global_max_pool";
    let [n, h, w, c] = dims(OP, x)?;
    // On the GPU the forward also gives the argmax, which the backward reuses.
    let (y, argmax) = match x.storage() {
        Storage::Cpu(s) => (Storage::Cpu(cpu::max_forward(s, [n, h, w, c])), None),
        Storage::Cuda(s) => {
            let (y, argmax) = cuda::max_forward(s, [n, h, w, c])?;
            (Storage::Cuda(y), Some(argmax))
        }
    };
    let x_saved = x.clone();
    Ok(record(
        OP,
        y,
        vec![n, c],
        &[x],
        Box::new(move |dy, _| {
            same_kind(OP, &x_saved, dy)?;
            let dx = match (x_saved.storage(), dy.storage()) {
                (Storage::Cpu(xs), Storage::Cpu(dys)) => {
                    Storage::Cpu(cpu::max_backward(xs, dys, [n, h, w, c])?)
                }
                (Storage::Cuda(_), Storage::Cuda(dys)) => {
                    let argmax = argmax.as_ref().expect("the GPU forward saved the argmax");
                    Storage::Cuda(cuda::max_backward(dys, argmax, [n, h, w, c])?)
                }
                (xs, dys) => return Err(mixed_devices(OP, xs.device(), dys.device())),
            };
            Ok(vec![Some(Tensor::from_storage(dx, &[n, h, w, c])?)])
        }),
    ))
}
