//! The kit's model file: one `.safetensors` with tensors under the reference names (the
//! positional conv stored folded) and `__metadata__` describing the model:
//! `mert.format` (integer version), `mert.config` (config JSON), `mert.quant` (`f32`, `f16`,
//! `q8` or `q4`; with q8/q4 also `mert.quant.block`), `mert.license`, `mert.source`, and with a
//! tagging head `mert.head` (its [`HeadConfig`] as JSON) with the head's tensors under `head.`.
//! Quantized weights are stored as `KEY.q` + `KEY.scale` (see [`crate::quant`]) and come back
//! as f32 at load.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{SafeTensors, serialize};

use super::tensors::TensorMap;
use super::{Checkpoint, HeadWeights, keys};
use crate::error::{MertError, Result};
use crate::model::MertConfig;
use crate::probe::HeadConfig;
use crate::quant::{self, Layout, Scheme, Stored};

pub const META_FORMAT: &str = "mert.format";
pub const META_CONFIG: &str = "mert.config";
pub const META_QUANT: &str = "mert.quant";
/// Values per scale of the q8/q4 schemes.
pub const META_QUANT_BLOCK: &str = "mert.quant.block";
pub const META_LICENSE: &str = "mert.license";
pub const META_SOURCE: &str = "mert.source";
pub const META_HEAD: &str = "mert.head";
/// Prefix of a tagging head's tensors.
pub const HEAD_PREFIX: &str = "head.";
/// The file format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Parse a kit model file from bytes (the web and mobile entry point).
pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Checkpoint> {
    parse_bytes(bytes, source).map_err(super::one_line)
}

fn parse_bytes(bytes: &[u8], source: &str) -> Result<Checkpoint> {
    let path = Path::new(source);
    match read(bytes, path)? {
        Some(file) => from_parts(file, path),
        None => Err(MertError::format(
            path,
            format!("metadata `{META_CONFIG}` is missing (not a kit model file)"),
        )),
    }
}

/// A kit file as read, before the checks against its config.
pub(crate) struct KitFile {
    config: MertConfig,
    /// Every tensor as f32 (quantized ones dequantized), the head's included.
    tensors: TensorMap,
    metadata: HashMap<String, String>,
}

/// Parse a kit file's metadata and tensors, or `None` when the safetensors file has no
/// `mert.config` metadata (not a kit file). The bytes can be dropped afterwards.
pub(crate) fn read(bytes: &[u8], path: &Path) -> Result<Option<KitFile>> {
    let source = path.display().to_string();
    super::tensors::unique_keys(bytes, &source)?;
    let invalid = |e| super::tensors::invalid_safetensors(bytes, &source, e);
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(invalid)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    if !metadata.contains_key(META_CONFIG) {
        return Ok(None);
    }
    let st = SafeTensors::deserialize(bytes).map_err(invalid)?;
    check_format(&metadata, path)?;
    let config = config_of(&metadata, path)?;
    // Quantized tensors are checked against the config's shapes. A hostile config must not
    // size that key list (16 keys per layer): a file holds every layer's tensors.
    let quantized = st.names().iter().any(|n| n.ends_with(quant::Q_SUFFIX));
    if quantized && config.num_hidden_layers > st.len().max(64) {
        return Err(MertError::format(
            path,
            format!(
                "metadata `{META_CONFIG}` asks for {} layers; the file holds {} tensors",
                config.num_hidden_layers,
                st.len()
            ),
        ));
    }
    let shapes: HashMap<String, Vec<usize>> = if quantized {
        keys::expected_tensors(&config).into_iter().collect()
    } else {
        HashMap::new()
    };
    let layout = layout_of(&metadata, path, &st, &shapes)?;
    let tensors = quant::decode(st.tensors(), &shapes, layout, &source)?;
    Ok(Some(KitFile {
        config,
        tensors,
        metadata,
    }))
}

fn check_format(metadata: &HashMap<String, String>, path: &Path) -> Result<()> {
    let format = metadata
        .get(META_FORMAT)
        .ok_or_else(|| MertError::format(path, format!("metadata `{META_FORMAT}` is missing")))?;
    match format.parse::<u32>() {
        Ok(v) if v == FORMAT_VERSION => Ok(()),
        _ => Err(MertError::format(
            path,
            format!(
                "metadata `{META_FORMAT}` is `{format}`; this build reads version {FORMAT_VERSION}"
            ),
        )),
    }
}

fn config_of(metadata: &HashMap<String, String>, path: &Path) -> Result<MertConfig> {
    let config_text = metadata
        .get(META_CONFIG)
        .ok_or_else(|| MertError::format(path, format!("metadata `{META_CONFIG}` is missing")))?;
    MertConfig::from_json(config_text).map_err(|e| match e {
        MertError::Config { field, message } => MertError::format(
            path,
            format!("metadata `{META_CONFIG}`, field `{field}`: {message}"),
        ),
        other => other,
    })
}

