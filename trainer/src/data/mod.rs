//! Datasets of RGB images with integer labels: the first stage of the
//! trainer's pipeline (read images -> resize -> preprocess -> backbone -> head).
//!
//! - [`cifar_binary`]: the official CIFAR-10 binary batches.
//! - [`image_folder`]: one subfolder per class (or split folders `train/`,
//!   `validation/`, `test/` holding them), images of any size and format.
//! - [`decode`]: the one image decoder (format by content, 8-bit RGB, size
//!   checked from the header, resized to the model's size), used by the
//!   reader, `evaluate` and `predict`.
//! - [`stream`]: the images of a dataset batch by batch, decoded and
//!   resized by two worker threads when they stay on disk.
//! - [`sets`]: the training, validation and test sets of `train`, from
//!   split folders or split off one class tree with a seed.
//! - [`load`] tells the formats apart and reads either into a [`Dataset`];
//!   [`load_split`] reads `--data`, or CIFAR-10 from the cache.
//! - [`holdout`]: the validation split and the row gathers after it.
//! - [`preprocess_data`]: uint8 images and labels in, the model's float input
//!   and one-hot labels out (the original assignment's `preprocess_data(X, Y)`).
//!
//! Images of 32x32 (CIFAR-10, as batches or as its JPEG copy) are kept as
//! uint8 NHWC `(N, 32, 32, 3)` in memory (60,000 CIFAR-10 images take 184
//! MB); images of other sizes stay on disk and are decoded and resized to
//! the model's input size on each pass ([`Dataset::streamed`]). Either way
//! they become floats one batch at a time.

pub mod cifar_binary;
pub mod decode;
pub mod holdout;
pub mod image_folder;
pub mod sets;
pub mod stream;

use crate::download::{self, FetchOptions};
use crate::error::{Error, Result};
use engine::Tensor;
use std::path::{Path, PathBuf};

/// Height and width of the images kept in memory (CIFAR-10's).
pub const IMAGE_SIDE: usize = 32;

/// Bytes of one in-memory image: 32 x 32 pixels x 3 channels (R, G, B).
pub const IMAGE_BYTES: usize = IMAGE_SIDE * IMAGE_SIDE * 3;

/// How image folders are read (the `--crop-to-aspect-ratio` and
/// `--skip-bad-images` flags, and the model's input size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageOptions {
    /// The side images of any size are resized to (the model's input
    /// size); None: every image must be 32x32 (the 32x32 readers).
    pub resize_to: Option<usize>,
    /// Centre-crop each image to a square before resizing (Keras's
    /// `crop_to_aspect_ratio=True`), instead of squeezing it.
    pub crop_to_aspect_ratio: bool,
    /// Leave out, and count, files that cannot be read as images, instead
    /// of refusing the dataset.
    pub skip_bad_images: bool,
}

impl ImageOptions {
    /// The 32x32 readers' options: 32x32 images only, no bad file skipped.
    pub fn exactly_32() -> ImageOptions {
        ImageOptions {
            resize_to: None,
            crop_to_aspect_ratio: false,
            skip_bad_images: false,
        }
    }

    /// Images of any size, resized to `side` x `side`; the flags from `args`.
    pub fn resized(side: usize, args: &crate::cli::ImageArgs) -> ImageOptions {
        ImageOptions {
            resize_to: Some(side),
            crop_to_aspect_ratio: args.crop_to_aspect_ratio,
            skip_bad_images: args.skip_bad_images,
        }
    }
}

/// CIFAR-10's class names in label order 0..9 (as in `batches.meta.txt`).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Which part of a dataset to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// The training images (CIFAR-10: data_batch_1..5.bin, 50,000 images).
    Train,
    /// The test images (CIFAR-10: test_batch.bin, 10,000 images).
    Test,
}

