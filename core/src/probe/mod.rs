//! Probing and tagging on frozen MERT features: time pooling, the MARBLE-style head, and the
//! retrieval metrics its training reports.

pub mod head;
pub mod metrics;
pub mod pool;

pub use head::{HeadConfig, LayerChoice, TagHead, bce_with_logits};
pub use metrics::{TagMetrics, average_precision, macro_metrics, roc_auc};
pub use pool::SegmentMeans;
