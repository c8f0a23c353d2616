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
    let file = std::fs::File::open(path).map_err(|e| MertError::io(path, e))?;
    let ext = path.extension().and_then(|e| e.to_str());
    decode_source(Box::new(file), ext, &path.display().to_string())
}

/// Decode an in-memory file (web, mobile).
pub fn decode_bytes(bytes: Vec<u8>, extension: Option<&str>, name: &str) -> Result<MonoAudio> {
    decode_source(Box::new(Cursor::new(bytes)), extension, name)
}

fn decode_source(
    source: Box<dyn MediaSource>,
    extension: Option<&str>,
    name: &str,
) -> Result<MonoAudio> {
    let fail = |msg: String| MertError::audio(name, msg);
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
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
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| fail(format!("unsupported codec ({e})")))?;

    let mut samples = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    let mut sample_rate = params.sample_rate.unwrap_or(0);
    let mut channels = params.channels.as_ref().map(|c| c.count()).unwrap_or(0);
    let mut bad_packets = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A truncated stream ends the audio; what was decoded so far is kept.
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(fail(format!("cannot read the stream ({e})"))),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(SymError::DecodeError(_)) => {
                bad_packets += 1;
                continue;
            }
            Err(e) => return Err(fail(format!("decoding failed ({e})"))),
        };
        let spec = buf.spec();
        sample_rate = spec.rate();
        channels = spec.channels().count();
        if channels == 0 {
            return Err(fail("a decoded packet has no channels".into()));
        }
        interleaved.resize(buf.samples_interleaved(), 0.0);
        buf.copy_to_slice_interleaved(&mut interleaved);
        let scale = 1.0 / channels as f32;
        samples.extend(
            interleaved
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() * scale),
        );
    }
    if bad_packets > 0 {
        log::warn!("{name}: skipped {bad_packets} undecodable packets");
    }
    if samples.is_empty() {
        return Err(fail("no audio samples could be decoded".into()));
    }
    if sample_rate == 0 {
        return Err(fail("the stream does not state its sample rate".into()));
    }
    Ok(MonoAudio {
        samples,
        sample_rate,
        source_channels: channels,
    })
}
