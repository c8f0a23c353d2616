//! The transformer encoder: positional conv, layers, and the encoder LayerNorm, with the
//! reference's hidden-state conventions. Mirrors `HubertEncoder` (post-LN) and
//! `HubertEncoderStableLayerNorm` (pre-LN).

use super::norm::NormF32;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Bool, Device, Tensor};

use super::config::MertConfig;
use super::layer::EncoderLayer;
use super::pos_conv::PositionalConvEmbedding;
use super::regularize::{Regularize, maybe_dropout};

#[derive(Module, Debug)]
pub struct Encoder {
    pub pos_conv_embed: PositionalConvEmbedding,
    pub layer_norm: LayerNorm,
    pub layers: Vec<EncoderLayer>,
    pub pre_ln: bool,
}

impl Encoder {
    pub fn init(config: &MertConfig, device: &Device) -> Self {
        Self {
            pos_conv_embed: PositionalConvEmbedding::init(config, device),
            layer_norm: LayerNormConfig::new(config.hidden_size)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            layers: (0..config.num_hidden_layers)
                .map(|_| EncoderLayer::init(config, device))
                .collect(),
            pre_ln: config.do_stable_layer_norm,
        }
    }

    /// Returns the `layers + 1` hidden states, each `[batch, frames, hidden]`:
    /// - post-LN: `[0]` = `LN(h + posconv(h))`, `[i]` = output of layer `i`;
    /// - pre-LN: `[0]` = `h + posconv(h)` (not normalised), `[i < L]` = the raw residual stream
    ///   after layer `i`, `[L]` = `LN(output of layer L)`. Downstream probes use these as is.
    ///
    /// `pad_mask` (`[batch, frames]`, true = padding) zeroes padded frames before the positional
    /// conv and hides them as attention keys, as the reference does for padded batches.
    pub fn forward(&self, h: Tensor<3>, pad_mask: Option<&Tensor<2, Bool>>) -> Vec<Tensor<3>> {
        self.forward_with(h, pad_mask, None)
    }

    /// `forward`, with dropout and LayerDrop when training (`reg`): a dropped layer passes its
    /// input through, and its hidden state repeats the previous one.
    pub fn forward_with(
        &self,
        h: Tensor<3>,
        pad_mask: Option<&Tensor<2, Bool>>,
        reg: Option<&Regularize>,
    ) -> Vec<Tensor<3>> {
        self.states(h, pad_mask, reg, &|_| true)
            .into_iter()
            .flatten()
            .collect()
    }

    /// The hidden states listed in `wanted` (indices into [`Encoder::forward`]'s output, in
    /// that order), at inference. The others are dropped as soon as the next layer has run,
    /// so a long clip holds two or three `[frames, hidden]` tensors, not all thirteen.
    pub fn forward_selected(
        &self,
        h: Tensor<3>,
        pad_mask: Option<&Tensor<2, Bool>>,
        wanted: &[usize],
    ) -> Vec<Tensor<3>> {
        let states = self.states(h, pad_mask, None, &|i| wanted.contains(&i));
        wanted
            .iter()
            .filter_map(|&i| states.get(i).cloned().flatten())
            .collect()
    }

    /// Every hidden state for which `keep(index)` holds (`None` for the others).
    fn states(
        &self,
        h: Tensor<3>,
        pad_mask: Option<&Tensor<2, Bool>>,
        reg: Option<&Regularize>,
        keep: &dyn Fn(usize) -> bool,
    ) -> Vec<Option<Tensor<3>>> {
        let h = match pad_mask {
            Some(mask) => {
                let [b, t] = mask.dims();
                let d = h.dims()[2];
                h.mask_fill(mask.clone().reshape([b, t, 1]).expand([b, t, d]), 0.0)
            }
            None => h,
        };
        let mut h = h.clone() + self.pos_conv_embed.forward(h);
        if !self.pre_ln {
            h = self.layer_norm.forward_f32(h);
        }
        h = maybe_dropout(h, reg, |r| r.hidden);
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        for (i, layer) in self.layers.iter().enumerate() {
            states.push(keep(i).then(|| h.clone()));
            if reg.is_none_or(|r| r.keeps(i)) {
                h = layer.forward_with(h, pad_mask, reg);
            }
        }
        if self.pre_ln {
            h = self.layer_norm.forward_f32(h);
        }
        states.push(keep(self.layers.len()).then_some(h));
        states
    }
}
