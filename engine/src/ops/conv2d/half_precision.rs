//! conv2d in half precision on the CPU: the reference that the GPU's 16-bit
//! cuDNN convolution is checked against. It emulates, in plain f32 code,
//! what "16-bit operands, f32 accumulation" does:
//!
//! ```text
//! y = f32(round_p(Σ round_p(x) · round_p(K))) + bias        (Σ in f32)
//! ```
//!
//! 1. round the input and the kernel to the 16-bit format `p`
//!    ([`Precision::round`]; every 16-bit value is exactly an f32);
//! 2. the ordinary f32 convolution of the rounded values (`cpu.rs`): each
//!    product of two 16-bit values is exact in f32, the sums are f32 sums;
//! 3. round the result to `p`, as cuDNN does when it writes a 16-bit output;
//! 4. add the bias in f32 (on the GPU: the f32 bias kernel, after the
//!    16-bit output is widened back to f32).
//!
//! The result is an f32 tensor like any other, so the layers after the conv
//! (batch norm, ReLU, pooling, residual adds) run in f32. That differs from
//! PyTorch's autocast, which keeps activations in 16 bits between layers;
//! the next conv rounds its input anyway, so the two differ only in those
//! f32 steps in between (see `docs/cuda.md`, "Half precision"). This is
//! slower than the f32 forward (two extra passes over the data), which is
//! fine for a reference and for measuring drift.

use super::cpu::{self, ConvGeometry};
use crate::error::{Error, Result};
use crate::precision::Precision;
use crate::tensor::CpuStorage;

const OP: &str = "conv2d";

/// The half-precision forward (module docs); f32 storage only.
pub fn forward(
    precision: Precision,
    x: &CpuStorage,
    kernel: &CpuStorage,
    bias: Option<&CpuStorage>,
    g: &ConvGeometry,
) -> Result<CpuStorage> {
    let (x, kernel) = match (x, kernel) {
        (CpuStorage::F32(x), CpuStorage::F32(k)) => (x, k),
        (x, _) => return Err(not_f32(precision, x)),
    };
    let x16 = CpuStorage::F32(precision.round_all(x));
    let k16 = CpuStorage::F32(precision.round_all(kernel));
    let mut y = match cpu::forward(&x16, &k16, None, g)? {
        CpuStorage::F32(y) => y,
        other => return Err(not_f32(precision, &other)),
    };
    match bias {
        None => y.iter_mut().for_each(|v| *v = precision.round(*v)),
        Some(CpuStorage::F32(b)) => {
            for row in y.chunks_exact_mut(g.o) {
                for (v, b) in row.iter_mut().zip(b) {
                    *v = precision.round(*v) + b;
                }
            }
        }
        Some(other) => return Err(not_f32(precision, other)),
    }
    Ok(CpuStorage::F32(y))
}

