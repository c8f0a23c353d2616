//! The codec's encoder and decoder as one trainable burn module, for `mert train-codec`.
//!
//! Same layouts and key names as the inference path ([`super::seanet::encoder_layout`],
//! [`super::decoder::decoder_layout`]), but built for autodiff rather than streaming: every
//! conv keeps encodec's weight norm (`weight_g` `[c, 1, 1]`, `weight_v`, torch
//! `weight_norm(dim=0)`: per output channel for a conv, per input channel for a transposed
//! conv, whose weight is `[in, out, kernel]`) and the LSTM runs as tensor ops step by step.
//! One forward covers a whole crop (reflect padding at both ends, as encodec's `SConv1d` does
//! on a whole signal), so for the same weights it computes what the streaming [`super::Codec`]
//! computes. The quantiser between the two is not a parameter: its codebooks follow EMA
//! updates ([`super::ema`]).
//!
//! Initialisation follows torch's defaults (`kaiming_uniform_(a=√5)`: weights and biases
//! `U(±1/√fan_in)`, `fan_in = weight.size(1) · kernel`; LSTM `U(±1/√H)`; then `weight_norm`
//! sets `g = ‖v‖`), drawn from a [`StepRng`] keyed by the seed and each tensor's name, so a
//! run's initial weights do not depend on anything else; `mert train-codec` then rescales the
//! convs on its first batch ([`super::data_init`]), since from torch's defaults the encoder's
//! output barely depends on its input. Parameter ids are hashes of the key
//! names, so optimiser state saved by one process maps onto the next one's parameters.

use std::convert::Infallible;
use std::hash::{DefaultHasher, Hash, Hasher};

use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::module::{conv_transpose1d, conv1d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Tensor, TensorData};

use super::CodecConfig;
use super::decoder::decoder_layout;
use super::seanet::{
    ConvSpec, LayerSpec, encoder_layout, extra_padding, pad1d_reflect, padding_total,
};
use crate::error::{MertError, Result};
use crate::load::tensors::{HostTensor, TensorMap};
use crate::pretrain::StepRng;

/// A weight-normalised conv or transposed conv.
#[derive(Module, Debug)]
pub struct WnConv {
    /// `[c, 1, 1]`: `c = out` for a conv, `in` for a transposed conv.
    pub weight_g: Param<Tensor<3>>,
    /// The conv's weight layout (`[out, in, k]`, transposed `[in, out, k]`).
    pub weight_v: Param<Tensor<3>>,
    pub bias: Param<Tensor<1>>,
    pub stride: usize,
    pub dilation: usize,
    pub transposed: bool,
}

impl WnConv {
    /// `g · v / ‖v‖`, the norm over all axes but the first.
    pub fn weight(&self) -> Tensor<3> {
        let v = self.weight_v.val();
        let norm = v.clone().powi_scalar(2).sum_dim(2).sum_dim(1).sqrt();
        self.weight_g.val() * v / norm
    }

    /// `[B, c_in, n]` → `[B, c_out, m]` on a whole signal: a causal conv reflect-pads by
    /// `padding_total` on the left and completes the last frame on the right
    /// (`SConv1d`); a transposed conv trims `kernel - stride` on the right
    /// (`SConvTranspose1d`, `trim_right_ratio = 1`).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let w = self.weight();
        let kernel = w.dims()[2];
        let (s, d) = (self.stride, self.dilation);
        if self.transposed {
            let options = ConvTransposeOptions::new([s], [0], [0], [1], 1);
            // [B, c_out, (n - 1)·s + k]
            let y = conv_transpose1d(x, w, Some(self.bias.val()), options);
            let len = y.dims()[2];
            y.narrow(2, 0, len - kernel.saturating_sub(s))
        } else {
            let n = x.dims()[2];
            let left = padding_total(kernel, s, d);
            let right = extra_padding(kernel, s, d, n);
            let options = ConvOptions::new([s], [0], [d], 1);
            conv1d(
                pad1d_reflect(x, left, right),
                w,
                Some(self.bias.val()),
                options,
            )
        }
    }
}

