//! The student's forward pass for pretraining: conv features (with the gradient multiplier),
//! projection, masked frames replaced by the mask embedding, then the transformer.

use burn::tensor::{Bool, Tensor, TensorData};

use super::heads::PretrainHeads;
use crate::model::Mert;
use crate::model::regularize::{Regularize, maybe_dropout};

/// What the loss needs from one student pass.
#[derive(Debug, Clone)]
pub struct StudentOutput {
    /// `[batch, frames, channels]`: conv output before the feature LayerNorm.
    pub conv_features: Tensor<3>,
    /// `[batch, frames, hidden]`: the final encoder output.
    pub last: Tensor<3>,
}

/// `audio`: `[batch, samples]` (the noisy input); `mask[b][t]` true = masked frame (rows must
/// have the model's frame count for these samples). `feature_grad_mult` scales the gradient
/// flowing into the conv stack without changing the forward values. `reg`: dropout and
/// LayerDrop for a training step (`None` for validation).
pub fn student_forward(
    model: &Mert,
    heads: &PretrainHeads,
    audio: Tensor<2>,
    mask: &[Vec<bool>],
    feature_grad_mult: f64,
    reg: Option<&Regularize>,
) -> StudentOutput {
    let device = audio.device();
    let mut conv = model.feature_extractor.forward(audio);
    if feature_grad_mult != 1.0 {
        conv = conv.clone() * feature_grad_mult + conv.detach() * (1.0 - feature_grad_mult);
    }
    let conv_features = conv.swap_dims(1, 2);
    let h = maybe_dropout(
        model.feature_projection.forward(conv_features.clone()),
        reg,
        |r| r.feat_proj,
    );
    let [batch, frames, hidden] = h.dims();
    let flat: Vec<bool> = mask
        .iter()
        .flat_map(|row| (0..frames).map(move |t| row.get(t).copied().unwrap_or(false)))
        .collect();
    let h = if flat.iter().any(|&m| m) {
        let mask = Tensor::<3, Bool>::from_data(TensorData::new(flat, [batch, frames, 1]), &device)
            .expand([batch, frames, hidden]);
        // The heads stay f32 when the backbone computes in a half type (mixed precision).
        let mut emb = heads.mask_emb.val();
        if emb.dtype() != h.dtype() {
            emb = emb.cast(h.dtype());
        }
        let emb = emb.reshape([1, 1, hidden]).expand([batch, frames, hidden]);
        h.mask_where(mask, emb)
    } else {
        h
    };
    let mut states = model.encoder.forward_with(h, None, reg);
    let last = states
        .pop()
        .expect("the encoder returns at least one state");
    StudentOutput {
        conv_features,
        last,
    }
}

/// Flat indices `b * frames + t` of the masked frames, row-major.
pub fn masked_index(mask: &[Vec<bool>]) -> Vec<usize> {
    let frames = mask.first().map_or(0, Vec::len);
    mask.iter()
        .enumerate()
        .flat_map(|(b, row)| {
            row.iter()
                .enumerate()
                .filter(|(_, m)| **m)
                .map(move |(t, _)| b * frames + t)
        })
        .collect()
}
