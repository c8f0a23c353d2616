//! The tagging head on frozen MERT features (MARBLE's probe, spec §5.2): per hidden state,
//! the time-mean of the frames; then either a learned softmax-weighted sum over the
//! transformer layers' states (index 0, the input to the transformer, excluded), one chosen
//! state, or every state side by side; then Linear(D -> 512), ReLU, Dropout(0.2),
//! Linear(512 -> tags). Sigmoid outputs.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{MertError, Result};

/// Which hidden states feed the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerChoice {
    /// Learned weights over hidden states `1..=L`.
    All,
    /// Every hidden state `0..=L`, concatenated (`states * dim` inputs): a small backbone
    /// keeps different things in different layers, which a weighted sum mixes away.
    Concat,
    /// One hidden state.
    #[serde(untagged)]
    Index(usize),
}

/// The head's description, stored as `mert.head` metadata in the kit's model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    pub tags: Vec<String>,
    /// Pooling over time (only `mean`).
    #[serde(default = "mean")]
    pub pooling: String,
    pub layer: LayerChoice,
    /// Hidden states the backbone gives (`layers + 1`) and their width.
    pub states: usize,
    pub dim: usize,
    #[serde(default = "hidden")]
    pub hidden: usize,
    /// Input features: `mert` (hidden states) or `cqt` (the mean CQT, a baseline).
    #[serde(default = "mert")]
    pub features: String,
    /// How the audio was cut and prepared for the features the head was trained on; tagging
    /// prepares audio the same way.
    #[serde(default = "window")]
    pub window_seconds: f64,
    #[serde(default = "yes")]
    pub normalize: bool,
    /// With `layer: all`, the learned weight of each transformer layer (softmaxed), written
    /// for people reading the file; the head computes from its `head.layer_weights` tensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_weights: Option<Vec<f32>>,
}

fn window() -> f64 {
    5.0
}
fn yes() -> bool {
    true
}

fn mean() -> String {
    "mean".into()
}
fn hidden() -> usize {
    512
}
fn mert() -> String {
    "mert".into()
}

impl HeadConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: String| {
            Err(MertError::Config {
                field: format!("mert.head.{field}"),
                message,
            })
        };
        if self.tags.is_empty() {
            return bad("tags", "expected at least one tag".into());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(t) = self.tags.iter().find(|t| !seen.insert(t.as_str())) {
            return bad(
                "tags",
                format!("`{t}` appears twice; tag names must be unique"),
            );
        }
        if !(self.window_seconds.is_finite() && self.window_seconds >= 0.0) {
            return bad(
                "window_seconds",
                format!(
                    "{}: expected a non-negative number of seconds (0 = whole clip)",
                    self.window_seconds
                ),
            );
        }
        if self.pooling != "mean" {
            return bad(
                "pooling",
                format!("`{}`: only `mean` is supported", self.pooling),
            );
        }
        if self.states == 0 || self.dim == 0 || self.hidden == 0 {
            return bad("states", "states, dim and hidden must be positive".into());
        }
        if let LayerChoice::Index(i) = self.layer
            && i >= self.states
        {
            return bad(
                "layer",
                format!("{i} but there are {} hidden states", self.states),
            );
        }
        if self.layer == LayerChoice::Concat && self.states.checked_mul(self.dim).is_none() {
            return bad("states", "states * dim overflows".into());
        }
        if self.layer == LayerChoice::All && self.states < 2 {
            return bad("layer", "`all` needs at least one transformer layer".into());
        }
        Ok(())
    }

    /// Width of the head's input (`fc1`'s input features).
    pub fn input_width(&self) -> usize {
        match self.layer {
            LayerChoice::Concat => self.states.saturating_mul(self.dim),
            _ => self.dim,
        }
    }
}

#[derive(Module, Debug)]
pub struct TagHead {
    /// Per-feature mean and standard deviation of the training features (`[states, dim]`):
    /// inputs are standardised first, so features of any scale train alike. Not trained.
    pub feat_mean: Param<Tensor<2>>,
    pub feat_std: Param<Tensor<2>>,
    /// Logits of the layer weights (`[states - 1]`; unused for a chosen layer).
    pub layer_weights: Param<Tensor<1>>,
    pub fc1: Linear,
    pub fc2: Linear,
}

