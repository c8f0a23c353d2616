//! The SEANet stacks: causal convs with reflect padding, residual blocks, ELU, the LSTM and
//! (decoder) causal transposed convs, in the order of encodec's `SEANetEncoder.model` /
//! `SEANetDecoder.model` (`encodec/modules/seanet.py`), so layer `i` loads from
//! `encoder.model.{i}.*` / `decoder.model.{i}.*`. Encoder:
//! conv_in → per stage (ratios reversed) [residual blocks → ELU → strided conv ×2 channels]
//! → LSTM (+ skip) → ELU → conv_out. The decoder mirrors it ([`super::decoder`]).
//!
//! Every conv runs as a stream (`encodec/modules/conv.py` `SConv1d` with `causal=True`): its
//! input is padded on the left by `padding_total = (k - 1)·dilation - (stride - 1)` reflected
//! steps at the start of the signal, and on the right by the extra steps that complete the last
//! output frame (`get_extra_padding_for_conv1d`), reflected at the end of the signal. Between
//! chunks a conv keeps the last `padding_total` steps of its input, which is exactly what the
//! next output frames read, so chunked encoding equals encoding the whole signal at once.

use burn::module::{Module, Param};
use burn::nn::PaddingConfig1d;
use burn::nn::conv::Conv1d;
use burn::tensor::activation::elu;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor, TensorData};

use super::CodecConfig;
use super::decoder::{CausalConvTranspose1d, ConvTransposeState};
use super::lstm::{Lstm, LstmState};
use crate::error::Result;
use crate::load::TensorMap;

/// One conv of the layout: where its weights live and its geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvSpec {
    /// State-dict prefix of the torch `nn.Conv1d` (`encoder.model.0.conv.conv`); the weights
    /// are `{key}.weight` `[out, in, kernel]` (or its `weight_g`/`weight_v`) and `{key}.bias`.
    pub key: String,
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
}

/// One entry of `encoder.model`.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    Conv(ConvSpec),
    /// `SEANetResnetBlock`: `block.{1,3}` convs (each after an ELU) and a 1x1 `shortcut` conv
    /// (absent with `true_skip`).
    Residual {
        block: Vec<ConvSpec>,
        shortcut: Option<ConvSpec>,
    },
    Elu,
    /// `SLSTM`: `{key}.weight_ih_l{n}` etc., `layers` layers of width `width`, plus the input.
    Lstm {
        key: String,
        width: usize,
        layers: usize,
    },
    /// `SConvTranspose1d` (decoder only): `{key}.weight` is `[c_in, c_out, kernel]`, as torch's
    /// `ConvTranspose1d` stores it; `kernel - stride` outputs are trimmed on the right.
    ConvTranspose(ConvSpec),
}

/// `(k - 1)·dilation + 1 - stride`: a causal conv's left padding (encodec's `padding_total`).
pub fn padding_total(kernel: usize, stride: usize, dilation: usize) -> usize {
    ((kernel - 1) * dilation + 1).saturating_sub(stride)
}

/// encodec's `get_extra_padding_for_conv1d` for an input of `length` steps: right padding
/// so that the last window is complete (computed with the raw kernel size, as encodec does).
pub fn extra_padding(kernel: usize, stride: usize, dilation: usize, length: usize) -> usize {
    let (k, s, p) = (
        kernel as i64,
        stride as i64,
        padding_total(kernel, stride, dilation) as i64,
    );
    let length = length as i64;
    // n_frames = ceil((length - k + p) / s + 1); the numerator below equals
    // length + (k - 1)(dilation - 1) >= 0.
    let numerator = (length - k + p + s).max(0);
    let frames = (numerator + s - 1) / s;
    let ideal = (frames - 1) * s + (k - p);
    (ideal - length).max(0) as usize
}

