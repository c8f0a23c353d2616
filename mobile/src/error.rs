//! The library's one error type: a kind that maps to a C status code (and a UniFFI error
//! variant) plus a one-line message that names the argument, file or state at fault.

/// What went wrong, as the C ABI reports it (`MertStatus`) and the bindings raise it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum MertError {
    /// A null pointer, an empty buffer or an out-of-range argument.
    #[error("{0}")]
    InvalidArgument(String),
    /// The model file or bytes could not be read or are not a valid MERT model.
    #[error("{0}")]
    ModelLoad(String),
    /// The audio could not be decoded or processed (too short, NaN, unsupported format).
    #[error("{0}")]
    Audio(String),
    /// A call out of order: pushing after `finish`, whole-stream tags before it, tags from a
    /// model without a tagging head, or any use of a session after one of its calls failed.
    #[error("{0}")]
    State(String),
    /// A bug: a panic caught at the boundary.
    #[error("{0}")]
    Internal(String),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, MertError>;

pub(crate) fn invalid(msg: impl Into<String>) -> MertError {
    MertError::InvalidArgument(msg.into())
}

pub(crate) fn audio(e: mert_core::MertError) -> MertError {
    MertError::Audio(e.to_string())
}

pub(crate) fn load(e: mert_core::MertError) -> MertError {
    MertError::ModelLoad(e.to_string())
}

/// Run `f`, turning a panic into [`MertError::Internal`] so no unwind leaves the library.
pub(crate) fn catch<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let first = what.lines().next().unwrap_or("");
        Err(MertError::Internal(format!(
            "internal error (a panic caught at the library boundary): {first}"
        )))
    })
}