/// The storage scheme stated by `mert.quant` (absent: f32) and, for q8/q4, `mert.quant.block`
/// (absent: implied by the scales of the first quantized weight, of the `shapes` expected).
fn layout_of(
    metadata: &HashMap<String, String>,
    path: &Path,
    st: &SafeTensors,
    shapes: &HashMap<String, Vec<usize>>,
) -> Result<Layout> {
    let name = metadata.get(META_QUANT).map_or("f32", String::as_str);
    let scheme = Scheme::from_name(name).ok_or_else(|| {
        MertError::format(
            path,
            format!("metadata `{META_QUANT}` is `{name}`; expected f32, f16, q8 or q4"),
        )
    })?;
    if !scheme.is_blocked() {
        return Ok(Layout::new(scheme));
    }
    let Some(text) = metadata.get(META_QUANT_BLOCK) else {
        let mut bases: Vec<&String> = shapes.keys().collect();
        bases.sort();
        return bases
            .into_iter()
            .find_map(|b| {
                let scale = st.tensor(&format!("{b}{}", quant::SCALE_SUFFIX)).ok()?;
                Some((&shapes[b], scale.shape().to_vec()))
            })
            .and_then(|(weight, scale)| implied_block(weight, &scale))
            .map(|block| Layout::new(scheme).with_block(block))
            .ok_or_else(|| {
                MertError::format(
                    path,
                    format!(
                        "metadata `{META_QUANT_BLOCK}` is missing (needed by `{META_QUANT}` \
                         {name}) and no weight's `.scale` implies it"
                    ),
                )
            });
    };
    match Layout::parse_block(text) {
        Some(block) => Ok(Layout::new(scheme).with_block(block)),
        None => Err(MertError::format(
            path,
            format!(
                "metadata `{META_QUANT_BLOCK}` is `{text}`; expected a positive integer or `channel`"
            ),
        )),
    }
}

/// Check a kit file's tensors against its config and make the checkpoint.
pub(crate) fn from_parts(file: KitFile, path: &Path) -> Result<Checkpoint> {
    let KitFile {
        config,
        mut tensors,
        metadata,
    } = file;
    let metadata = &metadata;
    let head = split_head(&mut tensors, metadata, &config, path)?;
    let mut checkpoint = Checkpoint::from_reference(config, tensors)?;
    checkpoint.head = head;
    checkpoint.quantized = metadata.get(META_QUANT).filter(|q| *q != "f32").cloned();
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
    model: &MertConfig,
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
    // A head on this model's hidden states must fit them; `tag` feeds it those.
    if config.features == "mert"
        && (config.states, config.dim) != (model.num_hidden_states(), model.hidden_size)
    {
        return Err(MertError::format(
            path,
            format!(
                "metadata `{META_HEAD}`: states {} and dim {} do not match the model's {} hidden states of width {}",
                config.states,
                config.dim,
                model.num_hidden_states(),
                model.hidden_size
            ),
        ));
    }
    let mut head = TensorMap::new(tensors.source.clone());
    for k in keys {
        if let Some(t) = tensors.remove(&k) {
            head.insert(&k[HEAD_PREFIX.len()..], t);
        }
    }
    check_head_tensors(&config, &head, path)?;
    Ok(Some(HeadWeights {
        config,
        tensors: head,
    }))
}

/// Every tensor the head's config implies, holding as many values as it implies (the
/// layout is the head loader's business): the file's tensors then bound what the config sizes,
/// before any head is built from it.
fn check_head_tensors(config: &HeadConfig, head: &TensorMap, path: &Path) -> Result<()> {
    let (states, dim, hidden, tags) = (config.states, config.dim, config.hidden, config.tags.len());
    // Shapes as the file stores them (2-D tensors in the reference `[out, in]` order).
    let expected: [(&str, Vec<usize>); 7] = [
        ("feat_mean", vec![dim, states]),
        ("feat_std", vec![dim, states]),
        ("layer_weights", vec![states.saturating_sub(1).max(1)]),
        ("fc1.weight", vec![hidden, config.input_width()]),
        ("fc1.bias", vec![hidden]),
        ("fc2.weight", vec![tags, hidden]),
        ("fc2.bias", vec![tags]),
    ];
    let source = path.display().to_string();
    for (key, shape) in &expected {
        let name = format!("{HEAD_PREFIX}{key}");
        let t = head.get(key).ok_or_else(|| {
            MertError::tensor(&source, &name, format!("missing (`{META_HEAD}` needs it)"))
        })?;
        if &t.shape != shape {
            return Err(MertError::tensor(
                &source,
                &name,
                format!(
                    "shape {:?} in the file; `{META_HEAD}` (states {states}, dim {dim}, hidden {hidden}, {tags} tags) needs {shape:?}",
                    t.shape
                ),
            ));
        }
        if let Some(v) = t.data.iter().find(|v| !v.is_finite()) {
            return Err(MertError::tensor(
                &source,
                &name,
                format!("holds {v}; weights must be finite"),
            ));
        }
        // features are divided by it
        if *key == "feat_std"
            && let Some(v) = t.data.iter().find(|v| **v <= 0.0)
        {
            return Err(MertError::tensor(
                &source,
                &name,
                format!("holds {v}; standard deviations must be positive"),
            ));
        }
    }
    if let Some(extra) = head
        .tensors
        .keys()
        .find(|k| !expected.iter().any(|(e, _)| *e == k.as_str()))
    {
        return Err(MertError::tensor(
            &source,
            &format!("{HEAD_PREFIX}{extra}"),
            "not a tensor of the tagging head",
        ));
    }
    Ok(())
}