/// encodec's `SLSTM` (a `torch.nn.LSTM` plus its input): `weight_ih_l{n}` `[4H, H]` etc.
#[derive(Module, Debug)]
pub struct LstmParams {
    pub weight_ih: Vec<Param<Tensor<2>>>,
    pub weight_hh: Vec<Param<Tensor<2>>>,
    pub bias_ih: Vec<Param<Tensor<1>>>,
    pub bias_hh: Vec<Param<Tensor<1>>>,
}

impl LstmParams {
    /// `[B, H, T]` → `[B, H, T]`: the LSTM over frames from a zero state, plus the input.
    /// Gate order (input, forget, cell, output) as PyTorch's.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, h, t] = x.dims();
        // [B, T, H]
        let seq = x.swap_dims(1, 2);
        let mut input = seq.clone();
        for n in 0..self.weight_ih.len() {
            let bias = (self.bias_ih[n].val() + self.bias_hh[n].val()).reshape([1, 4 * h]);
            // [B·T, 4H] -> [B, T, 4H]
            let proj = (input
                .reshape([b * t, h])
                .matmul(self.weight_ih[n].val().transpose())
                + bias)
                .reshape([b, t, 4 * h]);
            // [H, 4H]
            let w_hh = self.weight_hh[n].val().transpose();
            let device = proj.device();
            let mut hidden = Tensor::<2>::zeros([b, h], &device);
            let mut cell = Tensor::<2>::zeros([b, h], &device);
            let mut outs = Vec::with_capacity(t);
            for step in 0..t {
                // [B, 4H]
                let gates = proj.clone().narrow(1, step, 1).reshape([b, 4 * h])
                    + hidden.matmul(w_hh.clone());
                let mut g = gates.chunk(4, 1).into_iter();
                let (Some(i), Some(f), Some(c), Some(o)) = (g.next(), g.next(), g.next(), g.next())
                else {
                    unreachable!("4H gates split in 4");
                };
                cell = sigmoid(f) * cell + sigmoid(i) * tanh(c);
                hidden = sigmoid(o) * tanh(cell.clone());
                outs.push(hidden.clone());
            }
            // [B, T, H]
            input = Tensor::stack(outs, 1);
        }
        (input + seq).swap_dims(1, 2)
    }
}

/// One SEANet stack: its convs in layout order (a residual block's `block.*` convs, then its
/// `shortcut`) and its LSTM.
#[derive(Module, Debug)]
pub struct SeanetTrain {
    pub convs: Vec<WnConv>,
    pub lstm: Option<LstmParams>,
    #[module(skip)]
    pub layout: Vec<LayerSpec>,
}

/// The convs of a layout in the order [`SeanetTrain::convs`] holds them, with whether each is
/// transposed.
pub fn layout_convs(layout: &[LayerSpec]) -> Vec<(&ConvSpec, bool)> {
    let mut out = Vec::new();
    for spec in layout {
        match spec {
            LayerSpec::Conv(c) => out.push((c, false)),
            LayerSpec::ConvTranspose(c) => out.push((c, true)),
            LayerSpec::Residual { block, shortcut } => {
                out.extend(block.iter().chain(shortcut).map(|c| (c, false)));
            }
            LayerSpec::Elu | LayerSpec::Lstm { .. } => {}
        }
    }
    out
}

impl SeanetTrain {
    /// `[B, c_in, n]` → `[B, c_out, m]` on whole signals.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let convs = &self.convs;
        let Ok(y) = walk::<Infallible>(&self.layout, self.lstm.as_ref(), x, |i, x| {
            Ok(convs[i].forward(x))
        });
        y
    }
}

/// A stack's forward pass with conv `i` (in [`layout_convs`] order) applied by `conv(i, x)`:
/// [`SeanetTrain::forward`], and the data-dependent initialisation, which rescales each conv
/// on the output of the ones before it ([`super::data_init`]).
pub(crate) fn walk<E>(
    layout: &[LayerSpec],
    lstm: Option<&LstmParams>,
    mut x: Tensor<3>,
    mut conv: impl FnMut(usize, Tensor<3>) -> std::result::Result<Tensor<3>, E>,
) -> std::result::Result<Tensor<3>, E> {
    let mut index = 0;
    let mut next = |x: Tensor<3>| {
        index += 1;
        conv(index - 1, x)
    };
    for spec in layout {
        x = match spec {
            LayerSpec::Conv(_) | LayerSpec::ConvTranspose(_) => next(x)?,
            LayerSpec::Residual { block, shortcut } => {
                let mut y = x.clone();
                for _ in block {
                    y = next(elu(y))?;
                }
                let skip = if shortcut.is_some() { next(x)? } else { x };
                skip + y
            }
            LayerSpec::Elu => elu(x),
            LayerSpec::Lstm { .. } => match lstm {
                Some(lstm) => lstm.forward(x),
                None => x,
            },
        };
    }
    Ok(x)
}

