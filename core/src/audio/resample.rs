//! Band-limited resampling of mono audio to the model's rate (rubato's FFT resampler: exact
//! rational ratios, BlackmanHarris windowed sinc response). Streaming: samples go in as chunks
//! of any size, so memory stays bounded on long files; the start-up delay is trimmed and the
//! output has exactly `ceil(n * to / from)` samples, as a one-shot resampler would give.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use crate::error::{MertError, Result};

/// Input chunk of the FFT resampler (frames).
const CHUNK: usize = 1024;

/// A streaming resampler from `from` Hz to `to` Hz (a plain copy when they are equal).
pub struct StreamResampler {
    inner: Option<Fft<f32>>,
    from: u32,
    to: u32,
    /// Input not yet consumed (less than one chunk).
    pending: Vec<f32>,
    /// Output samples still to drop at the start (the resampler's delay).
    to_trim: usize,
    /// Input samples fed so far.
    consumed: u64,
    /// Output samples handed out by `push` so far.
    produced: u64,
    scratch: Vec<f32>,
}

fn failed(from: u32, to: u32, e: &dyn std::fmt::Display) -> MertError {
    MertError::Invalid(format!("resampling {from} Hz -> {to} Hz failed: {e}"))
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<Self> {
        if from == 0 || to == 0 {
            return Err(MertError::Invalid(format!(
                "cannot resample from {from} Hz to {to} Hz"
            )));
        }
        let inner = if from == to {
            None
        } else {
            Some(
                Fft::<f32>::new(from as usize, to as usize, CHUNK, 1, FixedSync::Input)
                    .map_err(|e| failed(from, to, &e))?,
            )
        };
        let to_trim = inner.as_ref().map_or(0, |r| r.output_delay());
        let scratch = vec![0f32; inner.as_ref().map_or(0, |r| r.output_frames_max())];
        Ok(Self {
            inner,
            from,
            to,
            pending: Vec::new(),
            to_trim,
            consumed: 0,
            produced: 0,
            scratch,
        })
    }

    /// Feed `input`; returns the output samples now available.
    pub fn push(&mut self, input: &[f32]) -> Result<Vec<f32>> {
        self.consumed += input.len() as u64;
        if self.inner.is_none() {
            self.produced += input.len() as u64;
            return Ok(input.to_vec());
        }
        self.pending.extend_from_slice(input);
        let mut out = Vec::new();
        let mut offset = 0;
        while self.pending.len() - offset >= CHUNK {
            self.run(offset, None, &mut out)?;
            offset += CHUNK;
        }
        self.pending.drain(..offset);
        self.produced += out.len() as u64;
        Ok(out)
    }

    /// Flush: the remaining output, so that the total is `ceil(consumed * to / from)`.
    pub fn finish(mut self) -> Result<Vec<f32>> {
        if self.inner.is_none() {
            return Ok(Vec::new());
        }
        let want = (self.consumed * self.to as u64).div_ceil(self.from as u64);
        let mut out = Vec::new();
        // The partial last chunk, then zeros until the delayed output has drained.
        let partial = self.pending.len();
        self.pending.resize(CHUNK, 0.0);
        self.run(0, Some(partial), &mut out)?;
        self.pending.fill(0.0);
        while self.produced + (out.len() as u64) < want {
            self.run(0, Some(0), &mut out)?;
        }
        let keep = (want - self.produced) as usize;
        out.truncate(keep);
        Ok(out)
    }

    fn run(&mut self, offset: usize, partial: Option<usize>, out: &mut Vec<f32>) -> Result<()> {
        let (from, to) = (self.from, self.to);
        let Some(r) = self.inner.as_mut() else {
            return Ok(());
        };
        let input = InterleavedSlice::new(&self.pending[offset..offset + CHUNK], 1, CHUNK)
            .map_err(|e| failed(from, to, &e))?;
        let n_out = self.scratch.len();
        let mut output = InterleavedSlice::new_mut(&mut self.scratch, 1, n_out)
            .map_err(|e| failed(from, to, &e))?;
        let indexing = Indexing {
            input_offset: 0,
            output_offset: 0,
            partial_len: partial,
            active_channels_mask: None,
        };
        let (_, produced) = r
            .process_into_buffer(&input, &mut output, Some(&indexing))
            .map_err(|e| failed(from, to, &e))?;
        let skip = self.to_trim.min(produced);
        self.to_trim -= skip;
        out.extend_from_slice(&self.scratch[skip..produced]);
        Ok(())
    }
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
}
