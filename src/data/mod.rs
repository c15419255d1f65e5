//! Text data: CSV (plain or `.bz2`) classification datasets, JSONL
//! instruction data for causal-LM fine-tuning, tokenization and padded batches.

mod batcher;
mod csv_dataset;
mod instruct;
mod tokenizer;

pub use batcher::{TextBatch, TextBatcher, TokenizedExample};
pub use csv_dataset::{Column, CsvSpec, DataError, SplitRule, TextClassificationData, TextExample};
pub use instruct::{
    GSM8K_TEMPLATE, InstructError, InstructFields, InstructRow, SftBatch, SftBatcher, SftCounts,
    SftExample, SftTokenizer, read_jsonl,
};
pub use tokenizer::TextTokenizer;
