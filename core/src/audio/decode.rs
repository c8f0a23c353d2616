//! Decode any audio container/codec symphonia knows into mono f32 at the file's own rate.
//! Channels are averaged (as the reference data pipeline does).

use std::io::Cursor;
use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
/// A seekable byte source the decoder reads (a file, a cursor, a browser's `File`).
pub use symphonia::core::io::MediaSource;
use symphonia::core::io::MediaSourceStream;
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

/// Decoded mono audio.
#[derive(Debug, Clone, PartialEq)]
pub struct MonoAudio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Channels in the source before the downmix.
    pub source_channels: usize,
}

/// The most bytes read from a pipe or `-` (standard input), which are held in memory.
pub const PIPE_LIMIT: u64 = 1 << 30;

/// Where an input is read from: `-` means standard input, on Unix through `/dev/stdin`, so a
/// file redirected to it (`< song.wav`) is still read as a file.
pub fn source_path(path: &Path) -> &Path {
    if cfg!(unix) && path == Path::new("-") {
        Path::new("/dev/stdin")
    } else {
        path
    }
}

/// The bytes of an input that cannot be read twice from its path: `-` (standard input) or a
/// pipe (`<(...)`, `/dev/stdin`). `None` for a regular file, read from disk as it decodes.
/// Held in memory, so up to [`PIPE_LIMIT`]; a device (a terminal, `/dev/zero`) is refused.
pub fn read_if_stream(path: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let name = path.display().to_string();
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") && !cfg!(unix) {
        std::io::stdin()
            .lock()
            .take(PIPE_LIMIT + 1)
            .read_to_end(&mut bytes)
    } else {
        let mut file =
            std::fs::File::open(source_path(path)).map_err(|e| MertError::io(path, e))?;
        let meta = file.metadata().map_err(|e| MertError::io(path, e))?;
        if meta.is_file() {
            // `- < file` where something already read part of it: the rest, from where
            // standard input stands (reopening /dev/stdin would start at byte 0)
            match stdin_offset(path) {
                Some(at) if at > 0 => {
                    use std::io::Seek;
                    file.seek(std::io::SeekFrom::Start(at))
                        .map_err(|e| MertError::io(path, e))?;
                }
                _ => return Ok(None),
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            let kind = meta.file_type();
            if kind.is_char_device() || kind.is_block_device() {
                return Err(MertError::audio(
                    &name,
                    "a device, not an audio file or a pipe",
                ));
            }
        }
        file.take(PIPE_LIMIT + 1).read_to_end(&mut bytes)
    };
    read.map_err(|e| MertError::io(path, e))?;
    if bytes.len() as u64 > PIPE_LIMIT {
        return Err(MertError::audio(
            &name,
            format!(
                "more than {} MiB through a pipe; give it as a file",
                PIPE_LIMIT >> 20
            ),
        ));
    }
    Ok(Some(bytes))
}

/// Where standard input stands in the file redirected to it, for `-` on Unix.
fn stdin_offset(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    if path == Path::new("-") {
        use std::io::Seek;
        use std::os::fd::AsFd;
        let shared = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
        return std::fs::File::from(shared).stream_position().ok();
    }
    let _ = path;
    None
}

/// Decode a file on disk (or `-`, standard input).
pub fn decode_file(path: &Path) -> Result<MonoAudio> {
    AudioStream::open(path)?.collect()
}

/// Decode an in-memory file (web, mobile).
pub fn decode_bytes(bytes: Vec<u8>, extension: Option<&str>, name: &str) -> Result<MonoAudio> {
    AudioStream::from_source(Box::new(Cursor::new(bytes)), extension, name)?.collect()
}

/// Magnitude under which a decoded sample is taken as exact silence (-400 dBFS).
const SILENT: f32 = 1e-20;

/// symphonia's decoder for the track's codec, or the kit's: Opus (which symphonia lacks) and
/// the ADPCM codecs (whose symphonia decoders round differently from libsndfile).
enum Decoder {
    Symphonia(Box<dyn symphonia::core::codecs::audio::AudioDecoder>),
    Opus(super::opus::OpusStream),
    Adpcm(super::adpcm::Adpcm),
}

/// A decoder that hands out mono audio one packet at a time, so long files never sit in memory.
pub struct AudioStream {
    name: String,
    format: Box<dyn symphonia::core::formats::FormatReader>,
    decoder: Decoder,
    track_id: u32,
    sample_rate: u32,
    channels: usize,
    interleaved: Vec<f32>,
    bad_packets: usize,
    /// Frames the container states (without encoder delay and padding), and frames decoded.
    stated_frames: Option<u64>,
    decoded_frames: u64,
    /// Leading frames still to drop: an MP4 edit list's encoder priming.
    skip_frames: u64,
    /// Opened as a stream because its end is missing (see [`AudioStream::from_source`]).
    cut_short: bool,
    warn: bool,
    done: bool,
}