pub(crate) fn conv_spec(
    key: String,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> ConvSpec {
    ConvSpec {
        key: format!("{key}.conv.conv"),
        c_in,
        c_out,
        kernel,
        stride,
        dilation,
    }
}

/// `SEANetResnetBlock` number `j` of a stage of `ch` channels, at state-dict prefix `key`.
pub(crate) fn residual_spec(key: &str, ch: usize, j: usize, config: &CodecConfig) -> LayerSpec {
    let hidden = ch / config.compress;
    let dilation = config.dilation_base.pow(j as u32);
    let block = vec![
        conv_spec(
            format!("{key}.block.1"),
            ch,
            hidden,
            config.residual_kernel_size,
            1,
            dilation,
        ),
        conv_spec(format!("{key}.block.3"), hidden, ch, 1, 1, 1),
    ];
    let shortcut =
        (!config.true_skip).then(|| conv_spec(format!("{key}.shortcut"), ch, ch, 1, 1, 1));
    LayerSpec::Residual { block, shortcut }
}

/// The encoder's layers for `config`, named as encodec's state dict names them
/// (`SEANetEncoder.__init__`).
pub fn encoder_layout(config: &CodecConfig) -> Vec<LayerSpec> {
    let nf = config.n_filters;
    let mut layers = vec![LayerSpec::Conv(conv_spec(
        "encoder.model.0".into(),
        config.channels,
        nf,
        config.kernel_size,
        1,
        1,
    ))];
    let key = |layers: &Vec<LayerSpec>| format!("encoder.model.{}", layers.len());
    let mut mult = 1;
    for &ratio in config.ratios.iter().rev() {
        let ch = mult * nf;
        for j in 0..config.n_residual_layers {
            layers.push(residual_spec(&key(&layers), ch, j, config));
        }
        layers.push(LayerSpec::Elu);
        let k = key(&layers);
        layers.push(LayerSpec::Conv(conv_spec(
            k,
            ch,
            2 * ch,
            2 * ratio,
            ratio,
            1,
        )));
        mult *= 2;
    }
    let width = mult * nf;
    if config.lstm > 0 {
        layers.push(LayerSpec::Lstm {
            key: format!("{}.lstm", key(&layers)),
            width,
            layers: config.lstm,
        });
    }
    layers.push(LayerSpec::Elu);
    let k = key(&layers);
    layers.push(LayerSpec::Conv(conv_spec(
        k,
        width,
        config.dimension,
        config.last_kernel_size,
        1,
        1,
    )));
    layers
}

/// A causal conv with encodec's padding (weights folded).
#[derive(Module, Debug)]
pub struct CausalConv1d {
    pub conv: Conv1d,
}

/// What a conv carries from one chunk to the next.
#[derive(Debug, Clone, Default)]
pub struct ConvState {
    /// The last `padding_total` input steps seen.
    history: Option<Tensor<3>>,
    /// Input steps seen so far (the total, once the last chunk is in).
    consumed: usize,
    started: bool,
}

impl CausalConv1d {
    /// Build from a folded weight `[out, in, kernel]` and bias `[out]` (host, row-major).
    pub fn new(spec: &ConvSpec, weight: Vec<f32>, bias: Vec<f32>, device: &Device) -> Self {
        let weight = Tensor::<3>::from_data(
            TensorData::new(weight, [spec.c_out, spec.c_in, spec.kernel]),
            device,
        );
        let bias = Tensor::<1>::from_data(TensorData::new(bias, [spec.c_out]), device);
        Self {
            conv: Conv1d {
                weight: Param::from_tensor(weight),
                bias: Some(Param::from_tensor(bias)),
                stride: spec.stride,
                kernel_size: spec.kernel,
                dilation: spec.dilation,
                groups: 1,
                padding: PaddingConfig1d::Valid,
            },
        }
    }

    /// The left padding ([`padding_total`]), and the history kept between chunks.
    pub fn padding_total(&self) -> usize {
        padding_total(self.conv.kernel_size, self.conv.stride, self.conv.dilation)
    }

    /// The right padding that completes the last frame ([`extra_padding`]).
    pub fn extra_padding(&self, length: usize) -> usize {
        extra_padding(
            self.conv.kernel_size,
            self.conv.stride,
            self.conv.dilation,
            length,
        )
    }

    /// `[1, c_in, n]` new input steps → `[1, c_out, frames]`. `last` marks the end of the signal.
    pub fn forward(&self, x: Tensor<3>, state: &mut ConvState, last: bool) -> Tensor<3> {
        let p = self.padding_total();
        let first = !state.started;
        state.started = true;
        state.consumed += x.dims()[2];
        // [1, c_in, history + n]
        let buf = match state.history.take() {
            Some(h) => Tensor::cat(vec![h, x], 2),
            None => x,
        };
        if !last && p > 0 {
            let len = buf.dims()[2];
            debug_assert!(len >= p, "chunk shorter than the conv's padding");
            state.history = Some(buf.clone().narrow(2, len - p.min(len), p.min(len)));
        }
        let left = if first { p } else { 0 };
        let right = if last {
            self.extra_padding(state.consumed)
        } else {
            0
        };
        self.conv.forward(pad1d_reflect(buf, left, right))
    }
}

/// encodec's `pad1d(x, (left, right), mode='reflect')` over the last axis: reflection without
/// repeating the edge; an input no longer than the padding is first extended with zeros (so
/// the reflection reads them), and those zeros are cut from the end again.
pub fn pad1d_reflect(x: Tensor<3>, left: usize, right: usize) -> Tensor<3> {
    let max_pad = left.max(right);
    if max_pad == 0 {
        return x;
    }
    let len = x.dims()[2];
    let extra = if len <= max_pad { max_pad - len + 1 } else { 0 };
    let x = if extra > 0 {
        x.pad([(0, extra)], PadMode::Constant(0.0))
    } else {
        x
    };
    let padded = x.pad([(left, right)], PadMode::Reflect);
    let end = padded.dims()[2] - extra;
    padded.narrow(2, 0, end)
}

/// `SEANetResnetBlock`: `shortcut(x) + conv_1(ELU(conv_k(ELU(x))))`.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    pub block: Vec<CausalConv1d>,
    pub shortcut: Option<CausalConv1d>,
}

