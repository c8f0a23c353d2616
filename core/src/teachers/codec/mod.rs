//! The acoustic teacher: EnCodec-24kHz-compatible RVQ codes, the labels MERT-v1 is pretrained
//! to predict (spec §4.2).
//!
//! Mirrors the encode path of encodec 0.1.1 `EncodecModel.encodec_model_24khz()` at 6 kbps
//! (`encodec/model.py` `_encode_frame` with `normalize=False`, `segment=None`): the causal SEANet
//! encoder (`encodec/modules/seanet.py` `SEANetEncoder`, weight-norm convs, reflect padding, a
//! 2-layer LSTM with a skip connection) and the residual vector quantiser
//! (`encodec/quantization/core_vq.py` `ResidualVectorQuantization.encode`, nearest code by squared
//! Euclidean distance, 8 codebooks of 1024 codes at 6 kbps), and the decode path
//! (`_decode_frame`: `ResidualVectorQuantization.decode`, the sum of the chosen code vectors,
//! then `SEANetDecoder`, [`decoder`]), for listening checks and for training
//! ([`train`]: the same architecture as a trainable module with weight norm, the
//! reconstruction losses in [`loss`] and [`mel`], the codebooks' EMA updates in [`ema`], the
//! data-dependent initialisation in [`data_init`]).
//!
//! Frames: the encoder downsamples by `prod(ratios)` = 320, so `L` samples give
//! `ceil(L / 320)` frames (75 Hz at 24 kHz); codec frame `t` is computed from samples
//! `[0, 320 t + 320)` (causal). The MERT model's frame `t` spans `[320 t, 320 t + 400)`, so for
//! labels the first `floor((L - 400) / 320) + 1` codec frames are used.
//!
//! Long audio runs in bounded memory, exactly: the input is processed in chunks of whole frames
//! ([`DEFAULT_CHUNK_FRAMES`]); every causal conv keeps the last `padding_total` steps of its
//! input as state, and the LSTM keeps its `(h, c)`, so chunked and one-pass encoding compute
//! the same numbers (up to float summation order); decoding streams the same way (a transposed
//! conv carries its overlapping tail, [`decoder`]). Reflect padding only touches the first and
//! the last chunk (left: the start of the signal; right: the extra padding that completes the
//! last frame), so it is applied there exactly as encodec's `pad1d` does on the whole signal.
//! The LSTM's input projections run as one matmul per chunk on the device; its recurrence is
//! inherently sequential and runs on the host in f32 (one 4H×H matrix-vector product per frame
//! and layer), so a GPU device reads back the LSTM input once per chunk and layer.

pub mod data_init;
pub mod decoder;
pub mod ema;
pub mod load;
pub mod loss;
pub mod lstm;
pub mod mel;
pub mod rvq;
pub mod seanet;
pub mod train;

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{MertError, Result};
pub use load::{CodecCheckpoint, load_codec_path};

use rvq::ResidualVq;
use seanet::{Seanet, SeanetState};

/// Codec frames processed per chunk by [`Codec::encode`] (2 s at 75 Hz). Memory is flat in
/// the audio length: encoding 60 s with the official width peaks at about 140 MB RSS (weights
/// included) against 390 MB with 10 s chunks, and smaller chunks also run faster on CPU
/// (the activations stay in cache).
pub const DEFAULT_CHUNK_FRAMES: usize = 150;

/// The codec's architecture. Defaults are the official 24 kHz model at 6 kbps; field names
/// follow the encodec `SEANetEncoder` / `ResidualVectorQuantizer` arguments, so reduced-width
/// variants load too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodecConfig {
    pub sample_rate: u32,
    /// Audio channels (only mono is supported).
    pub channels: usize,
    /// Base width; stage `i` of the encoder has `n_filters * 2^i` channels.
    pub n_filters: usize,
    /// Up/downsampling ratios in decoder order, as encodec takes them; the encoder
    /// downsamples by them in reverse (2, 4, 5, 8 for the default).
    pub ratios: Vec<usize>,
    /// Width of the encoder output and of the codebook vectors.
    pub dimension: usize,
    /// Residual blocks per stage.
    pub n_residual_layers: usize,
    /// Kernel of the first conv.
    pub kernel_size: usize,
    /// Kernel of the first conv in each residual block (the second has kernel 1).
    pub residual_kernel_size: usize,
    /// Kernel of the last conv.
    pub last_kernel_size: usize,
    /// Residual block `j` of a stage has dilation `dilation_base^j`.
    pub dilation_base: usize,
    /// Residual branches have `channels / compress` hidden channels.
    pub compress: usize,
    /// Identity shortcut in the residual blocks instead of a 1x1 conv.
    pub true_skip: bool,
    /// LSTM layers after the last stage (0 = none).
    pub lstm: usize,
    /// Causal convs (the only mode implemented; the 48 kHz model is not causal).
    pub causal: bool,
    /// Conv padding mode (only `reflect` is implemented).
    pub pad_mode: String,
    /// Codes per codebook.
    pub codebook_size: usize,
    /// Codebooks used (8 at 6 kbps for the 24 kHz model).
    pub n_q: usize,
}

