//! Frozen-backbone features, computed once and cached: the first stage of
//! training, and the step that makes head training cheap.
//!
//! ```text
//! uint8 images [n, side, side, 3] ─▶ (flip) ─▶ bilinear resize side → S ─▶ the model's preprocessing
//!   ─▶ backbone (frozen, under no_grad, pooling = avg) ─▶ features [n, C] f32
//! ```
//!
//! The same [`image_batch`] turns raw images into model input in training,
//! in `evaluate` and in `predict`, so a saved model sees exactly what it was
//! trained on. The images come batch by batch ([`crate::data::stream`]):
//! CIFAR-10's 32x32 from memory, image folders of other sizes decoded and
//! resized to S by worker threads as the backbone runs (side = S).
//!
//! The cache is a folder of `.npy` files (`<cache dir>/features/`, see
//! [`crate::download::cache_dir`]) whose names carry every input the
//! features depend on ([`FeatureKey`]): the model, its alpha, its
//! preprocessing, a hash of the weights
//! file, the image size, the precision of the convolutions (f32, f16, bf16:
//! 16-bit features must never stand in for f32 ones), a hash of the
//! dataset's images, labels and class names, the split, and whether the
//! images were flipped. Change any of them
//! and the name changes, so a stale file is never read. Files are written
//! atomically (a temporary file of the writer's own, renamed into place
//! when complete), so an interrupted run never leaves a half-written cache
//! entry behind, and runs sharing the cache never write one file. Each file
//! ends with an md5 of its contents ([`npy::read_checksummed`]): a file
//! that is truncated, damaged, of the wrong shape or not finite is
//! recomputed, with a message, never used.

use crate::data::stream::Images;
use crate::data::{Dataset, IMAGE_SIDE};
use crate::error::{Error, Result};
use crate::npy::{self, NpyData, NpyWriter};
use crate::progress::{Progress, Unit};
use engine::{ops, Tensor};
use md5::{Digest, Md5};
use models::Backbone;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The extraction time a run still has ahead, printed once, after its first
/// extracted batch: extrapolated from that batch (a fixed images/s would be
/// wrong on any other machine), with how to trade accuracy for time.
#[derive(Debug)]
pub struct ExtractionEstimate {
    /// Images the run may still extract, this phase's included (cached
    /// phases are not known ahead, so this is an upper bound).
    pub images_left: usize,
    /// How to make it faster, printed when the estimate is over a minute.
    pub hint: String,
    printed: bool,
}

impl ExtractionEstimate {
    /// An estimate for a run that may extract `images_left` images.
    pub fn new(images_left: usize, hint: String) -> Self {
        ExtractionEstimate {
            images_left,
            hint,
            printed: false,
        }
    }

    /// The first batch of `images` took `secs`: print the estimate (once).
    fn first_batch(&mut self, images: usize, secs: f64) {
        if self.printed || images == 0 {
            return;
        }
        self.printed = true;
        let rate = images as f64 / secs.max(1e-9);
        let left = self.images_left as f64 / rate;
        eprintln!(
            "extraction: the first {images} images took {secs:.2} s ({rate:.1} images/s); \
             this run extracts up to {} images: about {} on this machine",
            self.images_left,
            crate::progress::duration(left)
        );
        if left > 60.0 && !self.hint.is_empty() {
            eprintln!("extraction: to trade accuracy for time, {}", self.hint);
        }
    }
}

/// Everything a cached feature file depends on; its file name encodes all of it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureKey {
    /// Backbone name (`resnet50`, `vgg16`, `mobilenet_v2`).
    pub model: String,
    /// The model's alpha, for models with variants.
    pub alpha: Option<f64>,
    /// The preprocessing the images were given.
    pub preprocessing: models::Preprocessing,
    /// Hex hash of the weights (the md5 of the weights file's bytes).
    pub weights_hash: String,
    /// Input size S the 32x32 images are resized to.
    pub image_size: usize,
    /// Precision of the backbone's convolutions.
    pub precision: engine::Precision,
    /// Hex hash of the dataset split ([`dataset_hash`]).
    pub dataset_hash: String,
    /// `train` or `test`.
    pub split: String,
    /// Features of horizontally flipped images.
    pub flip: bool,
}

