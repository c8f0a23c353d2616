//! `mert-core`: the one MERT definition (Burn, backend-free: everything takes a runtime
//! `&Device`), its checkpoint loaders, and the audio front end. No CLI, no printing.

// Library and binary code returns errors instead of unwrapping (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod audio;
pub mod embed;
pub mod error;
pub mod load;
pub mod model;
pub mod pretrain;
pub mod probe;
pub mod quant;
pub mod teachers;
#[cfg(test)]
mod test_util;

pub use burn;
pub use error::{MertError, Result};
pub use load::{Checkpoint, load_path};
pub use model::{Mert, MertConfig, MertOutput};
