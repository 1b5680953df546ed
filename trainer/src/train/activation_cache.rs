//! The activation cache of fine-tuning: the frozen layers' output, computed
//! once, so that each fine-tuning epoch runs only the unfrozen blocks and
//! the head (what the feature cache does for head training).
//!
//! ```text
//! uint8 images ─▶ (flip) ─▶ model_input ─▶ backbone prefix: stem .. the block before BLOCK (no_grad)
//!   ─▶ activations [n, h, w, c] at BLOCK's input, stored as f16 (computed once, cached)
//!   ─▶ every epoch: a batch widened to f32 ─▶ backbone suffix: BLOCK .. ─▶ head
//! ```
//!
//! `--fine-tune BLOCK` freezes every layer before BLOCK and keeps batch
//! normalization in inference mode, so the activation at BLOCK's input never
//! changes during fine-tuning: [`models::Backbone::forward_prefix`] computes
//! it once per image, and [`models::Backbone::forward_suffix`] runs the rest,
//! the same operations as the whole forward pass. For EfficientNet-Lite0
//! from `_blocks.11` at 224 px that is 14x14x112 values an image (43.9 KB in
//! f16), and an epoch costs the last five blocks and the head instead of
//! the whole network.
//!
//! The values are stored as f16: half the disk and memory of f32, at a
//! relative rounding error of at most 2^-11 per value (far below what a
//! learning rate of 1e-4 moves). An activation beyond f16's range (65504)
//! is an error, never an infinity in the cache.
//!
//! Files live in `<cache dir>/activations/`, named as the feature cache
//! names the features of the same images ([`FeatureKey`]: model, alpha,
//! preprocessing, weights hash, image size, precision, dataset hash, split,
//! flip) plus `-at<BLOCK>`, and are written as it writes them: rows
//! streamed to a temporary file of the writer's own, renamed into place when
//! complete, an md5 trailer verified on every read, values checked finite.
//! A damaged file is recomputed, with a message. Before computing, the run
//! states the disk and memory the sets need and checks the free disk space
//! (statvfs), so a full disk is an error with the numbers up front, not a
//! failure an hour in.
//!
//! The cache serves fine-tuning on the CPU, where the frozen layers' pass
//! dominates every epoch. On a GPU fine-tuning runs end to end as before
//! (the backbone's pass there is fast, and the batches would travel from
//! host memory each step); `--no-cache` selects that end-to-end path on the
//! CPU too.

use super::feature_cache::{check_finite_features, model_input, CacheOutcome, FeatureKey};
use crate::data::stream::Images;
use crate::error::{Error, Result};
use crate::npy::{self, NpyData, NpyWriter};
use crate::progress::{Progress, Unit};
use half::f16;
use models::Backbone;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Disk space left free beyond what the cache files need.
const DISK_MARGIN: u64 = 256 << 20;

/// One set of images whose activations fine-tuning needs.
#[derive(Debug, Clone)]
pub struct ActivationJob<'a> {
    /// The key of the same images' features (its `flip` flips them).
    pub key: FeatureKey,
    /// The images, unflipped (from memory or decoded from disk, batch by batch).
    pub images: Images<'a>,
    /// For messages (`train`, `test (flipped)`).
    pub label: String,
}

/// Activations `[n, h, w, c]` at a block's input, one row per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Activations {
    /// `[n, h, w, c]`.
    pub shape: [usize; 4],
    /// `n * h * w * c` values, C order.
    pub values: Vec<f16>,
}

impl Activations {
    /// Values per image (`h * w * c`).
    pub fn row_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }

    /// Image `i`'s activation.
    pub fn row(&self, i: usize) -> &[f16] {
        let r = self.row_len();
        &self.values[i * r..(i + 1) * r]
    }
}

/// The activation cache: a folder of checksummed f16 `.npy` files.
#[derive(Debug, Clone)]
pub struct ActivationCache {
    dir: PathBuf,
}

