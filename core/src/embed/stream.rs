//! The window runner: pulls samples at the model's rate from a source, keeps only what the
//! current window needs, runs the model once per window and hands the stitched frames to a
//! sink in order. Peak memory is one window of audio plus one window of hidden states.

use burn::tensor::{Device, Tensor, TensorData};

use super::EmbedOptions;
use super::windows::{WindowPlan, plan_windows};
use crate::audio::normalize;
use crate::error::{MertError, Result};
use crate::model::Mert;

/// Where stitched frames go: memory, a running mean, or a file written in place.
pub trait FrameSink {
    /// Called once with the output shape before any frames.
    fn begin(&mut self, layers: usize, frames: usize, dim: usize) -> Result<()>;
    /// Frames `[dest, dest + n)` of every selected layer: `data` is `[layers, n, dim]`.
    fn write(&mut self, dest: usize, n: usize, data: &[f32]) -> Result<()>;
}

/// A source of samples at the model's rate, in chunks of any size; `None` at the end.
pub type SampleSource<'a> = dyn FnMut() -> Result<Option<Vec<f32>>> + 'a;

/// Mean over frames, accumulated in f64 as frames arrive: `[layers, dim]`.
#[derive(Debug, Default)]
pub struct MeanSink {
    pub layers: usize,
    pub dim: usize,
    frames: usize,
    sums: Vec<f64>,
}

impl MeanSink {
    /// The means, `[layers, dim]`.
    pub fn means(&self) -> Vec<f32> {
        let n = self.frames.max(1) as f64;
        self.sums.iter().map(|s| (s / n) as f32).collect()
    }
}

impl FrameSink for MeanSink {
    fn begin(&mut self, layers: usize, _frames: usize, dim: usize) -> Result<()> {
        self.layers = layers;
        self.dim = dim;
        self.sums = vec![0.0; layers * dim];
        Ok(())
    }

    fn write(&mut self, _dest: usize, n: usize, data: &[f32]) -> Result<()> {
        for l in 0..self.layers {
            for row in data[l * n * self.dim..(l + 1) * n * self.dim].chunks_exact(self.dim) {
                for (s, &v) in self.sums[l * self.dim..(l + 1) * self.dim]
                    .iter_mut()
                    .zip(row)
                {
                    *s += v as f64;
                }
            }
        }
        self.frames += n;
        Ok(())
    }
}

/// Run the model over `total` samples pulled from `source`, windowed as `options` says, and
/// write the hidden states listed in `layers` to `sink`.
pub fn run_windows(
    model: &Mert,
    source: &mut SampleSource<'_>,
    total: usize,
    options: &EmbedOptions,
    layers: &[usize],
    device: &Device,
    sink: &mut dyn FrameSink,
) -> Result<()> {
    let mut run = WindowRun::new(model, total, options, layers)?;
    while let Some(kept) = run.forward_next(model, source, device)? {
        run.write(kept.into_data(), sink)?;
    }
    Ok(())
}

/// The window loop of [`run_windows`] one window at a time, with the read-back left to the
/// caller: [`WindowRun::forward_next`] runs the model and returns the window's kept frames
/// still on the device, [`WindowRun::write`] takes their host copy. Backends that can only
/// read device memory asynchronously (WebGPU in a browser) await the read in between.
pub struct WindowRun {
    plans: Vec<WindowPlan>,
    layers: Vec<usize>,
    normalize: bool,
    frames: usize,
    /// Windows whose frames were written.
    done: usize,
    /// `buf` holds samples `[buf_start, buf_start + buf.len())` of the clip.
    buf: Vec<f32>,
    buf_start: usize,
    ended: bool,
    begun: bool,
    total: usize,
    /// Width of the hidden states (known after the first pass).
    dim: usize,
}

