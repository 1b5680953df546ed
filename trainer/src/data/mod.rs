//! Datasets of 32x32 RGB images with integer labels: the first stage of the
//! trainer's pipeline (read images -> resize -> preprocess -> backbone -> head).
//!
//! - [`cifar_binary`]: the official CIFAR-10 binary batches.
//! - [`image_folder`]: one subfolder per class (or `train/` and `test/`
//!   holding them), JPEG or PNG files.
//! - [`decode`]: the one image decoder (format by content, 8-bit RGB, size
//!   checked from the header), used by the reader, `evaluate` and `predict`.
//! - [`load`] tells the two apart and reads either into a [`Dataset`];
//!   [`load_split`] reads `--data`, or CIFAR-10 from the cache.
//! - [`holdout`]: the validation split and the row gathers after it.
//! - [`preprocess_data`]: uint8 images and labels in, the model's float input
//!   and one-hot labels out (the original assignment's `preprocess_data(X, Y)`).
//!
//! Images are kept as uint8 NHWC `(N, 32, 32, 3)` in memory (60,000 CIFAR-10
//! images take 184 MB); they become floats one batch at a time.

pub mod cifar_binary;
pub mod decode;
pub mod holdout;
pub mod image_folder;

use crate::download::{self, FetchOptions};
use crate::error::{Error, Result};
use engine::Tensor;
use std::path::Path;

/// Height and width of every image the readers accept.
pub const IMAGE_SIDE: usize = 32;

/// Bytes of one image: 32 x 32 pixels x 3 channels (R, G, B).
pub const IMAGE_BYTES: usize = IMAGE_SIDE * IMAGE_SIDE * 3;

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
    /// uint8 pixels, NHWC `(N, 32, 32, 3)`, RGB, row-major.
    pub images: Vec<u8>,
    /// One label per image, an index into `classes`.
    pub labels: Vec<u8>,
    /// Class names; label `k` is `classes[k]`.
    pub classes: Vec<String>,
    /// The file of each image, in input order (image folders); empty for
    /// CIFAR-10 batches, whose images are known by their index.
    pub files: Vec<std::path::PathBuf>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`, HWC (32, 32, 3).
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// Number of images per class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
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
/// a directory of batches, or an image folder). A single batch file is read
/// whole, whatever the split.
pub fn load(path: &Path, split: Split) -> Result<Dataset> {
    match detect(path)? {
        Format::CifarBinaryFile => cifar_binary::read_file(path),
        Format::CifarBinaryDir => cifar_binary::read_dir(path, split),
        Format::ImageFolder => image_folder::read(path, split),
    }
}

/// The `split` of the dataset at `data`, or of CIFAR-10 from the cache
/// (downloaded and unpacked when missing).
pub fn load_split(data: Option<&Path>, split: Split) -> Result<Dataset> {
    let path = match data {
        Some(p) => p.to_path_buf(),
        None => download::ensure_cifar10(&download::cache_dir()?, &FetchOptions::default())?,
    };
    let ds = load(&path, split)?;
    if ds.is_empty() {
        return Err(Error::data(
            &path,
            format!("the {} split holds no image", split.name()),
        ));
    }
    Ok(ds)
}

/// Refuses, for training, a dataset without a test split of its own (a
/// single batch file, or class folders without `train/` and `test/`): the
/// model would be scored on the images it was trained on.
pub fn require_test_split(path: &Path) -> Result<()> {
    let what = match detect(path)? {
        Format::CifarBinaryDir => return Ok(()),
        Format::ImageFolder if image_folder::split_root(path, Split::Test)? != path => {
            return Ok(())
        }
        Format::ImageFolder => "holds class folders but no train/ and test/ folders",
        Format::CifarBinaryFile => "is a single CIFAR-10 batch file",
    };
    Err(Error::data(
        path,
        format!(
            "{what}, so it has no separate test split: training would score the model on its \
             own training images. Nothing was run. HINT: give --data a folder with train/ and \
             test/ (each holding the class folders), or a folder of CIFAR-10 batches \
             (data_batch_1..5.bin and test_batch.bin); `extract` and `evaluate` take a single \
             file or folder"
        ),
    ))
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
