//! Data-dependent initialisation of the trainable codec's weight-normalised convs (Salimans &
//! Kingma 2016, "Weight normalization", §3): on one batch, conv after conv in forward order,
//! `weight_g` and `bias` are set so that each output channel has zero mean and unit variance.
//!
//! Why: with torch's default initialisation (weight variance `1/(3 fan_in)`) each conv shrinks
//! the input-dependent part of its signal while its bias adds a constant, so a fresh encoder's
//! output is nearly the same for all audio; codebooks fitted to it collapse to one code and
//! the decoder learns the corpus's average sound instead of a code of its input
//! (`train-native/CODEC.md`). Only the starting values of `weight_g` and `bias` change; the
//! architecture and the key names stay EnCodec's.
//!
//! A transposed conv's `weight_g` is per input channel (`[in, 1, 1]`), so it gets one scale
//! for all its outputs (their mean variance becomes 1) and a bias per output channel. The
//! decoder's last conv is scaled to the input audio's standard deviation instead of 1, so a
//! fresh decoder starts at the level of the audio.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};

use super::train::{CodecModel, SeanetTrain, WnConv, walk};
use crate::error::{MertError, Result};

impl CodecModel {
    /// Rescale every conv on `audio` `[B, 1, L]` (a training batch): the encoder's, then the
    /// decoder's on the encoder's unquantised output. Parameter ids are kept, so this is a
    /// fresh run's starting point and is saved with it.
    pub fn data_init(self, audio: Tensor<3>) -> Result<Self> {
        let audio = audio.detach();
        let level = std_all(audio.clone())?;
        let (encoder, latent) = init_stack(self.encoder, audio, 1.0)?;
        let (decoder, _) = init_stack(self.decoder, latent, level)?;
        Ok(Self { encoder, decoder })
    }
}

/// One stack rescaled on `x`; its last conv's outputs get standard deviation `last_std`.
fn init_stack(stack: SeanetTrain, x: Tensor<3>, last_std: f64) -> Result<(SeanetTrain, Tensor<3>)> {
    let SeanetTrain {
        mut convs,
        lstm,
        layout,
    } = stack;
    let n = convs.len();
    let y = walk(&layout, lstm.as_ref(), x, |i, x| {
        let target = if i + 1 == n { last_std } else { 1.0 };
        let (conv, y) = normalise(&convs[i], x.detach(), target)?;
        convs[i] = conv;
        Ok::<_, MertError>(y)
    })?;
    Ok((
        SeanetTrain {
            convs,
            lstm,
            layout,
        },
        y.detach(),
    ))
}

fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| MertError::Invalid(format!("codec data init: cannot read: {e:?}")))
}

/// Standard deviation of all values of `x`.
fn std_all(x: Tensor<3>) -> Result<f64> {
    let v = host(x)?;
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&a| a as f64).sum::<f64>() / n;
    Ok((v.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / n).sqrt())
}

/// `conv` with `g` and `bias` set so that its output on `x` has per-channel mean 0 and
/// standard deviation `target` (one scale for all channels of a transposed conv), and that
/// output. A channel that does not vary keeps its scale.
fn normalise(conv: &WnConv, x: Tensor<3>, target: f64) -> Result<(WnConv, Tensor<3>)> {
    let bias = conv.bias.val().detach();
    let c = bias.dims()[0];
    // [B, c, T], without the bias
    let y = conv.forward(x.clone()).detach() - bias.reshape([1, c, 1]);
    // [1, c, 1]
    let mean = y.clone().mean_dim(2).mean_dim(0);
    let var = host((y - mean.clone()).powi_scalar(2).mean_dim(2).mean_dim(0))?;
    let mean = host(mean)?;
    let scale_for = |v: f64| {
        if v.is_finite() && v > 1e-12 {
            target / v.sqrt()
        } else {
            1.0
        }
    };
    let scales: Vec<f64> = if conv.transposed {
        let pooled = var.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        vec![scale_for(pooled); c]
    } else {
        var.iter().map(|&v| scale_for(v as f64)).collect()
    };
    let g = host(conv.weight_g.val().detach())?;
    let g = if conv.transposed {
        g.iter().map(|&a| (a as f64 * scales[0]) as f32).collect()
    } else {
        g.iter()
            .zip(&scales)
            .map(|(&a, s)| (a as f64 * s) as f32)
            .collect()
    };
    let b = mean
        .iter()
        .zip(&scales)
        .map(|(&m, s)| (-(m as f64) * s) as f32)
        .collect();
    let conv = WnConv {
        weight_g: replace(&conv.weight_g, g),
        weight_v: conv.weight_v.clone(),
        bias: replace(&conv.bias, b),
        stride: conv.stride,
        dilation: conv.dilation,
        transposed: conv.transposed,
    };
    let y = conv.forward(x).detach();
    Ok((conv, y))
}

