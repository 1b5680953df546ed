//! Errors of the models crate: a model was asked something it cannot do
//! (wrong input shape, unknown layer name, include_top at the wrong size), an
//! op failed inside a layer, or a weights file does not fit the model.

use std::fmt;

/// What went wrong while building, running or loading a model.
#[derive(Debug)]
pub enum Error {
    /// A model or layer was used wrongly: the message names the model or
    /// layer, what it got, what it expects and what to do.
    Model(String),
    /// An engine op failed inside a named layer.
    Layer {
        /// The Keras layer name (`block1_conv1`).
        layer: String,
        /// The op's own error, which names the op and the shapes.
        source: engine::Error,
    },
    /// An engine op failed outside any layer (preprocessing, pooling helpers).
    Engine(engine::Error),
    /// A weights file does not fit the model (or could not be read).
    Weights(weights::Error),
}

impl Error {
    pub(crate) fn model(msg: impl Into<String>) -> Error {
        Error::Model(msg.into())
    }

    /// Wraps an op's error with the name of the layer it happened in.
    pub(crate) fn in_layer(layer: &str) -> impl FnOnce(engine::Error) -> Error + '_ {
        move |source| Error::Layer {
            layer: layer.to_string(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Model(msg) => write!(f, "{msg}"),
            Error::Layer { layer, source } => write!(f, "layer {layer}: {source}"),
            Error::Engine(e) => write!(f, "{e}"),
            Error::Weights(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Model(_) => None,
            Error::Layer { source, .. } => Some(source),
            Error::Engine(e) => Some(e),
            Error::Weights(e) => Some(e),
        }
    }
}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Error {
        Error::Engine(e)
    }
}

impl From<weights::Error> for Error {
    fn from(e: weights::Error) -> Error {
        Error::Weights(e)
    }
}

/// The models crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
