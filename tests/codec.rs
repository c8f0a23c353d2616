//! The acoustic teacher (EnCodec 24 kHz encoder + RVQ + decoder) against encodec 0.1.1 on the
//! same weights (fixtures from `tests/reference/gen_codec.py`: a reduced-width random model
//! saved as a torch state dict like the official `encodec_24khz-*.th`).
//! Tolerances: encoder and decoder outputs max |a - b| <= 1e-4 · max |b| (the streaming
//! inference path and the trainable module alike); codes identical on >= 99.9 % of frames
//! (every mismatch is printed with whether it is a near tie).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mert_core::burn::tensor::{Device, Tensor, TensorData};
use mert_core::load::tensors::{HostTensor, TensorMap, read_pytorch};
use mert_core::teachers::codec::load::{
    codec_from_bytes, codec_to_bytes, expected_tensors, infer_config,
};
use mert_core::teachers::codec::train::CodecModel;
use mert_core::teachers::{Codec, CodecCheckpoint, CodecConfig, Codes, load_codec_path};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/codec")
}

/// The reference file: float tensors, int64 codes, metadata.
struct Reference {
    floats: HashMap<String, HostTensor>,
    codes: HashMap<String, (Vec<usize>, Vec<i64>)>,
    metadata: HashMap<String, String>,
}

fn reference(dir: &Path) -> Reference {
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (mut floats, mut codes) = (HashMap::new(), HashMap::new());
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        match view.dtype() {
            safetensors::Dtype::F32 => {
                let data = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                floats.insert(name, HostTensor::new(shape, data));
            }
            safetensors::Dtype::I64 => {
                let data = view
                    .data()
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                codes.insert(name, (shape, data));
            }
            other => panic!("{name}: unexpected dtype {other:?}"),
        }
    }
    Reference {
        floats,
        codes,
        metadata,
    }
}

fn fixture_config(r: &Reference) -> CodecConfig {
    CodecConfig::from_json(&r.metadata["codec_config"]).unwrap()
}

/// Squared distances in f64 from `x` to codes `a` and `b` of `codebook` `[bins, dim]`.
fn distances(x: &[f64], codebook: &[f32], a: usize, b: usize) -> (f64, f64) {
    let dim = x.len();
    let d = |c: usize| {
        x.iter()
            .zip(&codebook[c * dim..(c + 1) * dim])
            .map(|(x, e)| (x - *e as f64).powi(2))
            .sum::<f64>()
    };
    (d(a), d(b))
}

