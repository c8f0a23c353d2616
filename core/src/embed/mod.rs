//! From mono audio to hidden states: resample, normalise, run the model over the whole clip
//! or over overlapping windows, and stitch the windows' frames so that each output frame comes
//! from the window where it is most central. The output has the whole-clip frame count,
//! `floor((L - 400) / 320) + 1`.

use burn::tensor::Device;

use crate::audio::{AudioStream, MonoAudio, StreamResampler};
use crate::error::{MertError, Result};
use crate::model::Mert;

mod stream;
mod windows;

pub use stream::{FrameSink, MeanSink, SampleSource, WindowRun, run_windows};
pub use windows::{WindowPlan, plan_windows};

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

/// Collects the frames into an [`Embedding`] in memory.
pub struct MemorySink {
    pub embedding: Option<Embedding>,
}

impl FrameSink for MemorySink {
    fn begin(&mut self, layers: usize, frames: usize, dim: usize) -> Result<()> {
        self.embedding = Some(Embedding {
            layers,
            frames,
            dim,
            data: vec![0.0; layers * frames * dim],
        });
        Ok(())
    }

    fn write(&mut self, dest: usize, n: usize, data: &[f32]) -> Result<()> {
        let Some(e) = self.embedding.as_mut() else {
            return Err(MertError::Invalid("frames written before begin".into()));
        };
        for l in 0..e.layers {
            let src = &data[l * n * e.dim..(l + 1) * n * e.dim];
            e.data[(l * e.frames + dest) * e.dim..][..n * e.dim].copy_from_slice(src);
        }
        Ok(())
    }
}

/// Run `model` on `audio` (any rate: resampled to the model's) and return every hidden state.
pub fn embed_audio(
    model: &Mert,
    audio: &MonoAudio,
    options: &EmbedOptions,
    device: &Device,
) -> Result<Embedding> {
    let all: Vec<usize> = (0..model.encoder.layers.len() + 1).collect();
    embed_audio_layers(model, audio, options, &all, device)
}

/// As [`embed_audio`], keeping only the hidden states listed in `layers` (the others are
/// never read back from the device).
pub fn embed_audio_layers(
    model: &Mert,
    audio: &MonoAudio,
    options: &EmbedOptions,
    layers: &[usize],
    device: &Device,
) -> Result<Embedding> {
    let mut r = StreamResampler::new(audio.sample_rate, model.sample_rate)?;
    let mut samples = r.push(&audio.samples)?;
    samples.extend(r.finish()?);
    let total = samples.len();
    let mut source = Some(samples);
    let mut sink = MemorySink { embedding: None };
    run_windows(
        model,
        &mut || Ok(source.take()),
        total,
        options,
        layers,
        device,
        &mut sink,
    )?;
    sink.embedding
        .ok_or_else(|| MertError::Invalid("no window produced frames".into()))
}

/// Bytes shared by the two decoding passes without a copy.
#[derive(Clone)]
struct Shared(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Decoded, downmixed audio from a file, resampled to `sample_rate` on the fly, in chunks.
pub struct FileSource {
    stream: AudioStream,
    resampler: Option<StreamResampler>,
}

impl FileSource {
    /// Open `path` and count its samples at `sample_rate` with a first decoding pass, so the
    /// windows can be planned before any audio is held (memory stays one window deep).
    pub fn open(path: &std::path::Path, sample_rate: u32) -> Result<(Self, usize)> {
        // a pipe or standard input cannot be read twice: it is held in memory
        if let Some(bytes) = crate::audio::decode::read_if_stream(path)? {
            return Self::from_shared(bytes, &path.display().to_string(), sample_rate, true);
        }
        Self::counted(&path.display().to_string(), sample_rate, || {
            AudioStream::open(path)
        })
    }

    /// The same for a file held in memory (a browser's `File`, an app's asset); `name` names it
    /// in errors and its extension is the format hint. The bytes are shared, not copied.
    pub fn from_bytes(bytes: Vec<u8>, name: &str, sample_rate: u32) -> Result<(Self, usize)> {
        Self::from_shared(bytes, name, sample_rate, false)
    }

    /// The same for any seekable source, opened afresh by `open` for each of the two passes
    /// (a browser's `File` read slice by slice): nothing is held beyond the decoder's buffer.
    pub fn from_sources(
        open: impl Fn() -> Result<Box<dyn crate::audio::decode::MediaSource>>,
        name: &str,
        sample_rate: u32,
    ) -> Result<(Self, usize)> {
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        Self::counted(name, sample_rate, || {
            AudioStream::from_source(open()?, ext.as_deref(), name)
        })
    }

    /// `piped`: the bytes came through a pipe, whose writer could not fill in the header's
    /// length (sox writes a placeholder), so that length is not checked.
    fn from_shared(
        bytes: Vec<u8>,
        name: &str,
        sample_rate: u32,
        piped: bool,
    ) -> Result<(Self, usize)> {
        let bytes = Shared(std::sync::Arc::new(bytes));
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        Self::counted(name, sample_rate, || {
            let cursor = std::io::Cursor::new(bytes.clone());
            let stream = AudioStream::from_source(Box::new(cursor), ext.as_deref(), name)?;
            Ok(if piped { stream.piped() } else { stream })
        })
    }

    /// Count the samples of one stream from `open`, then decode a second one.
    fn counted(
        name: &str,
        sample_rate: u32,
        open: impl Fn() -> Result<AudioStream>,
    ) -> Result<(Self, usize)> {
        let mut counter = open()?;
        let mut n = 0u64;
        while let Some(chunk) = counter.next_chunk()? {
            n += chunk.len() as u64;
        }
        if n == 0 {
            return Err(MertError::audio(name, "no audio samples could be decoded"));
        }
        let from = counter.sample_rate();
        drop(counter);
        let total = (n * sample_rate as u64).div_ceil(from as u64) as usize;
        // the counting pass has warned about damage already
        let stream = open()?.without_warnings();
        Ok((
            Self {
                resampler: Some(StreamResampler::new(from, sample_rate)?),
                stream,
            },
            total,
        ))
    }

    /// The next chunk at the model's rate; `None` once the stream and the resampler are done.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<f32>>> {
        loop {
            let Some(resampler) = self.resampler.as_mut() else {
                return Ok(None);
            };
            match self.stream.next_chunk()? {
                Some(chunk) => {
                    let out = resampler.push(&chunk)?;
                    if !out.is_empty() {
                        return Ok(Some(out));
                    }
                }
                None => {
                    let last = self
                        .resampler
                        .take()
                        .map(|r| r.finish())
                        .transpose()?
                        .unwrap_or_default();
                    return Ok(if last.is_empty() { None } else { Some(last) });
                }
            }
        }
    }
}
