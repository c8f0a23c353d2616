//! Quantized weights for the kit's model file. Every loader path (CLI, web, C ABI) reads a
//! quantized file into f32 tensors ([`decode`]) and keeps the 8-bit codes alongside
//! ([`Codes`]); building the model on burn's CPU backend on a CPU with the 8-bit kernel
//! ([`gemm::fast`]) packs the Linear and conv codes into the layers and drops their f32 copy,
//! so those weights stay 8-bit in memory and their products run on them ([`gemm`]).
//! Elsewhere (wgpu, WebAssembly, CPUs without AVX-512 VNNI) the f32 tensors are used.
//!
//! Schemes (`mert.quant` metadata):
//! - `f32`: every tensor F32.
//! - `f16`: the selected weights stored as F16 under their own key.
//! - `q8`: the selected weights as `KEY.q` (I8, the weight's shape) plus `KEY.scale`
//!   (F32 `[out, ceil(row / block)]`), `mert.quant.block` stating the block (`channel`, the
//!   default: one scale per output channel, see [`PER_CHANNEL`]).
//! - `q4`: like q8 with `KEY.q` U8 `[out, ceil(row / 2)]`, two 4-bit codes per byte, for
//!   the transformer (its layers and the positional conv); the convolutional front end
//!   (`feature_extractor.*`, `feature_projection.*`) keeps 8-bit codes (`KEY.q` I8, as in q8):
//!   every later layer inherits its error, and at 4 bits it alone costs more accuracy than
//!   all transformer layers together (about 4.5% of the 95M model's values).
//!
//! See [`blocks`] for the code layout. Blocks run along the input dimension (a row is one
//! output channel: a Linear's `in`, a conv's `in / groups * kernel`); q4's default block is 32
//! values. A block at least the row length gives one scale per output channel.
//!
//! Which tensors ([`quantizes`]): every `*.weight` of rank >= 2 with at least
//! [`MIN_ELEMENTS`] values and at least [`MIN_ROW`] values per output channel: the
//! attention and feed-forward Linears, the feature projection, the positional conv and the
//! feature encoder's convs but its first (10 taps on one input channel). Biases, norms, that
//! first conv and a tagging head (`head.*`) stay F32 in every scheme: together well under
//! 1% of the 95M model.
//!
//! Reading accepts any tensor stored plain (F32, F16, BF16) whatever the scheme; a `.q` needs
//! its `.scale`, the dtype and shapes of its scheme, and a model weight as its base key. The
//! `.q` dtype says which codes a tensor holds: I8 8-bit (q8 and q4 files), U8 packed 4-bit
//! (q4 files).

pub mod blocks;
mod check;
pub mod gemm;
mod store;

pub use check::{cosine, hidden_state_cosines, test_signal};
pub use store::{Codes, Stored, decode, encode};

/// Suffix of a quantized tensor's codes.
pub const Q_SUFFIX: &str = ".q";
/// Suffix of a quantized tensor's scales.
pub const SCALE_SUFFIX: &str = ".scale";
/// Values per block of q4 unless stated otherwise.
pub const DEFAULT_BLOCK: usize = 32;
/// A block longer than any row: one scale per output channel, q8's default (written
/// `channel` in `mert.quant.block`). With activations quantized per row by the 8-bit kernel,
/// q8 blocks of 32 gain no accuracy over one scale per channel (95M shape: min hidden-state
/// cosine 0.99988 either way, README), and only a channel scale lets the conv layers, whose
/// inputs the kernel takes tap-major, run on their codes.
pub const PER_CHANNEL: usize = 1 << 30;
/// Weights with fewer values stay f32.
pub const MIN_ELEMENTS: usize = 1024;
/// Weights with fewer values per output channel stay f32.
pub const MIN_ROW: usize = 32;

/// How the selected weights of a kit file are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    F32,
    F16,
    Q8,
    Q4,
}

