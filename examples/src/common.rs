//! What the example programs share: finding audio files and pooling embeddings.

// each program uses its own part of this module
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mert_mobile::Embedding;

/// Extensions of the formats the kit decodes.
const AUDIO: &[&str] = &[
    "wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "mp4", "aac", "aif", "aiff", "caf", "mka",
    "mkv", "webm",
];

/// The audio files under `dir`, recursively, sorted; hidden entries are skipped.
pub fn audio_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(dir, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| AUDIO.contains(&e.to_string_lossy().to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The time mean of an embedding's frames: one `[dim]` vector per clip.
pub fn time_mean(e: &Embedding) -> Vec<f32> {
    let mut mean = vec![0f64; e.dim];
    for frame in e.data.chunks_exact(e.dim) {
        for (m, v) in mean.iter_mut().zip(frame) {
            *m += f64::from(*v);
        }
    }
    mean.iter()
        .map(|m| (m / e.frames.max(1) as f64) as f32)
        .collect()
}

/// The program's exit: success, or its error on one line and a failure code.
pub fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