impl ResidualBlock {
    fn convs(&self) -> usize {
        self.block.len() + usize::from(self.shortcut.is_some())
    }

    fn forward(&self, x: Tensor<3>, states: &mut [ConvState], last: bool) -> Tensor<3> {
        let mut y = x.clone();
        for (conv, state) in self.block.iter().zip(states.iter_mut()) {
            y = conv.forward(elu(y, 1.0), state, last);
        }
        let skip = match &self.shortcut {
            Some(conv) => conv.forward(x, &mut states[self.block.len()], last),
            None => x,
        };
        skip + y
    }
}

/// One entry of `encoder.model` / `decoder.model`, built.
#[derive(Debug, Clone)]
pub enum SeanetLayer {
    Conv(CausalConv1d),
    Residual(ResidualBlock),
    Elu,
    Lstm(Lstm),
    ConvTranspose(Box<CausalConvTranspose1d>),
}

/// A SEANet stack (the encoder or the decoder; weights folded, on one device), run as a
/// stream: chunk after chunk with a [`SeanetState`], the same numbers as one pass.
#[derive(Debug, Clone)]
pub struct Seanet {
    pub layers: Vec<SeanetLayer>,
    min_chunk_frames: usize,
}

/// The streaming state of a [`Seanet`]: one [`ConvState`] per conv and one
/// [`ConvTransposeState`] per transposed conv (in layer order), and the LSTM's.
#[derive(Debug, Clone)]
pub struct SeanetState {
    convs: Vec<ConvState>,
    convtrs: Vec<ConvTransposeState>,
    lstm: LstmState,
}

impl SeanetState {
    pub fn new(stack: &Seanet) -> Self {
        let count = |f: fn(&SeanetLayer) -> usize| stack.layers.iter().map(f).sum::<usize>();
        Self {
            convs: vec![
                ConvState::default();
                count(|l| match l {
                    SeanetLayer::Conv(_) => 1,
                    SeanetLayer::Residual(r) => r.convs(),
                    _ => 0,
                })
            ],
            convtrs: vec![
                ConvTransposeState::default();
                count(|l| usize::from(matches!(l, SeanetLayer::ConvTranspose(_))))
            ],
            lstm: LstmState::default(),
        }
    }
}

