//! Band-limited resampling to the model's rate, equal to the resampler MERT's own data
//! preparation used (`torchaudio.functional.resample`, default `sinc_interp_hann`,
//! `lowpass_filter_width = 6`, `rolloff = 0.99`), so embeddings of a 44.1 kHz file match
//! what the reference pipeline feeds the model.
//!
//! The ratio is reduced to `orig : new` by the gcd; each of the `new` output phases has its
//! own Hann-windowed sinc kernel of `2 * width + orig` taps, applied at stride `orig` to the
//! signal zero-padded by `width` on the left. Streaming: chunks of any size go in, memory
//! stays one kernel deep, and the output has exactly `ceil(n * new / orig)` samples.
//!
//! For the usual rates the table is small and kept whole. A coprime ratio (24001:24000, a
//! crafted header's 44101 Hz) would make it gigabytes, though each phase's kernel is zero
//! outside a band of about `12 * orig / min(orig, new)` taps: such tables keep only the band,
//! with the same values, so the output equals the whole table's up to float summation order.
//!
//! (A general-purpose FFT resampler such as rubato's agrees with this one only to 43-56 dB
//! SNR on broadband music, because the filters' transition bands differ; matching the
//! reference is the point here, and the cost is small: 171 taps per output at 44.1 kHz.)

use crate::error::{MertError, Result};

const LOWPASS_FILTER_WIDTH: f64 = 6.0;
const ROLLOFF: f64 = 0.99;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Above this many kernel values the table keeps only each phase's non-zero band (the exact
/// table of a coprime ratio such as 24001:24000 would hold 576 M values, 2.3 GB).
const DENSE_TABLE_MAX: usize = 1 << 20;
/// No table beyond this (64 MB): ratios that would need more are refused.
const TABLE_MAX: u64 = 1 << 24;

/// A streaming resampler from `from` Hz to `to` Hz (a plain copy when they are equal).
pub struct StreamResampler {
    orig: usize,
    new: usize,
    width: usize,
    /// Per phase, `band` taps starting at tap `starts[phase]` of the reference's
    /// `2 * width + orig`; row-major. For small tables the band is the whole kernel.
    kernels: Vec<f32>,
    starts: Vec<usize>,
    band: usize,
    /// Padded input from padded index `base` on (padded index `i` = input sample `i - width`).
    buf: Vec<f32>,
    base: usize,
    /// Next block of `new` outputs to compute.
    block: usize,
    consumed: u64,
    produced: u64,
    identity: bool,
}