/// Compare one model with every case of a reference folder; returns (worst relative encoder
/// error, mismatching frames, frames).
fn compare(codec: &Codec, r: &Reference, codebooks: &[Vec<f32>]) -> (f64, usize, usize) {
    let config = codec.config().clone();
    let (dim, n_q) = (config.dimension, config.n_q);
    let (mut worst, mut mismatched, mut total) = (0f64, 0usize, 0usize);
    let mut cases: Vec<&str> = r
        .floats
        .keys()
        .filter_map(|k| k.strip_suffix(".input"))
        .collect();
    cases.sort();
    for case in cases {
        let input = &r.floats[&format!("{case}.input")];
        let want_emb = &r.floats[&format!("{case}.encoder_out")];
        let (code_shape, want_codes) = &r.codes[&format!("{case}.codes")];
        let (rows, len) = (input.shape[0], input.shape[1]);
        let frames = config.frames_for(len);
        assert_eq!(want_emb.shape, vec![rows, dim, frames], "{case}");
        assert_eq!(code_shape, &vec![rows, n_q, frames], "{case}");
        let (mut diff, mut peak, mut bad) = (0f64, 0f64, 0);
        for row in 0..rows {
            let samples = &input.data[row * len..(row + 1) * len];
            let emb = codec.encoder_output(samples).unwrap();
            assert_eq!(emb.len(), dim * frames);
            let want = &want_emb.data[row * dim * frames..(row + 1) * dim * frames];
            for (a, b) in emb.iter().zip(want) {
                diff = diff.max((*a as f64 - *b as f64).abs());
                peak = peak.max((*b as f64).abs());
            }
            let codes = codec.encode(samples).unwrap();
            assert_eq!((codes.frames, codes.n_q), (frames, n_q), "{case}");
            for t in 0..frames {
                let want_t = |q: usize| want_codes[(row * n_q + q) * frames + t];
                let Some(q) = (0..n_q).find(|&q| codes.get(t, q) != want_t(q)) else {
                    continue;
                };
                bad += 1;
                // The residual the reference's codebook q saw, from its own encoder output.
                let mut x: Vec<f64> = (0..dim).map(|d| want[d * frames + t] as f64).collect();
                for (p, codebook) in codebooks.iter().enumerate().take(q) {
                    let c = want_t(p) as usize;
                    for (xd, e) in x.iter_mut().zip(&codebook[c * dim..(c + 1) * dim]) {
                        *xd -= *e as f64;
                    }
                }
                let (ours, theirs) = (codes.get(t, q) as usize, want_t(q) as usize);
                let (d_ours, d_ref) = distances(&x, &codebooks[q], ours, theirs);
                let gap = (d_ours - d_ref).abs() / d_ref.max(1e-12);
                eprintln!(
                    "  {case} row {row} frame {t}: codebook {q} ours {ours} vs reference {theirs}; \
                     distances {d_ours:.6} vs {d_ref:.6} (relative gap {gap:.1e}: {})",
                    if gap < 1e-4 {
                        "near tie"
                    } else {
                        "NOT a near tie"
                    }
                );
            }
        }
        let rel = diff / peak.max(1e-30);
        eprintln!(
            "{case}: {rows} x {len} samples, {frames} frames: encoder output max|a-b|/max|b| = \
             {rel:.2e}; frames with a code mismatch: {bad} of {}",
            rows * frames
        );
        worst = worst.max(rel);
        mismatched += bad;
        total += rows * frames;
    }
    (worst, mismatched, total)
}

fn codebooks(tensors: &TensorMap, config: &CodecConfig) -> Vec<Vec<f32>> {
    (0..config.n_q)
        .map(|q| {
            tensors
                .get(&format!("quantizer.vq.layers.{q}._codebook.embed"))
                .unwrap()
                .data
                .clone()
        })
        .collect()
}

fn check_folder(dir: &Path) {
    let r = reference(dir);
    let config = fixture_config(&r);
    let raw = read_pytorch(&dir.join("encodec.th")).unwrap();
    assert_eq!(
        infer_config(&raw),
        config,
        "config read off the shapes of encodec.th"
    );
    let checkpoint = load_codec_path(&dir.join("encodec.th")).unwrap();
    assert_eq!(checkpoint.config, config);
    let codec = checkpoint.build(&Device::flex()).unwrap();
    let (worst, bad, frames) = compare(&codec, &r, &codebooks(&raw, &config));
    eprintln!(
        "overall: encoder relative error {worst:.2e}; code mismatches on {bad} of {frames} frames"
    );
    assert!(worst <= 1e-4, "encoder output relative error {worst:e}");
    assert!(
        (bad as f64) <= 0.001 * frames as f64,
        "{bad} of {frames} frames differ"
    );
}

#[test]
fn reduced_codec_matches_encodec() {
    check_folder(&fixture_dir());
}

#[test]
#[ignore = "needs the full-width fixture: python tests/reference/gen_codec.py --full, then MERT_CODEC_FULL=~/.cache/mert-fixtures/codec_full"]
fn full_width_codec_matches_encodec() {
    let dir = std::env::var("MERT_CODEC_FULL")
        .expect("set MERT_CODEC_FULL to the folder written by gen_codec.py --full");
    check_folder(Path::new(&dir));
}

#[test]
fn chunked_encoding_equals_one_pass() {
    let r = reference(&fixture_dir());
    let codec = load_codec_path(&fixture_dir().join("encodec.th"))
        .unwrap()
        .build(&Device::flex())
        .unwrap();
    // 3 s: the det rows one after the other, then the odd chirp (not a multiple of 320)
    let mut samples = r.floats["det.input"].data.clone();
    samples.extend(&r.floats["odd.input"].data[..24_001]);
    let whole = codec.encode_chunked(&samples, usize::MAX).unwrap();
    let emb_whole = codec.encoder_output_chunked(&samples, usize::MAX).unwrap();
    let peak = emb_whole.iter().fold(0f32, |m, v| m.max(v.abs()));
    for chunk in [codec.min_chunk_frames(), 8, 75, 151] {
        let codes = codec.encode_chunked(&samples, chunk).unwrap();
        assert_eq!(codes, whole, "chunk of {chunk} frames");
        let emb = codec.encoder_output_chunked(&samples, chunk).unwrap();
        let diff = emb
            .iter()
            .zip(&emb_whole)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-5 * peak, "chunk {chunk}: {diff} (peak {peak})");
    }
}