/// Serialise a checkpoint as a kit model file (f32). Writing it to disk, atomically, is the
/// caller's job.
pub fn to_bytes(checkpoint: &Checkpoint) -> Result<Vec<u8>> {
    to_bytes_quantized(checkpoint, Layout::F32)
}

/// Serialise a checkpoint as a kit model file with its large weights stored as `layout`
/// states (see [`crate::quant`]); biases, norms, small weights and a head stay f32.
pub fn to_bytes_quantized(checkpoint: &Checkpoint, layout: Layout) -> Result<Vec<u8>> {
    let config = serde_json::to_string(&checkpoint.config)
        .map_err(|e| MertError::Invalid(format!("cannot serialise the config: {e}")))?;
    let mut metadata = HashMap::from([
        (META_FORMAT.to_string(), FORMAT_VERSION.to_string()),
        (META_CONFIG.to_string(), config),
        (META_QUANT.to_string(), layout.scheme.name().to_string()),
        (
            META_LICENSE.to_string(),
            checkpoint
                .license
                .clone()
                .unwrap_or_else(|| "unknown".to_string()),
        ),
        (META_SOURCE.to_string(), checkpoint.source.clone()),
    ]);
    if layout.scheme.is_blocked() {
        metadata.insert(META_QUANT_BLOCK.to_string(), layout.block_name());
    }
    if let Some(head) = &checkpoint.head {
        let mut config = head.config.clone();
        config.layer_weights = match (config.layer, head.tensors.get("layer_weights")) {
            (crate::probe::LayerChoice::All, Some(w)) => Some(softmax(&w.data)),
            _ => None,
        };
        let text = serde_json::to_string(&config)
            .map_err(|e| MertError::Invalid(format!("cannot serialise the head: {e}")))?;
        metadata.insert(META_HEAD.to_string(), text);
    }
    let mut stored: Vec<Stored> = Vec::new();
    for (k, t) in &checkpoint.tensors.tensors {
        stored.extend(quant::encode(k, t, layout, &checkpoint.source)?);
    }
    for (k, t) in checkpoint
        .head
        .iter()
        .flat_map(|h| h.tensors.tensors.iter())
    {
        stored.push(Stored::f32(format!("{HEAD_PREFIX}{k}"), t));
    }
    if let Some(m) = &checkpoint.mask_embedding {
        stored.push(Stored::f32(keys::MASK_EMBEDDING.to_string(), m));
    }
    let views = stored
        .iter()
        .map(|s| {
            TensorView::new(s.dtype, s.shape.clone(), &s.bytes)
                .map(|v| (s.name.as_str(), v))
                .map_err(|e| {
                    MertError::tensor(
                        &checkpoint.source,
                        &s.name,
                        format!("cannot serialise: {e}"),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    serialize(views, Some(metadata))
        .map_err(|e| MertError::Invalid(format!("cannot serialise the model file: {e}")))
}

/// The block length a weight's `[rows, blocks]` scales imply: one block a row is a channel
/// scale; otherwise the row length over the blocks, rounded up, when that gives back the count.
fn implied_block(weight: &[usize], scale: &[usize]) -> Option<usize> {
    let rows = *weight.first()?;
    let row_len = weight.iter().skip(1).product::<usize>();
    let &[r, blocks] = scale else { return None };
    if r != rows || blocks == 0 || row_len == 0 {
        return None;
    }
    if blocks == 1 {
        return Some(quant::PER_CHANNEL);
    }
    let block = row_len.div_ceil(blocks);
    (row_len.div_ceil(block) == blocks).then_some(block)
}

/// The softmax of a few logits (the head's layer weights), for the metadata.
fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}
