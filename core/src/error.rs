//! The one error type of `mert-core`: every message names the file, key or field at fault and
//! what was expected, so the CLI, the web page and the C ABI can show it as one line.

use std::path::PathBuf;

/// Errors raised by configs, loaders, the audio front end and the model.
#[derive(Debug, thiserror::Error)]
pub enum MertError {
    /// A config field holds a value the model cannot be built from.
    #[error("config field `{field}`: {message}")]
    Config { field: String, message: String },

    /// A file could not be read at all.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file was read but its content is not what was expected.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },

    /// A checkpoint tensor is missing, unexpected, or has the wrong shape or dtype.
    #[error("{source_name}: tensor `{key}`: {message}")]
    Tensor {
        source_name: String,
        key: String,
        message: String,
    },

    /// A pickle asked to call something other than the tensor rebuilders; it is never run.
    #[error("{}: refused: the pickle calls `{callable}`, which is not a tensor constructor (pickles are parsed, never executed)", path.display())]
    UnsafePickle { path: PathBuf, callable: String },

    /// Audio that cannot be decoded, or holds nothing the model can use.
    #[error("{source_name}: {message}")]
    Audio {
        source_name: String,
        message: String,
    },

    /// A request the model cannot serve (too short input, bad layer index, ...).
    #[error("{0}")]
    Invalid(String),
}

impl MertError {
    pub(crate) fn config(field: &str, message: impl Into<String>) -> Self {
        Self::Config {
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn tensor(source: &str, key: &str, message: impl Into<String>) -> Self {
        Self::Tensor {
            source_name: source.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn audio(source: &str, message: impl Into<String>) -> Self {
        Self::Audio {
            source_name: source.to_string(),
            message: message.into(),
        }
    }
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, MertError>;
