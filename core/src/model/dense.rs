//! A Linear layer that can keep its weight as resident 8-bit codes. Its parameters are burn's
//! `Linear`'s (`weight` `[in, out]`, optional `bias`), so checkpoints and the optimizer see the
//! same thing; when a quantized model file is loaded on the CPU with the 8-bit kernel
//! ([`gemm::fast`]), the loader packs the file's codes into [`Dense::int8`] and the f32 weight is
//! never built (it stays an empty `[0, out]` placeholder). See `quant::gemm`.

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::LinearConfig;
use burn::tensor::module::linear;
use burn::tensor::{Device, Tensor, TensorData};

use super::activation::on_cpu_inference;
use crate::quant::gemm::{self, PackedQ8};

#[derive(Module, Debug)]
pub struct Dense {
    /// `[in, out]` (burn's Linear layout); `[0, out]` when the weight lives in `int8`.
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    /// The weight as packed 8-bit codes, set by the loader.
    #[module(skip)]
    pub int8: Option<Arc<PackedQ8>>,
}

impl Dense {
    /// burn's default Linear init (the loader or the optimizer sets the values).
    pub fn new(d_in: usize, d_out: usize, device: &Device) -> Self {
        let l = LinearConfig::new(d_in, d_out).init(device);
        Self {
            weight: l.weight,
            bias: l.bias,
            int8: None,
        }
    }

    /// `[.., in]` -> `[.., out]`: the 8-bit kernel when the weight is packed, burn's `linear`
    /// otherwise.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match &self.int8 {
            Some(packed) => forward_int8(packed, self.bias.as_ref().map(|b| b.val()), x),
            None => linear(x, self.weight.val(), self.bias.as_ref().map(|b| b.val())),
        }
    }

    /// Replace the f32 weight by its packed codes (see the module doc).
    pub fn set_int8(&mut self, packed: PackedQ8, device: &Device) {
        let out = packed.n();
        let id = self.weight.id;
        self.weight = Param::initialized(id, Tensor::zeros([0, out], device));
        self.int8 = Some(Arc::new(packed));
    }
}

/// `x · Wᵀ + bias` on packed codes (the CPU backend, inference only).
pub(crate) fn forward_int8<const D: usize>(
    packed: &PackedQ8,
    bias: Option<Tensor<1>>,
    x: Tensor<D>,
) -> Tensor<D> {
    let mut dims = x.dims();
    assert_eq!(
        dims[D - 1],
        packed.k(),
        "input width {} for a layer of {} inputs",
        dims[D - 1],
        packed.k()
    );
    // The packed weight only exists on the CPU backend (the loader's choice); a tensor from
    // elsewhere or under autodiff is a caller error.
    assert!(
        on_cpu_inference(&x),
        "a layer with 8-bit weights runs on the CPU backend, for inference"
    );
    let device = x.device();
    let rows = dims[..D - 1].iter().product();
    let data = x.into_data();
    let bias = bias.map(|b| b.into_data());
    let y = match (
        data.as_slice::<f32>(),
        bias.as_ref().map(|b| b.as_slice::<f32>()),
    ) {
        (Ok(a), None) => gemm::matmul(a, rows, packed, None),
        (Ok(a), Some(Ok(b))) => gemm::matmul(a, rows, packed, Some(b)),
        _ => unreachable!("f32 checked by on_cpu_inference"),
    };
    dims[D - 1] = packed.n();
    Tensor::from_data(TensorData::new(y, dims), &device)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::quant::blocks::quantize_q8;
    use burn::tensor::Distribution;

    /// The packed layer against the same layer's f32 weight: the 8-bit product is within the
    /// rounding of both operands (about 1% of the output's scale).
    #[test]
    fn int8_forward_matches_f32() {
        let device = Device::flex();
        let f32_layer = Dense::new(96, 40, &device);
        let x = Tensor::<3>::random([2, 9, 96], Distribution::Normal(0.0, 1.0), &device);
        let want = f32_layer
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // [in, out] -> stored [out, in]
        let w = f32_layer
            .weight
            .val()
            .transpose()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let (codes, scales) = quantize_q8(&w, 96, 32);
        let mut q = f32_layer.clone();
        q.set_int8(PackedQ8::new(&codes, &scales, 40, 96, 32).unwrap(), &device);
        assert_eq!(q.weight.val().dims(), [0, 40]);
        let y = q.forward(x);
        assert_eq!(y.dims(), [2, 9, 40]);
        let got = y.into_data().try_to_vec::<f32>().unwrap();
        let rel = crate::test_util::max_rel_err(&want, &got);
        assert!(rel < 0.02, "rel err {}", rel);
    }
}
