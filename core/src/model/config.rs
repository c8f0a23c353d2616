//! `MertConfig`: the fields of an official MERT `config.json` (MERT-v1-95M as published, and the
//! `transformers` `HubertConfig` names it shares), so that file deserialises as is. Fields the
//! model does not read (CTC, SpecAugment, tokenizer) are ignored; defaults equal MERT-v1-95M.

use serde::{Deserialize, Serialize};

use crate::error::{MertError, Result};

/// Sample rates a model or codec may run at: audio is resampled to it in memory, so an absurd
/// rate in a config would mean an absurd allocation.
pub const MODEL_SAMPLE_RATES: std::ops::RangeInclusive<u64> = 8_000..=192_000;

/// How the convolutional feature encoder normalises (HF `feat_extract_norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatExtractNorm {
    /// GroupNorm with one group per channel after conv 0 only (every MERT release).
    Group,
    /// LayerNorm over channels after every conv (the other HuBERT mode).
    Layer,
}

/// Model hyper-parameters, named as in the reference `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MertConfig {
    /// `mert_model` (official remote code) or `hubert` (plain transformers).
    pub model_type: String,
    /// Audio rate the model was trained at: 24 kHz (v1) or 16 kHz (v0). Inputs are resampled to it.
    pub sample_rate: u32,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// Only the exact (erf) GELU, `gelu`, is used by MERT.
    pub hidden_act: String,
    pub conv_dim: Vec<usize>,
    pub conv_kernel: Vec<usize>,
    pub conv_stride: Vec<usize>,
    pub conv_bias: bool,
    /// Redundant with the conv lists; checked against them when present.
    pub num_feat_extract_layers: Option<usize>,
    pub feat_extract_norm: FeatExtractNorm,
    pub feat_extract_activation: String,
    pub feat_proj_layer_norm: bool,
    /// Pre-LN encoder (MERT-v1-330M) instead of post-LN (95M).
    pub do_stable_layer_norm: bool,
    pub layer_norm_eps: f64,
    pub num_conv_pos_embeddings: usize,
    pub num_conv_pos_embedding_groups: usize,
    // Training-time settings, kept so a config round-trips and pretraining can read them.
    pub hidden_dropout: f64,
    pub attention_dropout: f64,
    pub activation_dropout: f64,
    pub feat_proj_dropout: f64,
    pub final_dropout: f64,
    pub layerdrop: f64,
    pub mask_time_prob: f64,
    pub mask_time_length: usize,
    pub mask_time_min_masks: usize,
    pub initializer_range: f64,
    /// MERT research option (CQT channels fed to the feature projection); no release uses it.
    pub feature_extractor_cqt: bool,
    pub feature_extractor_cqt_bins: usize,
    /// MERT research option (DeepNorm residual scaling); no release uses it.
    pub deepnorm: bool,
    /// Softmax shift for fp16 safety; a no-op in exact arithmetic, so accepted and ignored.
    pub attention_relax: f64,
    /// Set by newer `transformers` configs; only `false` is the MERT architecture.
    pub conv_pos_batch_norm: bool,
}

/// Widest conv kernel a config may ask for (MERT's widest is 10).
pub const MAX_CONV_KERNEL: usize = 1024;

impl Default for MertConfig {
    fn default() -> Self {
        Self::mert_v1_95m()
    }
}

impl MertConfig {
    /// MERT-v1-95M: 12 x 768, post-LN, 24 kHz.
    pub fn mert_v1_95m() -> Self {
        Self {
            model_type: "mert_model".into(),
            sample_rate: 24_000,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            conv_dim: vec![512; 7],
            conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            conv_bias: false,
            num_feat_extract_layers: Some(7),
            feat_extract_norm: FeatExtractNorm::Group,
            feat_extract_activation: "gelu".into(),
            feat_proj_layer_norm: true,
            do_stable_layer_norm: false,
            layer_norm_eps: 1e-5,
            num_conv_pos_embeddings: 128,
            num_conv_pos_embedding_groups: 16,
            hidden_dropout: 0.1,
            attention_dropout: 0.1,
            activation_dropout: 0.0,
            feat_proj_dropout: 0.1,
            final_dropout: 0.1,
            layerdrop: 0.05,
            mask_time_prob: 0.05,
            mask_time_length: 10,
            mask_time_min_masks: 2,
            initializer_range: 0.02,
            feature_extractor_cqt: false,
            feature_extractor_cqt_bins: 336,
            deepnorm: false,
            attention_relax: -1.0,
            conv_pos_batch_norm: false,
        }
    }

