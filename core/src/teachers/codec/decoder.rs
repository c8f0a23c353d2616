//! The SEANet decoder's layout and its one layer type the encoder lacks, the causal transposed
//! conv. Mirrors encodec 0.1.1 `SEANetDecoder` (`encodec/modules/seanet.py`):
//! conv_in (dimension → `n_filters · 2^stages`) → LSTM (+ skip) → per stage (ratios in order)
//! [ELU → transposed conv (kernel `2·ratio`, stride `ratio`, ÷2 channels) → residual blocks]
//! → ELU → conv_out (→ `channels`). No final activation (encodec's default).
//!
//! `SConvTranspose1d` with `causal=True, trim_right_ratio=1` runs `ConvTranspose1d` and cuts
//! `kernel - stride` outputs on the right, so `n` frames give `n · stride` steps. As a stream,
//! a chunk's full output is `(n - 1)·stride + kernel` steps: the first `n · stride` are final
//! once the previous chunk's overlapping tail is added, the last `kernel - stride` are carried
//! to the next chunk, and the tail left after the last chunk is what encodec trims.

use burn::tensor::module::conv_transpose1d;
use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::{Device, Tensor, TensorData};

use super::CodecConfig;
use super::seanet::{ConvSpec, LayerSpec, conv_spec, residual_spec};

/// The decoder's layers for `config`, named as encodec's state dict names them
/// (`SEANetDecoder.__init__`: `decoder.model.{i}`).
pub fn decoder_layout(config: &CodecConfig) -> Vec<LayerSpec> {
    let nf = config.n_filters;
    let mut mult = 1usize << config.ratios.len();
    let key = |layers: &Vec<LayerSpec>| format!("decoder.model.{}", layers.len());
    let mut layers = vec![LayerSpec::Conv(conv_spec(
        "decoder.model.0".into(),
        config.dimension,
        mult * nf,
        config.kernel_size,
        1,
        1,
    ))];
    if config.lstm > 0 {
        layers.push(LayerSpec::Lstm {
            key: format!("{}.lstm", key(&layers)),
            width: mult * nf,
            layers: config.lstm,
        });
    }
    for &ratio in &config.ratios {
        layers.push(LayerSpec::Elu);
        let k = key(&layers);
        layers.push(LayerSpec::ConvTranspose(ConvSpec {
            key: format!("{k}.convtr.convtr"),
            c_in: mult * nf,
            c_out: mult * nf / 2,
            kernel: 2 * ratio,
            stride: ratio,
            dilation: 1,
        }));
        for j in 0..config.n_residual_layers {
            layers.push(residual_spec(&key(&layers), mult * nf / 2, j, config));
        }
        mult /= 2;
    }
    layers.push(LayerSpec::Elu);
    let k = key(&layers);
    layers.push(LayerSpec::Conv(conv_spec(
        k,
        nf,
        config.channels,
        config.last_kernel_size,
        1,
        1,
    )));
    layers
}

/// A causal transposed conv (weights folded): `weight` `[c_in, c_out, kernel]`.
#[derive(Debug, Clone)]
pub struct CausalConvTranspose1d {
    weight: Tensor<3>,
    /// `[1, c_out, 1]`
    bias: Tensor<3>,
    stride: usize,
    kernel: usize,
}

/// The overlapping tail `[1, c_out, kernel - stride]` of the previous chunk (no bias in it).
#[derive(Debug, Clone, Default)]
pub struct ConvTransposeState {
    tail: Option<Tensor<3>>,
}

impl CausalConvTranspose1d {
    /// Build from a folded weight `[in, out, kernel]` and bias `[out]` (host, row-major).
    pub fn new(spec: &ConvSpec, weight: Vec<f32>, bias: Vec<f32>, device: &Device) -> Self {
        Self {
            weight: Tensor::from_data(
                TensorData::new(weight, [spec.c_in, spec.c_out, spec.kernel]),
                device,
            ),
            bias: Tensor::from_data(TensorData::new(bias, [1, spec.c_out, 1]), device),
            stride: spec.stride,
            kernel: spec.kernel,
        }
    }

