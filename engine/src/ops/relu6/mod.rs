//! ReLU6 (Keras `ReLU(6.0)`, `tf.nn.relu6`): y = min(max(x, 0), 6).
//!
//! Backward: dx = dy where 0 < x < 6, else 0. At the two kinks (x exactly 0
//! or 6) the derivative is taken as 0, TensorFlow's rule (its `Relu6Grad`
//! passes the gradient only for 0 < x < 6). As for [`super::relu`], NaN maps
//! to 0 (every comparison with NaN is false).
//!
//! Tests: gradient check `relu6` (`tests/tests/gradcheck.rs`); reference
//! `clips_at_0_and_6_and_passes_the_gradient_strictly_between` (below); GPU
//! parity case "relu6" (`tests/tests/cuda_parity.rs`).

mod cpu;
mod cuda;

pub(crate) use cpu::{in_place as relu6_in_place, relu6 as relu6_value};

use crate::autograd::record;
use crate::error::Result;
use crate::tensor::{mixed_devices, Storage, Tensor};

/// ReLU clipped at 6, elementwise (MobileNet's activation).
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    let y = match x.storage() {
        Storage::Cpu(s) => Storage::Cpu(cpu::forward(s)),
        Storage::Cuda(s) => Storage::Cuda(cuda::forward(s)?),
    };
    let x_saved = x.clone();
    Ok(record(
        "relu6",
        y,
        x.shape().to_vec(),
        &[x],
        Box::new(move |dy, _| {
            let dx = match (x_saved.storage(), dy.storage()) {
                (Storage::Cpu(xs), Storage::Cpu(dys)) => Storage::Cpu(cpu::backward(xs, dys)?),
                (Storage::Cuda(xs), Storage::Cuda(dys)) => Storage::Cuda(cuda::backward(xs, dys)?),
                (xs, dys) => return Err(mixed_devices("relu6", xs.device(), dys.device())),
            };
            Ok(vec![Some(Tensor::from_storage(dx, x_saved.shape())?)])
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_at_0_and_6_and_passes_the_gradient_strictly_between() {
        let v = vec![-1.0f32, 0.0, 0.5, 5.999, 6.0, 7.5, f32::NAN];
        let x = crate::Param::new("x", Tensor::from_vec(v, &[7]).unwrap());
        let y = relu6(&x.tensor()).unwrap();
        assert_eq!(y.to_vec_f32(), [0.0, 0.0, 0.5, 5.999, 6.0, 6.0, 0.0]);
        crate::ops::sum(&y).unwrap().backward().unwrap();
        let dx = x.grad().unwrap().to_vec_f32();
        assert_eq!(dx, [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    }
}