/// `p` with new values, same id and shape (trainable on an autodiff device, as built).
fn replace<const D: usize>(p: &Param<Tensor<D>>, data: Vec<f32>) -> Param<Tensor<D>> {
    let old = p.val();
    let device = old.device();
    let t = Tensor::<D>::from_data(TensorData::new(data, old.dims()), &device);
    let t = if device.is_autodiff() {
        t.require_grad()
    } else {
        t
    };
    Param::initialized(p.id, t)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::teachers::CodecConfig;

    fn small() -> CodecConfig {
        CodecConfig {
            n_filters: 4,
            dimension: 8,
            ratios: vec![4, 2],
            lstm: 1,
            codebook_size: 8,
            n_q: 2,
            ..CodecConfig::default()
        }
    }

    /// Quiet audio-like input `[2, 1, 800]`: two tones with a little noise.
    fn audio(device: &Device) -> Tensor<3> {
        let data: Vec<f32> = (0..1600)
            .map(|i| {
                let (b, t) = ((i / 800) as f32, (i % 800) as f32);
                0.1 * (t * (0.05 + 0.03 * b)).sin()
                    + 0.01 * ((i * 7919 % 1000) as f32 / 500.0 - 1.0)
            })
            .collect();
        Tensor::from_data(TensorData::new(data, [2, 1, 800]), device)
    }

    /// Per-channel means and variances of one conv's output.
    type Stats = (Vec<f32>, Vec<f32>);

    /// [`Stats`] over batch and time of each conv's output, in order, and the stack's output.
    fn conv_stats(stack: &SeanetTrain, x: Tensor<3>) -> (Vec<Stats>, Tensor<3>) {
        let mut stats = Vec::new();
        let y = walk::<MertError>(&stack.layout, stack.lstm.as_ref(), x, |i, x| {
            let y = stack.convs[i].forward(x);
            let mean = y.clone().mean_dim(2).mean_dim(0);
            let var = (y.clone() - mean.clone())
                .powi_scalar(2)
                .mean_dim(2)
                .mean_dim(0);
            stats.push((host(mean)?, host(var)?));
            Ok(y)
        })
        .unwrap();
        (stats, y)
    }

    /// After the init every conv's outputs have mean 0 and variance 1 on the batch (pooled
    /// for a transposed conv; the audio's for the decoder's last), where torch's default
    /// initialisation leaves the latent varying far less than 1.
    #[test]
    fn data_init_gives_unit_variance_conv_outputs() {
        let device = Device::flex();
        let config = small();
        let x = audio(&device);
        let fresh = CodecModel::init(&config, 1, &device).unwrap();
        let (before, _) = conv_stats(&fresh.encoder, x.clone());
        let latent_var = &before.last().unwrap().1;
        let mean_var = latent_var.iter().sum::<f32>() / latent_var.len() as f32;
        assert!(mean_var < 0.1, "default init latent variance {mean_var}");

        let model = fresh.data_init(x.clone()).unwrap();
        let (enc, latent) = conv_stats(&model.encoder, x.clone());
        let (dec, _) = conv_stats(&model.decoder, latent);
        let level = std_all(x).unwrap() as f32;
        let n_dec = dec.len();
        for (i, (mean, var)) in enc.iter().chain(&dec).enumerate() {
            let last = i + 1 == enc.len() + n_dec;
            let transposed = i >= enc.len() && model.decoder.convs[i - enc.len()].transposed;
            let want = if last { level * level } else { 1.0 };
            let tol = 1e-3 * want;
            assert!(
                mean.iter().all(|m| m.abs() < 1e-3),
                "conv {i}: means {mean:?}"
            );
            if transposed {
                let pooled = var.iter().sum::<f32>() / var.len() as f32;
                assert!((pooled - want).abs() < tol, "conv {i}: variance {pooled}");
            } else {
                assert!(
                    var.iter().all(|v| (v - want).abs() < tol),
                    "conv {i}: variances {var:?}, want {want}"
                );
            }
        }
    }
}
