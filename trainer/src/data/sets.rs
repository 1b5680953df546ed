//! The sets `train` needs: the training images, the validation images held
//! out from them, and a separate test set, scored once at the end.
//!
//! | `--data` holds                        | validation                     | test                     |
//! |---------------------------------------|--------------------------------|--------------------------|
//! | CIFAR-10 batches                      | `--val-split` of data_batch_*  | test_batch.bin           |
//! | `train/` + `test/`                    | `--val-split` of train/        | test/                    |
//! | `train/` + `validation/` (+ `test/`)  | validation/                    | test/, or `--test-split` |
//! | `train/` alone                        | `--val-split` of train/        | `--test-split` of train/ |
//! | one tree of class folders             | `--val-split` of all images    | `--test-split` of all    |
//!
//! Fractions are of all the images they are drawn from, drawn with `--seed`
//! (not stratified, as Keras's `validation_split`); the split is printed.
//! The model is never scored on its training images: without a test set of
//! its own and without `--test-split` the dataset is refused, with what to
//! do. A `validation/` folder is the validation set: `--val-split` beside
//! it is an error, as is `--test-split` beside a test set.

use super::holdout::{draw, holdout};
use super::image_folder::{layout, read_root};
use super::{cifar_binary, data_path, detect, Dataset, Format, ImageOptions, Split};
use crate::error::{Error, Result};
use std::path::Path;

/// The validation fraction when `--val-split` is not given.
pub const DEFAULT_VAL_SPLIT: f64 = 0.1;

/// How the sets are split (the `--val-split`, `--test-split` and `--seed` flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitOptions {
    /// Fraction held out for validation; None: [`DEFAULT_VAL_SPLIT`], or
    /// the `validation/` folder.
    pub val_split: Option<f64>,
    /// Fraction split off as the test set (datasets without one).
    pub test_split: Option<f64>,
    /// Seed of the draws.
    pub seed: u64,
}

/// The training, validation and test images of a run.
#[derive(Debug, Clone)]
pub struct TrainingSets {
    /// The training and the validation images (`train_idx` and `val_idx`
    /// index it).
    pub train: Dataset,
    /// The test set.
    pub test: Dataset,
    /// Indices of `train` trained on.
    pub train_idx: Vec<usize>,
    /// Indices of `train` held out for validation.
    pub val_idx: Vec<usize>,
    /// Where each set came from, for the run's message.
    pub description: String,
}

/// The sets of the dataset at `data` (CIFAR-10 from the cache when None),
/// image folders read as `images` says, split as `split` says (see the
/// module docs).
pub fn training_sets(
    data: Option<&Path>,
    images: &ImageOptions,
    split: &SplitOptions,
) -> Result<TrainingSets> {
    let path = data_path(data)?;
    match detect(&path)? {
        Format::CifarBinaryFile => Err(no_test_set(&path, "is a single CIFAR-10 batch file")),
        Format::CifarBinaryDir => {
            refuse_test_split(&path, split, "test_batch.bin")?;
            let train = cifar_binary::read_dir(&path, Split::Train)?;
            let test = cifar_binary::read_dir(&path, Split::Test)?;
            held_out(train, test, split, "data_batch_1..5.bin", "test_batch.bin")
        }
        Format::ImageFolder => folder_sets(&path, images, split),
    }
}

/// The sets of an image folder.
fn folder_sets(dir: &Path, images: &ImageOptions, split: &SplitOptions) -> Result<TrainingSets> {
    let layout = layout(dir)?;
    if layout.single_tree {
        let Some(test_split) = split.test_split else {
            return Err(no_test_set(
                dir,
                "holds class folders but no train/ and test/ folders",
            ));
        };
        let all = read_root(dir, images)?;
        let val = split.val_split.unwrap_or(DEFAULT_VAL_SPLIT);
        return drawn(all, test_split, Some(val), split.seed, "one class tree");
    }
    let mut train = read_root(&layout.train, images)?;
    if layout.test.is_some() {
        refuse_test_split(dir, split, "test/")?;
    }
    let mut test = layout
        .test
        .as_deref()
        .map(|t| read_root(t, images))
        .transpose()?;
    let Some(val_dir) = &layout.validation else {
        let Some(test) = test else {
            let Some(test_split) = split.test_split else {
                return Err(no_test_set(dir, "holds train/ but no test/ folder"));
            };
            let val = split.val_split.unwrap_or(DEFAULT_VAL_SPLIT);
            return drawn(train, test_split, Some(val), split.seed, "train/");
        };
        return held_out(train, test, split, "train/", "test/");
    };
    if let Some(v) = split.val_split {
        return Err(Error::Usage(format!(
            "--val-split {v}: {} holds a validation/ folder, which is the validation set. Drop \
             --val-split, or move validation/ aside to split the training images instead",
            dir.display()
        )));
    }
    if test.is_none() && split.test_split.is_none() {
        return Err(no_test_set(
            dir,
            "holds train/ and validation/ but no test/ folder",
        ));
    }
    let mut validation = read_root(val_dir, images)?;
    same_storage(&mut train, &mut validation);
    let test_from = match &test {
        Some(_) => "test/",
        None => "--test-split of train/",
    };
    let (train, test) = match test.take() {
        Some(test) => (train, test),
        None => {
            let test_split = split.test_split.unwrap_or_default();
            let sets = drawn(train, test_split, None, split.seed, "train/")?;
            (sets.train, sets.test)
        }
    };
    let n_train = train.len();
    let train = train.chain(validation);
    let description = format!(
        "{n_train} training images (train/), {} validation images (validation/), {} test \
         images ({test_from})",
        train.len() - n_train,
        test.len()
    );
    Ok(TrainingSets {
        train_idx: (0..n_train).collect(),
        val_idx: (n_train..train.len()).collect(),
        train,
        test,
        description,
    })
}

