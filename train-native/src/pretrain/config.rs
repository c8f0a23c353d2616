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
    /// The config of `[model] init`, read when the run file is parsed.
    #[serde(skip)]
    init_config: Option<MertConfig>,
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
    /// `f32`, or `bf16`: mixed precision, the backbone's forward and backward in bfloat16
    /// while the master weights, the optimiser, the heads and the loss stay f32.
    pub precision: Precision,
}

/// The number type the backbone computes in during training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
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
            precision: Precision::F32,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeachersConfig {
    /// Regress the CQT (MERT's musical teacher).
    pub cqt: bool,
    /// Acoustic teacher: a codec file (the kit's safetensors or an EnCodec `.th`), or none
    /// (absent, or `"none"`).
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

/// Longest crop, segment or noise span in a run file (seconds).
const MAX_SECONDS: f64 = 3600.0;
/// Largest model a run file may ask for (MERT-v1-330M has 3.3e8).
const MAX_PARAMETERS: f64 = 4e9;

/// About how many weights `model` has: the transformer layers and the conv stack.
fn parameters(model: &MertConfig) -> f64 {
    let (h, i) = (model.hidden_size as f64, model.intermediate_size as f64);
    let layers = model.num_hidden_layers as f64 * (4.0 * h * h + 2.0 * h * i);
    let pos =
        h * h / model.num_conv_pos_embedding_groups as f64 * model.num_conv_pos_embeddings as f64;
    let mut conv = 0.0;
    let mut channels = 1.0;
    for (&dim, &kernel) in model.conv_dim.iter().zip(&model.conv_kernel) {
        conv += channels * dim as f64 * kernel as f64;
        channels = dim as f64;
    }
    layers + pos + conv + channels * h
}

/// The 1-based number and the text (trimmed, at most 80 characters, control characters
/// blanked) of the line holding byte `offset` of `text`: toml's message names no key.
fn line_of(text: &str, offset: usize) -> Option<(usize, String)> {
    let before = text.as_bytes().get(..offset)?;
    let n = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let line = text.lines().nth(n - 1).unwrap_or("").trim();
    let shown: String = line
        .chars()
        .take(80)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Some((n, shown))
}

/// A run file's text as `T`; an error is one line naming the file, the line number and the
/// line (toml's own message may quote the line over several).
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().replace(['\n', '\r'], " ");
        match e.span().and_then(|s| line_of(text, s.start)) {
            Some((n, line)) => anyhow::anyhow!("{}:{n}: {message} (at `{line}`)", path.display()),
            None => anyhow::anyhow!("{}: {message}", path.display()),
        }
    })
}

