//! encodec's `SLSTM` (`encodec/modules/lstm.py`): a multi-layer `torch.nn.LSTM` over frames
//! whose output is added to its input (skip connection).
//!
//! Per layer, `gates = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh` in PyTorch's gate order
//! (input, forget, cell, output); `c_t = σ(f) c_{t-1} + σ(i) tanh(g)`, `h_t = σ(o) tanh(c_t)`.
//! The input projections `W_ih x_t + b` of a whole chunk are one matmul on the device. The
//! recurrence is sequential, so it runs on the host in f32: `W_hh` is stored transposed in
//! column tiles of [`TILE`] gates, so that each step streams the matrix once with the tile's
//! accumulators in registers (4H·H multiply-adds per step and layer). `(h, c)` carry over
//! from chunk to chunk.

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{MertError, Result};
use crate::load::TensorMap;

/// Gates per column tile of the recurrent matrix (eight AVX registers).
const TILE: usize = 64;

#[derive(Debug, Clone)]
struct LstmLayer {
    /// `W_ih^T` `[in, 4H]` on the device.
    w_ih_t: Tensor<2>,
    /// `b_ih + b_hh` `[1, 4H]` on the device.
    bias: Tensor<2>,
    /// `W_hh` in column tiles: `w_hh[(tile·H + j)·TILE + i] = W_hh[tile·TILE + i, j]`, zero
    /// past the last gate.
    w_hh: Arc<[f32]>,
}

/// A built `SLSTM` (skip connection included).
#[derive(Debug, Clone)]
pub struct Lstm {
    layers: Vec<LstmLayer>,
    width: usize,
}

/// `(h, c)` per layer; empty before the first frame (zeros).
#[derive(Debug, Clone, Default)]
pub struct LstmState {
    layers: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Lstm {
    /// Take `{key}.{weight_ih,weight_hh,bias_ih,bias_hh}_l{n}` for `n < layers` out of
    /// `tensors` (shapes already validated by the loader).
    pub fn build(
        key: &str,
        width: usize,
        layers: usize,
        tensors: &mut TensorMap,
        device: &Device,
    ) -> Result<Self> {
        let h = width;
        let mut take = |name: String| {
            tensors
                .remove(&name)
                .map(|t| t.data)
                .ok_or_else(|| MertError::tensor(&tensors.source, &name, "missing"))
        };
        let mut built = Vec::with_capacity(layers);
        for n in 0..layers {
            let w_ih = take(format!("{key}.weight_ih_l{n}"))?;
            let w_hh = take(format!("{key}.weight_hh_l{n}"))?;
            let b_ih = take(format!("{key}.bias_ih_l{n}"))?;
            let b_hh = take(format!("{key}.bias_hh_l{n}"))?;
            // [4H, H] -> [H, 4H]
            let w_ih_t =
                Tensor::<2>::from_data(TensorData::new(w_ih, [4 * h, h]), device).transpose();
            let bias: Vec<f32> = b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect();
            let bias = Tensor::<2>::from_data(TensorData::new(bias, [1, 4 * h]), device);
            let tiles = (4 * h).div_ceil(TILE);
            let mut tiled = vec![0f32; tiles * h * TILE];
            for (gate, row) in w_hh.chunks_exact(h).enumerate() {
                let (tile, i) = (gate / TILE, gate % TILE);
                for (j, w) in row.iter().enumerate() {
                    tiled[(tile * h + j) * TILE + i] = *w;
                }
            }
            built.push(LstmLayer {
                w_ih_t,
                bias,
                w_hh: tiled.into(),
            });
        }
        Ok(Self {
            layers: built,
            width,
        })
    }

    /// `[1, width, frames]` → `[1, width, frames]` (LSTM output + input), continuing `state`.
    pub fn forward(&self, x: Tensor<3>, state: &mut LstmState) -> Result<Tensor<3>> {
        let [_, c, frames] = x.dims();
        let h = self.width;
        let device = x.device();
        if state.layers.len() != self.layers.len() {
            state.layers = vec![(vec![0f32; h], vec![0f32; h]); self.layers.len()];
        }
        // [frames, width]
        let seq = x.reshape([c, frames]).transpose();
        let mut input = seq.clone();
        for (layer, (hidden, cell)) in self.layers.iter().zip(state.layers.iter_mut()) {
            // [frames, 4H]
            let proj = input.matmul(layer.w_ih_t.clone()) + layer.bias.clone();
            let mut gates = proj.try_into_vec_as::<f32>().map_err(|e| {
                MertError::Invalid(format!("codec LSTM: cannot read the projections: {e:?}"))
            })?;
            let mut out = vec![0f32; frames * h];
            for (g, o) in gates.chunks_exact_mut(4 * h).zip(out.chunks_exact_mut(h)) {
                recurrent_add(g, hidden, &layer.w_hh);
                cell_update(g, hidden, cell);
                o.copy_from_slice(hidden);
            }
            input = Tensor::<2>::from_data(TensorData::new(out, [frames, h]), &device);
        }
        // skip connection, back to [1, width, frames]
        Ok((input + seq).transpose().reshape([1, c, frames]))
    }
}

/// `gates += W_hh h`, with `W_hh` tiled as in [`LstmLayer::w_hh`].
fn recurrent_add(gates: &mut [f32], h: &[f32], w_tiled: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { recurrent_add_avx2(gates, h, w_tiled) };
        }
    }
    recurrent_add_generic(gates, h, w_tiled)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn recurrent_add_avx2(gates: &mut [f32], h: &[f32], w_tiled: &[f32]) {
    recurrent_add_generic(gates, h, w_tiled)
}

