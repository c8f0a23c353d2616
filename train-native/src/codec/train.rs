//! The codec training loop: encoder → EMA quantiser (straight-through) → decoder, loss
//! `λ_t·L1 + λ_f·mel + λ_w·commitment` (`mert_core::teachers::codec::loss`), Adam, the
//! pretraining schedule and clipping, per-step metrics, held-out scores, checkpoints.
//!
//! Every random draw of step `s` (crops, dead-code rows, k-means samples) comes from
//! `(seed, s)`, and the state between steps is the weights, the optimiser and the codebooks,
//! all in the checkpoint: a resumed run repeats an unbroken run's steps.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use mert_core::pretrain::{StepRng, learning_rate};
use mert_core::teachers::codec::ema::EmaRvq;
use mert_core::teachers::codec::loss::{MultiScaleMel, snr_db, time_l1};
use mert_core::teachers::codec::train::CodecModel;

use super::checkpoint::{self, Trainer};
use super::config::CodecRunConfig;
use crate::pretrain::checkpoint::RunState;
use crate::pretrain::data::{Batch, Corpus, Crop, draw_batch, prefetch};
use crate::pretrain::train::{adamw, clip_global_norm, truncate_metrics};

/// RNG streams of a step (crops use 100, as in pretraining).
const STREAM_QUANTIZER: u64 = 500;

/// Where a run is and what it trains.
pub struct Run<'a> {
    pub dir: &'a Path,
    pub config: &'a CodecRunConfig,
    /// The autodiff device the model trains on.
    pub device: Device,
    pub train: Arc<Corpus>,
    pub valid: Option<Arc<Corpus>>,
    pub crop: Crop,
    /// Stop (with a checkpoint) after this many steps, as an interrupted run would.
    pub stop_at: Option<u64>,
}

/// One line of `metrics.jsonl`. Step 0 holds only the untrained codec's held-out scores.
#[derive(Debug, Default, serde::Serialize)]
pub struct Metrics {
    pub step: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_mel: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_commit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Training crops per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_per_s: Option<f64>,
    /// Seconds of training audio per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_x_realtime: Option<f64>,
    /// Distinct codes of the first codebook in the last batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codes_used: Option<usize>,
    /// The encoder output on the last batch: per-dimension standard deviation over its frames
    /// (mean over dimensions), and the norm of its mean vector. A latent whose spread is tiny
    /// next to its mean barely depends on the input, and its codebooks collapse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latent_std: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latent_mean_norm: Option<f64>,
    /// Dead codes replaced over the logging window (all codebooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codes_replaced: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_snr_db: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_mel_distance: Option<f64>,
    /// Distinct first-codebook codes over the held-out crops: the collapse check (a codec
    /// whose codes carry the music uses many).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_codes_used: Option<usize>,
    /// Perplexity (exp of the entropy) of the first codebook's codes on the held-out crops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_code_perplexity: Option<f64>,
    pub elapsed_s: f64,
}

pub fn optimizer(config: &CodecRunConfig) -> ModuleOptimizer {
    let t = &config.train;
    adamw(t.adam_betas, t.adam_eps, t.weight_decay)
}

/// `[B, L]` crops on `device`.
fn audio_tensor(batch: &Batch, device: &Device) -> Tensor<2> {
    let b = batch.audio.len();
    let len = batch.audio.first().map_or(0, Vec::len);
    let flat: Vec<f32> = batch.audio.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [b, len]), device)
}

/// Encoder output `[B, D, T]` as host rows `[B·T, D]` (detached).
fn rows(emb: &Tensor<3>) -> Result<Vec<f32>> {
    let [b, d, t] = emb.dims();
    emb.clone()
        .detach()
        .swap_dims(1, 2)
        .reshape([b * t, d])
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read the encoder output: {e:?}"))
}

/// Host rows `[B·T, D]` back to `[B, D, T]`.
fn from_rows(rows: Vec<f32>, [b, d, t]: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::<2>::from_data(TensorData::new(rows, [b * t, d]), device)
        .reshape([b, t, d])
        .swap_dims(1, 2)
}

/// The loss terms of one step (host values) and the objective on the graph.
struct StepLoss {
    objective: Tensor<1>,
    time: f64,
    mel: f64,
    commit: f64,
    used: usize,
    replaced: usize,
    /// (per-dimension std, norm of the mean) of the encoder output ([`latent_spread`]).
    latent: (f64, f64),
}

