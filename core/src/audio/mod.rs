//! Audio in: decode (symphonia), downmix, resample (rubato) to the model's rate, normalise.

pub mod decode;
pub mod normalize;
pub mod resample;

pub use decode::{AudioStream, MonoAudio, decode_bytes, decode_file};
pub use normalize::normalize;
pub use resample::{StreamResampler, resample};
