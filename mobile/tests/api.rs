//! The Rust API under the C ABI and the bindings: streamed chunks equal the one-shot
//! embedding, whole-stream tags equal one-shot tags, PCM equals the file path, a model serves
//! threads at once, and errors are values. (The comparisons with the `mert` CLI and the
//! foreign-language tests are in scripts/mobile-test.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mert_mobile::{MertError, Model, Session};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tiny() -> Arc<Model> {
    Arc::new(Model::from_path(&root().join("tests/fixtures/mert_tiny")).unwrap())
}

/// `seconds` of a stereo 44.1 kHz chord with a slow amplitude swell (deterministic).
fn stereo(seconds: f64) -> Vec<f32> {
    let n = (seconds * 44_100.0) as usize;
    (0..n)
        .flat_map(|i| {
            let t = i as f32 / 44_100.0;
            let env = 0.5 + 0.4 * (0.7 * t).sin();
            let l = env * (0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin());
            let r = env * (0.2 * (2.0 * std::f32::consts::PI * 331.0 * t).sin());
            [l, r]
        })
        .collect()
}

/// Push `pcm` in chunks of cycling odd sizes; the chunks' frames concatenated, and how many
/// chunks came before `finish`.
fn stream(session: &mut Session, pcm: &[f32]) -> (Vec<f32>, usize, Vec<usize>) {
    let sizes = [1usize, 4_410, 333, 44_100, 7_919, 100_000];
    let (mut data, mut early, mut starts) = (Vec::new(), 0, Vec::new());
    let mut take = |s: &mut Session, data: &mut Vec<f32>| {
        let mut n = 0;
        while let Some(c) = s.next_chunk() {
            assert_eq!(c.data.len(), c.frames * c.dim);
            starts.push(c.first_frame);
            data.extend_from_slice(&c.data);
            n += 1;
        }
        n
    };
    let (mut at, mut k) = (0, 0);
    while at < pcm.len() / 2 {
        let n = sizes[k % sizes.len()].min(pcm.len() / 2 - at);
        session.push(&pcm[at * 2..(at + n) * 2]).unwrap();
        early += take(session, &mut data);
        at += n;
        k += 1;
    }
    session.finish().unwrap();
    take(session, &mut data);
    (data, early, starts)
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn streamed_chunks_equal_the_one_shot_embedding() {
    let model = tiny();
    for seconds in [0.5, 6.0, 13.7, 31.0] {
        let pcm = stereo(seconds);
        let whole = model.embed_pcm(&pcm, 44_100, 2).unwrap();
        let mut session = Session::new(model.clone(), 44_100, 2).unwrap();
        let (data, early, starts) = stream(&mut session, &pcm);
        assert_eq!(session.frames(), whole.frames, "{seconds} s");
        // the same windows through the same model: equal to float rounding of nothing at all
        assert!(max_rel(&data, &whole.data) <= 1e-6, "{seconds} s");
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
        if seconds > 20.0 {
            assert!(early >= 3, "{seconds} s: {early} chunks before finish");
        }
    }
}

#[test]
fn pcm_and_file_paths_agree() {
    let model = tiny();
    let wav = root().join("examples/audio/phrase.wav");
    let from_file = model.embed_file(&wav).unwrap();
    // the WAV's samples as the decoder reads them: i16 / 32768
    let bytes = std::fs::read(&wav).unwrap();
    let data = bytes.windows(4).position(|w| w == b"data").unwrap() + 8;
    let pcm: Vec<f32> = bytes[data..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect();
    let from_pcm = model.embed_pcm(&pcm, 44_100, 2).unwrap();
    assert_eq!(
        (from_pcm.frames, from_pcm.dim),
        (from_file.frames, from_file.dim)
    );
    assert!(max_rel(&from_pcm.data, &from_file.data) <= 1e-6);
}

#[test]
fn whole_stream_tags_equal_one_shot_tags() {
    let path = root().join("models/default/mert-tag-default.safetensors");
    let model = Arc::new(Model::from_bytes(&std::fs::read(&path).unwrap(), "default").unwrap());
    let pcm = stereo(12.0);
    let once = model.tag_pcm(&pcm, 44_100, 2).unwrap();
    assert_eq!(once.len(), model.tag_names().len());
    let mut session = Session::new(model.clone(), 44_100, 2).unwrap();
    session.push(&pcm).unwrap();
    session.finish().unwrap();
    let mut chunks = 0;
    while let Some(c) = session.next_chunk() {
        assert_eq!(c.tags.as_ref().map(Vec::len), Some(once.len()));
        chunks += 1;
    }
    assert!(chunks >= 2);
    let streamed = session.tags().unwrap();
    for (a, b) in streamed.iter().zip(&once) {
        assert_eq!(a.name, b.name);
        assert!((a.p - b.p).abs() <= 1e-6, "{} {} {}", a.name, a.p, b.p);
    }
}

#[test]
fn one_model_serves_threads_at_once() {
    let model = tiny();
    let pcm = Arc::new(stereo(7.0));
    let want = model.embed_pcm(&pcm, 44_100, 2).unwrap();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (model, pcm) = (model.clone(), pcm.clone());
            std::thread::spawn(move || model.embed_pcm(&pcm, 44_100, 2).unwrap())
        })
        .collect();
    for h in handles {
        let got = h.join().unwrap();
        assert!(max_rel(&got.data, &want.data) <= 1e-6);
    }
}

fn err<T>(r: mert_mobile::Result<T>) -> MertError {
    match r {
        Err(e) => e,
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn errors_are_values() {
    let model = tiny();
    let pcm = stereo(1.0);
    assert!(matches!(
        err(model.embed_pcm(&pcm, 44_100, 0)),
        MertError::InvalidArgument(_)
    ));
    assert!(matches!(
        err(model.embed_pcm(&pcm[..20], 44_100, 2)),
        MertError::Audio(m) if m.contains("too short")
    ));
    let mut nan = pcm.clone();
    nan[7] = f32::NAN;
    assert!(matches!(
        err(model.embed_pcm(&nan, 44_100, 2)),
        MertError::Audio(m) if m.contains("sample 7")
    ));
    assert!(matches!(
        err(model.tag_pcm(&pcm, 44_100, 2)),
        MertError::State(m) if m.contains("no tagging head")
    ));
    let kit = std::fs::read(root().join("models/default/mert-tag-default.safetensors")).unwrap();
    assert!(matches!(
        err(Model::from_bytes(&kit[..kit.len() / 3], "cut")),
        MertError::ModelLoad(m) if m.starts_with("cut")
    ));
    let mut s = Session::new(model.clone(), 48_000, 1).unwrap();
    assert!(matches!(
        s.push(&[1.0, f32::INFINITY]),
        Err(MertError::Audio(_))
    ));
    s.push(&vec![0.1; 48_000]).unwrap();
    assert!(matches!(s.tags(), Err(MertError::State(_))));
    s.finish().unwrap();
    assert!(matches!(s.push(&[0.0]), Err(MertError::State(_))));
    assert!(matches!(s.finish(), Err(MertError::State(_))));
}