impl Default for CodecConfig {
    fn default() -> Self {
        Self {
            sample_rate: 24_000,
            channels: 1,
            n_filters: 32,
            ratios: vec![8, 5, 4, 2],
            dimension: 128,
            n_residual_layers: 1,
            kernel_size: 7,
            residual_kernel_size: 3,
            last_kernel_size: 7,
            dilation_base: 2,
            compress: 2,
            true_skip: false,
            lstm: 2,
            causal: true,
            pad_mode: "reflect".to_string(),
            codebook_size: 1024,
            n_q: 8,
        }
    }
}

impl CodecConfig {
    /// The official `encodec_24khz` model at 6 kbps (the defaults).
    pub fn encodec_24khz() -> Self {
        Self::default()
    }

    /// Parse a config JSON (missing fields take the defaults) and validate it.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text)
            .map_err(|e| MertError::config("codec config", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Check the fields, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: &str| Err(MertError::config(field, msg));
        if !crate::model::config::MODEL_SAMPLE_RATES.contains(&(self.sample_rate as u64)) {
            return bad("sample_rate", "expected 8000 to 192000 Hz (24000 for MERT)");
        }
        if self.channels != 1 {
            return bad("channels", "only mono codecs (1 channel) are supported");
        }
        let positive = [
            ("n_filters", self.n_filters),
            ("dimension", self.dimension),
            ("kernel_size", self.kernel_size),
            ("residual_kernel_size", self.residual_kernel_size),
            ("last_kernel_size", self.last_kernel_size),
            ("dilation_base", self.dilation_base),
            ("compress", self.compress),
            ("codebook_size", self.codebook_size),
            ("n_q", self.n_q),
        ];
        for (field, value) in positive {
            if value == 0 {
                return bad(field, "must be positive");
            }
        }
        if self.ratios.is_empty() || self.ratios.contains(&0) {
            return bad("ratios", "must be a non-empty list of positive integers");
        }
        if self.n_filters / self.compress == 0 {
            return bad(
                "compress",
                "is larger than n_filters (residual branches would have no channels)",
            );
        }
        if self.n_residual_layers > 1
            && self
                .dilation_base
                .checked_pow(self.n_residual_layers as u32 - 1)
                .is_none()
        {
            return bad("dilation_base", "overflows");
        }
        if !self.causal {
            return bad(
                "causal",
                "only causal codecs (the 24 kHz model) are implemented",
            );
        }
        if self.pad_mode != "reflect" {
            return bad(
                "pad_mode",
                &format!("`{}` is not implemented; expected `reflect`", self.pad_mode),
            );
        }
        Ok(())
    }

    /// Samples per codec frame (`prod(ratios)`, 320 for the default).
    pub fn hop_length(&self) -> usize {
        self.ratios.iter().product()
    }

    /// Codec frames for `samples` input samples: `ceil(L / hop)`.
    pub fn frames_for(&self, samples: usize) -> usize {
        samples.div_ceil(self.hop_length())
    }

    /// Width of the encoder's last stage (the LSTM width), `n_filters * 2^stages`.
    pub fn lstm_width(&self) -> usize {
        self.n_filters << self.ratios.len()
    }
}

/// Codes `[frames, n_q]`, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codes {
    pub frames: usize,
    pub n_q: usize,
    pub data: Vec<i64>,
}

impl Codes {
    /// Code of codebook `q` at frame `t`.
    pub fn get(&self, t: usize, q: usize) -> i64 {
        self.data[t * self.n_q + q]
    }

