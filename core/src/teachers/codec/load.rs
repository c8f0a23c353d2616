//! Loading the codec from (a) the official torch state dict (`encodec_24khz-d7cc33bc.th`, a
//! `torch.save(model.state_dict())` zip parsed by the safe pickle reader, never executed) or
//! (b) the kit's own codec file: one `.safetensors` with the weights folded and `__metadata__`
//! `mert.format` (integer version), `mert.codec.config` (the [`CodecConfig`] JSON),
//! `mert.source`, `mert.license`.
//!
//! Key names are encodec's (`encoder.model.{i}.conv.conv.weight`, ...; see
//! [`super::seanet::encoder_layout`]), so there is no remap table. What the loader changes:
//!
//! | source keys | kept as | why |
//! |---|---|---|
//! | `X.weight_g` + `X.weight_v`, or `X.parametrizations.weight.original0/1` | `X.weight` | weight norm folded (`g · v / ‖v‖` per output channel) |
//! | `quantizer.vq.layers.N._codebook.{embed_avg, cluster_size, inited}` | dropped | training-only EMA state (`inited` must be 1 for the codebooks used) |
//! | `quantizer.vq.layers.N._codebook.embed`, `N >= n_q` | dropped | codebooks for higher bandwidths than the config's |
//!
//! The decoder (`decoder.*`) is optional: a file without any `decoder.` key encodes only; a
//! file with one must hold the whole decoder of the config. Anything else, and every missing
//! or mis-shaped tensor, is an error naming the key.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::Device;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, serialize};

use super::decoder::decoder_layout;
use super::rvq::{ResidualVq, embed_key};
use super::seanet::{ConvSpec, LayerSpec, Seanet, encoder_layout};
use super::{Codec, CodecConfig};
use crate::error::{MertError, Result};
use crate::load::tensors::{HostTensor, TensorMap, read_pytorch, read_safetensors};
use crate::model::pos_conv::fold_weight_norm;

pub const META_FORMAT: &str = "mert.format";
pub const META_CODEC_CONFIG: &str = "mert.codec.config";
pub const META_SOURCE: &str = "mert.source";
pub const META_LICENSE: &str = "mert.license";
/// The codec file format version this crate writes and reads.
pub const CODEC_FORMAT_VERSION: u32 = 1;

/// A validated codec config and its tensors (folded, under encodec's names).
#[derive(Debug, Clone)]
pub struct CodecCheckpoint {
    pub config: CodecConfig,
    pub tensors: TensorMap,
    /// Licence of the weights, when the source states one.
    pub license: Option<String>,
    /// Where the weights came from.
    pub source: String,
    /// Tensors present in the source and not kept (training state, unused codebooks).
    pub skipped: Vec<String>,
}

/// The weight-norm spellings: (gain suffix, direction suffix).
const WEIGHT_NORM: [(&str, &str); 2] = [
    (".weight_g", ".weight_v"),
    (
        ".parametrizations.weight.original0",
        ".parametrizations.weight.original1",
    ),
];

/// Every tensor the encoder and quantiser of `config` read, with its shape, in layer order.
pub fn expected_tensors(config: &CodecConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = layout_tensors(&encoder_layout(config));
    for q in 0..config.n_q {
        out.push((embed_key(q), vec![config.codebook_size, config.dimension]));
    }
    out
}

/// Every tensor the decoder of `config` reads, with its shape, in layer order.
pub fn decoder_tensors(config: &CodecConfig) -> Vec<(String, Vec<usize>)> {
    layout_tensors(&decoder_layout(config))
}

/// The (folded) tensors of a SEANet layout: conv `{key}.weight` `[out, in, kernel]`
/// (transposed: `[in, out, kernel]`) and `{key}.bias`, LSTM weights and biases.
pub fn layout_tensors(layout: &[LayerSpec]) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let conv = |c: &ConvSpec, out: &mut Vec<(String, Vec<usize>)>| {
        out.push((format!("{}.weight", c.key), vec![c.c_out, c.c_in, c.kernel]));
        out.push((format!("{}.bias", c.key), vec![c.c_out]));
    };
    for layer in layout {
        match layer {
            LayerSpec::ConvTranspose(c) => {
                out.push((format!("{}.weight", c.key), vec![c.c_in, c.c_out, c.kernel]));
                out.push((format!("{}.bias", c.key), vec![c.c_out]));
            }
            LayerSpec::Conv(c) => conv(c, &mut out),
            LayerSpec::Residual { block, shortcut } => {
                for c in block.iter().chain(shortcut) {
                    conv(c, &mut out);
                }
            }
            LayerSpec::Elu => {}
            LayerSpec::Lstm { key, width, layers } => {
                for n in 0..*layers {
                    out.push((format!("{key}.weight_ih_l{n}"), vec![4 * width, *width]));
                    out.push((format!("{key}.weight_hh_l{n}"), vec![4 * width, *width]));
                    out.push((format!("{key}.bias_ih_l{n}"), vec![4 * width]));
                    out.push((format!("{key}.bias_hh_l{n}"), vec![4 * width]));
                }
            }
        }
    }
    out
}

