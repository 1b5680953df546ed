//! The elementwise CPU loops of large tensors, split over rayon: ReLU, add
//! and mul of equal shapes or a row broadcast (a bias), their gradients,
//! batch norm's affine map, tensors filled with one value. They are
//! memory-bound, and one thread does not saturate memory: on large
//! activations two threads take about half the time of one.
//!
//! Each output element is computed exactly as the serial loop computes it,
//! so the results do not depend on the thread count.

use crate::element::Element;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per rayon task (256 KiB of f32): a tensor smaller than this
/// stays on the calling thread.
const CHUNK: usize = 1 << 16;

/// `len` copies of `value` (a gradient of ones). Zeros (+0.0) come from `vec!`,
/// whose `calloc` can hand out pages the kernel has already zeroed.
pub(crate) fn filled<T: Element>(len: usize, value: T) -> Vec<T> {
    if value.to_f64().to_bits() == 0 {
        return vec![T::ZERO; len];
    }
    build(len, 1, |_, out| {
        for y in out {
            y.write(value);
        }
    })
}

/// `y[i] = f(x[i])`.
pub(crate) fn map<T: Element>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    build(x.len(), 1, |start, out| {
        let x = &x[start..start + out.len()];
        for (y, &v) in out.iter_mut().zip(x) {
            y.write(f(v));
        }
    })
}

/// `y[i] = f(a[i], b[i])`; `a` and `b` have the same length.
pub(crate) fn zip<T: Element>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    assert_eq!(
        a.len(),
        b.len(),
        "elementwise: operands of different lengths"
    );
    build(a.len(), 1, |start, out| {
        let end = start + out.len();
        for (y, (&u, &v)) in out.iter_mut().zip(a[start..end].iter().zip(&b[start..end])) {
            y.write(f(u, v));
        }
    })
}

/// `y[r, j] = f(x[r, j], row[j])` for `x` seen as rows of `row.len()`
/// elements (a bias added to every pixel, a per-channel scale).
pub(crate) fn zip_rows<T: Element, R: Sync>(
    x: &[T],
    row: &[R],
    f: impl Fn(T, &R) -> T + Sync,
) -> Vec<T> {
    assert!(
        !row.is_empty() && x.len().is_multiple_of(row.len()),
        "elementwise: {} elements are not rows of {}",
        x.len(),
        row.len()
    );
    build(x.len(), row.len(), |start, out| {
        let x = &x[start..start + out.len()];
        for (out, x) in out
            .chunks_exact_mut(row.len())
            .zip(x.chunks_exact(row.len()))
        {
            for (y, (&v, r)) in out.iter_mut().zip(x.iter().zip(row)) {
                y.write(f(v, r));
            }
        }
    })
}

/// A vector of `len` elements, written by `write(start, out)` for chunks
/// `out` of about [`CHUNK`] elements (a multiple of `unit`) starting at
/// `start`, in parallel. Each `write` above writes every element of its
/// `out`: it zips `out` with inputs at least as long.
fn build<T: Element>(
    len: usize,
    unit: usize,
    write: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    let chunk = CHUNK.next_multiple_of(unit.max(1));
    let mut y: Vec<T> = Vec::with_capacity(len);
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, out)| write(i * chunk, out));
    // SAFETY: the chunks cover 0..len, and every `write` initialises all of
    // its chunk (see above).
    unsafe { y.set_len(len) };
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        (0..len)
            .map(|i| crate::rng::uniform_f64(seed, 0, i as u64) as f32 - 0.5)
            .collect()
    }

    /// On 3 threads, over several chunks and a partial last one, each
    /// element is what the serial loop gives.
    #[test]
    fn chunks_cover_every_element_as_the_serial_loop_does() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        // 3·CHUNK + 30 elements: rows of 3 do not divide CHUNK (chunks of
        // CHUNK + 2), rows of 2 do.
        let len = 3 * CHUNK + 30;
        let (a, b) = (values(len, 1), values(len, 2));
        pool.install(|| {
            let relu = map(&a, |v| v.max(0.0));
            assert_eq!(relu, a.iter().map(|v| v.max(0.0)).collect::<Vec<_>>());
            let sum = zip(&a, &b, |u, v| u + v);
            assert_eq!(
                sum,
                a.iter().zip(&b).map(|(u, v)| u + v).collect::<Vec<_>>()
            );
            for row in [&b[..3], &b[..2], &b[..len]] {
                let got = zip_rows(&a, row, |v, &r| v * r);
                let want: Vec<f32> = a
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v * row[i % row.len()])
                    .collect();
                assert_eq!(got, want, "rows of {}", row.len());
            }
        });
        assert!(map::<f32>(&[], |v| v).is_empty());
    }
}
