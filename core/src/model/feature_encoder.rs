//! The convolutional feature encoder and the feature projection: raw audio to frame features.
//! Mirrors `transformers` `HubertFeatureEncoder` / `HubertFeatureProjection`
//! (models/hubert/modeling_hubert.py); field names follow the checkpoint keys
//! `feature_extractor.conv_layers.{i}.conv` and `feature_projection.{layer_norm,projection}`.

use std::sync::Arc;

use super::norm::NormF32;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::activation::gelu;
use super::config::{FeatExtractNorm, MertConfig};
use super::conv_frames::conv_frames;
use super::dense::Dense;
use crate::quant::gemm::PackedQ8;

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
    /// The conv weight as packed 8-bit codes (inputs tap-major, as [`conv_frames`] lays
    /// them out), set by the loader; the f32 weight is then an empty `[out, in, 0]`.
    #[module(skip)]
    pub int8: Option<Arc<PackedQ8>>,
}

impl ConvLayer {
    /// Replace the conv's f32 weight by `packed` (its codes with inputs tap-major).
    pub fn set_int8(&mut self, packed: PackedQ8, device: &Device) {
        let [out, c_in, _] = self.conv.weight.dims();
        let id = self.conv.weight.id;
        self.conv.weight = Param::initialized(id, Tensor::zeros([out, c_in, 0], device));
        self.int8 = Some(Arc::new(packed));
    }

