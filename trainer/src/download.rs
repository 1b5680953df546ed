//! Verified downloads into the user's cache directory: the CIFAR-10 binary
//! archive and the Keras ImageNet weights, fetched once when missing.
//!
//! A download goes to a temporary file beside its destination while its md5
//! is computed on the fly; only a complete transfer whose md5 equals the
//! published one is renamed into place. A wrong checksum, a connection closed
//! before `Content-Length` bytes arrived, or any other failure deletes the
//! temporary file, so a file at a destination path is always complete and
//! verified. Without a network the connection fails within seconds (connect
//! timeout) and the error says which URL to fetch by hand and where to put it.
//!
//! Archives (`.tar.gz`) are unpacked into a temporary folder that is renamed
//! into place once complete, so a half-unpacked dataset is never used.
//!
//! Cache directory: `$THAW_CACHE_DIR`, else `$XDG_CACHE_HOME/thaw`, else
//! `~/.cache/thaw`.

use crate::data::cifar_binary;
use crate::error::{Error, Result};
use crate::progress::{Progress, Unit};
use md5::{Digest, Md5};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A file published on the web, with its checksum.
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

/// Keras's ImageNet VGG16 weights without the classifier top (58,889,256 bytes).
pub const VGG16_NOTOP: KnownFile = KnownFile {
    file_name: "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    url: "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    md5: "6d6bbae143d832006294945121d1f1fc",
    what: "Keras's ImageNet weights for VGG16 (no top)",
};

/// Keras's ImageNet ResNet50 weights without the classifier top.
pub const RESNET50_NOTOP: KnownFile = KnownFile {
    file_name: "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    url: "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    md5: "4d473c1dd8becc155b73f8504c6f6626",
    what: "Keras's ImageNet weights for ResNet50 (no top)",
};

/// Keras's ImageNet VGG16 weights with the 1000-class top.
pub const VGG16_TOP: KnownFile = KnownFile {
    file_name: "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    url: "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    md5: "64373286793e3c8b2b4e3219cbf3544b",
    what: "Keras's ImageNet weights for VGG16 (with top)",
};

/// Keras's ImageNet ResNet50 weights with the 1000-class top.
pub const RESNET50_TOP: KnownFile = KnownFile {
    file_name: "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
    url: "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
    md5: "2cb95161c43110f7111970584f804107",
    what: "Keras's ImageNet weights for ResNet50 (with top)",
};

/// Every file the trainer knows how to fetch.
pub const KNOWN_FILES: [KnownFile; 5] = [
    CIFAR10_BINARY,
    VGG16_NOTOP,
    RESNET50_NOTOP,
    VGG16_TOP,
    RESNET50_TOP,
];

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
    let mut f = File::open(path).map_err(|e| Error::io(path, "reading", e))?;
    let mut hasher = Md5::new();
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
    Ok(hex(&hasher.finalize()))
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

/// Downloads `url` to `dest`, checking its md5 against `md5` before the file
/// is renamed into place. `hint` ends every error message: it should say what
/// to do by hand (which file, where to put it). Overwrites `dest` on success.
pub fn fetch(url: &str, md5: &str, dest: &Path, opts: &FetchOptions, hint: &str) -> Result<()> {
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
    let mut hasher = Md5::new();
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
    let got = hex(&hasher.finalize());
    if !got.eq_ignore_ascii_case(md5) {
        return Err(fail(format!(
            "md5 of the {received} bytes received is {got}, expected {md5}; the file was \
             deleted, nothing was saved"
        )));
    }
    file.sync_all().map_err(|e| Error::io(&tmp, "writing", e))?;
    drop(file);
    std::fs::rename(&tmp, dest).map_err(|e| Error::io(dest, "renaming into place", e))?;
    let mut guard = guard;
    guard.armed = false;
    Ok(())
}

/// What to do by hand when `file` cannot be downloaded to `dest`.
pub fn manual_hint(file: &KnownFile, dest: &Path) -> String {
    format!(
        "To proceed without this download, fetch {} ({}) yourself from {} (md5 {}) and put \
         it at {}",
        file.file_name,
        file.what,
        file.url,
        file.md5,
        dest.display()
    )
}

/// `dest` if it is there, else downloaded from `url` and verified against
/// `md5`. A file already at `dest` that someone put there by hand is checked
/// too (md5), so a bad copy is reported, not used.
pub fn ensure_file(
    url: &str,
    md5: &str,
    dest: &Path,
    opts: &FetchOptions,
    hint: &str,
) -> Result<PathBuf> {
    if dest.is_file() {
        let got = md5_file(dest)?;
        if !got.eq_ignore_ascii_case(md5) {
            return Err(Error::download(
                url,
                format!(
                    "the file already at {} has md5 {got}, expected {md5}: it is incomplete or \
                     a different file. Delete it to have it downloaded again. {hint}",
                    dest.display()
                ),
            ));
        }
        return Ok(dest.to_path_buf());
    }
    fetch(url, md5, dest, opts, hint)?;
    Ok(dest.to_path_buf())
}

/// Fetches a [`KnownFile`] into `cache` (see [`ensure_file`]).
pub fn ensure_known(file: &KnownFile, cache: &Path, opts: &FetchOptions) -> Result<PathBuf> {
    let dest = cache.join(file.file_name);
    ensure_file(file.url, file.md5, &dest, opts, &manual_hint(file, &dest))
}

/// Unpacks the `.tar.gz` at `archive` so that its contents end up in
/// `dest_dir`, atomically: into a temporary folder beside it first, renamed
/// into place when complete. Entries that would land outside the folder
/// (absolute paths, `..`) are refused by the `tar` crate.
pub fn unpack_tar_gz(archive: &Path, dest_dir: &Path) -> Result<()> {
    if let Some(parent) = dest_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, "creating", e))?;
    }
    let tmp = temp_beside(dest_dir, "unpacking");
    let mut guard = TempGuard {
        path: tmp.clone(),
        armed: true,
    };
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, "creating", e))?;
    let f = File::open(archive).map_err(|e| Error::io(archive, "reading", e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
    tar.unpack(&tmp).map_err(|e| {
        Error::data(
            archive,
            format!("cannot be unpacked as .tar.gz: {e}; delete it to have it downloaded again"),
        )
    })?;
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

/// [`ensure_cifar10`] from another URL and checksum (a mirror, or a test
/// server). The archive is deleted once unpacked.
pub fn ensure_cifar10_from(
    url: &str,
    md5: &str,
    cache: &Path,
    opts: &FetchOptions,
) -> Result<PathBuf> {
    let unpacked = cache.join("cifar-10");
    let batches = unpacked.join(cifar_binary::ARCHIVE_DIR);
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
    ensure_file(url, md5, &archive, opts, &hint)?;
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
