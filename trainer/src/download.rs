//! Verified downloads into the user's cache directory: the CIFAR-10 binary
//! archive, the Keras ImageNet weights and the course datasets of
//! [`crate::datasets`], fetched once when missing.
//!
//! A download goes to a temporary file beside its destination while its
//! checksum is computed on the fly; only a complete transfer that passes its
//! [`Check`] is renamed into place: an md5 equal to the published one, a
//! size and sha256 equal to the published ones, or, for files
//! published without a checksum (Keras's MobileNet weights), a check of the
//! content itself (for weights: every tensor of the model present with its
//! shape, every value finite). The second is weaker: it proves the file is
//! whole and usable, not that it is the publisher's bytes. A failed check, a
//! connection closed before `Content-Length` bytes arrived, or any other
//! failure deletes the temporary file, so a file at a destination path is
//! always complete and verified. Without a network the connection fails within seconds (connect
//! timeout) and the error says which URL to fetch by hand and where to put it.
//!
//! Archives (`.tar.gz`, `.zip`) are unpacked into a temporary folder that is
//! renamed into place once complete, so a half-unpacked dataset is never used.
//! Zip entries may be stored or compressed by deflate, bzip2 or LZMA: the
//! methods of Python's `zipfile`, with which TensorFlow Datasets unpacks its
//! zip archives ([`ZIP_METHODS`]); any other method, or an encrypted entry,
//! is an error that names it before anything is unpacked.
//!
//! Cache directory: `$THAW_CACHE_DIR`, else `$XDG_CACHE_HOME/thaw`, else
//! `~/.cache/thaw`.

use crate::data::cifar_binary;
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use md5::{Digest, Md5};
use models::registry::{WeightsCheck, WeightsFile};
use sha2::Sha256;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A file published on the web with its md5 (the datasets; model weights
/// are described by their registration, [`models::registry::WeightsFile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownFile {
    /// File name in the cache directory.
    pub file_name: &'static str,
    /// Where it is published.
    pub url: &'static str,
    /// Its md5, lowercase hex, as published.
    pub md5: &'static str,
    /// What it is, for messages.
    pub what: &'static str,
}

/// The official CIFAR-10 binary version (about 170 MB).
pub const CIFAR10_BINARY: KnownFile = KnownFile {
    file_name: "cifar-10-binary.tar.gz",
    url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    md5: "c32a1d4ab5d03f1284b67883e8d87530",
    what: "the CIFAR-10 dataset, binary version",
};

/// The cache directory: `$THAW_CACHE_DIR`, else `$XDG_CACHE_HOME/thaw`,
/// else `$HOME/.cache/thaw` (not created here).
pub fn cache_dir() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("THAW_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("thaw"));
    }
    if let Some(home) = var("HOME") {
        return Ok(PathBuf::from(home).join(".cache").join("thaw"));
    }
    Err(Error::Usage(
        "no cache directory: none of THAW_CACHE_DIR, XDG_CACHE_HOME, HOME is set; \
         set THAW_CACHE_DIR to a writable folder"
            .into(),
    ))
}

/// Network limits of a download.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Time allowed to resolve the host and to connect (including TLS).
    pub connect_timeout: Duration,
    /// Time allowed for the response headers to arrive after the request.
    pub response_timeout: Duration,
    /// Longest wait for any single read of the body (a stalled transfer).
    pub read_timeout: Duration,
    /// Show a progress bar (or plain progress lines off a terminal).
    pub progress: bool,
}

impl Default for FetchOptions {
    /// 5 s to connect, 30 s for the response, 60 s per read, with progress.
    fn default() -> Self {
        FetchOptions {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            progress: true,
        }
    }
}

/// The md5 of a file, lowercase hex.
pub fn md5_file(path: &Path) -> Result<String> {
    hash_file(path, Hasher::Md5(Md5::new()))
}

/// The sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    hash_file(path, Hasher::Sha256(Sha256::new()))
}

fn hash_file(path: &Path, mut hasher: Hasher) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(path, "reading", e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(path, "reading", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.hex())
}

