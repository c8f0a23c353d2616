//! Tagging an in-memory audio file with a kit model, exactly as `mert tag` does natively
//! (symphonia decode, resample to the model's rate, windows, per-window normalisation, the
//! model, time-mean of every hidden state, the tagging head), but with every read-back from the
//! device awaited, so the same code runs on WebGPU, where a blocking read traps.

use mert_core::audio::StreamResampler;
use mert_core::audio::decode::SAMPLE_RATES;
use mert_core::burn::tensor::{Device, Tensor, TensorData};
use mert_core::embed::{EmbedOptions, FileSource, SampleSource, WindowRun};
use mert_core::load::weights::load_module;
use mert_core::probe::{HeadConfig, SegmentMeans, TagHead};
use mert_core::{Mert, MertError};

/// What the page is told while a file is tagged.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The audio is decoded: its length in seconds and the model passes ahead.
    Decoded { seconds: f64, windows: usize },
    /// `done` of `total` model passes finished.
    Windows { done: usize, total: usize },
}

/// One tagged file: every tag with its probability, highest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Tags {
    pub tags: Vec<(String, f32)>,
    /// Length of the audio in seconds (for the real-time factor).
    pub seconds: f64,
    /// The taggram: consecutive segments `(start s, end s, probabilities in head order)`, as
    /// `mert tag --timeline` gives them.
    pub timeline: Vec<(f64, f64, Vec<f32>)>,
    /// The audio as the model saw it (mono, at the model's rate), for drawing.
    pub waveform: Waveform,
}

/// Peaks of the audio in equal buckets: enough to draw it at any screen width, few enough to
/// send to the page for a long file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Waveform {
    /// Buckets per second.
    pub rate: f64,
    pub min: Vec<f32>,
    pub max: Vec<f32>,
}

/// At most this many buckets, and none shorter than 10 ms.
const WAVEFORM_BUCKETS: usize = 4000;

/// Builds a [`Waveform`] from the chunks of audio as they are decoded.
struct WaveformSink {
    bucket: usize,
    filled: usize,
    wave: Waveform,
}

impl WaveformSink {
    fn new(total: usize, sample_rate: u32) -> Self {
        let bucket = (sample_rate as usize / 100)
            .max(total.div_ceil(WAVEFORM_BUCKETS))
            .max(1);
        Self {
            bucket,
            filled: 0,
            wave: Waveform {
                rate: sample_rate as f64 / bucket as f64,
                ..Waveform::default()
            },
        }
    }

    fn push(&mut self, samples: &[f32]) {
        for &x in samples {
            if self.filled == 0 {
                self.wave.min.push(x);
                self.wave.max.push(x);
            } else if let (Some(lo), Some(hi)) =
                (self.wave.min.last_mut(), self.wave.max.last_mut())
            {
                *lo = lo.min(x);
                *hi = hi.max(x);
            }
            self.filled = (self.filled + 1) % self.bucket;
        }
    }
}

/// A kit model with its tagging head, on one device.
pub struct Tagger {
    model: Mert,
    head: TagHead,
    config: HeadConfig,
    device: Device,
}

impl Tagger {
    /// Load a kit model file (any quantisation) with a tagging head onto `device`.
    pub fn from_bytes(bytes: &[u8], name: &str, device: &Device) -> Result<Self, String> {
        let checkpoint = mert_core::load::kit::from_bytes(bytes, name).map_err(one_line)?;
        let Some(head) = checkpoint.head.clone() else {
            return Err(format!(
                "{name}: the model has no tagging head (train one with `mert probe`)"
            ));
        };
        if head.config.features != "mert" {
            return Err(format!(
                "{name}: the head was trained on `{}` features, not on this model",
                head.config.features
            ));
        }
        let (_, model) = checkpoint.into_model(device).map_err(one_line)?;
        let config = head.config.clone();
        let head =
            load_module(TagHead::init(&config, device), head.tensors, device).map_err(one_line)?;
        Ok(Self {
            model,
            head,
            config,
            device: device.clone(),
        })
    }

    /// The tag names of the head, in its order.
    pub fn tag_names(&self) -> &[String] {
        &self.config.tags
    }

    /// The backbone (for timing it alone: `crate::bench`).
    pub fn model(&self) -> &Mert {
        &self.model
    }

