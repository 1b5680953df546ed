//! The datasets `--dataset` names: CIFAR-10 (the default, its binary
//! batches read by [`crate::data::cifar_binary`]) and the two of the course
//! material, each one published archive holding one folder of class folders,
//! downloaded, verified and unpacked into the cache by [`crate::download`],
//! then read as an image folder like any `--data` folder.
//!
//! ```text
//! --dataset flowers ─▶ CACHE/flower_photos.tgz (size + sha256) ─▶ CACHE/flowers/flower_photos/<class>/*.jpg
//! ```
//!
//! Where the table's numbers come from: the URLs, sizes and sha256 are
//! TensorFlow Datasets' own, copied from the `tensorflow-datasets` 4.9.10
//! wheel on PyPI (`tensorflow_datasets-4.9.10-py3-none-any.whl`):
//! `tensorflow_datasets/datasets/tf_flowers/checksums.tsv` for the flowers and
//! `tensorflow_datasets/url_checksums/cats_vs_dogs.txt` for cats vs dogs (each
//! line: URL, size in bytes, sha256, file name). The photo and class counts
//! are those the issue gives (TFDS's `tf_flowers` and `cats_vs_dogs`).

use crate::download::{self, Check, FetchOptions};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The datasets `--dataset` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DatasetChoice {
    /// CIFAR-10, the official binary batches (what runs without --data).
    Cifar10,
    /// TensorFlow's flower photos: 3,670 photos of 5 classes (229 MB).
    Flowers,
    /// Microsoft's PetImages (Kaggle's cats vs dogs): 25,000 photos of 2
    /// classes (825 MB); some files do not decode.
    CatsVsDogs,
}

impl DatasetChoice {
    /// The archive the dataset is published as; None for CIFAR-10, whose
    /// reader fetches it itself ([`download::ensure_cifar10`]).
    pub fn archive(self) -> Option<&'static PublishedArchive<'static>> {
        match self {
            DatasetChoice::Cifar10 => None,
            DatasetChoice::Flowers => Some(&FLOWERS),
            DatasetChoice::CatsVsDogs => Some(&CATS_VS_DOGS),
        }
    }
}

/// How an archive is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// gzip-compressed tar ([`download::unpack_tar_gz`]).
    TarGz,
    /// zip ([`download::unpack_zip`]).
    Zip,
}

/// A dataset published as one archive that holds one folder of class folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedArchive<'a> {
    /// The `--dataset` name, and the folder in the cache it is unpacked into.
    pub name: &'a str,
    /// What it is, for messages.
    pub what: &'a str,
    /// Where it is published.
    pub url: &'a str,
    /// The archive's file name in the cache.
    pub file_name: &'a str,
    /// The published size in bytes.
    pub size: u64,
    /// The published sha256, lowercase hex.
    pub sha256: &'a str,
    /// How it is packed.
    pub kind: ArchiveKind,
    /// The folder of class folders inside the archive.
    pub root: &'a str,
}

/// TensorFlow's flower photos (TFDS `tf_flowers`): `flower_photos/` holds
/// the class folders `daisy`, `dandelion`, `roses`, `sunflowers`, `tulips`
/// and a `LICENSE.txt` that readers pass over. Published over plain HTTP;
/// the sha256 is what makes it trustworthy.
pub const FLOWERS: PublishedArchive<'static> = PublishedArchive {
    name: "flowers",
    what: "TensorFlow's flower photos, 3,670 photos of 5 classes",
    url: "http://download.tensorflow.org/example_images/flower_photos.tgz",
    file_name: "flower_photos.tgz",
    size: 228813984,
    sha256: "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c",
    kind: ArchiveKind::TarGz,
    root: "flower_photos",
};

/// Microsoft's PetImages (TFDS `cats_vs_dogs`): `PetImages/Cat` and
/// `PetImages/Dog`, with some files that do not decode and `Thumbs.db` files.
pub const CATS_VS_DOGS: PublishedArchive<'static> = PublishedArchive {
    name: "cats-vs-dogs",
    what: "Microsoft's PetImages (cats vs dogs), 25,000 photos of 2 classes",
    url: "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip",
    file_name: "kagglecatsanddogs_5340.zip",
    size: 824887076,
    sha256: "b7974bd00a84a99921f36ee4403f089853777b5ae8d151c76a86e64900334af9",
    kind: ArchiveKind::Zip,
    root: "PetImages",
};

/// The `--data` folder that `--dataset` stands for, downloaded and unpacked
/// into `cache` when missing; None for CIFAR-10, which is read as when no
/// `--data` is given.
pub fn data_folder(
    choice: DatasetChoice,
    cache: &Path,
    opts: &FetchOptions,
) -> Result<Option<PathBuf>> {
    choice
        .archive()
        .map(|archive| ensure_archive(archive, cache, opts))
        .transpose()
}

/// `CACHE/NAME/ROOT`, the folder of class folders of `archive`: there
/// already, or downloaded to `CACHE/FILE_NAME`, verified by size and sha256,
/// unpacked atomically into `CACHE/NAME` and the archive deleted. A second
/// call finds the folder and makes no request.
pub fn ensure_archive(
    archive: &PublishedArchive,
    cache: &Path,
    opts: &FetchOptions,
) -> Result<PathBuf> {
    let unpacked = cache.join(archive.name);
    let root = unpacked.join(archive.root);
    if root.is_dir() {
        return Ok(root);
    }
    if unpacked.exists() {
        return Err(Error::data(
            &unpacked,
            format!(
                "holds no {} folder, so it is not {} as unpacked by thaw; delete it to have the \
                 dataset downloaded and unpacked again",
                archive.root, archive.what
            ),
        ));
    }
    let file = cache.join(archive.file_name);
    let check = Check::Sha256 {
        size: archive.size,
        sha256: archive.sha256,
    };
    let hint = format!(
        "To proceed offline, fetch {} ({}) yourself from {} ({}) and put it at {} (it is checked \
         and unpacked on the next run), or unpack it anywhere and pass --data DIR/{} instead of \
         --dataset",
        archive.file_name,
        archive.what,
        archive.url,
        check.describe(),
        file.display(),
        archive.root
    );
    download::ensure_file(archive.url, &check, &file, opts, &hint)?;
    let unpacking = match archive.kind {
        ArchiveKind::TarGz => download::unpack_tar_gz(&file, &unpacked),
        ArchiveKind::Zip => download::unpack_zip(&file, &unpacked),
    };
    if let Err(e) = unpacking {
        // Another run sharing the cache may have unpacked it meanwhile.
        return if root.is_dir() { Ok(root) } else { Err(e) };
    }
    if !root.is_dir() {
        let _ = std::fs::remove_dir_all(&unpacked);
        return Err(Error::data(
            &file,
            format!(
                "passed its checksum but holds no {} folder: thaw's dataset table does not \
                 match the archive (please report it). Nothing was kept unpacked; unpack the \
                 archive yourself and pass --data with its folder of class folders",
                archive.root
            ),
        ));
    }
    let _ = std::fs::remove_file(&file);
    Ok(root)
}
