//! Multi-head self-attention, as `HubertAttention` (eager): biased q/k/v/out projections,
//! `softmax(q k^T / sqrt(d) + mask) v`. On burn's CPU backend, for inference without padding,
//! the kit's query-blocked kernel runs ([`super::attention_cpu`]); elsewhere burn's fused
//! attention op, which scales the scores by `1/sqrt(head_dim)` (the reference scales `q`
//! first: equal up to rounding).
//!
//! MERT-v1-330M's `attention_relax` (scores divided by a constant, their row maximum subtracted,
//! multiplied back) keeps fp16 scores from overflowing; it leaves the softmax unchanged, and
//! the fused op (online softmax) already subtracts each row's maximum, so no option is needed.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor};

use super::config::MertConfig;
use super::dense::Dense;
use super::regularize::{Regularize, dropout};

#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Dense,
    pub k_proj: Dense,
    pub v_proj: Dense,
    pub out_proj: Dense,
    pub num_heads: usize,
}

impl Attention {
    pub fn init(config: &MertConfig, device: &Device) -> Self {
        let d = config.hidden_size;
        let linear = || Dense::new(d, d, device);
        Self {
            q_proj: linear(),
            k_proj: linear(),
            v_proj: linear(),
            out_proj: linear(),
            num_heads: config.num_attention_heads,
        }
    }

    /// `x`: `[batch, frames, hidden]`; `key_mask`: `[batch, frames]`, true where a frame is
    /// padding and must not be attended to.
    pub fn forward(&self, x: Tensor<3>, key_mask: Option<&Tensor<2, Bool>>) -> Tensor<3> {
        self.forward_with(x, key_mask, None)
    }

    /// `forward`, with dropout on the attention probabilities when training (`reg`). Dropout
    /// needs the probabilities, so that case takes the unfused path.
    pub fn forward_with(
        &self,
        x: Tensor<3>,
        key_mask: Option<&Tensor<2, Bool>>,
        reg: Option<&Regularize>,
    ) -> Tensor<3> {
        let [batch, frames, hidden] = x.dims();
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        let (q, k, v) = (
            self.q_proj.forward(x.clone()),
            self.k_proj.forward(x.clone()),
            self.v_proj.forward(x),
        );
        #[cfg(feature = "flex")]
        if key_mask.is_none()
            && reg.is_none_or(|r| r.attention <= 0.0)
            && super::activation::on_cpu_inference(&q)
        {
            let out = super::attention_cpu::attention(q, k, v, heads);
            return self.out_proj.forward(out);
        }
        // [batch, frames, hidden] -> [batch, heads, frames, head_dim]
        let split = |t: Tensor<3>| t.reshape([batch, frames, heads, head_dim]).swap_dims(1, 2);
        let (q, k, v) = (split(q), split(k), split(v));
        // [batch, 1, 1, frames] broadcast over heads and queries -> [batch, heads, frames, frames]
        let mask = key_mask.map(|m| {
            m.clone()
                .reshape([batch, 1, 1, frames])
                .expand([batch, heads, frames, frames])
        });
        let out = match reg.map(|r| r.attention).filter(|&p| p > 0.0) {
            Some(p) => {
                let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (head_dim as f64).sqrt());
                let scores = match mask {
                    Some(m) => scores.mask_fill(m, f32::MIN),
                    None => scores,
                };
                dropout(softmax(scores, 3), p).matmul(v)
            }
            None => attention(q, k, v, mask, None, AttentionModuleOptions::default()),
        };
        // [batch, heads, frames, head_dim] -> [batch, frames, hidden]
        let out = out.swap_dims(1, 2).reshape([batch, frames, hidden]);
        self.out_proj.forward(out)
    }
}
