//! The positional conv embedding: a wide grouped conv over frames that gives the transformer its
//! sense of position. Mirrors `HubertPositionalConvEmbedding` + `HubertSamePadLayer`.
//! Checkpoints store the weight normalised (`weight_g`, `weight_v`); the loader folds it into
//! one plain weight (see [`fold_weight_norm`]), which is also how the kit's file stores it.

use burn::module::Module;
use burn::nn::PaddingConfig1d;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use super::config::MertConfig;

#[derive(Module, Debug)]
pub struct PositionalConvEmbedding {
    pub conv: Conv1d,
}

impl PositionalConvEmbedding {
    pub fn init(config: &MertConfig, device: &Device) -> Self {
        let k = config.num_conv_pos_embeddings;
        // The reference pads k/2 on both sides and, for an even kernel, drops the last output
        // frame; padding one less on the right gives the same frames without computing it.
        let right = if k.is_multiple_of(2) {
            k / 2 - 1
        } else {
            k / 2
        };
        let conv = Conv1dConfig::new(config.hidden_size, config.hidden_size, k)
            .with_groups(config.num_conv_pos_embedding_groups)
            .with_padding(PaddingConfig1d::Explicit(k / 2, right))
            .init(device);
        Self { conv }
    }

    /// `[batch, frames, hidden]` -> `[batch, frames, hidden]` (the embedding, not yet added).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        #[cfg(feature = "flex")]
        if super::activation::on_cpu_inference(&x) {
            return super::activation::gelu(cpu::conv(&self.conv, x));
        }
        // conv runs over time: [batch, hidden, frames]
        let y = self.conv.forward(x.swap_dims(1, 2));
        gelu(y).swap_dims(1, 2)
    }
}

