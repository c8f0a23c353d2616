//! The pretraining heads and loss (MERT §4.4-4.5): the learned mask embedding, per-codebook
//! cosine-logit predictions of the acoustic teacher's codes against learned label embeddings,
//! a linear regression of the CQT, and the conv-feature penalty.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Distribution, Int, Tensor};

/// Head shapes and loss weights (`[heads]` in the pretraining TOML). Defaults: MERT-v1-95M.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadsConfig {
    /// Codebooks of the acoustic teacher predicted (8 at 6 kbps).
    pub codebooks: usize,
    /// Entries per codebook (1024 for EnCodec).
    pub codebook_size: usize,
    /// Width of each codebook's projection and label embedding (64 for 95M, 128 for 330M).
    pub final_dim: usize,
    /// CQT bins regressed (336).
    pub cqt_bins: usize,
    /// Cosine-logit temperature (0.1).
    pub logit_temp: f64,
    /// Weight of the conv-feature penalty (10).
    pub features_pen_weight: f64,
    /// Weight of the CQT regression loss (1).
    pub cqt_weight: f64,
    /// Scales gradients flowing into the conv stack (0.1 for 95M, 1.0 for 330M).
    pub feature_grad_mult: f64,
}

impl Default for HeadsConfig {
    fn default() -> Self {
        Self {
            codebooks: 8,
            codebook_size: 1024,
            final_dim: 64,
            cqt_bins: 336,
            logit_temp: 0.1,
            features_pen_weight: 10.0,
            cqt_weight: 1.0,
            feature_grad_mult: 0.1,
        }
    }
}

#[derive(Module, Debug)]
pub struct PretrainHeads {
    /// Replaces the projected features of masked frames, `[hidden]`.
    pub mask_emb: Param<Tensor<1>>,
    /// Hidden state -> one `final_dim` vector per codebook.
    pub final_proj: Linear,
    /// Label embeddings of every codebook, `[codebooks * codebook_size, final_dim]`.
    pub label_embs: Param<Tensor<2>>,
    /// Hidden state -> CQT frame.
    pub cqt_head: Linear,
    pub codebooks: usize,
    pub codebook_size: usize,
    pub logit_temp: f64,
}

/// The loss of one batch, with its terms (scalars `[1]`, still on the autodiff graph).
#[derive(Debug, Clone)]
pub struct LossTerms {
    /// What is minimised: `codes + features_pen_weight * features_pen + cqt_weight * cqt`.
    pub total: Tensor<1>,
    /// Cross-entropy summed over codebooks, mean over masked frames (zero without codes).
    pub codes: Tensor<1>,
    /// Sum over codebooks and masked frames of the cross-entropy (the reference's logged sum).
    pub codes_sum: Tensor<1>,
    /// Mean squared error of the CQT head over masked frames and bins (zero without CQT).
    pub cqt: Tensor<1>,
    /// Mean of the squared conv features.
    pub features_pen: Tensor<1>,
    /// Masked frames in the batch.
    pub masked: usize,
}

impl PretrainHeads {
    pub fn init(config: &HeadsConfig, hidden: usize, device: &Device) -> Self {
        let uniform = Distribution::Uniform(0.0, 1.0);
        Self {
            mask_emb: Param::from_tensor(Tensor::random([hidden], uniform, device)),
            final_proj: LinearConfig::new(hidden, config.codebooks * config.final_dim).init(device),
            label_embs: Param::from_tensor(Tensor::random(
                [config.codebooks * config.codebook_size, config.final_dim],
                uniform,
                device,
            )),
            cqt_head: LinearConfig::new(hidden, config.cqt_bins).init(device),
            codebooks: config.codebooks,
            codebook_size: config.codebook_size,
            logit_temp: config.logit_temp,
        }
    }

    /// The loss at the masked frames `index` (flat `b * frames + t`).
    ///
    /// `conv_features`: `[batch, frames, channels]` conv output before the feature LayerNorm;
    /// `last`: `[batch, frames, hidden]` final encoder output; `codes`: `[masked, codebooks]`
    /// target indices; `cqt`: `[masked, bins]` target magnitudes (rows in `index` order).
    pub fn loss(
        &self,
        config: &HeadsConfig,
        conv_features: Tensor<3>,
        last: Tensor<3>,
        index: &[usize],
        codes: Option<Tensor<2, Int>>,
        cqt: Option<Tensor<2>>,
    ) -> LossTerms {
        let device = last.device();
        let [batch, frames, hidden] = last.dims();
        let masked = index.len();
        let features_pen = conv_features.powi_scalar(2).mean();
        let zero = Tensor::<1>::zeros([1], &device);
        if masked == 0 {
            let total = features_pen.clone() * config.features_pen_weight;
            return LossTerms {
                total,
                codes: zero.clone(),
                codes_sum: zero.clone(),
                cqt: zero,
                features_pen,
                masked,
            };
        }
        let idx: Vec<i64> = index.iter().map(|&i| i as i64).collect();
        let idx = Tensor::<1, Int>::from_data(idx.as_slice(), &device);
        let x = last.reshape([batch * frames, hidden]).select(0, idx);

        let (codes, codes_sum) = match codes {
            Some(targets) => {
                let sum = self.codes_ce_sum(x.clone(), targets);
                (sum.clone() / masked as f64, sum)
            }
            None => (zero.clone(), zero.clone()),
        };
        let cqt = match cqt {
            Some(target) => (self.cqt_head.forward(x) - target).powi_scalar(2).mean(),
            None => zero,
        };
        let total = codes.clone()
            + features_pen.clone() * config.features_pen_weight
            + cqt.clone() * config.cqt_weight;
        LossTerms {
            total,
            codes,
            codes_sum,
            cqt,
            features_pen,
            masked,
        }
    }

    /// Sum over codebooks and rows of `-log softmax(cos(p_k, E_k) / temp)[target]`.
    /// `x`: `[n, hidden]`; `targets`: `[n, codebooks]`.
    pub fn codes_ce_sum(&self, x: Tensor<2>, targets: Tensor<2, Int>) -> Tensor<1> {
        let n = x.dims()[0];
        let (k, v) = (self.codebooks, self.codebook_size);
        let proj = self.final_proj.forward(x);
        let f = proj.dims()[1] / k;
        // [k, n, f] predictions and [k, v, f] label embeddings, both unit length.
        let p = unit_rows(proj.reshape([n, k, f]).swap_dims(0, 1));
        let e = unit_rows(self.label_embs.val().reshape([k, v, f]));
        let logits = p.matmul(e.swap_dims(1, 2)) / self.logit_temp;
        let log_probs = log_softmax(logits, 2);
        let targets = targets.swap_dims(0, 1).reshape([k, n, 1]);
        -log_probs.gather(2, targets).sum()
    }
}

/// Each vector along the last axis divided by its length (clamped at 1e-8, as torch's cosine
/// similarity does).
fn unit_rows(x: Tensor<3>) -> Tensor<3> {
    let norm = x.clone().powi_scalar(2).sum_dim(2).sqrt().clamp_min(1e-8);
    x / norm
}