/// Relative paths in a run file are relative to the file's folder. They become absolute, so
/// the resolved `RUN_DIR/config.toml` can be used as a run file from anywhere.
pub fn resolve_paths<'a>(run_file: &Path, paths: impl Iterator<Item = &'a mut PathBuf>) {
    // a bare file name's parent is "", which `absolute` refuses: that is the current folder
    let base = match run_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => {
            std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
        }
        _ => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    for p in paths {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        Self::from_toml(&text, path)
    }

    /// Parse and check a run file's text; `path` names it in errors and anchors relative
    /// paths. (Also the entry point of the `run_config` fuzz target.)
    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        let mut config: RunConfig = parse_toml(text, path)?;
        // `[model] init`: start from a checkpoint's weights (and its config); relative to the
        // run file like every path in it.
        if let Some(value) = config.model.get_mut("init") {
            let toml::Value::String(init) = value else {
                bail!("{}: [model] init: expected a model path", path.display());
            };
            let mut resolved = [PathBuf::from(init.as_str())];
            resolve_paths(path, resolved.iter_mut());
            let [mut resolved] = resolved;
            // a Hugging Face model id (`m-a-p/MERT-v1-95M`) that is no path beside the run
            // file: its snapshot in the local Hugging Face cache
            if !resolved.exists()
                && let Some(found) = mert_core::load::hub::resolve(Path::new(init.as_str()))
            {
                resolved = found.with_context(|| format!("{}: [model] init", path.display()))?;
            }
            let checkpoint = mert_core::load_path(&resolved)
                .with_context(|| format!("{}: [model] init", path.display()))?;
            config.init_config = Some(checkpoint.config);
            *value = toml::Value::String(resolved.display().to_string());
        }
        // `codec = "none"` (or "") spells out the default: no acoustic teacher.
        if config
            .teachers
            .codec
            .as_ref()
            .is_some_and(|c| c.as_os_str().is_empty() || c.as_os_str() == "none")
        {
            config.teachers.codec = None;
        }
        let d = &mut config.data;
        resolve_paths(
            path,
            d.train
                .iter_mut()
                .chain(&mut d.valid)
                .chain(&mut d.cache)
                .chain(&mut config.teachers.codec),
        );
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let at = path.display();
        let model = self
            .model_config()
            .with_context(|| format!("{at}: [model]"))?;
        if parameters(&model) > MAX_PARAMETERS {
            bail!(
                "{at}: [model]: about {:.1e} parameters; expected at most {MAX_PARAMETERS:.0e}",
                parameters(&model)
            );
        }
        let (t, d, m, a, h) = (
            &self.train,
            &self.data,
            &self.masking,
            &self.augment,
            &self.heads,
        );
        if d.train.is_empty() {
            bail!("{at}: [data] train: expected at least one folder or file");
        }
        // Lengths in seconds: positive, and at most an hour (a crop or segment is held in
        // memory at the model's rate).
        for (key, v) in [
            ("crop_seconds", d.crop_seconds),
            ("segment_seconds", d.segment_seconds),
        ] {
            if !(v > 0.0 && v <= MAX_SECONDS) {
                bail!("{at}: [data] {key} = {v:?}: expected seconds in (0, {MAX_SECONDS}]");
            }
        }
        if d.segment_seconds < d.crop_seconds {
            bail!("{at}: [data] segment_seconds: expected >= crop_seconds");
        }
        if t.batch_size == 0 || t.update_freq == 0 {
            bail!("{at}: [train] batch_size and update_freq: expected >= 1");
        }
        if t.batch_size > 1 << 16 || t.update_freq > 1 << 16 || t.valid_batches > 1 << 16 {
            bail!("{at}: [train] batch_size, update_freq, valid_batches: expected at most 65536");
        }
        if t.max_steps == 0 || t.checkpoint_every == 0 || t.log_every == 0 {
            bail!("{at}: [train] max_steps, checkpoint_every, log_every: expected >= 1");
        }
        if t.keep_checkpoints == 0 {
            bail!("{at}: [train] keep_checkpoints: expected >= 1");
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            bail!("{at}: [train] lr = {:?}: expected a positive number", t.lr);
        }
        if !t.adam_betas.iter().all(|b| (0.0..1.0).contains(b)) {
            bail!(
                "{at}: [train] adam_betas = {:?}: expected two numbers in [0, 1)",
                t.adam_betas
            );
        }
        if !(t.adam_eps > 0.0 && t.adam_eps.is_finite()) {
            bail!(
                "{at}: [train] adam_eps = {:?}: expected a positive number",
                t.adam_eps
            );
        }
        for (key, v) in [("clip_norm", t.clip_norm), ("weight_decay", t.weight_decay)] {
            if !(v >= 0.0 && v.is_finite()) {
                bail!("{at}: [train] {key} = {v:?}: expected a number >= 0");
            }
        }
        if !(0.0..1.0).contains(&m.prob) || m.length == 0 {
            bail!("{at}: [masking] prob in [0, 1) and length >= 1 expected");
        }
        if !(0.0..=1.0).contains(&a.prob) {
            bail!(
                "{at}: [augment] prob = {:?}: expected a probability in [0, 1]",
                a.prob
            );
        }
        if !(a.min_seconds >= 0.0 && a.min_seconds <= a.max_seconds && a.max_seconds <= MAX_SECONDS)
        {
            bail!(
                "{at}: [augment] min_seconds, max_seconds: expected 0 <= min_seconds <= max_seconds <= {MAX_SECONDS}"
            );
        }
        if a.max_segments > 1 << 10 {
            bail!(
                "{at}: [augment] max_segments = {}: expected at most 1024",
                a.max_segments
            );
        }
        for (key, v, max) in [
            ("codebooks", h.codebooks, 1 << 8),
            ("codebook_size", h.codebook_size, 1 << 20),
            ("final_dim", h.final_dim, 1 << 14),
            ("cqt_bins", h.cqt_bins, 1 << 14),
        ] {
            if v == 0 || v > max {
                bail!("{at}: [heads] {key} = {v}: expected 1..={max}");
            }
        }
        if !(h.logit_temp > 0.0 && h.logit_temp.is_finite()) {
            bail!(
                "{at}: [heads] logit_temp = {:?}: expected a positive number",
                h.logit_temp
            );
        }
        for (key, v) in [
            ("features_pen_weight", h.features_pen_weight),
            ("cqt_weight", h.cqt_weight),
            ("feature_grad_mult", h.feature_grad_mult),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                bail!("{at}: [heads] {key} = {v:?}: expected a number >= 0");
            }
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
        let base = match &self.init_config {
            Some(_) if self.model.contains_key("preset") => {
                bail!("preset and init: give one (init brings its checkpoint's config)")
            }
            Some(c) => c.clone(),
            None => MertConfig::preset(preset)?,
        };
        let mut json = serde_json::to_value(&base)?;
        let Some(fields) = json.as_object_mut() else {
            bail!("preset `{preset}` is not a JSON object");
        };
        for (key, value) in &self.model {
            if key == "preset" || key == "init" {
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

    /// `[model] init`: the checkpoint whose weights the run starts from.
    pub fn model_init(&self) -> Option<PathBuf> {
        self.model
            .get("init")
            .and_then(|v| v.as_str())
            .map(PathBuf::from)
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
            // codec run files have their own parser (codec::config)
            .filter(|p| {
                !p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("codec-")
            })
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

    #[test]
    fn paths_of_a_bare_file_name_resolve_against_the_current_folder() {
        let mut paths = [PathBuf::from("data/train"), PathBuf::from("/abs/x.wav")];
        resolve_paths(Path::new("pt.toml"), paths.iter_mut());
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(paths[0], cwd.join("data/train"));
        assert_eq!(paths[1], PathBuf::from("/abs/x.wav"));
    }

    #[test]
    fn codec_none_means_no_acoustic_teacher() {
        let at = Path::new("/runs/x.toml");
        let text = "[model]\npreset = \"tiny\"\n[data]\ntrain = [\"a.wav\"]\n[train]\n[teachers]\n";
        for (codec, want) in [
            ("\"none\"", None),
            ("\"\"", None),
            (
                "\"c.safetensors\"",
                Some(PathBuf::from("/runs/c.safetensors")),
            ),
        ] {
            let c = RunConfig::from_toml(&format!("{text}codec = {codec}\n"), at).unwrap();
            assert_eq!(c.teachers.codec, want, "{codec}");
        }
        let err = RunConfig::from_toml(&format!("{text}cqt = false\ncodec = \"none\"\n"), at)
            .unwrap_err();
        assert!(format!("{err:#}").contains("nothing to predict"), "{err:#}");
        // a run file given by a relative path: its paths become absolute, so the resolved
        // config.toml works from any folder
        let text = "[model]\npreset = \"tiny\"\n[data]\ntrain = [\"a.wav\"]\n[train]\n";
        let c = RunConfig::from_toml(text, Path::new("runs/x.toml")).unwrap();
        assert!(c.data.train[0].is_absolute(), "{:?}", c.data.train);
        assert!(c.data.train[0].ends_with("runs/a.wav"));
    }

    /// A `[model]` value of the wrong type names its key, not `config.json`.
    #[test]
    fn model_field_type_names_key() {
        let at = Path::new("/runs/x.toml");
        let text = "[model]\npreset = \"tiny\"\nnum_hidden_layers = 3\nhidden_size = \"big\"\n[data]\ntrain = [\"a.wav\"]\n[train]\n";
        let err = RunConfig::from_toml(text, at).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("[model]: config field `hidden_size`: invalid type"),
            "{msg}"
        );
        assert!(!msg.contains("config.json"), "{msg}");
    }
}