/// `ELU(x)` (alpha 1) whose gradient stays finite: burn's `elu` takes `exp` of every input,
/// and where `x > 88` (f32 `exp` overflows) its backward pass multiplies a zero by infinity,
/// a NaN that a training run met after ~130 steps; here `exp` only sees `min(x, 0)`.
fn elu(x: Tensor<3>) -> Tensor<3> {
    let negative = x.clone().lower_equal_scalar(0);
    let scaled = x.clone().clamp_max(0.0).exp().sub_scalar(1.0);
    x.mask_where(negative, scaled)
}

/// The trainable codec (encoder and decoder; the codebooks live in [`super::ema::EmaRvq`]).
#[derive(Module, Debug)]
pub struct CodecModel {
    pub encoder: SeanetTrain,
    pub decoder: SeanetTrain,
}

fn param_id(key: &str) -> ParamId {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    ParamId::from(h.finish())
}

fn param<const D: usize>(
    key: &str,
    shape: [usize; D],
    data: Vec<f32>,
    device: &Device,
) -> Param<Tensor<D>> {
    let t = Tensor::<D>::from_data(TensorData::new(data, shape), device);
    // Trainable on an autodiff device; plain tensors elsewhere (inference, parity tests).
    let t = if device.is_autodiff() {
        t.require_grad()
    } else {
        t
    };
    Param::initialized(param_id(key), t)
}

/// Where the tensors of a stack come from: fresh random values, or a state dict.
enum Source<'a> {
    Random(u64),
    Dict(&'a mut TensorMap),
}

impl Source<'_> {
    /// The tensor `key` of `shape`: drawn `U(±bound)`, or taken out of the map (checked).
    fn take(&mut self, key: &str, shape: &[usize], bound: f64) -> Result<Vec<f32>> {
        match self {
            Source::Random(seed) => {
                let mut h = DefaultHasher::new();
                key.hash(&mut h);
                let mut rng = StepRng::for_step(*seed, h.finish(), 0);
                let n = shape.iter().product();
                Ok((0..n)
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                    .collect())
            }
            Source::Dict(map) => {
                let t = map.remove(key).ok_or_else(|| {
                    MertError::tensor(
                        &map.source,
                        key,
                        format!("missing; expected shape {shape:?}"),
                    )
                })?;
                if t.shape != shape || t.data.len() != shape.iter().product::<usize>() {
                    return Err(MertError::tensor(
                        &map.source,
                        key,
                        format!("expected shape {shape:?}, found {:?}", t.shape),
                    ));
                }
                Ok(t.data)
            }
        }
    }

    /// A conv's `(g, v)`: random (`g = ‖v‖`), `weight_g`/`weight_v` from the map, or a folded
    /// `weight` from the map (`v = w`, `g = ‖w‖`, so training can start from a kit file).
    fn conv_weight(
        &mut self,
        key: &str,
        shape: [usize; 3],
        bound: f64,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let folded = format!("{key}.weight");
        let v = match self {
            Source::Dict(map) if map.get(&folded).is_some() => self.take(&folded, &shape, bound)?,
            Source::Dict(_) => {
                let g = self.take(&format!("{key}.weight_g"), &[shape[0], 1, 1], bound)?;
                let v = self.take(&format!("{key}.weight_v"), &shape, bound)?;
                return Ok((g, v));
            }
            Source::Random(_) => self.take(&format!("{key}.weight_v"), &shape, bound)?,
        };
        let per = shape[1] * shape[2];
        let g = v
            .chunks_exact(per)
            .map(|row| row.iter().map(|x| x * x).sum::<f32>().sqrt())
            .collect();
        Ok((g, v))
    }
}