#[test]
fn streamed_encoding_equals_one_pass() {
    let r = reference(&fixture_dir());
    let codec = load_codec_path(&fixture_dir().join("encodec.th"))
        .unwrap()
        .build(&Device::flex())
        .unwrap();
    let mut samples = r.floats["det.input"].data.clone();
    samples.extend(&r.floats["odd.input"].data[..24_001]);
    let whole = codec.encode(&samples).unwrap();
    // pieces smaller and larger than the encoder's chunk, and empty ones
    for sizes in [
        &[1usize, 319, 0, 5_000][..],
        &[70_001, 3][..],
        &[200_000][..],
    ] {
        let (mut stream, mut codes, mut at) = (codec.stream(), Vec::new(), 0);
        for size in sizes.iter().cycle() {
            if at == samples.len() {
                break;
            }
            let end = (at + size).min(samples.len());
            codes.extend(stream.push(&samples[at..end]).unwrap());
            at = end;
        }
        codes.extend(stream.finish().unwrap());
        assert_eq!(codes, whole.data, "pieces of {sizes:?}");
    }
    assert!(codec.stream().finish().is_err());
    assert!(codec.stream().push(&[f32::NAN]).is_err());
}

#[test]
fn kit_codec_file_round_trips() {
    let dir = fixture_dir();
    let checkpoint = load_codec_path(&dir.join("encodec.th")).unwrap();
    // training state and the codebooks past n_q are set aside
    assert!(
        checkpoint
            .skipped
            .iter()
            .any(|k| k == "quantizer.vq.layers.9._codebook.embed")
    );
    assert!(checkpoint.skipped.iter().any(|k| k.ends_with("embed_avg")));
    let bytes = codec_to_bytes(&checkpoint).unwrap();
    let kit = codec_from_bytes(&bytes, "kit codec").unwrap();
    assert_eq!(kit.config, checkpoint.config);
    assert!(kit.skipped.is_empty(), "{:?}", kit.skipped);
    assert!(kit.tensors.tensors.keys().all(|k| !k.contains("weight_g")));
    assert!(
        kit.tensors
            .get("encoder.model.0.conv.conv.weight")
            .is_some()
    );
    // the decoder travels along, folded
    assert!(
        kit.tensors
            .get("decoder.model.0.conv.conv.weight")
            .is_some()
    );
    let r = reference(&dir);
    let input = &r.floats["odd.input"].data;
    let device = Device::flex();
    let a = checkpoint.build(&device).unwrap().encode(input).unwrap();
    let b = kit.build(&device).unwrap().encode(input).unwrap();
    assert_eq!(a, b);
    // and through a file on disk
    let path = std::env::temp_dir().join(format!("mert-codec-{}.safetensors", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let loaded = load_codec_path(&path);
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded.unwrap().config, checkpoint.config);
}

fn fixture_state_dict() -> (TensorMap, CodecConfig) {
    let dir = fixture_dir();
    let config = fixture_config(&reference(&dir));
    (read_pytorch(&dir.join("encodec.th")).unwrap(), config)
}

fn load_error(tensors: TensorMap, config: &CodecConfig) -> String {
    match Codec::from_state_dict(tensors, config, &Device::flex()) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_and_misshaped_keys_are_named() {
    let (full, config) = fixture_state_dict();
    for key in [
        "encoder.model.13.lstm.weight_hh_l1",
        "quantizer.vq.layers.7._codebook.embed",
        "encoder.model.15.conv.conv.bias",
        "encoder.model.6.conv.conv.weight_v",
    ] {
        let mut t = full.clone();
        t.remove(key).unwrap();
        let e = load_error(t, &config);
        assert!(e.contains(key), "{key}: {e}");
    }
    // both halves of a weight-normalised conv missing: the folded name is reported
    let mut t = full.clone();
    t.remove("encoder.model.4.block.1.conv.conv.weight_g");
    t.remove("encoder.model.4.block.1.conv.conv.weight_v");
    let e = load_error(t, &config);
    assert!(
        e.contains("encoder.model.4.block.1.conv.conv.weight") && e.contains("missing"),
        "{e}"
    );

    let mut t = full.clone();
    let v = t.remove("encoder.model.9.conv.conv.weight_v").unwrap();
    let g = t.remove("encoder.model.9.conv.conv.weight_g").unwrap();
    // consistent gain and direction, wrong kernel
    let (o, i) = (v.shape[0], v.shape[1]);
    t.insert(
        "encoder.model.9.conv.conv.weight_v",
        HostTensor::new(vec![o, i, 3], vec![0.5; o * i * 3]),
    );
    t.insert("encoder.model.9.conv.conv.weight_g", g);
    let e = load_error(t, &config);
    assert!(
        e.contains("encoder.model.9.conv.conv.weight_v") && e.contains("expected shape"),
        "{e}"
    );

    let mut t = full.clone();
    let lstm = t.remove("encoder.model.13.lstm.bias_ih_l0").unwrap();
    t.insert(
        "encoder.model.13.lstm.bias_ih_l0",
        HostTensor::new(vec![lstm.data.len() - 1], lstm.data[1..].to_vec()),
    );
    let e = load_error(t, &config);
    assert!(e.contains("encoder.model.13.lstm.bias_ih_l0"), "{e}");

    let mut t = full.clone();
    t.insert(
        "encoder.model.99.bogus",
        HostTensor::new(vec![1], vec![0.0]),
    );
    let e = load_error(t, &config);
    assert!(
        e.contains("encoder.model.99.bogus") && e.contains("unexpected"),
        "{e}"
    );

    let mut t = full.clone();
    t.insert(
        "quantizer.vq.layers.3._codebook.inited",
        HostTensor::new(vec![1], vec![0.0]),
    );
    let e = load_error(t, &config);
    assert!(e.contains("quantizer.vq.layers.3._codebook.inited"), "{e}");

    // a config wider than the file: the first conv's shape is named
    let wide = CodecConfig {
        n_filters: config.n_filters * 2,
        ..config.clone()
    };
    let e = load_error(full, &wide);
    assert!(e.contains("encoder.model.0.conv.conv.weight_v"), "{e}");
}

#[test]
fn truncated_file_is_an_error() {
    let bytes = std::fs::read(fixture_dir().join("encodec.th")).unwrap();
    let path = std::env::temp_dir().join(format!("mert-codec-trunc-{}.th", std::process::id()));
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let result = load_codec_path(&path);
    std::fs::remove_file(&path).ok();
    let e = result.unwrap_err().to_string();
    assert!(e.contains("mert-codec-trunc"), "{e}");
}

#[test]
fn malicious_pickles_are_refused_as_codecs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/malicious_bin");
    let _ = std::fs::remove_file("/tmp/mert_pwned");
    for name in ["pytorch_model.bin", "eval.bin"] {
        let e = load_codec_path(&dir.join(name)).unwrap_err().to_string();
        assert!(e.contains("refused"), "{name}: {e}");
    }
    assert!(!Path::new("/tmp/mert_pwned").exists());
}

#[test]
fn short_and_invalid_audio() {
    let codec = load_codec_path(&fixture_dir().join("encodec.th"))
        .unwrap()
        .build(&Device::flex())
        .unwrap();
    for len in [1usize, 2, 6, 7, 319, 320, 321, 400, 1919] {
        let samples: Vec<f32> = (0..len).map(|i| (i as f32 * 0.1).sin() * 0.3).collect();
        let codes = codec.encode(&samples).unwrap();
        assert_eq!(codes.frames, len.div_ceil(320), "{len}");
        assert!(codes.data.iter().all(|&c| (0..512).contains(&c)));
    }
    assert!(codec.encode(&[]).is_err());
    assert!(codec.encode(&[0.0, f32::NAN]).is_err());
}

/// `max |a - b| / max |b|`.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut diff, mut peak) = (0f64, 0f64);
    for (a, b) in got.iter().zip(want) {
        diff = diff.max((*a as f64 - *b as f64).abs());
        peak = peak.max((*b as f64).abs());
    }
    diff / peak.max(1e-30)
}

