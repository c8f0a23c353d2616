//! Input expansion shared by the commands that take audio files or folders: folders are walked
//! recursively, and each input's output path mirrors its place under the folder given.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Extensions treated as audio when walking folders (formats the decoder cannot read, such as
/// WavPack, are listed too, so a run names them rather than skipping them silently).
const AUDIO: &[&str] = &[
    "wav", "wave", "bwf", "flac", "mp3", "ogg", "oga", "ogx", "m4a", "m4b", "mp4", "aac", "aif",
    "aiff", "aifc", "caf", "mka", "mkv", "webm", "opus", "au", "w64", "wv", "ape",
];

/// An audio file and the relative output path it maps to (without extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    pub relative: PathBuf,
    /// Given by name (not found in a folder walk): same-named ones are told apart by folder.
    pub named: bool,
}

/// Expand files and folders into inputs, sorted for a stable order. With several folders
/// given, each one's outputs go under its own name (`train/a.wav` -> `train/a`), so two
/// folders holding the same names do not clash.
pub fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<Input>> {
    let mut files = Vec::new();
    let folders = paths.iter().filter(|p| p.is_dir()).count();
    for p in paths {
        if p.is_dir() {
            // the name as given (`train` even when it links elsewhere); `.` or `..` by its
            // real name
            let name = match p.components().next_back() {
                Some(std::path::Component::Normal(n)) => Some(PathBuf::from(n)),
                _ => std::fs::canonicalize(p)
                    .ok()
                    .and_then(|c| c.file_name().map(PathBuf::from)),
            };
            let prefix = match name {
                Some(name) if folders > 1 => name,
                _ => PathBuf::new(),
            };
            // each folder once, by its real path: symlinks back up the tree do not loop
            let mut seen = std::collections::HashSet::new();
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                if !seen.insert(std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone())) {
                    continue;
                }
                for entry in std::fs::read_dir(&dir)
                    .with_context(|| format!("{}: cannot list", dir.display()))?
                {
                    let path = entry?.path();
                    // hidden entries (`.git`, macOS `._song.wav` resource forks) are not music
                    if path
                        .file_name()
                        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
                    {
                        continue;
                    }
                    if path.is_dir() {
                        stack.push(path);
                    } else if is_audio(&path) && path.is_file() {
                        // (a pipe or device named like audio would block the walk)
                        let relative =
                            prefix.join(path.strip_prefix(p).unwrap_or(&path).with_extension(""));
                        files.push(Input {
                            path,
                            relative,
                            named: false,
                        });
                    }
                }
            }
        } else if p.exists() || p == Path::new("-") {
            // a regular file, or a device or pipe given by name: the decoder says what it holds
            let relative = if p == Path::new("-") {
                PathBuf::from("stdin")
            } else {
                PathBuf::from(p.file_stem().unwrap_or(p.as_os_str()))
            };
            files.push(Input {
                path: p.clone(),
                relative,
                named: p != Path::new("-"),
            });
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    if files.is_empty() {
        let given: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "{}: no audio files found (none with an audio extension: .wav, .flac, .mp3, .ogg, ...)",
            given.join(", ")
        );
    }
    // one input per real file, however it was spelled (`x.wav`, `./x.wav`, via a folder)
    let mut real = std::collections::HashSet::new();
    files
        .retain(|f| real.insert(std::fs::canonicalize(&f.path).unwrap_or_else(|_| f.path.clone())));
    files.sort_by(|a, b| a.path.cmp(&b.path));
    distinct_outputs(&mut files)?;
    Ok(files)
}

