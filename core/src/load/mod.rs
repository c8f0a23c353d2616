//! Loading weights: Hugging Face folders (`config.json` + `model.safetensors` or
//! `pytorch_model.bin`), fairseq training checkpoints and the kit's own model file. Every
//! path ends in a [`Checkpoint`]:
//! a validated config plus tensors under the reference names, which builds a [`crate::Mert`].

mod fairseq;
pub mod hub;
pub mod keys;
pub mod kit;
mod pickle_scan;
pub mod shards;
pub mod tensors;
pub mod weights;

use std::path::{Path, PathBuf};

use crate::error::{MertError, Result};
use crate::model::MertConfig;
use crate::model::pos_conv::fold_weight_norm;
pub use tensors::{HostTensor, TensorMap};

/// A validated config and its tensors, named as the reference names them.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub config: MertConfig,
    pub tensors: TensorMap,
    /// Licence of the weights, when the source states one.
    pub license: Option<String>,
    /// Where the weights came from (a path, or the kit file's own `mert.source`).
    pub source: String,
    /// Training-only tensors present in the source and not loaded.
    pub skipped: Vec<String>,
    /// `masked_spec_embed` `[hidden]`, the vector pretraining puts in masked frames: inference
    /// never uses it, but it is kept (and written to kit files) for further pretraining.
    pub mask_embedding: Option<HostTensor>,
    /// A tagging head stored with the model (`head.*` tensors, `mert.head` metadata).
    pub head: Option<HeadWeights>,
    /// The kit file's `mert.quant` when it is not `f32`: the tensors here are dequantized,
    /// so writing them again as f32 or quantizing them again would hide or add rounding.
    pub quantized: Option<String>,
}

/// A tagging head's description and weights (keys without the `head.` prefix).
#[derive(Debug, Clone)]
pub struct HeadWeights {
    pub config: crate::probe::HeadConfig,
    pub tensors: TensorMap,
}

impl Checkpoint {
    /// Normalise raw reference-named tensors: fold the positional conv's weight norm, set
    /// training-only keys aside, and check every key and shape against the config.
    pub fn from_reference(config: MertConfig, mut tensors: TensorMap) -> Result<Self> {
        config.validate()?;
        check_layer_count(&config, tensors.tensors.len(), &tensors.source)?;
        fold_pos_conv(&mut tensors)?;
        let mask_embedding = tensors.remove(keys::MASK_EMBEDDING);
        if let Some(m) = &mask_embedding
            && m.shape != [config.hidden_size]
        {
            return Err(MertError::tensor(
                &tensors.source,
                keys::MASK_EMBEDDING,
                format!(
                    "expected shape [{}] (hidden_size), found {:?}",
                    config.hidden_size, m.shape
                ),
            ));
        }
        let mut skipped: Vec<String> = tensors
            .tensors
            .keys()
            .filter(|k| keys::is_training_only(k))
            .cloned()
            .collect();
        for k in &skipped {
            log::debug!("{}: skipping training-only tensor `{k}`", tensors.source);
            tensors.remove(k);
        }
        skipped.sort();
        check_against_config(&config, &tensors)?;
        let source = tensors.source.clone();
        Ok(Self {
            config,
            tensors,
            license: None,
            source,
            skipped,
            mask_embedding,
            head: None,
            quantized: None,
        })
    }
}

/// The key list of a config has 16 names per layer: a config from a hostile file must not
/// size it (2^40 layers), so more layers than the file's `n_tensors` can hold are refused first.
pub(crate) fn check_layer_count(config: &MertConfig, n_tensors: usize, source: &str) -> Result<()> {
    if config.num_hidden_layers > n_tensors.max(64) {
        return Err(MertError::tensor(
            source,
            "encoder.layers",
            format!(
                "the config asks for {} layers; the file holds {n_tensors} tensors",
                config.num_hidden_layers
            ),
        ));
    }
    Ok(())
}