    /// `[batch, in_channels, samples]` -> `[batch, out_channels, frames]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mut x = match &self.int8 {
            Some(w) => conv_frames(&self.conv, Some(w), x.swap_dims(1, 2)).swap_dims(1, 2),
            None if super::conv_train::applies(&self.conv, &x) => {
                super::conv_train::forward(&self.conv, x)
            }
            None => self.conv.forward(x),
        };
        if let Some(norm) = &self.group_norm {
            x = norm.forward_f32(x);
        }
        if let Some(norm) = &self.layer_norm {
            // LayerNorm normalises the last axis: [batch, frames, channels] and back.
            x = norm.forward_f32(x.swap_dims(1, 2)).swap_dims(1, 2);
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
                int8: None,
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

    /// Samples between frames (the product of the strides) and samples one frame sees.
    pub fn hop_and_field(&self) -> (usize, usize) {
        let (mut hop, mut field) = (1, 1);
        for layer in &self.conv_layers {
            field += (layer.conv.kernel_size - 1) * hop;
            hop *= layer.conv.stride;
        }
        (hop, field)
    }

    /// Output frames for `samples` input samples.
    pub fn frames_for(&self, samples: usize) -> usize {
        let (hop, field) = self.hop_and_field();
        if samples < field {
            0
        } else {
            (samples - field) / hop + 1
        }
    }

    /// [`FeatureEncoder::forward`] as frames `[batch, frames, channels]`, each conv one GEMM
    /// ([`conv_frames`]), computed `chunk_frames` output frames at a time (0: all at once),
    /// so that the wide early conv outputs (512 channels at 1/5 of the sample rate: 5.9 GB
    /// for ten minutes) never exist for the whole clip. The convs have no padding, so frames
    /// `[a, b)` depend only on samples `[a·hop, (b-1)·hop + field)` and a chunk gives the
    /// whole clip's frames. The layer-0 GroupNorm (`feat_extract_norm = "group"`) normalises
    /// each channel over all of layer 0's output, so with several chunks its statistics come
    /// from a first pass over the clip (summed in f64), then each chunk is normalised with them.
    pub fn forward_frames(&self, audio: Tensor<2>, chunk_frames: usize) -> Tensor<3> {
        let samples = audio.dims()[1];
        let frames = self.frames_for(samples);
        let Some(first) = self.conv_layers.first() else {
            return audio.unsqueeze_dim(2);
        };
        if frames == 0 {
            return self.forward(audio).swap_dims(1, 2);
        }
        let (hop, field) = self.hop_and_field();
        let chunk = if chunk_frames == 0 {
            frames
        } else {
            chunk_frames
        };
        // On the CPU, layer 0 runs fused (conv0.rs), its norm statistics from the clip's
        // sample moments.
        let fused = self.fused_first_layer(&audio);
        let affine = match &first.group_norm {
            Some(norm) if frames > chunk && fused.is_none() => {
                Some(self.group_norm_affine(norm, &audio, chunk * hop))
            }
            _ => None,
        };
        let mut chunks = Vec::with_capacity(frames.div_ceil(chunk));
        let mut start = 0;
        while start < frames {
            let end = (start + chunk).min(frames);
            let piece = if start == 0 && end == frames {
                audio.clone()
            } else {
                audio
                    .clone()
                    .narrow(1, start * hop, (end - 1) * hop + field - start * hop)
            };
            let mut layers = self.conv_layers.iter();
            let mut x = match &fused {
                Some(affine) => {
                    layers.next();
                    first_layer_fused(&first.conv, piece, affine)
                }
                None => piece.unsqueeze_dim(2),
            };
            for layer in layers {
                x = conv_frames(&layer.conv, layer.int8.as_deref(), x);
                if let Some(norm) = &layer.group_norm {
                    x = match &affine {
                        Some((scale, shift)) => x * scale.clone() + shift.clone(),
                        None => group_norm_frames(norm, x),
                    };
                }
                if let Some(norm) = &layer.layer_norm {
                    x = norm.forward(x);
                }
                x = gelu(x);
            }
            chunks.push(x);
            start = end;
        }
        Tensor::cat(chunks, 1)
    }

    /// Per batch item, layer 0's GroupNorm as per-channel scale and shift over the whole
    /// clip, when layer 0 can run fused ([`super::conv0`]): burn's CPU backend for inference,
    /// one input channel, a GroupNorm, f32 weights.
    fn fused_first_layer(&self, audio: &Tensor<2>) -> Option<Vec<(Vec<f32>, Vec<f32>)>> {
        #[cfg(feature = "flex")]
        {
            let first = self.conv_layers.first()?;
            let norm = first.group_norm.as_ref()?;
            if first.int8.is_some()
                || first.layer_norm.is_some()
                || !super::activation::on_cpu_inference(audio)
            {
                return None;
            }
            let samples = audio.dims()[1];
            let data = audio.clone().into_data();
            let x = data.as_slice::<f32>().ok()?;
            x.chunks(samples.max(1))
                .map(|clip| super::conv0::norm_affine(&first.conv, norm, clip))
                .collect()
        }
        #[cfg(not(feature = "flex"))]
        {
            let _ = audio;
            None
        }
    }

    /// Layer 0's GroupNorm (one group per channel) as `x · scale + shift`, `[batch, 1, C]`
    /// each, from its statistics over the whole clip, gathered `chunk_samples` at a time.
    fn group_norm_affine(
        &self,
        norm: &GroupNorm,
        audio: &Tensor<2>,
        chunk_samples: usize,
    ) -> (Tensor<3>, Tensor<3>) {
        let conv = &self.conv_layers[0].conv;
        let (k, s) = (conv.kernel_size, conv.stride);
        let [batch, samples] = audio.dims();
        let device = audio.device();
        let total = if samples < k {
            0
        } else {
            (samples - k) / s + 1
        };
        // chunks of layer-0 frames, each counted once
        let step = (chunk_samples / s).max(1);
        let channels = conv.weight.dims()[0];
        let mut sum = vec![0f64; batch * channels];
        let mut sq = vec![0f64; batch * channels];
        let mut f0 = 0;
        while f0 < total {
            let f1 = (f0 + step).min(total);
            let piece = audio.clone().narrow(1, f0 * s, (f1 - 1) * s + k - f0 * s);
            let y = conv_frames(
                conv,
                self.conv_layers[0].int8.as_deref(),
                piece.unsqueeze_dim(2),
            );
            let host = |t: Tensor<3>| t.try_into_vec_as::<f32>().unwrap_or_default();
            let part_sum = host(y.clone().sum_dim(1));
            let part_sq = host(y.powi_scalar(2).sum_dim(1));
            for (acc, v) in sum.iter_mut().zip(part_sum) {
                *acc += f64::from(v);
            }
            for (acc, v) in sq.iter_mut().zip(part_sq) {
                *acc += f64::from(v);
            }
            f0 = f1;
        }
        let n = total.max(1) as f64;
        let gamma = norm
            .gamma
            .as_ref()
            .map(|g| g.val().try_into_vec_as::<f32>().unwrap_or_default());
        let beta = norm
            .beta
            .as_ref()
            .map(|b| b.val().try_into_vec_as::<f32>().unwrap_or_default());
        let mut scale = Vec::with_capacity(batch * channels);
        let mut shift = Vec::with_capacity(batch * channels);
        for i in 0..batch * channels {
            let c = i % channels;
            let mean = sum[i] / n;
            let var = (sq[i] / n - mean * mean).max(0.0);
            let inv = 1.0 / (var + norm.epsilon).sqrt();
            let g = gamma
                .as_ref()
                .and_then(|g| g.get(c))
                .map_or(1.0, |&g| f64::from(g));
            let b = beta
                .as_ref()
                .and_then(|b| b.get(c))
                .map_or(0.0, |&b| f64::from(b));
            scale.push((g * inv) as f32);
            shift.push((b - mean * g * inv) as f32);
        }
        let shape = [batch, 1, channels];
        (
            Tensor::from_data(TensorData::new(scale, shape), &device),
            Tensor::from_data(TensorData::new(shift, shape), &device),
        )
    }
}

