//! A small, seedable, serialisable random source for the pretraining recipe (masks, crops,
//! noise mixture). Every random choice of a step is derived from `(seed, step)`, so a resumed
//! run draws exactly what an unbroken run would have drawn, with no generator state to save.

/// SplitMix64: tiny, fast, good enough statistical quality for sampling crops and spans.
#[derive(Debug, Clone)]
pub struct StepRng {
    state: u64,
}

impl StepRng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The generator for one purpose (`stream`) at one training step.
    pub fn for_step(seed: u64, step: u64, stream: u64) -> Self {
        let mut rng = Self::new(seed ^ 0x9E37_79B9_7F4A_7C15);
        let a = rng.next_u64() ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut rng = Self::new(a);
        let b = rng.next_u64() ^ stream.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7);
        Self::new(b)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `[lo, hi]` (inclusive).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        debug_assert!(lo <= hi);
        let span = (hi - lo) as u64 + 1;
        lo + (self.next_u64() % span) as usize
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `k` distinct indices from `0..n`, in random order (partial Fisher-Yates).
    pub fn choose(&mut self, n: usize, k: usize) -> Vec<usize> {
        let k = k.min(n);
        let mut pool: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = self.range(i, n - 1);
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| StepRng::for_step(7, 3, 1).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            StepRng::for_step(7, 3, 1).next_u64(),
            StepRng::for_step(7, 4, 1).next_u64()
        );
        assert_ne!(
            StepRng::for_step(7, 3, 1).next_u64(),
            StepRng::for_step(7, 3, 2).next_u64()
        );
    }

    #[test]
    fn choose_gives_distinct_indices_in_range() {
        let mut rng = StepRng::new(1);
        let mut c = rng.choose(100, 30);
        assert_eq!(c.len(), 30);
        c.sort();
        c.dedup();
        assert_eq!(c.len(), 30);
        assert!(c.iter().all(|&i| i < 100));
        let mean: f64 = (0..10_000).map(|_| rng.uniform()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