/// Inputs whose outputs would share a name (`a.wav` and `a.mp3` in one folder) keep their
/// audio extension in it (`a.wav.npy`, `a.mp3.npy`); files given by name that still collide
/// (`in/x.wav` and `in/c/x.wav`) are told apart by their folders below the deepest folder
/// they share (`x`, `c/x`). What collides even so is an error rather than one output
/// silently replacing another.
fn distinct_outputs(files: &mut [Input]) -> Result<()> {
    use std::collections::HashMap;
    let counts = |files: &[Input]| {
        let mut count: HashMap<PathBuf, usize> = HashMap::new();
        for f in files {
            *count.entry(f.relative.clone()).or_default() += 1;
        }
        count
    };
    let count = counts(files);
    for f in files.iter_mut() {
        if count[&f.relative] > 1
            && let Some(name) = f.path.file_name()
        {
            f.relative = f.relative.with_file_name(name);
        }
    }
    let count = counts(files);
    let given = |f: &Input| f.named;
    let folders: Vec<PathBuf> = files
        .iter()
        .filter(|f| count[&f.relative] > 1 && given(f))
        .filter_map(|f| {
            std::fs::canonicalize(&f.path)
                .ok()?
                .parent()
                .map(Path::to_path_buf)
        })
        .collect();
    if let Some(first) = folders.first() {
        let common = folders.iter().fold(first.clone(), |acc, d| {
            acc.components()
                .zip(d.components())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect()
        });
        for f in files.iter_mut() {
            if count[&f.relative] > 1
                && given(f)
                && let Ok(real) = std::fs::canonicalize(&f.path)
                && let Some(below) = real.parent().and_then(|d| d.strip_prefix(&common).ok())
            {
                f.relative = below.join(&f.relative);
            }
        }
    }
    let mut seen: HashMap<&Path, &Path> = HashMap::new();
    for f in files.iter() {
        if let Some(other) = seen.insert(&f.relative, &f.path) {
            bail!(
                "{} and {}: both would be written to the same output ({} in the output folder); give them in separate runs",
                other.display(),
                f.path.display(),
                f.relative.display()
            );
        }
    }
    Ok(())
}

/// Whether `--out` names a folder even for one input: one that exists, or a path written
/// with a trailing separator (`out/`).
pub fn names_a_folder(out: &Path) -> bool {
    out.is_dir()
        || out
            .as_os_str()
            .as_encoded_bytes()
            .last()
            .is_some_and(|&b| b == b'/' || (cfg!(windows) && b == b'\\'))
}

/// Check (and create if needed) the output folder of a run with several inputs.
pub fn output_dir_for_many(out: &Path) -> Result<()> {
    if out.is_dir() {
        return Ok(());
    }
    if out.exists() {
        bail!(
            "{}: with several inputs --out must be a folder, and this is a file",
            out.display()
        );
    }
    if out.extension().is_some() {
        bail!(
            "{}: with several inputs --out must be a folder (one output file per input), not a file name",
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))
}

fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO.contains(&e.to_ascii_lowercase().as_str()))
}

