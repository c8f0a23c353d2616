//! The reference key names: what a MERT checkpoint of a given config holds, and how those
//! names relate to this crate's module paths. This file owns all key remapping.

use crate::model::{FeatExtractNorm, MertConfig};

/// Every tensor an inference checkpoint of `config` holds, with its shape, under the
/// `transformers` `HubertModel` names (the positional conv weight folded).
pub fn expected_tensors(config: &MertConfig) -> Vec<(String, Vec<usize>)> {
    let mut keys = Vec::new();
    let mut add = |k: String, s: Vec<usize>| keys.push((k, s));
    let d = config.hidden_size;
    let mut c_in = 1;
    for (i, ((&c, &k), _)) in config
        .conv_dim
        .iter()
        .zip(&config.conv_kernel)
        .zip(&config.conv_stride)
        .enumerate()
    {
        let p = format!("feature_extractor.conv_layers.{i}");
        add(format!("{p}.conv.weight"), vec![c, c_in, k]);
        if config.conv_bias {
            add(format!("{p}.conv.bias"), vec![c]);
        }
        let has_norm = match config.feat_extract_norm {
            FeatExtractNorm::Group => i == 0,
            FeatExtractNorm::Layer => true,
        };
        if has_norm {
            add(format!("{p}.layer_norm.weight"), vec![c]);
            add(format!("{p}.layer_norm.bias"), vec![c]);
        }
        c_in = c;
    }
    if config.feat_proj_layer_norm {
        add("feature_projection.layer_norm.weight".into(), vec![c_in]);
        add("feature_projection.layer_norm.bias".into(), vec![c_in]);
    }
    add("feature_projection.projection.weight".into(), vec![d, c_in]);
    add("feature_projection.projection.bias".into(), vec![d]);
    let groups = config.num_conv_pos_embedding_groups;
    add(
        "encoder.pos_conv_embed.conv.weight".into(),
        vec![d, d / groups.max(1), config.num_conv_pos_embeddings],
    );
    add("encoder.pos_conv_embed.conv.bias".into(), vec![d]);
    add("encoder.layer_norm.weight".into(), vec![d]);
    add("encoder.layer_norm.bias".into(), vec![d]);
    let f = config.intermediate_size;
    for i in 0..config.num_hidden_layers {
        let p = format!("encoder.layers.{i}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            add(format!("{p}.attention.{proj}.weight"), vec![d, d]);
            add(format!("{p}.attention.{proj}.bias"), vec![d]);
        }
        for ln in ["layer_norm", "final_layer_norm"] {
            add(format!("{p}.{ln}.weight"), vec![d]);
            add(format!("{p}.{ln}.bias"), vec![d]);
        }
        add(
            format!("{p}.feed_forward.intermediate_dense.weight"),
            vec![f, d],
        );
        add(format!("{p}.feed_forward.intermediate_dense.bias"), vec![f]);
        add(format!("{p}.feed_forward.output_dense.weight"), vec![d, f]);
        add(format!("{p}.feed_forward.output_dense.bias"), vec![d]);
    }
    keys
}

/// The learned vector masked frames get in pretraining (kept aside, not a model weight).
pub const MASK_EMBEDDING: &str = "masked_spec_embed";

/// Keys that only pretraining uses; an inference load skips them (logged at debug level).
/// [`MASK_EMBEDDING`] is taken out before these and kept.
pub fn is_training_only(key: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "label_embs_concat",
        "final_proj.",
        "encoder_cqt_model.",
        "cqt_head.",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The weight-norm spellings of the positional conv: (gain, direction) in the legacy
/// `torch.nn.utils.weight_norm` and the newer parametrization style.
pub const POS_CONV_WEIGHT_NORM: [(&str, &str); 2] = [
    (
        "encoder.pos_conv_embed.conv.weight_g",
        "encoder.pos_conv_embed.conv.weight_v",
    ),
    (
        "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    ),
];

/// The folded positional conv weight's key.
pub const POS_CONV_WEIGHT: &str = "encoder.pos_conv_embed.conv.weight";

/// Map a burn module path (from the module visitor) to the reference key. The table:
///
/// | burn                                  | reference                             | why                                   |
/// |---------------------------------------|---------------------------------------|---------------------------------------|
/// | `*.gamma` / `*.beta` (norms)          | `*.weight` / `*.bias`                 | burn names norm affine params so      |
/// | `conv_layers.{i}.group_norm.*`        | `conv_layers.{i}.layer_norm.*`        | the reference calls its GroupNorm `layer_norm` |
///
/// Everything else is equal by construction (struct fields are the reference path segments).
pub fn reference_key(burn_path: &str) -> String {
    let mut parts: Vec<&str> = burn_path.split('.').collect();
    if let Some(last) = parts.last_mut() {
        *last = match *last {
            "gamma" => "weight",
            "beta" => "bias",
            other => other,
        };
    }
    parts
        .iter()
        .map(|p| if *p == "group_norm" { "layer_norm" } else { p })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_count_and_sizes_match_the_reference() {
        // 95M: 211 tensors in the reference state dict, minus masked_spec_embed, with the
        // positional conv's two weight-norm tensors folded into one.
        let keys = expected_tensors(&MertConfig::mert_v1_95m());
        assert_eq!(keys.len(), 211 - 1 - 1);
        let params: usize = keys.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        // 94,371,712 HF params - 768 (mask embedding) - 128 (weight-norm gain folded away)
        assert_eq!(params, 94_371_712 - 768 - 128);
        let params_330: usize = expected_tensors(&MertConfig::mert_v1_330m())
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(params_330, 315_428_992 - 1024 - 128);
    }

    #[test]
    fn burn_paths_map_to_reference_keys() {
        assert_eq!(
            reference_key("feature_extractor.conv_layers.0.group_norm.gamma"),
            "feature_extractor.conv_layers.0.layer_norm.weight"
        );
        assert_eq!(
            reference_key("encoder.layers.3.attention.q_proj.weight"),
            "encoder.layers.3.attention.q_proj.weight"
        );
        assert_eq!(
            reference_key("encoder.layer_norm.beta"),
            "encoder.layer_norm.bias"
        );
    }
}
