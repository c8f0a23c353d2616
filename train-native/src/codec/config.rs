//! The codec run file (`mert train-codec --config codec.toml`): `[codec]` (the architecture,
//! [`CodecConfig`] fields, defaults = EnCodec 24 kHz), `[data]`, `[train]`, `[quantizer]`
//! (EMA settings) and `[loss]` (weights, mel scales). Unknown keys are errors naming the key;
//! the resolved file is written to `RUN_DIR/config.toml`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mert_core::teachers::CodecConfig;
use mert_core::teachers::codec::ema::EmaConfig;
use mert_core::teachers::codec::loss::LossConfig;
use serde::{Deserialize, Serialize};

use crate::pretrain::config::{parse_toml, resolve_paths};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodecRunConfig {
    #[serde(default)]
    pub codec: CodecConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    #[serde(default)]
    pub quantizer: EmaConfig,
    #[serde(default)]
    pub loss: LossConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Audio folders or files to train on.
    pub train: Vec<PathBuf>,
    /// Held-out audio folders or files for the reconstruction SNR and mel distance.
    pub valid: Vec<PathBuf>,
    /// Length of each training crop (rounded down to whole codec frames).
    pub crop_seconds: f64,
    /// The corpus is decoded once into segments of this length.
    pub segment_seconds: f64,
    /// Where the decoded segments live (default: `RUN_DIR/cache`).
    pub cache: Option<PathBuf>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train: Vec::new(),
            valid: Vec::new(),
            crop_seconds: 1.0,
            segment_seconds: 30.0,
            cache: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub max_steps: u64,
    /// Crops per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate (EnCodec: 3e-4).
    pub lr: f64,
    /// Linear warm-up, then linear decay to 0 at `max_steps`.
    pub warmup_steps: u64,
    /// Steps at the start in which the decoder sees the encoder's output unquantised (no
    /// codebooks, no commitment loss); the codebooks are k-means-initialised on the first
    /// batch after them. 0 (EnCodec's recipe) quantises from the first step. An untrained
    /// encoder's output barely depends on its input, so codebooks fitted to it collapse
    /// to a few codes once the encoder moves (CODEC.md); a warm-up lets the autoencoder
    /// learn a representation worth quantising first.
    pub quantizer_warmup_steps: u64,
    /// Data-dependent initialisation of a fresh run (`CodecModel::data_init` on the first
    /// batch: each conv's outputs start at zero mean and unit variance). With torch's default
    /// initialisation the latent of a fresh encoder barely depends on its input and the
    /// codebooks collapse (CODEC.md). A resumed run keeps its checkpoint's weights.
    pub data_init: bool,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    pub log_every: u64,
    /// Held-out SNR and mel distance every this many steps (0: at each checkpoint); also
    /// at step 0, for the untrained codec.
    pub valid_every: u64,
    /// Held-out crops scored (fixed across the run).
    pub valid_crops: usize,
    pub seed: u64,
    /// Global gradient-norm clip (0 = off).
    pub clip_norm: f64,
    /// Adam betas (EnCodec: 0.5, 0.9).
    pub adam_betas: [f64; 2],
    pub adam_eps: f64,
    pub weight_decay: f64,
    /// Licence recorded in the codec file (should follow the training data's).
    pub license: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            max_steps: 100_000,
            batch_size: 8,
            lr: 3e-4,
            warmup_steps: 0,
            quantizer_warmup_steps: 0,
            data_init: true,
            checkpoint_every: 1000,
            keep_checkpoints: 3,
            log_every: 10,
            valid_every: 0,
            valid_crops: 16,
            seed: 1337,
            clip_norm: 0.0,
            adam_betas: [0.5, 0.9],
            adam_eps: 1e-8,
            weight_decay: 0.0,
            license: "unspecified".into(),
        }
    }
}