    /// `[1, c_in, n]` → `[1, c_out, n · stride]`, continuing from `state`.
    pub fn forward(&self, x: Tensor<3>, state: &mut ConvTransposeState) -> Tensor<3> {
        let n = x.dims()[2];
        let options = ConvTransposeOptions::new([self.stride], [0], [0], [1], 1);
        // [1, c_out, (n - 1)·stride + kernel]
        let mut y = conv_transpose1d(x, self.weight.clone(), None, options);
        let overlap = self.kernel.saturating_sub(self.stride);
        if let Some(tail) = state.tail.take() {
            let len = y.dims()[2];
            let head = y.clone().narrow(2, 0, overlap) + tail;
            y = Tensor::cat(vec![head, y.narrow(2, overlap, len - overlap)], 2);
        }
        let emit = n * self.stride;
        state.tail = (overlap > 0).then(|| y.clone().narrow(2, emit, overlap));
        y.narrow(2, 0, emit) + self.bias.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_official_key_names() {
        let layout = decoder_layout(&CodecConfig::default());
        // conv, lstm, 4 x (elu, convtr, residual), elu, conv
        assert_eq!(layout.len(), 2 + 4 * 3 + 2);
        let LayerSpec::Conv(c) = &layout[0] else {
            panic!("{:?}", layout[0])
        };
        assert_eq!(c.key, "decoder.model.0.conv.conv");
        assert_eq!((c.c_in, c.c_out, c.kernel), (128, 512, 7));
        assert!(
            matches!(&layout[1], LayerSpec::Lstm { key, width: 512, layers: 2 } if key == "decoder.model.1.lstm")
        );
        let LayerSpec::ConvTranspose(c) = &layout[3] else {
            panic!("{:?}", layout[3])
        };
        assert_eq!(c.key, "decoder.model.3.convtr.convtr");
        assert_eq!((c.c_in, c.c_out, c.kernel, c.stride), (512, 256, 16, 8));
        let LayerSpec::Residual { block, shortcut } = &layout[4] else {
            panic!("{:?}", layout[4])
        };
        assert_eq!(block[0].key, "decoder.model.4.block.1.conv.conv");
        assert_eq!((block[0].c_in, block[0].c_out), (256, 128));
        assert_eq!(
            shortcut.as_ref().unwrap().key,
            "decoder.model.4.shortcut.conv.conv"
        );
        let LayerSpec::Conv(c) = &layout[15] else {
            panic!("{:?}", layout[15])
        };
        assert_eq!(c.key, "decoder.model.15.conv.conv");
        assert_eq!((c.c_in, c.c_out, c.kernel), (32, 1, 7));
    }

    /// Chunked transposed conv = one pass over the whole input with the right trim.
    #[test]
    fn streamed_transposed_conv_equals_one_pass() {
        let device = Device::flex();
        let spec = ConvSpec {
            key: String::new(),
            c_in: 2,
            c_out: 3,
            kernel: 6,
            stride: 3,
            dilation: 1,
        };
        let w: Vec<f32> = (0..36).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.1).collect();
        let conv = CausalConvTranspose1d::new(&spec, w.clone(), vec![0.5, -0.25, 1.0], &device);
        let x: Vec<f32> = (0..14).map(|i| (i as f32 * 0.37).sin()).collect();
        let input = Tensor::<3>::from_data(TensorData::new(x, [1, 2, 7]), &device);
        // reference: full transposed conv with bias, right trim of kernel - stride
        let weight = Tensor::<3>::from_data(TensorData::new(w, [2, 3, 6]), &device);
        let bias = Tensor::<1>::from_data(TensorData::new(vec![0.5, -0.25, 1.0], [3]), &device);
        let options = ConvTransposeOptions::new([3], [0], [0], [1], 1);
        let full = conv_transpose1d(input.clone(), weight, Some(bias), options);
        let want = full
            .narrow(2, 0, 21)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let mut state = ConvTransposeState::default();
        let parts: Vec<Tensor<3>> = [(0, 3), (3, 1), (4, 3)]
            .into_iter()
            .map(|(s, n)| conv.forward(input.clone().narrow(2, s, n), &mut state))
            .collect();
        let got = Tensor::cat(parts, 2)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-6, "{i}: {a} vs {b}");
        }
    }
}
