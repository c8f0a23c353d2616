//! `Mert`: the whole encoder, raw audio in, every hidden state out. Mirrors `HubertModel`
//! (and so MERT's `MERTModel`, which adds nothing used by the released checkpoints).

use burn::module::Module;
use burn::tensor::{Bool, Device, Int, Tensor};

use super::config::MertConfig;
use super::dense::Dense;
use super::encoder::Encoder;
use super::feature_encoder::{FeatureEncoder, FeatureProjection};

/// What one forward pass gives.
#[derive(Debug, Clone)]
pub struct MertOutput {
    /// `layers + 1` tensors, each `[batch, frames, hidden]` (the reference `hidden_states`).
    pub hidden_states: Vec<Tensor<3>>,
    /// Conv encoder output `[batch, frames, conv_channels]` (the reference `extract_features`).
    pub extract_features: Tensor<3>,
}

impl MertOutput {
    /// The final hidden state (the reference `last_hidden_state`).
    pub fn last_hidden_state(&self) -> Option<&Tensor<3>> {
        self.hidden_states.last()
    }
}

/// Frames of the conv stack computed at once for a long clip (30 s at 50 Hz): its 512-channel
/// layer-0 output is then at most 240 MB.
pub const FEATURE_CHUNK_FRAMES: usize = 1500;

#[derive(Module, Debug)]
pub struct Mert {
    pub feature_extractor: FeatureEncoder,
    pub feature_projection: FeatureProjection,
    pub encoder: Encoder,
    /// The audio rate the model expects (`MertConfig::sample_rate`).
    pub sample_rate: u32,
}

impl Mert {
    /// Output frames per second of audio (75 for MERT-v1: 24 kHz over a hop of 320).
    pub fn frame_rate(&self) -> f64 {
        self.sample_rate as f64 / self.feature_extractor.hop_and_field().0 as f64
    }

    /// Build a randomly initialised model of this shape (weights come from a loader).
    pub fn init(config: &MertConfig, device: &Device) -> Self {
        Self {
            feature_extractor: FeatureEncoder::init(config, device),
            feature_projection: FeatureProjection::init(config, device),
            encoder: Encoder::init(config, device),
            sample_rate: config.sample_rate,
        }
    }

    /// Every Linear layer with its reference key (`encoder.layers.0.attention.q_proj`, ...).
    pub fn dense_layers_mut(&mut self) -> Vec<(String, &mut Dense)> {
        let mut out = vec![(
            "feature_projection.projection".to_string(),
            &mut self.feature_projection.projection,
        )];
        for (i, layer) in self.encoder.layers.iter_mut().enumerate() {
            let a = &mut layer.attention;
            let f = &mut layer.feed_forward;
            let at = |name: &str| format!("encoder.layers.{i}.attention.{name}");
            let ff = |name: &str| format!("encoder.layers.{i}.feed_forward.{name}");
            out.push((at("q_proj"), &mut a.q_proj));
            out.push((at("k_proj"), &mut a.k_proj));
            out.push((at("v_proj"), &mut a.v_proj));
            out.push((at("out_proj"), &mut a.out_proj));
            out.push((ff("intermediate_dense"), &mut f.intermediate_dense));
            out.push((ff("output_dense"), &mut f.output_dense));
        }
        out
    }

    /// `audio`: `[batch, samples]` at the model's rate, already normalised if the caller wants
    /// the reference preprocessing. All rows must be at least one frame (400 samples) long.
    pub fn forward(&self, audio: Tensor<2>) -> MertOutput {
        self.forward_masked(audio, None)
    }

    /// As [`Mert::forward`], for a padded batch: `lengths[b]` is the number of real samples of
    /// row `b`. Frames past each row's conv length are zeroed and masked as attention keys, as
    /// the reference does with an `attention_mask`. Padding still enters the layer-0 GroupNorm
    /// statistics (as in the reference), so a padded row differs slightly from running it alone.
    pub fn forward_masked(&self, audio: Tensor<2>, lengths: Option<&[usize]>) -> MertOutput {
        let device = audio.device();
        // [batch, frames, channels]; a long clip in chunks, so that memory past the conv
        // stack grows with frames, not samples
        let extract_features = self
            .feature_extractor
            .forward_frames(audio, FEATURE_CHUNK_FRAMES);
        let [batch, frames, _] = extract_features.dims();
        let pad_mask = lengths.map(|lengths| self.frame_pad_mask(lengths, batch, frames, &device));
        let h = self.feature_projection.forward(extract_features.clone());
        let hidden_states = self.encoder.forward(h, pad_mask.as_ref());
        MertOutput {
            hidden_states,
            extract_features,
        }
    }

    /// Only the hidden states listed in `wanted` (indices into `hidden_states`, in that order),
    /// for an unpadded batch: the others are never kept, which on a long clip in one pass is
    /// most of the memory past the conv stack.
    pub fn forward_layers(&self, audio: Tensor<2>, wanted: &[usize]) -> Vec<Tensor<3>> {
        let features = self
            .feature_extractor
            .forward_frames(audio, FEATURE_CHUNK_FRAMES);
        let h = self.feature_projection.forward(features);
        self.encoder.forward_selected(h, None, wanted)
    }

    /// `[batch, frames]` mask, true at frames beyond each row's valid conv output length.
    fn frame_pad_mask(
        &self,
        lengths: &[usize],
        batch: usize,
        frames: usize,
        device: &Device,
    ) -> Tensor<2, Bool> {
        let valid: Vec<i64> = (0..batch)
            .map(|b| {
                let len = lengths.get(b).copied().unwrap_or(usize::MAX);
                self.frames_for(len).min(frames) as i64
            })
            .collect();
        let valid = Tensor::<1, Int>::from_data(valid.as_slice(), device).reshape([batch, 1]);
        let index = Tensor::<1, Int>::arange(0..frames as i64, device).reshape([1, frames]);
        index.greater_equal(valid)
    }

    /// Conv output length for `samples` input samples, read off the model's own convs.
    pub fn frames_for(&self, samples: usize) -> usize {
        self.feature_extractor.frames_for(samples)
    }
}
