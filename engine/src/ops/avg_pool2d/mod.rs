//! Average pooling over NHWC windows (Keras `AveragePooling2D`), channel by
//! channel. Padded cells are left out of the count (TensorFlow's rule):
//!
//! ```text
//! y[b, oy, ox, ch] = (1 / |W|) Σ_{(iy, ix) ∈ W} x[b, iy, ix, ch]
//! ```
//!
//! where `W` is the set of the window's cells that lie inside the input (so a
//! corner window of a 'same' pooling divides by fewer than `ph·pw`).
//!
//! Backward: every cell of the window receives `dy[b, oy, ox, ch] / |W|`;
//! overlapping windows (stride < pool) add their shares.
//!
//! Tests: gradient checks `avg_pool2d_*` (`tests/tests/gradcheck_window.rs`);
//! reference against Keras `pools_match_keras` and
//! `max_pool_never_chooses_padding_and_avg_pool_does_not_count_it`
//! (`tests/tests/reference_window.rs`); GPU parity case "avg_pool2d 3x3 s1
//! same" (`tests/tests/cuda_parity.rs`).

mod cpu;
mod cuda;

use super::max_pool2d::PoolGeometry;
use super::padding::Padding;
use crate::autograd::record;
use crate::error::Result;
use crate::tensor::{Storage, Tensor};

const OP: &str = "avg_pool2d";

/// Average pooling with a `pool` (rows, columns) window at `stride`,
/// TensorFlow `padding`. `[n, h, w, c]` to `[n, oh, ow, c]`. Errors (never
/// panics) on a rank other than 4, a zero-sized input, a zero pool or stride,
/// a window larger than the padded input, or a padding as large as the pool.
pub fn avg_pool2d(
    x: &Tensor,
    pool: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    let g = PoolGeometry::new(OP, x, pool, stride, padding)?;
    let y = match x.storage() {
        Storage::Cpu(s) => Storage::Cpu(cpu::forward(s, &g)),
        Storage::Cuda(s) => Storage::Cuda(cuda::forward(s, &g)?),
    };
    let x_shape = x.shape().to_vec();
    Ok(record(
        OP,
        y,
        vec![g.n, g.oh, g.ow, g.c],
        &[x],
        Box::new(move |dy, _| {
            let dx = match dy.storage() {
                Storage::Cpu(s) => Storage::Cpu(cpu::backward(s, &g)),
                Storage::Cuda(s) => Storage::Cuda(cuda::backward(s, &g)?),
            };
            Ok(vec![Some(Tensor::from_storage(dx, &x_shape)?)])
        }),
    ))
}
