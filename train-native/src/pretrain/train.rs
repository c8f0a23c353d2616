//! The training loop: burn's autodiff and AdamW, MERT's schedule, global-norm clipping,
//! gradient accumulation, per-step metrics and checkpoints.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use mert_core::MertConfig;
use mert_core::audio::normalize;
use mert_core::model::Regularize;
use mert_core::pretrain::{
    LossTerms, NoiseMixture, StepRng, learning_rate, masked_index, span_mask, student_forward,
};

use super::checkpoint::{self, Pretrainer, RunState};
use super::config::RunConfig;
use super::data::{Batch, Corpus, Crop, draw_batch, prefetch};
use super::replicas;

/// Where a run is and what it trains.
pub struct Run<'a> {
    pub dir: &'a Path,
    pub config: &'a RunConfig,
    pub model_config: MertConfig,
    /// The main device (optimiser, checkpoints, validation): `devices[0]`.
    pub device: Device,
    /// Every device a step's micro-batches are spread over (data parallel), main first.
    pub devices: Vec<Device>,
    pub train: Arc<Corpus>,
    pub valid: Option<Arc<Corpus>>,
    pub crop: Crop,
    /// Stop (with a checkpoint) after this many steps, as an interrupted run would.
    pub stop_at: Option<u64>,
}

/// One logged line of `metrics.jsonl`.
#[derive(Debug, Default, serde::Serialize)]
pub struct Metrics {
    pub step: u64,
    pub loss: f64,
    pub loss_codes: f64,
    pub loss_cqt: f64,
    pub features_pen: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub samples_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_loss: Option<f64>,
    pub elapsed_s: f64,
}

pub fn optimizer(config: &RunConfig) -> ModuleOptimizer {
    let t = &config.train;
    adamw(t.adam_betas, t.adam_eps, t.weight_decay)
}

/// AdamW with a run file's betas, epsilon and (decoupled) weight decay.
pub fn adamw(betas: [f64; 2], eps: f64, weight_decay: f64) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_1(betas[0] as f32)
        .with_beta_2(betas[1] as f32)
        .with_epsilon(eps as f32)
        .with_weight_decay(weight_decay as f32)
        .init()
}

