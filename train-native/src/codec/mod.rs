//! `mert train-codec`: an RVQ-VAE of EnCodec's architecture trained on the user's audio,
//! resumable, for users who cannot or may not use EnCodec's weights. The numerics (the
//! trainable module, EMA codebooks, losses) are in `mert_core::teachers::codec`; this module
//! owns the run folder, the data (the pretraining run's segment cache and crops, reused) and
//! the loop. The result, `RUN_DIR/codec.safetensors`, is a kit codec file: `mert labels
//! --codec` and `[teachers] codec` in a pretraining run read it.

pub mod checkpoint;
pub mod config;
pub mod train;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use mert_core::teachers::codec::ema::EmaRvq;
use mert_core::teachers::codec::train::CodecModel;

use crate::backend::Backend;
use crate::output::write_atomic;
use crate::pretrain::checkpoint::{
    RunState, ensure_empty_or_resume, list, resumed_config, start_config,
};
use crate::pretrain::data::{CacheMeta, Crop, prepare_with, require_inputs};
use checkpoint::{CODEC_FILE, Trainer};
use config::CodecRunConfig;
use train::{Metrics, Run};

/// What a finished (or stopped) run reports.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub run: PathBuf,
    /// The codec file (or, when stopped early, the newest checkpoint folder).
    pub codec: PathBuf,
    pub steps: u64,
    pub resumed_from: Option<u64>,
    pub train_seconds_of_audio: f64,
    pub valid_seconds_of_audio: f64,
    pub skipped_files: Vec<String>,
    pub final_loss: Option<f64>,
    pub valid_snr_db: Option<f64>,
    pub valid_mel_distance: Option<f64>,
    /// Distinct first-codebook codes on the held-out crops at the last evaluation.
    pub valid_codes_used: Option<usize>,
}

pub fn train_codec(
    config_path: &Path,
    out: &Path,
    resume: bool,
    stop_at: Option<u64>,
    backend: Backend,
    mut on_log: impl FnMut(&Metrics, u64),
    mut on_note: impl FnMut(&str),
) -> Result<Summary> {
    let config = CodecRunConfig::load(config_path)?;
    // missing data fails before the run folder exists
    require_inputs(&config.data.train, &config.data.valid, config_path)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let latest = ensure_empty_or_resume(out, resume)?;
    let toml_text = config.to_toml()?;
    let changed = start_config(
        out,
        latest.as_deref(),
        config.train.max_steps,
        config_path,
        &toml_text,
    )?;
    let device = backend.device()?.autodiff();
    device.seed(config.train.seed);

    let c = &config.codec;
    let hop = c.hop_length();
    let cache = config
        .data
        .cache
        .clone()
        .unwrap_or_else(|| out.join("cache"));
    let meta = CacheMeta {
        sample_rate: c.sample_rate,
        segment_samples: (config.data.segment_seconds * c.sample_rate as f64).round() as usize,
        cqt: false,
        codec: None,
    };
    // a segment holds floor(L / hop) whole codec frames
    let frames_for = move |samples: usize| samples / hop;
    let mut build = |inputs: &[PathBuf], name: &str| {
        prepare_with(
            inputs,
            &cache.join(name),
            &frames_for,
            meta.clone(),
            None,
            None,
            |s| on_note(s),
        )
        .with_context(|| format!("[data] {name} in {}", config_path.display()))
    };
    let train_corpus = Arc::new(build(&config.data.train, "train")?);
    let valid_corpus = if config.data.valid.is_empty() {
        None
    } else {
        Some(Arc::new(build(&config.data.valid, "valid")?))
    };
    for skipped in &train_corpus.skipped {
        on_note(&format!("skipped: {skipped}"));
    }
    let crop = Crop {
        frames: config.crop_frames(),
        samples: config.crop_samples(),
        hop,
    };

    let (trainer, optim, state, resumed_from) = match latest {
        Some(dir) => {
            let (trainer, bytes, state) = checkpoint::load(&dir, &config, &device)?;
            let optim = train::optimizer(&config)
                .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
                .map_err(|e| anyhow::anyhow!("{}: optimizer state: {e:?}", dir.display()))?;
            resumed_config(out, &changed, &toml_text, &mut on_note)?;
            on_note(&format!(
                "resuming from {} (step {})",
                dir.display(),
                state.step
            ));
            let step = state.step;
            (trainer, optim, state, Some(step))
        }
        None => (
            Trainer {
                model: CodecModel::init(c, config.train.seed, &device)?,
                rvq: EmaRvq::new(
                    c.n_q,
                    c.codebook_size,
                    c.dimension,
                    config.quantizer.clone(),
                ),
            },
            train::optimizer(&config),
            RunState {
                step: 0,
                seed: config.train.seed,
            },
            None,
        ),
    };
    if state.step > config.train.max_steps {
        bail!(
            "{}: the run is at step {}, past [train] max_steps = {}",
            out.display(),
            state.step,
            config.train.max_steps
        );
    }
    crate::pretrain::checkpoint::check_stop_at(stop_at, state.step)?;
    let run = Run {
        dir: out,
        config: &config,
        device,
        train: train_corpus.clone(),
        valid: valid_corpus.clone(),
        crop,
        stop_at,
    };
    let max = config.train.max_steps;
    let (mut final_loss, mut snr, mut distance, mut used) = (None, None, None, None);
    let trainer = train::train(&run, trainer, optim, state, |m| {
        final_loss = m.loss.or(final_loss);
        snr = m.valid_snr_db.or(snr);
        distance = m.valid_mel_distance.or(distance);
        used = m.valid_codes_used.or(used);
        on_log(m, max)
    })?;
    let steps = match stop_at {
        Some(stop) if stop < max => stop,
        _ => max,
    };
    let codec = if steps < max {
        list(out)?.pop().unwrap_or_default()
    } else {
        let path = out.join(CODEC_FILE);
        write_atomic(&path, &trainer.export_bytes(c, &config.train.license, max)?)?;
        path
    };
    Ok(Summary {
        run: out.to_path_buf(),
        codec,
        steps,
        resumed_from,
        train_seconds_of_audio: train_corpus.seconds(),
        valid_seconds_of_audio: valid_corpus.as_ref().map_or(0.0, |v| v.seconds()),
        skipped_files: train_corpus.skipped.clone(),
        final_loss,
        valid_snr_db: snr,
        valid_mel_distance: distance,
        valid_codes_used: used,
    })
}