impl Split {
    /// The split's name as users write it: `train` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// Images, labels and class names, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// uint8 pixels, NHWC `(N, side, side, 3)`, RGB, row-major; empty when
    /// the images are streamed from `files`.
    pub images: Vec<u8>,
    /// One label per image, an index into `classes`.
    pub labels: Vec<u8>,
    /// Class names; label `k` is `classes[k]`.
    pub classes: Vec<String>,
    /// The file of each image, in input order (image folders); empty for
    /// CIFAR-10 batches, whose images are known by their index.
    pub files: Vec<PathBuf>,
    /// Height and width of every image as batches give it: 32 in memory,
    /// the model's input size when streamed.
    pub side: usize,
    /// Whether the images stay on disk and are decoded (centre-cropped
    /// first when `Some(true)`) and resized on each pass; None: in memory.
    pub streamed: Option<bool>,
    /// Files left out because they cannot be read as images
    /// (`--skip-bad-images`).
    pub skipped: Vec<PathBuf>,
}

impl Dataset {
    /// 32x32 images held in memory.
    pub fn in_memory(
        images: Vec<u8>,
        labels: Vec<u8>,
        classes: Vec<String>,
        files: Vec<PathBuf>,
    ) -> Dataset {
        Dataset {
            images,
            labels,
            classes,
            files,
            side: IMAGE_SIDE,
            streamed: None,
            skipped: Vec::new(),
        }
    }

    /// Images that stay on disk as `files`, decoded and resized to `side`
    /// (centre-cropped first with `crop`) on each pass.
    pub fn streamed(
        side: usize,
        crop: bool,
        labels: Vec<u8>,
        classes: Vec<String>,
        files: Vec<PathBuf>,
    ) -> Dataset {
        Dataset {
            images: Vec::new(),
            labels,
            classes,
            files,
            side,
            streamed: Some(crop),
            skipped: Vec::new(),
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes of one image as batches give it: `side * side * 3`.
    pub fn image_bytes(&self) -> usize {
        self.side * self.side * 3
    }

    /// The pixels of in-memory image `i`, HWC (side, side, 3); empty for a
    /// streamed dataset (read it with [`stream::batches`]).
    pub fn image(&self, i: usize) -> &[u8] {
        let b = self.image_bytes();
        self.images.get(i * b..(i + 1) * b).unwrap_or(&[])
    }

    /// Number of images per class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// The images `idx` (in that order), as a dataset of their own.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let (images, labels) = holdout::gather_images(self, idx);
        let files = match self.files.is_empty() {
            true => Vec::new(),
            false => idx.iter().map(|&i| self.files[i].clone()).collect(),
        };
        Dataset {
            images,
            labels,
            files,
            ..self.without_images()
        }
    }

    /// These images followed by `more`'s (the same classes, side and
    /// storage).
    pub fn chain(mut self, more: Dataset) -> Dataset {
        debug_assert_eq!((self.side, self.streamed), (more.side, more.streamed));
        self.images.extend(more.images);
        self.labels.extend(more.labels);
        self.files.extend(more.files);
        self.skipped.extend(more.skipped);
        self
    }

    /// The dataset's classes and storage, without any image.
    fn without_images(&self) -> Dataset {
        Dataset {
            images: Vec::new(),
            labels: Vec::new(),
            classes: self.classes.clone(),
            files: Vec::new(),
            side: self.side,
            streamed: self.streamed,
            skipped: self.skipped.clone(),
        }
    }
}

/// Which on-disk layout a `--data` path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One CIFAR-10 binary batch file.
    CifarBinaryFile,
    /// A directory of CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin).
    CifarBinaryDir,
    /// Class subfolders of JPEG/PNG images, or `train/` and `test/` holding them.
    ImageFolder,
}