/// The loss of one micro-batch on `device` (where `trainer` lives); the RNG streams come
/// from the step and the micro-batch's index, so they do not depend on the device count. `train`: dropout and
/// LayerDrop as the model config says (`mixture`: the noise mixture, when on).
#[allow(clippy::too_many_arguments)]
pub fn batch_loss(
    trainer: &Pretrainer,
    run: &Run,
    device: &Device,
    batch: &Batch,
    rng_step: u64,
    micro: u64,
    mixture: Option<&NoiseMixture>,
    train: bool,
) -> LossTerms {
    let cfg = run.config;
    let seed = cfg.train.seed;
    let mut audio = batch.audio.clone();
    if let Some(mix) = mixture {
        let mut rng = StepRng::for_step(seed, rng_step, 200 + micro);
        mix.apply(&mut rng, &mut audio, run.model_config.sample_rate);
    }
    if cfg.data.normalize {
        audio.iter_mut().for_each(|a| normalize(a));
    }
    let b = audio.len();
    let samples = audio[0].len();
    let flat: Vec<f32> = audio.into_iter().flatten().collect();
    let mut input = Tensor::<2>::from_data(TensorData::new(flat, [b, samples]), device);
    // A mixed-precision replica's backbone is in a half type; its input follows.
    let dtype = trainer.model.feature_extractor.conv_layers[0]
        .conv
        .weight
        .val()
        .dtype();
    if dtype != input.dtype() {
        input = input.cast(dtype);
    }
    let mut rng = StepRng::for_step(seed, rng_step, 300 + micro);
    let m = &cfg.masking;
    let mask = span_mask(&mut rng, b, batch.frames, m.prob, m.length, m.min_masks);
    let reg = train.then(|| {
        let mc = &run.model_config;
        let mut rng = StepRng::for_step(seed, rng_step, 400 + micro);
        let keep = (0..mc.num_hidden_layers)
            .map(|_| rng.uniform() >= mc.layerdrop)
            .collect();
        (rng.next_u64(), Regularize::from_config(mc, keep))
    });
    let heads_cfg = &cfg.heads;
    // Dropout masks come from the device's generator, seeded per micro-batch so a resumed run
    // draws the same ones. A backend may keep one generator for all its devices, so replicas
    // take turns between seeding and the end of the forward pass.
    let _turn = reg.as_ref().map(|(seed, _)| {
        let turn = FORWARD_TURN.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(*seed);
        turn
    });
    let out = student_forward(
        &trainer.model,
        &trainer.heads,
        input,
        &mask,
        heads_cfg.feature_grad_mult,
        reg.as_ref().map(|(_, r)| r),
    );
    drop(_turn);
    let (conv_features, last) = if dtype == DType::F32 {
        (out.conv_features, out.last)
    } else {
        (
            out.conv_features.cast(DType::F32),
            out.last.cast(DType::F32),
        )
    };
    let index = masked_index(&mask);
    let n = index.len();
    let codes = batch.codes.as_ref().map(|codes| {
        let k = batch.codebooks;
        let rows: Vec<i64> = index
            .iter()
            .flat_map(|&i| codes[i * k..(i + 1) * k].iter().copied())
            .collect();
        Tensor::<2, Int>::from_data(TensorData::new(rows, [n, k]), device)
    });
    let cqt = batch.cqt.as_ref().map(|cqt| {
        let bins = batch.bins;
        let rows: Vec<f32> = index
            .iter()
            .flat_map(|&i| cqt[i * bins..(i + 1) * bins].iter().copied())
            .collect();
        Tensor::<2>::from_data(TensorData::new(rows, [n, bins]), device)
    });
    trainer
        .heads
        .loss(heads_cfg, conv_features, last, &index, codes, cqt)
}

static FORWARD_TURN: Mutex<()> = Mutex::new(());

/// Sum of squared gradients over every parameter, then scale all by `clip / norm` if larger.
struct GradNorm<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.powi_scalar(2).sum();
            self.sum = Some(match self.sum.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
    }
}

struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g * self.factor);
        }
    }
}

/// Scale `grads` so their global norm is at most `clip` (0 = off); returns the norm before.
pub fn clip_global_norm<M: Module>(trainer: &M, grads: &mut GradientsParams, clip: f64) -> f64 {
    let mut v = GradNorm { grads, sum: None };
    trainer.visit(&mut v);
    let norm = v
        .sum
        .map_or(0.0, |s| (s.into_scalar::<f32>() as f64).sqrt());
    if clip > 0.0 && norm > clip && norm.is_finite() {
        trainer.visit(&mut ScaleGrads {
            grads,
            factor: clip / norm,
        });
    }
    norm
}

pub fn scalar(t: &Tensor<1>) -> f64 {
    t.clone().into_scalar::<f32>() as f64
}

/// Validation loss over fixed crops (no noise, fixed masks): comparable across steps.
pub fn valid_loss(trainer: &Pretrainer, run: &Run) -> Result<Option<f64>> {
    let Some(corpus) = &run.valid else {
        return Ok(None);
    };
    let t = &run.config.train;
    let mut total = 0.0;
    for i in 0..t.valid_batches.max(1) {
        let fixed = u64::MAX - i as u64;
        let mut rng = StepRng::for_step(t.seed, fixed, 100);
        let batch = draw_batch(corpus, run.crop, t.batch_size, &mut rng)?;
        let terms = batch_loss(trainer, run, &run.device, &batch, fixed, 0, None, false);
        total += scalar(&terms.total.detach());
    }
    Ok(Some(total / t.valid_batches.max(1) as f64))
}

