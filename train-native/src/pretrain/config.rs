//! The pretraining run file (`--config run.toml`). Unknown keys are an error naming the key;
//! the resolved config is written to `RUN_DIR/config.toml`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mert_core::MertConfig;
use mert_core::pretrain::{HeadsConfig, NoiseMixture};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// `preset = "tiny" | "mert-v1-95m" | ...` and/or any `MertConfig` field.
    pub model: toml::Table,
    pub data: DataConfig,
    pub train: TrainConfig,
    #[serde(default)]
    pub teachers: TeachersConfig,
    #[serde(default)]
    pub masking: MaskingConfig,
    #[serde(default)]
    pub augment: AugmentConfig,
    #[serde(default)]
    pub heads: HeadsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Audio folders or files to train on.
    pub train: Vec<PathBuf>,
    /// Audio folders or files for the validation loss (may be empty).
    pub valid: Vec<PathBuf>,
    /// Length of each training crop (MERT: 5 s).
    pub crop_seconds: f64,
    /// The corpus is decoded once into segments of this length, with their teacher labels.
    pub segment_seconds: f64,
    /// Where the decoded segments and labels live (default: `RUN_DIR/cache`).
    pub cache: Option<PathBuf>,
    /// Zero-mean/unit-variance per crop (the released models' preprocessing); MERT's
    /// pretraining used raw audio, so the default is off.
    pub normalize: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train: Vec::new(),
            valid: Vec::new(),
            crop_seconds: 5.0,
            segment_seconds: 30.0,
            cache: None,
            normalize: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub max_steps: u64,
    /// Crops per optimiser step (per micro-batch when `update_freq` > 1).
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    pub warmup_steps: u64,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    pub log_every: u64,
    /// Validation loss every this many steps (0: at each checkpoint).
    pub valid_every: u64,
    /// Crops used for the validation loss.
    pub valid_batches: usize,
    pub seed: u64,
    /// Global gradient-norm clip (0 = off). MERT: 10 (95M), 1 (330M).
    pub clip_norm: f64,
    pub adam_betas: [f64; 2],
    pub adam_eps: f64,
    pub weight_decay: f64,
    /// Micro-batches accumulated per optimiser step.
    pub update_freq: usize,
    /// Licence recorded in the exported model (should follow the training data's).
    pub license: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            max_steps: 400_000,
            batch_size: 16,
            lr: 5e-4,
            warmup_steps: 32_000,
            checkpoint_every: 25_000,
            keep_checkpoints: 3,
            log_every: 100,
            valid_every: 0,
            valid_batches: 4,
            seed: 1337,
            clip_norm: 10.0,
            adam_betas: [0.9, 0.98],
            adam_eps: 1e-6,
            weight_decay: 0.01,
            update_freq: 1,
            license: "unspecified".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeachersConfig {
    /// Regress the CQT (MERT's musical teacher).
    pub cqt: bool,
    /// Acoustic teacher: a codec file (the kit's safetensors or an EnCodec `.th`), or none.
    pub codec: Option<PathBuf>,
}

impl Default for TeachersConfig {
    fn default() -> Self {
        Self {
            cqt: true,
            codec: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskingConfig {
    pub prob: f64,
    pub length: usize,
    pub min_masks: usize,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        Self {
            prob: 0.8,
            length: 5,
            min_masks: 2,
        }
    }
}

/// `[augment]`: the in-batch noise mixture, on by default as in MERT.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    pub enabled: bool,
    pub prob: f64,
    pub min_seconds: f64,
    pub max_seconds: f64,
    pub max_segments: usize,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        let d = NoiseMixture::default();
        Self {
            enabled: true,
            prob: d.prob,
            min_seconds: d.min_seconds,
            max_seconds: d.max_seconds,
            max_segments: d.max_segments,
        }
    }
}

