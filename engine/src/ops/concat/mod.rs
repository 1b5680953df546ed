//! Concatenation along the last (channel) axis (Keras `Concatenate(axis=-1)`),
//! as InceptionV3's `mixed0` .. `mixed10` join their branches.
//!
//! ```text
//! y[..., o_i + ch] = x_i[..., ch]    for ch < c_i,  o_i = c_0 + … + c_{i−1}
//! ```
//!
//! Every input `x_i` is `[..., c_i]` with the same leading dims (`[n, h, w]`
//! for NHWC maps); `y` is `[..., c_0 + c_1 + …]`.
//!
//! Backward: y copies each input once, so dx_i is the matching slice of dy:
//! `dx_i[..., ch] = dy[..., o_i + ch]`. An input given twice gets the sum of
//! both slices (the tape adds them).
//!
//! Tests: gradient checks `concat_three_inputs` and
//! `concat_repeated_input_sums_both_slices` (`tests/tests/gradcheck.rs`);
//! reference against Keras `concat_matches_keras_concatenate`, placement and
//! errors `concat_places_each_input_in_its_channels` and
//! `concat_rejects_bad_inputs_clearly` (`tests/tests/reference_ops.rs`); GPU
//! parity case "concat 3 inputs along channels" (`tests/tests/cuda_parity.rs`).

mod cpu;
mod cuda;

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::tensor::{mixed_devices, Storage, Tensor};

const OP: &str = "concat";

/// Joins `xs` along their last axis, in order. All inputs must have the same
/// rank (at least 1), the same leading dims, dtype and device, and no
/// zero-sized dim; an empty list is an error.
///
/// ```
/// use engine::{ops, Tensor};
/// // Two pixels; a has one channel, b two: y holds a's channel, then b's.
/// let a = Tensor::from_vec(vec![1.0f32, 2.0], &[1, 1, 2, 1])?;
/// let b = Tensor::from_vec(vec![10.0f32, 11.0, 20.0, 21.0], &[1, 1, 2, 2])?;
/// let y = ops::concat(&[a, b])?;
/// assert_eq!(y.shape(), [1, 1, 2, 3]);
/// assert_eq!(y.to_vec_f32(), [1.0, 10.0, 11.0, 2.0, 20.0, 21.0]);
/// # Ok::<(), engine::Error>(())
/// ```
pub fn concat(xs: &[Tensor]) -> Result<Tensor> {
    let first = xs
        .first()
        .ok_or_else(|| Error::invalid(OP, "no tensors to concatenate: pass at least one"))?;
    let rank = first.rank();
    if rank == 0 {
        return Err(Error::shape(
            OP,
            "input 0 is a scalar, which has no channel axis: pass tensors of rank 1 or more",
        ));
    }
    let lead = &first.shape()[..rank - 1];
    for (i, x) in xs.iter().enumerate() {
        if x.rank() != rank || &x.shape()[..rank - 1] != lead {
            return Err(Error::shape(
                OP,
                format!(
                    "input {i} has shape {:?} but input 0 has {:?}: every input needs the same \
                     rank and the same dims except the last (channels)",
                    x.shape(),
                    first.shape()
                ),
            ));
        }
        if x.numel() == 0 {
            return Err(Error::shape(
                OP,
                format!("input {i} {:?} has a zero-sized dimension", x.shape()),
            ));
        }
        if x.dtype() != first.dtype() {
            return Err(Error::dtype(
                OP,
                format!(
                    "input {i} is {} but input 0 is {}: convert with .to_dtype(...) first",
                    x.dtype(),
                    first.dtype()
                ),
            ));
        }
        if x.device() != first.device() {
            return Err(mixed_devices(OP, first.device(), x.device()));
        }
    }
    let rows: usize = lead.iter().product();
    let widths: Vec<usize> = xs.iter().map(|x| x.shape()[rank - 1]).collect();
    let c_out: usize = widths.iter().sum();
    let y = match first.storage() {
        Storage::Cpu(_) => {
            let parts = xs.iter().map(|x| x.cpu_storage(OP));
            Storage::Cpu(cpu::forward(&parts.collect::<Result<Vec<_>>>()?, rows))
        }
        Storage::Cuda(_) => {
            let parts = xs.iter().map(|x| x.cuda_storage(OP));
            Storage::Cuda(cuda::forward(&parts.collect::<Result<Vec<_>>>()?, rows)?)
        }
    };
    let mut shape = first.shape().to_vec();
    shape[rank - 1] = c_out;
    let in_shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.shape().to_vec()).collect();
    Ok(record(
        OP,
        y,
        shape,
        &xs.iter().collect::<Vec<_>>(),
        Box::new(move |dy, needs| {
            let mut offset = 0;
            let mut grads = Vec::with_capacity(in_shapes.len());
            for (in_shape, &need) in in_shapes.iter().zip(needs) {
                let c = in_shape[rank - 1];
                let cols = cpu::Columns {
                    rows,
                    c_out,
                    offset,
                    c,
                };
                offset += c;
                grads.push(if need {
                    let dx = match dy.storage() {
                        Storage::Cpu(s) => Storage::Cpu(cpu::slice(s, &cols)),
                        Storage::Cuda(s) => Storage::Cuda(cuda::slice(s, &cols)?),
                    };
                    Some(Tensor::from_storage(dx, in_shape)?)
                } else {
                    None
                });
            }
            Ok(grads)
        }),
    ))
}