impl ActivationCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> ActivationCache {
        ActivationCache { dir: dir.into() }
    }

    /// Where the activations of `key`'s images at `block`'s input live:
    /// the features' file name with `-at<BLOCK>` before `.npy`.
    pub fn path(&self, key: &FeatureKey, block: &str) -> PathBuf {
        let features = key.file_name();
        let stem = features.trim_end_matches(".npy");
        let block = block.replace(['/', '\\'], "_");
        self.dir.join(format!("{stem}-at{block}.npy"))
    }

    /// The activations at `block`'s input of every job's images, in order:
    /// read from the cache when there and whole, else computed in batches
    /// of `batch_size` and stored. Before computing, it prints the size of
    /// an image's activation and what the sets need on disk and in memory,
    /// and refuses to start when the disk lacks the space.
    pub fn get_or_compute(
        &self,
        backbone: &dyn Backbone,
        block: &str,
        jobs: &[ActivationJob],
        image_size: usize,
        batch_size: usize,
    ) -> Result<Vec<(Activations, CacheOutcome)>> {
        let Some(first) = jobs.iter().find(|j| !j.images.is_empty()) else {
            return Ok(Vec::new());
        };
        // The shape of one image's activation, from one image.
        let one = first.images.gather(&[0])?;
        let probe = model_input(backbone, &one, first.images.side(), image_size, false)?;
        let s = backbone
            .forward_prefix(&probe, block)
            .map_err(|e| Error::Usage(format!("--fine-tune {block}: {e}")))?
            .shape()
            .to_vec();
        let (h, w, c) = (s[1], s[2], s[3]);
        let row_bytes = (h * w * c * 2) as u64;
        let paths: Vec<PathBuf> = jobs.iter().map(|j| self.path(&j.key, block)).collect();
        let mut found: Vec<Option<Activations>> = jobs
            .iter()
            .zip(&paths)
            .map(|(j, p)| {
                let n = j.images.len();
                p.exists().then(|| read(p, [n, h, w, c])).flatten()
            })
            .collect();
        let images = |pick: &dyn Fn(usize) -> bool| -> u64 {
            (0..jobs.len())
                .filter(|&i| pick(i))
                .map(|i| jobs[i].images.len() as u64)
                .sum()
        };
        let (all, missing) = (images(&|_| true), images(&|i| found[i].is_none()));
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, "creating", e))?;
        let free = free_bytes(&self.dir);
        eprintln!(
            "activation cache: {block}'s input is {h}x{w}x{c} an image ({:.1} KB in f16); {all} \
             images take {} in memory; {missing} of them to compute, {} on disk in {} ({} free)",
            row_bytes as f64 / 1e3,
            size_text(all * row_bytes),
            size_text(missing * row_bytes),
            self.dir.display(),
            free.map_or("unknown".into(), size_text)
        );
        if let Some(free) = free.filter(|&f| f < missing * row_bytes + DISK_MARGIN) {
            return Err(Error::Usage(format!(
                "the activation cache needs {} in {} ({missing} images of {h}x{w}x{c} f16 values \
                 at {block}'s input, plus a margin of {}), but only {} are free. HINT: free disk \
                 space; or a smaller --image-size (the activations grow with its square); or \
                 fine-tune from a later block (smaller activations); or --no-cache, which \
                 fine-tunes end to end without the cache (the whole backbone runs every epoch)",
                size_text(missing * row_bytes),
                self.dir.display(),
                size_text(DISK_MARGIN),
                size_text(free)
            )));
        }
        let mut out = Vec::with_capacity(jobs.len());
        for ((job, path), cached) in jobs.iter().zip(&paths).zip(found.iter_mut()) {
            if let Some(a) = cached.take() {
                eprintln!(
                    "activations {}: reused from the activation cache ({})",
                    job.label,
                    path.display()
                );
                out.push((a, CacheOutcome::Hit(path.clone())));
                continue;
            }
            let a = compute(
                backbone,
                block,
                job,
                path,
                [h, w, c],
                image_size,
                batch_size,
            )?;
            out.push((a, CacheOutcome::Stored(path.clone())));
        }
        Ok(out)
    }
}

