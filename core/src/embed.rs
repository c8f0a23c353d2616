//! From mono audio to hidden states: resample, normalise, run the model over the whole clip
//! or over overlapping windows, and stitch the windows' frames so that each output frame comes
//! from the window where it is most central. The output has the whole-clip frame count,
//! `floor((L - 400) / 320) + 1`.

use std::ops::Range;

use burn::tensor::{Device, Tensor, TensorData};

use crate::audio::{MonoAudio, normalize, resample};
use crate::error::{MertError, Result};
use crate::model::Mert;

/// How audio is cut and prepared before the model.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedOptions {
    /// Reference input normalisation per window (HF `do_normalize`).
    pub normalize: bool,
    /// Window length in seconds; 0 runs the whole clip in one pass.
    pub window_seconds: f64,
    /// Hop between windows in seconds; `None` = half a window.
    pub hop_seconds: Option<f64>,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            normalize: true,
            window_seconds: 5.0,
            hop_seconds: None,
        }
    }
}

/// Hidden states of one clip, `[layers, frames, dim]` row-major on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub layers: usize,
    pub frames: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embedding {
    /// Keep the listed hidden states, in the given order.
    pub fn select_layers(&self, layers: &[usize]) -> Result<Embedding> {
        let per = self.frames * self.dim;
        let mut data = Vec::with_capacity(layers.len() * per);
        for &l in layers {
            if l >= self.layers {
                return Err(MertError::Invalid(format!(
                    "layer {l} is out of range: the model has hidden states 0..={}",
                    self.layers - 1
                )));
            }
            data.extend_from_slice(&self.data[l * per..(l + 1) * per]);
        }
        Ok(Embedding {
            layers: layers.len(),
            frames: self.frames,
            dim: self.dim,
            data,
        })
    }

    /// Mean over frames: `[layers, 1, dim]`.
    pub fn mean_pool(&self) -> Embedding {
        let mut data = vec![0f32; self.layers * self.dim];
        for l in 0..self.layers {
            let mut acc = vec![0f64; self.dim];
            for f in 0..self.frames {
                let row = &self.data[(l * self.frames + f) * self.dim..][..self.dim];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v as f64;
                }
            }
            for (d, a) in data[l * self.dim..][..self.dim].iter_mut().zip(acc) {
                *d = (a / self.frames.max(1) as f64) as f32;
            }
        }
        Embedding {
            layers: self.layers,
            frames: 1,
            dim: self.dim,
            data,
        }
    }
}

/// One model pass: samples `[start, end)` of the clip, of whose output frames `take` are kept
/// and written from global frame `dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    pub start: usize,
    pub end: usize,
    pub take: Range<usize>,
    pub dest: usize,
}

/// Cut `len` samples into windows of `window` samples every `hop` samples (`hop` a multiple of
/// the frame hop `frame_hop`, so window frames align with the clip's frames), the last window
/// moved back to end at the clip's end. Each global frame is taken from the window in which it
/// is most central. `frames_for` is the conv length formula.
pub fn plan_windows(
    len: usize,
    window: usize,
    hop: usize,
    frame_hop: usize,
    frames_for: impl Fn(usize) -> usize,
) -> Vec<WindowPlan> {
    let total = frames_for(len);
    if total == 0 {
        return Vec::new();
    }
    if window == 0 || window >= len {
        return vec![WindowPlan {
            start: 0,
            end: len,
            take: 0..total,
            dest: 0,
        }];
    }
    // On the frame grid, and no longer than a window's frame count so windows leave no gap.
    let hop = (hop / frame_hop).clamp(1, frames_for(window).max(1)) * frame_hop;
    let mut starts = Vec::new();
    let mut s = 0;
    while s + window < len {
        starts.push(s);
        s += hop;
    }
    // The last window ends at the clip's end (its start kept on the frame grid); a window that
    // would start less than half a hop before it is replaced by it, if that leaves no gap.
    let last = (len - window) / frame_hop * frame_hop;
    if let [.., before, prev] = starts[..]
        && prev + hop / 2 > last
        && last - before <= frames_for(window) * frame_hop
    {
        starts.pop();
    }
    starts.push(last);
    let spans: Vec<(usize, usize, usize)> = starts
        .iter()
        .enumerate()
        .map(|(i, &st)| {
            let end = if i + 1 == starts.len() {
                len
            } else {
                st + window
            };
            (st, end, frames_for(end - st))
        })
        .collect();
    // For each global frame, the window whose centre is nearest (ties to the earlier window).
    let mut owner = vec![0usize; total];
    for (t, o) in owner.iter_mut().enumerate() {
        let mut best = (f64::INFINITY, 0);
        for (i, &(st, _, n)) in spans.iter().enumerate() {
            let first = st / frame_hop;
            if t < first || t >= first + n {
                continue;
            }
            let dist = ((t - first) as f64 - (n as f64 - 1.0) / 2.0).abs();
            if dist < best.0 {
                best = (dist, i);
            }
        }
        debug_assert!(best.0.is_finite(), "frame {t} is in no window");
        *o = best.1;
    }
    let mut plans = Vec::new();
    let mut t = 0;
    while t < total {
        let i = owner[t];
        let mut u = t;
        while u < total && owner[u] == i {
            u += 1;
        }
        let (st, end, _) = spans[i];
        let first = st / frame_hop;
        plans.push(WindowPlan {
            start: st,
            end,
            take: t - first..u - first,
            dest: t,
        });
        t = u;
    }
    plans
}

