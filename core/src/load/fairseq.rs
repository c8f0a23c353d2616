//! fairseq training checkpoints (`checkpoint_best.pt`, `MERT-v1-95M_fairseq.pt`): the pickle's
//! `cfg` (the run's resolved hydra config, plain data) gives the model shape and `model` the
//! state dict under fairseq's module names, which are renamed to the reference names here.
//! The optimizer state and training meters beside them are never read.

use std::collections::HashMap;
use std::path::Path;

use pytorch_reader::{PickleValue, PytorchReader};

use super::tensors::{TensorMap, check_pickle, pytorch_tensors};
use super::{Checkpoint, keys};
use crate::error::{MertError, Result};
use crate::model::{FeatExtractNorm, MertConfig};

/// Python callables a fairseq trainer's checkpoint names outside `model`: numpy scalars and
/// arrays (its meters and losses) and, in older files, the `argparse` namespace of the run.
const FAIRSEQ_OBJECTS: &[&str] = &[
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    "argparse.Namespace",
];

/// The top-level entries of a PyTorch file when it is laid out as a fairseq checkpoint
/// (`model` plus `cfg` or the older `args`); `None` for any other file.
/// `Err`: not a readable PyTorch file at all (the reader's reason).
pub(crate) fn top_level(path: &Path) -> Result<Option<HashMap<String, PickleValue>>> {
    let value = PytorchReader::read_pickle_data(path, None)
        .map_err(|e| MertError::format(path, format!("not a readable PyTorch checkpoint: {e}")))?;
    Ok(match value {
        PickleValue::Dict(top)
            if top.contains_key("model")
                && (top.contains_key("cfg") || top.contains_key("args")) =>
        {
            Some(top)
        }
        _ => None,
    })
}

/// Load a fairseq checkpoint whose top level [`top_level`] returned.
pub(crate) fn load(path: &Path, top: &HashMap<String, PickleValue>) -> Result<Checkpoint> {
    let bad = |m: String| MertError::format(path, m);
    // Nothing in the file is run; still, a checkpoint that names other callables than those
    // of tensors and the numpy scalars, arrays and argparse namespace fairseq's trainer leaves
    // in it is hostile.
    check_pickle(path, FAIRSEQ_OBJECTS)?;
    let cfg = match top.get("cfg") {
        Some(PickleValue::Dict(cfg)) => cfg,
        _ => {
            return Err(bad(
                "a fairseq checkpoint without a `cfg` (an older `args` one) is not supported; load it in fairseq and save it again, or convert it to a Hugging Face folder".into(),
            ));
        }
    };
    let section = |name: &str| match cfg.get(name) {
        Some(PickleValue::Dict(d)) => Ok(d),
        _ => Err(bad(format!("cfg.{name}: expected the {name} settings"))),
    };
    let config = config_from(section("model")?, section("task")?).map_err(bad)?;
    let raw = pytorch_tensors(path, Some("model"))?;
    let mut tensors = TensorMap::new(raw.source.clone());
    let mut dropped = Vec::new();
    for (key, tensor) in raw.tensors {
        match reference_key(&key) {
            Renamed::To(name) => tensors.insert(name, tensor),
            Renamed::Dropped => dropped.push(key),
            Renamed::Unknown => {
                return Err(MertError::tensor(
                    &raw.source,
                    &key,
                    "not a tensor of the MERT/HuBERT fairseq model (model.*); expected feature_extractor, post_extract_proj, layer_norm, encoder, mask_emb or a pretraining head",
                ));
            }
        }
    }
    let mut checkpoint = Checkpoint::from_reference(config, tensors)?;
    checkpoint.skipped.extend(dropped);
    checkpoint.skipped.sort();
    Ok(checkpoint)
}

enum Renamed {
    To(String),
    /// A teacher's fixed buffers (the CQT/mel kernels): rebuilt from settings, never loaded.
    Dropped,
    Unknown,
}