impl FeatureKey {
    /// The cache file name:
    /// `resnet50[-a<alpha>]-<preprocessing>-w<hash>-s32-f32-d<hash>-train[-flip].npy`
    /// (`f16`, `bf16` for features computed in half precision).
    pub fn file_name(&self) -> String {
        let short = |h: &str| h.chars().take(16).collect::<String>();
        let alpha = self
            .alpha
            .map(|a| format!("-a{}", models::registry::python_float(a)))
            .unwrap_or_default();
        format!(
            "{}{alpha}-{}-w{}-s{}-{}-d{}-{}{}.npy",
            self.model,
            self.preprocessing,
            short(&self.weights_hash),
            self.image_size,
            self.precision.name(),
            short(&self.dataset_hash),
            self.split,
            if self.flip { "-flip" } else { "" }
        )
    }
}

/// md5 (hex) of a dataset split: its pixels (in memory), or the name,
/// size and modification time of each file, the side and the crop (when
/// streamed), its labels and class names. Cheap next to a backbone pass
/// (about 0.3 s for 50,000 images in memory).
pub fn dataset_hash(data: &Dataset) -> String {
    let mut h = Md5::new();
    h.update((data.len() as u64).to_le_bytes());
    h.update(&data.images);
    if let Some(crop) = data.streamed {
        h.update([crop as u8]);
        h.update((data.side as u64).to_le_bytes());
        for f in &data.files {
            h.update(f.as_os_str().as_encoded_bytes());
            let meta = std::fs::metadata(f).ok();
            h.update(meta.as_ref().map_or(0, |m| m.len()).to_le_bytes());
            let modified = meta.and_then(|m| m.modified().ok());
            let since = modified.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            h.update(since.map_or(0, |d| d.as_nanos()).to_le_bytes());
        }
    }
    h.update(&data.labels);
    for c in &data.classes {
        h.update((c.len() as u64).to_le_bytes());
        h.update(c.as_bytes());
    }
    hex(&h.finalize())
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a cached entry was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Read from this file.
    Hit(PathBuf),
    /// Computed and written to this file.
    Stored(PathBuf),
    /// Computed, not stored (`--no-cache`).
    Disabled,
}

/// The feature cache: a folder of `.npy` files named by [`FeatureKey`], or
/// nothing at all when disabled (`--no-cache`: always recompute, never write).
#[derive(Debug, Clone)]
pub struct FeatureCache {
    dir: Option<PathBuf>,
}

impl FeatureCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> FeatureCache {
        FeatureCache {
            dir: Some(dir.into()),
        }
    }

    /// A cache that never reads nor writes.
    pub fn disabled() -> FeatureCache {
        FeatureCache { dir: None }
    }

    /// The cache's folder (None when disabled).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Where `key`'s file lives (None when disabled).
    pub fn path(&self, key: &FeatureKey) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(key.file_name()))
    }

    /// The features for `key`: read from the cache when there, with the
    /// expected shape `[rows, *]`; else computed by `compute` (which gets
    /// the writer to stream rows into, when caching) and stored.
    pub fn get_or_compute(
        &self,
        key: &FeatureKey,
        rows: usize,
        channels: usize,
        compute: impl FnOnce(Option<&mut NpyWriter<f32>>) -> Result<Vec<f32>>,
    ) -> Result<(Vec<f32>, CacheOutcome)> {
        let Some(path) = self.path(key) else {
            return Ok((compute(None)?, CacheOutcome::Disabled));
        };
        if path.exists() {
            if let Some(features) = read_features(&path, rows, channels) {
                return Ok((features, CacheOutcome::Hit(path)));
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating", e))?;
        }
        let mut writer = NpyWriter::<f32>::create_checksummed(&path, &[rows, channels])?;
        let features = compute(Some(&mut writer))?;
        writer.finish()?;
        Ok((features, CacheOutcome::Stored(path)))
    }
}