/// The reference's codes of `case` row `row` as [`Codes`] (`[frames, n_q]`).
fn reference_codes(r: &Reference, case: &str, row: usize) -> Codes {
    let (shape, data) = &r.codes[&format!("{case}.codes")];
    let (n_q, frames) = (shape[1], shape[2]);
    let rows = &data[row * n_q * frames..(row + 1) * n_q * frames];
    Codes {
        frames,
        n_q,
        data: (0..frames)
            .flat_map(|t| (0..n_q).map(move |q| rows[q * frames + t]))
            .collect(),
    }
}

fn cases(r: &Reference) -> Vec<String> {
    let mut cases: Vec<String> = r
        .floats
        .keys()
        .filter_map(|k| k.strip_suffix(".input").map(str::to_string))
        .collect();
    cases.sort();
    cases
}

#[test]
fn decoder_matches_encodec() {
    let dir = fixture_dir();
    let r = reference(&dir);
    let checkpoint = load_codec_path(&dir.join("encodec.th")).unwrap();
    assert!(checkpoint.has_decoder());
    let codec = checkpoint.build(&Device::flex()).unwrap();
    let mut worst = 0f64;
    for case in cases(&r) {
        let want = &r.floats[&format!("{case}.decoded")];
        let (rows, len) = (want.shape[0], want.shape[2]);
        for row in 0..rows {
            let codes = reference_codes(&r, &case, row);
            let got = codec.decode(&codes).unwrap();
            let err = rel_err(&got, &want.data[row * len..(row + 1) * len]);
            eprintln!("{case} row {row}: {len} samples decoded, max|a-b|/max|b| = {err:.2e}");
            worst = worst.max(err);
            // chunked decoding: the same numbers
            for chunk in [codec.min_chunk_frames(), 10, 33] {
                let part = codec.decode_chunked(&codes, chunk).unwrap();
                assert!(rel_err(&part, &got) <= 1e-5, "{case}: chunk {chunk}");
            }
        }
    }
    assert!(worst <= 1e-4, "decoder output relative error {worst:e}");
    // bad codes are refused, naming what was expected
    let bad = Codes {
        frames: 1,
        n_q: 8,
        data: vec![0, 0, 0, 0, 0, 0, 0, 512],
    };
    let e = codec.decode(&bad).unwrap_err().to_string();
    assert!(e.contains("512") && e.contains("0..512"), "{e}");
    let input = &r.floats["odd.input"].data;
    assert_eq!(codec.reconstruct(input).unwrap().len(), input.len());
}

