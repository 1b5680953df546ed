//! The official CIFAR-10 binary format (cifar-10-binary.tar.gz).
//!
//! A batch file is a sequence of 3,073-byte records: 1 label byte (0..9),
//! then 3,072 pixel bytes as three 32x32 planes, R, G then B, each row-major.
//! The reader turns each record into one HWC image (the layout Keras and our
//! engine use): `pixel[y][x][c] = record[1 + c * 1024 + y * 32 + x]`.
//!
//! The archive unpacks to `cifar-10-batches-bin/` holding `data_batch_1.bin`
//! .. `data_batch_5.bin` (10,000 training images each), `test_batch.bin`
//! (10,000 test images) and `batches.meta.txt` (the class names, one a line).
//! Input order: records in file order, batches 1..5 in turn.

use super::{Dataset, Split, CIFAR10_CLASSES, IMAGE_BYTES};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Bytes of one record: 1 label byte + 3 planes of 32x32 pixels.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;

/// Pixels in one colour plane (32 x 32).
const PLANE: usize = IMAGE_BYTES / 3;

/// The training batches, in input order.
pub const TRAIN_BATCHES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// The test batch.
pub const TEST_BATCH: &str = "test_batch.bin";

/// The folder the official archive unpacks to.
pub const ARCHIVE_DIR: &str = "cifar-10-batches-bin";

/// Decodes the records in `bytes` (read from `path`, named in errors) into
/// uint8 NHWC images and labels.
pub fn decode(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    if bytes.is_empty() {
        return Err(Error::data(
            path,
            "is empty; a CIFAR-10 binary batch holds 3073-byte records. Re-download \
             cifar-10-binary.tar.gz and unpack it again",
        ));
    }
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(Error::data(
            path,
            format!(
                "is {} bytes, not a multiple of {RECORD_BYTES} (1 label byte + 3072 pixel \
                 bytes per record): {} whole records and {} bytes over. The file is truncated \
                 or not a CIFAR-10 binary batch (CIFAR-100's records have 2 label bytes); \
                 re-download cifar-10-binary.tar.gz and unpack it again",
                bytes.len(),
                bytes.len() / RECORD_BYTES,
                bytes.len() % RECORD_BYTES
            ),
        ));
    }
    let n = bytes.len() / RECORD_BYTES;
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        if rec[0] >= 10 {
            return Err(Error::data(
                path,
                format!(
                    "record {i} (byte offset {}) has label {}; CIFAR-10 labels are 0..9. \
                     The file is corrupt or not a CIFAR-10 binary batch",
                    i * RECORD_BYTES,
                    rec[0]
                ),
            ));
        }
        labels.push(rec[0]);
    }
    let mut images = vec![0u8; n * IMAGE_BYTES];
    images
        .par_chunks_mut(IMAGE_BYTES)
        .zip(bytes.par_chunks(RECORD_BYTES))
        .for_each(|(img, rec)| {
            let planes = &rec[1..];
            for p in 0..PLANE {
                img[p * 3] = planes[p];
                img[p * 3 + 1] = planes[PLANE + p];
                img[p * 3 + 2] = planes[2 * PLANE + p];
            }
        });
    Ok((images, labels))
}

/// Encodes uint8 NHWC images and labels as CIFAR-10 binary records (the
/// inverse of [`decode`]), for writing small batches of one's own.
pub fn encode(images: &[u8], labels: &[u8]) -> Result<Vec<u8>> {
    if images.len() != labels.len() * IMAGE_BYTES {
        return Err(Error::Usage(format!(
            "cifar_binary::encode: {} image bytes for {} labels, expected {} (32x32x3 each)",
            images.len(),
            labels.len(),
            labels.len() * IMAGE_BYTES
        )));
    }
    let mut out = Vec::with_capacity(labels.len() * RECORD_BYTES);
    for (img, &label) in images.chunks_exact(IMAGE_BYTES).zip(labels) {
        out.push(label);
        for c in 0..3 {
            out.extend((0..PLANE).map(|p| img[p * 3 + c]));
        }
    }
    Ok(out)
}