/// `out_dir/relative.ext`, creating the folders it needs. The extension is appended, so a
/// name with dots (`take.2.wav`) keeps them (`take.2.npy`).
pub fn output_for(input: &Input, out_dir: &Path, ext: &str) -> Result<PathBuf> {
    let mut name = out_dir.join(&input.relative).into_os_string();
    name.push(".");
    name.push(ext);
    let out = PathBuf::from(name);
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mert-inputs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn outputs_are_distinct_and_keep_dots() {
        let dir = scratch("distinct");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        let files = [
            "a.wav",
            "a.mp3",
            "take.2.wav",
            "sub/a.wav",
            "notes.txt",
            "c.AIFC",
            "._a.wav",
            ".git/b.wav",
        ];
        for f in files {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let inputs = collect_inputs(std::slice::from_ref(&dir)).unwrap();
        let rel: Vec<String> = inputs
            .iter()
            .map(|i| i.relative.display().to_string())
            .collect();
        // hidden files and folders (`._a.wav`: a macOS resource fork) are skipped
        assert_eq!(rel, ["a.mp3", "a.wav", "c", "sub/a", "take.2"]);
        let o = scratch("o2");
        assert_eq!(
            output_for(&inputs[4], &o, "npy").unwrap(),
            o.join("take.2.npy")
        );
        assert_eq!(
            output_for(&inputs[1], &o, "npy").unwrap(),
            o.join("a.wav.npy")
        );
    }

    #[test]
    fn same_name_files_from_two_folders_are_told_apart_by_folder() {
        let dir = scratch("clash");
        for d in ["x", "y", "x/c"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
            std::fs::write(dir.join(d).join("a.wav"), b"").unwrap();
        }
        std::fs::write(dir.join("y/b.wav"), b"").unwrap();
        let rel = |inputs: Vec<Input>| -> Vec<String> {
            inputs
                .iter()
                .map(|i| i.relative.display().to_string())
                .collect()
        };
        let got = collect_inputs(&[
            dir.join("x/a.wav"),
            dir.join("y/a.wav"),
            dir.join("y/b.wav"),
        ]);
        assert_eq!(rel(got.unwrap()), ["x/a.wav", "y/a.wav", "b"]);
        let got = collect_inputs(&[dir.join("x/a.wav"), dir.join("x/c/a.wav")]);
        assert_eq!(rel(got.unwrap()), ["a.wav", "c/a.wav"]);
        // a named file against a folder's file of the same name: the folder's outputs keep
        // mirroring it, so the two collide and are refused
        let err = collect_inputs(&[dir.join("x"), dir.join("y/a.wav")]).unwrap_err();
        assert!(err.to_string().contains("separate runs"), "{err}");
        // the same file twice is one input
        assert_eq!(
            collect_inputs(&[dir.join("x/a.wav"), dir.join("x/a.wav")])
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn several_folders_each_keep_their_name() {
        let dir = scratch("folders");
        for d in ["train", "valid"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
            std::fs::write(dir.join(d).join("a.wav"), b"").unwrap();
        }
        let inputs = collect_inputs(&[dir.join("train"), dir.join("valid/")]).unwrap();
        let rel: Vec<_> = inputs.iter().map(|i| i.relative.clone()).collect();
        assert_eq!(rel, [Path::new("train/a"), Path::new("valid/a")]);
        // one folder: its files at the top
        let one = collect_inputs(&[dir.join("train")]).unwrap();
        assert_eq!(one[0].relative, Path::new("a"));
        // a folder linked under another name goes by the name given
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.join("train"), dir.join("mine")).unwrap();
            let linked = collect_inputs(&[dir.join("mine"), dir.join("valid")]).unwrap();
            assert_eq!(linked[0].relative, Path::new("mine/a"));
        }
    }

    #[test]
    fn stdin_fifos_and_spellings() {
        let dir = scratch("spell");
        std::fs::write(dir.join("x.wav"), b"").unwrap();
        // `-` is standard input, written as `stdin.npy` in an output folder
        let stdin = collect_inputs(&[PathBuf::from("-")]).unwrap();
        assert_eq!(stdin[0].relative, Path::new("stdin"));
        // one file spelled two ways is one input
        let two = [dir.join("x.wav"), dir.join(".").join("x.wav")];
        assert_eq!(collect_inputs(&two).unwrap().len(), 1);
        // a pipe named like audio is not walked into (reading it would block)
        #[cfg(unix)]
        {
            let fifo = dir.join("p.wav");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                let found = collect_inputs(std::slice::from_ref(&dir)).unwrap();
                assert_eq!(found.len(), 1, "{found:?}");
            }
        }
        assert!(names_a_folder(&dir.join("new/")));
        assert!(names_a_folder(&dir));
        assert!(!names_a_folder(&dir.join("new")));
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_are_walked_once() {
        let dir = scratch("loop");
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("d/a.wav"), b"").unwrap();
        std::os::unix::fs::symlink(".", dir.join("d/p")).unwrap();
        std::os::unix::fs::symlink(".", dir.join("d/q")).unwrap();
        let inputs = collect_inputs(&[dir.join("d")]).unwrap();
        assert_eq!(inputs.len(), 1, "{inputs:?}");
    }

    #[test]
    fn output_dir_for_many_creates_folders_not_files() {
        let dir = scratch("outdir");
        output_dir_for_many(&dir.join("new/deeper")).unwrap();
        assert!(dir.join("new/deeper").is_dir());
        assert!(output_dir_for_many(&dir.join("x.npy")).is_err());
        std::fs::write(dir.join("file"), b"").unwrap();
        assert!(output_dir_for_many(&dir.join("file")).is_err());
    }
}