fn build_stack(
    layout: Vec<LayerSpec>,
    source: &mut Source,
    device: &Device,
) -> Result<SeanetTrain> {
    let mut convs = Vec::new();
    for (spec, transposed) in layout_convs(&layout) {
        let (first, second) = if transposed {
            (spec.c_in, spec.c_out)
        } else {
            (spec.c_out, spec.c_in)
        };
        let shape = [first, second, spec.kernel];
        let bound = 1.0 / ((second * spec.kernel) as f64).sqrt();
        let (g, v) = source.conv_weight(&spec.key, shape, bound)?;
        let b = source.take(&format!("{}.bias", spec.key), &[spec.c_out], bound)?;
        convs.push(WnConv {
            weight_g: param(&format!("{}.weight_g", spec.key), [first, 1, 1], g, device),
            weight_v: param(&format!("{}.weight_v", spec.key), shape, v, device),
            bias: param(&format!("{}.bias", spec.key), [spec.c_out], b, device),
            stride: spec.stride,
            dilation: spec.dilation,
            transposed,
        });
    }
    let mut lstm = None;
    for spec in &layout {
        if let LayerSpec::Lstm { key, width, layers } = spec {
            let h = *width;
            let bound = 1.0 / (h as f64).sqrt();
            let mut p = LstmParams {
                weight_ih: Vec::new(),
                weight_hh: Vec::new(),
                bias_ih: Vec::new(),
                bias_hh: Vec::new(),
            };
            for n in 0..*layers {
                let mut matrix = |name: &str| -> Result<Param<Tensor<2>>> {
                    let k = format!("{key}.{name}_l{n}");
                    let data = source.take(&k, &[4 * h, h], bound)?;
                    Ok(param(&k, [4 * h, h], data, device))
                };
                p.weight_ih.push(matrix("weight_ih")?);
                p.weight_hh.push(matrix("weight_hh")?);
                for (name, out) in [("bias_ih", &mut p.bias_ih), ("bias_hh", &mut p.bias_hh)] {
                    let k = format!("{key}.{name}_l{n}");
                    let data = source.take(&k, &[4 * h], bound)?;
                    out.push(param(&k, [4 * h], data, device));
                }
            }
            lstm = Some(p);
        }
    }
    Ok(SeanetTrain {
        convs,
        lstm,
        layout,
    })
}

impl CodecModel {
    /// Fresh weights for `config` (torch's default initialisation, seeded).
    pub fn init(config: &CodecConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut source = Source::Random(seed);
        Ok(Self {
            encoder: build_stack(encoder_layout(config), &mut source, device)?,
            decoder: build_stack(decoder_layout(config), &mut source, device)?,
        })
    }

    /// Take every encoder and decoder tensor of `config` out of `tensors` (weight-normalised
    /// pairs, or folded weights); a missing or mis-shaped one is an error naming it. What is
    /// left in `tensors` (the quantiser's) is the caller's.
    pub fn from_state_dict(
        config: &CodecConfig,
        tensors: &mut TensorMap,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let mut source = Source::Dict(tensors);
        Ok(Self {
            encoder: build_stack(encoder_layout(config), &mut source, device)?,
            decoder: build_stack(decoder_layout(config), &mut source, device)?,
        })
    }

    /// Every weight under encodec's key names, weight norm kept (`weight_g`, `weight_v`).
    pub fn to_state_dict(&self, map: &mut TensorMap) -> Result<()> {
        for stack in [&self.encoder, &self.decoder] {
            for ((spec, _), conv) in layout_convs(&stack.layout).into_iter().zip(&stack.convs) {
                put(map, &format!("{}.weight_g", spec.key), conv.weight_g.val())?;
                put(map, &format!("{}.weight_v", spec.key), conv.weight_v.val())?;
                put(map, &format!("{}.bias", spec.key), conv.bias.val())?;
            }
            let key = stack.layout.iter().find_map(|s| match s {
                LayerSpec::Lstm { key, .. } => Some(key),
                _ => None,
            });
            if let (Some(key), Some(lstm)) = (key, &stack.lstm) {
                for n in 0..lstm.weight_ih.len() {
                    put(
                        map,
                        &format!("{key}.weight_ih_l{n}"),
                        lstm.weight_ih[n].val(),
                    )?;
                    put(
                        map,
                        &format!("{key}.weight_hh_l{n}"),
                        lstm.weight_hh[n].val(),
                    )?;
                    put(map, &format!("{key}.bias_ih_l{n}"), lstm.bias_ih[n].val())?;
                    put(map, &format!("{key}.bias_hh_l{n}"), lstm.bias_hh[n].val())?;
                }
            }
        }
        Ok(())
    }

