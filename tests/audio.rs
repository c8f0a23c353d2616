//! The audio front end against the reference pipeline (`tests/reference/gen_audio.py`:
//! libsndfile / ffmpeg decodes, channel-mean downmix, `torchaudio.functional.resample`):
//! every container and codec of the matrix, rates 8-96 kHz, 8-64 bit, mono to 5.1.
//! Bars: lossless decodes exact (1e-6), resampled signal SNR >= 60 dB, lossy decodes
//! embedded by the tiny model with cosine >= 0.999 per frame against the reference decode.

use std::path::{Path, PathBuf};

use mert_core::audio::{MonoAudio, decode_file, resample};
use mert_core::burn::tensor::Device;
use mert_core::embed::{EmbedOptions, embed_audio};
use mert_core::load::tensors::{TensorMap, read_safetensors};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/audio")
}

fn fixtures() -> (TensorMap, Value, Value) {
    let bytes = std::fs::read(dir().join("reference.safetensors")).unwrap();
    let (t, meta) = read_safetensors(&bytes, "audio fixtures").unwrap();
    let files = serde_json::from_str(&meta["files"]).unwrap();
    let bad = serde_json::from_str(&meta["bad"]).unwrap();
    (t, files, bad)
}

fn snr_db(reference: &[f32], other: &[f32]) -> f64 {
    let signal: f64 = reference.iter().map(|&x| (x as f64).powi(2)).sum();
    let noise: f64 = reference
        .iter()
        .zip(other)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    }
}