/// Run `model` on `audio` (any rate: resampled to `sample_rate`) and return every hidden state.
pub fn embed_audio(
    model: &Mert,
    sample_rate: u32,
    audio: &MonoAudio,
    options: &EmbedOptions,
    device: &Device,
) -> Result<Embedding> {
    let samples = resample(&audio.samples, audio.sample_rate, sample_rate)?;
    embed_samples(model, sample_rate, samples, options, device)
}

/// As [`embed_audio`], for samples already at the model's rate.
pub fn embed_samples(
    model: &Mert,
    sample_rate: u32,
    samples: Vec<f32>,
    options: &EmbedOptions,
    device: &Device,
) -> Result<Embedding> {
    if samples.iter().any(|x| !x.is_finite()) {
        return Err(MertError::Invalid(
            "the audio holds NaN or infinite samples".into(),
        ));
    }
    let total = model.frames_for(samples.len());
    if total == 0 {
        return Err(MertError::Invalid(format!(
            "the audio is too short: {} samples at {sample_rate} Hz, the model needs at least one frame ({} samples)",
            samples.len(),
            min_samples(model)
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
    let rate = sample_rate as f64;
    let window = (options.window_seconds * rate).round() as usize;
    if window > 0 && model.frames_for(window) == 0 {
        return Err(MertError::Invalid(format!(
            "--window {} s is shorter than one frame",
            options.window_seconds
        )));
    }
    let hop = options
        .hop_seconds
        .map(|h| (h * rate).round() as usize)
        .unwrap_or(window / 2);
    let frame_hop = frame_hop(model);
    if window > 0 && hop < frame_hop && window < samples.len() {
        return Err(MertError::Invalid(format!(
            "--hop must be at least one frame ({frame_hop} samples)"
        )));
    }
    let plans = plan_windows(samples.len(), window, hop, frame_hop, |n| {
        model.frames_for(n)
    });
    let mut out: Option<Embedding> = None;
    for plan in plans {
        let mut chunk = samples[plan.start..plan.end].to_vec();
        if options.normalize {
            normalize(&mut chunk);
        }
        let n = chunk.len();
        let input = Tensor::<2>::from_data(TensorData::new(chunk, [1, n]), device);
        let states = model.forward(input).hidden_states;
        let layers = states.len();
        // [layers, 1, frames, dim] -> keep the planned frames
        let stacked = Tensor::stack::<4>(states, 0);
        let [_, _, _, dim] = stacked.dims();
        let kept = stacked.narrow(2, plan.take.start, plan.take.len());
        let data = kept
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| MertError::Invalid(format!("cannot read the model output: {e:?}")))?;
        let emb = out.get_or_insert_with(|| Embedding {
            layers,
            frames: total,
            dim,
            data: vec![0.0; layers * total * dim],
        });
        let k = plan.take.len();
        for l in 0..layers {
            let src = &data[l * k * dim..(l + 1) * k * dim];
            emb.data[(l * total + plan.dest) * dim..][..k * dim].copy_from_slice(src);
        }
    }
    out.ok_or_else(|| MertError::Invalid("no window produced frames".into()))
}

fn frame_hop(model: &Mert) -> usize {
    model
        .feature_extractor
        .conv_layers
        .iter()
        .map(|l| l.conv.stride)
        .product()
}

fn min_samples(model: &Mert) -> usize {
    (1..100_000).find(|&n| model.frames_for(n) > 0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize) -> usize {
        if n < 400 { 0 } else { (n - 400) / 320 + 1 }
    }

    #[test]
    fn windows_cover_every_frame_once_with_the_whole_clip_count() {
        for len in [400, 1000, 120_000, 120_001, 200_000, 359_999, 1_000_000] {
            for (window, hop) in [
                (120_000, 60_000),
                (120_000, 120_000),
                (48_000, 16_000),
                (0, 0),
            ] {
                let plans = plan_windows(len, window, hop, 320, frames);
                let total = frames(len);
                let mut next = 0;
                for p in &plans {
                    assert_eq!(p.dest, next, "len {len} window {window}");
                    assert!(
                        p.take.end <= frames(p.end - p.start),
                        "len {len} window {window} hop {hop}: {plans:?}"
                    );
                    assert_eq!(p.start % 320, 0);
                    // frame alignment: local frame i of the window is global frame start/320 + i
                    assert_eq!(p.start / 320 + p.take.start, p.dest);
                    next += p.take.len();
                }
                assert_eq!(next, total, "len {len} window {window} hop {hop}");
            }
        }
    }

    #[test]
    fn frames_come_from_the_window_where_they_are_central() {
        // 10 s at 24 kHz, 5 s windows, 2.5 s hop: windows at 0, 2.5, 5 s.
        let plans = plan_windows(240_000, 120_000, 60_000, 320, frames);
        assert_eq!(plans.len(), 3);
        assert_eq!(plans[0].take.start, 0);
        // the first switch happens near the middle of the overlap (frame ~ 281 of 749)
        assert!((270..=290).contains(&plans[1].dest), "{plans:?}");
    }
}
