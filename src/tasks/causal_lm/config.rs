//! The causal-LM task's own settings.

use crate::models::BaseDtype;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What to fine-tune and on which rows: a Llama-family model (a Hugging
/// Face directory or a GGUF file) and a JSONL file of prompt/response (or GSM8K
/// question/answer) rows. Serialised into `report.json`'s `config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CausalLmConfig {
    /// The model: a directory (`config.json`, `tokenizer.json`,
    /// `model.safetensors` or shards) or a GGUF file.
    pub model: PathBuf,
    /// JSONL data.
    pub data: PathBuf,
    /// A separate test JSONL instead of the `test_every` split.
    pub test_data: Option<PathBuf>,
    /// The prompt field.
    pub prompt_field: String,
    /// The response field.
    pub response_field: String,
    /// Row `i` is test if `i % test_every == 0`.
    pub test_every: usize,
    /// Keep the first `n` train rows (`None`: all).
    pub train_n: Option<usize>,
    /// Keep the first `n` test rows (`None`: all).
    pub test_n: Option<usize>,
    /// Token truncation length (prompt, response and EOS).
    pub max_len: usize,
    /// Greedy generation cap per row for exact match (0: no generation;
    /// AURAC then integrates token accuracy).
    pub max_new_tokens: usize,
    /// Rows generated together.
    pub gen_batch: usize,
    /// Keep only the first `n` decoder layers (`None`: all).
    pub layers: Option<usize>,
    /// The dtype the frozen base's matrices are held in.
    #[serde(default)]
    pub base_dtype: BaseDtype,
    /// Remove test rows whose prompt, trimmed, also occurs among the
    /// training rows (before `test_n` is applied).
    #[serde(default)]
    pub drop_overlap: bool,
    /// The JSONL field naming each row's group (a template, a document):
    /// a comparison's validation split keeps groups whole, and test rows of
    /// groups that also train are reported (`None`: rows are not grouped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_field: Option<String>,
}

impl CausalLmConfig {
    /// `model` fine-tuned on `data` with the defaults: fields `prompt` and
    /// `response`, every 5th row test, 512 tokens, 256 new tokens, 16 rows
    /// generated together.
    pub fn new(model: impl Into<PathBuf>, data: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            data: data.into(),
            test_data: None,
            prompt_field: "prompt".into(),
            response_field: "response".into(),
            test_every: 5,
            train_n: None,
            test_n: None,
            max_len: 512,
            max_new_tokens: 256,
            gen_batch: 16,
            layers: None,
            base_dtype: BaseDtype::F32,
            drop_overlap: false,
            group_field: None,
        }
    }
}
