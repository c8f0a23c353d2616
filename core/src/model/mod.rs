//! The MERT encoder as Burn modules. Pure: tensors in, tensors out; the backend is the
//! caller's `Device`. Struct fields follow the reference state-dict paths.

pub mod activation;
pub mod attention;
#[cfg(feature = "flex")]
pub mod attention_cpu;
pub mod config;
#[cfg(feature = "flex")]
pub mod conv0;
pub mod conv_frames;
pub mod conv_train;
pub mod dense;
pub mod encoder;
pub mod feature_encoder;
pub mod layer;
pub mod mert;
pub mod norm;
pub mod pos_conv;
pub mod regularize;
#[cfg(feature = "flex")]
mod shared_out;

pub use config::{FeatExtractNorm, MertConfig};
pub use mert::{Mert, MertOutput};
pub use regularize::Regularize;
