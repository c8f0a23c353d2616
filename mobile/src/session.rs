//! A streaming session: PCM chunks of any size go in as they arrive; each time a window's
//! frames are final they come out as an [`Embedding`] chunk (with the chunk's tags for a
//! tagging model); `finish` flushes the tail and gives the whole stream's tags. Concatenated,
//! the chunks equal the one-shot embedding of the same audio, and the whole-stream tags equal
//! the one-shot tags, because the same windows run through the same model (see [`crate::plan`]).
//!
//! Memory: the audio of about one window plus two hops, the queued chunks the caller has
//! not taken yet, and one `[states, dim]` running sum.

use std::collections::VecDeque;
use std::sync::Arc;

use mert_core::audio::StreamResampler;
use mert_core::embed::{EmbedOptions, FrameSink, MemorySink, WindowPlan, run_windows};
use mert_core::probe::SegmentMeans;

use crate::error::{MertError, Result, audio};
use crate::model::{Embedding, Model, Tag, check_format, downmix};
use crate::plan::StreamPlan;

enum State {
    Open(StreamResampler),
    Finished {
        tags: Option<Vec<Tag>>,
    },
    /// A call failed part-way; the message of that failure.
    Failed(String),
}

/// One stream of PCM at a fixed rate and channel count. Single-threaded: the C ABI and the
/// bindings serialise access (the C caller must not call one session from two threads).
pub struct Session {
    model: Arc<Model>,
    sample_rate: u32,
    channels: u32,
    state: State,
    plan: StreamPlan,
    normalize: bool,
    /// Hidden states run per window: the last one, or all of them for a tagging model.
    states: Vec<usize>,
    /// Samples `[buf_start, buf_start + buf.len())` of the stream at the model's rate.
    buf: Vec<f32>,
    buf_start: usize,
    received: usize,
    /// Regular windows run so far, and frames handed out.
    done: usize,
    emitted: usize,
    /// Whole-stream sums of every hidden state (tagging models).
    pooled: Option<SegmentMeans>,
    pending: VecDeque<Embedding>,
}

impl Session {
    /// Start a stream of `channels`-channel interleaved PCM at `sample_rate`.
    pub fn new(model: Arc<Model>, sample_rate: u32, channels: u32) -> Result<Self> {
        check_format(sample_rate, channels)?;
        let resampler = StreamResampler::new(sample_rate, model.sample_rate()).map_err(audio)?;
        let (options, tagging) = match model.tagger() {
            Ok(t) => (t.options(), true),
            Err(_) => (EmbedOptions::default(), false),
        };
        let rate = model.sample_rate() as f64;
        let window = (options.window_seconds * rate).round() as usize;
        let hop = options
            .hop_seconds
            .map_or(window / 2, |h| (h * rate).round() as usize);
        let mert = &model.mert;
        if window > 0 && mert.frames_for(window) == 0 {
            return Err(MertError::State(format!(
                "{}: the window of {} s is shorter than one frame",
                model.name(),
                options.window_seconds
            )));
        }
        let frame_hop = mert
            .feature_extractor
            .conv_layers
            .iter()
            .map(|l| l.conv.stride)
            .product::<usize>();
        let plan = StreamPlan::new(window, hop, frame_hop, &|n| mert.frames_for(n));
        let layers = mert.encoder.layers.len();
        let states = if tagging {
            (0..=layers).collect()
        } else {
            vec![layers]
        };
        let pooled = tagging.then(|| {
            let mut s = SegmentMeans::new(0);
            // the frame count is only used for segments, which are off
            let _ = s.begin(layers + 1, 0, model.dim());
            s
        });
        Ok(Self {
            sample_rate,
            channels,
            state: State::Open(resampler),
            plan,
            normalize: options.normalize,
            states,
            buf: Vec::new(),
            buf_start: 0,
            received: 0,
            done: 0,
            emitted: 0,
            pooled,
            pending: VecDeque::new(),
            model,
        })
    }

    /// The rate and channel count this session was opened with.
    pub fn format(&self) -> (u32, u32) {
        (self.sample_rate, self.channels)
    }

    /// Feed interleaved PCM (a whole number of frames, any count, finite samples). Returns the
    /// number of chunks now waiting in [`Self::next_chunk`]. A refused chunk (bad length, NaN)
    /// leaves the session as it was; a failure inside the model ends the session.
    pub fn push(&mut self, pcm: &[f32]) -> Result<usize> {
        if !matches!(self.state, State::Open(_)) {
            return Err(self.not_open());
        }
        let mono = downmix(pcm, self.sample_rate, self.channels)?;
        let samples = match &mut self.state {
            State::Open(resampler) => resampler.push(&mono).map_err(audio),
            _ => return Err(self.not_open()),
        };
        let step = samples.and_then(|samples| {
            self.received += samples.len();
            self.buf.extend_from_slice(&samples);
            self.run_ready()
        });
        self.fail_on_error(step)?;
        Ok(self.pending.len())
    }

    /// End the stream: run the remaining windows and, for a tagging model, tag the whole
    /// stream. Returns the number of chunks waiting.
    pub fn finish(&mut self) -> Result<usize> {
        let state = std::mem::replace(&mut self.state, State::Failed(String::new()));
        let State::Open(resampler) = state else {
            self.state = state;
            return Err(self.not_open());
        };
        let step = resampler.finish().map_err(audio).and_then(|tail| {
            self.received += tail.len();
            self.buf.extend_from_slice(&tail);
            self.run_tail()
        });
        let tags = self.fail_on_error(step)?;
        self.state = State::Finished { tags };
        Ok(self.pending.len())
    }