/// Largest sample magnitude the resampler passes unchanged (see [`StreamResampler::push`]).
pub const RESAMPLE_LIMIT: f32 = 1e30;

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<Self> {
        Self::with_dense_max(from, to, DENSE_TABLE_MAX)
    }

    /// As [`Self::new`], keeping the whole table up to `dense_max` values.
    fn with_dense_max(from: u32, to: u32, dense_max: usize) -> Result<Self> {
        if from == 0 || to == 0 {
            return Err(MertError::Invalid(format!(
                "cannot resample from {from} Hz to {to} Hz"
            )));
        }
        let g = gcd(from as u64, to as u64);
        let (orig, new) = ((from as u64 / g) as usize, (to as u64 / g) as usize);
        let base_freq = orig.min(new) as f64 * ROLLOFF;
        let width_f = (LOWPASS_FILTER_WIDTH * orig as f64 / base_freq).ceil();
        let taps_f = 2.0 * width_f + orig as f64;
        // The kernel is zero where |t| reaches the filter width: about 2 * 6 * orig / base_freq
        // taps around each phase's centre are not (plus rounding at both ends).
        let support_f = (2.0 * LOWPASS_FILTER_WIDTH * orig as f64 / base_freq).ceil() + 3.0;
        let dense = new as f64 * taps_f <= dense_max as f64;
        let band_f = if dense { taps_f } else { support_f.min(taps_f) };
        if new as f64 * band_f > TABLE_MAX as f64 {
            return Err(MertError::Invalid(format!(
                "cannot resample from {from} Hz to {to} Hz: the reduced ratio {orig}:{new} needs a filter table of {:.0} values",
                new as f64 * band_f
            )));
        }
        // Below TABLE_MAX: every size fits a usize.
        let (width, band) = (width_f as usize, band_f as usize);
        let taps = 2 * width + orig;
        let scale = base_freq / orig as f64;
        let (mut kernels, mut starts) = (Vec::with_capacity(new * band), Vec::with_capacity(new));
        for phase in 0..new {
            // The reference forms `-phase / new` in float32 before widening to float64.
            let offset = (-(phase as f32) / new as f32) as f64;
            // First tap with |t| < width: (k - width) / orig > -width / base_freq - offset.
            let first =
                width as f64 + orig as f64 * (-LOWPASS_FILTER_WIDTH / base_freq - offset) - 1.0;
            let start = if dense {
                0
            } else {
                (first.floor().max(0.0) as usize).min(taps - band)
            };
            starts.push(start);
            for k in start..start + band {
                let idx = (k as f64 - width as f64) / orig as f64;
                let t =
                    ((offset + idx) * base_freq).clamp(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH);
                let window = (t * std::f64::consts::PI / LOWPASS_FILTER_WIDTH / 2.0)
                    .cos()
                    .powi(2);
                let t = t * std::f64::consts::PI;
                let sinc = if t == 0.0 { 1.0 } else { t.sin() / t };
                kernels.push((sinc * window * scale) as f32);
            }
        }
        Ok(Self {
            orig,
            new,
            width,
            kernels,
            starts,
            band,
            buf: vec![0.0; width],
            base: 0,
            block: 0,
            consumed: 0,
            produced: 0,
            identity: from == to,
        })
    }

    fn taps(&self) -> usize {
        2 * self.width + self.orig
    }

    /// Feed `input`; returns the output samples now available.
    pub fn push(&mut self, input: &[f32]) -> Result<Vec<f32>> {
        self.consumed += input.len() as u64;
        if self.identity {
            self.produced += input.len() as u64;
            return Ok(input.to_vec());
        }
        // Float audio is nominally within ±1; a sample beyond ±1e30 (a corrupt float file)
        // would overflow the filter's sums to infinity, so it is clipped there.
        self.buf.extend(
            input
                .iter()
                .map(|&x| x.clamp(-RESAMPLE_LIMIT, RESAMPLE_LIMIT)),
        );
        let mut out = Vec::new();
        self.run(&mut out, u64::MAX);
        self.produced += out.len() as u64;
        Ok(out)
    }

    /// Flush: the remaining output, so that the total is `ceil(consumed * new / orig)`.
    pub fn finish(mut self) -> Result<Vec<f32>> {
        if self.identity {
            return Ok(Vec::new());
        }
        let want = (self.consumed * self.new as u64).div_ceil(self.orig as u64);
        // The reference pads `width + orig` zeros on the right; enough for every kept output.
        let pad = self.width + self.orig;
        self.buf.extend(std::iter::repeat_n(0.0, pad));
        let mut out = Vec::new();
        self.run(&mut out, want - self.produced);
        out.truncate((want - self.produced) as usize);
        Ok(out)
    }

    /// Compute every block whose taps are buffered (at most `limit` more outputs).
    fn run(&mut self, out: &mut Vec<f32>, limit: u64) {
        let taps = self.taps();
        while (out.len() as u64) < limit {
            let start = self.block * self.orig;
            if start + taps > self.base + self.buf.len() {
                break;
            }
            let x = &self.buf[start - self.base..start - self.base + taps];
            for (kernel, &at) in self.kernels.chunks_exact(self.band).zip(&self.starts) {
                out.push(dot(&x[at..at + self.band], kernel));
            }
            self.block += 1;
        }
        // Drop what no later block reads.
        let keep_from = self.block * self.orig;
        if keep_from > self.base {
            let drop = (keep_from - self.base).min(self.buf.len());
            self.buf.drain(..drop);
            self.base += drop;
        }
    }
}

