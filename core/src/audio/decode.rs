//! Decode any audio container/codec symphonia knows into mono f32 at the file's own rate.
//! Channels are averaged (as the reference data pipeline does).

use std::io::Cursor;
use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use crate::error::{MertError, Result};

/// Sample rates outside this range are refused: no audio format uses them, and resampling
/// from 1 Hz to the model's rate would multiply every packet by 24000.
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1_000..=1_536_000;

/// The sample rate stated by a header or a packet, if it is one audio uses.
fn check_rate(rate: u32, name: &str) -> Result<u32> {
    if SAMPLE_RATES.contains(&rate) {
        Ok(rate)
    } else {
        Err(MertError::audio(
            name,
            format!(
                "sample rate {rate} Hz: expected {} to {} Hz",
                SAMPLE_RATES.start(),
                SAMPLE_RATES.end()
            ),
        ))
    }
}

/// symphonia 0.6.1 repairs a WAVE_FORMAT_EXTENSIBLE channel mask that names fewer channels than
/// the header states by shifting in ones; the shift overflows when 32 or more are missing or the
/// mask's top bit is set (a panic where overflow checks are on, a made-up layout elsewhere).
/// Such headers are refused before symphonia reads them. The source is left at its start.
fn check_wave_mask(source: &mut dyn MediaSource) -> std::result::Result<(), String> {
    use std::io::{Read, SeekFrom};
    if !source.is_seekable() {
        return Ok(());
    }
    let mut head = Vec::with_capacity(4096);
    let read = Read::take(&mut *source, 4096).read_to_end(&mut head);
    source
        .seek(SeekFrom::Start(0))
        .and(read)
        .map_err(|e| format!("cannot read the file ({e})"))?;
    if let Some((channels, mask)) = wave_extensible_mask(&head) {
        let missing = i64::from(channels) - i64::from(mask.count_ones());
        if missing > 0 && (missing >= 32 || mask & 0x8000_0000 != 0) {
            return Err(format!(
                "the WAVE channel mask {mask:#010x} cannot describe {channels} channels"
            ));
        }
    }
    Ok(())
}

/// The channel count and channel mask of a RIFF/WAVE header's WAVE_FORMAT_EXTENSIBLE `fmt `
/// chunk, when `head` (the file's first bytes) holds one.
fn wave_extensible_mask(head: &[u8]) -> Option<(u16, u32)> {
    let u16_at = |b: &[u8], i: usize| Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?));
    let u32_at = |b: &[u8], i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
    if head.get(0..4)? != b"RIFF" || head.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12usize;
    while let Some(id) = head.get(at..at + 4) {
        let size = u32_at(head, at + 4)? as usize;
        let body = at + 8;
        if id == b"fmt " {
            let fmt = head.get(body..)?;
            if u16_at(fmt, 0)? != 0xFFFE {
                return None;
            }
            return Some((u16_at(fmt, 2)?, u32_at(fmt, 20)?));
        }
        // chunks are padded to an even size
        at = body.checked_add(size)?.checked_add(size & 1)?;
    }
    None
}

/// Decoded mono audio.
#[derive(Debug, Clone, PartialEq)]
pub struct MonoAudio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Channels in the source before the downmix.
    pub source_channels: usize,
}

/// Decode a file on disk.
pub fn decode_file(path: &Path) -> Result<MonoAudio> {
    AudioStream::open(path)?.collect()
}

/// Decode an in-memory file (web, mobile).
pub fn decode_bytes(bytes: Vec<u8>, extension: Option<&str>, name: &str) -> Result<MonoAudio> {
    AudioStream::from_source(Box::new(Cursor::new(bytes)), extension, name)?.collect()
}

/// A decoder that hands out mono audio one packet at a time, so long files never sit in memory.
pub struct AudioStream {
    name: String,
    format: Box<dyn symphonia::core::formats::FormatReader>,
    decoder: Box<dyn symphonia::core::codecs::audio::AudioDecoder>,
    track_id: u32,
    sample_rate: u32,
    channels: usize,
    interleaved: Vec<f32>,
    bad_packets: usize,
    done: bool,
}