    /// Audio `[B, 1, L]` → embeddings `[B, dimension, ceil(L / hop)]`.
    pub fn encode(&self, audio: Tensor<3>) -> Tensor<3> {
        self.encoder.forward(audio)
    }

    /// Embeddings `[B, dimension, T]` → audio `[B, 1, T · hop]`.
    pub fn decode(&self, embeddings: Tensor<3>) -> Tensor<3> {
        self.decoder.forward(embeddings)
    }
}

fn put<const D: usize>(map: &mut TensorMap, key: &str, t: Tensor<D>) -> Result<()> {
    let shape = t.dims().to_vec();
    let data = t
        .try_into_vec_as::<f32>()
        .map_err(|e| MertError::tensor(&map.source, key, format!("cannot read: {e:?}")))?;
    map.insert(key, HostTensor::new(shape, data));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> CodecConfig {
        CodecConfig {
            n_filters: 2,
            dimension: 4,
            ratios: vec![2, 2],
            lstm: 1,
            codebook_size: 8,
            n_q: 2,
            ..CodecConfig::default()
        }
    }

    /// Large inputs (past f32 `exp`'s range) keep a finite gradient of 1.
    #[test]
    fn elu_gradient_is_finite_for_large_inputs() {
        let device = Device::flex().autodiff();
        let x =
            Tensor::<3>::from_data(TensorData::new(vec![-2f32, 0.5, 100.0], [1, 1, 3]), &device)
                .require_grad();
        let y = elu(x.clone());
        let grads = y.clone().sum().backward();
        let g = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert!((g[0] - (-2f32).exp()).abs() < 1e-6, "{g:?}");
        assert_eq!(&g[1..], &[1.0, 1.0]);
        let y = y.into_data().try_into_vec::<f32>().unwrap();
        assert!(
            (y[0] - ((-2f32).exp() - 1.0)).abs() < 1e-6 && y[2] == 100.0,
            "{y:?}"
        );
    }

    #[test]
    fn shapes_and_state_dict_round_trip() {
        let device = Device::flex();
        let config = small();
        let model = CodecModel::init(&config, 3, &device).unwrap();
        let x = Tensor::<3>::from_data(
            TensorData::new(
                (0..18).map(|i| (i as f32 * 0.3).sin()).collect::<Vec<_>>(),
                [1, 1, 18],
            ),
            &device,
        );
        let emb = model.encode(x.clone());
        // ceil(18 / 4) frames
        assert_eq!(emb.dims(), [1, 4, 5]);
        let y = model.decode(emb);
        assert_eq!(y.dims(), [1, 1, 20]);
        let mut map = TensorMap::new("test");
        model.to_state_dict(&mut map).unwrap();
        assert!(map.get("encoder.model.0.conv.conv.weight_g").is_some());
        assert!(map.get("decoder.model.3.convtr.convtr.weight_v").is_some());
        // weight norm starts at g = ‖v‖
        let g = &map.get("encoder.model.0.conv.conv.weight_g").unwrap().data;
        let v = &map.get("encoder.model.0.conv.conv.weight_v").unwrap().data;
        let norm0: f32 = v[..7].iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((g[0] - norm0).abs() < 1e-6);
        let mut copy = map.clone();
        let again = CodecModel::from_state_dict(&config, &mut copy, &device).unwrap();
        assert!(copy.tensors.is_empty(), "{:?}", copy.tensors.keys());
        let y2 = again.decode(again.encode(x));
        let (a, b) = (
            y.into_data().try_into_vec::<f32>().unwrap(),
            y2.into_data().try_into_vec::<f32>().unwrap(),
        );
        assert_eq!(a, b);
        // a missing tensor is named
        map.remove("decoder.model.1.lstm.bias_hh_l0");
        let e = CodecModel::from_state_dict(&config, &mut map, &device).unwrap_err();
        assert!(
            e.to_string().contains("decoder.model.1.lstm.bias_hh_l0"),
            "{e}"
        );
    }
}
