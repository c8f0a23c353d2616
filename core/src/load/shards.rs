//! Sharded Hugging Face checkpoints: `model.safetensors.index.json` or
//! `pytorch_model.bin.index.json` beside the shards it names (what `save_pretrained` writes
//! when a model exceeds `max_shard_size`). Each shard is read in turn and only the tensors the
//! index places in it are kept, so a checkpoint is never held twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::tensors::{self, TensorMap};
use crate::error::{MertError, Result};

/// The index files a sharded folder may hold.
pub const INDEX_FILES: [&str; 2] = [
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
];

/// Largest index read (95M's lists about 230 names in 20 kB).
const INDEX_MAX_BYTES: u64 = 16 << 20;

/// Whether `path` names an index file (`*.index.json`).
pub fn is_index(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".index.json"))
}

/// The tensors of every shard named by the index at `index`.
pub fn read_sharded(index: &Path) -> Result<TensorMap> {
    let bad = |msg: String| MertError::format(index, msg);
    let len = super::regular_file(index)?;
    if len > INDEX_MAX_BYTES {
        return Err(bad(format!(
            "{len} bytes; a shard index is expected to be at most {INDEX_MAX_BYTES} bytes"
        )));
    }
    let text = std::fs::read_to_string(index).map_err(|e| MertError::io(index, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a JSON shard index ({e})")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object (tensor name -> shard file)".into()))?;
    if map.is_empty() {
        return Err(bad("`weight_map` names no tensors".into()));
    }
    // shard file -> the tensors it should hold
    let mut shards: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (key, shard) in map {
        let shard = shard
            .as_str()
            .ok_or_else(|| bad(format!("`weight_map.{key}`: expected a shard file name")))?;
        // a plain file name in the index's folder, nothing elsewhere
        let plain = Path::new(shard)
            .file_name()
            .is_some_and(|n| n == std::ffi::OsStr::new(shard))
            && !shard.contains(['/', '\\']);
        if !plain {
            return Err(bad(format!(
                "`weight_map.{key}`: `{shard}` is not a file name in the index's folder"
            )));
        }
        shards
            .entry(shard.to_string())
            .or_default()
            .insert(key.clone());
    }
    let folder = index.parent().unwrap_or(Path::new("."));
    let mut all = TensorMap::new(index.display().to_string());
    for (shard, keys) in &shards {
        let path = folder.join(shard);
        super::regular_file(&path)?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let mut part = match ext {
            "safetensors" => {
                let bytes = std::fs::read(&path).map_err(|e| MertError::io(&path, e))?;
                tensors::read_safetensors(&bytes, &path.display().to_string())?.0
            }
            "bin" | "pt" | "pth" => tensors::read_pytorch(&path)?,
            _ => {
                return Err(MertError::format(
                    &path,
                    format!(
                        "named as a shard by {}, but not a .safetensors or .bin file",
                        index.display()
                    ),
                ));
            }
        };
        if let Some(key) = keys.iter().find(|k| !part.tensors.contains_key(*k)) {
            return Err(MertError::format(
                &path,
                format!(
                    "has no tensor `{key}`, which {} places there",
                    index.display()
                ),
            ));
        }
        // Like transformers, every tensor of a listed shard is loaded; one the index places
        // in another shard is that shard's.
        for (key, tensor) in std::mem::take(&mut part.tensors) {
            let elsewhere = map
                .get(&key)
                .and_then(|v| v.as_str())
                .is_some_and(|s| s != shard);
            if !elsewhere {
                all.tensors.insert(key, tensor);
            }
        }
    }
    Ok(all)
}