/// Reads a cached features file, verified whole ([`npy::read_checksummed`]):
/// `None` (recompute, with a message) unless it is intact and holds
/// `[rows, channels]` f32 values.
fn read_features(path: &Path, rows: usize, channels: usize) -> Option<Vec<f32>> {
    let problem = match npy::read_checksummed(path) {
        Err(e) => e.to_string(),
        Ok(a) => match a.data {
            NpyData::F32(v) if a.shape == [rows, channels] => {
                match v.iter().position(|x| !x.is_finite()) {
                    None => return Some(v),
                    Some(i) => format!(
                        "{}: holds {} at row {}, feature {} (features must be finite)",
                        path.display(),
                        v[i],
                        i / channels.max(1),
                        i % channels.max(1)
                    ),
                }
            }
            _ => format!(
                "{}: has shape {:?}, expected [{rows}, {channels}] f32",
                path.display(),
                a.shape
            ),
        },
    };
    eprintln!("feature cache: {problem}; recomputing it");
    None
}

/// Checks that the features of a batch are finite before they are used,
/// cached or written: `values` holds rows of `row_len` values, the first
/// being image `first_row` of `what`. Weights that are finite but absurd
/// (1e30) give features that overflow; this is where that shows.
pub fn check_finite_features(
    what: &str,
    values: &[f32],
    row_len: usize,
    first_row: usize,
) -> Result<()> {
    let Some(i) = values.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    Err(Error::Usage(format!(
        "{what}: the features of image {} are not finite (feature {} is {}): the backbone's \
         output overflowed f32, so nothing was written or cached. HINT: check the weights \
         (--weights): every value finite is not enough, values such as 1e30 overflow; use \
         the model's published or converted weights",
        first_row + i / row_len.max(1),
        i % row_len.max(1),
        values[i]
    )))
}

