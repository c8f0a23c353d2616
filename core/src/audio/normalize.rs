//! The reference input normalisation (`Wav2Vec2FeatureExtractor` with `do_normalize`):
//! zero mean, unit population variance, `eps = 1e-7` inside the square root.

/// Normalise in place; statistics in f64 so long clips lose no precision.
pub fn normalize(samples: &mut [f32]) {
    if samples.is_empty() {
        return;
    }
    let n = samples.len() as f64;
    let mean = samples.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = samples
        .iter()
        .map(|&x| (x as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let inv = 1.0 / (var + 1e-7).sqrt();
    for x in samples.iter_mut() {
        *x = ((*x as f64 - mean) * inv) as f32;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zero_mean_unit_variance_and_silence_stays_finite() {
        let mut x: Vec<f32> = (0..1000)
            .map(|i| (i as f32 * 0.1).sin() * 0.3 + 0.2)
            .collect();
        super::normalize(&mut x);
        let mean: f32 = x.iter().sum::<f32>() / 1000.0;
        let var: f32 = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 1000.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
        let mut silence = vec![0f32; 100];
        super::normalize(&mut silence);
        assert!(silence.iter().all(|v| *v == 0.0));
    }
}
