//! Input expansion shared by the commands that take audio files or folders: folders are walked
//! recursively, and each input's output path mirrors its place under the folder given.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Extensions treated as audio when walking folders.
const AUDIO: &[&str] = &[
    "wav", "wave", "flac", "mp3", "ogg", "oga", "m4a", "mp4", "aac", "aif", "aiff", "caf", "mka",
    "mkv", "webm", "opus",
];

/// An audio file and the relative output path it maps to (without extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    pub relative: PathBuf,
}

/// Expand files and folders into inputs, sorted for a stable order.
pub fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<Input>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir)
                    .with_context(|| format!("{}: cannot list", dir.display()))?
                {
                    let path = entry?.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if is_audio(&path) {
                        let relative = path.strip_prefix(p).unwrap_or(&path).with_extension("");
                        files.push(Input { path, relative });
                    }
                }
            }
        } else if p.is_file() {
            let relative = PathBuf::from(p.file_stem().unwrap_or(p.as_os_str()));
            files.push(Input {
                path: p.clone(),
                relative,
            });
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    if files.is_empty() {
        bail!("no audio files found in the given paths");
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO.contains(&e.to_ascii_lowercase().as_str()))
}

/// `out_dir/relative.ext`, creating the folders it needs.
pub fn output_for(input: &Input, out_dir: &Path, ext: &str) -> Result<PathBuf> {
    let out = out_dir.join(&input.relative).with_extension(ext);
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    Ok(out)
}