/// fairseq module path -> the reference (Hugging Face) key. The map follows the fairseq
/// model's module tree: `conv_layers.i` is `Sequential(conv, dropout, norm, gelu)`, the
/// norm a GroupNorm (layer 0, `default` mode) or `Sequential(transpose, LayerNorm, transpose)`.
fn reference_key(key: &str) -> Renamed {
    let to = |s: String| Renamed::To(s);
    if key == "mask_emb" {
        return to(keys::MASK_EMBEDDING.into());
    }
    if key == "label_embs_concat" || key.starts_with("final_proj.") {
        return to(key.into());
    }
    if let Some(rest) = key.strip_prefix("encoder_cqt_model.") {
        return if rest.starts_with("fc.") {
            to(key.into())
        } else {
            Renamed::Dropped
        };
    }
    if key.starts_with("encoder_mel_model.") {
        return Renamed::Dropped;
    }
    for (from, into) in [
        ("layer_norm.", "feature_projection.layer_norm."),
        ("post_extract_proj.", "feature_projection.projection."),
        ("encoder.pos_conv.0.", "encoder.pos_conv_embed.conv."),
        ("encoder.layer_norm.", "encoder.layer_norm."),
    ] {
        if let Some(rest) = key.strip_prefix(from) {
            return to(format!("{into}{rest}"));
        }
    }
    if let Some(rest) = key.strip_prefix("feature_extractor.conv_layers.") {
        let parts: Vec<&str> = rest.split('.').collect();
        return match parts.as_slice() {
            [i, "0", p] if is_affine(p) => {
                to(format!("feature_extractor.conv_layers.{i}.conv.{p}"))
            }
            [i, "2", p] | [i, "2", "1", p] if is_affine(p) => {
                to(format!("feature_extractor.conv_layers.{i}.layer_norm.{p}"))
            }
            _ => Renamed::Unknown,
        };
    }
    if let Some(rest) = key.strip_prefix("encoder.layers.") {
        let Some((i, inner)) = rest.split_once('.') else {
            return Renamed::Unknown;
        };
        let inner = match inner.split_once('.') {
            Some(("self_attn", proj)) => format!("attention.{proj}"),
            Some(("self_attn_layer_norm", p)) => format!("layer_norm.{p}"),
            Some(("fc1", p)) => format!("feed_forward.intermediate_dense.{p}"),
            Some(("fc2", p)) => format!("feed_forward.output_dense.{p}"),
            Some(("final_layer_norm", p)) => format!("final_layer_norm.{p}"),
            _ => return Renamed::Unknown,
        };
        return to(format!("encoder.layers.{i}.{inner}"));
    }
    Renamed::Unknown
}

fn is_affine(p: &str) -> bool {
    p == "weight" || p == "bias"
}