/// `quantizer.vq.layers.N._codebook.FIELD` → `(N, FIELD)`.
fn codebook_field(key: &str) -> Option<(usize, &str)> {
    let rest = key.strip_prefix("quantizer.vq.layers.")?;
    let (n, field) = rest.split_once("._codebook.")?;
    Some((n.parse().ok()?, field))
}

/// Replace every weight-normalised pair by its folded weight. Returns folded key → the
/// direction's original key, for error messages.
fn fold_all(tensors: &mut TensorMap) -> Result<HashMap<String, String>> {
    let mut origin = HashMap::new();
    let source = tensors.source.clone();
    for (g_suffix, v_suffix) in WEIGHT_NORM {
        let bases: Vec<String> = tensors
            .tensors
            .keys()
            .filter_map(|k| {
                k.strip_suffix(g_suffix)
                    .or_else(|| k.strip_suffix(v_suffix))
                    .map(str::to_string)
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for base in bases {
            let (g_key, v_key) = (format!("{base}{g_suffix}"), format!("{base}{v_suffix}"));
            let w_key = format!("{base}.weight");
            let (g, v) = (tensors.remove(&g_key), tensors.remove(&v_key));
            let (g, v) = match (g, v) {
                (Some(g), Some(v)) => (g, v),
                (Some(_), None) => {
                    return Err(MertError::tensor(
                        &source,
                        &v_key,
                        "missing (its weight-norm gain is present)",
                    ));
                }
                (None, Some(_)) => {
                    return Err(MertError::tensor(
                        &source,
                        &g_key,
                        "missing (its weight-norm direction is present)",
                    ));
                }
                (None, None) => continue,
            };
            let w = fold_weight_norm(&v.data, &v.shape, &g.data, &g.shape).ok_or_else(|| {
                MertError::tensor(
                    &source,
                    &g_key,
                    format!(
                        "weight-norm gain of shape {:?} does not fit direction `{v_key}` of shape {:?}",
                        g.shape, v.shape
                    ),
                )
            })?;
            if tensors.get(&w_key).is_some() {
                return Err(MertError::tensor(
                    &source,
                    &w_key,
                    "given both folded and weight-normalised; expected one of them",
                ));
            }
            tensors.insert(w_key.clone(), HostTensor::new(v.shape, w));
            origin.insert(w_key, v_key);
        }
    }
    Ok(origin)
}

/// Counts and widths no file of `tensors.len()` tensors can back are refused before the
/// layout is built: a config from a hostile file could otherwise ask for 2^60 codebooks or
/// layers (a key list that never ends) or widths whose arithmetic overflows.
fn check_fits(config: &CodecConfig, tensors: &TensorMap) -> Result<()> {
    let n = tensors.tensors.len();
    let stages = config.ratios.len();
    for (field, count) in [
        ("n_q", config.n_q),
        ("lstm", config.lstm),
        ("ratios", stages),
        (
            "n_residual_layers",
            config.n_residual_layers.saturating_mul(stages),
        ),
    ] {
        if count > n.max(64) {
            return Err(MertError::format(
                &tensors.source,
                format!(
                    "codec config field `{field}` is {count}, more than a file of {n} tensors holds"
                ),
            ));
        }
    }
    // the LSTM gates are `4 * n_filters * 2^stages` wide
    let width = u32::try_from(stages)
        .ok()
        .and_then(|s| 1usize.checked_shl(s))
        .and_then(|m| m.checked_mul(config.n_filters))
        .and_then(|w| w.checked_mul(4));
    if width.is_none() || config.ratios.iter().any(|r| r.checked_mul(2).is_none()) {
        return Err(MertError::format(
            &tensors.source,
            "codec config fields `n_filters` and `ratios` give widths that overflow",
        ));
    }
    Ok(())
}

impl CodecCheckpoint {
    /// Normalise a state dict (official or the kit's): fold weight norm, set training-only and
    /// unused tensors aside, and check every key and shape against `config`.
    pub fn from_state_dict(mut tensors: TensorMap, config: CodecConfig) -> Result<Self> {
        config.validate()?;
        check_fits(&config, &tensors)?;
        let origin = fold_all(&mut tensors)?;
        let source = tensors.source.clone();
        let mut expected = expected_tensors(&config);
        if has_decoder(&tensors) {
            expected.extend(decoder_tensors(&config));
        }
        for (key, shape) in &expected {
            // A folded weight is reported under the key the file used.
            let named = origin.get(key).map_or(key.as_str(), String::as_str);
            match tensors.get(key) {
                None => {
                    return Err(MertError::tensor(
                        &source,
                        key,
                        format!("missing; expected shape {shape:?}"),
                    ));
                }
                Some(t) if &t.shape != shape => {
                    return Err(MertError::tensor(
                        &source,
                        named,
                        format!("expected shape {shape:?}, found {:?}", t.shape),
                    ));
                }
                Some(t) if t.data.len() != shape.iter().product::<usize>() => {
                    return Err(MertError::tensor(
                        &source,
                        named,
                        "data length does not match its shape",
                    ));
                }
                Some(_) => {}
            }
        }
        let known: std::collections::HashSet<&str> =
            expected.iter().map(|(k, _)| k.as_str()).collect();
        let mut skipped = Vec::new();
        let extra: Vec<String> = tensors
            .tensors
            .keys()
            .filter(|k| !known.contains(k.as_str()))
            .cloned()
            .collect();
        for key in extra {
            match codebook_field(&key) {
                Some((q, "inited")) => {
                    let t = tensors.remove(&key);
                    if q < config.n_q && t.is_some_and(|t| t.data.first() == Some(&0.0)) {
                        return Err(MertError::tensor(
                            &source,
                            &key,
                            "is 0: this codebook was never initialised (all its codes would be 0)",
                        ));
                    }
                }
                Some((_, "embed_avg" | "cluster_size")) => {
                    tensors.remove(&key);
                }
                Some((q, "embed")) if q >= config.n_q => {
                    tensors.remove(&key);
                }
                _ => {
                    return Err(MertError::tensor(
                        &source,
                        &key,
                        "unexpected: not part of an EnCodec model with this config",
                    ));
                }
            }
            skipped.push(key);
        }
        skipped.sort();
        Ok(Self {
            config,
            tensors,
            license: None,
            source,
            skipped,
        })
    }

    /// Build the codec on `device` (the checkpoint is kept).
    pub fn build(&self, device: &Device) -> Result<Codec> {
        self.clone().into_codec(device)
    }

    /// Build the codec, letting go of the host copy of each weight as it is uploaded.
    pub fn into_codec(self, device: &Device) -> Result<Codec> {
        let mut tensors = self.tensors;
        let config = self.config;
        let decoder = if has_decoder(&tensors) {
            Some(Seanet::build(
                &decoder_layout(&config),
                1,
                &mut tensors,
                device,
            )?)
        } else {
            None
        };
        let encoder = Seanet::build(
            &encoder_layout(&config),
            config.hop_length(),
            &mut tensors,
            device,
        )?;
        let quantizer = ResidualVq::build(
            config.n_q,
            config.codebook_size,
            config.dimension,
            &mut tensors,
            device,
        )?;
        Ok(Codec::from_parts(
            config, encoder, quantizer, decoder, device,
        ))
    }
}

/// Whether a state dict carries a decoder (any `decoder.` key).
fn has_decoder(tensors: &TensorMap) -> bool {
    tensors.tensors.keys().any(|k| k.starts_with("decoder."))
}

impl CodecCheckpoint {
    /// Whether the weights hold a decoder.
    pub fn has_decoder(&self) -> bool {
        has_decoder(&self.tensors)
    }
}

/// Parse the kit's codec file from bytes.
pub fn codec_from_bytes(bytes: &[u8], source: &str) -> Result<CodecCheckpoint> {
    let (tensors, metadata) = read_safetensors(bytes, source)?;
    from_kit_parts(tensors, &metadata, Path::new(source)).map_err(crate::load::one_line)
}

fn from_kit_parts(
    tensors: TensorMap,
    metadata: &HashMap<String, String>,
    path: &Path,
) -> Result<CodecCheckpoint> {
    let config_text = metadata.get(META_CODEC_CONFIG).ok_or_else(|| {
        MertError::format(
            path,
            format!("metadata `{META_CODEC_CONFIG}` is missing (not a kit codec file)"),
        )
    })?;
    match metadata.get(META_FORMAT).map(|v| v.parse::<u32>()) {
        Some(Ok(v)) if v == CODEC_FORMAT_VERSION => {}
        other => {
            return Err(MertError::format(
                path,
                format!(
                    "metadata `{META_FORMAT}` is {:?}; this build reads version {CODEC_FORMAT_VERSION}",
                    other.and(metadata.get(META_FORMAT))
                ),
            ));
        }
    }
    let config = CodecConfig::from_json(config_text).map_err(|e| match e {
        MertError::Config { field, message } => MertError::format(
            path,
            format!("metadata `{META_CODEC_CONFIG}`, field `{field}`: {message}"),
        ),
        other => other,
    })?;
    let mut checkpoint = CodecCheckpoint::from_state_dict(tensors, config)?;
    checkpoint.license = metadata.get(META_LICENSE).cloned();
    checkpoint.source = metadata
        .get(META_SOURCE)
        .cloned()
        .unwrap_or_else(|| path.display().to_string());
    Ok(checkpoint)
}

/// Serialise a checkpoint as the kit's codec file (f32, weights folded). Writing it to disk,
/// atomically, is the caller's job.
pub fn codec_to_bytes(checkpoint: &CodecCheckpoint) -> Result<Vec<u8>> {
    let config = serde_json::to_string(&checkpoint.config)
        .map_err(|e| MertError::Invalid(format!("cannot serialise the codec config: {e}")))?;
    let metadata = HashMap::from([
        (META_FORMAT.to_string(), CODEC_FORMAT_VERSION.to_string()),
        (META_CODEC_CONFIG.to_string(), config),
        (
            META_LICENSE.to_string(),
            checkpoint
                .license
                .clone()
                .unwrap_or_else(|| "unknown".to_string()),
        ),
        (META_SOURCE.to_string(), checkpoint.source.clone()),
    ]);
    let raw: BTreeMap<&str, (Vec<u8>, &[usize])> = checkpoint
        .tensors
        .tensors
        .iter()
        .map(|(k, t)| {
            let bytes = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (k.as_str(), (bytes, t.shape.as_slice()))
        })
        .collect();
    let views = raw
        .iter()
        .map(|(k, (bytes, shape))| {
            TensorView::new(Dtype::F32, shape.to_vec(), bytes)
                .map(|v| (*k, v))
                .map_err(|e| {
                    MertError::tensor(&checkpoint.source, k, format!("cannot serialise: {e}"))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    serialize(views, Some(metadata))
        .map_err(|e| MertError::Invalid(format!("cannot serialise the codec file: {e}")))
}

/// Load a codec from a path: the kit's `.safetensors` codec file, or a torch state dict
/// (`encodec_24khz-*.th` or any other extension), whose config is read off its tensor shapes
/// ([`infer_config`]; the official file gives the defaults).
pub fn load_codec_path(path: &Path) -> Result<CodecCheckpoint> {
    load_codec_any(path).map_err(crate::load::one_line)
}

fn load_codec_any(path: &Path) -> Result<CodecCheckpoint> {
    if !path.is_file() {
        return Err(MertError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    if path.extension().is_some_and(|e| e == "safetensors") {
        let (tensors, metadata) = {
            let bytes = std::fs::read(path).map_err(|e| MertError::io(path, e))?;
            read_safetensors(&bytes, &path.display().to_string())?
        };
        return from_kit_parts(tensors, &metadata, path);
    }
    let tensors = read_pytorch(path).map_err(|e| match e {
        // neither a pickle nor a torch zip: say what a codec file is
        MertError::Format { path, message }
            if message.starts_with("cannot check the pickle")
                || message.starts_with("not a readable PyTorch") =>
        {
            MertError::format(
                path,
                format!(
                    "not a codec checkpoint: expected EnCodec's state dict (encodec_24khz-*.th) or a kit codec .safetensors ({message})"
                ),
            )
        }
        e => e,
    })?;
    let config = infer_config(&tensors);
    let mut checkpoint = CodecCheckpoint::from_state_dict(tensors, config)?;
    checkpoint.source = path.display().to_string();
    Ok(checkpoint)
}

/// Shape of a conv's weight under any of its spellings (folded or weight-normalised).
fn conv_shape<'a>(tensors: &'a TensorMap, key: &str) -> Option<&'a [usize]> {
    [".weight", ".weight_v", ".parametrizations.weight.original1"]
        .iter()
        .find_map(|s| tensors.get(&format!("{key}{s}")))
        .map(|t| t.shape.as_slice())
        .filter(|s| s.len() == 3)
}

/// Read a codec config off a state dict's shapes: widths, kernels, ratios (from the strided
/// convs' kernels, `2 · ratio`), residual layout, LSTM depth and codebook size. `n_q` stays 8
/// (6 kbps) and `dilation_base` 2 (neither is visible in the weights). Whatever cannot be read
/// keeps its default, so a damaged file still fails in [`CodecCheckpoint::from_state_dict`]
/// with the missing key named.
pub fn infer_config(tensors: &TensorMap) -> CodecConfig {
    let mut c = CodecConfig::default();
    if let Some(&[nf, ch, k]) = conv_shape(tensors, "encoder.model.0.conv.conv") {
        (c.n_filters, c.channels, c.kernel_size) = (nf, ch, k);
    }
    if let Some(t) = tensors.get(&embed_key(0))
        && let &[bins, dim] = t.shape.as_slice()
    {
        (c.codebook_size, c.dimension) = (bins, dim);
    }
    let last_index = tensors
        .tensors
        .keys()
        .filter_map(|k| {
            k.strip_prefix("encoder.model.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    let mut convs: Vec<Vec<usize>> = Vec::new();
    let mut residual = 0;
    let mut lstm = 0;
    for i in 1..=last_index {
        let prefix = format!("encoder.model.{i}");
        if let Some(shape) = conv_shape(tensors, &format!("{prefix}.block.1.conv.conv")) {
            residual += 1;
            if let Some(ratio) = shape[1].checked_div(shape[0]) {
                c.compress = ratio.max(1);
            }
            c.residual_kernel_size = shape[2];
            c.true_skip = conv_shape(tensors, &format!("{prefix}.shortcut.conv.conv")).is_none();
        } else if let Some(shape) = conv_shape(tensors, &format!("{prefix}.conv.conv")) {
            convs.push(shape.to_vec());
        } else if tensors
            .get(&format!("{prefix}.lstm.weight_ih_l0"))
            .is_some()
        {
            lstm = (0..)
                .take_while(|n| {
                    tensors
                        .get(&format!("{prefix}.lstm.weight_ih_l{n}"))
                        .is_some()
                })
                .count();
        }
    }
    if let Some((last, downs)) = convs.split_last() {
        if !downs.is_empty() && downs.iter().all(|s| s[2] >= 2 && s[2] % 2 == 0) {
            c.ratios = downs.iter().rev().map(|s| s[2] / 2).collect();
            if residual % downs.len() == 0 {
                c.n_residual_layers = residual / downs.len();
            }
        }
        c.last_kernel_size = last[2];
        c.dimension = last[0];
    }
    c.lstm = lstm;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_tensors_of_the_official_encoder() {
        let expected = expected_tensors(&CodecConfig::default());
        // 18 convs (weight + bias): in, 4 x (3 in the residual block + 1 strided), out;
        // 2 LSTM layers x 4; 8 codebooks
        assert_eq!(expected.len(), 18 * 2 + 8 + 8);
        let params: usize = expected
            .iter()
            .filter(|(k, _)| k.starts_with("encoder."))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        // spec §6 item 3: encoder parameters 7,425,792 (weight_g adds one per output channel)
        let gains: usize = expected
            .iter()
            .filter(|(k, _)| k.starts_with("encoder.") && k.ends_with(".weight"))
            .map(|(_, s)| s[0])
            .sum();
        assert_eq!(params + gains, 7_425_792);
    }

    #[test]
    fn codebook_keys_parse() {
        assert_eq!(
            codebook_field("quantizer.vq.layers.12._codebook.embed_avg"),
            Some((12, "embed_avg"))
        );
        assert_eq!(
            codebook_field("quantizer.vq.layers.x._codebook.embed"),
            None
        );
    }
}
