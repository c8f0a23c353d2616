//! Band-limited resampling of mono audio to the model's rate (rubato's FFT resampler: exact
//! rational ratios, BlackmanHarris windowed sinc response, delay trimmed).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::error::{MertError, Result};

/// Resample `samples` from `from_hz` to `to_hz`; a copy when the rates are equal. The output
/// has `ceil(len * to / from)` samples.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>> {
    if from_hz == 0 || to_hz == 0 {
        return Err(MertError::Invalid(format!(
            "cannot resample from {from_hz} Hz to {to_hz} Hz"
        )));
    }
    if from_hz == to_hz || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let err = |e: &dyn std::fmt::Display| {
        MertError::Invalid(format!("resampling {from_hz} Hz -> {to_hz} Hz failed: {e}"))
    };
    let mut resampler =
        Fft::<f32>::new(from_hz as usize, to_hz as usize, 1024, 1, FixedSync::Input)
            .map_err(|e| err(&e))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| err(&e))?;
    let out = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| err(&e))?;
    // The exact rational length ceil(len * to / from); the resampler's float ratio can add one.
    let want = (samples.len() as u64 * to_hz as u64).div_ceil(from_hz as u64) as usize;
    let mut out = out.take_data();
    out.truncate(want);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampled_sine_keeps_its_frequency_and_length() {
        let (from, to) = (44_100u32, 24_000u32);
        let n = from as usize; // one second
        let f = 440.0f64;
        let x: Vec<f32> = (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * f * i as f64 / from as f64).sin() as f32 * 0.5)
            .collect();
        let y = resample(&x, from, to).unwrap();
        assert_eq!(y.len(), to as usize);
        // Away from the edges the output is the same sine sampled at the new rate.
        let mut max_err = 0f64;
        for (i, &v) in y.iter().enumerate().take(23_000).skip(1_000) {
            let expected = (2.0 * std::f64::consts::PI * f * i as f64 / to as f64).sin() * 0.5;
            max_err = max_err.max((v as f64 - expected).abs());
        }
        assert!(max_err < 1e-3, "max error {max_err}");
    }
}
