//! The first conv block of the feature encoder (one input channel, kernel 10, stride 5, then a
//! GroupNorm with one group per channel over the whole clip, then GELU) fused into one pass on
//! burn's CPU backend. Its output is the widest tensor of the model (512 channels at 1/5 of the
//! sample rate: 295 MB for 30 s), and as separate ops it was written and read four times,
//! plus once more for the norm's statistics; here it is written once.
//!
//! The GroupNorm statistics need no pass over that output: the conv is linear in its 10-sample
//! windows `x_t`, so each channel's mean is `w·E[x_t] + b` and its second moment
//! `wᵀ E[x_t x_tᵀ] w + 2b w·E[x_t] + b²`, from the windows' first and second moments (10 and
//! 10×10 sums, in f64).

use burn::nn::GroupNorm;
use burn::nn::conv::Conv1d;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::activation::erf_approx;

/// Output frames per parallel task.
const FRAMES: usize = 256;

/// Widest first kernel whose GroupNorm statistics come from the audio's window moments.
const MOMENT_KERNEL_MAX: usize = 64;

/// Per-channel `x · scale + shift` of the GroupNorm over all of the conv's outputs on
/// `audio` (one clip's samples); `None` if the conv does not fit (more than one input channel).
pub fn norm_affine(conv: &Conv1d, norm: &GroupNorm, audio: &[f32]) -> Option<(Vec<f32>, Vec<f32>)> {
    let [c_out, c_in, k] = conv.weight.dims();
    let s = conv.stride;
    // The moments cost k² per window: for MERT's k = 10 that is cheap, for a wide first
    // kernel the plain conv is faster.
    if c_in != 1 || audio.len() < k || k > MOMENT_KERNEL_MAX {
        return None;
    }
    let windows = (audio.len() - k) / s + 1;
    let mut s1 = vec![0f64; k];
    let mut s2 = vec![0f64; k * k];
    for t in 0..windows {
        let x = &audio[t * s..t * s + k];
        for j in 0..k {
            let xj = f64::from(x[j]);
            s1[j] += xj;
            for l in j..k {
                s2[j * k + l] += xj * f64::from(x[l]);
            }
        }
    }
    let n = windows as f64;
    let w = host(conv.weight.val())?;
    let b = conv.bias.as_ref().and_then(|b| host(b.val()));
    let gamma = norm.gamma.as_ref().and_then(|g| host(g.val()));
    let beta = norm.beta.as_ref().and_then(|b| host(b.val()));
    let mut scale = Vec::with_capacity(c_out);
    let mut shift = Vec::with_capacity(c_out);
    for c in 0..c_out {
        let wc: Vec<f64> = w[c * k..(c + 1) * k]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let bc = b.as_ref().map_or(0.0, |b| f64::from(b[c]));
        let lin: f64 = (0..k).map(|j| wc[j] * s1[j]).sum::<f64>() / n;
        let mut quad = 0.0;
        for j in 0..k {
            quad += wc[j] * wc[j] * s2[j * k + j];
            for l in j + 1..k {
                quad += 2.0 * wc[j] * wc[l] * s2[j * k + l];
            }
        }
        let mean = lin + bc;
        let second = quad / n + 2.0 * bc * lin + bc * bc;
        let var = (second - mean * mean).max(0.0);
        let inv = 1.0 / (var + norm.epsilon).sqrt();
        let g = gamma.as_ref().map_or(1.0, |g| f64::from(g[c]));
        let be = beta.as_ref().map_or(0.0, |b| f64::from(b[c]));
        scale.push((g * inv) as f32);
        shift.push((be - mean * g * inv) as f32);
    }
    Some((scale, shift))
}

fn host<const D: usize>(t: Tensor<D>) -> Option<Vec<f32>> {
    t.into_data().try_into_vec::<f32>().ok()
}