/// Replace `weight_g`/`weight_v` (either spelling) of the positional conv by the folded weight.
fn fold_pos_conv(tensors: &mut TensorMap) -> Result<()> {
    for (g_key, v_key) in keys::POS_CONV_WEIGHT_NORM {
        let (g, v) = (tensors.remove(g_key), tensors.remove(v_key));
        match (g, v) {
            (None, None) => continue,
            (Some(g), Some(v)) => {
                let w = fold_weight_norm(&v.data, &v.shape, &g.data, &g.shape).ok_or_else(|| {
                    MertError::tensor(
                        &tensors.source,
                        g_key,
                        format!(
                            "weight-norm gain of shape {:?} does not fit direction {v_key} of shape {:?}",
                            g.shape, v.shape
                        ),
                    )
                })?;
                if tensors.get(keys::POS_CONV_WEIGHT).is_some() {
                    return Err(MertError::tensor(
                        &tensors.source,
                        keys::POS_CONV_WEIGHT,
                        "given both folded and weight-normalised; expected one of them",
                    ));
                }
                tensors.insert(keys::POS_CONV_WEIGHT, HostTensor::new(v.shape, w));
            }
            (Some(_), None) => {
                return Err(MertError::tensor(
                    &tensors.source,
                    v_key,
                    "missing (its weight-norm gain is present)",
                ));
            }
            (None, Some(_)) => {
                return Err(MertError::tensor(
                    &tensors.source,
                    g_key,
                    "missing (its weight-norm direction is present)",
                ));
            }
        }
    }
    Ok(())
}

/// Every expected key present with its shape, and nothing else.
fn check_against_config(config: &MertConfig, tensors: &TensorMap) -> Result<()> {
    let expected = keys::expected_tensors(config);
    for (key, shape) in &expected {
        match tensors.get(key) {
            None => {
                return Err(MertError::tensor(
                    &tensors.source,
                    key,
                    format!("missing; expected shape {shape:?}"),
                ));
            }
            Some(t) if &t.shape != shape => {
                return Err(MertError::tensor(
                    &tensors.source,
                    key,
                    format!("expected shape {shape:?}, found {:?}", t.shape),
                ));
            }
            Some(t) if t.data.len() != shape.iter().product::<usize>() => {
                return Err(MertError::tensor(
                    &tensors.source,
                    key,
                    "data length does not match its shape",
                ));
            }
            Some(t) => {
                // a damaged file: refused here rather than giving meaningless features
                if let Some(v) = t.data.iter().find(|v| !v.is_finite()) {
                    return Err(MertError::tensor(
                        &tensors.source,
                        key,
                        format!("holds {v}; weights must be finite"),
                    ));
                }
            }
        }
    }
    if expected.len() != tensors.tensors.len() {
        let known: std::collections::HashSet<&str> =
            expected.iter().map(|(k, _)| k.as_str()).collect();
        if let Some(extra) = tensors.tensors.keys().find(|k| !known.contains(k.as_str())) {
            return Err(MertError::tensor(
                &tensors.source,
                extra,
                "unexpected: not part of a MERT model with this config",
            ));
        }
    }
    Ok(())
}

/// Load a model from a path: a Hugging Face folder, a weights file inside one, or the kit's
/// own `.safetensors` model file; or a Hugging Face model id (`m-a-p/MERT-v1-95M`) whose copy
/// is in the local Hugging Face cache.
pub fn load_path(path: &Path) -> Result<Checkpoint> {
    load_any(path).map_err(one_line)
}