/// Mean over dimensions of the per-dimension std of host rows `[N, dim]`, and the norm of
/// their mean vector.
fn latent_spread(rows: &[f32], dim: usize) -> (f64, f64) {
    let n = (rows.len() / dim).max(1) as f64;
    let mut mean = vec![0f64; dim];
    for row in rows.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64 / n;
        }
    }
    let mut var = vec![0f64; dim];
    for row in rows.chunks_exact(dim) {
        for ((s, m), &v) in var.iter_mut().zip(&mean).zip(row) {
            *s += (v as f64 - m).powi(2) / n;
        }
    }
    let std = var.iter().map(|v| v.sqrt()).sum::<f64>() / dim as f64;
    (std, mean.iter().map(|m| m * m).sum::<f64>().sqrt())
}

fn scalar(t: Tensor<1>) -> f64 {
    t.detach().into_scalar::<f32>() as f64
}

/// Forward one batch, updating the codebooks (EMA) on the way.
fn step_loss(
    trainer: &mut Trainer,
    run: &Run,
    mel: &MultiScaleMel,
    batch: &Batch,
    step: u64,
) -> Result<StepLoss> {
    let c = run.config;
    let l = &c.loss;
    let x = audio_tensor(batch, &run.device);
    let [b, len] = x.dims();
    let emb = trainer.model.encode(x.clone().reshape([b, 1, len]));
    let host_rows = rows(&emb)?;
    let latent = latent_spread(&host_rows, c.codec.dimension);
    if step < c.train.quantizer_warmup_steps {
        // warm-up: a plain autoencoder, the codebooks untouched
        let y = trainer.model.decode(emb).reshape([b, len]);
        let time = time_l1(x.clone(), y.clone());
        let (mel_loss, _) = mel.compare(x, y);
        let objective =
            time.clone().mul_scalar(l.time_weight) + mel_loss.clone().mul_scalar(l.mel_weight);
        return Ok(StepLoss {
            objective,
            time: scalar(time),
            mel: scalar(mel_loss),
            commit: 0.0,
            used: 0,
            replaced: 0,
            latent,
        });
    }
    let dims = emb.dims();
    let mut rng = StepRng::for_step(c.train.seed, step, STREAM_QUANTIZER);
    let q = trainer.rvq.train_step(&host_rows, &mut rng, &run.device)?;
    let quantized = from_rows(q.quantized, dims, &run.device);
    let first = from_rows(q.first, dims, &run.device);
    // straight-through: the decoder sees the codes, the encoder gets the decoder's gradient
    let st = emb.clone() + (quantized - emb.clone().detach());
    // encodec's commitment: only the first codebook's term has a gradient (module docs)
    let commit = (emb - first)
        .powi_scalar(2)
        .mean()
        .div_scalar(c.codec.n_q as f64);
    let y = trainer.model.decode(st).reshape([b, len]);
    let time = time_l1(x.clone(), y.clone());
    let (mel_loss, _) = mel.compare(x, y);
    let objective = time.clone().mul_scalar(l.time_weight)
        + mel_loss.clone().mul_scalar(l.mel_weight)
        + commit.mul_scalar(l.commitment_weight);
    Ok(StepLoss {
        objective,
        time: scalar(time),
        mel: scalar(mel_loss),
        commit: q.commitment,
        used: q.used_first,
        replaced: q.replaced,
        latent,
    })
}

/// The fixed held-out crops: crop `i` from `(seed, u64::MAX - i)`, the same at every step.
fn valid_batches(run: &Run) -> Result<Vec<Batch>> {
    let Some(corpus) = &run.valid else {
        return Ok(Vec::new());
    };
    let t = &run.config.train;
    let mut crops: Vec<Batch> = (0..t.valid_crops)
        .map(|i| {
            let mut rng = StepRng::for_step(t.seed, u64::MAX - i as u64, 100);
            draw_batch(corpus, run.crop, 1, &mut rng)
        })
        .collect::<Result<_>>()?;
    // grouped into batches of `batch_size` crops
    let mut out = Vec::new();
    while !crops.is_empty() {
        let rest = crops.split_off(crops.len().min(t.batch_size));
        let mut group = crops;
        let mut first = group.remove(0);
        for other in group {
            first.audio.extend(other.audio);
        }
        out.push(first);
        crops = rest;
    }
    Ok(out)
}

/// Held-out scores of a codec with `rvq`'s codebooks as they are (no update, no graph).
#[derive(Debug, Clone, Copy)]
pub struct Scores {
    /// SNR in dB over all held-out audio.
    pub snr_db: f64,
    /// Mean log-mel L1 distance.
    pub mel_distance: f64,
    /// Distinct first-codebook codes.
    pub codes_used: usize,
    /// exp(entropy) of the first codebook's code histogram.
    pub code_perplexity: f64,
}

