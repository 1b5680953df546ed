//! The validation split of the training images and the row gathers that
//! follow it: a seeded draw of held-out indices ([`holdout`]), then the rows
//! (features or images) of a list of indices, in its order.

use super::Dataset;
use crate::error::{Error, Result};
use engine::rng::Rng;

/// Splits `0..n` into (train, validation) index lists: a seeded draw of
/// `round(n * fraction)` validation indices (at least 1), both sorted.
pub fn holdout(n: usize, fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Usage(format!(
            "--val-split {fraction}: the validation fraction must be in (0, 1), e.g. 0.1"
        )));
    }
    let n_val = ((n as f64 * fraction).round() as usize).max(1);
    if n_val >= n {
        return Err(Error::Usage(format!(
            "--val-split {fraction} of {n} training images leaves none to train on; use more \
             images or a smaller fraction"
        )));
    }
    draw(n, n_val, seed)
}

/// Splits `0..n` into (rest, drawn) index lists: a seeded draw of `k`
/// indices, both sorted.
pub fn draw(n: usize, k: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if k > n {
        return Err(Error::Usage(format!(
            "cannot draw {k} of {n} images; use a smaller fraction"
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed, 0x5641_4c00).shuffle(&mut order);
    let mut drawn = order[..k].to_vec();
    let mut rest = order[k..].to_vec();
    drawn.sort_unstable();
    rest.sort_unstable();
    Ok((rest, drawn))
}

/// Appends to `out` the rows `idx` (in that order) of `x`, `dim` values a row.
pub fn gather_rows(x: &[f32], dim: usize, idx: &[usize], out: &mut Vec<f32>) {
    for &i in idx {
        out.extend_from_slice(&x[i * dim..(i + 1) * dim]);
    }
}

/// The in-memory images `idx` of `ds` (in that order; none when `ds` is
/// streamed: [`super::stream::gather`] decodes those) and their labels.
pub fn gather_images(ds: &Dataset, idx: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let mut px = Vec::with_capacity(idx.len() * ds.image(0).len());
    for &i in idx {
        px.extend_from_slice(ds.image(i));
    }
    (px, idx.iter().map(|&i| ds.labels[i]).collect())
}
