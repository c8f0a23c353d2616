//! The kit's model file: one `.safetensors` with tensors under the reference names (the
//! positional conv stored folded) and `__metadata__` describing the model:
//! `mert.format` (integer version), `mert.config` (config JSON), `mert.quant` (`f32` here),
//! `mert.license`, `mert.source`, and with a tagging head `mert.head` (its [`HeadConfig`] as
//! JSON) with the head's tensors under `head.`.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, serialize};

use super::tensors::{TensorMap, read_safetensors};
use super::{Checkpoint, HeadWeights};
use crate::error::{MertError, Result};
use crate::model::MertConfig;
use crate::probe::HeadConfig;

pub const META_FORMAT: &str = "mert.format";
pub const META_CONFIG: &str = "mert.config";
pub const META_QUANT: &str = "mert.quant";
pub const META_LICENSE: &str = "mert.license";
pub const META_SOURCE: &str = "mert.source";
pub const META_HEAD: &str = "mert.head";
/// Prefix of a tagging head's tensors.
pub const HEAD_PREFIX: &str = "head.";
/// The file format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Parse a kit model file from bytes (the web and mobile entry point).
pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Checkpoint> {
    let (tensors, metadata) = read_safetensors(bytes, source)?;
    from_parts(tensors, &metadata, Path::new(source))
}

/// Validate a kit file's metadata and tensors.
pub(crate) fn from_parts(
    mut tensors: TensorMap,
    metadata: &HashMap<String, String>,
    path: &Path,
) -> Result<Checkpoint> {
    let format = metadata
        .get(META_FORMAT)
        .ok_or_else(|| MertError::format(path, format!("metadata `{META_FORMAT}` is missing")))?;
    match format.parse::<u32>() {
        Ok(v) if v == FORMAT_VERSION => {}
        _ => {
            return Err(MertError::format(
                path,
                format!(
                    "metadata `{META_FORMAT}` is `{format}`; this build reads version {FORMAT_VERSION}"
                ),
            ));
        }
    }
    match metadata.get(META_QUANT).map(String::as_str) {
        None | Some("f32") => {}
        Some(other) => {
            return Err(MertError::format(
                path,
                format!("metadata `{META_QUANT}` is `{other}`; this build reads `f32` model files"),
            ));
        }
    }
    let config_text = metadata
        .get(META_CONFIG)
        .ok_or_else(|| MertError::format(path, format!("metadata `{META_CONFIG}` is missing")))?;
    let config = MertConfig::from_json(config_text).map_err(|e| match e {
        MertError::Config { field, message } => MertError::format(
            path,
            format!("metadata `{META_CONFIG}`, field `{field}`: {message}"),
        ),
        other => other,
    })?;
    let head = split_head(&mut tensors, metadata, path)?;
    let mut checkpoint = Checkpoint::from_reference(config, tensors)?;
    checkpoint.head = head;
    checkpoint.license = metadata.get(META_LICENSE).cloned();
    checkpoint.source = metadata
        .get(META_SOURCE)
        .cloned()
        .unwrap_or_else(|| path.display().to_string());
    Ok(checkpoint)
}

/// Take the `head.*` tensors and the `mert.head` description out of a kit file.
fn split_head(
    tensors: &mut TensorMap,
    metadata: &HashMap<String, String>,
    path: &Path,
) -> Result<Option<HeadWeights>> {
    let keys: Vec<String> = tensors
        .tensors
        .keys()
        .filter(|k| k.starts_with(HEAD_PREFIX))
        .cloned()
        .collect();
    let Some(text) = metadata.get(META_HEAD) else {
        if let Some(k) = keys.first() {
            return Err(MertError::tensor(
                &path.display().to_string(),
                k,
                format!("a head tensor without `{META_HEAD}` metadata"),
            ));
        }
        return Ok(None);
    };
    let config: HeadConfig = serde_json::from_str(text)
        .map_err(|e| MertError::format(path, format!("metadata `{META_HEAD}`: {e}")))?;
    config
        .validate()
        .map_err(|e| MertError::format(path, e.to_string()))?;
    let mut head = TensorMap::new(tensors.source.clone());
    for k in keys {
        if let Some(t) = tensors.remove(&k) {
            head.insert(&k[HEAD_PREFIX.len()..], t);
        }
    }
    Ok(Some(HeadWeights {
        config,
        tensors: head,
    }))
}

/// Serialise a checkpoint as a kit model file (f32). Writing it to disk, atomically, is the
/// caller's job.
pub fn to_bytes(checkpoint: &Checkpoint) -> Result<Vec<u8>> {
    let config = serde_json::to_string(&checkpoint.config)
        .map_err(|e| MertError::Invalid(format!("cannot serialise the config: {e}")))?;
    let metadata = HashMap::from([
        (META_FORMAT.to_string(), FORMAT_VERSION.to_string()),
        (META_CONFIG.to_string(), config),
        (META_QUANT.to_string(), "f32".to_string()),
        (
            META_LICENSE.to_string(),
            checkpoint
                .license
                .clone()
                .unwrap_or_else(|| "unknown".to_string()),
        ),
        (META_SOURCE.to_string(), checkpoint.source.clone()),
    ]);
    let mut metadata = metadata;
    if let Some(head) = &checkpoint.head {
        let text = serde_json::to_string(&head.config)
            .map_err(|e| MertError::Invalid(format!("cannot serialise the head: {e}")))?;
        metadata.insert(META_HEAD.to_string(), text);
    }
    let head_tensors = checkpoint
        .head
        .iter()
        .flat_map(|h| h.tensors.tensors.iter())
        .map(|(k, t)| (format!("{HEAD_PREFIX}{k}"), t));
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = checkpoint
        .tensors
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t))
        .chain(head_tensors)
        .map(|(k, t)| {
            let raw = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (k, raw, t.shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(k, raw, shape)| {
            TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|v| (k.as_str(), v))
                .map_err(|e| {
                    MertError::tensor(&checkpoint.source, k, format!("cannot serialise: {e}"))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    serialize(views, Some(metadata))
        .map_err(|e| MertError::Invalid(format!("cannot serialise the model file: {e}")))
}