/// exp(entropy) of the histogram of `codes` (natural log): 1 for a single code, K for K
/// codes used equally.
pub fn perplexity(codes: impl IntoIterator<Item = i64>) -> (usize, f64) {
    let mut counts = std::collections::HashMap::new();
    let mut total = 0f64;
    for c in codes {
        *counts.entry(c).or_insert(0f64) += 1.0;
        total += 1.0;
    }
    let entropy: f64 = counts
        .values()
        .map(|&n| {
            let p = n / total;
            -p * p.ln()
        })
        .sum();
    (counts.len(), entropy.exp())
}

/// Held-out reconstruction and code usage with `rvq` (None with no held-out audio or
/// codebooks not yet initialised, as in the quantiser warm-up).
pub fn evaluate(
    trainer: &Trainer,
    rvq: &EmaRvq,
    run: &Run,
    batches: &[Batch],
) -> Result<Option<Scores>> {
    if batches.is_empty() || !rvq.books.iter().all(|b| b.inited) {
        return Ok(None);
    }
    let n_q = rvq.books.len();
    let mut first_codes = Vec::new();
    let device = run.device.clone().without_autodiff();
    let model: CodecModel = trainer.model.valid();
    let mel = MultiScaleMel::new(&run.config.loss, run.config.codec.sample_rate, &device)?;
    let (mut reference, mut output) = (Vec::new(), Vec::new());
    let (mut distance, mut weight) = (0f64, 0f64);
    for batch in batches {
        let x = audio_tensor(batch, &device);
        let [b, len] = x.dims();
        let emb = model.encode(x.clone().reshape([b, 1, len]));
        let dims = emb.dims();
        let (quantized, codes) = rvq.quantize(&rows(&emb)?, &device)?;
        first_codes.extend(codes.iter().step_by(n_q).copied());
        let y = model
            .decode(from_rows(quantized, dims, &device))
            .reshape([b, len]);
        let (_, l1) = mel.compare(x, y.clone());
        distance += scalar(l1) * b as f64;
        weight += b as f64;
        let y = y
            .try_into_vec_as::<f32>()
            .map_err(|e| anyhow::anyhow!("cannot read the reconstruction: {e:?}"))?;
        reference.extend(batch.audio.iter().flatten().copied());
        output.extend(y);
    }
    let (codes_used, code_perplexity) = perplexity(first_codes);
    // one SNR over all held-out audio
    Ok(Some(Scores {
        snr_db: snr_db(&reference, &output),
        mel_distance: distance / weight,
        codes_used,
        code_perplexity,
    }))
}