/// The trainable module (weight norm kept, whole-signal forward, autodiff-ready) computes
/// encodec's encoder and decoder too.
#[test]
fn trainable_model_matches_encodec() {
    let dir = fixture_dir();
    let r = reference(&dir);
    let config = fixture_config(&r);
    let device = Device::flex();
    let mut raw = read_pytorch(&dir.join("encodec.th")).unwrap();
    let model = CodecModel::from_state_dict(&config, &mut raw, &device).unwrap();
    // what is left is the quantiser's
    assert!(raw.tensors.keys().all(|k| k.starts_with("quantizer.")));
    let floats = |name: &str| {
        let t = &r.floats[name];
        let shape: [usize; 3] = t.shape.clone().try_into().unwrap();
        Tensor::<3>::from_data(TensorData::new(t.data.clone(), shape), &device)
    };
    let read = |t: Tensor<3>| t.into_data().try_into_vec::<f32>().unwrap();
    let mut worst = 0f64;
    for case in cases(&r) {
        let input = &r.floats[&format!("{case}.input")];
        let (rows, len) = (input.shape[0], input.shape[1]);
        let input = TensorData::new(input.data.clone(), [rows, 1, len]);
        let emb = model.encode(Tensor::<3>::from_data(input, &device));
        let e_enc = rel_err(&read(emb), &r.floats[&format!("{case}.encoder_out")].data);
        let decoded = model.decode(floats(&format!("{case}.quantized")));
        let e_dec = rel_err(&read(decoded), &r.floats[&format!("{case}.decoded")].data);
        let raw_dec = model.decode(floats(&format!("{case}.encoder_out")));
        let e_raw = rel_err(
            &read(raw_dec),
            &r.floats[&format!("{case}.decoded_raw")].data,
        );
        eprintln!(
            "{case}: trainable encoder {e_enc:.2e}, decoder on quantized {e_dec:.2e}, on raw {e_raw:.2e}"
        );
        worst = worst.max(e_enc).max(e_dec).max(e_raw);
    }
    assert!(worst <= 1e-4, "trainable model relative error {worst:e}");
}

