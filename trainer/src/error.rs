//! Errors of the trainer: reading datasets, downloading, writing files, and
//! whatever the engine reports.
//!
//! Every message says what was wrong, where (the file, the URL, the record),
//! and what to do about it, so the message alone is enough to fix the run:
//! `data/test_batch.bin is 30000 bytes, not a multiple of 3073 ...`.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong in the trainer.
#[derive(Debug)]
pub enum Error {
    /// A file or directory could not be read or written.
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What we were doing with it ("reading", "creating", ...).
        action: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A dataset file or folder that is not what its format requires.
    Data {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong with it and what to do.
        msg: String,
    },
    /// A download that failed or could not be verified.
    Download {
        /// The URL we tried to fetch.
        url: String,
        /// Why it failed, and where to put a manually downloaded copy.
        msg: String,
    },
    /// A .npy file that is malformed, or a write that does not fit its shape.
    Npy {
        /// The .npy file involved.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Arguments that do not fit together (checked after parsing).
    Usage(String),
    /// A run stopped by SIGINT, SIGTERM or SIGHUP before it finished: what
    /// was saved and what was not (`trainer` exits with status 130).
    Interrupted(String),
    /// A command whose engine parts are not written yet.
    NotYetAvailable {
        /// The subcommand, e.g. `train`.
        command: &'static str,
        /// Which missing part it waits for.
        needs: String,
    },
    /// An error from the engine (shapes, dtypes, devices).
    Engine(engine::Error),
    /// An error from a model (input size, layer names, weights that do not fit).
    Model(models::Error),
    /// An error reading, converting or writing a weights file.
    Weights(weights::Error),
}

impl Error {
    /// An I/O error on `path` while doing `action`.
    pub fn io(path: impl AsRef<Path>, action: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            action,
            source,
        }
    }
    /// A dataset problem in `path`.
    pub fn data(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Data {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
    /// A download problem for `url`.
    pub fn download(url: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Download {
            url: url.into(),
            msg: msg.into(),
        }
    }
    /// A .npy problem in `path`.
    pub fn npy(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Npy {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                path,
                action,
                source,
            } => write!(f, "error {action} {}: {source}", path.display()),
            Error::Data { path, msg } => write!(f, "{}: {msg}", path.display()),
            Error::Download { url, msg } => write!(f, "download of {url} failed: {msg}"),
            Error::Npy { path, msg } => write!(f, "{}: {msg}", path.display()),
            Error::Usage(msg) => write!(f, "{msg}"),
            Error::Interrupted(msg) => write!(f, "interrupted: {msg}"),
            Error::NotYetAvailable { command, needs } => write!(
                f,
                "`{command}` is not yet available: it needs {needs}, which is not written yet"
            ),
            Error::Engine(e) => write!(f, "{e}"),
            Error::Model(e) => write!(f, "{e}"),
            Error::Weights(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Engine(e) => Some(e),
            Error::Model(e) => Some(e),
            Error::Weights(e) => Some(e),
            _ => None,
        }
    }
}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Self {
        Error::Engine(e)
    }
}

impl From<models::Error> for Error {
    fn from(e: models::Error) -> Self {
        Error::Model(e)
    }
}

impl From<weights::Error> for Error {
    fn from(e: weights::Error) -> Self {
        Error::Weights(e)
    }
}

/// The trainer's result type.
pub type Result<T> = std::result::Result<T, Error>;