/// Tells which layout `path` holds, or says what was expected.
pub fn detect(path: &Path) -> Result<Format> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::data(
                path,
                "does not exist; --data takes a CIFAR-10 binary batch file, a directory of \
                 batches (data_batch_1..5.bin, test_batch.bin) or an image folder",
            )
        } else {
            Error::io(path, "reading", e)
        }
    })?;
    if meta.is_file() {
        return Ok(Format::CifarBinaryFile);
    }
    if cifar_binary::batch_dir(path).is_some() {
        return Ok(Format::CifarBinaryDir);
    }
    if image_folder::has_subfolders(path)? {
        return Ok(Format::ImageFolder);
    }
    Err(Error::data(
        path,
        "holds neither CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin) nor class \
         subfolders of images; point --data at one of those",
    ))
}

/// Reads the `split` of the dataset at `path` (a CIFAR-10 binary batch file,
/// a directory of batches, or an image folder of 32x32 images). A single
/// batch file is read whole, whatever the split.
pub fn load(path: &Path, split: Split) -> Result<Dataset> {
    load_with(path, split, &ImageOptions::exactly_32())
}

/// [`load`], image folders read as `opts` says (any size with
/// `resize_to`).
pub fn load_with(path: &Path, split: Split, opts: &ImageOptions) -> Result<Dataset> {
    match detect(path)? {
        Format::CifarBinaryFile => cifar_binary::read_file(path),
        Format::CifarBinaryDir => cifar_binary::read_dir(path, split),
        Format::ImageFolder => image_folder::read_with(path, split, opts),
    }
}

/// The `split` of the dataset at `data`, or of CIFAR-10 from the cache
/// (downloaded and unpacked when missing).
pub fn load_split(data: Option<&Path>, split: Split, opts: &ImageOptions) -> Result<Dataset> {
    let path = data_path(data)?;
    let ds = load_with(&path, split, opts)?;
    if ds.is_empty() {
        return Err(Error::data(
            &path,
            format!("the {} split holds no image", split.name()),
        ));
    }
    Ok(ds)
}

/// `--data`, or CIFAR-10's folder in the cache (downloaded and unpacked
/// when missing).
pub fn data_path(data: Option<&Path>) -> Result<PathBuf> {
    match data {
        Some(p) => Ok(p.to_path_buf()),
        None => download::ensure_cifar10(&download::cache_dir()?, &FetchOptions::default()),
    }
}

/// One-hot rows `(N, num_classes)` from integer labels; errors on a label
/// outside `0..num_classes`.
pub fn one_hot(labels: &[u8], num_classes: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; labels.len() * num_classes];
    for (i, &l) in labels.iter().enumerate() {
        if l as usize >= num_classes {
            return Err(Error::Usage(format!(
                "one_hot: label {l} at index {i} is outside 0..{num_classes}; \
                 pass the dataset's number of classes"
            )));
        }
        out[i * num_classes + l as usize] = 1.0;
    }
    Ok(out)
}

/// The original assignment's `preprocess_data(X, Y)`: uint8 images
/// `(N, 32, 32, 3)` (flat NHWC, RGB) and labels `(N,)` in; the model's
/// preprocessed input (f32 NHWC, caffe mode, the default ResNet50's: BGR minus the ImageNet means,
/// still 32x32: resizing to the model's input size happens in the model
/// pipeline) and one-hot labels `(N, num_classes)` out.
pub fn preprocess_data(
    images: &[u8],
    labels: &[u8],
    num_classes: usize,
) -> Result<(Tensor, Tensor)> {
    let n = labels.len();
    if images.len() != n * IMAGE_BYTES {
        return Err(Error::Usage(format!(
            "preprocess_data: images hold {} bytes, but {n} labels need {n} x 32 x 32 x 3 = {} \
             (uint8 NHWC, 32x32 RGB)",
            images.len(),
            n * IMAGE_BYTES
        )));
    }
    let pixels: Vec<f32> = images.iter().map(|&p| p as f32).collect();
    let x = Tensor::from_vec(pixels, &[n, IMAGE_SIDE, IMAGE_SIDE, 3])?;
    let x = models::preprocess_input(models::Preprocessing::Caffe, &x)?;
    let y = Tensor::from_vec(one_hot(labels, num_classes)?, &[n, num_classes])?;
    Ok((x, y))
}
