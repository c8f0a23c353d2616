//! The residual vector quantiser (`encodec/quantization/core_vq.py`
//! `ResidualVectorQuantization`). Encode (`encode` with `EuclideanCodebook.quantize`): for each
//! of the first `n_q` codebooks, pick the code nearest to the residual by squared Euclidean
//! distance, subtract it, go on with the next codebook. The distance is evaluated in the
//! reference's form, `|x|² - 2 x·e + |e|²`, so that near ties round the same way as far as
//! possible. Decode (`decode`): the sum of the chosen code vectors.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{MertError, Result};
use crate::load::TensorMap;

#[derive(Debug, Clone)]
struct Codebook {
    /// `[bins, dim]`
    embed: Tensor<2>,
    /// `[dim, bins]`
    embed_t: Tensor<2>,
    /// `|e|²` `[1, bins]`
    sq_norms: Tensor<2>,
}

/// The first `n_q` codebooks, on one device.
#[derive(Debug, Clone)]
pub struct ResidualVq {
    codebooks: Vec<Codebook>,
}

/// State-dict key of codebook `q`'s code vectors.
pub fn embed_key(q: usize) -> String {
    format!("quantizer.vq.layers.{q}._codebook.embed")
}

impl ResidualVq {
    /// Take `quantizer.vq.layers.{q}._codebook.embed` `[bins, dim]` for `q < n_q` out of
    /// `tensors` (shapes validated by the loader).
    pub fn build(
        n_q: usize,
        bins: usize,
        dim: usize,
        tensors: &mut TensorMap,
        device: &Device,
    ) -> Result<Self> {
        let codebooks = (0..n_q)
            .map(|q| {
                let key = embed_key(q);
                let data = tensors
                    .remove(&key)
                    .ok_or_else(|| MertError::tensor(&tensors.source, &key, "missing"))?
                    .data;
                let norms: Vec<f32> = data
                    .chunks_exact(dim)
                    .map(|e| e.iter().map(|v| v * v).sum())
                    .collect();
                let embed = Tensor::<2>::from_data(TensorData::new(data, [bins, dim]), device);
                Ok(Codebook {
                    embed_t: embed.clone().transpose(),
                    embed,
                    sq_norms: Tensor::<2>::from_data(TensorData::new(norms, [1, bins]), device),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { codebooks })
    }

    /// Codes `[frames, n_q]` of encoder output `x` `[frames, dim]`.
    pub fn encode(&self, x: Tensor<2>) -> Tensor<2, Int> {
        let mut residual = x;
        let mut codes = Vec::with_capacity(self.codebooks.len());
        for cb in &self.codebooks {
            // |x|² [frames, 1] - 2 x·e [frames, bins] + |e|² [1, bins]
            let xx = (residual.clone() * residual.clone()).sum_dim(1);
            let dist = xx - residual.clone().matmul(cb.embed_t.clone()).mul_scalar(2.0)
                + cb.sq_norms.clone();
            // [frames, 1]
            let idx = dist.argmin(1);
            let [frames, _] = idx.dims();
            let chosen = cb.embed.clone().select(0, idx.clone().reshape([frames]));
            residual = residual - chosen;
            codes.push(idx);
        }
        Tensor::cat(codes, 1)
    }

    /// Codebooks held (`n_q`).
    pub fn len(&self) -> usize {
        self.codebooks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codebooks.is_empty()
    }

    /// The quantised embedding `[frames, dim]` of codes `[frames, k]` (`k <= n_q`): the sum of
    /// code vector `codes[t, q]` of codebook `q` over `q`.
    pub fn decode(&self, codes: Tensor<2, Int>) -> Tensor<2> {
        let [frames, k] = codes.dims();
        let mut sum: Option<Tensor<2>> = None;
        for (q, cb) in self.codebooks.iter().enumerate().take(k) {
            let idx = codes.clone().narrow(1, q, 1).reshape([frames]);
            let chosen = cb.embed.clone().select(0, idx);
            sum = Some(match sum {
                Some(s) => s + chosen,
                None => chosen,
            });
        }
        sum.unwrap_or_else(|| {
            let dim = self.codebooks.first().map_or(0, |cb| cb.embed.dims()[1]);
            Tensor::zeros([frames, dim], &codes.device())
        })
    }
}
