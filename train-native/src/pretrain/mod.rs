//! `mert pretrain`: MERT's masked-prediction pretraining on the user's audio, resumable.
//! The recipe's pieces (masking, noise mixture, heads, loss, schedule) are in
//! `mert_core::pretrain`; this module owns the run folder, the data and the loop.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod replicas;
pub mod train;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use mert_core::pretrain::StepRng;
use mert_core::teachers::{Cqt, CqtConfig, load_codec_path};

use crate::backend::Backend;
use crate::output::write_atomic;
use crate::probe::features::file_id;
use checkpoint::{Pretrainer, RunState};
use config::RunConfig;
use data::{CacheMeta, CodesFn, Corpus, Crop, draw_batch, prepare, require_inputs};
use train::{Metrics, Run};

/// What a finished run reports.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub run: PathBuf,
    pub model: PathBuf,
    pub steps: u64,
    pub resumed_from: Option<u64>,
    pub train_seconds_of_audio: f64,
    pub skipped_files: Vec<String>,
    pub final_loss: Option<f64>,
}

#[allow(clippy::too_many_arguments)]
pub fn pretrain(
    config_path: &Path,
    out: &Path,
    resume: bool,
    stop_at: Option<u64>,
    backend: Backend,
    devices: usize,
    mut on_log: impl FnMut(&Metrics, u64),
    mut on_note: impl FnMut(&str),
) -> Result<Summary> {
    let config = RunConfig::load(config_path)?;
    let model_config = config.model_config()?;
    let count = devices;
    let devices: Vec<_> = backend
        .devices(count)?
        .into_iter()
        .map(|d| d.autodiff())
        .collect();
    let t = &config.train;
    if !t.update_freq.is_multiple_of(count) {
        bail!(
            "--devices {count}: [train] update_freq = {} in {} must be a multiple of it (each device takes whole micro-batches of batch_size crops)",
            t.update_freq,
            config_path.display()
        );
    }
    if config.train.precision == config::Precision::Bf16 {
        // A device that stores bfloat16 but has no arithmetic for it (wgpu on Vulkan, often)
        // would train on garbage.
        if devices
            .iter()
            .any(|d| !d.supports_dtype(burn::tensor::FloatDType::BF16))
        {
            bail!(
                "[train] precision = \"bf16\" in {}: the --backend {} device has no bfloat16 arithmetic; use precision = \"f32\" there",
                config_path.display(),
                format!("{backend:?}").to_lowercase()
            );
        }
    }
    // Missing data or a bad codec fail before the run folder exists.
    require_inputs(&config.data.train, &config.data.valid, config_path)?;
    let cache = config
        .data
        .cache
        .clone()
        .unwrap_or_else(|| out.join("cache"));
    let (_, hop) = model_config.conv_geometry();
    let cqt = if config.teachers.cqt {
        Some(Cqt::new(CqtConfig {
            sample_rate: model_config.sample_rate,
            hop_length: hop,
            ..CqtConfig::default()
        })?)
    } else {
        None
    };
    let codec = match &config.teachers.codec {
        Some(path) => {
            let checkpoint = load_codec_path(path)?;
            let c = &checkpoint.config;
            if c.sample_rate != model_config.sample_rate || c.hop_length() != hop {
                bail!(
                    "[teachers] codec = {}: its frames ({} samples at {} Hz) do not line up with the model's ({hop} at {} Hz)",
                    path.display(),
                    c.hop_length(),
                    c.sample_rate,
                    model_config.sample_rate
                );
            }
            let h = &config.heads;
            if c.n_q != h.codebooks || c.codebook_size != h.codebook_size {
                bail!(
                    "[teachers] codec = {}: it gives {} codebooks of {} codes but [heads] expects codebooks = {}, codebook_size = {}",
                    path.display(),
                    c.n_q,
                    c.codebook_size,
                    h.codebooks,
                    h.codebook_size
                );
            }
            let id = format!("{} ({})", path.display(), file_id(path)?);
            Some((checkpoint.into_codec(&Device::flex())?, id))
        }
        None => None,
    };
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let latest = checkpoint::ensure_empty_or_resume(out, resume)?;
    let toml_text = config.to_toml()?;
    let changed = checkpoint::start_config(
        out,
        latest.as_deref(),
        config.train.max_steps,
        config_path,
        &toml_text,
    )?;

    let device = devices[0].clone();
    device.seed(config.train.seed);

    let codes_fn = codec.as_ref().map(|(codec, _)| {
        move |samples: &[f32]| -> Result<(usize, Vec<i64>)> {
            let codes = codec.encode(samples)?;
            Ok((codes.frames, codes.data))
        }
    });
    let meta = CacheMeta {
        sample_rate: model_config.sample_rate,
        segment_samples: (config.data.segment_seconds * model_config.sample_rate as f64).round()
            as usize,
        cqt: cqt.is_some(),
        codec: codec.as_ref().map(|(_, id)| id.clone()),
    };
    let build = |inputs: &[PathBuf], name: &str, on_note: &mut dyn FnMut(&str)| {
        prepare(
            inputs,
            &cache.join(name),
            &model_config,
            meta.clone(),
            cqt.as_ref(),
            codes_fn.as_ref().map(|f| f as &CodesFn),
            |s| on_note(s),
        )
        .with_context(|| format!("[data] {name} in {}", config_path.display()))
    };
    let train_corpus = Arc::new(build(&config.data.train, "train", &mut on_note)?);
    let valid_corpus = if config.data.valid.is_empty() {
        None
    } else {
        Some(Arc::new(build(&config.data.valid, "valid", &mut on_note)?))
    };
    for skipped in &train_corpus.skipped {
        on_note(&format!("skipped: {skipped}"));
    }
    let crop = Crop::new(&model_config, config.data.crop_seconds)?;
    check_labels(&config, &train_corpus, crop)?;

    let (trainer, optim, state, resumed_from) = match latest {
        Some(dir) => {
            let (saved, trainer, bytes, state) = checkpoint::load(&dir, &config.heads, &device)?;
            if saved != model_config {
                bail!(
                    "{}: the checkpoint's model differs from [model] in {}",
                    dir.display(),
                    config_path.display()
                );
            }
            let optim = train::optimizer(&config)
                .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
                .map_err(|e| anyhow::anyhow!("{}: optimizer state: {e:?}", dir.display()))?;
            checkpoint::resumed_config(out, &changed, &toml_text, &mut on_note)?;
            on_note(&format!(
                "resuming from {} (step {})",
                dir.display(),
                state.step
            ));
            let step = state.step;
            (trainer, optim, state, Some(step))
        }
        None => {
            let mut trainer = Pretrainer::init(&model_config, &config.heads, &device);
            if let Some(init) = config.model_init() {
                trainer = trainer
                    .with_weights(&init, &model_config, &device)
                    .with_context(|| format!("{}: [model] init", config_path.display()))?;
                on_note(&format!("starting from the weights of {}", init.display()));
            }
            (
                trainer,
                train::optimizer(&config),
                RunState {
                    step: 0,
                    seed: config.train.seed,
                },
                None,
            )
        }
    };
    crate::pretrain::checkpoint::check_stop_at(stop_at, state.step)?;
    let run = Run {
        dir: out,
        config: &config,
        model_config: model_config.clone(),
        device,
        devices,
        train: train_corpus.clone(),
        valid: valid_corpus,
        crop,
        stop_at,
    };
    let max = config.train.max_steps;
    let mut final_loss = None;
    let trainer = train::train(&run, trainer, optim, state, |m| {
        final_loss = Some(m.loss);
        on_log(m, max)
    })?;
    let model_path = out.join("model.safetensors");
    let steps = match stop_at {
        Some(stop) if stop < max => stop,
        _ => max,
    };
    if steps < max {
        return Ok(Summary {
            run: out.to_path_buf(),
            model: checkpoint::list(out)?.pop().unwrap_or_default(),
            steps,
            resumed_from,
            train_seconds_of_audio: train_corpus.seconds(),
            skipped_files: train_corpus.skipped.clone(),
            final_loss,
        });
    }
    write_atomic(
        &model_path,
        &checkpoint::model_bytes(
            &model_config,
            &trainer,
            &config.train.license,
            config.train.max_steps,
        )?,
    )?;
    Ok(Summary {
        run: out.to_path_buf(),
        model: model_path,
        steps: config.train.max_steps,
        resumed_from,
        train_seconds_of_audio: train_corpus.seconds(),
        skipped_files: train_corpus.skipped.clone(),
        final_loss,
    })
}

/// The cached labels must fit the heads (bins, codebooks) before any step runs.
fn check_labels(config: &RunConfig, corpus: &Corpus, crop: Crop) -> Result<()> {
    let mut rng = StepRng::new(0);
    let batch = draw_batch(corpus, crop, 1, &mut rng)?;
    if batch.cqt.is_some() && batch.bins != config.heads.cqt_bins {
        bail!(
            "[heads] cqt_bins = {} but the CQT teacher gives {} bins",
            config.heads.cqt_bins,
            batch.bins
        );
    }
    if batch.codes.is_some() && batch.codebooks != config.heads.codebooks {
        bail!(
            "[heads] codebooks = {} but the codec gives {} codebooks",
            config.heads.codebooks,
            batch.codebooks
        );
    }
    Ok(())
}