/// Layer 0 fused: conv, norm, GELU (see [`FeatureEncoder::fused_first_layer`]).
fn first_layer_fused(
    conv: &Conv1d,
    piece: Tensor<2>,
    affine: &[(Vec<f32>, Vec<f32>)],
) -> Tensor<3> {
    #[cfg(feature = "flex")]
    {
        super::conv0::fused(conv, piece, affine)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (conv, affine);
        unreachable!(
            "fused only where fused_first_layer gives statistics: {:?}",
            piece.dims()
        )
    }
}

/// GroupNorm with one group per channel on frames `[B, T, C]`: each channel normalised
/// over time (biased variance, as burn's and torch's), then the affine.
fn group_norm_frames(norm: &GroupNorm, x: Tensor<3>) -> Tensor<3> {
    let channels = x.dims()[2];
    let centred = x.clone() - x.mean_dim(1);
    let var = centred.clone().powi_scalar(2).mean_dim(1);
    let mut y = centred / (var + norm.epsilon).sqrt();
    if let Some(gamma) = &norm.gamma {
        y = y * gamma.val().reshape([1, 1, channels]);
    }
    if let Some(beta) = &norm.beta {
        y = y + beta.val().reshape([1, 1, channels]);
    }
    y
}

/// LayerNorm over conv channels, then a linear map to the model width.
#[derive(Module, Debug)]
pub struct FeatureProjection {
    pub layer_norm: Option<LayerNorm>,
    pub projection: Dense,
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
            projection: Dense::new(channels, config.hidden_size, device),
        }
    }

    /// `[batch, frames, channels]` -> `[batch, frames, hidden]`
    pub fn forward(&self, features: Tensor<3>) -> Tensor<3> {
        let x = match &self.layer_norm {
            Some(norm) => norm.forward_f32(features),
            None => features,
        };
        self.projection.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::Distribution;

    use super::*;

    fn max_rel_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let a = a.try_into_vec_as::<f32>().unwrap();
        let b = b.try_into_vec_as::<f32>().unwrap();
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        diff / scale
    }

    /// The GEMM convs, whole or in chunks of any size, give burn's convs' frames, with the
    /// layer-0 GroupNorm's statistics (and a non-trivial affine) taken over the whole clip,
    /// and in layer-norm mode.
    #[test]
    fn chunked_equals_whole_clip() {
        let device = Device::flex();
        for norm in [FeatExtractNorm::Group, FeatExtractNorm::Layer] {
            let config = MertConfig {
                feat_extract_norm: norm,
                ..MertConfig::tiny()
            };
            let mut enc = FeatureEncoder::init(&config, &device);
            if let Some(gn) = enc.conv_layers[0].group_norm.as_mut() {
                let c = config.conv_dim[0];
                let random = || Tensor::<1>::random([c], Distribution::Normal(0.5, 1.0), &device);
                gn.gamma = Some(Param::from_tensor(random()));
                gn.beta = Some(Param::from_tensor(random()));
            }
            // 2 rows, 3.1 s: an odd tail past the last whole frame, offset so the mean is not 0
            let audio = Tensor::<2>::random([2, 74_437], Distribution::Normal(0.1, 0.3), &device);
            // burn's convs, channels first
            let whole = enc.forward(audio.clone()).swap_dims(1, 2);
            let frames = whole.dims()[1];
            assert_eq!(frames, enc.frames_for(74_437));
            for chunk in [0, 1, 7, 40, frames - 1] {
                let rel = max_rel_diff(whole.clone(), enc.forward_frames(audio.clone(), chunk));
                assert!(
                    rel < 1e-5,
                    "{norm:?}, chunks of {chunk}: max rel diff {rel}"
                );
            }
        }
    }
}
