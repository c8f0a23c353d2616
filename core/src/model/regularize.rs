//! Dropout and LayerDrop, for training only (the pretraining recipe, spec §4). Inference passes
//! none of this, so the model's inference path stays exactly the reference's eval mode.
//!
//! Dropout masks come from the device's random generator, which the training loop seeds from
//! `(seed, step)` before each step: a resumed run draws the same masks. LayerDrop decisions are
//! drawn by the caller from its own seeded generator, so they are plain booleans here.

use burn::tensor::{Distribution, Tensor};

use super::config::MertConfig;

/// Where and how much to drop in one training step.
#[derive(Debug, Clone, PartialEq)]
pub struct Regularize {
    /// After the attention block, the feed-forward output and the positional embedding sum.
    pub hidden: f64,
    /// On the attention probabilities.
    pub attention: f64,
    /// On the feed-forward activation.
    pub activation: f64,
    /// On the feature projection's output.
    pub feat_proj: f64,
    /// Per layer: `false` = the layer is skipped this step (LayerDrop).
    pub keep_layer: Vec<bool>,
}

impl Regularize {
    /// The config's dropout rates; `keep_layer` from the caller's LayerDrop draw.
    pub fn from_config(config: &MertConfig, keep_layer: Vec<bool>) -> Self {
        Self {
            hidden: config.hidden_dropout,
            attention: config.attention_dropout,
            activation: config.activation_dropout,
            feat_proj: config.feat_proj_dropout,
            keep_layer,
        }
    }

    /// Whether layer `i` runs this step.
    pub fn keeps(&self, i: usize) -> bool {
        self.keep_layer.get(i).copied().unwrap_or(true)
    }
}

/// Inverted dropout: zero each value with probability `p`, scale the rest by `1 / (1 - p)`.
pub fn dropout<const D: usize>(x: Tensor<D>, p: f64) -> Tensor<D> {
    if p <= 0.0 {
        return x;
    }
    if p >= 1.0 {
        return x.zeros_like();
    }
    let keep = x.random_like(Distribution::Bernoulli(1.0 - p));
    x * keep * (1.0 / (1.0 - p))
}

/// Apply `dropout` only when training with a non-zero rate.
pub fn maybe_dropout<const D: usize>(
    x: Tensor<D>,
    reg: Option<&Regularize>,
    pick: fn(&Regularize) -> f64,
) -> Tensor<D> {
    match reg {
        Some(r) => dropout(x, pick(r)),
        None => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    // That a seed fixes the masks is tested end to end by the resume test of `mert pretrain`
    // (tests/pretrain_cli.rs), in its own process: here other tests share the generator.
    #[test]
    fn dropout_keeps_the_expected_fraction_and_the_mean() {
        let device = Device::default();
        device.seed(7);
        let x = Tensor::<1>::ones([100_000], &device);
        let y: Vec<f32> = dropout(x, 0.1)
            .into_data()
            .try_into_vec()
            .unwrap_or_default();
        let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
        assert!((zeros - 0.1).abs() < 0.005, "dropped fraction {zeros}");
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
    }
}