/// Reads one batch file into a [`Dataset`] with CIFAR-10's class names.
pub fn read_file(path: &Path) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "reading", e))?;
    let (images, labels) = decode(&bytes, path)?;
    let classes = path
        .parent()
        .map(class_names)
        .unwrap_or_else(|| Ok(default_classes()))?;
    Ok(Dataset::in_memory(images, labels, classes, Vec::new()))
}

/// The directory holding the batches: `dir` itself, or its
/// `cifar-10-batches-bin/` (as the archive unpacks); `None` if neither has
/// any batch file.
pub fn batch_dir(dir: &Path) -> Option<PathBuf> {
    let has_batches = |d: &Path| {
        TRAIN_BATCHES
            .iter()
            .chain([TEST_BATCH].iter())
            .any(|name| d.join(name).is_file())
    };
    if has_batches(dir) {
        return Some(dir.to_path_buf());
    }
    let nested = dir.join(ARCHIVE_DIR);
    has_batches(&nested).then_some(nested)
}

/// Reads the `split` of a directory of batches (`dir` or its
/// `cifar-10-batches-bin/`): batches 1..5 in turn for train, test_batch.bin
/// for test. Every batch of the split must be there.
pub fn read_dir(dir: &Path, split: Split) -> Result<Dataset> {
    let root = batch_dir(dir).ok_or_else(|| {
        Error::data(
            dir,
            "holds no CIFAR-10 binary batch (data_batch_1..5.bin, test_batch.bin)",
        )
    })?;
    let names: Vec<&str> = match split {
        Split::Train => TRAIN_BATCHES.to_vec(),
        Split::Test => vec![TEST_BATCH],
    };
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !root.join(n).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(Error::data(
            &root,
            format!(
                "the {} split needs {}, but {} missing. Unpack the whole \
                 cifar-10-binary.tar.gz here, or pass one batch file as --data",
                split.name(),
                names.join(", "),
                if missing.len() == 1 {
                    format!("{} is", missing[0])
                } else {
                    format!("{} are", missing.join(", "))
                }
            ),
        ));
    }
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for name in names {
        let path = root.join(name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, "reading", e))?;
        let (im, lb) = decode(&bytes, &path)?;
        images.extend_from_slice(&im);
        labels.extend_from_slice(&lb);
    }
    Ok(Dataset::in_memory(
        images,
        labels,
        class_names(&root)?,
        Vec::new(),
    ))
}

fn default_classes() -> Vec<String> {
    CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
}

/// Class names from `dir/batches.meta.txt` when present (one a line, blank
/// lines ignored), else CIFAR-10's.
fn class_names(dir: &Path) -> Result<Vec<String>> {
    let meta = dir.join("batches.meta.txt");
    if !meta.is_file() {
        return Ok(default_classes());
    }
    let text = std::fs::read_to_string(&meta).map_err(|e| Error::io(&meta, "reading", e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if let Some((i, name)) = names
        .iter()
        .enumerate()
        .find(|(i, n)| names[..*i].contains(n))
    {
        return Err(Error::data(
            &meta,
            format!(
                "lists the class name '{name}' twice (names {} and {} of its list); each of the \
                 10 labels needs its own name. Restore it from cifar-10-binary.tar.gz or delete it to use \
                 the standard names",
                names.iter().position(|n| n == name).unwrap() + 1,
                i + 1
            ),
        ));
    }
    if names.len() != 10 {
        return Err(Error::data(
            &meta,
            format!(
                "lists {} class names, CIFAR-10 has 10; restore it from \
                 cifar-10-binary.tar.gz or delete it to use the standard names",
                names.len()
            ),
        ));
    }
    Ok(names)
}
