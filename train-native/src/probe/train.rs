//! Training a tagging head on cached clip features: Adam, batches of 64, BCE, the learning
//! rate halved after 3 epochs without validation gain, early stop after 10 (MARBLE's recipe),
//! the best epoch's weights kept.

use anyhow::{Result, bail};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use mert_core::load::TensorMap;
use mert_core::load::weights::{export_module, load_module};
use mert_core::pretrain::StepRng;
use mert_core::probe::{HeadConfig, TagHead, TagMetrics, bce_with_logits, macro_metrics};

/// Features `[n, states, dim]` and 0/1 targets `[n, tags]`, on the host.
pub struct Split {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub n: usize,
}

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub seed: u64,
    pub dropout: f64,
    pub patience: usize,
    pub plateau_patience: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct Epoch {
    pub epoch: usize,
    pub train_loss: f64,
    pub valid_roc_auc: f64,
    pub valid_pr_auc: f64,
    pub lr: f64,
}

fn batch(
    split: &Split,
    rows: &[usize],
    config: &HeadConfig,
    device: &Device,
) -> (Tensor<3>, Tensor<2>) {
    let (s, d, t) = (config.states, config.dim, config.tags.len());
    let mut x = Vec::with_capacity(rows.len() * s * d);
    let mut y = Vec::with_capacity(rows.len() * t);
    for &i in rows {
        x.extend_from_slice(&split.x[i * s * d..(i + 1) * s * d]);
        y.extend_from_slice(&split.y[i * t..(i + 1) * t]);
    }
    (
        Tensor::from_data(TensorData::new(x, [rows.len(), s, d]), device),
        Tensor::from_data(TensorData::new(y, [rows.len(), t]), device),
    )
}

/// Sigmoid scores `[n, tags]` of `head` on a split.
pub fn scores(head: &TagHead, config: &HeadConfig, split: &Split, device: &Device) -> Vec<f32> {
    let mut out = Vec::with_capacity(split.n * config.tags.len());
    let all: Vec<usize> = (0..split.n).collect();
    for rows in all.chunks(256) {
        let (x, _) = batch(split, rows, config, device);
        let p = head.probabilities(config, x).detach();
        out.extend(p.into_data().try_into_vec::<f32>().unwrap_or_default());
    }
    out
}

pub fn evaluate(head: &TagHead, config: &HeadConfig, split: &Split, device: &Device) -> TagMetrics {
    let s = scores(head, config, split, device);
    let labels: Vec<bool> = split.y.iter().map(|&v| v > 0.5).collect();
    macro_metrics(&s, &labels, &config.tags)
}

/// Train and return the best head (by validation macro ROC-AUC) as host tensors.
pub fn train_head(
    config: &HeadConfig,
    train: &Split,
    valid: &Split,
    opts: &ProbeOptions,
    mut on_epoch: impl FnMut(&Epoch),
) -> Result<(TensorMap, Vec<Epoch>)> {
    let device = Device::flex().autodiff();
    device.seed(opts.seed);
    let mut head = TagHead::init(config, &device).with_feature_stats(&train.x, train.n, &device);
    let mut optim = AdamConfig::new().init();
    let mut lr = opts.lr;
    let (mut best, mut best_auc, mut since_best, mut since_gain) =
        (export_module(&head, "head")?, f64::NEG_INFINITY, 0, 0);
    let mut history = Vec::new();
    let mut plateau_best = f64::NEG_INFINITY;
    for epoch in 1..=opts.epochs {
        let mut rng = StepRng::for_step(opts.seed, epoch as u64, 1);
        let order = rng.choose(train.n, train.n);
        let (mut loss_sum, mut batches) = (0.0, 0);
        for rows in order.chunks(opts.batch_size.max(1)) {
            let (x, y) = batch(train, rows, config, &device);
            let loss = bce_with_logits(head.logits_train(config, x, opts.dropout), y);
            loss_sum += loss.clone().detach().into_scalar::<f32>() as f64;
            batches += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(lr, head, grads);
        }
        if !loss_sum.is_finite() {
            bail!(
                "the training loss is not finite at epoch {epoch} (diverged); expected a smaller --lr than {}",
                opts.lr
            );
        }
        let m = evaluate(&head, config, valid, &device);
        if m.defined == 0 {
            bail!(
                "--valid: no tag has both positive and negative clips, so the ROC-AUC that chooses the best epoch is undefined; expected each tag present in some clips and absent from others"
            );
        }
        let e = Epoch {
            epoch,
            train_loss: loss_sum / batches.max(1) as f64,
            valid_roc_auc: m.roc_auc,
            valid_pr_auc: m.pr_auc,
            lr,
        };
        on_epoch(&e);
        history.push(e);
        if m.roc_auc > best_auc {
            best_auc = m.roc_auc;
            best = export_module(&head, "head")?;
            since_best = 0;
        } else {
            since_best += 1;
        }
        if m.roc_auc > plateau_best {
            plateau_best = m.roc_auc;
            since_gain = 0;
        } else {
            since_gain += 1;
            if since_gain > opts.plateau_patience {
                lr *= 0.5;
                since_gain = 0;
            }
        }
        if since_best >= opts.patience {
            break;
        }
    }
    Ok((best, history))
}

/// A head on the plain device from host tensors.
pub fn head_from(config: &HeadConfig, tensors: TensorMap, device: &Device) -> Result<TagHead> {
    Ok(load_module(TagHead::init(config, device), tensors, device)?)
}