impl AugmentConfig {
    pub fn mixture(&self) -> Option<NoiseMixture> {
        self.enabled.then_some(NoiseMixture {
            prob: self.prob,
            min_seconds: self.min_seconds,
            max_seconds: self.max_seconds,
            max_segments: self.max_segments,
        })
    }
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let config: RunConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
        let config = config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        config.check(path)?;
        Ok(config)
    }

    /// Relative data paths are relative to the config file.
    fn resolve_paths(mut self, base: &Path) -> Self {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.data.train.iter_mut().for_each(fix);
        self.data.valid.iter_mut().for_each(fix);
        if let Some(p) = self.data.cache.as_mut() {
            fix(p);
        }
        if let Some(p) = self.teachers.codec.as_mut() {
            fix(p);
        }
        self
    }

    fn check(&self, path: &Path) -> Result<()> {
        let at = path.display();
        self.model_config()
            .with_context(|| format!("{at}: [model]"))?;
        let t = &self.train;
        if self.data.train.is_empty() {
            bail!("{at}: [data] train: expected at least one folder or file");
        }
        if self.data.crop_seconds.is_nan() || self.data.crop_seconds <= 0.0 {
            bail!("{at}: [data] crop_seconds: expected > 0");
        }
        if self.data.segment_seconds < self.data.crop_seconds {
            bail!("{at}: [data] segment_seconds: expected >= crop_seconds");
        }
        if t.batch_size == 0 || t.update_freq == 0 {
            bail!("{at}: [train] batch_size and update_freq: expected >= 1");
        }
        if t.max_steps == 0 || t.checkpoint_every == 0 || t.log_every == 0 {
            bail!("{at}: [train] max_steps, checkpoint_every, log_every: expected >= 1");
        }
        if t.keep_checkpoints == 0 {
            bail!("{at}: [train] keep_checkpoints: expected >= 1");
        }
        if t.lr.is_nan() || t.lr <= 0.0 {
            bail!("{at}: [train] lr: expected > 0");
        }
        if !(0.0..1.0).contains(&self.masking.prob) || self.masking.length == 0 {
            bail!("{at}: [masking] prob in [0, 1) and length >= 1 expected");
        }
        if !self.teachers.cqt && self.teachers.codec.is_none() {
            bail!("{at}: [teachers]: expected cqt = true or a codec (nothing to predict)");
        }
        Ok(())
    }

    /// The model shape: a preset (default `tiny`) with the given fields overriding it.
    pub fn model_config(&self) -> Result<MertConfig> {
        let preset = match self.model.get("preset") {
            None => "tiny",
            Some(toml::Value::String(s)) => s.as_str(),
            Some(_) => bail!("preset: expected a string"),
        };
        let base = MertConfig::preset(preset)?;
        let mut json = serde_json::to_value(&base)?;
        let fields = json.as_object_mut().expect("a config is a JSON object");
        for (key, value) in &self.model {
            if key == "preset" {
                continue;
            }
            if !fields.contains_key(key) {
                bail!("unknown key `{key}`");
            }
            fields.insert(key.clone(), serde_json::to_value(value)?);
        }
        let config = MertConfig::from_json(&json.to_string())?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped run file parses and resolves to a valid model.
    #[test]
    fn presets_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("configs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.push(root.join("../models/default/pretrain.toml"));
        assert!(files.len() >= 4, "{files:?}");
        for f in files {
            let c = RunConfig::load(&f).unwrap_or_else(|e| panic!("{}: {e:#}", f.display()));
            let m = c.model_config().unwrap();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name == "mert-v1-95m.toml" {
                assert_eq!((m.hidden_size, m.num_hidden_layers), (768, 12));
                assert!(!m.do_stable_layer_norm);
            }
            if name == "mert-v1-330m.toml" {
                assert_eq!((m.hidden_size, m.num_hidden_layers), (1024, 24));
                assert!(m.do_stable_layer_norm);
                assert_eq!(c.train.update_freq, 8);
            }
        }
    }
}
