//! A loaded model and its one-shot calls: embed and tag PCM or an audio file, exactly as the
//! `mert embed --layers last` and `mert tag` commands do (same windows, resampler and head).

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use mert_core::Mert;
use mert_core::audio::StreamResampler;
use mert_core::embed::{EmbedOptions, FileSource, MemorySink, run_windows};
use mert_core::load::Checkpoint;
use mert_core::load::weights::load_module;
use mert_core::probe::{HeadConfig, SegmentMeans, TagHead};

use crate::error::{MertError, Result, audio, invalid, load};

/// The lowest PCM sample rate accepted, in Hz.
pub const MERT_MIN_SAMPLE_RATE: u32 = 1_000;
/// The highest PCM sample rate accepted, in Hz.
pub const MERT_MAX_SAMPLE_RATE: u32 = 1_000_000;
/// The most interleaved channels accepted.
pub const MERT_MAX_CHANNELS: u32 = 256;

/// Hidden states of the last layer, `[frames, dim]` row-major; `first_frame` places a stream's
/// chunk in the whole stream (0 for one-shot results). `tags` (stream chunks of a tagging
/// model only) are the probabilities of the chunk's own frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub first_frame: usize,
    pub frames: usize,
    pub dim: usize,
    pub data: Vec<f32>,
    pub tags: Option<Vec<Tag>>,
}

/// One tag and its sigmoid probability.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Tag {
    pub name: String,
    pub p: f32,
}

/// A tagging head stored in the model file (`mert probe`).
pub(crate) struct Tagger {
    pub config: HeadConfig,
    head: TagHead,
}

/// A MERT model on the CPU, with its tagging head when the file has one. Immutable after
/// loading, so one model serves any number of threads and sessions at once.
pub struct Model {
    pub(crate) mert: Mert,
    pub(crate) device: Device,
    pub(crate) tagger: std::result::Result<Tagger, String>,
    name: String,
    dim: usize,
}

impl Model {
    /// Load a kit `.safetensors` file (f32/f16/q8/q4) or a Hugging Face folder.
    pub fn from_path(path: &Path) -> Result<Self> {
        nonempty(path)?;
        let checkpoint = mert_core::load_path(path).map_err(load)?;
        Self::build(checkpoint, path.display().to_string())
    }