/// Train from `trainer` at `state.step` to `max_steps`.
pub fn train(
    run: &Run,
    mut trainer: Trainer,
    mut optim: ModuleOptimizer,
    mut state: RunState,
    mut on_log: impl FnMut(&Metrics),
) -> Result<Trainer> {
    let c = run.config;
    let t = &c.train;
    let mel = MultiScaleMel::new(&c.loss, c.codec.sample_rate, &run.device)?;
    let held_out = valid_batches(run)?;
    let metrics_path = run.dir.join("metrics.jsonl");
    truncate_metrics(&metrics_path, state.step)?;
    let mut metrics_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("{}", metrics_path.display()))?;
    let started = Instant::now();
    let mut log = |m: &Metrics, file: &mut std::fs::File| -> Result<()> {
        writeln!(file, "{}", serde_json::to_string(m)?)?;
        file.flush()?;
        on_log(m);
        Ok(())
    };
    if state.step == 0 {
        // data-dependent init and k-means codebooks on the first batch, then the untrained
        // codec's scores
        let mut rng = StepRng::for_step(t.seed, 0, 100);
        let batch = draw_batch(&run.train, run.crop, t.batch_size, &mut rng)?;
        let x = audio_tensor(&batch, &run.device);
        let [b, len] = x.dims();
        let x = x.reshape([b, 1, len]);
        if t.data_init {
            trainer.model = trainer.model.data_init(x.clone())?;
        }
        let emb = trainer.model.encode(x);
        let mut rng = StepRng::for_step(t.seed, 0, STREAM_QUANTIZER + 1);
        // with a quantiser warm-up the training codebooks wait for it; the baseline is scored
        // with a copy initialised now
        let mut baseline = trainer.rvq.clone();
        baseline.initialize(&rows(&emb)?, &mut rng, &run.device)?;
        if t.quantizer_warmup_steps == 0 {
            trainer.rvq = baseline.clone();
        }
        if let Some(s) = evaluate(&trainer, &baseline, run, &held_out)? {
            let m = Metrics {
                valid_snr_db: Some(s.snr_db),
                valid_mel_distance: Some(s.mel_distance),
                valid_codes_used: Some(s.codes_used),
                valid_code_perplexity: Some(s.code_perplexity),
                elapsed_s: started.elapsed().as_secs_f64(),
                ..Metrics::default()
            };
            log(&m, &mut metrics_file)?;
        }
    }
    let batches = prefetch(
        run.train.clone(),
        run.crop,
        t.batch_size,
        1,
        t.seed,
        state.step,
        t.max_steps,
    );
    #[derive(Default)]
    struct Window {
        loss: f64,
        time: f64,
        mel: f64,
        commit: f64,
        grad: f64,
        replaced: usize,
        steps: usize,
    }
    let mut window = Window::default();
    let mut window_start = Instant::now();
    while state.step < t.max_steps {
        let step = state.step;
        let micro = batches
            .recv()
            .context("the data loader stopped")?
            .context("reading a training batch")?;
        let batch = micro.first().context("the data loader sent no batch")?;
        let terms = step_loss(&mut trainer, run, &mel, batch, step)?;
        let l = &c.loss;
        let loss = l.time_weight * terms.time
            + l.mel_weight * terms.mel
            + l.commitment_weight * terms.commit;
        if !loss.is_finite() {
            bail!(
                "step {}: the loss is not finite ({loss}); lower [train] lr or set clip_norm",
                step + 1
            );
        }
        let mut grads = GradientsParams::from_grads(terms.objective.backward(), &trainer.model);
        let grad_norm = clip_global_norm(&trainer.model, &mut grads, t.clip_norm);
        let lr = learning_rate(step, t.lr, t.warmup_steps, t.max_steps);
        trainer.model = optim.step(lr, trainer.model, grads);
        state.step += 1;

        window.loss += loss;
        window.time += terms.time;
        window.mel += terms.mel;
        window.commit += terms.commit;
        window.grad += grad_norm;
        window.replaced += terms.replaced;
        window.steps += 1;
        let last = state.step == t.max_steps;
        let stopping = run.stop_at == Some(state.step);
        let checkpoint_now = state.step.is_multiple_of(t.checkpoint_every) || last || stopping;
        if state.step.is_multiple_of(t.log_every) || last || stopping {
            let n = window.steps as f64;
            let secs = window_start.elapsed().as_secs_f64().max(1e-9);
            let valid_due = if t.valid_every == 0 {
                checkpoint_now
            } else {
                state.step.is_multiple_of(t.valid_every) || last
            };
            let scores = if valid_due {
                evaluate(&trainer, &trainer.rvq, run, &held_out)?
            } else {
                None
            };
            let crops = n * t.batch_size as f64;
            let m = Metrics {
                step: state.step,
                loss: Some(window.loss / n),
                loss_time: Some(window.time / n),
                loss_mel: Some(window.mel / n),
                loss_commit: Some(window.commit / n),
                lr: Some(lr),
                grad_norm: Some(window.grad / n),
                samples_per_s: Some(crops / secs),
                audio_x_realtime: Some(
                    crops * run.crop.samples as f64 / c.codec.sample_rate as f64 / secs,
                ),
                codes_used: Some(terms.used),
                latent_std: Some(terms.latent.0),
                latent_mean_norm: Some(terms.latent.1),
                codes_replaced: Some(window.replaced),
                valid_snr_db: scores.map(|s| s.snr_db),
                valid_mel_distance: scores.map(|s| s.mel_distance),
                valid_codes_used: scores.map(|s| s.codes_used),
                valid_code_perplexity: scores.map(|s| s.code_perplexity),
                elapsed_s: started.elapsed().as_secs_f64(),
            };
            log(&m, &mut metrics_file)?;
            window = Window::default();
            window_start = Instant::now();
        }
        if checkpoint_now {
            metrics_file.sync_all()?;
            let bytes = optim
                .into_bytes()
                .map_err(|e| anyhow::anyhow!("cannot serialise the optimiser state: {e:?}"))?;
            checkpoint::save(run.dir, c, &trainer, &bytes, &state)?;
        }
        if stopping {
            break;
        }
    }
    Ok(trainer)
}
