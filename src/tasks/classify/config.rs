//! The classification task's own settings, with the RT protocol's as the default.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The Rotten Tomatoes file's name inside the fetched assets directory.
pub const RT_DATA_FILE: &str = "rotten_tomatoes_corpus_full.csv.bz2";

/// What to classify and with which encoder: a Hugging Face BERT directory and
/// a CSV file (plain or `.bz2`) of labelled texts. Serialised into
/// `report.json`'s `config` beside the training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyConfig {
    /// Model directory: `config.json`, `model.safetensors` (or shards), `tokenizer.json`.
    pub model: PathBuf,
    /// Data CSV (plain or `.bz2`).
    pub data: PathBuf,
    /// A separate test CSV (same columns) instead of the `test_every` split.
    pub test_data: Option<PathBuf>,
    /// Text column.
    pub text_col: String,
    /// Label column.
    pub label_col: String,
    /// The label set (label id = position); rows with other labels are
    /// dropped. `None`: the sorted distinct values of the label column.
    pub labels: Option<Vec<String>>,
    /// Row `i` (after label filtering) is test if `i % test_every == 0`.
    pub test_every: usize,
    /// Keep the first `n` train rows (`None`: all).
    pub train_n: Option<usize>,
    /// Keep the first `n` test rows (`None`: all).
    pub test_n: Option<usize>,
    /// Token truncation length (`[CLS]` and `[SEP]` included).
    pub max_len: usize,
    /// Keep only the first `n` encoder layers (`None`: all).
    pub layers: Option<usize>,
    /// Remove test rows whose text, trimmed, also occurs among the training
    /// rows (before `test_n` is applied).
    #[serde(default)]
    pub drop_overlap: bool,
}

impl ClassifyConfig {
    /// The RT protocol (`../shared/PROTOCOL.md`) with the fetched assets in
    /// `assets`: MiniLM, the Rotten Tomatoes file with labels `rotten`,
    /// `fresh`, every 5th row test, the first 4,000 train and 1,000 test
    /// rows, 48 tokens.
    pub fn rt_protocol(assets: impl Into<PathBuf>) -> Self {
        let model = assets.into();
        Self {
            data: model.join(RT_DATA_FILE),
            model,
            test_data: None,
            text_col: "text".into(),
            label_col: "category".into(),
            labels: Some(vec!["rotten".into(), "fresh".into()]),
            test_every: 5,
            train_n: Some(4000),
            test_n: Some(1000),
            max_len: 48,
            layers: None,
            drop_overlap: false,
        }
    }

    /// `model` on a CSV file of one's own: the RT protocol's columns, split
    /// rule and length, every row used, labels inferred; `None`: the RT
    /// protocol's own data and sizes in `model`'s directory.
    pub fn new(model: impl Into<PathBuf>, data: Option<PathBuf>) -> Self {
        let rt = Self::rt_protocol(model);
        match data {
            Some(data) => Self {
                data,
                labels: None,
                train_n: None,
                test_n: None,
                ..rt
            },
            None => rt,
        }
    }
}
