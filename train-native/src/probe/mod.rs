//! `mert probe` and `mert tag`'s shared parts: clip features (cached), CSV datasets, and the
//! head's training loop.

pub mod data;
pub mod features;
pub mod train;
