//! The workload list, `bench/workloads.json`: the one file both sides read
//! (this crate and `bench/pytorch_bench.py`), so a workload has the same
//! name, shapes, batch, warm-up and repetition count on both.

use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

/// Quick (under a minute, for development) or full (the published tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Workloads marked `quick`, with the first `reps` count.
    Quick,
    /// Every workload, with the second `reps` count.
    Full,
}

impl Mode {
    /// The name written into the result files.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
    }
}

/// Timed repetitions as `[quick, full]`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Reps(pub [usize; 2]);

impl Reps {
    /// The count for `mode`.
    pub fn get(self, mode: Mode) -> usize {
        match mode {
            Mode::Quick => self.0[0],
            Mode::Full => self.0[1],
        }
    }
}

/// The machine's peak: one `m x k` by `k x n` f32 GEMM.
#[derive(Debug, Clone, Deserialize)]
pub struct Peak {
    pub name: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub warmup: usize,
    pub reps: Reps,
}

/// One convolution layer's shape (NHWC input, HWIO kernel, no bias).
#[derive(Debug, Clone, Deserialize)]
pub struct Conv {
    pub name: String,
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub o: usize,
    pub k: usize,
    pub stride: usize,
    /// "same" (stride 1 only) or "valid".
    pub padding: String,
    pub quick: bool,
}

/// One depthwise convolution layer's shape (NHWC input, kernel `[k, k, c, 1]`,
/// no bias, `pad` zeros on every side).
#[derive(Debug, Clone, Deserialize)]
pub struct Depthwise {
    pub name: String,
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub quick: bool,
}

impl Depthwise {
    /// Output height and width (the same rule in both engines).
    pub fn out(&self) -> (usize, usize) {
        let out = |size: usize| (size + 2 * self.pad - self.k) / self.stride + 1;
        (out(self.h), out(self.w))
    }
}

/// Warm-up and repetitions shared by every conv2d (or depthwise) workload.
#[derive(Debug, Clone, Deserialize)]
pub struct Timing {
    pub warmup: usize,
    pub reps: Reps,
}

/// A whole backbone forward pass (no grad, global average pooling).
#[derive(Debug, Clone, Deserialize)]
pub struct Backbone {
    pub name: String,
    /// A registered model name (`models::registry::MODELS`), built by `models::build`.
    pub model: String,
    pub size: usize,
    pub batch: usize,
    pub warmup: usize,
    pub reps: Reps,
    pub quick: bool,
}

/// One training step of the classifier head on features.
#[derive(Debug, Clone, Deserialize)]
pub struct Head {
    pub name: String,
    pub batch: usize,
    pub features: usize,
    pub hidden: usize,
    pub classes: usize,
    pub dropout: f64,
    pub lr: f64,
    pub warmup: usize,
    pub reps: Reps,
    pub quick: bool,
}

/// Feature extraction from JPEG files to pooled features.
#[derive(Debug, Clone, Deserialize)]
pub struct Extract {
    pub name: String,
    pub model: String,
    pub size: usize,
    /// Images per run: `images / 10` from each class folder, first by file name.
    pub images: usize,
    pub batch: usize,
    pub warmup: usize,
    pub reps: Reps,
    pub quick: bool,
}

/// What changes on a GPU (thaw-bench `--device cuda`, and the `.cuda-*` rows
/// of pytorch_bench.py): a GPU needs more work per call to be busy.
#[derive(Debug, Clone, Deserialize)]
pub struct Cuda {
    /// The GPU's peak GEMM (the CPU's 2048³ takes well under a millisecond there).
    pub peak: Peak,
    /// Backbone and extract batches are at least this large on a GPU.
    pub min_batch: usize,
    /// Extract workloads read at least this many images on a GPU (a multiple of 10).
    pub extract_min_images: usize,
}

impl Cuda {
    /// The batch of a backbone or extract workload on a GPU.
    pub fn batch(&self, batch: usize) -> usize {
        batch.max(self.min_batch)
    }