#[test]
fn decode_and_resample_match_the_reference_pipeline() {
    let (t, files, _) = fixtures();
    let mut checked = 0;
    for (name, info) in files.as_object().unwrap() {
        let audio = decode_file(&dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            audio.sample_rate as u64,
            info["rate"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            audio.source_channels as u64,
            info["channels"].as_u64().unwrap(),
            "{name}"
        );
        let decoded = &t.get(&format!("{name}.decoded")).unwrap().data;
        let lossy = info["lossy"].as_bool().unwrap_or(false);
        // Decoders that ignore MP4 edit lists start late by the encoder's priming frames.
        let lag = if lossy {
            info["lag_vs_source_without_edit_list"]
                .as_u64()
                .unwrap_or(0) as usize
        } else {
            0
        };
        let ours = &audio.samples[lag.min(audio.samples.len())..];
        let n = ours.len().min(decoded.len());
        if lossy {
            let snr = snr_db(&decoded[..n], &ours[..n]);
            eprintln!("{name}: lossy decode SNR vs reference decoder {snr:.1} dB");
            continue;
        }
        // Lossless: the same samples (a truncated file may lose its last partial packet).
        assert!(
            n + 1152 >= decoded.len(),
            "{name}: {} of {} samples",
            ours.len(),
            decoded.len()
        );
        let max = decoded[..n]
            .iter()
            .zip(&ours[..n])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max <= 1e-6, "{name}: decode differs by {max}");
        // Resampled: compare the whole reference when the decode is complete.
        if n == decoded.len() {
            let want = &t.get(&format!("{name}.resampled")).unwrap().data;
            let got = resample(&audio.samples, audio.sample_rate, 24_000).unwrap();
            assert_eq!(got.len(), want.len(), "{name}: resampled length");
            let snr = snr_db(want, &got);
            eprintln!("{name}: resampled SNR {snr:.1} dB");
            assert!(snr >= 60.0, "{name}: resampled SNR {snr:.1} dB < 60");
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} lossless files checked");
}

#[test]
fn lossy_files_embed_like_their_reference_decodes() {
    let (t, files, _) = fixtures();
    let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mert_tiny");
    let device = Device::flex();
    let model = mert_core::load_path(&model_dir)
        .unwrap()
        .build(&device)
        .unwrap();
    let options = EmbedOptions {
        window_seconds: 0.0,
        ..EmbedOptions::default()
    };
    for (name, info) in files.as_object().unwrap() {
        if !info["lossy"].as_bool().unwrap_or(false) {
            continue;
        }
        let mut ours = decode_file(&dir().join(name)).unwrap();
        let reference = MonoAudio {
            samples: t.get(&format!("{name}.decoded")).unwrap().data.clone(),
            sample_rate: ours.sample_rate,
            source_channels: 1,
        };
        // An M4A's edit list drops the encoder priming as ffmpeg does: the same samples, from
        // the same first one (not `lag` later), and as many.
        if info["lag_vs_source_without_edit_list"].as_u64().is_some() {
            assert_eq!(ours.samples.len(), reference.samples.len(), "{name}");
        }
        ours.samples.truncate(reference.samples.len());
        let a = embed_audio(&model, &ours, &options, &device).unwrap();
        let b = embed_audio(&model, &reference, &options, &device).unwrap();
        let frames = a.frames.min(b.frames);
        let last = a.layers - 1;
        let mut worst = 1f64;
        for f in 0..frames {
            let row = |e: &mert_core::embed::Embedding| {
                e.data[(last * e.frames + f) * e.dim..][..e.dim].to_vec()
            };
            let (x, y) = (row(&a), row(&b));
            let dot: f64 = x
                .iter()
                .zip(&y)
                .map(|(p, q)| (*p as f64) * (*q as f64))
                .sum();
            let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            worst = worst.min(dot / (nx * ny));
        }
        eprintln!("{name}: worst per-frame cosine {worst:.5} over {frames} frames");
        assert!(worst >= 0.999, "{name}: cosine {worst}");
    }
}

#[test]
fn bad_files_fail_with_a_message_naming_them() {
    let (_, _, bad) = fixtures();
    let device = Device::flex();
    let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mert_tiny");
    let model = mert_core::load_path(&model_dir)
        .unwrap()
        .build(&device)
        .unwrap();
    for name in bad.as_object().unwrap().keys() {
        let path = dir().join(name);
        let err = match decode_file(&path) {
            Err(e) => e.to_string(),
            // Decodable but unusable (NaN samples): the embedding refuses it.
            Ok(audio) => embed_audio(&model, &audio, &EmbedOptions::default(), &device)
                .map(|_| String::new())
                .unwrap_or_else(|e| format!("{}: {e}", path.display())),
        };
        assert!(!err.is_empty(), "{name}: accepted");
        assert!(err.contains(name), "{name}: {err}");
        eprintln!("{name}: {err}");
    }
}

/// max |a - b| over the common length.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// Opus (mono, stereo made by ffmpeg, 6 channels in four streams, a header gain of -6 dB,
/// empty packets in the stream)
/// decodes to libopus's own output (`opusdec`, tests/reference/gen_opus.py): same length after
/// the pre-skip and end trims, samples equal to float rounding.
#[test]
fn opus_decodes_as_libopus_does() {
    let bytes = std::fs::read(dir().join("opus_reference.safetensors")).unwrap();
    let (t, _) = read_safetensors(&bytes, "opus_reference").unwrap();
    let mut names: Vec<&String> = t.tensors.keys().collect();
    names.sort();
    assert_eq!(names.len(), 5);
    for key in names {
        let name = key.trim_end_matches(".decoded");
        let want = &t.tensors[key].data;
        let ours = decode_file(&dir().join(name)).unwrap();
        assert_eq!(ours.sample_rate, 48_000, "{name}");
        assert_eq!(ours.samples.len(), want.len(), "{name}: length");
        let err = max_abs_diff(&ours.samples, want);
        let peak = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!("{name}: max |ours - opusdec| {err:.2e} (peak {peak:.3})");
        assert!(err <= 1e-5, "{name}: {err}");
    }
    // the same packets in Matroska/WebM and MP4: the same samples (the container's rate of
    // 24 kHz notwithstanding; MP4's big-endian `dOps` pre-skip applied once, though its edit
    // list repeats it), then at most one frame of encoder padding the container does not trim
    for (file, ogg) in [
        ("opus_48000_stereo.webm", "opus_48000_stereo.opus"),
        ("opus_24000_mono.mka", "opus_24000_mono.opus"),
        ("opus_48000_stereo.mp4", "opus_48000_stereo.opus"),
    ] {
        let want = &t.tensors[&format!("{ogg}.decoded")].data;
        let ours = decode_file(&dir().join(file)).unwrap();
        assert_eq!(ours.sample_rate, 48_000, "{file}");
        let extra = ours.samples.len() - want.len();
        assert!(
            extra <= 960,
            "{file}: {extra} samples more than the Ogg file"
        );
        let err = max_abs_diff(&ours.samples, want);
        assert!(err <= 1e-5, "{file}: {err}");
    }
}

/// A chained Ogg stream (two files joined end to end) gives its first part, and damage in the
/// first audio page is called damage, not an unknown format.
#[test]
fn chained_and_damaged_opus() {
    let one = std::fs::read(dir().join("opus_24000_mono.opus")).unwrap();
    let single = mert_core::audio::decode_bytes(one.clone(), Some("opus"), "one.opus").unwrap();
    let chained = [one.clone(), one.clone()].concat();
    let got = mert_core::audio::decode_bytes(chained, Some("opus"), "two.opus").unwrap();
    assert_eq!(got.samples, single.samples);
    let mut damaged = one;
    let at = damaged.len() / 2;
    for b in &mut damaged[at..at + 10] {
        *b ^= 0xff;
    }
    let err = mert_core::audio::decode_bytes(damaged, Some("opus"), "bad.opus")
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.opus") && err.contains("damaged"), "{err}");
}

/// Formats no reader here handles are named in the refusal (not "no suitable format reader").
#[test]
fn unsupported_formats_are_named() {
    let asf = [
        0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11, 0xA6, 0xD9, 0x00, 0xAA, 0x00, 0x62, 0xCE,
        0x6C,
    ];
    for (head, ext, needle) in [
        (&asf[..], "wma", "Windows Media"),
        (&[0x0B, 0x77, 0x12, 0x34][..], "ac3", "AC-3"),
        (&b"wvpk"[..], "wv", "WavPack"),
    ] {
        let bytes = [head, &[0u8; 200][..]].concat();
        let e = mert_core::audio::decode_bytes(bytes, Some(ext), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle) && e.contains("not supported"), "{e}");
    }
}

