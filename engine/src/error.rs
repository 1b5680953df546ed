//! Errors the engine returns instead of panicking.
//!
//! Every error names the op (or component) that found the problem and says
//! what was wrong, with the shapes involved, so the message alone tells the
//! user where to look: `conv2d: input has rank 3 ([32, 32, 3]), expected NHWC rank 4`.

use std::fmt;

/// What went wrong, and in which op.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Shapes or ranks that do not fit together.
    Shape {
        /// The op (or component) that found the problem.
        op: &'static str,
        /// What was wrong, with the shapes or values involved.
        msg: String,
    },
    /// Tensors of different element types given to one op.
    DType {
        /// The op (or component) that found the problem.
        op: &'static str,
        /// What was wrong, with the shapes or values involved.
        msg: String,
    },
    /// An argument outside its allowed range (stride 0, negative rate, ...).
    Invalid {
        /// The op (or component) that found the problem.
        op: &'static str,
        /// What was wrong, with the shapes or values involved.
        msg: String,
    },
    /// NaN or infinity where a finite value is required.
    NonFinite {
        /// The op (or component) that found the problem.
        op: &'static str,
        /// What was wrong, with the shapes or values involved.
        msg: String,
    },
    /// The op exists but not for this device or dtype.
    Unsupported {
        /// The op (or component) that found the problem.
        op: &'static str,
        /// What was wrong, with the shapes or values involved.
        msg: String,
    },
    /// Failure from the CUDA driver, cuBLAS, cuDNN or NVRTC.
    Cuda(String),
}

impl Error {
    /// A [`Error::Shape`] from `op`.
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
    /// A [`Error::DType`] from `op`.
    pub fn dtype(op: &'static str, msg: impl Into<String>) -> Self {
        Error::DType {
            op,
            msg: msg.into(),
        }
    }
    /// An [`Error::Invalid`] from `op`.
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            msg: msg.into(),
        }
    }
    /// A [`Error::NonFinite`] from `op`.
    pub fn non_finite(op: &'static str, msg: impl Into<String>) -> Self {
        Error::NonFinite {
            op,
            msg: msg.into(),
        }
    }
    /// An [`Error::Unsupported`] from `op`.
    pub fn unsupported(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Unsupported {
            op,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { op, msg } => write!(f, "{op}: shape error: {msg}"),
            Error::DType { op, msg } => write!(f, "{op}: dtype error: {msg}"),
            Error::Invalid { op, msg } => write!(f, "{op}: invalid argument: {msg}"),
            Error::NonFinite { op, msg } => write!(f, "{op}: non-finite value: {msg}"),
            Error::Unsupported { op, msg } => write!(f, "{op}: unsupported: {msg}"),
            Error::Cuda(msg) => write!(f, "cuda: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, Error>;