impl Scheme {
    /// The `mert.quant` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8 => "q8",
            Self::Q4 => "q4",
        }
    }

    /// Parse a `mert.quant` name (`f32`, `f16`, `q8`, `q4`).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::F32, Self::F16, Self::Q8, Self::Q4]
            .into_iter()
            .find(|s| s.name() == name)
    }

    /// Whether the scheme stores `.q` codes with per-block `.scale`s.
    pub fn is_blocked(self) -> bool {
        matches!(self, Self::Q8 | Self::Q4)
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A scheme with its block size (used by q8 and q4 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub scheme: Scheme,
    pub block: usize,
}

impl Layout {
    /// Every tensor f32.
    pub const F32: Layout = Layout {
        scheme: Scheme::F32,
        block: DEFAULT_BLOCK,
    };

    /// `scheme` with its default block: one scale per output channel for q8, blocks of
    /// [`DEFAULT_BLOCK`] for q4 (4 bits leave too few levels for a channel scale).
    pub fn new(scheme: Scheme) -> Self {
        let block = if scheme == Scheme::Q8 {
            PER_CHANNEL
        } else {
            DEFAULT_BLOCK
        };
        Self { scheme, block }
    }

    /// The block as `mert.quant.block` states it: a number, or `channel`.
    pub fn block_name(&self) -> String {
        if self.block >= PER_CHANNEL {
            "channel".to_string()
        } else {
            self.block.to_string()
        }
    }

    /// Parse a `mert.quant.block` value: a positive number or `channel`.
    pub fn parse_block(text: &str) -> Option<usize> {
        match text {
            "channel" => Some(PER_CHANNEL),
            _ => text
                .parse::<usize>()
                .ok()
                .filter(|&b| b > 0)
                .map(|b| b.min(PER_CHANNEL)),
        }
    }

    /// The same scheme with `block` values per scale (at least 1).
    pub fn with_block(self, block: usize) -> Self {
        Self {
            block: block.max(1),
            ..self
        }
    }
}

/// The codes a selected weight gets under `scheme`: q4 keeps 8 bits for the front end.
pub fn codes_for(key: &str, scheme: Scheme) -> Scheme {
    let front_end = key.starts_with("feature_extractor.") || key.starts_with("feature_projection.");
    if scheme == Scheme::Q4 && front_end {
        Scheme::Q8
    } else {
        scheme
    }
}

/// Whether a model tensor is stored in the scheme's format (else f32); see the module doc.
pub fn quantizes(key: &str, shape: &[usize]) -> bool {
    let n: usize = shape.iter().product();
    key.ends_with(".weight")
        && shape.len() >= 2
        && n >= MIN_ELEMENTS
        && n / shape[0].max(1) >= MIN_ROW
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_names_round_trip() {
        for s in [Scheme::F32, Scheme::F16, Scheme::Q8, Scheme::Q4] {
            assert_eq!(Scheme::from_name(s.name()), Some(s));
        }
        assert_eq!(Scheme::from_name("q3"), None);
        assert_eq!(Layout::new(Scheme::Q8).with_block(0).block, 1);
    }

    #[test]
    fn only_large_weights_are_selected() {
        let q = "encoder.layers.0.attention.q_proj.weight";
        assert!(quantizes(q, &[768, 768]));
        assert!(quantizes(
            "feature_extractor.conv_layers.1.conv.weight",
            &[512, 512, 3]
        ));
        assert!(quantizes(
            "encoder.pos_conv_embed.conv.weight",
            &[768, 48, 128]
        ));
        // The first conv: 10 taps on one channel per output.
        assert!(!quantizes(
            "feature_extractor.conv_layers.0.conv.weight",
            &[512, 1, 10]
        ));
        assert!(!quantizes("encoder.layers.0.attention.q_proj.bias", &[768]));
        assert!(!quantizes("encoder.layer_norm.weight", &[768]));
        assert!(!quantizes("small.weight", &[16, 32]));
    }

    #[test]
    fn q4_keeps_eight_bits_for_the_front_end() {
        let conv = "feature_extractor.conv_layers.1.conv.weight";
        let proj = "feature_projection.projection.weight";
        let ff = "encoder.layers.0.feed_forward.output_dense.weight";
        assert_eq!(codes_for(conv, Scheme::Q4), Scheme::Q8);
        assert_eq!(codes_for(proj, Scheme::Q4), Scheme::Q8);
        assert_eq!(codes_for(ff, Scheme::Q4), Scheme::Q4);
        assert_eq!(
            codes_for("encoder.pos_conv_embed.conv.weight", Scheme::Q4),
            Scheme::Q4
        );
        assert_eq!(codes_for(conv, Scheme::Q8), Scheme::Q8);
    }
}
