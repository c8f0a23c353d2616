//! Mel spectrograms as burn tensor ops (autodiff through burn's real FFT), for the codec's
//! reconstruction loss.
//!
//! One scale mirrors `torchaudio.transforms.MelSpectrogram(sample_rate, n_fft, hop_length =
//! n_fft / 4, n_mels, f_min = 0, f_max = sample_rate / 2, power = 2, normalized = False,
//! center = True, pad_mode = "reflect", norm = None, mel_scale = "htk")` (torchaudio 2.11):
//! periodic Hann window of `n_fft`, the signal reflect-padded by `n_fft / 2` on both sides,
//! `1 + L / hop` frames, power spectrum `re² + im²` times the triangular HTK filterbank of
//! `torchaudio.functional.melscale_fbanks` (`mel = 2595 log10(1 + f / 700)`, `n_mels + 2`
//! points evenly spaced in mel, frequencies of the `n_fft / 2 + 1` bins on
//! `linspace(0, sample_rate // 2)`).

use burn::signal::{StftOptions, stft};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{MertError, Result};

fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

fn mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// `melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm=None, mel_scale="htk")`:
/// `[n_freqs, n_mels]` row-major.
pub fn mel_filterbank(
    n_freqs: usize,
    f_min: f64,
    f_max: f64,
    n_mels: usize,
    sample_rate: u32,
) -> Vec<f32> {
    let nyquist = (sample_rate / 2) as f64;
    let freqs: Vec<f64> = (0..n_freqs)
        .map(|i| {
            if n_freqs > 1 {
                nyquist * i as f64 / (n_freqs - 1) as f64
            } else {
                0.0
            }
        })
        .collect();
    let (m_min, m_max) = (hz_to_mel(f_min), hz_to_mel(f_max));
    let points: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(m_min + (m_max - m_min) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut fb = vec![0f32; n_freqs * n_mels];
    for (i, &f) in freqs.iter().enumerate() {
        for m in 0..n_mels {
            let down = (f - points[m]) / (points[m + 1] - points[m]);
            let up = (points[m + 2] - f) / (points[m + 2] - points[m + 1]);
            fb[i * n_mels + m] = down.min(up).max(0.0) as f32;
        }
    }
    fb
}

/// One scale of the mel spectrogram, on one device.
#[derive(Debug, Clone)]
pub struct MelScale {
    n_fft: usize,
    window: Tensor<1>,
    /// `[n_freqs, n_mels]`
    filterbank: Tensor<2>,
}

impl MelScale {
    /// `n_fft` must be a power of two (burn's FFT) of at least 4.
    pub fn new(n_fft: usize, n_mels: usize, sample_rate: u32, device: &Device) -> Result<Self> {
        if !n_fft.is_power_of_two() || n_fft < 4 {
            return Err(MertError::Invalid(format!(
                "mel window {n_fft}: expected a power of two of at least 4"
            )));
        }
        if n_mels == 0 || sample_rate == 0 {
            return Err(MertError::Invalid(
                "mel spectrogram: n_mels and sample_rate must be positive".into(),
            ));
        }
        let n_freqs = n_fft / 2 + 1;
        let window: Vec<f32> = (0..n_fft)
            .map(|i| (0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n_fft as f64).cos()) as f32)
            .collect();
        let fb = mel_filterbank(n_freqs, 0.0, (sample_rate / 2) as f64, n_mels, sample_rate);
        Ok(Self {
            n_fft,
            window: Tensor::from_data(TensorData::new(window, [n_fft]), device),
            filterbank: Tensor::from_data(TensorData::new(fb, [n_freqs, n_mels]), device),
        })
    }

    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    /// Audio `[B, L]` (`L > n_fft / 2`) → mel power `[B, 1 + L / hop, n_mels]`.
    pub fn forward(&self, audio: Tensor<2>) -> Tensor<3> {
        let options = StftOptions::new(self.n_fft);
        // [B, frames, n_freqs, 2]
        let spec = stft(audio, Some(self.window.clone()), options);
        let [b, frames, n_freqs, _] = spec.dims();
        // [B, frames, n_freqs]
        let power = spec
            .powi_scalar(2)
            .sum_dim(3)
            .reshape([b * frames, n_freqs]);
        let n_mels = self.filterbank.dims()[1];
        power
            .matmul(self.filterbank.clone())
            .reshape([b, frames, n_mels])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filterbank_is_triangular_on_the_htk_scale() {
        let fb = mel_filterbank(513, 0.0, 12_000.0, 64, 24_000);
        // each filter peaks at most at 1 and every one is non-empty at this resolution
        for m in 0..64 {
            let col: Vec<f32> = (0..513).map(|i| fb[i * 64 + m]).collect();
            let peak = col.iter().cloned().fold(0f32, f32::max);
            assert!(peak > 0.0 && peak <= 1.0, "filter {m}: {peak}");
        }
        // DC and Nyquist are outside every filter (up to rounding of the mel round trip)
        assert!((0..64).all(|m| fb[m] == 0.0 && fb[512 * 64 + m] < 1e-6));
        assert!((hz_to_mel(1000.0) - 1000.0).abs() < 0.1);
        assert!((mel_to_hz(hz_to_mel(440.0)) - 440.0).abs() < 1e-9);
    }

    #[test]
    fn a_sine_lands_in_its_mel_band() {
        let device = Device::flex();
        let sr = 24_000;
        let scale = MelScale::new(512, 32, sr, &device).unwrap();
        let f = 3000.0;
        let x: Vec<f32> = (0..4096)
            .map(|i| (std::f64::consts::TAU * f * i as f64 / sr as f64).sin() as f32)
            .collect();
        let audio = Tensor::<2>::from_data(TensorData::new(x, [1, 4096]), &device);
        let mel = scale.forward(audio);
        assert_eq!(mel.dims(), [1, 1 + 4096 / 128, 32]);
        let frame: Vec<f32> = mel.narrow(1, 16, 1).into_data().try_into_vec().unwrap();
        let best = (0..32)
            .max_by(|&a, &b| frame[a].total_cmp(&frame[b]))
            .unwrap();
        // the band whose centre is nearest 3 kHz
        let centres: Vec<f64> = (1..=32)
            .map(|i| mel_to_hz(hz_to_mel(12_000.0) * i as f64 / 33.0))
            .collect();
        let want = (0..32)
            .min_by(|&a, &b| (centres[a] - f).abs().total_cmp(&(centres[b] - f).abs()))
            .unwrap();
        assert!(
            best.abs_diff(want) <= 1,
            "peak band {best}, expected {want}"
        );
    }
}
