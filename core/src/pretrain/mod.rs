//! MERT's pretraining recipe as backend-free pieces: span masking, the in-batch noise
//! mixture, the student's masked forward pass, the prediction heads and their loss, and the
//! learning-rate schedule. The training loop itself (autodiff, optimiser, checkpoints) lives
//! in `mert-train`; everything here also runs without autodiff (e.g. to score a batch).

pub mod heads;
pub mod masking;
pub mod noise;
pub mod rng;
pub mod schedule;
pub mod student;

pub use heads::{HeadsConfig, LossTerms, PretrainHeads};
pub use masking::span_mask;
pub use noise::NoiseMixture;
pub use rng::StepRng;
pub use schedule::learning_rate;
pub use student::{StudentOutput, masked_index, student_forward};