/// The model shape from `cfg.model` and `cfg.task`, the fairseq field names mapped onto the
/// reference config. Missing fields take the fairseq defaults; options the kit does not
/// build are refused by name.
fn config_from(
    model: &HashMap<String, PickleValue>,
    task: &HashMap<String, PickleValue>,
) -> std::result::Result<MertConfig, String> {
    let field = |name: &str| model.get(name).filter(|v| !matches!(v, PickleValue::None));
    let int = |name: &str, default: i64| -> std::result::Result<usize, String> {
        match field(name) {
            None => Ok(default as usize),
            Some(PickleValue::Int(v)) if *v >= 0 => Ok(*v as usize),
            Some(v) => Err(format!(
                "cfg.model.{name}: expected a non-negative integer, found {v:?}"
            )),
        }
    };
    let float = |name: &str, default: f64| -> std::result::Result<f64, String> {
        match field(name) {
            None => Ok(default),
            Some(PickleValue::Float(v)) => Ok(*v),
            Some(PickleValue::Int(v)) => Ok(*v as f64),
            Some(v) => Err(format!("cfg.model.{name}: expected a number, found {v:?}")),
        }
    };
    let flag = |name: &str| -> std::result::Result<bool, String> {
        match field(name) {
            None => Ok(false),
            Some(PickleValue::Bool(v)) => Ok(*v),
            Some(v) => Err(format!(
                "cfg.model.{name}: expected true or false, found {v:?}"
            )),
        }
    };
    let text = |name: &str, default: &str| -> std::result::Result<String, String> {
        match field(name) {
            None => Ok(default.to_string()),
            Some(PickleValue::String(s)) => Ok(s.clone()),
            Some(v) => Err(format!("cfg.model.{name}: expected a string, found {v:?}")),
        }
    };
    for (name, expected) in [
        ("layer_type", "transformer"),
        ("audio_extract_type", "w2v_conv"),
    ] {
        let v = text(name, expected)?;
        if v != expected {
            return Err(format!(
                "cfg.model.{name} = {v:?} is not supported; expected {expected:?}"
            ));
        }
    }
    if int("pos_conv_depth", 1)? != 1 {
        return Err("cfg.model.pos_conv_depth: only 1 (one positional conv) is supported".into());
    }
    for name in ["do_cnn_feat_stable_layernorm", "subln", "wav_normalize"] {
        if flag(name)? {
            return Err(format!(
                "cfg.model.{name} = true is a research option the kit does not build; expected false"
            ));
        }
    }
    let layers = parse_conv_layers(&text(
        "conv_feature_layers",
        "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    )?)
    .map_err(|e| format!("cfg.model.conv_feature_layers: {e}"))?;
    let norm = match text("extractor_mode", "default")?.as_str() {
        "default" => FeatExtractNorm::Group,
        "layer_norm" => FeatExtractNorm::Layer,
        other => {
            return Err(format!(
                "cfg.model.extractor_mode = {other:?}: expected \"default\" or \"layer_norm\""
            ));
        }
    };
    let sample_rate = match task.get("sample_rate") {
        Some(PickleValue::Int(v)) if *v > 0 && *v <= u32::MAX as i64 => *v as u32,
        Some(PickleValue::Float(v)) if *v > 0.0 && *v <= u32::MAX as f64 && v.fract() == 0.0 => {
            *v as u32
        }
        other => {
            return Err(format!(
                "cfg.task.sample_rate: expected the rate in Hz, found {other:?}"
            ));
        }
    };
    let name = text("_name", "mert")?;
    let mut c = MertConfig::mert_v1_95m();
    c.model_type = if name == "hubert" {
        "hubert"
    } else {
        "mert_model"
    }
    .into();
    c.sample_rate = sample_rate;
    c.hidden_size = int("encoder_embed_dim", 768)?;
    c.num_hidden_layers = int("encoder_layers", 12)?;
    c.num_attention_heads = int("encoder_attention_heads", 12)?;
    c.intermediate_size = int("encoder_ffn_embed_dim", 3072)?;
    c.hidden_act = text("activation_fn", "gelu")?;
    c.conv_dim = layers.iter().map(|l| l.0).collect();
    c.conv_kernel = layers.iter().map(|l| l.1).collect();
    c.conv_stride = layers.iter().map(|l| l.2).collect();
    c.num_feat_extract_layers = Some(layers.len());
    c.conv_bias = flag("conv_bias")?;
    c.feat_extract_norm = norm;
    c.do_stable_layer_norm = flag("layer_norm_first")?;
    c.num_conv_pos_embeddings = int("conv_pos", 128)?;
    c.num_conv_pos_embedding_groups = int("conv_pos_groups", 16)?;
    c.hidden_dropout = float("dropout", 0.1)?;
    c.attention_dropout = float("attention_dropout", 0.1)?;
    c.activation_dropout = float("activation_dropout", 0.0)?;
    c.feat_proj_dropout = float("dropout_input", 0.0)?;
    c.layerdrop = float("encoder_layerdrop", 0.0)?;
    c.mask_time_prob = float("mask_prob", 0.65)?;
    c.mask_time_length = int("mask_length", 10)?;
    c.deepnorm = flag("deepnorm")?;
    c.attention_relax = float("attention_relax", -1.0)?;
    c.feature_extractor_cqt = flag("feature_extractor_cqt")?;
    c.validate().map_err(|e| match e {
        MertError::Config { field, message } => {
            format!("cfg.model ({} in the kit's terms): {message}", field)
        }
        other => other.to_string(),
    })?;
    Ok(c)
}

/// fairseq's `conv_feature_layers`, a Python expression over lists of `(dim, kernel,
/// stride)` tuples joined by `+` and repeated by `* n`, parsed (never evaluated).
fn parse_conv_layers(text: &str) -> std::result::Result<Vec<(usize, usize, usize)>, String> {
    let shown: String = text.chars().take(80).collect();
    let shown = if shown.len() < text.len() {
        format!("{shown:?}...")
    } else {
        format!("{shown:?}")
    };
    let expected =
        || format!("{shown}: expected lists of (dim, kernel, stride) joined by + and * n");
    let mut out = Vec::new();
    for term in text.split('+') {
        let (list, times) = match term.rsplit_once(']') {
            Some((list, rest)) => {
                let rest = rest.trim();
                let times = match rest.strip_prefix('*') {
                    Some(n) => n.trim().parse::<usize>().map_err(|_| expected())?,
                    None if rest.is_empty() => 1,
                    None => return Err(expected()),
                };
                (list, times)
            }
            None => return Err(expected()),
        };
        let list = list.trim().strip_prefix('[').ok_or_else(expected)?;
        let mut tuples = Vec::new();
        for tuple in list.split(')') {
            let tuple = tuple.trim().trim_start_matches(',').trim();
            if tuple.is_empty() {
                continue;
            }
            let inner = tuple.strip_prefix('(').ok_or_else(expected)?;
            let nums: Vec<usize> = inner
                .split(',')
                .map(|n| n.trim())
                .filter(|n| !n.is_empty())
                .map(|n| n.parse::<usize>().map_err(|_| expected()))
                .collect::<std::result::Result<_, _>>()?;
            match nums.as_slice() {
                [d, k, s] => tuples.push((*d, *k, *s)),
                _ => return Err(expected()),
            }
        }
        if times > 1024 || out.len() + tuples.len() * times > 1024 {
            return Err(format!("{shown}: more than 1024 conv layers"));
        }
        for _ in 0..times {
            out.extend_from_slice(&tuples);
        }
    }
    if out.is_empty() {
        return Err(expected());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_layers_expression() {
        let mert = parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2").unwrap();
        assert_eq!(mert.len(), 7);
        assert_eq!(mert[0], (512, 10, 5));
        assert_eq!(mert[4], (512, 3, 2));
        assert_eq!(mert[6], (512, 2, 2));
        let listed = parse_conv_layers("[(32, 10, 5), (32, 3, 2),]").unwrap();
        assert_eq!(listed, [(32, 10, 5), (32, 3, 2)]);
        for bad in [
            "",
            "[]",
            "[(1,2)]",
            "[(1,2,3)] * x",
            "(1,2,3)",
            "[(1,2,3)] * 99999",
        ] {
            assert!(parse_conv_layers(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fairseq_names_map_to_reference_names() {
        for (from, into) in [
            ("mask_emb", "masked_spec_embed"),
            ("layer_norm.weight", "feature_projection.layer_norm.weight"),
            (
                "post_extract_proj.bias",
                "feature_projection.projection.bias",
            ),
            (
                "encoder.pos_conv.0.weight_g",
                "encoder.pos_conv_embed.conv.weight_g",
            ),
            ("encoder.layer_norm.bias", "encoder.layer_norm.bias"),
            (
                "feature_extractor.conv_layers.3.0.weight",
                "feature_extractor.conv_layers.3.conv.weight",
            ),
            (
                "feature_extractor.conv_layers.0.2.bias",
                "feature_extractor.conv_layers.0.layer_norm.bias",
            ),
            (
                "feature_extractor.conv_layers.5.2.1.weight",
                "feature_extractor.conv_layers.5.layer_norm.weight",
            ),
            (
                "encoder.layers.11.self_attn.q_proj.weight",
                "encoder.layers.11.attention.q_proj.weight",
            ),
            (
                "encoder.layers.0.self_attn.out_proj.bias",
                "encoder.layers.0.attention.out_proj.bias",
            ),
            (
                "encoder.layers.2.self_attn_layer_norm.weight",
                "encoder.layers.2.layer_norm.weight",
            ),
            (
                "encoder.layers.2.fc1.weight",
                "encoder.layers.2.feed_forward.intermediate_dense.weight",
            ),
            (
                "encoder.layers.2.fc2.bias",
                "encoder.layers.2.feed_forward.output_dense.bias",
            ),
            (
                "encoder.layers.2.final_layer_norm.bias",
                "encoder.layers.2.final_layer_norm.bias",
            ),
            ("final_proj.weight", "final_proj.weight"),
            ("encoder_cqt_model.fc.weight", "encoder_cqt_model.fc.weight"),
        ] {
            match reference_key(from) {
                Renamed::To(k) => assert_eq!(k, into, "{from}"),
                _ => panic!("{from} not renamed"),
            }
        }
        assert!(matches!(
            reference_key("encoder_cqt_model.spec_layer.cqt_kernels_real"),
            Renamed::Dropped
        ));
        for unknown in [
            "target_glu.0.weight",
            "encoder.layers.x",
            "feature_extractor.conv_layers.0.3.weight",
        ] {
            assert!(
                matches!(reference_key(unknown), Renamed::Unknown),
                "{unknown}"
            );
        }
    }
}