    /// The image count of an extract workload on a GPU.
    pub fn images(&self, images: usize) -> usize {
        images.max(self.extract_min_images)
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
pub struct Spec {
    pub peak: Peak,
    pub conv2d: Vec<Conv>,
    pub conv2d_timing: Timing,
    pub depthwise_conv2d: Vec<Depthwise>,
    pub depthwise_timing: Timing,
    pub backbone: Vec<Backbone>,
    pub head: Head,
    pub extract: Vec<Extract>,
    pub cuda: Cuda,
}

impl Spec {
    /// Reads and checks the spec file.
    pub fn load(path: &Path) -> Result<Spec, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the workload list {}: {e} (HINT: run from the repository root, or pass --spec)",
                path.display()
            )
        })?;
        let spec: Spec = serde_json::from_str(&text)
            .map_err(|e| format!("workload list {} is not valid: {e}", path.display()))?;
        spec.check()?;
        Ok(spec)
    }

    /// Every name once, paddings that both engines read the same way, sizes > 0.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = HashSet::new();
        for name in self.names() {
            if !seen.insert(name.clone()) {
                return Err(format!(
                    "workload name {name} appears twice in workloads.json"
                ));
            }
        }
        for c in &self.conv2d {
            let ok_padding = match c.padding.as_str() {
                "same" => c.stride == 1 && c.k % 2 == 1,
                "valid" => true,
                _ => false,
            };
            if !ok_padding {
                return Err(format!(
                    "{}: padding {:?} at stride {} with a {}x{} kernel; use 'valid', or 'same' \
                     only at stride 1 with an odd kernel (symmetric padding in both engines)",
                    c.name, c.padding, c.stride, c.k, c.k
                ));
            }
            if [c.n, c.h, c.w, c.c, c.o, c.k, c.stride].contains(&0) {
                return Err(format!("{}: a size is zero", c.name));
            }
        }
        for d in &self.depthwise_conv2d {
            if [d.n, d.h, d.w, d.c, d.k, d.stride].contains(&0) {
                return Err(format!("{}: a size is zero", d.name));
            }
            if d.pad >= d.k || d.h.min(d.w) + 2 * d.pad < d.k {
                return Err(format!(
                    "{}: pad {} with a {}x{} window on {}x{}: the pad must be smaller than the \
                     window, and the padded input at least as large",
                    d.name, d.pad, d.k, d.k, d.h, d.w
                ));
            }
        }
        for e in &self.extract {
            if e.images == 0 || e.images % 10 != 0 || e.batch == 0 {
                return Err(format!(
                    "{}: images must be a positive multiple of 10 (one tenth per class), batch > 0",
                    e.name
                ));
            }
        }
        let g = &self.cuda;
        if g.min_batch == 0 || g.extract_min_images == 0 || !g.extract_min_images.is_multiple_of(10)
        {
            return Err(format!(
                "cuda: min_batch must be > 0 and extract_min_images a positive multiple of 10 \
                 (got {} and {})",
                g.min_batch, g.extract_min_images
            ));
        }
        if g.peak.name != self.peak.name {
            return Err(format!(
                "cuda.peak is named {:?}, the CPU peak {:?}: use one name (the GPU row adds .cuda-f32)",
                g.peak.name, self.peak.name
            ));
        }
        Ok(())
    }

    /// Every workload name, peak first, in table order.
    pub fn names(&self) -> Vec<String> {
        let mut names = vec![self.peak.name.clone()];
        for c in &self.conv2d {
            names.push(format!("{}.fwd", c.name));
            names.push(format!("{}.bwd", c.name));
        }
        for d in &self.depthwise_conv2d {
            names.push(format!("{}.fwd", d.name));
            names.push(format!("{}.bwd", d.name));
        }
        names.extend(self.backbone.iter().map(|b| b.name.clone()));
        names.push(self.head.name.clone());
        names.extend(self.extract.iter().map(|e| e.name.clone()));
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads.json")).unwrap()
    }

    #[test]
    fn the_repository_spec_loads_and_names_are_unique() {
        let s = spec();
        assert!(s.conv2d.len() >= 8);
        let names = s.names();
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn asymmetric_same_padding_is_refused() {
        let mut s = spec();
        s.conv2d[0].stride = 2;
        let err = s.check().unwrap_err();
        assert!(err.contains("stride 2"), "{err}");
    }
}
