//! Every differentiable op, one folder each: `mod.rs` holds the docs (the
//! math of y and of dy/dx), the public function, its shape checks and its
//! tape entry with the backward rule; `cpu.rs` the plain reference loops;
//! `cuda.rs` the GPU path (our kernel from `kernels/src/<op>.cu`, or cuBLAS /
//! cuDNN), which `mod.rs` picks by matching `Storage::Cuda`, in the forward
//! and in the backward closure. `reshape` needs no GPU path (no data
//! moves); `sum`/`mean` of a GPU tensor are summed on the host.
//!
//! The ops: `add`, `mul`, `matmul`, `relu`, `relu6` (Keras `ReLU(6.0)`),
//! `conv2d`, `depthwise_conv2d` (Keras `DepthwiseConv2D`, MobileNet's),
//! `batch_norm`, `max_pool2d`, `avg_pool2d`, `global_pool`, `zero_pad2d`,
//! `bilinear_resize`, `concat` (Keras `Concatenate(axis=-1)`, Inception's),
//! `dropout`, `softmax_cross_entropy`, `reshape`, `reduce`.
//!
//! Adding an op: a new folder here, one line below, and one row in each test
//! table: gradient checks in `tests/tests/gradcheck.rs` (elementwise, dense
//! and normalisation ops) or `tests/tests/gradcheck_window.rs` (ops over
//! NHWC windows: convolutions, pools, padding), references in
//! `tests/tests/reference_ops.rs` or `reference_window.rs`, CPU/GPU parity
//! in `tests/tests/cuda_parity.rs`. Each op's header names its tests on a
//! "Tests:" line.

pub mod add;
pub mod avg_pool2d;
pub mod batch_norm;
pub mod bilinear_resize;
pub mod concat;
pub mod conv2d;
pub mod depthwise_conv2d;
pub mod dropout;
pub mod global_pool;
pub mod matmul;
pub mod max_pool2d;
pub mod mul;
pub mod padding;
pub(crate) mod parallel;
pub mod reduce;
pub mod relu;
pub mod relu6;
pub mod reshape;
pub mod softmax_cross_entropy;
pub mod zero_pad2d;

pub use add::add;
pub use avg_pool2d::avg_pool2d;
pub use batch_norm::{batch_norm, batch_norm_train};
pub use bilinear_resize::bilinear_resize;
pub use concat::concat;
pub use conv2d::{conv2d, conv2d_in, conv2d_relu6};
pub use depthwise_conv2d::{depthwise_conv2d, depthwise_conv2d_relu6};
pub use dropout::dropout;
pub use global_pool::{global_avg_pool, global_max_pool};
pub use matmul::matmul;
pub use max_pool2d::max_pool2d;
pub use mul::mul;
pub use padding::{window_2d, Padding, Window2d};
pub use reduce::{mean, sum};
pub use relu::relu;
pub use relu6::relu6;
pub use reshape::{flatten, reshape};
pub use softmax_cross_entropy::{softmax, softmax_cross_entropy};
pub use zero_pad2d::zero_pad2d;

/// Whether a convolution with these operands (input, kernel, optional
/// bias) may take its fused CPU inference path ([`conv2d_relu6`],
/// [`depthwise_conv2d_relu6`]): every operand is f32 on the CPU and no
/// gradient is to be computed. Otherwise the fused ops are the two ops.
pub(crate) fn fused_inference_applies(operands: &[Option<&crate::Tensor>]) -> bool {
    use crate::tensor::{CpuStorage, Storage};
    let operands = || operands.iter().flatten();
    let needs_grad = crate::autograd::is_grad_enabled() && operands().any(|t| t.requires_grad());
    let cpu_f32 = operands().all(|t| matches!(t.storage(), Storage::Cpu(CpuStorage::F32(_))));
    !needs_grad && cpu_f32
}
