//! The feature encoder's strided convolutions for training steps on burn's CPU backend, built
//! from plain tensor ops that burn differentiates: one product per kernel tap over a strided
//! view of the input (`y = sum_j W_j x[j::stride]`), or for a one-channel input (layer 0) one
//! product over the stacked taps. Their backward passes are ordinary GEMMs; burn's own CPU
//! conv backward took 5-6 times its forward, and on the 95M conv stack (two 5 s crops) this
//! halves the forward-plus-backward time of layers 1-2. Same arithmetic, another summation
//! order.

use burn::nn::PaddingConfig1d;
use burn::nn::conv::Conv1d;
use burn::tensor::{Tensor, s};

/// Whether `x` takes this path: an autodiff tensor on burn's CPU backend, and a conv this
/// module covers (no padding, no dilation, one group).
pub fn applies(conv: &Conv1d, x: &Tensor<3>) -> bool {
    #[cfg(feature = "flex")]
    {
        let device = x.device();
        device.is_autodiff()
            && device == burn::tensor::Device::flex()
            && conv.dilation == 1
            && conv.groups == 1
            && matches!(
                conv.padding,
                PaddingConfig1d::Valid | PaddingConfig1d::Explicit(0, 0)
            )
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (conv, x);
        false
    }
}

/// `[batch, in_channels, samples]` -> `[batch, out_channels, frames]`, as `conv.forward`.
pub fn forward(conv: &Conv1d, x: Tensor<3>) -> Tensor<3> {
    let w = conv.weight.val();
    let [out, channels, k] = w.dims();
    let stride = conv.stride;
    let len = x.dims()[2];
    let frames = (len - k) / stride + 1;
    let tap = |j: usize| {
        let end = j + stride * (frames - 1) + 1;
        x.clone().slice(s![.., .., j..end; stride as isize])
    };
    let y = if channels == 1 {
        // [batch, k, frames] against [1, out, k]
        let cols = Tensor::cat((0..k).map(tap).collect(), 1);
        w.reshape([1, out, k]).matmul(cols)
    } else {
        (0..k)
            .map(|j| {
                let wj = w
                    .clone()
                    .slice(s![.., .., j..j + 1])
                    .reshape([1, out, channels]);
                wj.matmul(tap(j))
            })
            .reduce(|a, b| a + b)
            .expect("a conv has at least one tap")
    };
    match &conv.bias {
        Some(b) => y + b.val().reshape([1, out, 1]),
        None => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::max_rel_err;
    use burn::nn::conv::Conv1dConfig;
    use burn::tensor::{Device, Distribution};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().expect("f32")
    }

    /// Output, input gradient and weight gradient against burn's conv1d, for layer 0's shape
    /// (one channel, 10 taps, stride 5) and the later layers' (3 taps, stride 2), with bias.
    #[test]
    fn matches_burn_conv_and_its_gradients() {
        let device = Device::flex().autodiff();
        for (c_in, k, stride) in [(1, 10, 5), (6, 3, 2), (6, 2, 2)] {
            let conv = Conv1dConfig::new(c_in, 8, k)
                .with_stride(stride)
                .with_bias(true)
                .init(&device);
            let x = Tensor::<3>::random([2, c_in, 203], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            assert!(applies(&conv, &x));
            let weights = Tensor::<3>::random(
                [2, 8, (203 - k) / stride + 1],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let run = |y: Tensor<3>| {
                let grads = (y.clone() * weights.clone()).sum().backward();
                let gx = x.grad(&grads).expect("input grad");
                let gw = conv.weight.val().grad(&grads).expect("weight grad");
                (values(y), values(gx), values(gw))
            };
            let (y0, gx0, gw0) = run(conv.forward(x.clone()));
            let (y1, gx1, gw1) = run(forward(&conv, x.clone()));
            for (name, a, b) in [("out", y0, y1), ("dx", gx0, gx1), ("dw", gw0, gw1)] {
                let err = max_rel_err(&a, &b);
                assert!(err < 1e-5, "{c_in}x{k}/{stride} {name}: {err}");
            }
        }
    }
}