impl Seanet {
    /// Build the layers of `layout`, taking each tensor out of `tensors` (validated and folded
    /// by the loader: every key is present with its shape). `steps_per_frame`: input steps per
    /// codec frame at the stack's input (`hop` for the encoder, 1 for the decoder).
    pub fn build(
        layout: &[LayerSpec],
        steps_per_frame: usize,
        tensors: &mut TensorMap,
        device: &Device,
    ) -> Result<Self> {
        let mut take = |key: String| -> Result<Vec<f32>> {
            tensors
                .remove(&key)
                .map(|t| t.data)
                .ok_or_else(|| crate::error::MertError::tensor(&tensors.source, &key, "missing"))
        };
        let mut conv = |spec: &ConvSpec| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((
                take(format!("{}.weight", spec.key))?,
                take(format!("{}.bias", spec.key))?,
            ))
        };
        let mut layers = Vec::with_capacity(layout.len());
        let mut lstm_specs = Vec::new();
        for spec in layout {
            let mut causal = |c: &ConvSpec| -> Result<CausalConv1d> {
                let (w, b) = conv(c)?;
                Ok(CausalConv1d::new(c, w, b, device))
            };
            layers.push(match spec {
                LayerSpec::Conv(c) => SeanetLayer::Conv(causal(c)?),
                LayerSpec::Residual { block, shortcut } => SeanetLayer::Residual(ResidualBlock {
                    block: block.iter().map(&mut causal).collect::<Result<_>>()?,
                    shortcut: shortcut.as_ref().map(&mut causal).transpose()?,
                }),
                LayerSpec::Elu => SeanetLayer::Elu,
                LayerSpec::ConvTranspose(c) => {
                    let (w, b) = conv(c)?;
                    SeanetLayer::ConvTranspose(Box::new(CausalConvTranspose1d::new(
                        c, w, b, device,
                    )))
                }
                LayerSpec::Lstm { .. } => {
                    lstm_specs.push(layers.len());
                    SeanetLayer::Elu // placeholder, replaced below
                }
            });
        }
        for i in lstm_specs {
            if let LayerSpec::Lstm {
                key,
                width,
                layers: n,
            } = &layout[i]
            {
                layers[i] = SeanetLayer::Lstm(Lstm::build(key, *width, *n, tensors, device)?);
            }
        }
        Ok(Self {
            min_chunk_frames: min_chunk_frames(layout, steps_per_frame),
            layers,
        })
    }

    /// See [`super::Codec::min_chunk_frames`].
    pub fn min_chunk_frames(&self) -> usize {
        self.min_chunk_frames
    }

    /// `[1, c_in, n]` → `[1, c_out, m]`, continuing from `state`; `last` marks the end.
    pub fn forward(
        &self,
        mut x: Tensor<3>,
        state: &mut SeanetState,
        last: bool,
    ) -> Result<Tensor<3>> {
        let (mut next, mut next_tr) = (0, 0);
        for layer in &self.layers {
            x = match layer {
                SeanetLayer::Conv(conv) => {
                    next += 1;
                    conv.forward(x, &mut state.convs[next - 1], last)
                }
                SeanetLayer::Residual(block) => {
                    let n = block.convs();
                    next += n;
                    block.forward(x, &mut state.convs[next - n..next], last)
                }
                SeanetLayer::Elu => elu(x, 1.0),
                SeanetLayer::Lstm(lstm) => lstm.forward(x, &mut state.lstm)?,
                SeanetLayer::ConvTranspose(conv) => {
                    next_tr += 1;
                    conv.forward(x, &mut state.convtrs[next_tr - 1])
                }
            };
        }
        Ok(x)
    }
}