/// Σ x·k with eight lanes, so the compiler vectorises it.
fn dot(x: &[f32], k: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (xc, kc) = (x.chunks_exact(8), k.chunks_exact(8));
    let (xr, kr) = (xc.remainder(), kc.remainder());
    for (a, b) in xc.zip(kc) {
        for i in 0..8 {
            acc[i] += a[i] * b[i];
        }
    }
    acc.iter().sum::<f32>() + xr.iter().zip(kr).map(|(a, b)| a * b).sum::<f32>()
}

/// Resample a whole clip (the streaming resampler fed in one piece).
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>> {
    let mut r = StreamResampler::new(from_hz, to_hz)?;
    let mut out = r.push(samples)?;
    out.extend(r.finish()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(f: f64, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * f * i as f64 / rate as f64).sin() as f32 * 0.5)
            .collect()
    }

    #[test]
    fn resampled_sine_keeps_its_frequency_and_length() {
        let (from, to) = (44_100u32, 24_000u32);
        let x = sine(440.0, from, from as usize);
        let y = resample(&x, from, to).unwrap();
        assert_eq!(y.len(), to as usize);
        let expected = sine(440.0, to, to as usize);
        let max_err = y[1000..23_000]
            .iter()
            .zip(&expected[1000..23_000])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_err < 1e-3, "max error {max_err}");
    }

    #[test]
    fn chunked_input_gives_the_one_shot_output() {
        for (from, to, n) in [
            (48_000u32, 24_000u32, 50_001usize),
            (22_050, 24_000, 7_000),
            (8_000, 24_000, 999),
            (44_100, 24_000, 3),
            (24_000, 24_000, 5),
        ] {
            let x = sine(1000.0, from, n);
            let whole = resample(&x, from, to).unwrap();
            assert_eq!(
                whole.len() as u64,
                (n as u64 * to as u64).div_ceil(from as u64)
            );
            let mut r = StreamResampler::new(from, to).unwrap();
            let mut parts = Vec::new();
            for chunk in x.chunks(777) {
                parts.extend(r.push(chunk).unwrap());
            }
            parts.extend(r.finish().unwrap());
            assert_eq!(parts, whole, "{from} -> {to}, {n} samples");
        }
    }

    /// The band-only table gives the whole table's output (summation order aside), streamed
    /// or not, for down- and upsampling.
    #[test]
    fn band_table_equals_the_whole_table() {
        for (from, to) in [
            (44_100u32, 24_000u32),
            (22_050, 24_000),
            (11_025, 24_000),
            (96_000, 24_000),
        ] {
            let x = sine(3000.0, from, 9_001);
            let whole = resample(&x, from, to).unwrap();
            let mut r = StreamResampler::with_dense_max(from, to, 0).unwrap();
            assert!(r.band < r.taps(), "{from} -> {to}: no band");
            let mut banded = Vec::new();
            for chunk in x.chunks(1000) {
                banded.extend(r.push(chunk).unwrap());
            }
            banded.extend(r.finish().unwrap());
            assert_eq!(banded.len(), whole.len());
            let max_err = banded
                .iter()
                .zip(&whole)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(max_err < 1e-6, "{from} -> {to}: max difference {max_err}");
        }
    }

    /// Coprime rates: a small table, and a sine that keeps its frequency.
    #[test]
    fn coprime_rates_resample_with_a_small_table() {
        for (from, to) in [(24_000u32, 24_001u32), (44_101, 24_000), (24_000, 97_001)] {
            let r = StreamResampler::new(from, to).unwrap();
            assert!(
                r.kernels.len() < 4 << 20,
                "{from} -> {to}: {} values",
                r.kernels.len()
            );
            let x = sine(440.0, from, from as usize);
            let y = resample(&x, from, to).unwrap();
            assert_eq!(
                y.len() as u64,
                (from as u64 * to as u64).div_ceil(from as u64)
            );
            let expected = sine(440.0, to, to as usize);
            let (a, b) = (to as usize / 20, to as usize * 19 / 20);
            let max_err = y[a..b]
                .iter()
                .zip(&expected[a..b])
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(max_err < 1e-3, "{from} -> {to}: max error {max_err}");
        }
        assert!(StreamResampler::new(u32::MAX, 24_000).is_err());
    }
}