    /// Load a kit `.safetensors` file from memory (an app asset); `name` appears in messages.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        if bytes.is_empty() {
            return Err(MertError::ModelLoad(format!(
                "{name}: the model bytes are empty; expected a kit .safetensors file"
            )));
        }
        let checkpoint = mert_core::load::kit::from_bytes(bytes, name).map_err(load)?;
        Self::build(checkpoint, name.to_string())
    }

    fn build(checkpoint: Checkpoint, name: String) -> Result<Self> {
        let device = Device::flex();
        let head = checkpoint.head.clone();
        let (config, mert) = checkpoint.into_model(&device).map_err(load)?;
        let states = mert.encoder.layers.len() + 1;
        let tagger = match head {
            None => Err(format!(
                "{name}: the model has no tagging head (train one with `mert probe`)"
            )),
            Some(h) if h.config.features != "mert" => Err(format!(
                "{name}: the head was trained on `{}` features, not on this model",
                h.config.features
            )),
            Some(h) => {
                h.config.validate().map_err(load)?;
                if h.config.states != states {
                    return Err(MertError::ModelLoad(format!(
                        "{name}: mert.head states {} != the model's {states} hidden states",
                        h.config.states
                    )));
                }
                let config = h.config;
                let head = load_module(TagHead::init(&config, &device), h.tensors, &device)
                    .map_err(load)?;
                Ok(Tagger { config, head })
            }
        };
        Ok(Self {
            mert,
            device,
            tagger,
            name,
            dim: config.hidden_size,
        })
    }

    /// Where the model came from (path or the name given with the bytes).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The model's sample rate (audio is resampled to it).
    pub fn sample_rate(&self) -> u32 {
        self.mert.sample_rate
    }

    /// The tag names of the head, in the head's order (empty without a head).
    pub fn tag_names(&self) -> Vec<String> {
        self.tagger
            .as_ref()
            .map(|t| t.config.tags.clone())
            .unwrap_or_default()
    }

    pub(crate) fn tagger(&self) -> Result<&Tagger> {
        self.tagger
            .as_ref()
            .map_err(|why| MertError::State(why.clone()))
    }

    /// Embed interleaved PCM: the last hidden layer, as `mert embed --layers last`.
    pub fn embed_pcm(&self, pcm: &[f32], sample_rate: u32, channels: u32) -> Result<Embedding> {
        let samples = self.to_model_rate(pcm, sample_rate, channels)?;
        let total = samples.len();
        let mut source = Some(samples);
        self.embed_source(&mut || Ok(source.take()), total)
    }

    /// Embed an audio file (any format the kit decodes), streamed in bounded memory.
    pub fn embed_file(&self, path: &Path) -> Result<Embedding> {
        nonempty(path)?;
        let (mut source, total) = FileSource::open(path, self.mert.sample_rate).map_err(audio)?;
        self.embed_source(&mut || source.next_chunk(), total)
            .map_err(|e| naming(path, e))
    }

    fn embed_source(
        &self,
        source: &mut mert_core::embed::SampleSource<'_>,
        total: usize,
    ) -> Result<Embedding> {
        let last = self.mert.encoder.layers.len();
        let mut sink = MemorySink { embedding: None };
        let options = EmbedOptions::default();
        run_windows(
            &self.mert,
            source,
            total,
            &options,
            &[last],
            &self.device,
            &mut sink,
        )
        .map_err(audio)?;
        let e = sink
            .embedding
            .ok_or_else(|| MertError::Audio("no window produced frames".into()))?;
        Ok(Embedding {
            first_frame: 0,
            frames: e.frames,
            dim: e.dim,
            data: e.data,
            tags: None,
        })
    }

    /// Tag interleaved PCM: every tag of the head by falling probability, as `mert tag`.
    pub fn tag_pcm(&self, pcm: &[f32], sample_rate: u32, channels: u32) -> Result<Vec<Tag>> {
        let tagger = self.tagger()?;
        let samples = self.to_model_rate(pcm, sample_rate, channels)?;
        let total = samples.len();
        let mut source = Some(samples);
        self.tag_source(tagger, &mut || Ok(source.take()), total)
    }

    /// Tag an audio file, streamed in bounded memory.
    pub fn tag_file(&self, path: &Path) -> Result<Vec<Tag>> {
        nonempty(path)?;
        let tagger = self.tagger()?;
        let (mut source, total) = FileSource::open(path, self.mert.sample_rate).map_err(audio)?;
        self.tag_source(tagger, &mut || source.next_chunk(), total)
            .map_err(|e| naming(path, e))
    }

    fn tag_source(
        &self,
        tagger: &Tagger,
        source: &mut mert_core::embed::SampleSource<'_>,
        total: usize,
    ) -> Result<Vec<Tag>> {
        let states: Vec<usize> = (0..self.mert.encoder.layers.len() + 1).collect();
        let mut sink = SegmentMeans::new(0);
        run_windows(
            &self.mert,
            source,
            total,
            &tagger.options(),
            &states,
            &self.device,
            &mut sink,
        )
        .map_err(audio)?;
        self.tags_of(tagger, sink.mean())
    }

    /// Head probabilities for one pooled `[states * dim]` vector, sorted as `mert tag` sorts.
    pub(crate) fn tags_of(&self, tagger: &Tagger, pooled: Vec<f32>) -> Result<Vec<Tag>> {
        let (s, d) = (tagger.config.states, tagger.config.dim);
        if pooled.len() != s * d {
            return Err(MertError::Internal(format!(
                "pooled features hold {} values, the head expects {s} x {d}",
                pooled.len()
            )));
        }
        let x = Tensor::<3>::from_data(TensorData::new(pooled, [1, s, d]), &self.device);
        let probs = tagger
            .head
            .probabilities(&tagger.config, x)
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| MertError::Internal(format!("cannot read the head output: {e:?}")))?;
        let mut tags: Vec<Tag> = tagger
            .config
            .tags
            .iter()
            .zip(probs)
            .map(|(name, p)| Tag {
                name: name.clone(),
                p,
            })
            .collect();
        tags.sort_by(|a, b| b.p.total_cmp(&a.p));
        Ok(tags)
    }

    /// Downmix interleaved PCM (channel mean, as the decoder does) and resample it.
    fn to_model_rate(&self, pcm: &[f32], sample_rate: u32, channels: u32) -> Result<Vec<f32>> {
        let mono = downmix(pcm, sample_rate, channels)?;
        let mut r = StreamResampler::new(sample_rate, self.mert.sample_rate).map_err(audio)?;
        let mut out = r.push(&mono).map_err(audio)?;
        out.extend(r.finish().map_err(audio)?);
        Ok(out)
    }
}

impl Tagger {
    /// The windows and normalisation the head was trained with.
    pub fn options(&self) -> EmbedOptions {
        EmbedOptions {
            normalize: self.config.normalize,
            window_seconds: self.config.window_seconds,
            hop_seconds: None,
        }
    }
}

/// Check a PCM format the caller states.
pub(crate) fn check_format(sample_rate: u32, channels: u32) -> Result<()> {
    if !(MERT_MIN_SAMPLE_RATE..=MERT_MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(invalid(format!(
            "sample_rate {sample_rate}: expected {MERT_MIN_SAMPLE_RATE}..={MERT_MAX_SAMPLE_RATE} Hz"
        )));
    }
    if !(1..=MERT_MAX_CHANNELS).contains(&channels) {
        return Err(invalid(format!(
            "channels {channels}: expected 1..={MERT_MAX_CHANNELS}"
        )));
    }
    Ok(())
}

/// Interleaved frames to mono (the mean of the channels), refusing non-finite samples and a
/// buffer that is not a whole number of frames.
fn nonempty(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(invalid("path is empty"));
    }
    Ok(())
}

/// An audio error found while running a file (too short, ended early) names the file.
fn naming(path: &Path, e: MertError) -> MertError {
    let name = path.display().to_string();
    match e {
        MertError::Audio(m) if !m.contains(&name) => MertError::Audio(format!("{name}: {m}")),
        other => other,
    }
}

pub(crate) fn downmix(pcm: &[f32], sample_rate: u32, channels: u32) -> Result<Vec<f32>> {
    check_format(sample_rate, channels)?;
    let ch = channels as usize;
    if !pcm.len().is_multiple_of(ch) {
        return Err(invalid(format!(
            "pcm holds {} samples, not a whole number of {ch}-channel frames",
            pcm.len()
        )));
    }
    if let Some(i) = pcm.iter().position(|v| !v.is_finite()) {
        return Err(MertError::Audio(format!(
            "pcm sample {i} is {}; expected finite samples",
            pcm[i]
        )));
    }
    Ok(pcm
        .chunks_exact(ch)
        .map(mert_core::audio::downmix_frame)
        .collect())
}