    /// MERT-v1-330M: 24 x 1024, pre-LN, 24 kHz, dropouts off.
    pub fn mert_v1_330m() -> Self {
        Self {
            hidden_size: 1024,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            intermediate_size: 4096,
            do_stable_layer_norm: true,
            attention_relax: 32.0,
            mask_time_prob: 0.075,
            hidden_dropout: 0.0,
            attention_dropout: 0.0,
            activation_dropout: 0.0,
            feat_proj_dropout: 0.0,
            final_dropout: 0.0,
            layerdrop: 0.0,
            ..Self::mert_v1_95m()
        }
    }

    /// MERT-v0: the 95M shape at 16 kHz (50 frames per second).
    pub fn mert_v0() -> Self {
        Self {
            sample_rate: 16_000,
            ..Self::mert_v1_95m()
        }
    }

    /// A small model of the real architecture (64 wide, 2 layers) for tests and the test fixtures.
    pub fn tiny() -> Self {
        Self {
            hidden_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 128,
            conv_dim: vec![32; 7],
            num_conv_pos_embeddings: 16,
            num_conv_pos_embedding_groups: 4,
            ..Self::mert_v1_95m()
        }
    }

    /// The named presets: `mert-v1-95m`, `mert-v1-330m`, `mert-v0`, `tiny`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "mert-v1-95m" => Ok(Self::mert_v1_95m()),
            "mert-v1-330m" => Ok(Self::mert_v1_330m()),
            "mert-v0" => Ok(Self::mert_v0()),
            "tiny" => Ok(Self::tiny()),
            other => Err(MertError::config(
                "preset",
                format!(
                    "unknown preset `{other}`; expected mert-v1-95m, mert-v1-330m, mert-v0 or tiny"
                ),
            )),
        }
    }

    /// Parse a `config.json` text and validate it.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            MertError::config("config.json", format!("invalid JSON or field type: {e}"))
        })?;
        let mut config: Self =
            serde_json::from_value(value.clone()).map_err(|e| Self::name_field(&value, e))?;
        // HuBERT-style configs (MERT-v0, `model_type: hubert`) carry no sample rate: they
        // run at 16 kHz, not at the 24 kHz default taken from MERT-v1.
        if config.model_type == "hubert" && value.get("sample_rate").is_none() {
            config.sample_rate = Self::mert_v0().sample_rate;
        }
        config.validate()?;
        Ok(config)
    }

    /// serde's error names the type it wanted, not the field: find the field whose value
    /// alone fails on top of the defaults.
    fn name_field(value: &serde_json::Value, e: serde_json::Error) -> MertError {
        let fallback = || MertError::config("config.json", format!("invalid field type: {e}"));
        let (Some(fields), Ok(serde_json::Value::Object(base))) =
            (value.as_object(), serde_json::to_value(Self::default()))
        else {
            return fallback();
        };
        for (key, v) in fields {
            if !base.contains_key(key) {
                continue;
            }
            let mut one = base.clone();
            one.insert(key.clone(), v.clone());
            if let Err(e) = serde_json::from_value::<Self>(serde_json::Value::Object(one)) {
                let why = e.to_string();
                let why = why.split(" at line").next().unwrap_or(&why).to_string();
                return MertError::config(key, why);
            }
        }
        fallback()
    }

    /// Check that the model can be built, naming the first offending field.
    pub fn validate(&self) -> Result<()> {
        let err = |field: &str, msg: String| Err(MertError::config(field, msg));
        if !matches!(self.model_type.as_str(), "mert_model" | "hubert") {
            return err(
                "model_type",
                format!(
                    "`{}` is not a MERT model; expected `mert_model` or `hubert`",
                    self.model_type
                ),
            );
        }
        if !MODEL_SAMPLE_RATES.contains(&(self.sample_rate as u64)) {
            return err(
                "sample_rate",
                format!(
                    "{} Hz: expected {} to {} Hz (MERT-v1 runs at 24000)",
                    self.sample_rate,
                    MODEL_SAMPLE_RATES.start(),
                    MODEL_SAMPLE_RATES.end()
                ),
            );
        }
        for (field, v) in [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("num_conv_pos_embeddings", self.num_conv_pos_embeddings),
            (
                "num_conv_pos_embedding_groups",
                self.num_conv_pos_embedding_groups,
            ),
        ] {
            if v == 0 {
                return err(field, "must be positive".into());
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return err(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            );
        }
        if !self
            .hidden_size
            .is_multiple_of(self.num_conv_pos_embedding_groups)
        {
            return err(
                "num_conv_pos_embedding_groups",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_conv_pos_embedding_groups, self.hidden_size
                ),
            );
        }
        let n = self.conv_dim.len();
        if n == 0 {
            return err("conv_dim", "must list at least one conv layer".into());
        }
        if self.conv_kernel.len() != n || self.conv_stride.len() != n {
            return err(
                "conv_kernel",
                format!(
                    "conv_dim, conv_kernel and conv_stride must have equal lengths (got {}, {}, {})",
                    n,
                    self.conv_kernel.len(),
                    self.conv_stride.len()
                ),
            );
        }
        if let Some(layers) = self.num_feat_extract_layers
            && layers != n
        {
            return err(
                "num_feat_extract_layers",
                format!("{layers} does not match the {n} entries of conv_dim"),
            );
        }
        for (field, list) in [
            ("conv_dim", &self.conv_dim),
            ("conv_kernel", &self.conv_kernel),
            ("conv_stride", &self.conv_stride),
        ] {
            if list.contains(&0) {
                return err(field, "entries must be positive".into());
            }
        }
        // MERT's kernels are 10, 3 and 2 samples/frames wide; a conv is run as products over
        // kernel-wide windows, which a kernel of 10^5 would make terabytes.
        if let Some(k) = self.conv_kernel.iter().find(|&&k| k > MAX_CONV_KERNEL) {
            return err(
                "conv_kernel",
                format!("{k} is wider than {MAX_CONV_KERNEL}, the widest kernel supported"),
            );
        }
        // The conv stack's hop and receptive field must be sane sizes (window planning and
        // frame counts multiply them): at most 2^24 samples, computed without overflow.
        const MAX_SPAN: usize = 1 << 24;
        let (mut receptive, mut hop) = (1usize, 1usize);
        for (&k, &s) in self.conv_kernel.iter().zip(&self.conv_stride) {
            receptive = (k - 1)
                .checked_mul(hop)
                .and_then(|r| r.checked_add(receptive))
                .filter(|&r| r <= MAX_SPAN)
                .ok_or_else(|| MertError::Config {
                    field: "conv_kernel".into(),
                    message: format!("the conv stack's receptive field exceeds {MAX_SPAN} samples"),
                })?;
            hop = hop
                .checked_mul(s)
                .filter(|&h| h <= MAX_SPAN)
                .ok_or_else(|| MertError::Config {
                    field: "conv_stride".into(),
                    message: format!("the product of the strides exceeds {MAX_SPAN} samples"),
                })?;
        }
        for (field, act) in [
            ("hidden_act", &self.hidden_act),
            ("feat_extract_activation", &self.feat_extract_activation),
        ] {
            if act != "gelu" {
                return err(
                    field,
                    format!("`{act}` is not supported; MERT uses `gelu` (exact erf form)"),
                );
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return err("layer_norm_eps", "must be a positive number".into());
        }
        if self.feature_extractor_cqt {
            return err(
                "feature_extractor_cqt",
                "CQT input channels are a research option no released MERT uses; expected false"
                    .into(),
            );
        }
        if self.deepnorm {
            return err(
                "deepnorm",
                "DeepNorm is a research option no released MERT uses; expected false".into(),
            );
        }
        if self.conv_pos_batch_norm {
            return err(
                "conv_pos_batch_norm",
                "a batch-normalised positional conv is not the MERT architecture; expected false"
                    .into(),
            );
        }
        Ok(())
    }

    /// Channels of the last conv layer, the width of `extract_features`.
    pub fn conv_out_dim(&self) -> usize {
        *self.conv_dim.last().unwrap_or(&0)
    }

    /// Receptive field and hop of the conv stack in samples (400 and 320 for MERT).
    pub fn conv_geometry(&self) -> (usize, usize) {
        let mut receptive = 1;
        let mut hop = 1;
        for (&k, &s) in self.conv_kernel.iter().zip(&self.conv_stride) {
            receptive += (k - 1) * hop;
            hop *= s;
        }
        (receptive, hop)
    }

    /// Frames the conv stack yields for `samples` input samples: `floor((L-k)/s)+1` per layer,
    /// which for MERT is `floor((L-400)/320)+1`. Zero when the input is shorter than one frame.
    pub fn frames_for(&self, samples: usize) -> usize {
        let mut len = samples;
        for (&k, &s) in self.conv_kernel.iter().zip(&self.conv_stride) {
            if len < k {
                return 0;
            }
            len = (len - k) / s + 1;
        }
        len
    }

    /// Output frames per second of audio (75 for v1, 50 for v0).
    pub fn frame_rate(&self) -> f64 {
        self.sample_rate as f64 / self.conv_geometry().1 as f64
    }

    /// Number of hidden states `forward` returns (`num_hidden_layers + 1`).
    pub fn num_hidden_states(&self) -> usize {
        self.num_hidden_layers + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_count_matches_the_closed_form() {
        let c = MertConfig::mert_v1_95m();
        assert_eq!(c.conv_geometry(), (400, 320));
        for l in [
            400usize, 719, 720, 48_000, 120_000, 122_880, 240_000, 720_000,
        ] {
            assert_eq!(c.frames_for(l), (l - 400) / 320 + 1, "L = {l}");
        }
        assert_eq!(c.frames_for(120_000), 374);
        assert_eq!(c.frames_for(122_880), 383);
        assert_eq!(c.frames_for(399), 0);
        assert_eq!(c.frame_rate(), 75.0);
        assert_eq!(MertConfig::mert_v0().frame_rate(), 50.0);
    }

    #[test]
    fn official_95m_config_json_deserialises() {
        let text = r#"{"architectures":["MERTModel"],"model_type":"mert_model","auto_map":{"AutoConfig":"configuration_MERT.MERTConfig"},
          "sample_rate":24000,"hidden_size":768,"num_hidden_layers":12,"num_attention_heads":12,"intermediate_size":3072,
          "hidden_act":"gelu","conv_dim":[512,512,512,512,512,512,512],"conv_kernel":[10,3,3,3,3,2,2],"conv_stride":[5,2,2,2,2,2,2],
          "conv_bias":false,"num_feat_extract_layers":7,"feat_extract_norm":"group","feat_extract_activation":"gelu",
          "feat_proj_layer_norm":true,"do_stable_layer_norm":false,"layer_norm_eps":1e-05,"num_conv_pos_embeddings":128,
          "num_conv_pos_embedding_groups":16,"vocab_size":32,"tokenizer_class":"Wav2Vec2CTCTokenizer","feature_extractor_cqt":false,
          "feature_extractor_cqt_bins":336,"deepnorm":false,"attention_relax":-1.0,"torch_dtype":"float32"}"#;
        let c = MertConfig::from_json(text).unwrap();
        assert_eq!(c, MertConfig::mert_v1_95m());
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = MertConfig::tiny();
        c.num_attention_heads = 5;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("num_attention_heads"), "{e}");

        let mut c = MertConfig::tiny();
        c.conv_kernel.pop();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("conv_kernel")
        );

        let e = MertConfig::from_json(r#"{"model_type":"bert"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("model_type"), "{e}");
        let e = MertConfig::from_json(r#"{"hidden_act":"relu"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hidden_act"), "{e}");
        let e = MertConfig::from_json(r#"{"hidden_size":"big"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hidden_size") || e.contains("invalid"), "{e}");
        for name in ["mert-v1-95m", "mert-v1-330m", "mert-v0", "tiny"] {
            MertConfig::preset(name).unwrap().validate().unwrap();
        }
        assert!(MertConfig::preset("huge").is_err());

        // a rate a model cannot sensibly run at (resampling to it would need absurd memory)
        for rate in [0, 4_000, 44_100_000] {
            let e = MertConfig::from_json(&format!(r#"{{"sample_rate":{rate}}}"#))
                .unwrap_err()
                .to_string();
            assert!(e.contains("sample_rate"), "{e}");
        }
    }

    #[test]
    fn hubert_configs_without_a_rate_run_at_16_khz() {
        let v0 = MertConfig::from_json(r#"{"model_type":"hubert"}"#).unwrap();
        assert_eq!(v0.sample_rate, 16_000);
        let stated = MertConfig::from_json(r#"{"model_type":"hubert","sample_rate":24000}"#);
        assert_eq!(stated.unwrap().sample_rate, 24_000);
        assert_eq!(MertConfig::from_json("{}").unwrap().sample_rate, 24_000);
    }
}
