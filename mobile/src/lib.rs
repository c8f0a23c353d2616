//! `mert-mobile`: MERT on device. A Rust API ([`Model`], [`Session`]) over `mert-core` on the
//! CPU (burn Flex), exposed as a C ABI ([`c_abi`], header `mobile/include/mert.h`) and as
//! UniFFI bindings for Kotlin, Swift and Python ([`bindings`]).
//!
//! Every result equals the `mert` command's on the same audio and model: one-shot embeddings
//! are `mert embed --layers last`, tags are `mert tag`, and a stream's chunks concatenate to
//! the one-shot embedding. Errors are values ([`MertError`]); no panic leaves the library.

// Library and binary code returns errors instead of unwrapping (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bindings;
pub mod c_abi;
pub mod error;
pub mod model;
pub mod plan;
pub mod session;

pub use error::{MertError, Result};
pub use model::{Embedding, Model, Tag};
pub use session::Session;

uniffi::setup_scaffolding!();