/// One tile of accumulators at a time: for each hidden unit `j`, `acc += h[j] · W[tile, j]`.
#[inline(always)]
fn recurrent_add_generic(gates: &mut [f32], h: &[f32], w_tiled: &[f32]) {
    let n = h.len();
    for (tile, weights) in w_tiled.chunks_exact(n * TILE).enumerate() {
        let start = tile * TILE;
        let width = TILE.min(gates.len() - start);
        let mut acc = [0f32; TILE];
        acc[..width].copy_from_slice(&gates[start..start + width]);
        for (&hj, w) in h.iter().zip(weights.chunks_exact(TILE)) {
            for (a, &wi) in acc.iter_mut().zip(w) {
                *a += hj * wi;
            }
        }
        gates[start..start + width].copy_from_slice(&acc[..width]);
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `c = σ(f) c + σ(i) tanh(g)`, `h = σ(o) tanh(c)` from the gates `[i, f, g, o]`.
fn cell_update(gates: &[f32], h: &mut [f32], c: &mut [f32]) {
    let n = h.len();
    let (i, rest) = gates.split_at(n);
    let (f, rest) = rest.split_at(n);
    let (g, o) = rest.split_at(n);
    for k in 0..n {
        let ck = sigmoid(f[k]) * c[k] + sigmoid(i[k]) * g[k].tanh();
        c[k] = ck;
        h[k] = sigmoid(o[k]) * ck.tanh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::HostTensor;

    /// A plain LSTM step in f64, straight from the equations.
    fn reference(x: &[Vec<f64>], w_ih: &[f64], w_hh: &[f64], b: &[f64], h: usize) -> Vec<Vec<f64>> {
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let (mut hs, mut cs) = (vec![0f64; h], vec![0f64; h]);
        let mut out = Vec::new();
        for xt in x {
            let gate = |r: usize| {
                b[r] + (0..h)
                    .map(|j| w_ih[r * h + j] * xt[j] + w_hh[r * h + j] * hs[j])
                    .sum::<f64>()
            };
            let gates: Vec<f64> = (0..4 * h).map(gate).collect();
            for k in 0..h {
                cs[k] = s(gates[h + k]) * cs[k] + s(gates[k]) * gates[2 * h + k].tanh();
                hs[k] = s(gates[3 * h + k]) * cs[k].tanh();
            }
            out.push(hs.iter().zip(xt).map(|(a, b)| a + b).collect());
        }
        out
    }

    #[test]
    fn matches_the_equations_across_chunks() {
        let device = Device::flex();
        // width 20: 80 gates, two tiles with a partial second one
        let h = 20;
        let frames = 9;
        let val = |i: usize, scale: f64| (i as f64 * 0.7311).sin() * scale;
        let w_ih: Vec<f64> = (0..4 * h * h).map(|i| val(i, 0.3)).collect();
        let w_hh: Vec<f64> = (0..4 * h * h).map(|i| val(i + 7, 0.3)).collect();
        let b_ih: Vec<f64> = (0..4 * h).map(|i| val(i + 3, 0.1)).collect();
        let b_hh: Vec<f64> = (0..4 * h).map(|i| val(i + 5, 0.1)).collect();
        let x: Vec<Vec<f64>> = (0..frames)
            .map(|t| (0..h).map(|j| val(t * h + j + 11, 1.0)).collect())
            .collect();
        let b: Vec<f64> = b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect();
        let want = reference(&x, &w_ih, &w_hh, &b, h);

        let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<_>>();
        let mut map = TensorMap::new("test");
        map.insert(
            "l.weight_ih_l0",
            HostTensor::new(vec![4 * h, h], f32s(&w_ih)),
        );
        map.insert(
            "l.weight_hh_l0",
            HostTensor::new(vec![4 * h, h], f32s(&w_hh)),
        );
        map.insert("l.bias_ih_l0", HostTensor::new(vec![4 * h], f32s(&b_ih)));
        map.insert("l.bias_hh_l0", HostTensor::new(vec![4 * h], f32s(&b_hh)));
        let lstm = Lstm::build("l", h, 1, &mut map, &device).unwrap();
        assert!(map.tensors.is_empty());

        // [1, width, frames], fed as 4 + 5 frames
        let cols: Vec<f32> = (0..h)
            .flat_map(|j| x.iter().map(move |xt| xt[j] as f32))
            .collect();
        let input = Tensor::<3>::from_data(TensorData::new(cols, [1, h, frames]), &device);
        let mut state = LstmState::default();
        let a = lstm
            .forward(input.clone().narrow(2, 0, 4), &mut state)
            .unwrap();
        let b = lstm.forward(input.narrow(2, 4, 5), &mut state).unwrap();
        let got = Tensor::cat(vec![a, b], 2)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for t in 0..frames {
            for j in 0..h {
                let d = (got[j * frames + t] as f64 - want[t][j]).abs();
                assert!(d < 1e-5, "frame {t} unit {j}: {d}");
            }
        }
    }
}
