//! Image-folder datasets: one subfolder per class holding image files, or
//! split folders (`train/` with `test/` and/or `validation/`) each holding
//! the same class subfolders.
//!
//! ```text
//! DIR/airplane/0000.jpg ...        DIR/train/airplane/0000.jpg ...
//! DIR/automobile/0000.jpg ...      DIR/validation/airplane/0000.jpg ...   (optional)
//!                                  DIR/test/airplane/0000.jpg ...         (optional)
//! ```
//!
//! Classes are the subfolder names in sorted order (label k = k-th name),
//! as Keras's `image_dataset_from_directory` and torchvision's
//! `ImageFolder` number them; within a class, files in sorted name order.
//! Input order: by class index, then file name. Hidden files and folders
//! (names starting with `.`, such as `.DS_Store`) are skipped.
//!
//! Images are read by [`super::decode`], the trainer's one decoder. Two
//! ways, chosen by [`super::ImageOptions::resize_to`]:
//! - `None` (the 32x32 readers: `data::load`): every image must be 32x32;
//!   the first file that is not is an error naming it.
//! - `Some(S)` (train, extract, evaluate): images of any size. Every file's
//!   header is read first (a few KB each, in parallel), so that all
//!   unreadable files are listed at once, or skipped and counted with
//!   `skip_bad_images`; that read also decodes 32x32 images. When every
//!   image is 32x32 (CIFAR-10's JPEG copy) they are kept in memory, as by
//!   the 32x32 readers. Otherwise
//!   the dataset keeps only its file list: each pass decodes and resizes
//!   the images to S x S as it goes ([`super::stream`]), so memory does not
//!   grow with the number of images.

use super::decode::{decode_image, inspect, probe, Inspected, FORMATS};
use super::{Dataset, ImageOptions, Split, IMAGE_BYTES};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// How many unreadable files an error or a message lists by name (the
/// rest are counted).
pub const BAD_FILES_LISTED: usize = 10;

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

/// Where an image folder's images are: its split folders, or one tree of
/// class folders (then `train` is the folder itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The training classes: `DIR/train`, or `DIR` for one class tree.
    pub train: PathBuf,
    /// `DIR/validation`, when there.
    pub validation: Option<PathBuf>,
    /// `DIR/test`, when there.
    pub test: Option<PathBuf>,
    /// Whether `DIR` is one tree of class folders (no split folders).
    pub single_tree: bool,
}

/// The layout of the image folder `dir` (see the module docs): `train/`
/// with `test/` and/or `validation/` (all holding the same classes), `train/`
/// alone, or one class tree. `test/` or `validation/` without `train/` is an
/// error.
pub fn layout(dir: &Path) -> Result<Layout> {
    let subs = subfolders(dir)?;
    let has = |name: &str| subs.iter().any(|s| s == name);
    let (train, validation, test) = (has("train"), has("validation"), has("test"));
    if train && (validation || test || subs.len() == 1) {
        let folder = |on: bool, name: &str| on.then(|| dir.join(name));
        let layout = Layout {
            train: dir.join("train"),
            validation: folder(validation, "validation"),
            test: folder(test, "test"),
            single_tree: false,
        };
        let reference = classes(&layout.train)?;
        for other in [&layout.validation, &layout.test].into_iter().flatten() {
            same_classes(dir, &layout.train, &reference, other)?;
        }
        return Ok(layout);
    }
    if (validation || test) && subs.iter().all(|s| s == "validation" || s == "test") {
        let have = if test { "test" } else { "validation" };
        return Err(Error::data(
            dir,
            format!(
                "holds {have}/ but no train/; put the training images in {}/<class>/, or point \
                 --data at {} to use it as one set",
                dir.join("train").display(),
                dir.join(have).display()
            ),
        ));
    }
    Ok(Layout {
        train: dir.to_path_buf(),
        validation: None,
        test: None,
        single_tree: true,
    })
}