/// Test hook: `THAW_TEST_CACHE_WRITE_PAUSE_MS=N` sleeps N ms after each
/// batch of features written (to the cache, or by `extract`), so a test can
/// kill or signal a run while it is writing
/// (`trainer/tests/feature_cache_race.rs`, `trainer/tests/signals.rs`).
/// Unset, it does nothing.
pub fn pause_for_tests() {
    static PAUSE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        std::env::var("THAW_TEST_CACHE_WRITE_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(ms) = *pause {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Mirrors each `side` x `side` HWC image left to right.
pub fn flip_horizontal(images: &[u8], side: usize) -> Vec<u8> {
    let row = side * 3;
    let mut out = vec![0u8; images.len()];
    for (dst, src) in out.chunks_exact_mut(row).zip(images.chunks_exact(row)) {
        for x in 0..side {
            let (d, s) = (x * 3, (side - 1 - x) * 3);
            dst[d..d + 3].copy_from_slice(&src[s..s + 3]);
        }
    }
    out
}

/// The number of `side` x `side` x 3 images in `images` and their pixels,
/// mirrored left to right when `flip` is set; an error naming `what`
/// unless `images` holds a whole number (> 0) of images.
fn checked_pixels<'a>(
    what: &str,
    images: &'a [u8],
    side: usize,
    flip: bool,
) -> Result<(usize, Cow<'a, [u8]>)> {
    let bytes = side * side * 3;
    if images.is_empty() || bytes == 0 || !images.len().is_multiple_of(bytes) {
        return Err(Error::Usage(format!(
            "{what}: {} bytes is not a whole number (> 0) of {side}x{side}x3 images",
            images.len()
        )));
    }
    let pixels = if flip {
        Cow::Owned(flip_horizontal(images, side))
    } else {
        Cow::Borrowed(images)
    };
    Ok((images.len() / bytes, pixels))
}

/// Model input for uint8 images `[n, 32, 32, 3]` (flat HWC per image):
/// [`image_batch_at`] side 32.
pub fn image_batch(
    images: &[u8],
    size: usize,
    flip: bool,
    preprocessing: models::Preprocessing,
) -> Result<Tensor> {
    image_batch_at(images, IMAGE_SIDE, size, flip, preprocessing)
}

/// Model input for uint8 images `[n, side, side, 3]` (flat HWC per image):
/// optionally flipped, resized bilinearly (half-pixel centres, as Keras) to
/// `size x size` (not resampled when `side == size`), then given
/// `preprocessing`. No autograd history.
pub fn image_batch_at(
    images: &[u8],
    side: usize,
    size: usize,
    flip: bool,
    preprocessing: models::Preprocessing,
) -> Result<Tensor> {
    let (n, pixels) = checked_pixels("image_batch", images, side, flip)?;
    let raw: Vec<f32> = pixels.iter().map(|&p| p as f32).collect();
    let mut x = Tensor::from_vec(raw, &[n, side, side, 3])?;
    if size != side {
        x = ops::bilinear_resize(&x, size, size)?;
    }
    models::preprocess_input(preprocessing, &x)
        .map_err(|e| Error::Usage(format!("image_batch: {e}")))
}

/// [`image_batch_at`] for `backbone`, with its registered preprocessing, on
/// its device: on the CPU exactly [`image_batch_at`]; on a GPU the
/// (optionally flipped) uint8 images are uploaded and resized +
/// preprocessed there in one kernel (`engine::ops::bilinear_resize::resize_u8`).
pub fn model_input(
    backbone: &dyn Backbone,
    images: &[u8],
    side: usize,
    size: usize,
    flip: bool,
) -> Result<Tensor> {
    let preprocessing = models::registry::find(backbone.name())?.preprocessing;
    let device = backbone.device();
    if device == engine::Device::Cpu {
        return image_batch_at(images, side, size, flip, preprocessing);
    }
    let (n, pixels) = checked_pixels("model_input", images, side, flip)?;
    Ok(ops::bilinear_resize::resize_u8(
        &pixels,
        [n, side, side],
        size,
        size,
        &preprocessing.pixel_map(),
        device,
    )?)
}

/// The backbone's output for one batch of uint8 NHWC `side` x `side`
/// images, on the host: [`model_input`] (on a GPU it uploads the uint8
/// batch), the forward pass in inference mode without recording, and
/// `to_device(Cpu)`, which on a GPU copies the output back once the batch's
/// work is done and on the CPU hands it back as it is.
pub fn output_on_host(
    backbone: &dyn Backbone,
    images: &[u8],
    side: usize,
    size: usize,
    flip: bool,
) -> Result<Tensor> {
    let _guard = engine::no_grad();
    let x = model_input(backbone, images, side, size, flip)?;
    let y = backbone
        .forward(&x, false)
        .map_err(|e| Error::Usage(format!("{} forward pass: {e}", backbone.name())))?;
    Ok(y.to_device(engine::Device::Cpu)?)
}

/// The backbone's output for each batch of `batch_size` images, on the
/// host and in order: `each(batch number, the batch's uint8 pixels,
/// output)`, under `no_grad` (each activation is freed as soon as it is
/// used). A raised stop flag ([`crate::signals::stop_flag`]: Ctrl-C,
/// SIGTERM) ends it after the current batch with [`Error::Interrupted`].
///
/// The batches come from [`Images::batches`]: from memory, or decoded by
/// worker threads while the backbone runs. The loop is the same on every
/// device; only [`output_on_host`] knows where the backbone is.
pub fn for_each_batch(
    backbone: &dyn Backbone,
    images: Images,
    size: usize,
    batch_size: usize,
    flip: bool,
    mut each: impl FnMut(usize, &[u8], Tensor) -> Result<()>,
) -> Result<()> {
    let _guard = engine::no_grad();
    let side = images.side();
    let n = images.len();
    let chunks = images.batches(batch_size);
    let batches = chunks.len();
    for (i, chunk) in chunks.enumerate() {
        let chunk = chunk?;
        each(
            i,
            &chunk,
            output_on_host(backbone, &chunk, side, size, flip)?,
        )?;
        let done = i + 1;
        if crate::signals::stop_flag().load(std::sync::atomic::Ordering::SeqCst) && done < batches {
            return Err(Error::Interrupted(format!(
                "stopped during feature extraction after {} of {n} images",
                (done * batch_size.max(1)).min(n)
            )));
        }
    }
    Ok(())
}

/// Pooled features `[n, C]` of the uint8 images, batch by batch
/// ([`for_each_batch`]), rows streamed to `writer` when given, with a
/// progress report labelled `label`, and the run's time `estimate`
/// printed after the first batch when given.
#[allow(clippy::too_many_arguments)]
pub fn extract_features<'a>(
    backbone: &dyn Backbone,
    images: impl Into<Images<'a>>,
    size: usize,
    batch_size: usize,
    flip: bool,
    label: &str,
    mut writer: Option<&mut NpyWriter<f32>>,
    mut estimate: Option<&mut ExtractionEstimate>,
) -> Result<Vec<f32>> {
    if batch_size == 0 {
        return Err(Error::Usage(
            "--extract-batch-size is 0; use at least 1".into(),
        ));
    }
    let images: Images = images.into();
    let (n, side, bytes) = (images.len(), images.side(), images.image_bytes());
    let mut out = Vec::new();
    let mut progress = Progress::new(label, Some(n as u64), Unit::Items("images"));
    let start = std::time::Instant::now();
    for_each_batch(backbone, images, size, batch_size, flip, |i, chunk, y| {
        if i == 0 {
            if let Some(e) = estimate.as_deref_mut() {
                e.first_batch(chunk.len() / bytes, start.elapsed().as_secs_f64());
            }
        }
        if y.rank() != 2 {
            return Err(Error::Usage(format!(
                "{} gave features of shape {:?}; the trainer needs pooled [n, C] features \
                 (build the backbone with pooling avg)",
                backbone.name(),
                y.shape()
            )));
        }
        let v = y.as_slice::<f32>()?;
        let channels = y.shape()[1];
        check_finite_features(label, v, channels, out.len() / channels.max(1))?;
        if i == 0 && backbone.precision().is_half() {
            let images = chunk.len() / bytes;
            let d = crate::drift::against_f32(backbone, images, v, || {
                let x = model_input(backbone, chunk, side, size, flip)?;
                Ok(backbone.forward(&x, false)?.to_vec_f32())
            })?;
            eprintln!("{label}: {d}");
        }
        if let Some(w) = writer.as_deref_mut() {
            w.append(v)?;
            pause_for_tests();
        }
        out.extend_from_slice(v);
        progress.inc((chunk.len() / bytes) as u64);
        Ok(())
    })?;
    progress.finish();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::CHECKSUM_TRAILER_LEN;
    use engine::Precision;

    fn key(precision: Precision) -> FeatureKey {
        FeatureKey {
            model: "vgg16".into(),
            alpha: None,
            preprocessing: models::Preprocessing::Caffe,
            weights_hash: "0123456789abcdef0123".into(),
            image_size: 32,
            precision,
            dataset_hash: "fedcba9876543210fedc".into(),
            split: "train".into(),
            flip: false,
        }
    }

    #[test]
    fn the_precision_is_part_of_the_cache_key() {
        assert_eq!(
            key(Precision::F32).file_name(),
            "vgg16-caffe-w0123456789abcdef-s32-f32-dfedcba9876543210-train.npy"
        );
        let mobilenet = FeatureKey {
            model: "mobilenet_v2".into(),
            alpha: Some(0.35),
            preprocessing: models::Preprocessing::Tf,
            ..key(Precision::F32)
        };
        assert_eq!(
            mobilenet.file_name(),
            "mobilenet_v2-a0.35-tf-w0123456789abcdef-s32-f32-dfedcba9876543210-train.npy"
        );
        let names: Vec<String> = Precision::ALL.iter().map(|&p| key(p).file_name()).collect();
        assert!(
            names[1].contains("-f16-") && names[2].contains("-bf16-"),
            "{names:?}"
        );
        assert!(names[0] != names[1] && names[1] != names[2] && names[0] != names[2]);
    }

    #[test]
    fn a_truncated_or_bit_flipped_cache_file_is_recomputed() {
        let dir = std::env::temp_dir().join(format!("thaw-cache-damage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = FeatureCache::new(&dir);
        let k = key(Precision::F32);
        let values: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let store = |v: &[f32]| {
            cache
                .get_or_compute(&k, 3, 2, |w| {
                    w.expect("caching").append(v)?;
                    Ok(v.to_vec())
                })
                .unwrap()
        };
        let (_, stored) = store(&values);
        let CacheOutcome::Stored(path) = stored else {
            panic!("{stored:?}")
        };
        let good = std::fs::read(&path).unwrap();
        let npy_end = good.len() - CHECKSUM_TRAILER_LEN;
        let damages: Vec<(&str, Vec<u8>)> = vec![
            ("truncated by one byte", good[..good.len() - 1].to_vec()),
            ("truncated to its header", good[..128].to_vec()),
            ("empty", Vec::new()),
            ("one bit flipped in the data", {
                let mut b = good.clone();
                b[npy_end - 5] ^= 0x10;
                b
            }),
            ("one bit flipped in the checksum", {
                let mut b = good.clone();
                *b.last_mut().unwrap() ^= 1;
                b
            }),
            ("without its checksum", good[..npy_end].to_vec()),
        ];
        for (what, bytes) in damages {
            std::fs::write(&path, &bytes).unwrap();
            let recomputed: Vec<f32> = values.iter().map(|v| v + 1.0).collect();
            let (got, outcome) = store(&recomputed);
            assert!(
                matches!(outcome, CacheOutcome::Stored(_)) && got == recomputed,
                "a cache file {what} was used: {outcome:?}"
            );
            // What was stored in its place is whole and is reused.
            let (again, hit) = store(&values);
            assert!(matches!(hit, CacheOutcome::Hit(_)), "{what}: {hit:?}");
            assert_eq!(again, recomputed, "{what}");
            std::fs::write(&path, &good).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cache_file_of_another_dtype_or_shape_is_recomputed() {
        let dir = std::env::temp_dir().join(format!("thaw-cache-dtype-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = FeatureCache::new(&dir);
        let k = key(Precision::F32);
        std::fs::create_dir_all(&dir).unwrap();
        let path = cache.path(&k).unwrap();
        // Intact files (their checksums match) of the wrong dtype, then the wrong shape.
        let mut w = NpyWriter::<i64>::create_checksummed(&path, &[1, 2]).unwrap();
        w.append(&[1, 2]).unwrap();
        w.finish().unwrap();
        let compute = |w: Option<&mut NpyWriter<f32>>| {
            w.expect("caching").append(&[3.0, 4.0])?;
            Ok(vec![3.0, 4.0])
        };
        let (got, outcome) = cache.get_or_compute(&k, 1, 2, compute).unwrap();
        assert!(matches!(outcome, CacheOutcome::Stored(_)), "{outcome:?}");
        assert_eq!(got, vec![3.0, 4.0]);
        let (_, outcome) = cache.get_or_compute(&k, 2, 1, compute).unwrap();
        assert!(matches!(outcome, CacheOutcome::Stored(_)), "{outcome:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cache_file_of_non_finite_features_is_recomputed() {
        let dir = std::env::temp_dir().join(format!("thaw-cache-nan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = FeatureCache::new(&dir);
        let k = key(Precision::F32);
        // Intact as a file (its checksum matches), but not usable.
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = NpyWriter::<f32>::create_checksummed(cache.path(&k).unwrap(), &[1, 2]).unwrap();
        w.append(&[1.0, f32::NAN]).unwrap();
        w.finish().unwrap();
        let (got, outcome) = cache
            .get_or_compute(&k, 1, 2, |w| {
                w.expect("caching").append(&[3.0, 4.0])?;
                Ok(vec![3.0, 4.0])
            })
            .unwrap();
        assert!(matches!(outcome, CacheOutcome::Stored(_)), "{outcome:?}");
        assert_eq!(got, vec![3.0, 4.0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn features_cached_in_half_precision_are_not_reused_in_f32() {
        let dir = std::env::temp_dir().join(format!("thaw-cache-precision-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = FeatureCache::new(&dir);
        let store = |p: Precision, value: f32| {
            cache
                .get_or_compute(&key(p), 1, 2, |w| {
                    let v = vec![value; 2];
                    w.expect("caching").append(&v)?;
                    Ok(v)
                })
                .unwrap()
        };
        let (_, stored) = store(Precision::F16, 1.0);
        assert!(matches!(stored, CacheOutcome::Stored(_)), "{stored:?}");
        // An f32 run computes its own features instead of reading the f16 ones.
        let (f32_features, outcome) = store(Precision::F32, 2.0);
        assert!(matches!(outcome, CacheOutcome::Stored(_)), "{outcome:?}");
        assert_eq!(f32_features, vec![2.0, 2.0]);
        // And each precision finds its own entry again.
        let (f16_again, hit) = store(Precision::F16, 3.0);
        assert!(matches!(hit, CacheOutcome::Hit(_)), "{hit:?}");
        assert_eq!(f16_again, vec![1.0, 1.0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
