//! Audio in: decode (symphonia), downmix, resample (windowed sinc, as torchaudio) to the
//! model's rate, normalise.

mod adpcm;
pub mod decode;
mod header;
mod ima_adpcm;
mod mp4_edit;
mod ms_adpcm;
pub mod normalize;
mod opus;
pub mod resample;
mod source;

pub use decode::{AudioStream, MonoAudio, decode_bytes, decode_file};
pub use normalize::normalize;
pub use resample::{StreamResampler, resample};

/// One interleaved frame's channel mean, summed in f64 so that loud float channels
/// (near `f32::MAX`) cannot overflow to infinity.
pub fn downmix_frame(frame: &[f32]) -> f32 {
    (frame.iter().map(|&x| x as f64).sum::<f64>() / frame.len().max(1) as f64) as f32
}
