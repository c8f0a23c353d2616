//! Normalisation that computes in f32 whatever the activations' type. In mixed-precision
//! training the backbone runs in bfloat16, but a norm's mean and variance over hundreds of
//! values lose too much there; its parameters stay f32 and the result returns to the input's
//! type. On f32 activations this is the plain forward.

use burn::nn::{GroupNorm, LayerNorm};
use burn::tensor::{DType, Tensor};

pub trait NormF32 {
    fn forward_f32<const D: usize>(&self, x: Tensor<D>) -> Tensor<D>;
}

fn in_f32<const D: usize>(x: Tensor<D>, f: impl FnOnce(Tensor<D>) -> Tensor<D>) -> Tensor<D> {
    let dtype = x.dtype();
    if dtype == DType::F32 {
        f(x)
    } else {
        f(x.cast(DType::F32)).cast(dtype)
    }
}

impl NormF32 for LayerNorm {
    fn forward_f32<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        in_f32(x, |x| self.forward(x))
    }
}

impl NormF32 for GroupNorm {
    fn forward_f32<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        in_f32(x, |x| self.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn bf16_input_normalises_in_f32() {
        let device = Device::flex();
        let norm = LayerNormConfig::new(512).init(&device);
        let x = Tensor::<2>::random([4, 512], Distribution::Normal(3.0, 1.0), &device);
        let x = x.cast(DType::BF16);
        // The f32 norm of the same (bfloat16-rounded) values.
        let want = norm.forward(x.clone().cast(DType::F32));
        let got = norm.forward_f32(x);
        assert_eq!(got.dtype(), DType::BF16);
        let err = (got.cast(DType::F32) - want.clone())
            .abs()
            .max()
            .into_scalar::<f32>();
        let top = want.abs().max().into_scalar::<f32>();
        // Only the output's rounding to bfloat16 remains: half a step (8 significant bits),
        // at most 2^-8 relative.
        assert!(err <= top * 2f32.powi(-8), "{err} vs {top}");
    }
}