/// A source that cannot seek (a socket, a pipe wrapped by an app) decodes as a stream, the
/// same samples as the file.
#[test]
fn a_source_that_cannot_seek_decodes() {
    use symphonia::core::io::ReadOnlySource;
    for name in [
        "wav_s16_44100_stereo.wav",
        "flac_s16_44100_stereo.flac",
        "mp3_44100_stereo.mp3",
    ] {
        let path = dir().join(name);
        let whole = mert_core::audio::decode_file(&path).unwrap();
        let bytes = std::io::Cursor::new(std::fs::read(&path).unwrap());
        let ext = name.rsplit_once('.').map(|(_, e)| e);
        let stream = mert_core::audio::AudioStream::from_source(
            Box::new(ReadOnlySource::new(bytes)),
            ext,
            name,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let streamed = stream.collect().unwrap();
        assert_eq!(streamed.samples, whole.samples, "{name}");
    }
}

/// Microsoft and IMA ADPCM WAV decode as libsndfile decodes them
/// (`tests/reference/gen_adpcm.py`): the MS predictor rounds down, as Microsoft's codec does,
/// and the IMA difference is built by shifts (symphonia rounds both otherwise).
#[test]
fn adpcm_decodes_as_libsndfile_does() {
    let path = dir().join("adpcm_reference.safetensors");
    let (reference, _) = read_safetensors(&std::fs::read(&path).unwrap(), "adpcm").unwrap();
    for name in [
        "ms_adpcm_22050_mono.wav",
        "ms_adpcm_44100_stereo.wav",
        "ima_adpcm_22050_mono.wav",
        "ima_adpcm_44100_stereo.wav",
    ] {
        let ours = decode_file(&dir().join(name)).unwrap();
        let want = &reference.get(&format!("{name}.decoded")).unwrap().data;
        assert_eq!(ours.samples.len(), want.len(), "{name}");
        let err = ours
            .samples
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{name}: max |ours - libsndfile| {err:e}");
        assert!(err <= 1e-7, "{name}: {err}");
    }
}

/// FLAC files tagged by MP3 tools end with an ID3v1 and/or APEv2 tag after the last frame:
/// every frame still decodes (the last one was lost to the tag before).
#[test]
fn tags_after_flac_audio_keep_the_last_frame() {
    let name = "flac_s16_44100_stereo.flac";
    let bytes = std::fs::read(dir().join(name)).unwrap();
    let whole = mert_core::audio::decode_bytes(bytes.clone(), Some("flac"), name).unwrap();
    let mut id3v1 = b"TAG".to_vec();
    id3v1.extend_from_slice(b"Title");
    id3v1.resize(128, 0);
    let ape = {
        let item = [
            &5u32.to_le_bytes()[..],
            &0u32.to_le_bytes(),
            b"Title\0value",
        ]
        .concat();
        let block = |flags: u32| {
            let mut b = b"APETAGEX".to_vec();
            for v in [2000u32, item.len() as u32 + 32, 1, flags] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b.resize(32, 0);
            b
        };
        [block(0xA000_0000), item.clone(), block(0x8000_0000)].concat()
    };
    // an ID3v2 tag in front (10-byte header, synchsafe size 100, then the frames' bytes)
    let id3v2 = [&b"ID3\x04\0\0\0\0\0\x64"[..], &[0u8; 100]].concat();
    for (front, tail) in [
        (vec![], id3v1.clone()),
        (vec![], ape.clone()),
        (vec![], [ape.clone(), id3v1.clone()].concat()),
        (id3v2, [ape, id3v1].concat()),
    ] {
        let tagged = [front.clone(), bytes.clone(), tail.clone()].concat();
        let got = mert_core::audio::decode_bytes(tagged, Some("flac"), name).unwrap();
        let what = format!("{} bytes in front, {} after", front.len(), tail.len());
        assert_eq!(got.samples, whole.samples, "{what}");
    }
}

/// A download cut short decodes up to the cut: the readers that look for the file's end (AIFF's
/// chunk size, Matroska's Segment size) are given the file as a stream. Where nothing can be
/// decoded (the cut is inside the headers, or MP4's index is missing) the message says
/// "truncated", not "unrecognised format".
#[test]
fn files_cut_short_decode_to_the_cut_or_say_truncated() {
    for name in [
        "aiff_s16_22050_stereo.aiff",
        "mkv_flac_s16_22050_stereo.mkv",
        "opus_48000_stereo.webm",
        "wav_s16_44100_stereo.wav",
        "flac_s16_44100_stereo.flac",
    ] {
        let bytes = std::fs::read(dir().join(name)).unwrap();
        let ext = name.rsplit_once('.').map(|(_, e)| e);
        let whole = mert_core::audio::decode_bytes(bytes.clone(), ext, name).unwrap();
        let cut = bytes[..bytes.len() * 6 / 10].to_vec();
        let part = mert_core::audio::decode_bytes(cut, ext, name)
            .unwrap_or_else(|e| panic!("{name} cut at 60%: {e}"));
        let n = part.samples.len();
        assert!(
            n > whole.samples.len() / 4 && n < whole.samples.len(),
            "{name}: {n} samples"
        );
        assert_eq!(
            part.samples[..],
            whole.samples[..n],
            "{name}: not the file's start"
        );
    }
    for name in [
        "caf_s24_8000_stereo.caf",
        "ogg_vorbis_44100_stereo.ogg",
        "aac_44100_stereo.m4a",
        "alac_s16_48000_stereo.m4a",
    ] {
        let bytes = std::fs::read(dir().join(name)).unwrap();
        let cut = bytes[..bytes.len() / 2].to_vec();
        let ext = name.rsplit_once('.').map(|(_, e)| e);
        let e = mert_core::audio::decode_bytes(cut, ext, name)
            .unwrap_err()
            .to_string();
        assert!(e.contains(name) && e.contains("truncated"), "{e}");
    }
}
