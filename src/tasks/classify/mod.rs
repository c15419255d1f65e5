//! Text classification, the first [`Task`](crate::train::Task): a BERT
//! encoder with adapters, mean pooling and a trained `Linear` head, on CSV data.

mod bench;
mod config;
mod model;
mod task;

pub use bench::{RtBench, RtBenchResult};
pub use config::{ClassifyConfig, RT_DATA_FILE};
pub use model::SequenceClassifier;
pub use task::{ClassLabels, ClassifyTask};
