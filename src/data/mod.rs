//! Text-classification data: CSV (plain or `.bz2`) datasets, tokenization and
//! padded batches.

mod batcher;
mod csv_dataset;
mod tokenizer;

pub use batcher::{TextBatch, TextBatcher, TokenizedExample};
pub use csv_dataset::{Column, CsvSpec, DataError, SplitRule, TextClassificationData, TextExample};
pub use tokenizer::TextTokenizer;