/// The running checksum of a file, of the kind its [`Check`] compares.
enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    /// The checksum, lowercase hex.
    fn hex(self) -> String {
        match self {
            Hasher::Md5(h) => hex(&h.finalize()),
            Hasher::Sha256(h) => hex(&h.finalize()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A path beside `dest` for work in progress: `.NAME.partial-PID-K`
/// (hidden, never mistaken for the finished file).
fn temp_beside(dest: &Path, kind: &str) -> PathBuf {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let k = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dest.with_file_name(format!(".{name}.{kind}-{}-{k}", std::process::id()))
}

/// Deletes a temporary file or folder when dropped, unless disarmed.
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            if self.path.is_dir() {
                let _ = std::fs::remove_dir_all(&self.path);
            } else {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// How a downloaded file is verified before it is used.
#[derive(Clone, Copy)]
pub enum Check<'a> {
    /// Its md5 (hex) must equal this published one.
    Md5(&'a str),
    /// Its size in bytes and its sha256 (hex) must equal these published ones.
    Sha256 {
        /// The published size in bytes.
        size: u64,
        /// The published sha256, hex.
        sha256: &'a str,
    },
    /// No checksum is published: this function reads the complete file at
    /// the path it is given and says what is wrong with it, if anything.
    Content(&'a dyn Fn(&Path) -> Result<()>),
}

impl Check<'_> {
    /// The running checksum a download is checked with (md5 when the check
    /// reads the content: it is computed and not used).
    fn hasher(&self) -> Hasher {
        match self {
            Check::Sha256 { .. } => Hasher::Sha256(Sha256::new()),
            Check::Md5(_) | Check::Content(_) => Hasher::Md5(Md5::new()),
        }
    }

    /// The published size, where there is one.
    fn size(&self) -> Option<u64> {
        match self {
            Check::Sha256 { size, .. } => Some(*size),
            Check::Md5(_) | Check::Content(_) => None,
        }
    }

    /// Checks the file at `path` (of `bytes` bytes, checksum `got` from
    /// [`Check::hasher`]); the error says what was found.
    fn verify(&self, path: &Path, bytes: u64, got: &str) -> std::result::Result<(), String> {
        match self {
            Check::Md5(md5) if got.eq_ignore_ascii_case(md5) => Ok(()),
            Check::Md5(md5) => Err(format!(
                "md5 of the {bytes} bytes is {got}, expected {md5}"
            )),
            Check::Sha256 { size, .. } if bytes != *size => Err(format!(
                "the file has {bytes} bytes, the published size is {size}"
            )),
            Check::Sha256 { sha256, .. } if got.eq_ignore_ascii_case(sha256) => Ok(()),
            Check::Sha256 { sha256, .. } => Err(format!(
                "sha256 of the {bytes} bytes is {got}, expected {sha256}"
            )),
            Check::Content(check) => check(path).map_err(|e| {
                format!("the {bytes} bytes (no checksum is published) do not pass the content check: {e}")
            }),
        }
    }

    /// How the file is checked, for the manual hint.
    pub fn describe(&self) -> String {
        match self {
            Check::Md5(md5) => format!("md5 {md5}"),
            Check::Sha256 { size, sha256 } => format!("{size} bytes, sha256 {sha256}"),
            Check::Content(_) => "no published checksum: it is checked by its content".into(),
        }
    }
}

/// Downloads `url` to `dest`, verifying it with `check` before the file is
/// renamed into place. `hint` ends every error message: it should say what
/// to do by hand (which file, where to put it). Overwrites `dest` on success.
pub fn fetch(url: &str, check: &Check, dest: &Path, opts: &FetchOptions, hint: &str) -> Result<()> {
    let fail = |msg: String| Error::download(url, format!("{msg}. {hint}"));
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, "creating", e))?;
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_resolve(Some(opts.connect_timeout))
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_recv_response(Some(opts.response_timeout))
        .timeout_per_read(Some(opts.read_timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| {
        let why = match &e {
            ureq::Error::Timeout(t) => format!("timed out ({t})"),
            ureq::Error::HostNotFound => "host not found (no network or no DNS?)".to_string(),
            other => other.to_string(),
        };
        fail(format!("cannot reach the server: {why}"))
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("the server answered HTTP {status}")));
    }
    let expected_len: Option<u64> = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    if let (Some(announced), Some(size)) = (expected_len, check.size()) {
        if announced != size {
            return Err(fail(format!(
                "the server announces {announced} bytes, the published size is {size}; \
                 nothing was downloaded"
            )));
        }
    }

    let tmp = temp_beside(dest, "partial");
    let guard = TempGuard {
        path: tmp.clone(),
        armed: true,
    };
    let mut file = File::create(&tmp).map_err(|e| Error::io(&tmp, "creating", e))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| url.to_string());
    let mut progress = opts
        .progress
        .then(|| Progress::new(format!("downloading {name}"), expected_len, Unit::Bytes));
    let mut reader = response.into_body().into_reader();
    let mut hasher = check.hasher();
    let mut received: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(fail(format!(
                    "the transfer broke off after {received} bytes{}: {e}; nothing was saved",
                    expected_len.map(|t| format!(" of {t}")).unwrap_or_default()
                )))
            }
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| Error::io(&tmp, "writing", e))?;
        received += n as u64;
        if let Some(p) = progress.as_mut() {
            p.inc(n as u64);
        }
    }
    if let Some(t) = expected_len {
        if received != t {
            return Err(fail(format!(
                "the transfer ended after {received} of {t} bytes (connection closed early); \
                 nothing was saved"
            )));
        }
    }
    if let Some(p) = progress.as_mut() {
        p.finish();
    }
    file.sync_all().map_err(|e| Error::io(&tmp, "writing", e))?;
    drop(file);
    let got = hasher.hex();
    if let Err(why) = check.verify(&tmp, received, &got) {
        return Err(fail(format!(
            "{why}; the file was deleted, nothing was saved"
        )));
    }
    std::fs::rename(&tmp, dest).map_err(|e| Error::io(dest, "renaming into place", e))?;
    let mut guard = guard;
    guard.armed = false;
    Ok(())
}

