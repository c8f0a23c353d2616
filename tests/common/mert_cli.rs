//! Helpers shared by the CLI test files (each includes this file with `#[path]`): run the
//! `mert` binary built for the tests, require success or a one-line failure, find fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn mert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mert"))
        .args(args)
        .output()
        .expect("run mert")
}

/// Runs `mert args` with `bytes` written to its standard input through a pipe.
pub fn mert_piped(args: &[&str], bytes: Vec<u8>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mert"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run mert");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &bytes));
    let out = child.wait_with_output().expect("run mert");
    writer.join().expect("writer").expect("write to mert");
    out
}

/// Runs `mert args`, which must succeed; its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = mert(args);
    assert!(
        out.status.success(),
        "mert {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `mert args`, which must exit with 1 and one line on stderr; that line.
pub fn fails(args: &[&str]) -> String {
    let out = mert(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "mert {args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    err
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// The committed public-domain example clip (6 s, 44.1 kHz stereo).
pub fn example_clip() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/audio/phrase.wav")
}

/// 16-bit mono PCM WAV.
pub fn write_wav(path: &Path, rate: u32, samples: &[f32]) {
    let mut b = Vec::new();
    let data_len = (samples.len() * 2) as u32;
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}
