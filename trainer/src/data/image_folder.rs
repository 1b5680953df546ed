//! Image-folder datasets: one subfolder per class holding JPEG or PNG files,
//! or `train/` and `test/` each holding the same class subfolders.
//!
//! ```text
//! DIR/airplane/0000.jpg ...        DIR/train/airplane/0000.jpg ...
//! DIR/automobile/0000.jpg ...      DIR/test/airplane/0000.jpg ...
//! ```
//!
//! Classes are the subfolder names in sorted order (label k = k-th name);
//! within a class, files in sorted name order. Input order: by class index,
//! then file name. Every image must be a 32x32 JPEG or PNG; it is read as
//! 8-bit RGB whatever its colour type ([`super::decode`], the trainer's one
//! decoder). Hidden files (names starting with `.`, such as `.DS_Store`) are
//! skipped; any other file that is not such an image is an error naming it.
//! Files decode in parallel on all cores.

use super::decode::decode_image;
use super::{Dataset, Split, IMAGE_BYTES};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Whether `dir` has at least one (non-hidden) subfolder.
pub fn has_subfolders(dir: &Path) -> Result<bool> {
    Ok(!subfolders(dir)?.is_empty())
}

/// The non-hidden subfolder names of `dir`, sorted.
fn subfolders(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, "listing", e))? {
        let entry = entry.map_err(|e| Error::io(dir, "listing", e))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || !path.is_dir() {
            continue;
        }
        let Some(name) = name.to_str() else {
            return Err(Error::data(
                &path,
                "is a folder whose name is not valid UTF-8; class names are text (they are \
                 saved in the model file). Rename the folder",
            ));
        };
        names.push(name.to_string());
    }
    names.sort();
    Ok(names)
}

/// The folder holding the class subfolders for `split`: `dir/train` or
/// `dir/test` when `dir` holds both (and then both must list the same
/// classes), else `dir` itself.
pub fn split_root(dir: &Path, split: Split) -> Result<PathBuf> {
    let subs = subfolders(dir)?;
    let has_train = subs.iter().any(|s| s == "train");
    let has_test = subs.iter().any(|s| s == "test");
    if has_train && has_test {
        let train = classes(&dir.join("train"))?;
        let test = classes(&dir.join("test"))?;
        if train != test {
            let only_train: Vec<&str> = train
                .iter()
                .filter(|c| !test.contains(c))
                .map(String::as_str)
                .collect();
            let only_test: Vec<&str> = test
                .iter()
                .filter(|c| !train.contains(c))
                .map(String::as_str)
                .collect();
            return Err(Error::data(
                dir,
                format!(
                    "train/ and test/ hold different classes: train/ has {} classes, test/ has \
                     {}; only in train/: [{}]; only in test/: [{}]. Both must hold the same \
                     class subfolders so labels mean the same thing",
                    train.len(),
                    test.len(),
                    only_train.join(", "),
                    only_test.join(", ")
                ),
            ));
        }
        return Ok(dir.join(split.name()));
    }
    if (has_train || has_test) && subs.len() == 1 {
        let (have, lack) = if has_train {
            ("train", "test")
        } else {
            ("test", "train")
        };
        return Err(Error::data(
            dir,
            format!(
                "holds {have}/ but no {lack}/; put the {lack} images in {}/<class>/, or point \
                 --data at {} to use it as one set",
                dir.join(lack).display(),
                dir.join(have).display()
            ),
        ));
    }
    Ok(dir.to_path_buf())
}

/// The class names under `root` (its sorted, non-hidden subfolders).
pub fn classes(root: &Path) -> Result<Vec<String>> {
    let names = subfolders(root)?;
    if names.is_empty() {
        return Err(Error::data(
            root,
            "has no class subfolders; an image folder holds one subfolder per class",
        ));
    }
    if names.len() > 256 {
        return Err(Error::data(
            root,
            format!(
                "has {} class subfolders; labels are stored as bytes, at most 256 classes",
                names.len()
            ),
        ));
    }
    Ok(names)
}

/// The image files of one class folder, sorted by name; hidden files skipped,
/// subfolders refused.
fn class_files(class_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(class_dir).map_err(|e| Error::io(class_dir, "listing", e))? {
        let entry = entry.map_err(|e| Error::io(class_dir, "listing", e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            return Err(Error::data(
                &path,
                "is a folder inside a class folder; class folders must hold image files only",
            ));
        }
        files.push(path);
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::data(
            class_dir,
            "is a class folder with no images; remove it or add its images",
        ));
    }
    Ok(files)
}

/// Reads the `split` of the image folder at `dir` (see the module docs).
pub fn read(dir: &Path, split: Split) -> Result<Dataset> {
    let root = split_root(dir, split)?;
    let classes = classes(&root)?;
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_files = class_files(&root.join(class))?;
        labels.extend(std::iter::repeat_n(label as u8, class_files.len()));
        files.extend(class_files);
    }
    let mut images = vec![0u8; files.len() * IMAGE_BYTES];
    // Report the first bad file in input order, whichever thread met it first.
    let first_error = images
        .par_chunks_mut(IMAGE_BYTES)
        .zip(files.par_iter())
        .enumerate()
        .filter_map(|(i, (out, path))| decode_image(path, out).err().map(|e| (i, e)))
        .min_by_key(|(i, _)| *i);
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    Ok(Dataset {
        images,
        labels,
        classes,
        files,
    })
}