/// What to do by hand when `file` (checked by `check`) cannot be downloaded to `dest`.
pub fn manual_hint(file_name: &str, what: &str, url: &str, check: &Check, dest: &Path) -> String {
    format!(
        "To proceed without this download, fetch {file_name} ({what}) yourself from {url} ({}) \
         and put it at {}",
        check.describe(),
        dest.display()
    )
}

/// `dest` if it is there, else downloaded from `url`; either way verified
/// by `check`, so a bad copy someone put there by hand is reported, not used.
pub fn ensure_file(
    url: &str,
    check: &Check,
    dest: &Path,
    opts: &FetchOptions,
    hint: &str,
) -> Result<PathBuf> {
    if dest.is_file() {
        let bytes = std::fs::metadata(dest)
            .map_err(|e| Error::io(dest, "reading", e))?
            .len();
        let got = match check {
            Check::Md5(_) => md5_file(dest)?,
            Check::Sha256 { size, .. } if bytes != *size => String::new(),
            Check::Sha256 { .. } => sha256_file(dest)?,
            Check::Content(_) => String::new(),
        };
        if let Err(why) = check.verify(dest, bytes, &got) {
            return Err(Error::download(
                url,
                format!(
                    "the file already at {}: {why}; it is incomplete or a different file. \
                     Delete it to have it downloaded again. {hint}",
                    dest.display()
                ),
            ));
        }
        return Ok(dest.to_path_buf());
    }
    fetch(url, check, dest, opts, hint)?;
    Ok(dest.to_path_buf())
}

/// A model's published weights file (its registration's
/// [`WeightsFile`]) in `cache`, fetched when missing, checked by its md5 or,
/// when none is published, by `layout` (see [`Check::Content`]).
pub fn ensure_weights(
    file: &WeightsFile,
    cache: &Path,
    opts: &FetchOptions,
    layout: &dyn Fn(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dest = cache.join(&file.file_name);
    let check = match file.check {
        WeightsCheck::Md5(md5) => Check::Md5(md5),
        WeightsCheck::Layout => Check::Content(layout),
    };
    let hint = manual_hint(&file.file_name, &file.what, &file.url, &check, &dest);
    ensure_file(&file.url, &check, &dest, opts, &hint)
}

/// Unpacks the `.tar.gz` at `archive` so that its contents end up in
/// `dest_dir`, atomically: into a temporary folder renamed into place once
/// complete. Entries that would land outside the folder (absolute paths,
/// `..`) are not unpacked by the `tar` crate.
pub fn unpack_tar_gz(archive: &Path, dest_dir: &Path) -> Result<()> {
    unpack_atomically(dest_dir, |tmp| {
        let f = File::open(archive).map_err(|e| Error::io(archive, "reading", e))?;
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(f)));
        tar.unpack(tmp).map_err(|e| {
            Error::data(
                archive,
                format!(
                    "cannot be unpacked as .tar.gz: {e}; delete it to have it downloaded again"
                ),
            )
        })
    })
}