/// The codec loss's mel spectrogram against torchaudio's `MelSpectrogram` (fixture
/// `mel.safetensors`): filterbanks to 1e-5 absolute (torchaudio builds them in f32, we in
/// f64), spectrograms to 1e-4 · max.
#[test]
fn mel_spectrogram_matches_torchaudio() {
    use mert_core::teachers::codec::mel::{MelScale, mel_filterbank};
    let dir = fixture_dir();
    let bytes = std::fs::read(dir.join("mel.safetensors")).unwrap();
    let (tensors, _) = mert_core::load::tensors::read_safetensors(&bytes, "mel").unwrap();
    let device = Device::flex();
    for n in [64usize, 512] {
        let want = tensors.get(&format!("fbank_{n}")).unwrap();
        let got = mel_filterbank(n / 2 + 1, 0.0, 12_000.0, 64, 24_000);
        let diff = got
            .iter()
            .zip(&want.data)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-5, "fbank {n}: {diff}");
    }
    let signal = tensors.get("signal").unwrap();
    let audio = TensorData::new(signal.data.clone(), [2, 3000]);
    for n in [64usize, 512, 2048] {
        let want = tensors.get(&format!("mel_{n}")).unwrap();
        // torchaudio: [rows, mels, frames]; ours: [rows, frames, mels]
        let got = MelScale::new(n, 64, 24_000, &device)
            .unwrap()
            .forward(Tensor::<2>::from_data(audio.clone(), &device))
            .swap_dims(1, 2)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let err = rel_err(&got, &want.data);
        eprintln!(
            "mel n_fft {n}: {:?}, max|a-b|/max|b| = {err:.2e}",
            want.shape
        );
        assert!(err <= 1e-4, "mel {n}: {err:e}");
    }
}

/// A random checkpoint of the official width (shapes from the layout, values from a
/// deterministic generator), folded.
fn official_width_random() -> CodecCheckpoint {
    let config = CodecConfig::default();
    let mut tensors = TensorMap::new("random official-width codec");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for (key, shape) in expected_tensors(&config) {
        let n: usize = shape.iter().product();
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        let scale = if key.contains("_codebook") {
            1.0
        } else {
            1.0 / (fan_in as f32).sqrt()
        };
        let data = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale * 1.7
            })
            .collect();
        tensors.insert(key, HostTensor::new(shape, data));
    }
    CodecCheckpoint::from_state_dict(tensors, config).unwrap()
}

#[test]
#[ignore = "benchmark: cargo test --release -p mert-core --test codec -- --ignored --nocapture speed"]
fn speed_official_width_60s() {
    let seconds: usize = std::env::var("MERT_CODEC_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let codec = official_width_random().build(&Device::flex()).unwrap();
    let samples: Vec<f32> = (0..seconds * 24_000)
        .map(|i| {
            let t = i as f32 / 24_000.0;
            0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                + 0.1 * (2.0 * std::f32::consts::PI * 3.3 * t).sin()
        })
        .collect();
    let chunk = std::env::var("MERT_CODEC_CHUNK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(mert_core::teachers::codec::DEFAULT_CHUNK_FRAMES);
    // warm-up
    codec.encode(&samples[..48_000]).unwrap();
    let start = std::time::Instant::now();
    let codes = codec.encode_chunked(&samples, chunk).unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    let distinct: std::collections::HashSet<i64> = codes.data.iter().copied().collect();
    eprintln!(
        "official width, chunks of {chunk} frames: {seconds} s of audio ({} frames) encoded in {elapsed:.2} s ({:.1}x real time); {} distinct codes",
        codes.frames,
        seconds as f64 / elapsed,
        distinct.len()
    );
}