fn not_f32(precision: Precision, s: &CpuStorage) -> Error {
    Error::dtype(
        OP,
        format!(
            "{precision} precision takes f32 tensors (it rounds them to 16 bits), got {}; \
             use Precision::F32 for {} tensors",
            s.dtype(),
            s.dtype()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::reference;
    use crate::ops::{conv2d, conv2d_in, window_2d, Padding};
    use crate::{no_grad, Param, Precision, Tensor};

    /// The definition in `half_precision.rs`'s module docs, from the one
    /// reference: each product of rounded values summed in f64 ([`reference()`]
    /// of the rounded operands), then the sum rounded to f32 and to `p`, then
    /// the bias. Also returns, per output, how far any f32 summation order can
    /// be from the exact sum: `terms · 2⁻²⁴ · Σ|products|` (the textbook
    /// bound), with `Σ|products|` the reference of `|x|` and `|K|`, and the
    /// number of terms the reference of all-ones operands.
    fn half_definition(
        p: Precision,
        x: &Tensor,
        k: &Tensor,
        bias: &[f32],
        stride: (usize, usize),
        padding: Padding,
    ) -> (Vec<f32>, Vec<f32>) {
        let map = |t: &Tensor, f: &dyn Fn(f32) -> f32| {
            let v = t.to_vec_f32().iter().map(|&v| f(v)).collect();
            Tensor::from_vec(v, t.shape()).unwrap()
        };
        let conv =
            |x: &Tensor, k: &Tensor| reference(x, k, None, stride, padding).unwrap().to_vec_f64();
        let sums = conv(&map(x, &|v| p.round(v)), &map(k, &|v| p.round(v)));
        let abs_sums = conv(
            &map(x, &|v| p.round(v).abs()),
            &map(k, &|v| p.round(v).abs()),
        );
        let terms = conv(&map(x, &|_| 1.0), &map(k, &|_| 1.0));
        let y = sums
            .iter()
            .enumerate()
            .map(|(i, &sum)| p.round(sum as f32) + bias[i % bias.len()])
            .collect();
        let f32_error = terms
            .iter()
            .zip(&abs_sums)
            .map(|(&terms, &abs_sum)| (terms * abs_sum * 2f64.powi(-24)) as f32)
            .collect();
        (y, f32_error)
    }

    /// The next value of format `p` above `|v|`, minus `|v|`: one 16-bit ulp.
    fn ulp(p: Precision, v: f32) -> f32 {
        let v = p.round(v.abs());
        match p {
            Precision::F32 => f32::from_bits(v.to_bits() + 1) - v,
            Precision::F16 => {
                let h = half::f16::from_f32(v);
                half::f16::from_bits(h.to_bits() + 1).to_f32() - v
            }
            Precision::Bf16 => {
                let h = half::bf16::from_f32(v);
                half::bf16::from_bits(h.to_bits() + 1).to_f32() - v
            }
        }
    }

    /// Values of mixed sizes and signs, many with more digits than f16 or bf16 keep.
    fn mixed_values(n: usize, salt: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| {
                let u = crate::rng::uniform_f32(salt, 7, i);
                let scale = [0.01, 0.3, 1.0, 7.0][(i % 4) as usize];
                (2.0 * u - 1.0) * scale
            })
            .collect()
    }

    #[test]
    fn half_precision_matches_its_definition_on_odd_shapes() {
        // (input NHWC, kernel (kh, kw, o), stride, padding, (pt, pl, oh, ow) as TensorFlow resolves them)
        let cases = [
            ([2, 5, 7, 3], [3, 2, 4], (2, 1), Padding::Same, (1, 0, 3, 7)),
            (
                [1, 6, 5, 5],
                [3, 3, 3],
                (1, 1),
                Padding::Valid,
                (0, 0, 4, 3),
            ),
            ([3, 4, 4, 2], [1, 1, 5], (1, 1), Padding::Same, (0, 0, 4, 4)),
        ];
        for (xs, [kh, kw, o], stride, padding, geo) in cases {
            let c = xs[3];
            let win = window_2d("test", (xs[1], xs[2]), (kh, kw), stride, padding).unwrap();
            assert_eq!((win.pad_top, win.pad_left, win.out_h, win.out_w), geo);
            let x = mixed_values(xs.iter().product(), 1);
            let k = mixed_values(kh * kw * c * o, 2);
            let bias = mixed_values(o, 3);
            let xt = Tensor::from_vec(x.clone(), &xs).unwrap();
            let kt = Tensor::from_vec(k.clone(), &[kh, kw, c, o]).unwrap();
            let bt = Tensor::from_vec(bias.clone(), &[o]).unwrap();
            let mut results = Vec::new();
            for p in Precision::ALL {
                let got = conv2d_in(p, &xt, &kt, Some(&bt), stride, padding)
                    .unwrap()
                    .to_vec_f32();
                let (want, f32_error) = half_definition(p, &xt, &kt, &bias, stride, padding);
                assert_eq!(got.len(), want.len());
                // The conv's f32 sums are not the exact sum: they may differ by
                // f32_error, and that may move the result across a rounding
                // boundary of `p` (one ulp of `p`, before the bias). Rarely:
                // nine in ten 16-bit results must be exact. Skipping any rounding of
                // x or K moves results by ~2⁻¹¹ (f16) or 2⁻⁸ (bf16) of the
                // products, far more than this.
                let mut exact = 0;
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let b = bias[i % o];
                    let tol = ulp(p, w - b) + f32_error[i] * 1.01;
                    assert!(
                        (g - w).abs() <= tol,
                        "{p} {xs:?}: output {i} is {g}, the definition gives {w}"
                    );
                    exact += (g == w) as usize;
                }
                // (In f32 itself the summation order shows in the last bit of most results.)
                if p.is_half() {
                    assert!(
                        exact * 10 >= got.len() * 9,
                        "{p}: only {exact} of {} exact",
                        got.len()
                    );
                }
                results.push(got);
            }
            // f32 is conv2d itself; the 16-bit formats moved the results, each its own way.
            let f32_conv = conv2d(&xt, &kt, Some(&bt), stride, padding).unwrap();
            assert_eq!(results[0], f32_conv.to_vec_f32());
            assert_ne!(results[1], results[0]);
            assert_ne!(results[2], results[0]);
            assert_ne!(results[2], results[1]);
        }
    }

    /// A 1x1 convolution of one pixel with one weight: y = round(round(x)·round(k)) + bias.
    fn one_product(p: Precision, x: f32, k: f32, bias: f32) -> f32 {
        let xt = Tensor::from_vec(vec![x], &[1, 1, 1, 1]).unwrap();
        let kt = Tensor::from_vec(vec![k], &[1, 1, 1, 1]).unwrap();
        let bt = Tensor::from_vec(vec![bias], &[1]).unwrap();
        conv2d_in(p, &xt, &kt, Some(&bt), (1, 1), Padding::Valid)
            .unwrap()
            .to_vec_f32()[0]
    }

    #[test]
    fn f16_and_bf16_round_differently_and_the_bias_stays_f32() {
        // 1 + 2⁻⁹ needs 9 mantissa bits: f16 has 10, bf16 has 7.
        let x = 1.0 + 2f32.powi(-9);
        // A bias of 2⁻²⁰ survives only because it is added in f32, after the rounding.
        let b = 2f32.powi(-20);
        assert_eq!(one_product(Precision::F32, x, 1.0, b), x + b);
        assert_eq!(one_product(Precision::F16, x, 1.0, b), x + b);
        assert_eq!(one_product(Precision::Bf16, x, 1.0, b), 1.0 + b);
        // The result is rounded too: (1 + 2⁻⁹)² = 1 + 2⁻⁸ + 2⁻¹⁸ is exact in
        // f32; f16 drops the 2⁻¹⁸, bf16 already rounded both factors to 1.
        let square = 1.0 + 2f32.powi(-8) + 2f32.powi(-18);
        assert_eq!(one_product(Precision::F32, x, x, 0.0), square);
        assert_eq!(one_product(Precision::F16, x, x, 0.0), 1.0 + 2f32.powi(-8));
        assert_eq!(one_product(Precision::Bf16, x, x, 0.0), 1.0);
    }

    #[test]
    fn beyond_f16_range_is_infinite_and_bf16_keeps_the_range() {
        // Finite 16-bit inputs, a result past f16's largest finite 65504: +inf.
        assert_eq!(
            one_product(Precision::F16, 300.0, 300.0, 0.0),
            f32::INFINITY
        );
        assert_eq!(
            one_product(Precision::F16, -300.0, 300.0, 1.0),
            f32::NEG_INFINITY
        );
        // bf16: 90000 rounded to bf16's 8 significant bits (steps of 512 there).
        assert_eq!(one_product(Precision::Bf16, 300.0, 300.0, 0.0), 90112.0);
        // An input past 65504 is already inf in f16, and inf·0 is NaN.
        assert_eq!(
            one_product(Precision::F16, 70000.0, 0.5, 0.0),
            f32::INFINITY
        );
        assert!(one_product(Precision::F16, 70000.0, 0.0, 0.0).is_nan());
        assert_eq!(one_product(Precision::F32, 300.0, 300.0, 0.0), 90000.0);
    }

    #[test]
    fn half_precision_refuses_to_train_and_runs_frozen() {
        let x = Tensor::from_vec(mixed_values(2 * 4 * 4 * 3, 4), &[2, 4, 4, 3]).unwrap();
        let kernel = Param::new(
            "k",
            Tensor::from_vec(mixed_values(27 * 2, 5), &[3, 3, 3, 2]).unwrap(),
        );
        for p in [Precision::F16, Precision::Bf16] {
            let e = conv2d_in(p, &x, &kernel.tensor(), None, (1, 1), Padding::Same)
                .unwrap_err()
                .to_string();
            assert!(e.contains("train in f32") && e.contains(p.name()), "{e}");
            // Under no_grad, or with the kernel frozen: a constant output.
            let y = {
                let _g = no_grad();
                conv2d_in(p, &x, &kernel.tensor(), None, (1, 1), Padding::Same).unwrap()
            };
            assert!(!y.requires_grad());
            kernel.set_trainable(false);
            let frozen = conv2d_in(p, &x, &kernel.tensor(), None, (1, 1), Padding::Same).unwrap();
            assert_eq!(frozen.to_vec_f32(), y.to_vec_f32());
            kernel.set_trainable(true);
        }
        // f64 tensors have no half-precision path: a dtype error, not a silent cast.
        let x64 = Tensor::from_vec(vec![1.0f64; 16], &[1, 4, 4, 1]).unwrap();
        let k64 = Tensor::from_vec(vec![1.0f64; 9], &[3, 3, 1, 1]).unwrap();
        let e = conv2d_in(Precision::F16, &x64, &k64, None, (1, 1), Padding::Same)
            .unwrap_err()
            .to_string();
        assert!(e.contains("f32") && e.contains("f64"), "{e}");
    }
}