/// Train from `trainer` at `state.step` to `max_steps`.
pub fn train(
    run: &Run,
    mut trainer: Pretrainer,
    mut optim: ModuleOptimizer,
    mut state: RunState,
    mut on_log: impl FnMut(&Metrics),
) -> Result<Pretrainer> {
    let cfg = run.config;
    let t = &cfg.train;
    let mixture = cfg.augment.mixture();
    let metrics_path = run.dir.join("metrics.jsonl");
    truncate_metrics(&metrics_path, state.step)?;
    let mut metrics_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("{}", metrics_path.display()))?;
    let batches = prefetch(
        run.train.clone(),
        run.crop,
        t.batch_size,
        t.update_freq,
        t.seed,
        state.step,
        t.max_steps,
    );
    let started = Instant::now();
    let mut window = (0.0, 0.0, 0.0, 0.0, 0.0, 0usize, Instant::now());
    while state.step < t.max_steps {
        let step = state.step;
        let micro = batches
            .recv()
            .context("the data loader stopped")?
            .context("reading a training batch")?;
        let (mut grads, sums) = replicas::step_grads(&trainer, run, &micro, step, mixture.as_ref());
        let (loss, codes, cqt, pen) = (sums.loss, sums.codes, sums.cqt, sums.pen);
        let k = micro.len() as f64;
        if !loss.is_finite() {
            bail!(
                "step {}: the loss is not finite ({loss}); lower [train] lr or raise clip_norm",
                step + 1
            );
        }
        let grad_norm = clip_global_norm(&trainer, &mut grads, t.clip_norm);
        let lr = learning_rate(step, t.lr, t.warmup_steps, t.max_steps);
        trainer = optim.step(lr, trainer, grads);
        state.step += 1;

        window.0 += loss / k;
        window.1 += codes / k;
        window.2 += cqt / k;
        window.3 += pen / k;
        window.4 += grad_norm;
        window.5 += 1;
        let last = state.step == t.max_steps;
        let stopping = run.stop_at == Some(state.step);
        let checkpoint_now = state.step.is_multiple_of(t.checkpoint_every) || last || stopping;
        if state.step.is_multiple_of(t.log_every) || last {
            let n = window.5 as f64;
            let secs = window.6.elapsed().as_secs_f64().max(1e-9);
            let valid_due = if t.valid_every == 0 {
                checkpoint_now
            } else {
                state.step.is_multiple_of(t.valid_every)
            };
            let metrics = Metrics {
                step: state.step,
                loss: window.0 / n,
                loss_codes: window.1 / n,
                loss_cqt: window.2 / n,
                features_pen: window.3 / n,
                lr,
                grad_norm: window.4 / n,
                samples_per_s: n * (t.batch_size * t.update_freq) as f64 / secs,
                valid_loss: if valid_due {
                    valid_loss(&trainer, run)?
                } else {
                    None
                },
                elapsed_s: started.elapsed().as_secs_f64(),
            };
            writeln!(metrics_file, "{}", serde_json::to_string(&metrics)?)?;
            metrics_file.flush()?;
            on_log(&metrics);
            window = (0.0, 0.0, 0.0, 0.0, 0.0, 0, Instant::now());
        }
        if checkpoint_now {
            metrics_file.sync_all()?;
            let bytes = optim
                .into_bytes()
                .map_err(|e| anyhow::anyhow!("cannot serialise the optimiser state: {e:?}"))?;
            checkpoint::save(
                run.dir,
                &run.model_config,
                &trainer,
                &bytes,
                &state,
                t.keep_checkpoints,
                &t.license,
            )?;
        }
        if stopping {
            break;
        }
    }
    Ok(trainer)
}

/// On resume, drop the metric lines logged after the checkpoint (they will be logged again).
pub fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s <= step)
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    crate::output::write_atomic(path, out.as_bytes())
}