/// The compression methods [`unpack_zip`] reads: exactly those of Python's
/// `zipfile` (stored, deflate, bzip2, LZMA), with which TensorFlow Datasets
/// unpacks its zip archives, so every archive TFDS reads unpacks here.
pub const ZIP_METHODS: [zip::CompressionMethod; 4] = [
    zip::CompressionMethod::STORE,
    zip::CompressionMethod::DEFLATE,
    zip::CompressionMethod::BZIP2,
    zip::CompressionMethod::LZMA,
];

/// Unpacks the `.zip` at `archive` so that its contents end up in
/// `dest_dir`, atomically: into a temporary folder renamed into place once
/// complete. Every entry is checked before anything is unpacked: one that
/// would land outside the folder (an absolute path, a drive letter, a `..`),
/// is a symbolic link, is encrypted or is compressed by a method outside
/// [`ZIP_METHODS`] is refused, and then nothing is unpacked. Each file's
/// CRC-32 is checked as it is read (by the `zip` crate), so damaged data is
/// an error, never a wrong file.
pub fn unpack_zip(archive: &Path, dest_dir: &Path) -> Result<()> {
    let bad_zip = |why: String| {
        Error::data(
            archive,
            format!(
                "cannot be unpacked as .zip: {why}; nothing was unpacked. Delete it to have it \
                 downloaded again"
            ),
        )
    };
    let f = File::open(archive).map_err(|e| Error::io(archive, "reading", e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(f)).map_err(|e| bad_zip(e.to_string()))?;
    let mut entries = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let entry = zip.by_index_data(i).map_err(|e| bad_zip(e.to_string()))?;
        let name = entry
            .name()
            .map_err(|e| bad_zip(e.to_string()))?
            .into_owned();
        let Some(relative) = zip_entry_path(&name) else {
            return Err(bad_zip(format!(
                "entry {name:?} would land outside the folder (an absolute path or `..`)"
            )));
        };
        if entry.is_symlink() {
            return Err(bad_zip(format!("entry {name:?} is a symbolic link")));
        }
        let cannot = |what: String| {
            Error::data(
                archive,
                format!(
                    "entry {name:?} {what}; thaw unpacks zip entries that are stored or \
                     compressed by deflate, bzip2 or LZMA (the methods of Python's zipfile, and \
                     so of TensorFlow Datasets), unencrypted. Nothing was unpacked: unpack the \
                     archive with another tool (7-Zip reads every method) and pass its folder of \
                     class folders with --data"
                ),
            )
        };
        if entry.encrypted() {
            return Err(cannot("is encrypted".into()));
        }
        let method = entry.compression();
        // A folder has no data to decompress, whatever its method field says.
        if !entry.is_dir() && !ZIP_METHODS.contains(&method) {
            // Display names the methods of the zip specification; Debug
            // gives the number of any other.
            return Err(cannot(match method.to_string().as_str() {
                "Unknown" => format!("uses the unknown compression method {method:?}"),
                known => format!("is compressed by {known}"),
            }));
        }
        entries.push((name, relative, entry.is_dir()));
    }
    unpack_atomically(dest_dir, |tmp| {
        for (i, (name, relative, is_dir)) in entries.into_iter().enumerate() {
            let out = tmp.join(relative);
            let folder = if is_dir {
                Some(out.as_path())
            } else {
                out.parent()
            };
            if let Some(folder) = folder {
                std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, "creating", e))?;
            }
            if !is_dir {
                let mut entry = zip.by_index(i).map_err(|e| bad_zip(e.to_string()))?;
                let mut file = File::create(&out).map_err(|e| Error::io(&out, "creating", e))?;
                std::io::copy(&mut entry, &mut file).map_err(|e| {
                    bad_zip(format!("entry {name:?} cannot be read or written: {e}"))
                })?;
            }
        }
        Ok(())
    })
}

