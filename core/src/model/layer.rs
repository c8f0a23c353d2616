//! One transformer layer, in both MERT placements of LayerNorm:
//! post-LN (`HubertEncoderLayer`, MERT-v1-95M) and pre-LN (`HubertEncoderLayerStableLayerNorm`,
//! MERT-v1-330M). Dropout only when training (`forward_with` and a [`Regularize`]).

use super::norm::NormF32;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Bool, Device, Tensor};

use super::activation::gelu;
use super::attention::Attention;
use super::config::MertConfig;
use super::dense::Dense;
use super::regularize::{Regularize, maybe_dropout};

/// `output_dense(gelu(intermediate_dense(x)))`
#[derive(Module, Debug)]
pub struct FeedForward {
    pub intermediate_dense: Dense,
    pub output_dense: Dense,
}

impl FeedForward {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_with(x, None)
    }

    /// With dropout after the activation and on the output when training.
    pub fn forward_with(&self, x: Tensor<3>, reg: Option<&Regularize>) -> Tensor<3> {
        let h = maybe_dropout(gelu(self.intermediate_dense.forward(x)), reg, |r| {
            r.activation
        });
        maybe_dropout(self.output_dense.forward(h), reg, |r| r.hidden)
    }
}

#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub attention: Attention,
    pub layer_norm: LayerNorm,
    pub feed_forward: FeedForward,
    pub final_layer_norm: LayerNorm,
    pub pre_ln: bool,
}

impl EncoderLayer {
    pub fn init(config: &MertConfig, device: &Device) -> Self {
        let d = config.hidden_size;
        let ln = || {
            LayerNormConfig::new(d)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        Self {
            attention: Attention::init(config, device),
            layer_norm: ln(),
            feed_forward: FeedForward {
                intermediate_dense: Dense::new(d, config.intermediate_size, device),
                output_dense: Dense::new(config.intermediate_size, d, device),
            },
            final_layer_norm: ln(),
            pre_ln: config.do_stable_layer_norm,
        }
    }

    /// `[batch, frames, hidden]` -> `[batch, frames, hidden]`
    pub fn forward(&self, h: Tensor<3>, key_mask: Option<&Tensor<2, Bool>>) -> Tensor<3> {
        self.forward_with(h, key_mask, None)
    }

    /// `forward`, with the reference's dropouts when training (`reg`).
    pub fn forward_with(
        &self,
        h: Tensor<3>,
        key_mask: Option<&Tensor<2, Bool>>,
        reg: Option<&Regularize>,
    ) -> Tensor<3> {
        let attend = |x: Tensor<3>| {
            let a = self.attention.forward_with(x, key_mask, reg);
            maybe_dropout(a, reg, |r| r.hidden)
        };
        if self.pre_ln {
            let h = h.clone() + attend(self.layer_norm.forward_f32(h));
            h.clone()
                + self
                    .feed_forward
                    .forward_with(self.final_layer_norm.forward_f32(h), reg)
        } else {
            let h = self.layer_norm.forward_f32(h.clone() + attend(h));
            self.final_layer_norm
                .forward_f32(h.clone() + self.feed_forward.forward_with(h, reg))
        }
    }
}