    /// The head's settings (window length, normalisation).
    pub fn head_config(&self) -> &HeadConfig {
        &self.config
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Tag an audio file given as bytes (`name` is its file name, for the format hint and
    /// messages), and segments of `timeline` seconds (0: none). `progress` hears about
    /// decoding and every model pass.
    pub async fn tag(
        &self,
        audio: Vec<u8>,
        name: &str,
        timeline: f64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Tags, String> {
        let (mut source, total) =
            FileSource::from_bytes(audio, name, self.model.sample_rate).map_err(one_line)?;
        self.run(&mut || source.next_chunk(), total, name, timeline, progress)
            .await
    }

    /// As [`Self::tag`], for a file read through `open` (called once per decoding pass), so
    /// its bytes are never all in memory.
    pub async fn tag_sources(
        &self,
        open: impl Fn() -> mert_core::Result<Box<dyn mert_core::audio::decode::MediaSource>>,
        name: &str,
        timeline: f64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Tags, String> {
        let (mut source, total) =
            FileSource::from_sources(open, name, self.model.sample_rate).map_err(one_line)?;
        self.run(&mut || source.next_chunk(), total, name, timeline, progress)
            .await
    }

    /// Tag audio the browser decoded (files the kit's readers refuse): interleaved
    /// samples of `channels` channels at `sample_rate`, downmixed and resampled as a decoded
    /// file is.
    pub async fn tag_pcm(
        &self,
        interleaved: &[f32],
        channels: usize,
        sample_rate: u32,
        name: &str,
        timeline: f64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Tags, String> {
        if !SAMPLE_RATES.contains(&sample_rate) || channels == 0 {
            return Err(format!(
                "{name}: {channels} channels at {sample_rate} Hz: expected at least one channel at {} to {} Hz",
                SAMPLE_RATES.start(),
                SAMPLE_RATES.end()
            ));
        }
        let mono: Vec<f32> = interleaved
            .chunks_exact(channels)
            .map(mert_core::audio::downmix_frame)
            .collect();
        let mut resampler =
            StreamResampler::new(sample_rate, self.model.sample_rate).map_err(one_line)?;
        let mut samples = resampler.push(&mono).map_err(one_line)?;
        samples.extend(resampler.finish().map_err(one_line)?);
        let total = samples.len();
        let mut samples = Some(samples);
        self.run(&mut || Ok(samples.take()), total, name, timeline, progress)
            .await
    }

    /// The windows, the pooled features and the head, with every read-back awaited.
    async fn run(
        &self,
        source: &mut SampleSource<'_>,
        total: usize,
        name: &str,
        timeline: f64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Tags, String> {
        if !(timeline.is_finite() && timeline >= 0.0) {
            return Err(format!(
                "timeline {timeline}: expected a non-negative number of seconds"
            ));
        }
        let options = EmbedOptions {
            normalize: self.config.normalize,
            window_seconds: self.config.window_seconds,
            hop_seconds: None,
        };
        let states: Vec<usize> = (0..self.model.encoder.layers.len() + 1).collect();
        let mut run = WindowRun::new(&self.model, total, &options, &states)
            .map_err(|e| format!("{name}: {}", one_line(e)))?;
        let windows = run.windows();
        let seconds = total as f64 / self.model.sample_rate as f64;
        progress(Progress::Decoded { seconds, windows });
        // Segments as `mert tag --timeline` cuts them.
        let frame_rate = self.model.frame_rate();
        let mut sink = SegmentMeans::seconds(timeline, frame_rate);
        let mut wave = WaveformSink::new(total, self.model.sample_rate);
        let mut tapped = || {
            let chunk = source()?;
            if let Some(c) = &chunk {
                wave.push(c);
            }
            Ok(chunk)
        };
        while let Some(kept) = run
            .forward_next(&self.model, &mut tapped, &self.device)
            .map_err(|e| format!("{name}: {}", one_line(e)))?
        {
            let data = read(kept).await?;
            run.write(data, &mut sink).map_err(one_line)?;
            progress(Progress::Windows {
                done: run.windows_done(),
                total: windows,
            });
        }
        // The clip and its segments through the head in one batch: one read-back.
        let segments = sink.segment_means();
        let mut pooled = sink.mean();
        for (_, _, m) in &segments {
            pooled.extend_from_slice(m);
        }
        let mut probs = self.probabilities(pooled, 1 + segments.len()).await?;
        let n_tags = self.config.tags.len();
        let timeline = segments
            .iter()
            .zip(probs.split_off(n_tags).chunks_exact(n_tags))
            .map(|((start, n, _), p)| {
                let (a, b) = (*start as f64 / frame_rate, (start + n) as f64 / frame_rate);
                (a, b, p.to_vec())
            })
            .collect();
        let mut tags: Vec<(String, f32)> = self.config.tags.iter().cloned().zip(probs).collect();
        tags.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(Tags {
            tags,
            seconds,
            timeline,
            waveform: wave.wave,
        })
    }

    /// Probabilities `[n, tags]` for `n` feature vectors `[states * dim]`, row-major.
    async fn probabilities(&self, pooled: Vec<f32>, n: usize) -> Result<Vec<f32>, String> {
        let (s, d) = (self.config.states, self.config.dim);
        if pooled.len() != n * s * d {
            return Err(format!(
                "the model gives {} features, the head expects {n} x {s} x {d}",
                pooled.len()
            ));
        }
        let x = Tensor::<3>::from_data(TensorData::new(pooled, [n, s, d]), &self.device);
        let p = read(self.head.probabilities(&self.config, x)).await?;
        p.try_into_vec::<f32>()
            .map_err(|e| format!("cannot read the probabilities: {e:?}"))
    }
}

/// The one way this crate reads device memory: asynchronously.
pub(crate) async fn read<const D: usize>(t: Tensor<D>) -> Result<TensorData, String> {
    t.into_data_async()
        .await
        .map_err(|e| format!("cannot read the model output: {e:?}"))
}

pub(crate) fn one_line(e: MertError) -> String {
    e.to_string().lines().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use mert_core::burn::tensor::{Device, Tensor, TensorData};
    use mert_core::embed::{EmbedOptions, run_windows};
    use mert_core::probe::SegmentMeans;

    use super::*;

    fn root() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
    }

    /// Drive a future whose awaits resolve at once (Flex read-backs do).
    fn ready<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a CPU read-back did not resolve at once"),
        }
    }

    #[test]
    fn tags_bytes_as_the_native_file_path_does() {
        let device = Device::flex();
        let model =
            std::fs::read(root().join("models/default/mert-tag-default.safetensors")).unwrap();
        let tagger = Tagger::from_bytes(&model, "default", &device).unwrap();
        let wav = root().join("examples/audio/phrase.wav");
        let mut events = Vec::new();
        let tags = ready(
            tagger.tag(std::fs::read(&wav).unwrap(), "phrase.wav", 1.0, &mut |p| {
                events.push(p)
            }),
        )
        .unwrap();
        assert!((tags.seconds - 6.0).abs() < 1e-3, "{}", tags.seconds);
        // 10 ms buckets over the 6 s clip, each a real range of the audio.
        let wave = &tags.waveform;
        assert_eq!(
            (wave.rate, wave.min.len(), wave.max.len()),
            (100.0, 600, 600)
        );
        assert!(wave.min.iter().zip(&wave.max).all(|(lo, hi)| lo <= hi));
        assert!(wave.max.iter().any(|&x| x > 0.01));
        assert_eq!(tags.tags.len(), tagger.tag_names().len());
        assert!(tags.tags.windows(2).all(|w| w[0].1 >= w[1].1));
        let Some(Progress::Decoded { windows, .. }) = events.first().cloned() else {
            panic!("{events:?}");
        };
        assert_eq!(events.len(), windows + 1);

        // The synchronous native path: file source, run_windows, head read back at once.
        let (mut source, total) = FileSource::open(&wav, tagger.model.sample_rate).unwrap();
        let options = EmbedOptions {
            normalize: tagger.config.normalize,
            window_seconds: tagger.config.window_seconds,
            hop_seconds: None,
        };
        let states: Vec<usize> = (0..tagger.model.encoder.layers.len() + 1).collect();
        let mut sink = SegmentMeans::new(75);
        run_windows(
            &tagger.model,
            &mut || source.next_chunk(),
            total,
            &options,
            &states,
            &device,
            &mut sink,
        )
        .unwrap();
        let (s, d) = (tagger.config.states, tagger.config.dim);
        let x = Tensor::<3>::from_data(TensorData::new(sink.mean(), [1, s, d]), &device);
        let native: Vec<f32> = tagger
            .head
            .probabilities(&tagger.config, x)
            .into_data()
            .try_into_vec()
            .unwrap();
        for (tag, p) in &tags.tags {
            let i = tagger.tag_names().iter().position(|t| t == tag).unwrap();
            assert!((p - native[i]).abs() < 1e-6, "{tag}: {p} vs {}", native[i]);
        }
        // The taggram: one-second segments, each as the head gives it alone.
        let segments = sink.segment_means();
        assert_eq!(tags.timeline.len(), segments.len());
        assert_eq!((tags.timeline[0].0, tags.timeline[0].1), (0.0, 1.0));
        for ((_, _, p), (_, _, m)) in tags.timeline.iter().zip(segments) {
            let x = Tensor::<3>::from_data(TensorData::new(m, [1, s, d]), &device);
            let q: Vec<f32> = tagger
                .head
                .probabilities(&tagger.config, x)
                .into_data()
                .try_into_vec()
                .unwrap();
            assert!(p.iter().zip(&q).all(|(a, b)| (a - b).abs() < 1e-6));
        }
    }

    #[test]
    fn browser_decoded_pcm_tags_as_the_file_does() {
        let device = Device::flex();
        let model =
            std::fs::read(root().join("models/default/mert-tag-default.safetensors")).unwrap();
        let tagger = Tagger::from_bytes(&model, "default", &device).unwrap();
        let wav = root().join("examples/audio/phrase.wav");
        let from_file =
            ready(tagger.tag(std::fs::read(&wav).unwrap(), "phrase.wav", 1.0, &mut |_| {}))
                .unwrap();
        // The same audio as the browser hands it over: interleaved channels at the file's rate.
        let mut stream = mert_core::audio::AudioStream::open(&wav).unwrap();
        let mut mono = Vec::new();
        while let Some(chunk) = stream.next_chunk().unwrap() {
            mono.extend(chunk);
        }
        let stereo: Vec<f32> = mono.iter().flat_map(|&x| [x, x]).collect();
        let rate = stream.sample_rate();
        let from_pcm =
            ready(tagger.tag_pcm(&stereo, 2, rate, "phrase.wav", 1.0, &mut |_| {})).unwrap();
        assert_eq!(from_file.tags.len(), from_pcm.tags.len());
        for ((a, p), (b, q)) in from_file.tags.iter().zip(&from_pcm.tags) {
            assert_eq!(a, b);
            assert!((p - q).abs() < 1e-5, "{a}: {p} vs {q}");
        }
        let e = ready(tagger.tag_pcm(&stereo, 0, rate, "x.opus", 0.0, &mut |_| {})).unwrap_err();
        assert!(e.contains("x.opus"), "{e}");
    }

    #[test]
    fn bad_inputs_are_one_line_errors() {
        let device = Device::flex();
        let model =
            std::fs::read(root().join("models/default/mert-tag-default.safetensors")).unwrap();
        let tagger = Tagger::from_bytes(&model, "default", &device).unwrap();
        for (bytes, name) in [(b"not audio".to_vec(), "x.wav"), (Vec::new(), "empty.mp3")] {
            let e = ready(tagger.tag(bytes, name, 0.0, &mut |_| {})).unwrap_err();
            assert!(e.contains(name) && !e.contains('\n'), "{e}");
        }
        let e = Tagger::from_bytes(b"garbage", "garbage.safetensors", &device)
            .err()
            .unwrap();
        assert!(
            e.contains("garbage.safetensors") && !e.contains('\n'),
            "{e}"
        );
        let dir = root().join("tests/fixtures/mert_tiny");
        let plain = mert_core::load_path(&dir).unwrap();
        let bytes = mert_core::load::kit::to_bytes(&plain).unwrap();
        let e = Tagger::from_bytes(&bytes, "tiny", &device).err().unwrap();
        assert!(e.contains("no tagging head"), "{e}");
    }
}