/// `train` with `--val-split` of its images held out (seeded), and `test`.
fn held_out(
    train: Dataset,
    test: Dataset,
    split: &SplitOptions,
    train_from: &str,
    test_from: &str,
) -> Result<TrainingSets> {
    let fraction = split.val_split.unwrap_or(DEFAULT_VAL_SPLIT);
    let (train_idx, val_idx) = holdout(train.len(), fraction, split.seed)?;
    let description = format!(
        "{} training images ({train_from}: {} for training, {} held out for validation, \
         --val-split {fraction}, seed {}), {} test images ({test_from})",
        train.len(),
        train_idx.len(),
        val_idx.len(),
        split.seed,
        test.len()
    );
    Ok(TrainingSets {
        train,
        test,
        train_idx,
        val_idx,
        description,
    })
}

/// `all` split with `seed` into a test set of `test_fraction` of its images,
/// a validation set of `val_fraction` (none when None) and the rest.
fn drawn(
    all: Dataset,
    test_fraction: f64,
    val_fraction: Option<f64>,
    seed: u64,
    from: &str,
) -> Result<TrainingSets> {
    let n = all.len();
    let check = |flag: &str, f: f64| match f > 0.0 && f < 1.0 {
        true => Ok(((n as f64 * f).round() as usize).max(1)),
        false => Err(Error::Usage(format!(
            "{flag} {f}: the fraction must be in (0, 1), e.g. 0.2"
        ))),
    };
    let n_test = check("--test-split", test_fraction)?;
    let n_val = match val_fraction {
        Some(v) => check("--val-split", v)?,
        None => 0,
    };
    if n_test + n_val >= n {
        return Err(Error::Usage(format!(
            "--test-split {test_fraction}{} of {n} images in {from} leaves none to train on; use \
             more images or smaller fractions",
            val_fraction
                .map(|v| format!(" and --val-split {v}"))
                .unwrap_or_default()
        )));
    }
    let (rest, test_idx) = draw(n, n_test, seed ^ 0x7465_7374)?;
    let test = all.subset(&test_idx);
    let train = all.subset(&rest);
    let (train_idx, val_idx) = draw(train.len(), n_val, seed)?;
    let description = format!(
        "{n} images ({from}) split with seed {seed}: {} for training, {} for validation, {} for \
         testing (--test-split {test_fraction}{})",
        train_idx.len(),
        val_idx.len(),
        test.len(),
        val_fraction
            .map(|v| format!(", --val-split {v}"))
            .unwrap_or_default()
    );
    Ok(TrainingSets {
        train,
        test,
        train_idx,
        val_idx,
        description,
    })
}

/// Makes `a` and `b` stored alike (both streamed when either is), so that
/// one can follow the other.
fn same_storage(a: &mut Dataset, b: &mut Dataset) {
    let (side, crop) = match (a.streamed, b.streamed) {
        (Some(crop), None) => (a.side, crop),
        (None, Some(crop)) => (b.side, crop),
        _ => return,
    };
    for ds in [a, b] {
        if ds.streamed.is_none() {
            let skipped = std::mem::take(&mut ds.skipped);
            *ds = Dataset::streamed(
                side,
                crop,
                std::mem::take(&mut ds.labels),
                std::mem::take(&mut ds.classes),
                std::mem::take(&mut ds.files),
            );
            ds.skipped = skipped;
        }
    }
}

/// The error for `--test-split` beside a test set of the dataset's own.
fn refuse_test_split(path: &Path, split: &SplitOptions, test_set: &str) -> Result<()> {
    match split.test_split {
        None => Ok(()),
        Some(f) => Err(Error::Usage(format!(
            "--test-split {f}: {} has a test set of its own ({test_set}). Drop --test-split",
            path.display()
        ))),
    }
}

/// The error for a dataset without a test set of its own and no
/// `--test-split`.
fn no_test_set(path: &Path, what: &str) -> Error {
    Error::data(
        path,
        format!(
            "{what}, so it has no separate test split: training would score the model on its \
             own training images. Nothing was run. HINT: pass --test-split 0.2 to hold out a \
             fifth of the images (drawn with --seed) for the test, or give --data a folder \
             with train/ and test/ (each holding the class folders), or a folder of CIFAR-10 \
             batches (data_batch_1..5.bin and test_batch.bin); `extract` and `evaluate` take a \
             single file or folder"
        ),
    )
}