/// Fold a weight-normalised conv weight: `W[:, :, k] = g[k] * V[:, :, k] / ||V[:, :, k]||`.
///
/// `v` is `[out, in_per_group, kernel]` row-major; `g` holds one gain per slice of the axis the
/// norm was taken over. HF's positional conv normalises over dims (0, 1) for each kernel tap
/// (`g` shape `[1, 1, kernel]`, `dim=2`); the EnCodec-style convs normalise per output channel
/// (`g` shape `[out, 1, 1]`, `dim=0`). The axis is read off `g`'s shape.
pub fn fold_weight_norm(
    v: &[f32],
    v_shape: &[usize],
    g: &[f32],
    g_shape: &[usize],
) -> Option<Vec<f32>> {
    if v_shape.len() != 3 || g_shape.len() != 3 {
        return None;
    }
    let (o, i, k) = (v_shape[0], v_shape[1], v_shape[2]);
    if v.len() != o * i * k {
        return None;
    }
    let mut w = vec![0f32; v.len()];
    if g_shape == [1, 1, k] && g.len() == k {
        for tap in 0..k {
            let norm: f64 = (0..o * i)
                .map(|r| (v[r * k + tap] as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let scale = g[tap] as f64 / norm;
            for r in 0..o * i {
                w[r * k + tap] = (v[r * k + tap] as f64 * scale) as f32;
            }
        }
        Some(w)
    } else if g_shape == [o, 1, 1] && g.len() == o {
        for out in 0..o {
            let slice = &v[out * i * k..(out + 1) * i * k];
            let norm: f64 = slice
                .iter()
                .map(|&x| (x as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let scale = g[out] as f64 / norm;
            for (dst, &src) in w[out * i * k..(out + 1) * i * k].iter_mut().zip(slice) {
                *dst = (src as f64 * scale) as f32;
            }
        }
        Some(w)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::fold_weight_norm;

    /// The in-place grouped GEMM against burn's grouped conv (same padding), even and odd
    /// kernels, with a bias.
    #[cfg(feature = "flex")]
    #[test]
    fn cpu_conv_matches_burn() {
        use burn::nn::PaddingConfig1d;
        use burn::nn::conv::Conv1dConfig;
        use burn::tensor::{Device, Distribution, Tensor};
        let device = Device::flex();
        for k in [16, 7] {
            let right = if k % 2 == 0 { k / 2 - 1 } else { k / 2 };
            let conv = Conv1dConfig::new(64, 64, k)
                .with_groups(4)
                .with_padding(PaddingConfig1d::Explicit(k / 2, right))
                .init(&device);
            let x = Tensor::<3>::random([2, 57, 64], Distribution::Normal(0.0, 1.0), &device);
            let want = conv
                .forward(x.clone().swap_dims(1, 2))
                .swap_dims(1, 2)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let got = super::cpu::conv(&conv, x)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let rel = crate::test_util::max_rel_err(&want, &got);
            assert!(rel < 1e-5, "k {k}: rel err {}", rel);
        }
    }

    #[test]
    fn fold_per_tap_and_per_channel() {
        // v: [out=2, in=1, k=2]; column (tap) norms: tap0 sqrt(9+16)=5, tap1 sqrt(1+0)=1
        let v = [3.0, 1.0, 4.0, 0.0];
        let w = fold_weight_norm(&v, &[2, 1, 2], &[10.0, 2.0], &[1, 1, 2]).unwrap();
        assert_eq!(w, vec![6.0, 2.0, 8.0, 0.0]);
        // per output channel: row norms sqrt(10), 4
        let w = fold_weight_norm(&v, &[2, 1, 2], &[1.0, 2.0], &[2, 1, 1]).unwrap();
        let r = 10f32.sqrt();
        assert!((w[0] - 3.0 / r).abs() < 1e-6 && (w[1] - 1.0 / r).abs() < 1e-6);
        assert_eq!(&w[2..], &[2.0, 0.0]);
        assert!(fold_weight_norm(&v, &[2, 1, 2], &[1.0], &[1, 1, 1]).is_none());
    }
}

/// On burn's CPU backend the grouped conv is one GEMM per (batch item, group), read in place:
/// with each group's channels laid out `[frames + k - 1, channels / groups]` (zero-padded), the
/// `k` frames output frame `t` reads are contiguous, so that layout read with a row stride of
/// one frame is the group's im2col matrix (as in `conv_frames`). burn's grouped conv took
/// 0.3-0.45 s of a 30 s pass here.
#[cfg(feature = "flex")]
mod cpu {
    use burn::nn::conv::Conv1d;
    use burn::tensor::{Tensor, TensorData};
    use rayon::prelude::*;

    use super::super::shared_out::SharedOut;

    /// `[batch, frames, hidden]` -> the conv's output `[batch, frames, hidden]` (padding as
    /// `PositionalConvEmbedding::init` sets it: `k / 2` before, the rest after).
    pub(super) fn conv(conv: &Conv1d, x: Tensor<3>) -> Tensor<3> {
        let [batch, frames, hidden] = x.dims();
        let [_, width, k] = conv.weight.dims();
        let groups = hidden / width;
        let device = x.device();
        let left = k / 2;
        let padded = frames + k - 1;
        let pad = |n: usize| Tensor::<3>::zeros([batch, n, hidden], &device);
        // [batch, groups, padded, width]
        let xp = Tensor::cat(vec![pad(left), x, pad(k - 1 - left)], 1)
            .reshape([batch, padded, groups, width])
            .swap_dims(1, 2)
            .into_data();
        // [hidden, width, k] = [groups, out, in, k] -> [groups, k, in, out]: tap-major rows
        let w = conv
            .weight
            .val()
            .reshape([groups, width, width, k])
            .permute([0, 3, 2, 1])
            .into_data();
        let bias = conv.bias.as_ref().map(|b| b.val().into_data());
        let (Ok(xp), Ok(w)) = (xp.as_slice::<f32>(), w.as_slice::<f32>()) else {
            unreachable!("f32 checked by the caller")
        };
        let bias = bias.as_ref().and_then(|b| b.as_slice::<f32>().ok());
        let mut out = vec![0f32; batch * frames * hidden];
        let dst = SharedOut::new(&mut out);
        (0..batch * groups).into_par_iter().for_each(|task| {
            let (b, g) = (task / groups, task % groups);
            let lhs = &xp[task * padded * width..(task + 1) * padded * width];
            let rhs = &w[g * k * width * width..(g + 1) * k * width * width];
            // SAFETY: the group's block of `out` (frames rows of `width` values, `hidden`
            // apart, from column g·width of item b) is written by this task only; the rows
            // read from `lhs` (k·width long, `width` apart, frames of them) end at its end.
            unsafe {
                gemm::gemm(
                    frames,
                    width,
                    k * width,
                    dst.at(b * frames * hidden + g * width),
                    1,
                    hidden as isize,
                    false,
                    lhs.as_ptr(),
                    1,
                    width as isize,
                    rhs.as_ptr(),
                    1,
                    width as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
        if let Some(bias) = bias {
            out.par_chunks_mut(hidden).for_each(|row| {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            });
        }
        Tensor::from_data(TensorData::new(out, [batch, frames, hidden]), &device)
    }
}