impl TagHead {
    pub fn init(config: &HeadConfig, device: &Device) -> Self {
        let n = config.states.saturating_sub(1).max(1);
        Self {
            feat_mean: Param::from_tensor(Tensor::zeros([config.states, config.dim], device)),
            feat_std: Param::from_tensor(Tensor::ones([config.states, config.dim], device)),
            layer_weights: Param::from_tensor(Tensor::zeros([n], device)),
            fc1: LinearConfig::new(config.input_width(), config.hidden).init(device),
            fc2: LinearConfig::new(config.hidden, config.tags.len()).init(device),
        }
    }

    /// `pooled`: `[batch, states, dim]` time-means -> `[batch, dim]` head input.
    fn aggregate(&self, config: &HeadConfig, pooled: Tensor<3>) -> Tensor<2> {
        let [batch, states, dim] = pooled.dims();
        let mean = self.feat_mean.val().detach().reshape([1, states, dim]);
        let std = self.feat_std.val().detach().reshape([1, states, dim]);
        let pooled = (pooled - mean) / std;
        match config.layer {
            LayerChoice::Index(i) => pooled.narrow(1, i, 1).reshape([batch, dim]),
            LayerChoice::Concat => pooled.reshape([batch, states * dim]),
            LayerChoice::All => {
                let w = softmax(self.layer_weights.val(), 0).reshape([1, states - 1, 1]);
                (pooled.narrow(1, 1, states - 1) * w)
                    .sum_dim(1)
                    .reshape([batch, dim])
            }
        }
    }

    /// Set the standardisation from training features `[n, states, dim]` (row-major).
    pub fn with_feature_stats(mut self, features: &[f32], n: usize, device: &Device) -> Self {
        let width = features.len() / n.max(1);
        let (mut mean, mut var) = (vec![0f64; width], vec![0f64; width]);
        for row in features.chunks_exact(width) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        for row in features.chunks_exact(width) {
            for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v as f64 - m).powi(2);
            }
        }
        let shape = self.feat_mean.val().dims();
        let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let std: Vec<f32> = var
            .iter()
            .map(|&s| ((s / n.max(1) as f64).sqrt() as f32).max(1e-6))
            .collect();
        let t =
            |v: Vec<f32>| Tensor::<2>::from_data(burn::tensor::TensorData::new(v, shape), device);
        self.feat_mean = Param::from_tensor(t(mean));
        self.feat_std = Param::from_tensor(t(std));
        self
    }

    /// Tag logits `[batch, tags]` (inference: no dropout).
    pub fn logits(&self, config: &HeadConfig, pooled: Tensor<3>) -> Tensor<2> {
        let x = relu(self.fc1.forward(self.aggregate(config, pooled)));
        self.fc2.forward(x)
    }

    /// Tag logits with dropout `p` on the hidden layer (training).
    pub fn logits_train(&self, config: &HeadConfig, pooled: Tensor<3>, p: f64) -> Tensor<2> {
        let x = relu(self.fc1.forward(self.aggregate(config, pooled)));
        let x = if p > 0.0 {
            let keep = Tensor::<2>::random(x.dims(), Distribution::Bernoulli(1.0 - p), &x.device());
            x * keep / (1.0 - p)
        } else {
            x
        };
        self.fc2.forward(x)
    }

    /// Tag probabilities `[batch, tags]`.
    pub fn probabilities(&self, config: &HeadConfig, pooled: Tensor<3>) -> Tensor<2> {
        sigmoid(self.logits(config, pooled))
    }
}

/// Binary cross-entropy with logits, mean over items and tags (numerically stable form).
pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    // max(x, 0) - x * y + log(1 + exp(-|x|))
    let relu_x = logits.clone().clamp_min(0.0);
    let log_term = (-logits.clone().abs()).exp().log1p();
    (relu_x - logits * targets + log_term).mean()
}
