//! The teachers whose outputs MERT is pretrained to predict: the CQT (musical) and the
//! EnCodec-compatible RVQ codes (acoustic).

pub mod codec;
pub mod cqt;
mod cqt_stream;

pub use codec::{Codec, CodecCheckpoint, CodecConfig, Codes, load_codec_path};
pub use cqt::{Cqt, CqtConfig, cqt_tensor};
pub use cqt_stream::CqtStream;