    /// The first `frames` frames (e.g. the model's frame count for labels).
    pub fn truncate(&mut self, frames: usize) {
        self.frames = self.frames.min(frames);
        self.data.truncate(self.frames * self.n_q);
    }
}

/// The codec's encoder, quantiser and (when the weights carry one) decoder on one device.
/// Build it with [`Codec::from_state_dict`] or [`CodecCheckpoint::build`].
#[derive(Debug, Clone)]
pub struct Codec {
    config: CodecConfig,
    encoder: Seanet,
    quantizer: ResidualVq,
    decoder: Option<Seanet>,
    device: Device,
}

impl Codec {
    /// Build from a state dict: the official torch file's tensors (`weight_g`/`weight_v` are
    /// folded here) or the kit's codec file's (already folded). Every missing or mis-shaped
    /// key is an error naming it.
    pub fn from_state_dict(
        tensors: crate::load::TensorMap,
        config: &CodecConfig,
        device: &Device,
    ) -> Result<Self> {
        CodecCheckpoint::from_state_dict(tensors, config.clone())?.build(device)
    }

    pub(crate) fn from_parts(
        config: CodecConfig,
        encoder: Seanet,
        quantizer: ResidualVq,
        decoder: Option<Seanet>,
        device: &Device,
    ) -> Self {
        Self {
            config,
            encoder,
            quantizer,
            decoder,
            device: device.clone(),
        }
    }

    /// Whether the weights held a decoder ([`Codec::decode`] needs one).
    pub fn has_decoder(&self) -> bool {
        self.decoder.is_some()
    }

    pub fn config(&self) -> &CodecConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The smallest chunk (in frames) the streaming path accepts for this layout: the first
    /// chunk must be longer than every conv's padding, as encodec's reflect padding on the
    /// whole signal then only reads the signal itself.
    pub fn min_chunk_frames(&self) -> usize {
        self.encoder.min_chunk_frames()
    }

    /// RVQ codes `[frames, n_q]` of mono `samples` at the codec's rate, `frames = ceil(L / hop)`.
    pub fn encode(&self, samples: &[f32]) -> Result<Codes> {
        self.encode_chunked(samples, DEFAULT_CHUNK_FRAMES)
    }

    /// [`Codec::encode`] with `chunk_frames` frames per chunk (raised to
    /// [`Codec::min_chunk_frames`]); the result does not depend on it beyond float rounding.
    pub fn encode_chunked(&self, samples: &[f32], chunk_frames: usize) -> Result<Codes> {
        let n_q = self.config.n_q;
        let mut data = Vec::with_capacity(self.config.frames_for(samples.len()) * n_q);
        self.run(samples, chunk_frames, |emb| self.codes_into(emb, &mut data))?;
        Ok(Codes {
            frames: data.len() / n_q,
            n_q,
            data,
        })
    }

    /// The encoder's output `[dimension, frames]` row-major (what the quantiser sees), for
    /// tests and analysis.
    pub fn encoder_output(&self, samples: &[f32]) -> Result<Vec<f32>> {
        self.encoder_output_chunked(samples, DEFAULT_CHUNK_FRAMES)
    }

    /// [`Codec::encoder_output`] with `chunk_frames` frames per chunk.
    pub fn encoder_output_chunked(&self, samples: &[f32], chunk_frames: usize) -> Result<Vec<f32>> {
        let dim = self.config.dimension;
        let frames = self.config.frames_for(samples.len());
        let mut out = vec![0f32; dim * frames];
        let mut t0 = 0;
        self.run(samples, chunk_frames, |emb| {
            let n = emb.dims()[0];
            let rows = emb.try_into_vec_as::<f32>().map_err(|e| {
                MertError::Invalid(format!("codec: cannot read the encoder output: {e:?}"))
            })?;
            for (dt, row) in rows.chunks_exact(dim).enumerate() {
                for (d, v) in row.iter().enumerate() {
                    out[d * frames + t0 + dt] = *v;
                }
            }
            t0 += n;
            Ok(())
        })?;
        Ok(out)
    }

    /// Audio (`codes.frames · hop` samples) from codes `[frames, k]`, `k <= n_q` (fewer codebooks
    /// decode at a lower bitrate, as encodec's do).
    pub fn decode(&self, codes: &Codes) -> Result<Vec<f32>> {
        self.decode_chunked(codes, DEFAULT_CHUNK_FRAMES)
    }