/// An error unless the split folder `other` holds the classes `reference`
/// of `train` (so that labels mean the same thing in every split).
fn same_classes(dir: &Path, train: &Path, reference: &[String], other: &Path) -> Result<()> {
    let theirs = classes(other)?;
    if theirs == reference {
        return Ok(());
    }
    let name = |p: &Path| format!("{}/", p.file_name().unwrap_or_default().to_string_lossy());
    let (a, b) = (name(train), name(other));
    let only = |x: &[String], y: &[String]| -> String {
        let v: Vec<&str> = x
            .iter()
            .filter(|c| !y.contains(c))
            .map(String::as_str)
            .collect();
        v.join(", ")
    };
    Err(Error::data(
        dir,
        format!(
            "{a} and {b} hold different classes: {a} has {} classes, {b} has {}; only in {a}: \
             [{}]; only in {b}: [{}]. Both must hold the same class subfolders so labels mean \
             the same thing",
            reference.len(),
            theirs.len(),
            only(reference, &theirs),
            only(&theirs, reference)
        ),
    ))
}

/// The folder holding the class subfolders for `split`: `dir/train` or
/// `dir/test` when `dir` has split folders, else `dir` itself.
pub fn split_root(dir: &Path, split: Split) -> Result<PathBuf> {
    let layout = layout(dir)?;
    if layout.single_tree {
        return Ok(dir.to_path_buf());
    }
    match (split, layout.test) {
        (Split::Train, _) => Ok(layout.train),
        (Split::Test, Some(test)) => Ok(test),
        (Split::Test, None) => Err(Error::data(
            dir,
            format!(
                "holds train/ but no test/; put the test images in {}/<class>/, split them off \
                 the training images with --test-split (train), or point --data at {} to use \
                 it as one set",
                dir.join("test").display(),
                dir.join("train").display()
            ),
        )),
    }
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

/// Whether a file is hidden: a dot file, or one of the files an operating
/// system leaves beside pictures (Windows's `Thumbs.db` and `desktop.ini`,
/// which the cats-vs-dogs archive holds). Such files are not images of the
/// class and are not counted as unreadable ones.
fn is_hidden(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.')
        || name.eq_ignore_ascii_case("Thumbs.db")
        || name.eq_ignore_ascii_case("desktop.ini")
}

/// The image files of one class folder, sorted by name; hidden files skipped,
/// subfolders refused.
fn class_files(class_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(class_dir).map_err(|e| Error::io(class_dir, "listing", e))? {
        let entry = entry.map_err(|e| Error::io(class_dir, "listing", e))?;
        let name = entry.file_name();
        if is_hidden(&name) {
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

/// Every file under `dir` and its subfolders, sorted by path; hidden files
/// and folders skipped (`predict`'s folders).
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).map_err(|e| Error::io(&folder, "listing", e))? {
            let entry = entry.map_err(|e| Error::io(&folder, "listing", e))?;
            if is_hidden(&entry.file_name()) {
                continue;
            }
            match entry.path() {
                p if p.is_dir() => folders.push(p),
                p => files.push(p),
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `files` whose headers read as images; the others listed in an error,
/// or with `skip_bad_images` left out and returned second.
pub fn readable(
    root: &Path,
    mut files: Vec<PathBuf>,
    opts: &ImageOptions,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let bad: Vec<(usize, Error)> = files
        .par_iter()
        .enumerate()
        .filter_map(|(i, f)| probe(f).err().map(|e| (i, e)))
        .collect();
    let skipped = skip_or_refuse(root, bad, opts, &mut files, &mut Vec::new())?;
    Ok((files, skipped))
}

/// Reads the `split` of the image folder at `dir`, 32x32 images only (see
/// the module docs).
pub fn read(dir: &Path, split: Split) -> Result<Dataset> {
    read_with(dir, split, &ImageOptions::exactly_32())
}

/// Reads the `split` of the image folder at `dir` as `opts` says.
pub fn read_with(dir: &Path, split: Split, opts: &ImageOptions) -> Result<Dataset> {
    read_root(&split_root(dir, split)?, opts)
}

/// The files of the class folders under `root` and their labels, in input
/// order, with the class names.
fn listing(root: &Path) -> Result<(Vec<String>, Vec<PathBuf>, Vec<u8>)> {
    let classes = classes(root)?;
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_files = class_files(&root.join(class))?;
        labels.extend(std::iter::repeat_n(label as u8, class_files.len()));
        files.extend(class_files);
    }
    Ok((classes, files, labels))
}

/// Reads the class folders under `root` (see the module docs).
pub fn read_root(root: &Path, opts: &ImageOptions) -> Result<Dataset> {
    let (classes, mut files, mut labels) = listing(root)?;
    let Some(side) = opts.resize_to else {
        let images = decode_all(&files).map_err(|mut bad| bad.swap_remove(0).1)?;
        return Ok(Dataset::in_memory(images, labels, classes, files));
    };
    let inspected: Vec<Result<Inspected>> = files.par_iter().map(|f| inspect(f)).collect();
    let mut bad = Vec::new();
    let mut pixels = Vec::new();
    for (i, r) in inspected.into_iter().enumerate() {
        match r {
            Ok(image) => pixels.push(image.pixels_32),
            Err(e) => bad.push((i, e)),
        }
    }
    let skipped = skip_or_refuse(root, bad, opts, &mut files, &mut labels)?;
    if pixels.iter().any(Option::is_none) {
        let mut ds = Dataset::streamed(side, opts.crop_to_aspect_ratio, labels, classes, files);
        ds.skipped = skipped;
        return Ok(ds);
    }
    // Every image is 32x32 (CIFAR-10's JPEG copy): in memory, as the 32x32
    // readers keep it, from the one read.
    let mut images = Vec::with_capacity(files.len() * IMAGE_BYTES);
    for image in pixels.iter().flatten() {
        images.extend_from_slice(image);
    }
    let mut ds = Dataset::in_memory(images, labels, classes, files);
    ds.skipped = skipped;
    Ok(ds)
}

/// Every file decoded as a 32x32 image, in parallel, in input order; or
/// the files that failed (index and error, in input order).
fn decode_all(files: &[PathBuf]) -> std::result::Result<Vec<u8>, Vec<(usize, Error)>> {
    let mut images = vec![0u8; files.len() * IMAGE_BYTES];
    let mut bad: Vec<(usize, Error)> = images
        .par_chunks_mut(IMAGE_BYTES)
        .zip(files.par_iter())
        .enumerate()
        .filter_map(|(i, (out, path))| decode_image(path, out).err().map(|e| (i, e)))
        .collect();
    bad.sort_by_key(|(i, _)| *i);
    match bad.is_empty() {
        true => Ok(images),
        false => Err(bad),
    }
}

/// With `skip_bad_images`, removes the `bad` files (indices into `files`)
/// and their labels, says so, and returns them; without it, an error
/// listing them.
pub(crate) fn skip_or_refuse(
    root: &Path,
    bad: Vec<(usize, Error)>,
    opts: &ImageOptions,
    files: &mut Vec<PathBuf>,
    labels: &mut Vec<u8>,
) -> Result<Vec<PathBuf>> {
    if bad.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = bad
        .iter()
        .take(BAD_FILES_LISTED)
        .map(|(_, e)| format!("  {e}"))
        .collect();
    let more = match bad.len().saturating_sub(BAD_FILES_LISTED) {
        0 => String::new(),
        k => format!("\n  ... and {k} more"),
    };
    if !opts.skip_bad_images {
        return Err(Error::data(
            root,
            format!(
                "holds {} of {} files that cannot be read as images ({FORMATS}):\n{}{more}\n\
                 Remove or fix them, or pass --skip-bad-images to leave them out (they are \
                 counted and listed)",
                bad.len(),
                files.len(),
                list.join("\n")
            ),
        ));
    }
    eprintln!(
        "{}: skipped {} of {} files that cannot be read as images (--skip-bad-images):\n{}{more}",
        root.display(),
        bad.len(),
        files.len(),
        list.join("\n")
    );
    let drop: std::collections::HashSet<usize> = bad.iter().map(|(i, _)| *i).collect();
    let skipped = bad.iter().map(|(i, _)| files[*i].clone()).collect();
    remove_indices(files, &drop);
    remove_indices(labels, &drop);
    Ok(skipped)
}

/// Removes the elements of `v` whose indices are in `drop`.
fn remove_indices<T>(v: &mut Vec<T>, drop: &std::collections::HashSet<usize>) {
    let mut i = 0;
    v.retain(|_| {
        let keep = !drop.contains(&i);
        i += 1;
        keep
    });
}
