//! One transformer layer, in both MERT placements of LayerNorm:
//! post-LN (`HubertEncoderLayer`, MERT-v1-95M) and pre-LN (`HubertEncoderLayerStableLayerNorm`,
//! MERT-v1-330M). Inference only: dropout is the identity.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Bool, Device, Tensor};

use super::attention::Attention;
use super::config::MertConfig;

/// `output_dense(gelu(intermediate_dense(x)))`
#[derive(Module, Debug)]
pub struct FeedForward {
    pub intermediate_dense: Linear,
    pub output_dense: Linear,
}

impl FeedForward {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.output_dense
            .forward(gelu(self.intermediate_dense.forward(x)))
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
                intermediate_dense: LinearConfig::new(d, config.intermediate_size).init(device),
                output_dense: LinearConfig::new(config.intermediate_size, d).init(device),
            },
            final_layer_norm: ln(),
            pre_ln: config.do_stable_layer_norm,
        }
    }

    /// `[batch, frames, hidden]` -> `[batch, frames, hidden]`
    pub fn forward(&self, h: Tensor<3>, key_mask: Option<&Tensor<2, Bool>>) -> Tensor<3> {
        if self.pre_ln {
            let h = h.clone() + self.attention.forward(self.layer_norm.forward(h), key_mask);
            h.clone() + self.feed_forward.forward(self.final_layer_norm.forward(h))
        } else {
            let h = self
                .layer_norm
                .forward(h.clone() + self.attention.forward(h, key_mask));
            self.final_layer_norm
                .forward(h.clone() + self.feed_forward.forward(h))
        }
    }
}
