//! Measuring what quantization costs: a deterministic test signal and the cosine of every
//! hidden state against the f32 model. Host readback happens here, so this is for native
//! callers (the CLI, tests), never inside the model or on WebGPU.

use burn::tensor::{Device, Tensor, TensorData};

use crate::model::Mert;

/// `seconds` of a deterministic music-like signal at `sample_rate`: a few harmonic tones,
/// an amplitude envelope and a little noise, normalised as the front end does.
pub fn test_signal(sample_rate: u32, seconds: f64) -> Vec<f32> {
    let n = (seconds * sample_rate as f64).round() as usize;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let tau = 2.0 * std::f32::consts::PI;
    let mut audio: Vec<f32> = (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let t = i as f32 / sample_rate as f32;
            // A new note every half second, with two partials.
            let f = [220.0, 277.2, 329.6, 440.0][(t * 2.0) as usize % 4];
            let env = (-(t * 2.0).fract() * 3.0).exp();
            env * (0.5 * (tau * f * t).sin() + 0.2 * (tau * 3.0 * f * t).sin())
                + 0.1 * (tau * 55.0 * t).sin()
                + 0.03 * ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        })
        .collect();
    crate::audio::normalize(&mut audio);
    audio
}

/// Cosine similarity, accumulated in f64; 1 when both are all zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 && bb == 0.0 {
        return 1.0;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

/// Cosine of each hidden state (`layers + 1`, each flattened over frames and width) of
/// `other` against `reference` on `audio`.
pub fn hidden_state_cosines(
    reference: &Mert,
    other: &Mert,
    audio: &[f32],
    device: &Device,
) -> Vec<f64> {
    let states = |model: &Mert| -> Vec<Vec<f32>> {
        let input =
            Tensor::<2>::from_data(TensorData::new(audio.to_vec(), [1, audio.len()]), device);
        model
            .forward(input)
            .hidden_states
            .into_iter()
            .map(|h| {
                let data = h.into_data();
                data.iter::<f32>().collect()
            })
            .collect()
    };
    let (a, b) = (states(reference), states(other));
    a.iter().zip(&b).map(|(x, y)| cosine(x, y)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 2.0]).abs() < 1e-12);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[0.0], &[0.0]), 1.0);
    }

    #[test]
    fn test_signal_is_deterministic_and_normalised() {
        let a = test_signal(24_000, 1.0);
        assert_eq!(a.len(), 24_000);
        assert_eq!(a, test_signal(24_000, 1.0));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / a.len() as f32;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
    }
}