impl CodecRunConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let mut config: Self = parse_toml(&text, path)?;
        let d = &mut config.data;
        resolve_paths(
            path,
            d.train.iter_mut().chain(&mut d.valid).chain(&mut d.cache),
        );
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let at = path.display();
        self.codec
            .validate()
            .map_err(|e| anyhow::anyhow!("{at}: [codec] {e}"))?;
        let (c, d, t, q, l) = (
            &self.codec,
            &self.data,
            &self.train,
            &self.quantizer,
            &self.loss,
        );
        if c.lstm_width() > 4096 || c.dimension > 4096 || c.codebook_size > 65_536 || c.n_q > 64 {
            bail!(
                "{at}: [codec]: widths up to 4096, codebook_size up to 65536 and n_q up to 64 expected"
            );
        }
        if d.train.is_empty() {
            bail!("{at}: [data] train: expected at least one folder or file");
        }
        if !(d.crop_seconds > 0.0 && d.crop_seconds <= 60.0) {
            bail!("{at}: [data] crop_seconds: expected > 0 and <= 60");
        }
        if !(d.segment_seconds >= d.crop_seconds && d.segment_seconds <= 3600.0) {
            bail!("{at}: [data] segment_seconds: expected >= crop_seconds and <= 3600");
        }
        if self.crop_frames() == 0 {
            bail!("{at}: [data] crop_seconds: shorter than one codec frame");
        }
        let longest = l.mel_windows.iter().copied().max().unwrap_or(0);
        if self.crop_samples() <= longest / 2 {
            bail!(
                "{at}: [data] crop_seconds: a crop of {} samples is too short for the mel window of {longest} (needs more than half of it)",
                self.crop_samples()
            );
        }
        if t.batch_size == 0 || t.max_steps == 0 || t.checkpoint_every == 0 || t.log_every == 0 {
            bail!(
                "{at}: [train] batch_size, max_steps, checkpoint_every, log_every: expected >= 1"
            );
        }
        // as for pretraining: a batch is held whole in memory
        if t.batch_size > 1 << 16 {
            bail!("{at}: [train] batch_size: expected at most 65536");
        }
        if t.quantizer_warmup_steps >= t.max_steps {
            bail!(
                "{at}: [train] quantizer_warmup_steps: expected fewer than max_steps = {} (the codec must end quantised)",
                t.max_steps
            );
        }
        if t.keep_checkpoints == 0 || t.valid_crops == 0 {
            bail!("{at}: [train] keep_checkpoints and valid_crops: expected >= 1");
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            bail!("{at}: [train] lr: expected > 0");
        }
        if !t.adam_betas.iter().all(|b| (0.0..1.0).contains(b)) {
            bail!("{at}: [train] adam_betas: expected two values in [0, 1)");
        }
        // written so that NaN fails too
        let quantizer_ok =
            q.decay > 0.0 && q.decay < 1.0 && q.epsilon > 0.0 && q.dead_code_threshold >= 0.0;
        if !quantizer_ok {
            bail!(
                "{at}: [quantizer] decay in (0, 1), epsilon > 0, dead_code_threshold >= 0 expected"
            );
        }
        if q.kmeans_iters > 10_000 {
            bail!(
                "{at}: [quantizer] kmeans_iters = {}: expected at most 10000 (EnCodec: 50)",
                q.kmeans_iters
            );
        }
        if l.mel_windows.is_empty()
            || l.mel_windows
                .iter()
                .any(|w| !w.is_power_of_two() || *w < 4 || *w > 65_536)
        {
            bail!("{at}: [loss] mel_windows: expected powers of two from 4 to 65536");
        }
        if l.n_mels == 0 || l.n_mels > 1024 {
            bail!("{at}: [loss] n_mels: expected 1 to 1024");
        }
        let weights = [l.time_weight, l.mel_weight, l.commitment_weight];
        if !weights.iter().all(|w| w.is_finite() && *w >= 0.0) {
            bail!("{at}: [loss] time_weight, mel_weight, commitment_weight: expected >= 0");
        }
        Ok(())
    }

    /// Codec frames per training crop.
    pub fn crop_frames(&self) -> usize {
        let samples = (self.data.crop_seconds * self.codec.sample_rate as f64).round() as usize;
        samples / self.codec.hop_length()
    }

    /// Samples per training crop (whole frames).
    pub fn crop_samples(&self) -> usize {
        self.crop_frames() * self.codec.hop_length()
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped codec run file parses.
    #[test]
    fn shipped_codec_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let files: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("codec-"))
            })
            .collect();
        assert!(!files.is_empty());
        for f in files {
            let c = CodecRunConfig::load(&f).unwrap_or_else(|e| panic!("{}: {e:#}", f.display()));
            assert_eq!(c.codec.hop_length(), 320, "{}", f.display());
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let p = dir.path().join("c.toml");
            std::fs::write(&p, text).unwrap();
            CodecRunConfig::load(&p).unwrap_err().to_string()
        };
        let base = "[data]\ntrain = [\"a\"]\n[train]\n";
        let e = write(&format!("{base}max_stepz = 3\n"));
        assert!(e.contains("max_stepz"), "{e}");
        let e = write(&format!("{base}[codec]\nn_filterz = 3\n"));
        assert!(e.contains("n_filterz"), "{e}");
        let e = write(&format!("{base}[codec]\npad_mode = \"zero\"\n"));
        assert!(e.contains("pad_mode"), "{e}");
        let e = write(&format!("{base}data_init = \"yes\"\n"));
        assert!(e.contains("data_init"), "{e}");
        let e = write(&format!("{base}[loss]\nmel_windows = [100]\n"));
        assert!(e.contains("mel_windows"), "{e}");
        let e = write("[data]\ntrain = [\"a\"]\ncrop_seconds = 0.01\n[train]\n");
        assert!(e.contains("crop_seconds"), "{e}");
    }
}