/// `gelu(conv(x) · scale + shift)` for every output frame of `audio` `[batch, samples]`:
/// `[batch, frames, channels]`. `scale`/`shift` per batch item (`[batch][channels]`).
pub fn fused(conv: &Conv1d, audio: Tensor<2>, affine: &[(Vec<f32>, Vec<f32>)]) -> Tensor<3> {
    let [batch, samples] = audio.dims();
    let [c_out, _, k] = conv.weight.dims();
    let s = conv.stride;
    let device = audio.device();
    let frames = if samples < k {
        0
    } else {
        (samples - k) / s + 1
    };
    // taps-major weights, so each tap scales one contiguous row of channels
    let w = conv
        .weight
        .val()
        .reshape([c_out, k])
        .transpose()
        .into_data();
    let bias = conv.bias.as_ref().map(|b| b.val().into_data());
    let audio = audio.into_data();
    let (Ok(x), Ok(w)) = (audio.as_slice::<f32>(), w.as_slice::<f32>()) else {
        unreachable!("f32 checked by the caller")
    };
    let bias = bias.as_ref().and_then(|b| b.as_slice::<f32>().ok());
    let mut out = vec![0f32; batch * frames * c_out];
    if frames > 0 {
        out.par_chunks_mut(frames * c_out)
            .zip(x.par_chunks(samples))
            .zip(affine)
            .for_each(|((item, x), (scale, shift))| {
                item.par_chunks_mut(FRAMES * c_out)
                    .enumerate()
                    .for_each(|(j, rows)| {
                        let first = j * FRAMES;
                        block(x, first, rows, w, bias, scale, shift, (k, s));
                    });
            });
    }
    Tensor::from_data(TensorData::new(out, [batch, frames, c_out]), &device)
}

/// Frames `first..` of one clip into `rows` (`[frames][channels]`).
#[allow(clippy::too_many_arguments)]
fn block(
    x: &[f32],
    first: usize,
    rows: &mut [f32],
    w: &[f32],
    bias: Option<&[f32]>,
    scale: &[f32],
    shift: &[f32],
    (k, s): (usize, usize),
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { block_avx512(x, first, rows, w, bias, scale, shift, (k, s)) };
    }
    block_generic(x, first, rows, w, bias, scale, shift, (k, s));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn block_avx512(
    x: &[f32],
    first: usize,
    rows: &mut [f32],
    w: &[f32],
    bias: Option<&[f32]>,
    scale: &[f32],
    shift: &[f32],
    (k, s): (usize, usize),
) {
    block_generic(x, first, rows, w, bias, scale, shift, (k, s));
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block_generic(
    x: &[f32],
    first: usize,
    rows: &mut [f32],
    w: &[f32],
    bias: Option<&[f32]>,
    scale: &[f32],
    shift: &[f32],
    (k, s): (usize, usize),
) {
    let c_out = scale.len();
    for (i, row) in rows.chunks_exact_mut(c_out).enumerate() {
        let window = &x[(first + i) * s..(first + i) * s + k];
        match bias {
            Some(b) => row.copy_from_slice(b),
            None => row.fill(0.0),
        }
        for (j, &xj) in window.iter().enumerate() {
            for (y, &wj) in row.iter_mut().zip(&w[j * c_out..(j + 1) * c_out]) {
                *y += wj * xj;
            }
        }
        for ((y, &a), &b) in row.iter_mut().zip(scale).zip(shift) {
            let z = *y * a + b;
            *y = 0.5 * z * (1.0 + erf_approx(z * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::GroupNormConfig;
    use burn::nn::conv::Conv1dConfig;
    use burn::tensor::{Device, Distribution};

    /// Against burn's conv, GroupNorm and exact GELU on `[batch, 1, samples]`, with a bias and
    /// a non-zero mean (so the moment formulas' cross terms count).
    #[test]
    fn fused_matches_conv_norm_gelu() {
        let device = Device::flex();
        let conv = Conv1dConfig::new(1, 48, 10)
            .with_stride(5)
            .with_bias(true)
            .init(&device);
        let mut norm = GroupNormConfig::new(48, 48).init(&device);
        norm.gamma = norm
            .gamma
            .map(|g| g.map(|t| t.random_like(Distribution::Normal(1.0, 0.3))));
        norm.beta = norm
            .beta
            .map(|b| b.map(|t| t.random_like(Distribution::Normal(0.0, 0.3))));
        let audio = Tensor::<2>::random([2, 3001], Distribution::Normal(0.2, 1.0), &device);
        let want = burn::tensor::activation::gelu(
            norm.forward(conv.forward(audio.clone().unsqueeze_dim(1))),
        )
        .swap_dims(1, 2)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
        let data = audio.clone().into_data().try_to_vec::<f32>().unwrap();
        let affine: Vec<_> = data
            .chunks(3001)
            .map(|clip| norm_affine(&conv, &norm, clip).unwrap())
            .collect();
        let got = fused(&conv, audio, &affine)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let rel = crate::test_util::max_rel_err(&want, &got);
        assert!(rel < 1e-5, "rel err {}", rel);
    }
}
