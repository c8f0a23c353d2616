//! The teachers whose outputs MERT is pretrained to predict: the CQT (musical) and, later,
//! the RVQ codec (acoustic).

pub mod cqt;

pub use cqt::{Cqt, CqtConfig, cqt_tensor};