/// The relative path a zip entry's name stands for, or None when it would
/// land outside the folder it is unpacked into: an absolute path, a drive
/// letter (`C:`) or a `..` component. Both `/` and `\` separate folders, as
/// archives made on Windows may use either.
fn zip_entry_path(name: &str) -> Option<PathBuf> {
    if name.starts_with(['/', '\\']) || name.get(1..2) == Some(":") || name.contains('\0') {
        return None;
    }
    let mut path = PathBuf::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return None,
            part => path.push(part),
        }
    }
    (!path.as_os_str().is_empty()).then_some(path)
}

/// Runs `unpack` into a temporary folder beside `dest_dir` and renames that
/// folder to `dest_dir` once `unpack` has succeeded; on any error the
/// temporary folder is deleted, so `dest_dir` is either complete or absent.
fn unpack_atomically(dest_dir: &Path, unpack: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(parent) = dest_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, "creating", e))?;
    }
    let tmp = temp_beside(dest_dir, "unpacking");
    let mut guard = TempGuard {
        path: tmp.clone(),
        armed: true,
    };
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, "creating", e))?;
    unpack(&tmp)?;
    std::fs::rename(&tmp, dest_dir).map_err(|e| Error::io(dest_dir, "renaming into place", e))?;
    guard.armed = false;
    Ok(())
}

/// The CIFAR-10 binary batches, downloaded and unpacked into `cache` when
/// missing: returns the folder holding `data_batch_1..5.bin` and
/// `test_batch.bin` (`CACHE/cifar-10/cifar-10-batches-bin`).
pub fn ensure_cifar10(cache: &Path, opts: &FetchOptions) -> Result<PathBuf> {
    ensure_cifar10_from(CIFAR10_BINARY.url, CIFAR10_BINARY.md5, cache, opts)
}

/// Where [`ensure_cifar10`] keeps the unpacked CIFAR-10 batches in `cache`.
pub fn cifar10_batches(cache: &Path) -> PathBuf {
    cache.join("cifar-10").join(cifar_binary::ARCHIVE_DIR)
}

/// [`ensure_cifar10`] from another URL and checksum (a mirror, or a test
/// server). The archive is deleted once unpacked.
pub fn ensure_cifar10_from(
    url: &str,
    md5: &str,
    cache: &Path,
    opts: &FetchOptions,
) -> Result<PathBuf> {
    let batches = cifar10_batches(cache);
    let unpacked = cache.join("cifar-10");
    if batches.is_dir() {
        return Ok(batches);
    }
    let archive = cache.join(CIFAR10_BINARY.file_name);
    let hint = format!(
        "To proceed offline, fetch {} yourself from {url} (md5 {md5}) and put it at {} (it is \
         checked and unpacked on the next run), or unpack it anywhere and pass \
         --data DIR/{}",
        CIFAR10_BINARY.file_name,
        archive.display(),
        cifar_binary::ARCHIVE_DIR
    );
    ensure_file(url, &Check::Md5(md5), &archive, opts, &hint)?;
    unpack_tar_gz(&archive, &unpacked)?;
    if !batches.is_dir() {
        return Err(Error::data(
            &archive,
            format!(
                "unpacked to {} without a {} folder; this is not cifar-10-binary.tar.gz. \
                 Delete both to have it downloaded again",
                unpacked.display(),
                cifar_binary::ARCHIVE_DIR
            ),
        ));
    }
    let _ = std::fs::remove_file(&archive);
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::zip_entry_path;
    use std::path::PathBuf;

    #[test]
    fn zip_entry_names_that_leave_the_folder_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "a/..",
            "/etc/passwd",
            "\\x",
            "C:\\x",
            "C:x",
            "",
            "./",
            "a\0b",
        ] {
            assert_eq!(zip_entry_path(bad), None, "{bad:?}");
        }
        for (name, path) in [
            ("PetImages/Cat/0.jpg", "PetImages/Cat/0.jpg"),
            ("PetImages\\Dog\\1.jpg", "PetImages/Dog/1.jpg"),
            ("./a//b/", "a/b"),
            ("x..y.jpg", "x..y.jpg"),
        ] {
            assert_eq!(zip_entry_path(name), Some(PathBuf::from(path)), "{name:?}");
        }
    }
}