impl WindowRun {
    /// Check the request and plan the windows; no audio is pulled yet.
    pub fn new(
        model: &Mert,
        total: usize,
        options: &EmbedOptions,
        layers: &[usize],
    ) -> Result<Self> {
        let frames = model.frames_for(total);
        if frames == 0 {
            let rate = model.sample_rate as f64;
            return Err(MertError::Invalid(format!(
                "the audio is too short: {:.4} s ({total} at the model's rate), at least one frame ({:.4} s, {} samples) is needed",
                total as f64 / rate,
                min_samples(model) as f64 / rate,
                min_samples(model)
            )));
        }
        let available = model.encoder.layers.len() + 1;
        if let Some(&bad) = layers.iter().find(|&&l| l >= available) {
            return Err(MertError::Invalid(format!(
                "layer {bad} is out of range: the model has hidden states 0..={}",
                available - 1
            )));
        }
        for (name, v) in [
            ("window", options.window_seconds),
            ("hop", options.hop_seconds.unwrap_or(1.0)),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(MertError::Invalid(format!(
                    "--{name} must be a non-negative number of seconds, got {v}"
                )));
            }
        }
        let rate = model.sample_rate as f64;
        let window = (options.window_seconds * rate).round() as usize;
        if window > 0 && model.frames_for(window) == 0 {
            return Err(MertError::Invalid(format!(
                "--window {} s is shorter than one frame",
                options.window_seconds
            )));
        }
        let frame_hop = frame_hop(model);
        let hop = options
            .hop_seconds
            .map(|h| (h * rate).round() as usize)
            .unwrap_or(window / 2);
        if window > 0 && window < total && hop < frame_hop {
            let frame_s = frame_hop as f64 / rate;
            return Err(MertError::Invalid(match options.hop_seconds {
                Some(h) => format!(
                    "--hop {h} s is shorter than one frame ({frame_hop} samples, {:.4} s)",
                    (frame_s * 1e4).ceil() / 1e4
                ),
                // the hop was derived, so name the option the user gave
                None => format!(
                    "--window {} s: its default hop (half a window) is shorter than one frame \
                     ({frame_hop} samples); expected --window of at least {:.4} s or a --hop",
                    options.window_seconds,
                    (2e4 * frame_s).ceil() / 1e4
                ),
            }));
        }
        let plans = plan_windows(total, window, hop, frame_hop, |n| model.frames_for(n));
        Ok(Self {
            plans,
            layers: layers.to_vec(),
            normalize: options.normalize,
            frames,
            done: 0,
            buf: Vec::new(),
            buf_start: 0,
            ended: false,
            begun: false,
            total,
            dim: 0,
        })
    }

    /// Model passes in all.
    pub fn windows(&self) -> usize {
        self.plans.len()
    }

    /// Model passes whose frames were written.
    pub fn windows_done(&self) -> usize {
        self.done
    }

    /// Run the model on the next window: its kept frames `[layers, 1, frames, dim]`, not yet
    /// read back; `None` when every window was written. Call [`WindowRun::write`] next.
    pub fn forward_next(
        &mut self,
        model: &Mert,
        source: &mut SampleSource<'_>,
        device: &Device,
    ) -> Result<Option<Tensor<4>>> {
        let Some(plan) = self.plans.get(self.done) else {
            return Ok(None);
        };
        while self.buf_start + self.buf.len() < plan.end && !self.ended {
            match source()? {
                Some(chunk) => {
                    if chunk.iter().any(|x| !x.is_finite()) {
                        return Err(MertError::Invalid(
                            "the audio holds NaN or infinite samples".into(),
                        ));
                    }
                    self.buf.extend_from_slice(&chunk);
                }
                None => self.ended = true,
            }
        }
        if plan.start < self.buf_start || plan.end > self.buf_start + self.buf.len() {
            return Err(MertError::Invalid(format!(
                "the audio ended early: expected {} samples, got {}",
                self.total,
                self.buf_start + self.buf.len()
            )));
        }
        let mut chunk = self.buf[plan.start - self.buf_start..plan.end - self.buf_start].to_vec();
        if self.normalize {
            normalize(&mut chunk);
        }
        let n = chunk.len();
        let input = Tensor::<2>::from_data(TensorData::new(chunk, [1, n]), device);
        let picked = model.forward_layers(input, &self.layers);
        if picked.is_empty() || picked.len() != self.layers.len() {
            return Err(MertError::Invalid(format!(
                "layers {:?}: the model has {} hidden states",
                self.layers,
                model.encoder.layers.len() + 1
            )));
        }
        self.dim = picked[0].dims()[2];
        // [layers, 1, frames, dim] -> the planned frames only
        Ok(Some(Tensor::stack::<4>(picked, 0).narrow(
            2,
            plan.take.start,
            plan.take.len(),
        )))
    }

    /// Hand the host copy of the frames [`WindowRun::forward_next`] returned to `sink`.
    pub fn write(&mut self, kept: TensorData, sink: &mut dyn FrameSink) -> Result<()> {
        let Some(plan) = self.plans.get(self.done) else {
            return Err(MertError::Invalid(
                "frames written after the last window".into(),
            ));
        };
        let data = kept
            .try_into_vec::<f32>()
            .map_err(|e| MertError::Invalid(format!("cannot read the model output: {e:?}")))?;
        if !self.begun {
            sink.begin(self.layers.len(), self.frames, self.dim)?;
            self.begun = true;
        }
        sink.write(plan.dest, plan.take.len(), &data)?;
        self.done += 1;
        // Drop the samples no later window needs (window starts never decrease).
        if let Some(next) = self.plans.get(self.done)
            && next.start > self.buf_start
        {
            self.buf
                .drain(..(next.start - self.buf_start).min(self.buf.len()));
            self.buf_start = next.start;
        }
        Ok(())
    }
}

fn frame_hop(model: &Mert) -> usize {
    model
        .feature_extractor
        .conv_layers
        .iter()
        .map(|l| l.conv.stride)
        .product()
}

/// The shortest input that gives a frame (the conv stack's receptive field, 400 for MERT):
/// `frames_for` grows with the length, so a binary search finds it for any valid config.
fn min_samples(model: &Mert) -> usize {
    let (mut lo, mut hi) = (1usize, 1usize << 26);
    if model.frames_for(hi) == 0 {
        return hi;
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if model.frames_for(mid) > 0 {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}