impl AudioStream {
    /// Open a file on disk; a pipe or `-` is read into memory first ([`read_if_stream`]).
    pub fn open(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str());
        let name = path.display().to_string();
        if let Some(bytes) = read_if_stream(path)? {
            return Ok(Self::from_source(Box::new(Cursor::new(bytes)), ext, &name)?.piped());
        }
        let file = std::fs::File::open(source_path(path)).map_err(|e| MertError::io(path, e))?;
        Self::from_source(Box::new(file), ext, &name)
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
        let placeholder_length = super::header::check_header(source.as_mut()).map_err(fail)?;
        let priming = super::mp4_edit::priming(source.as_mut());
        let mut hint = Hint::new();
        if let Some(ext) = extension {
            hint.with_extension(ext);
        }
        let tags_start = super::source::flac_tags_start(source.as_mut());
        let shared = super::source::SharedSource::new(source, tags_start);
        let seekable = shared.is_seekable();
        let probe = |seekable: bool| {
            let view = shared.view(seekable).map_err(SymError::IoError)?;
            let mss = MediaSourceStream::new(Box::new(view), Default::default());
            symphonia::default::get_probe().probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
        };
        let eof = |e: &SymError| matches!(e, SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof);
        // Matroska: a Segment that claims more bytes than the file has is not found at all
        let cut_segment = |e: &SymError| e.to_string().contains("missing segment element");
        let mut cut_short = false;
        let format = match probe(seekable) {
            // A reader that looked for the file's end (an AIFF chunk's stated size, a Matroska
            // Segment's) and found it missing: read the file as a stream, up to where it was
            // cut, as a truncated download deserves.
            Err(e) if seekable && (eof(&e) || cut_segment(&e)) => match probe(false) {
                Ok(format) => {
                    cut_short = true;
                    Ok(format)
                }
                Err(_) => Err(e),
            },
            other => other,
        }
        .map_err(|e| match e {
            // the reader wanted more of the file than there is: cut short, not unknown
            e if eof(&e) => {
                fail("the file ends before its header or first audio (truncated?)".into())
            }
            e if e.to_string().contains("crc mismatch") => fail(format!(
                "the file is damaged at its start ({e}): its first pages fail their checksum"
            )),
            // MP4's index usually comes last: a cut download has none
            e if e.to_string().contains("missing moov atom") => fail(format!(
                "the MP4 index (moov atom) is missing: the file is truncated or still downloading ({e})"
            )),
            e => fail(format!("unsupported or unrecognised audio format ({e})")),
        })?;
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
        // Lengths that are exact (PCM data sizes, FLAC's STREAMINFO, ALAC's sample table);
        // others (MP3 without a Xing frame, Ogg granules) are estimates.
        let exact = {
            use symphonia::core::codecs::audio::well_known::*;
            (CODEC_ID_PCM_S32LE..=CODEC_ID_PCM_MULAW).contains(&params.codec)
                || params.codec == CODEC_ID_FLAC
                || params.codec == CODEC_ID_ALAC
        };
        let stated_frames = track
            .num_frames
            .filter(|&n| n > 0 && exact && !placeholder_length);
        use symphonia::core::codecs::audio::well_known::{
            CODEC_ID_ADPCM_IMA_WAV, CODEC_ID_ADPCM_MS, CODEC_ID_OPUS,
        };
        let block_shape = || {
            let channels = params.channels.as_ref().map_or(0, |c| c.count());
            (channels, params.frames_per_block.unwrap_or(0) as usize)
        };
        let mp4 = format.format_info().short_name == "isomp4";
        let decoder = if params.codec == CODEC_ID_OPUS {
            let mut head = params.extra_data.as_deref().unwrap_or_default().to_vec();
            if mp4 {
                // symphonia hands MP4's `dOps` over behind the OpusHead magic, but its
                // fields are big-endian where OpusHead's are little-endian
                super::opus::dops_to_opus_head(&mut head);
            }
            Decoder::Opus(super::opus::OpusStream::new(&head).map_err(fail)?)
        } else if params.codec == CODEC_ID_ADPCM_MS {
            let (channels, frames) = block_shape();
            let codec = super::ms_adpcm::MsAdpcm::new(channels, frames).map_err(fail)?;
            Decoder::Adpcm(super::adpcm::Adpcm::new(codec))
        } else if params.codec == CODEC_ID_ADPCM_IMA_WAV {
            let (channels, frames) = block_shape();
            let codec = super::ima_adpcm::ImaAdpcm::new(channels, frames).map_err(fail)?;
            Decoder::Adpcm(super::adpcm::Adpcm::new(codec))
        } else {
            Decoder::Symphonia(
                symphonia::default::get_codecs()
                    .make_audio_decoder(&params, &AudioDecoderOptions::default())
                    .map_err(|e| fail(format!("unsupported codec ({e})")))?,
            )
        };
        // The decoded track's edit-list priming, in its frames (its timescale is usually its
        // rate). Opus applies its own pre-skip, which is what its edit list repeats.
        let skip_frames = priming
            .iter()
            .find(|edit| edit.track == track_id)
            .filter(|_| !matches!(decoder, Decoder::Opus(_)))
            .map(|edit| match params.sample_rate {
                Some(rate) if rate > 0 && rate != edit.timescale => {
                    u64::try_from(edit.media_time as u128 * rate as u128 / edit.timescale as u128)
                        .unwrap_or(u64::MAX)
                }
                _ => edit.media_time,
            })
            .unwrap_or(0);
        let stated_frames = stated_frames.map(|n| n.saturating_sub(skip_frames));
        // 0: not stated (the packets will say); anything else is checked now. Opus always
        // decodes at 48 kHz, whatever rate a container records (Matroska: the input's).
        let sample_rate = match params.sample_rate.unwrap_or(0) {
            _ if matches!(decoder, Decoder::Opus(_)) => 48_000,
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
            stated_frames,
            decoded_frames: 0,
            skip_frames,
            cut_short,
            warn: true,
            done: false,
        })
    }

    /// Bytes that came through a pipe: a streaming writer cannot fill in the header's length
    /// (sox writes a placeholder), so decoding less than it states is not reported.
    pub fn piped(mut self) -> Self {
        self.stated_frames = None;
        self.cut_short = false;
        self
    }

    /// No warnings at the end of this stream (a second pass over a file already reported).
    pub fn without_warnings(mut self) -> Self {
        self.warn = false;
        self
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
                // (a stream whose header states no length, as a pipe's does, ends so too)
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                // a chained stream (files joined end to end): the first link is the audio
                Err(SymError::ResetRequired) => {
                    if self.warn {
                        log::warn!(
                            "{name}: a chained stream (several files joined end to end): only its first part is used"
                        );
                    }
                    break;
                }
                Err(e) => return Err(fail(format!("cannot read the stream ({e})"))),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let (rate, channels) = match &mut self.decoder {
                Decoder::Symphonia(decoder) => {
                    let buf = match decoder.decode(&packet) {
                        Ok(buf) => buf,
                        Err(SymError::DecodeError(_)) => {
                            self.bad_packets += 1;
                            continue;
                        }
                        Err(e) => return Err(fail(format!("decoding failed ({e})"))),
                    };
                    let spec = buf.spec();
                    self.interleaved.resize(buf.samples_interleaved(), 0.0);
                    buf.copy_to_slice_interleaved(&mut self.interleaved);
                    (spec.rate(), spec.channels().count())
                }
                Decoder::Opus(opus) => {
                    let channels = opus.channels();
                    let trims = (packet.trim_start.get(), packet.trim_end.get());
                    let Some(samples) = opus.decode(&packet.data, trims.0, trims.1) else {
                        self.bad_packets += 1;
                        continue;
                    };
                    self.interleaved.clear();
                    self.interleaved.extend_from_slice(samples);
                    (48_000, channels)
                }
                Decoder::Adpcm(adpcm) => {
                    let channels = adpcm.channels();
                    let Some(samples) = adpcm.decode(&packet.data) else {
                        self.bad_packets += 1;
                        continue;
                    };
                    self.interleaved.clear();
                    self.interleaved.extend_from_slice(samples);
                    (self.sample_rate, channels)
                }
            };
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
            if self.skip_frames > 0 {
                let frames = (self.interleaved.len() / channels) as u64;
                let drop = self.skip_frames.min(frames);
                self.interleaved.drain(..drop as usize * channels);
                self.skip_frames -= drop;
                if self.interleaved.is_empty() {
                    continue;
                }
            }
            self.decoded_frames += (self.interleaved.len() / channels) as u64;
            // a decoder's near-silence (libopus gives 2e-34) makes later products subnormal,
            // which runs the CQT 40 times slower; below -400 dB a sample is silence
            let mono = self
                .interleaved
                .chunks_exact(channels)
                .map(|f| match super::downmix_frame(f) {
                    x if x.abs() < SILENT => 0.0,
                    x => x,
                })
                .collect();
            return Ok(Some(mono));
        }
        if !self.done {
            self.done = true;
            if self.warn {
                self.warn_if_damaged();
            }
        }
        Ok(None)
    }

    /// One warning line when the audio decoded is not all the file promised: undecodable
    /// packets skipped, or fewer frames than the header states (a truncated download).
    fn warn_if_damaged(&self) {
        let seconds = |frames: u64| frames as f64 / self.sample_rate.max(1) as f64;
        let mut problems = Vec::new();
        if self.bad_packets > 0 {
            problems.push(format!("skipped {} undecodable packets", self.bad_packets));
        }
        // a few packets' worth of slack: decoders may trim or pad the last one
        let short = self
            .stated_frames
            .filter(|&n| n > self.decoded_frames + 4096.max(n / 100));
        if let Some(n) = short {
            problems.push(format!(
                "decoded {:.2} s of the {:.2} s its header states",
                seconds(self.decoded_frames),
                seconds(n)
            ));
        }
        if self.cut_short && short.is_none() {
            problems.push(format!(
                "its header states more than the file holds (cut short?); decoded the {:.2} s that are there",
                seconds(self.decoded_frames)
            ));
        }
        if !problems.is_empty() {
            log::warn!(
                "{}: damaged or truncated: {}",
                self.name,
                problems.join("; ")
            );
        }
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