/// Errors are shown as one line (CLI, C ABI, web page), but their text may quote a file
/// (a metadata value, a JSON key, a tensor name): control characters in it are escaped.
pub(crate) fn one_line(e: MertError) -> MertError {
    fn clean(s: String) -> String {
        if !s.contains(char::is_control) {
            return s;
        }
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().collect()
                } else {
                    c.to_string()
                }
            })
            .collect()
    }
    let clean_path = |p: PathBuf| match p.to_str() {
        Some(s) if s.contains(char::is_control) => PathBuf::from(clean(s.to_string())),
        _ => p,
    };
    match e {
        MertError::Config { field, message } => MertError::Config {
            field: clean(field),
            message: clean(message),
        },
        MertError::Io { path, source } => MertError::Io {
            path: clean_path(path),
            source,
        },
        MertError::Format { path, message } => MertError::Format {
            path: clean_path(path),
            message: clean(message),
        },
        MertError::Tensor {
            source_name,
            key,
            message,
        } => MertError::Tensor {
            source_name: clean(source_name),
            key: clean(key),
            message: clean(message),
        },
        MertError::UnsafePickle { path, callable } => MertError::UnsafePickle {
            path: clean_path(path),
            callable: clean(callable),
        },
        MertError::Audio {
            source_name,
            message,
        } => MertError::Audio {
            source_name: clean(source_name),
            message: clean(message),
        },
        MertError::Invalid(message) => MertError::Invalid(clean(message)),
    }
}

/// A model, config or model-card path must be a regular file (not `/dev/zero`, a FIFO or a
/// folder), so that its size is known before it is read.
pub(crate) fn regular_file(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| match std::fs::read_link(path) {
        Ok(target) => MertError::format(
            path,
            format!(
                "a link to {}, which is missing (an incomplete download?)",
                target.display()
            ),
        ),
        Err(_) => MertError::io(path, e),
    })?;
    if !meta.is_file() {
        return Err(MertError::format(
            path,
            "not a regular file (a device, pipe or folder); expected a model file",
        ));
    }
    Ok(meta.len())
}

/// A small text file (config.json), at most `limit` bytes.
pub(crate) fn read_text(path: &Path, limit: u64) -> Result<String> {
    let len = regular_file(path)?;
    if len > limit {
        return Err(MertError::format(
            path,
            format!("{len} bytes; a config file is expected to be at most {limit} bytes"),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| MertError::io(path, e))
}

/// Largest `config.json` read (an official one is about 2 kB).
const CONFIG_MAX_BYTES: u64 = 1 << 20;

fn load_any(path: &Path) -> Result<Checkpoint> {
    if path.is_dir() {
        return load_hf_folder(path, None);
    }
    if !path.exists() {
        // `m-a-p/MERT-v1-95M`: a copy in the local Hugging Face cache
        if let Some(snapshot) = hub::resolve(path) {
            return load_hf_folder(&snapshot?, None);
        }
        return Err(MertError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ));
    }
    regular_file(path)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "safetensors" => {
            // The file's bytes are dropped as soon as they are parsed.
            let (file, head_only) = {
                let bytes = std::fs::read(path).map_err(|e| MertError::io(path, e))?;
                let file = kit::read(&bytes, path)?;
                // a head without a backbone (`mert probe --features cqt` writes one)
                let head_only = file.is_none()
                    && safetensors::SafeTensors::read_metadata(&bytes).is_ok_and(|(_, h)| {
                        h.metadata()
                            .as_ref()
                            .is_some_and(|m| m.contains_key("mert.head"))
                    });
                (file, head_only)
            };
            if let Some(file) = file {
                kit::from_parts(file, path)
            } else if head_only && !config_beside(path) {
                Err(MertError::format(
                    path,
                    "holds a tagging head alone, no backbone (a CQT-features baseline from `mert probe --features cqt`); pass a model file with a backbone",
                ))
            } else {
                weights_beside_config(
                    path,
                    "has no `mert.config` metadata (not a kit model file) and no config.json beside it; pass the Hugging Face folder or a file written by `mert convert`",
                )
            }
        }
        "bin" | "pt" | "pth" => match fairseq::top_level(path) {
            Ok(Some(top)) => fairseq::load(path, &top),
            // with no config.json beside it, the file says itself what is wrong with it
            Err(e) if !config_beside(path) => Err(e),
            _ => weights_beside_config(
                path,
                "a PyTorch weights file needs the config.json of its Hugging Face folder beside it (or is a fairseq checkpoint with `cfg` and `model`)",
            ),
        },
        "json" if shards::is_index(path) => weights_beside_config(
            path,
            "a shard index needs the config.json of its Hugging Face folder beside it",
        ),
        _ => Err(MertError::format(
            path,
            "unknown model file type; expected a Hugging Face folder, a .safetensors file, a pytorch_model.bin or a fairseq .pt",
        )),
    }
}

