//! In-batch noise mixture (MERT §4.6): some items get 1-3 short segments of the other items
//! of the batch added on top, so the student learns to hear through a mixture while its
//! targets stay those of the clean audio.

use super::rng::StepRng;

/// Noise-mixture settings (`[augment]` in the pretraining TOML).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseMixture {
    /// Probability that an item gets noise (MERT: 0.5).
    pub prob: f64,
    /// Segment length range in seconds (MERT-95M: 0.5-1.0 s; 330M: 0.5-1.5 s).
    pub min_seconds: f64,
    pub max_seconds: f64,
    /// Segments per noisy item, drawn uniformly from `1..=max_segments` (MERT: 3).
    pub max_segments: usize,
}

impl Default for NoiseMixture {
    fn default() -> Self {
        Self {
            prob: 0.5,
            min_seconds: 0.5,
            max_seconds: 1.0,
            max_segments: 3,
        }
    }
}

impl NoiseMixture {
    /// Mix in place. `batch[b]` are equal-length clean crops at `sample_rate`; the noise pool
    /// of item `b` is every other item concatenated. Returns how many items got noise.
    pub fn apply(&self, rng: &mut StepRng, batch: &mut [Vec<f32>], sample_rate: u32) -> usize {
        if batch.len() < 2 || self.prob <= 0.0 || self.max_segments == 0 {
            return 0;
        }
        let clean: Vec<Vec<f32>> = batch.to_vec();
        let lo = (self.min_seconds * sample_rate as f64).round() as usize;
        let hi = ((self.max_seconds * sample_rate as f64).round() as usize).max(lo);
        let mut mixed = 0;
        for (b, item) in batch.iter_mut().enumerate() {
            if rng.uniform() >= self.prob || item.is_empty() {
                continue;
            }
            let pool_len: usize = clean
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != b)
                .map(|(_, c)| c.len())
                .sum();
            if pool_len == 0 {
                continue;
            }
            let segments = rng.range(1, self.max_segments);
            for _ in 0..segments {
                let len = rng.range(lo, hi).min(pool_len).min(item.len()).max(1);
                let src = rng.range(0, pool_len - len);
                let dst = rng.range(0, item.len() - len);
                for j in 0..len {
                    item[dst + j] += pool_sample(&clean, b, src + j);
                }
            }
            mixed += 1;
        }
        mixed
    }
}

/// Sample `i` of the concatenation of every item but `skip`.
fn pool_sample(items: &[Vec<f32>], skip: usize, mut i: usize) -> f32 {
    for (k, item) in items.iter().enumerate() {
        if k == skip {
            continue;
        }
        if i < item.len() {
            return item[i];
        }
        i -= item.len();
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_comes_from_other_items_only() {
        // Item b is constant b+1: any change to item 0 must be a sum of 2s and 3s.
        let mut batch: Vec<Vec<f32>> = (0..3).map(|b| vec![b as f32 + 1.0; 24_000]).collect();
        let mix = NoiseMixture {
            prob: 1.0,
            ..NoiseMixture::default()
        };
        let mut rng = StepRng::new(11);
        assert_eq!(mix.apply(&mut rng, &mut batch, 12_000), 3);
        let changed: Vec<f32> = batch[0].iter().copied().filter(|&x| x != 1.0).collect();
        assert!(!changed.is_empty());
        for x in changed {
            let added = x - 1.0;
            // Up to 3 overlapping segments of values 2 or 3.
            assert!((2.0..=9.0).contains(&added), "{added}");
        }
        let noisy = batch[0].iter().filter(|&&x| x != 1.0).count();
        assert!((6_000..=36_000).contains(&noisy), "{noisy}");
    }

    #[test]
    fn prob_zero_is_clean() {
        let mut batch = vec![vec![0.5f32; 100], vec![0.25; 100]];
        let mix = NoiseMixture {
            prob: 0.0,
            ..NoiseMixture::default()
        };
        assert_eq!(mix.apply(&mut StepRng::new(1), &mut batch, 100), 0);
        assert!(batch[0].iter().all(|&x| x == 0.5));
    }
}