    /// The oldest chunk not yet taken, if any.
    pub fn next_chunk(&mut self) -> Option<Embedding> {
        self.pending.pop_front()
    }

    /// Frames handed out so far (all of them, once finished).
    pub fn frames(&self) -> usize {
        self.emitted
    }

    /// Whether `finish` succeeded.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished { .. })
    }

    /// The whole stream's tags (after `finish`, tagging models only).
    pub fn tags(&self) -> Result<Vec<Tag>> {
        match &self.state {
            State::Finished { tags: Some(t) } => Ok(t.clone()),
            State::Finished { tags: None } => Err(MertError::State(
                self.model
                    .tagger()
                    .err()
                    .map_or(String::new(), |e| e.to_string()),
            )),
            State::Open(_) => Err(MertError::State(
                "the stream is not finished; call finish first".into(),
            )),
            State::Failed(why) => Err(MertError::State(format!(
                "the session failed earlier ({why})"
            ))),
        }
    }

    fn not_open(&self) -> MertError {
        MertError::State(match &self.state {
            State::Failed(why) => format!("the session failed earlier ({why})"),
            _ => "the stream is already finished".to_string(),
        })
    }

    fn fail_on_error<T>(&mut self, step: Result<T>) -> Result<T> {
        step.inspect_err(|e| self.state = State::Failed(e.to_string()))
    }

    /// Run every regular window the samples received so far make final.
    fn run_ready(&mut self) -> Result<()> {
        while let Some(p) = self.plan.ready(self.done, self.received) {
            self.run(&p)?;
            self.done += 1;
            let keep = self.plan.keep_from(self.done);
            if keep > self.buf_start {
                self.buf
                    .drain(..(keep - self.buf_start).min(self.buf.len()));
                self.buf_start = keep;
            }
        }
        Ok(())
    }

    /// Run the tail windows once the length is known; the whole-stream tags if tagging.
    fn run_tail(&mut self) -> Result<Option<Vec<Tag>>> {
        let mert = &self.model.mert;
        if mert.frames_for(self.received) == 0 {
            return Err(MertError::Audio(format!(
                "the stream is too short: {} samples at the model's rate {} Hz, not one frame",
                self.received,
                self.model.sample_rate()
            )));
        }
        let tail = self
            .plan
            .tail(self.received, self.done, self.emitted, &|n| {
                mert.frames_for(n)
            });
        for p in &tail {
            self.run(p)?;
        }
        self.buf = Vec::new();
        let (Some(pooled), Ok(tagger)) = (&self.pooled, self.model.tagger()) else {
            return Ok(None);
        };
        self.model.tags_of(tagger, pooled.mean()).map(Some)
    }

    /// Run one window over its samples and queue the frames it owns.
    fn run(&mut self, p: &WindowPlan) -> Result<()> {
        let (from, to) = (p.start - self.buf_start, p.end - self.buf_start);
        let Some(samples) = self.buf.get(from..to) else {
            return Err(MertError::Internal(format!(
                "window {}..{} is not buffered ({}..{})",
                p.start,
                p.end,
                self.buf_start,
                self.buf_start + self.buf.len()
            )));
        };
        let mut source = Some(samples.to_vec());
        let options = EmbedOptions {
            normalize: self.normalize,
            window_seconds: 0.0,
            hop_seconds: None,
        };
        let mut sink = MemorySink { embedding: None };
        let model = &self.model;
        run_windows(
            &model.mert,
            &mut || Ok(source.take()),
            p.end - p.start,
            &options,
            &self.states,
            &model.device,
            &mut sink,
        )
        .map_err(audio)?;
        let e = sink
            .embedding
            .ok_or_else(|| MertError::Internal("a window produced no frames".into()))?;
        let (n, dim) = (p.take.len(), e.dim);
        if p.take.end > e.frames || p.dest != self.emitted {
            return Err(MertError::Internal(format!(
                "window plan {p:?} does not fit {} frames after {} emitted",
                e.frames, self.emitted
            )));
        }
        // [states, n, dim] of the owned frames
        let mut owned = Vec::with_capacity(e.layers * n * dim);
        for l in 0..e.layers {
            owned.extend_from_slice(&e.data[(l * e.frames + p.take.start) * dim..][..n * dim]);
        }
        let last = owned[(e.layers - 1) * n * dim..].to_vec();
        let tags = match (&mut self.pooled, model.tagger()) {
            (Some(pooled), Ok(tagger)) => {
                pooled.write(p.dest, n, &owned).map_err(audio)?;
                let mut chunk = SegmentMeans::new(0);
                chunk.begin(e.layers, n, dim).map_err(audio)?;
                chunk.write(0, n, &owned).map_err(audio)?;
                Some(model.tags_of(tagger, chunk.mean())?)
            }
            _ => None,
        };
        self.emitted += n;
        self.pending.push_back(Embedding {
            first_frame: p.dest,
            frames: n,
            dim,
            data: last,
            tags,
        });
        Ok(())
    }
}
