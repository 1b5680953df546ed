//! Errors of the weights crate: every message says which file or tensor was
//! wrong, how, and what to do about it.

use std::fmt;
use std::path::Path;

/// What went wrong while reading, writing or checking weights.
#[derive(Debug)]
pub enum Error {
    /// The operating system refused a read or write (missing file, no permission, disk full).
    Io {
        /// What we were doing, with the path: "cannot create temporary file /x/.w.safetensors.tmp".
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not what it claims to be (not HDF5, truncated, bad safetensors header).
    Corrupt(String),
    /// The file is well formed but does not fit the model (missing, extra, wrong shape or dtype).
    Mismatch(String),
    /// The file asks for something a safe reader never does (a PyTorch
    /// pickle naming code, or a tensor type thaw does not read).
    Refused(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, msg: impl fmt::Display) -> Error {
        Error::Corrupt(format!("{}: {msg}", path.display()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, source } => write!(f, "weights: {what}: {source}"),
            Error::Corrupt(msg) => write!(f, "weights: corrupt file: {msg}"),
            Error::Mismatch(msg) => write!(f, "weights: {msg}"),
            Error::Refused(msg) => write!(f, "weights: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The weights crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
