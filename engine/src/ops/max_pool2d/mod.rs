//! Max pooling over NHWC windows (Keras `MaxPooling2D`), channel by channel.
//!
//! ```text
//! y[b, oy, ox, ch] = max over the window's cells inside x of x[b, iy, ix, ch]
//! ```
//!
//! Padded cells count as −∞, so they are never chosen (TensorFlow's rule);
//! a padding that would leave a window with only padded cells is refused.
//!
//! Backward: the whole of `dy[b, oy, ox, ch]` goes to the cell that holds
//! the maximum; every other cell of the window gets 0. **Ties**: the FIRST
//! maximum in row-major window order (row `ky` outer, column `kx` inner) gets
//! it. Overlapping windows (stride < pool) add their shares. The CUDA kernel
//! follows the same rule. The backward pass finds the maxima again in the
//! saved input instead of storing indices during the forward pass.
//!
//! Tests: gradient checks `max_pool2d_*` (`tests/tests/gradcheck_window.rs`);
//! reference against Keras `pools_match_keras`,
//! `max_pool_tie_goes_to_the_first_maximum_in_row_major_order` and
//! `max_pool_never_chooses_padding_and_avg_pool_does_not_count_it`
//! (`tests/tests/reference_window.rs`); GPU parity cases "max_pool2d 2x2 s2
//! valid" and "max_pool2d 3x3 s2 same" (`tests/tests/cuda_parity.rs`).

mod cpu;
mod cuda;
mod geometry;

use super::padding::Padding;
use crate::autograd::record;
use crate::error::Result;
use crate::tensor::{mixed_devices, same_kind, Storage, Tensor};
pub(crate) use geometry::PoolGeometry;

const OP: &str = "max_pool2d";

/// Max pooling with a `pool` (rows, columns) window at `stride`, TensorFlow
/// `padding`. `[n, h, w, c]` to `[n, oh, ow, c]`. Errors (never panics) on a
/// rank other than 4, a zero-sized input, a zero pool or stride, a window
/// larger than the padded input, or a padding as large as the pool.
pub fn max_pool2d(
    x: &Tensor,
    pool: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    let g = PoolGeometry::new(OP, x, pool, stride, padding)?;
    // On the GPU the forward also gives the argmax, which the backward reuses.
    let (y, argmax) = match x.storage() {
        Storage::Cpu(s) => (Storage::Cpu(cpu::forward(s, &g)), None),
        Storage::Cuda(s) => {
            let (y, argmax) = cuda::forward(s, &g)?;
            (Storage::Cuda(y), Some(argmax))
        }
    };
    let x_saved = x.clone();
    Ok(record(
        OP,
        y,
        vec![g.n, g.oh, g.ow, g.c],
        &[x],
        Box::new(move |dy, _| {
            same_kind(OP, &x_saved, dy)?;
            let dx = match (x_saved.storage(), dy.storage()) {
                (Storage::Cpu(xs), Storage::Cpu(dys)) => Storage::Cpu(cpu::backward(xs, dys, &g)?),
                (Storage::Cuda(_), Storage::Cuda(dys)) => {
                    let argmax = argmax.as_ref().expect("the GPU forward saved the argmax");
                    Storage::Cuda(cuda::backward(dys, argmax, &g)?)
                }
                (xs, dys) => return Err(mixed_devices(OP, xs.device(), dys.device())),
            };
            Ok(vec![Some(Tensor::from_storage(dx, x_saved.shape())?)])
        }),
    ))
}
