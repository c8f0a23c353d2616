//! The codec's training objective without its adversarial part (EnCodec, Défossez et al. 2022,
//! §3.4): time-domain L1, a multi-scale mel-spectrogram loss, and the quantiser's commitment
//! loss ([`super::ema`]), weighted `λ_t = 0.1`, `λ_f = 1`, `λ_w = 1` by default. The
//! discriminators (EnCodec's MS-STFT discriminator, feature-matching losses) are not part of
//! the kit yet: a codec trained with these terms alone reconstructs the signal's envelope and
//! spectrum but sounds duller than one trained adversarially.
//!
//! Mel term per scale (window `n_fft` from [`LossConfig::mel_windows`], hop `n_fft / 4`,
//! `n_mels` bands, [`super::mel::MelScale`]): `mean |Δ| + mean Δ²` of
//! `log10(1e-5 + mel power)`, averaged over scales. The "mel distance" reported for held-out
//! audio is the L1 part alone.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::mel::MelScale;
use crate::error::{MertError, Result};
use burn::tensor::Device;

/// Added to the mel power before the log (audiocraft's `floor_level`).
pub const MEL_FLOOR: f64 = 1e-5;

/// Loss weights and mel scales.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Weight of the time-domain L1 (EnCodec's λ_t).
    pub time_weight: f64,
    /// Weight of the multi-scale mel term (λ_f).
    pub mel_weight: f64,
    /// Weight of the commitment loss (λ_w).
    pub commitment_weight: f64,
    /// STFT windows of the mel scales (powers of two; EnCodec: 2^5 ... 2^11).
    pub mel_windows: Vec<usize>,
    pub n_mels: usize,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            time_weight: 0.1,
            mel_weight: 1.0,
            commitment_weight: 1.0,
            mel_windows: vec![64, 128, 256, 512, 1024, 2048],
            n_mels: 64,
        }
    }
}

/// The multi-scale log-mel comparison, on one device.
#[derive(Debug, Clone)]
pub struct MultiScaleMel {
    scales: Vec<MelScale>,
}

impl MultiScaleMel {
    pub fn new(config: &LossConfig, sample_rate: u32, device: &Device) -> Result<Self> {
        if config.mel_windows.is_empty() {
            return Err(MertError::Invalid(
                "mel_windows: expected at least one window".into(),
            ));
        }
        let scales = config
            .mel_windows
            .iter()
            .map(|&w| MelScale::new(w, config.n_mels, sample_rate, device))
            .collect::<Result<_>>()?;
        Ok(Self { scales })
    }

    /// The longest window: crops must be longer than half of it.
    pub fn max_window(&self) -> usize {
        self.scales.iter().map(MelScale::n_fft).max().unwrap_or(0)
    }

    /// `(mean over scales of mean |Δ| + mean Δ², mean over scales of mean |Δ|)` of the log-mel
    /// spectrograms of `reference` and `estimate` `[B, L]`, scalars `[1]`.
    pub fn compare(&self, reference: Tensor<2>, estimate: Tensor<2>) -> (Tensor<1>, Tensor<1>) {
        let n = self.scales.len() as f64;
        let mut loss: Option<Tensor<1>> = None;
        let mut l1: Option<Tensor<1>> = None;
        for scale in &self.scales {
            let a = log_mel(scale.forward(reference.clone()));
            let b = log_mel(scale.forward(estimate.clone()));
            let diff = a - b;
            let abs = diff.clone().abs().mean();
            let term = abs.clone() + diff.powi_scalar(2).mean();
            loss = Some(loss.map_or(term.clone(), |s| s + term));
            l1 = Some(l1.map_or(abs.clone(), |s| s + abs));
        }
        let zero = || Tensor::<1>::zeros([1], &reference.device());
        (
            loss.unwrap_or_else(zero).div_scalar(n),
            l1.unwrap_or_else(zero).div_scalar(n),
        )
    }
}

fn log_mel(power: Tensor<3>) -> Tensor<3> {
    power
        .add_scalar(MEL_FLOOR)
        .log()
        .div_scalar(std::f64::consts::LN_10)
}

/// Mean absolute difference, scalar `[1]`.
pub fn time_l1(reference: Tensor<2>, estimate: Tensor<2>) -> Tensor<1> {
    (reference - estimate).abs().mean()
}

/// Signal-to-noise ratio of a reconstruction in dB, `10 log10(Σ x² / Σ (x - y)²)` (f64).
/// A silent output scores 0 dB; a perfect one is infinite.
pub fn snr_db(reference: &[f32], estimate: &[f32]) -> f64 {
    let (mut signal, mut noise) = (0f64, 0f64);
    for (x, y) in reference.iter().zip(estimate) {
        signal += (*x as f64).powi(2);
        noise += (*x as f64 - *y as f64).powi(2);
    }
    10.0 * (signal / noise).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn snr_of_known_errors() {
        let x = [1.0f32, -1.0, 1.0, -1.0];
        assert!((snr_db(&x, &[0.0; 4]) - 0.0).abs() < 1e-12);
        let half: Vec<f32> = x.iter().map(|v| v * 0.5).collect();
        // noise power 1/4 of the signal's: 6.02 dB
        assert!((snr_db(&x, &half) - 10.0 * 4f64.log10()).abs() < 1e-9);
        assert!(snr_db(&x, &x).is_infinite());
    }

    #[test]
    fn mel_distance_is_zero_for_equal_and_grows_with_error() {
        let device = Device::flex();
        let config = LossConfig {
            mel_windows: vec![64, 256],
            n_mels: 16,
            ..LossConfig::default()
        };
        let mel = MultiScaleMel::new(&config, 24_000, &device).unwrap();
        let x: Vec<f32> = (0..2048).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let a = Tensor::<2>::from_data(TensorData::new(x.clone(), [1, 2048]), &device);
        let (loss, l1) = mel.compare(a.clone(), a.clone());
        assert_eq!(loss.into_scalar::<f32>(), 0.0);
        assert_eq!(l1.into_scalar::<f32>(), 0.0);
        let scaled = a.clone().mul_scalar(0.5);
        let (_, small) = mel.compare(a.clone(), scaled);
        // a gain of 1/2 is -6 dB of power: |Δ log10| = log10(4) where the floor is negligible
        let small = small.into_scalar::<f32>() as f64;
        assert!(small > 0.2 && small <= 4f64.log10() + 1e-4, "{small}");
        let (_, large) = mel.compare(a.clone(), a.mul_scalar(0.05));
        assert!(large.into_scalar::<f32>() as f64 > small);
    }
}
