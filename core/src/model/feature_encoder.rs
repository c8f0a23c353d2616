//! The convolutional feature encoder and the feature projection: raw audio to frame features.
//! Mirrors `transformers` `HubertFeatureEncoder` / `HubertFeatureProjection`
//! (models/hubert/modeling_hubert.py); field names follow the checkpoint keys
//! `feature_extractor.conv_layers.{i}.conv` and `feature_projection.{layer_norm,projection}`.

use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use super::config::{FeatExtractNorm, MertConfig};

/// One conv block: conv, optional norm, GELU.
///
/// The checkpoint calls both norms `layer_norm`; burn needs two types, so the group norm lives
/// in `group_norm` and the loader maps `conv_layers.0.layer_norm.*` onto it in group mode.
#[derive(Module, Debug)]
pub struct ConvLayer {
    pub conv: Conv1d,
    /// `feat_extract_norm = "group"`: one group per channel, conv 0 only (per-channel stats over time).
    pub group_norm: Option<GroupNorm>,
    /// `feat_extract_norm = "layer"`: LayerNorm over channels after every conv.
    pub layer_norm: Option<LayerNorm>,
}

impl ConvLayer {
    /// `[batch, in_channels, samples]` -> `[batch, out_channels, frames]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mut x = self.conv.forward(x);
        if let Some(norm) = &self.group_norm {
            x = norm.forward(x);
        }
        if let Some(norm) = &self.layer_norm {
            // LayerNorm normalises the last axis: [batch, frames, channels] and back.
            x = norm.forward(x.swap_dims(1, 2)).swap_dims(1, 2);
        }
        gelu(x)
    }
}

/// The conv stack: 7 strided convs turning samples into frames (hop 320, receptive field 400).
#[derive(Module, Debug)]
pub struct FeatureEncoder {
    pub conv_layers: Vec<ConvLayer>,
}

impl FeatureEncoder {
    pub fn init(config: &MertConfig, device: &Device) -> Self {
        let mut conv_layers = Vec::with_capacity(config.conv_dim.len());
        let mut channels_in = 1;
        for (i, ((&out, &kernel), &stride)) in config
            .conv_dim
            .iter()
            .zip(&config.conv_kernel)
            .zip(&config.conv_stride)
            .enumerate()
        {
            let conv = Conv1dConfig::new(channels_in, out, kernel)
                .with_stride(stride)
                .with_bias(config.conv_bias)
                .init(device);
            let (group_norm, layer_norm) = match config.feat_extract_norm {
                FeatExtractNorm::Group if i == 0 => (
                    Some(
                        GroupNormConfig::new(out, out)
                            .with_epsilon(config.layer_norm_eps)
                            .init(device),
                    ),
                    None,
                ),
                FeatExtractNorm::Group => (None, None),
                FeatExtractNorm::Layer => (
                    None,
                    Some(
                        LayerNormConfig::new(out)
                            .with_epsilon(config.layer_norm_eps)
                            .init(device),
                    ),
                ),
            };
            conv_layers.push(ConvLayer {
                conv,
                group_norm,
                layer_norm,
            });
            channels_in = out;
        }
        Self { conv_layers }
    }

    /// `[batch, samples]` -> `[batch, channels, frames]`
    pub fn forward(&self, audio: Tensor<2>) -> Tensor<3> {
        // [batch, 1, samples]
        let mut x = audio.unsqueeze_dim(1);
        for layer in &self.conv_layers {
            x = layer.forward(x);
        }
        x
    }
}

/// LayerNorm over conv channels, then a linear map to the model width.
#[derive(Module, Debug)]
pub struct FeatureProjection {
    pub layer_norm: Option<LayerNorm>,
    pub projection: Linear,
}

impl FeatureProjection {
    pub fn init(config: &MertConfig, device: &Device) -> Self {
        let channels = config.conv_out_dim();
        Self {
            layer_norm: config.feat_proj_layer_norm.then(|| {
                LayerNormConfig::new(channels)
                    .with_epsilon(config.layer_norm_eps)
                    .init(device)
            }),
            projection: LinearConfig::new(channels, config.hidden_size).init(device),
        }
    }

    /// `[batch, frames, channels]` -> `[batch, frames, hidden]`
    pub fn forward(&self, features: Tensor<3>) -> Tensor<3> {
        let x = match &self.layer_norm {
            Some(norm) => norm.forward(features),
            None => features,
        };
        self.projection.forward(x)
    }
}