/// Computes a job's activations batch by batch, streaming them to `path`.
fn compute(
    backbone: &dyn Backbone,
    block: &str,
    job: &ActivationJob,
    path: &Path,
    [h, w, c]: [usize; 3],
    image_size: usize,
    batch_size: usize,
) -> Result<Activations> {
    let n = job.images.len();
    let row = h * w * c;
    let label = format!("activations {}", job.label);
    let mut writer = NpyWriter::<f16>::create_checksummed(path, &[n, h, w, c])?;
    let mut values: Vec<f16> = Vec::with_capacity(n * row);
    let start = Instant::now();
    let mut progress = Progress::new(&label, Some(n as u64), Unit::Items("images"));
    let side = job.images.side();
    for chunk in job.images.batches(batch_size) {
        let chunk = chunk?;
        let x = model_input(backbone, &chunk, side, image_size, job.key.flip)?;
        let a = backbone
            .forward_prefix(&x, block)
            .map_err(|e| Error::Usage(format!("{} forward pass: {e}", backbone.name())))?;
        let v = a.as_slice::<f32>()?;
        check_finite_features(&label, v, row, values.len() / row)?;
        let halves: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
        if let Some(i) = halves.iter().position(|x| x.is_infinite()) {
            return Err(Error::Usage(format!(
                "{label}: image {} has the value {} at {block}'s input, beyond f16's range \
                 (65504), so it cannot be cached. HINT: check the weights (--weights), or \
                 --no-cache to fine-tune end to end in f32",
                values.len() / row + i / row,
                v[i]
            )));
        }
        writer.append(&halves)?;
        values.extend_from_slice(&halves);
        progress.inc((chunk.len() / job.images.image_bytes()) as u64);
    }
    progress.finish();
    writer.finish()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{label}: {n} images through the frozen layers in {secs:.1} s ({:.1} images/s), cached \
         in {}",
        n as f64 / secs.max(1e-9),
        path.display()
    );
    Ok(Activations {
        shape: [n, h, w, c],
        values,
    })
}

/// Reads a cached activations file, verified whole: `None` (recompute,
/// with a message) unless it is intact, of `shape`, f16 and finite.
fn read(path: &Path, shape: [usize; 4]) -> Option<Activations> {
    let problem = match npy::read_checksummed(path) {
        Err(e) => e.to_string(),
        Ok(a) => match a.data {
            NpyData::F16(values) if a.shape == shape => {
                match values.iter().position(|x| !x.is_finite()) {
                    None => return Some(Activations { shape, values }),
                    Some(i) => format!(
                        "{}: holds {} in image {} (activations must be finite)",
                        path.display(),
                        values[i],
                        i / (shape[1] * shape[2] * shape[3]).max(1)
                    ),
                }
            }
            _ => format!(
                "{}: has shape {:?}, expected {shape:?} f16",
                path.display(),
                a.shape
            ),
        },
    };
    eprintln!("activation cache: {problem}; recomputing it");
    None
}

/// `1.2 GB`, `43.9 MB`.
fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// Bytes free to an unprivileged user on the file system holding `dir`
/// (statvfs's `f_bavail * f_frsize`); None where unknown. The test hook
/// `THAW_TEST_FREE_BYTES=N` stands in for the file system's answer.
fn free_bytes(dir: &Path) -> Option<u64> {
    if let Some(n) = std::env::var("THAW_TEST_FREE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Some(n);
    }
    statvfs_free(dir)
}

#[cfg(unix)]
fn statvfs_free(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a NUL-terminated string and `stat` a plain struct
    // that statvfs fills; zeroed is a valid value of it.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(not(unix))]
fn statvfs_free(_: &Path) -> Option<u64> {
    None
}