    /// [`Codec::decode`] with `chunk_frames` frames per chunk (raised to the decoder's
    /// minimum); the result does not depend on it beyond float rounding.
    pub fn decode_chunked(&self, codes: &Codes, chunk_frames: usize) -> Result<Vec<f32>> {
        let decoder = self.decoder.as_ref().ok_or_else(|| {
            MertError::Invalid("codec: these weights hold no decoder (`decoder.*`)".into())
        })?;
        let (frames, k) = (codes.frames, codes.n_q);
        if frames == 0 || k == 0 || k > self.config.n_q || codes.data.len() != frames * k {
            return Err(MertError::Invalid(format!(
                "codec: cannot decode {frames} frames of {k} codes ({} values); expected 1 to {} codebooks",
                codes.data.len(),
                self.config.n_q
            )));
        }
        let bins = self.config.codebook_size as i64;
        if let Some(bad) = codes.data.iter().find(|&&c| !(0..bins).contains(&c)) {
            return Err(MertError::Invalid(format!(
                "codec: code {bad} is outside the codebooks (0..{bins})"
            )));
        }
        let chunk = chunk_frames.max(decoder.min_chunk_frames());
        let mut state = SeanetState::new(decoder);
        let mut out = Vec::with_capacity(frames * self.config.hop_length());
        let mut t = 0;
        while t < frames {
            let n = if frames - t <= chunk {
                frames - t
            } else {
                chunk
            };
            let rows = codes.data[t * k..(t + n) * k].to_vec();
            let idx = Tensor::<2, Int>::from_data(TensorData::new(rows, [n, k]), &self.device);
            // [n, dim] -> [1, dim, n]
            let emb = self.quantizer.decode(idx);
            let dim = emb.dims()[1];
            let x = emb.transpose().reshape([1, dim, n]);
            let y = decoder.forward(x, &mut state, t + n == frames)?;
            out.extend(y.try_into_vec_as::<f32>().map_err(|e| {
                MertError::Invalid(format!("codec: cannot read the decoded audio: {e:?}"))
            })?);
            t += n;
        }
        Ok(out)
    }

    /// Encode then decode: what the codec makes of `samples` (same length).
    pub fn reconstruct(&self, samples: &[f32]) -> Result<Vec<f32>> {
        let mut out = self.decode(&self.encode(samples)?)?;
        out.truncate(samples.len());
        Ok(out)
    }

    /// The codes of encoder output `[frames, dimension]`, appended to `data`.
    fn codes_into(&self, emb: Tensor<2>, data: &mut Vec<i64>) -> Result<()> {
        let codes = self.quantizer.encode(emb);
        data.extend(codes.try_into_vec_as::<i64>().map_err(|e| {
            MertError::Invalid(format!("codec: cannot read the codes back: {e:?}"))
        })?);
        Ok(())
    }

    /// Run the encoder over `samples` chunk by chunk, handing each chunk's output
    /// `[frames, dimension]` to `sink` in order.
    fn run(
        &self,
        samples: &[f32],
        chunk_frames: usize,
        mut sink: impl FnMut(Tensor<2>) -> Result<()>,
    ) -> Result<()> {
        let mut stream = EncoderStream::new(self, chunk_frames);
        stream.push(samples, &mut sink)?;
        stream.finish(&mut sink)
    }

    /// The codes of audio fed in chunks of any size, identical to [`Codec::encode`] on the
    /// whole clip; memory stays one chunk deep.
    pub fn stream(&self) -> CodecStream<'_> {
        CodecStream(EncoderStream::new(self, DEFAULT_CHUNK_FRAMES))
    }
}

/// [`Codec::stream`]: push samples, take codes `[frames, n_q]` row-major.
pub struct CodecStream<'a>(EncoderStream<'a>);

impl CodecStream<'_> {
    /// Feed samples; returns the codes of the frames now complete (possibly none).
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<i64>> {
        let mut codes = Vec::new();
        let codec = self.0.codec;
        self.0
            .push(samples, &mut |emb| codec.codes_into(emb, &mut codes))?;
        Ok(codes)
    }

    /// The codes of the remaining frames, the audio ending here.
    pub fn finish(self) -> Result<Vec<i64>> {
        let mut codes = Vec::new();
        let codec = self.0.codec;
        self.0
            .finish(&mut |emb| codec.codes_into(emb, &mut codes))?;
        Ok(codes)
    }
}