/// The fewest frames per chunk for which every conv's first chunk is longer than its padding
/// (left `padding_total`, right at most `stride - 1`), so reflection never reaches past it.
/// `per_frame`: input steps per codec frame at the stack's input.
pub(crate) fn min_chunk_frames(layout: &[LayerSpec], per_frame: usize) -> usize {
    let mut per_frame = per_frame;
    let mut need = 1;
    let mut check = |spec: &ConvSpec, per_frame: usize| {
        let p = padding_total(spec.kernel, spec.stride, spec.dilation);
        let pad = p.max(spec.stride - 1);
        need = need.max(pad / per_frame.max(1) + 1);
    };
    for spec in layout {
        match spec {
            LayerSpec::Conv(c) => {
                check(c, per_frame);
                per_frame /= c.stride;
            }
            LayerSpec::Residual { block, shortcut } => {
                block
                    .iter()
                    .chain(shortcut)
                    .for_each(|c| check(c, per_frame));
            }
            LayerSpec::ConvTranspose(c) => per_frame *= c.stride,
            LayerSpec::Elu | LayerSpec::Lstm { .. } => {}
        }
    }
    need
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: Tensor<3>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn reflect_padding_follows_encodec_pad1d() {
        let device = Device::flex();
        let x = Tensor::<3>::from_data(TensorData::new(vec![1., 2., 3., 4.], [1, 1, 4]), &device);
        // plain reflection, edge not repeated
        assert_eq!(
            row(pad1d_reflect(x.clone(), 2, 1)),
            vec![3., 2., 1., 2., 3., 4., 3.]
        );
        // input no longer than the padding: [1, 2, 3, 4, 0, 0] reflected, 2 zeros cut at the end
        assert_eq!(
            row(pad1d_reflect(x, 5, 0)),
            vec![0., 0., 4., 3., 2., 1., 2., 3., 4.]
        );
        let one = Tensor::<3>::from_data(TensorData::new(vec![7.], [1, 1, 1]), &device);
        assert_eq!(row(pad1d_reflect(one, 2, 1)), vec![0., 0., 7., 0.]);
    }

    #[test]
    fn layout_matches_the_official_key_names() {
        let layout = encoder_layout(&CodecConfig::default());
        assert_eq!(layout.len(), 16);
        let LayerSpec::Conv(c) = &layout[12] else {
            panic!("{:?}", layout[12])
        };
        assert_eq!(c.key, "encoder.model.12.conv.conv");
        assert_eq!((c.c_in, c.c_out, c.kernel, c.stride), (256, 512, 16, 8));
        let LayerSpec::Residual { block, shortcut } = &layout[1] else {
            panic!()
        };
        assert_eq!(block[0].key, "encoder.model.1.block.1.conv.conv");
        assert_eq!(
            (block[0].c_in, block[0].c_out, block[0].kernel),
            (32, 16, 3)
        );
        assert_eq!(
            shortcut.as_ref().unwrap().key,
            "encoder.model.1.shortcut.conv.conv"
        );
        assert!(
            matches!(&layout[13], LayerSpec::Lstm { key, width: 512, layers: 2 } if key == "encoder.model.13.lstm")
        );
        let LayerSpec::Conv(c) = &layout[15] else {
            panic!()
        };
        assert_eq!((c.c_in, c.c_out, c.kernel), (512, 128, 7));
        // conv_out: padding 6 at one step per frame
        assert_eq!(min_chunk_frames(&layout, 320), 7);
    }

    #[test]
    fn extra_padding_completes_the_last_frame() {
        let device = Device::flex();
        let spec = ConvSpec {
            key: String::new(),
            c_in: 1,
            c_out: 1,
            kernel: 4,
            stride: 2,
            dilation: 1,
        };
        let conv = CausalConv1d::new(&spec, vec![0.; 4], vec![0.], &device);
        assert_eq!(conv.padding_total(), 2);
        assert_eq!(conv.extra_padding(10), 0);
        assert_eq!(conv.extra_padding(11), 1);
        assert_eq!(conv.extra_padding(1), 1);
        let k3 = ConvSpec {
            kernel: 3,
            stride: 1,
            dilation: 2,
            ..spec
        };
        let conv = CausalConv1d::new(&k3, vec![0.; 3], vec![0.], &device);
        assert_eq!(conv.padding_total(), 4);
        assert_eq!(conv.extra_padding(5), 0);
    }
}
