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
            .map(|v| expand(&PathBuf::from(v)))
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

/// `~` and `$VAR` / `${VAR}` in a cache variable expanded, as `huggingface_hub` expands them
/// (an unset variable is left as written).
fn expand(path: &Path) -> PathBuf {
    let Some(text) = path.to_str() else {
        return path.to_path_buf();
    };
    let mut text = text.to_string();
    if (text == "~" || text.starts_with("~/"))
        && let Some(home) = std::env::var_os("HOME").and_then(|h| h.into_string().ok())
    {
        text = format!("{home}{}", &text[1..]);
    }
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        match std::env::var(name) {
            Ok(value) if !name.is_empty() => out.push_str(&value),
            _ => out.push_str(&rest[at..at + 1 + len]),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    PathBuf::from(out)
}

/// `owner/name` when `path` reads as a model id (two parts of letters, digits, `-`, `_`, `.`,
/// neither starting with `.`), not as a path.
fn model_id(path: &Path) -> Option<(&str, &str)> {
    let text = path.to_str()?;
    // a model file's name (`runs/model.safetensors`) is a missing path, not an id
    let model_file = [".safetensors", ".bin", ".pt", ".pth", ".json"]
        .iter()
        .any(|ext| text.ends_with(ext));
    if model_file {
        return None;
    }
    let (owner, name) = text.split_once('/')?;
    // (the hub refuses `--` in names: the cache folder joins owner and name with it)
    let part = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && !s.contains("--")
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
                "no such file or folder, and no Hugging Face cache folder to look for the model `{id}` in (HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME and HOME are unset or empty)"
            ),
        )));
    };
    let repo = cache.join(format!("models--{owner}--{name}"));
    let snapshots = repo.join("snapshots");
    let fail = |why: String| Some(Err(MertError::format(path, why)));
    // `refs/main` names the revision; it must be there (no silent fallback to another one)
    let refs_main = repo.join("refs").join("main");
    let text = match std::fs::read_to_string(&refs_main) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return fail(format!("{}: cannot read ({e})", refs_main.display())),
    };
    if let Some(text) = text {
        let rev = text.trim();
        let plain = !rev.is_empty()
            && rev
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !rev.starts_with('.');
        if !plain {
            return fail(format!(
                "{}: `{}` is not a revision name",
                refs_main.display(),
                rev.escape_debug()
            ));
        }
        let dir = snapshots.join(rev);
        if !dir.is_dir() {
            return fail(format!(
                "the Hugging Face cache's refs/main for `{id}` names snapshot {rev}, which is not in {} (an incomplete download?)",
                snapshots.display()
            ));
        }
        return Some(Ok(dir));
    }
    let mut dirs: Vec<String> = std::fs::read_dir(&snapshots)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    match dirs.len() {
        1 => Some(Ok(snapshots.join(&dirs[0]))),
        0 => fail(format!(
            "no such file or folder, and no copy of the Hugging Face model `{id}` in {} (the kit downloads nothing: fetch it first, e.g. `huggingface-cli download {id}`, or pass its local folder)",
            repo.display()
        )),
        _ => fail(format!(
            "the Hugging Face cache holds {} snapshots of `{id}` ({}) and no refs/main to choose one; pass the snapshot folder",
            dirs.len(),
            dirs.join(", ")
        )),
    }
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
    fn cache_variables_expand_home_and_variables() {
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(
            expand(Path::new("~/hub")),
            PathBuf::from(format!("{home}/hub"))
        );
        assert_eq!(
            expand(Path::new("$HOME/x")),
            PathBuf::from(format!("{home}/x"))
        );
        assert_eq!(
            expand(Path::new("${HOME}/x")),
            PathBuf::from(format!("{home}/x"))
        );
        assert_eq!(
            expand(Path::new("/a/$MERT_SURELY_UNSET_VAR/b")),
            PathBuf::from("/a/$MERT_SURELY_UNSET_VAR/b")
        );
        assert_eq!(expand(Path::new("/a/${x")), PathBuf::from("/a/${x"));
    }

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
            "o--x/m",
            "runs/model.safetensors",
        ] {
            assert_eq!(model_id(Path::new(path)), None, "{path}");
        }
    }
}