/// The encoder run chunk by chunk with its state carried over: chunks go through whole, except
/// that the last one (which pads the end) is only known at [`EncoderStream::finish`], so up
/// to one chunk of samples waits.
struct EncoderStream<'a> {
    codec: &'a Codec,
    state: SeanetState,
    buf: Vec<f32>,
    chunk: usize,
    pushed: bool,
}

impl<'a> EncoderStream<'a> {
    fn new(codec: &'a Codec, chunk_frames: usize) -> Self {
        let chunk = chunk_frames
            .max(codec.min_chunk_frames())
            .saturating_mul(codec.config.hop_length());
        Self {
            codec,
            state: SeanetState::new(&codec.encoder),
            buf: Vec::new(),
            chunk,
            pushed: false,
        }
    }

    fn push(
        &mut self,
        samples: &[f32],
        sink: &mut impl FnMut(Tensor<2>) -> Result<()>,
    ) -> Result<()> {
        if samples.iter().any(|x| !x.is_finite()) {
            return Err(MertError::Invalid(
                "codec: the audio holds NaN or infinite samples".into(),
            ));
        }
        self.pushed |= !samples.is_empty();
        // Whatever is beyond one chunk is not in the last chunk: encode it now, topping up the
        // buffer first and taking the rest straight from `samples` (no copy of a whole clip).
        let mut rest = samples;
        while self.buf.len() + rest.len() > self.chunk {
            if self.buf.is_empty() {
                let (piece, more) = rest.split_at(self.chunk);
                encode_piece(self.codec, &mut self.state, piece, false, sink)?;
                rest = more;
            } else {
                let take = self.chunk - self.buf.len();
                self.buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                encode_piece(self.codec, &mut self.state, &self.buf, false, sink)?;
                self.buf.clear();
            }
        }
        self.buf.extend_from_slice(rest);
        Ok(())
    }

    fn finish(mut self, sink: &mut impl FnMut(Tensor<2>) -> Result<()>) -> Result<()> {
        if !self.pushed {
            return Err(MertError::Invalid("codec: the audio is empty".into()));
        }
        encode_piece(self.codec, &mut self.state, &self.buf, true, sink)
    }
}

/// Encode one chunk, handing `[frames, dimension]` to `sink`.
fn encode_piece(
    codec: &Codec,
    state: &mut SeanetState,
    piece: &[f32],
    last: bool,
    sink: &mut impl FnMut(Tensor<2>) -> Result<()>,
) -> Result<()> {
    let x = Tensor::<3>::from_data(
        TensorData::new(piece.to_vec(), [1, 1, piece.len()]),
        &codec.device,
    );
    // [1, dimension, frames] -> [frames, dimension]
    let y = codec.encoder.forward(x, state, last)?;
    let [_, dim, frames] = y.dims();
    sink(y.reshape([dim, frames]).transpose())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_the_official_model() {
        let c = CodecConfig::default();
        c.validate().unwrap();
        assert_eq!(c.hop_length(), 320);
        assert_eq!(c.lstm_width(), 512);
        assert_eq!(c.frames_for(48_000), 150);
        assert_eq!(c.frames_for(48_001), 151);
        assert_eq!(c.frames_for(1), 1);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(CodecConfig::from_json(&json).unwrap(), c);
        assert_eq!(CodecConfig::from_json("{}").unwrap(), c);
    }

    #[test]
    fn bad_fields_are_named() {
        let err = CodecConfig::from_json(r#"{"pad_mode": "zero"}"#).unwrap_err();
        assert!(err.to_string().contains("pad_mode"), "{err}");
        let err = CodecConfig::from_json(r#"{"ratios": []}"#).unwrap_err();
        assert!(err.to_string().contains("ratios"), "{err}");
        let err = CodecConfig::from_json(r#"{"n_q": 0}"#).unwrap_err();
        assert!(err.to_string().contains("n_q"), "{err}");
        let err = CodecConfig::from_json(r#"{"bandwidth": 6}"#).unwrap_err();
        assert!(err.to_string().contains("bandwidth"), "{err}");
    }
}
