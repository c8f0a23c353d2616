//! Each example program run on the example clip, its output checked against the library
//! call it demonstrates.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mert_mobile::Model;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn phrase() -> PathBuf {
    root().join("examples/audio/phrase.wav")
}

fn tiny() -> PathBuf {
    root().join("tests/fixtures/mert_tiny")
}

fn tagger() -> PathBuf {
    root().join("models/default/mert-tag-default.safetensors")
}

fn run(bin: &str, args: &[&Path]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn top(tags: &[mert_mobile::Tag], n: usize) -> String {
    let best: Vec<String> = tags
        .iter()
        .take(n)
        .map(|t| format!("{} {:.3}", t.name, t.p))
        .collect();
    best.join(", ")
}

#[test]
fn embed_file_writes_the_library_embedding() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("e.f32");
    let text = stdout(&run(
        env!("CARGO_BIN_EXE_embed-file"),
        &[&tiny(), &phrase(), &out],
    ));
    let want = Model::from_path(&tiny())
        .unwrap()
        .embed_file(&phrase())
        .unwrap();
    assert!(
        text.contains(&format!("{} frames x {} dims", want.frames, want.dim)),
        "{text}"
    );
    let bytes = std::fs::read(&out).unwrap();
    let got: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(got, want.data);
}

#[test]
fn tag_folder_tags_each_file_and_reports_failures() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    std::fs::copy(phrase(), tmp.path().join("a.wav")).unwrap();
    std::fs::copy(phrase(), tmp.path().join("sub/b.WAV")).unwrap();
    std::fs::write(tmp.path().join("broken.wav"), b"RIFF not really").unwrap();
    std::fs::write(tmp.path().join("notes.txt"), b"not audio").unwrap();
    let out = run(env!("CARGO_BIN_EXE_tag-folder"), &[tmp.path(), &tagger()]);
    assert_eq!(out.status.code(), Some(1), "the broken file fails the run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.wav") && err.contains("2 files tagged, 1 failed"),
        "{err}"
    );
    let want = top(
        &Model::from_path(&tagger())
            .unwrap()
            .tag_file(&phrase())
            .unwrap(),
        3,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, name) in lines.iter().zip(["a.wav", "sub/b.WAV"]) {
        assert_eq!(
            *line,
            format!("{}\t{want}", tmp.path().join(name).display())
        );
    }
}

#[test]
fn similarity_ranks_the_query_first() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(phrase(), tmp.path().join("phrase.wav")).unwrap();
    std::fs::copy(tiny().join("input0.wav"), tmp.path().join("other.wav")).unwrap();
    let text = stdout(&run(
        env!("CARGO_BIN_EXE_similarity"),
        &[&tiny(), tmp.path(), &phrase()],
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("1.0000\t") && lines[0].ends_with("phrase.wav"),
        "{text}"
    );
    assert!(lines[1].ends_with("other.wav"), "{text}");
    let sim: f64 = lines[1].split('\t').next().unwrap().parse().unwrap();
    assert!(sim < 0.9999, "{text}");
}

#[test]
fn stream_reader_gives_the_one_shot_tags() {
    let audio = mert_core::audio::decode_file(&phrase()).unwrap();
    let bytes: Vec<u8> = audio.samples.iter().flat_map(|v| v.to_le_bytes()).collect();
    let rate = audio.sample_rate.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stream-reader"))
        .args([tagger().as_os_str(), rate.as_ref(), "1".as_ref()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let text = stdout(&child.wait_with_output().unwrap());
    let model = Model::from_path(&tagger()).unwrap();
    let want = top(
        &model.tag_pcm(&audio.samples, audio.sample_rate, 1).unwrap(),
        5,
    );
    assert!(
        text.contains(&format!("whole stream: {want}")),
        "{text}\nwant {want}"
    );
    assert!(
        text.lines().filter(|l| l.starts_with("frames")).count() >= 2,
        "{text}"
    );
}