impl AudioStream {
    /// Open a file on disk.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| MertError::io(path, e))?;
        let ext = path.extension().and_then(|e| e.to_str());
        Self::from_source(Box::new(file), ext, &path.display().to_string())
    }

    /// Open any media source (a file, an in-memory cursor).
    pub fn from_source(
        mut source: Box<dyn MediaSource>,
        extension: Option<&str>,
        name: &str,
    ) -> Result<Self> {
        let fail = |msg: String| MertError::audio(name, msg);
        if source.byte_len() == Some(0) {
            return Err(fail("empty file (0 bytes)".into()));
        }
        check_wave_mask(source.as_mut()).map_err(fail)?;
        let mss = MediaSourceStream::new(source, Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = extension {
            hint.with_extension(ext);
        }
        let format = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|e| fail(format!("unsupported or unrecognised audio format ({e})")))?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| fail("no audio track".into()))?;
        let track_id = track.id;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| fail("the audio track has no codec parameters".into()))?
            .clone();
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(&params, &AudioDecoderOptions::default())
            .map_err(|e| {
                if params.codec == symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS {
                    fail(
                        "Opus audio is not supported; convert it to FLAC, WAV or Ogg Vorbis".into(),
                    )
                } else {
                    fail(format!("unsupported codec ({e})"))
                }
            })?;
        // 0: not stated (the packets will say); anything else is checked now.
        let sample_rate = match params.sample_rate.unwrap_or(0) {
            0 => 0,
            rate => check_rate(rate, name)?,
        };
        Ok(Self {
            name: name.to_string(),
            format,
            decoder,
            track_id,
            sample_rate,
            channels: params.channels.as_ref().map(|c| c.count()).unwrap_or(0),
            interleaved: Vec::new(),
            bad_packets: 0,
            done: false,
        })
    }

    /// The stream's sample rate (as stated by the container, updated by decoded packets).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Channels before the downmix.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The next decoded packet as mono samples; `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<f32>>> {
        let name = self.name.clone();
        let fail = |msg: String| MertError::audio(&name, msg);
        while !self.done {
            let packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                // A truncated stream ends the audio; what was decoded so far is kept.
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(fail(format!("cannot read the stream ({e})"))),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let buf = match self.decoder.decode(&packet) {
                Ok(buf) => buf,
                Err(SymError::DecodeError(_)) => {
                    self.bad_packets += 1;
                    continue;
                }
                Err(e) => return Err(fail(format!("decoding failed ({e})"))),
            };
            let spec = buf.spec();
            let (rate, channels) = (spec.rate(), spec.channels().count());
            if channels == 0 || rate == 0 {
                return Err(fail(
                    "a decoded packet states no channels or no sample rate".into(),
                ));
            }
            check_rate(rate, &name)?;
            if self.sample_rate != 0 && rate != self.sample_rate {
                return Err(fail(format!(
                    "the sample rate changes mid-stream ({} -> {rate} Hz)",
                    self.sample_rate
                )));
            }
            self.sample_rate = rate;
            self.channels = channels;
            self.interleaved.resize(buf.samples_interleaved(), 0.0);
            buf.copy_to_slice_interleaved(&mut self.interleaved);
            let scale = 1.0 / channels as f32;
            let mono = self
                .interleaved
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() * scale)
                .collect();
            return Ok(Some(mono));
        }
        if !self.done {
            self.done = true;
            if self.bad_packets > 0 {
                log::warn!(
                    "{}: skipped {} undecodable packets",
                    self.name,
                    self.bad_packets
                );
            }
        }
        Ok(None)
    }

    /// Decode everything that is left into memory.
    pub fn collect(mut self) -> Result<MonoAudio> {
        let mut samples = Vec::new();
        while let Some(chunk) = self.next_chunk()? {
            samples.extend_from_slice(&chunk);
        }
        if samples.is_empty() {
            return Err(MertError::audio(
                &self.name,
                "no audio samples could be decoded",
            ));
        }
        if self.sample_rate == 0 {
            return Err(MertError::audio(
                &self.name,
                "the stream does not state its sample rate",
            ));
        }
        Ok(MonoAudio {
            samples,
            sample_rate: self.sample_rate,
            source_channels: self.channels,
        })
    }
}
