//! The teachers whose outputs MERT is pretrained to predict: the CQT (musical) and the
//! EnCodec-compatible RVQ codes (acoustic).

pub mod codec;
pub mod cqt;

pub use codec::{Codec, CodecCheckpoint, CodecConfig, Codes, load_codec_path};
pub use cqt::{Cqt, CqtConfig, cqt_tensor};