fn config_beside(path: &Path) -> bool {
    path.parent()
        .unwrap_or(Path::new("."))
        .join("config.json")
        .is_file()
}

/// A weights file inside a Hugging Face folder: the folder loaded with that file, or
/// `missing` as the error when there is no `config.json` beside it.
fn weights_beside_config(path: &Path, missing: &str) -> Result<Checkpoint> {
    let folder = path.parent().unwrap_or(Path::new("."));
    if folder.join("config.json").is_file() {
        load_hf_folder(folder, Some(path.to_path_buf()))
    } else {
        Err(MertError::format(path, missing))
    }
}

/// A Hugging Face folder: `config.json` plus `model.safetensors` (preferred),
/// `pytorch_model.bin` or a sharded checkpoint's index, or the explicitly given weights file.
fn load_hf_folder(folder: &Path, weights: Option<PathBuf>) -> Result<Checkpoint> {
    let config_path = folder.join("config.json");
    let weights = match weights {
        Some(w) => w,
        // transformers' order: safetensors (whole, then sharded) before pickles
        None => [
            "model.safetensors",
            shards::INDEX_FILES[0],
            "pytorch_model.bin",
            shards::INDEX_FILES[1],
        ]
        .iter()
        .map(|name| folder.join(name))
            // a dangling link (a download cut short in the Hugging Face cache) is found too,
            // and refused by name below, rather than passed over for the next candidate
            .find(|p| p.is_file() || p.symlink_metadata().is_ok())
            .ok_or_else(|| {
                MertError::format(
                    folder,
                    "holds neither model.safetensors nor pytorch_model.bin (nor a sharded checkpoint's model.safetensors.index.json or pytorch_model.bin.index.json)",
                )
            })?,
    };
    regular_file(&weights)?;
    let tensors = if shards::is_index(&weights) {
        shards::read_sharded(&weights)?
    } else if weights.extension().is_some_and(|e| e == "safetensors") {
        let bytes = std::fs::read(&weights).map_err(|e| MertError::io(&weights, e))?;
        // A kit file placed in a folder (`mert quantize DIR --out DIR/model.safetensors`)
        // loads as the kit file it is: its own config and quantization win.
        if let Some(file) = kit::read(&bytes, &weights)? {
            drop(bytes);
            return kit::from_parts(file, &weights);
        }
        tensors::read_safetensors(&bytes, &weights.display().to_string())?.0
    } else {
        tensors::read_pytorch(&weights)?
    };
    let text = read_text(&config_path, CONFIG_MAX_BYTES)?;
    let config = MertConfig::from_json(&text).map_err(|e| match e {
        MertError::Config { field, message } => {
            MertError::format(&config_path, format!("field `{field}`: {message}"))
        }
        other => other,
    })?;
    let mut checkpoint = Checkpoint::from_reference(config, tensors)?;
    checkpoint.license = model_card_license(folder);
    checkpoint.source = weights.display().to_string();
    Ok(checkpoint)
}

/// The `license:` line of a Hugging Face model card's front matter (README.md), if any; only
/// the card's first 64 kB are read (the front matter opens it).
fn model_card_license(folder: &Path) -> Option<String> {
    use std::io::Read;
    let card = folder.join("README.md");
    regular_file(&card).ok()?;
    let mut bytes = Vec::new();
    std::fs::File::open(&card)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut bytes)
        .ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let front = text.strip_prefix("---")?.split("\n---").next()?;
    front.lines().find_map(|line| {
        line.trim()
            .strip_prefix("license:")
            .map(|v| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
    })
}
