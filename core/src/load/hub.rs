//! Hugging Face model ids (`m-a-p/MERT-v1-95M`) resolved to a copy already in the local
//! Hugging Face cache, where `from_pretrained` or `huggingface-cli download` put it: the kit
//! downloads nothing, but a model fetched before loads by its id, as transformers does offline.

use std::path::{Path, PathBuf};

use crate::error::{MertError, Result};

/// The hub cache folder, found as `huggingface_hub` finds it: `$HF_HUB_CACHE`
/// (or the older `$HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return Some(dir);
    }
    if let Some(home) = var("HF_HOME") {
        return Some(home.join("hub"));
    }
    let cache = var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))?;
    Some(cache.join("huggingface").join("hub"))
}

/// `owner/name` when `path` reads as a model id (two parts of letters, digits, `-`, `_`, `.`,
/// neither starting with `.`), not as a path.
fn model_id(path: &Path) -> Option<(&str, &str)> {
    let text = path.to_str()?;
    let (owner, name) = text.split_once('/')?;
    let part = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.len() <= 96
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (part(owner) && part(name)).then_some((owner, name))
}

/// For a path that does not exist but reads as a model id: its snapshot folder in the local
/// cache (the revision `refs/main` names, else the only snapshot), or an error saying where it
/// was looked for. `None` when `path` is not a model id.
pub fn resolve(path: &Path) -> Option<Result<PathBuf>> {
    let (owner, name) = model_id(path)?;
    let id = format!("{owner}/{name}");
    let Some(cache) = cache_dir() else {
        return Some(Err(MertError::format(
            path,
            format!(
                "no such file or folder, and no Hugging Face cache folder to look for the model `{id}` in (HF_HUB_CACHE, HF_HOME and HOME are unset)"
            ),
        )));
    };
    let repo = cache.join(format!("models--{owner}--{name}"));
    let snapshots = repo.join("snapshots");
    let by_ref = std::fs::read_to_string(repo.join("refs").join("main"))
        .ok()
        .map(|hash| snapshots.join(hash.trim()))
        .filter(|dir| dir.is_dir());
    let only = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        (dirs.len() == 1).then(|| dirs.remove(0))
    };
    Some(by_ref.or_else(only).ok_or_else(|| {
        MertError::format(
            path,
            format!(
                "no such file or folder, and no copy of the Hugging Face model `{id}` in {} (the kit downloads nothing: fetch it first, e.g. `huggingface-cli download {id}`, or pass its local folder)",
                repo.display()
            ),
        )
    }))
}

/// `path` itself, or for a model id that is not a path, its snapshot folder when the cache
/// has one (what a model file's identity is computed from).
pub fn local_path(path: &Path) -> PathBuf {
    if path.exists() {
        return path.to_path_buf();
    }
    match resolve(path) {
        Some(Ok(snapshot)) => snapshot,
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_paths_are_told_apart() {
        assert_eq!(
            model_id(Path::new("m-a-p/MERT-v1-95M")),
            Some(("m-a-p", "MERT-v1-95M"))
        );
        for path in [
            "model.safetensors",
            "./m-a-p/MERT",
            "../x/y",
            "/abs/path",
            "a/b/c",
            "a/",
            "a b/c",
            ".hidden/x",
        ] {
            assert_eq!(model_id(Path::new(path)), None, "{path}");
        }
    }
}
