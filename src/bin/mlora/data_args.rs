//! The data flags of `train`, `compare` and `eval` (model, data file, split,
//! task-specific fields) and how they override a task's settings; the run's
//! other flags are in `args`.

use super::failure::{Failure, bad};
use clap::{Args, ValueEnum};
use matryoshka_lora::models::BaseDtype;
use matryoshka_lora::tasks::causal_lm::CausalLmConfig;
use matryoshka_lora::tasks::classify::ClassifyConfig;
use std::path::PathBuf;

/// Which task a run fine-tunes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskKind {
    /// Sequence classification (BERT encoder, CSV data).
    Classify,
    /// Causal-LM instruction fine-tuning (Llama-family decoder, JSONL data).
    CausalLm,
}

impl TaskKind {
    /// The report's `task` name of this kind.
    pub fn of_name(name: &str) -> Option<Self> {
        match name {
            "classify" => Some(Self::Classify),
            "causal-lm" => Some(Self::CausalLm),
            _ => None,
        }
    }
}

/// The data flags of `train` and `compare`.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// Model directory: config.json, model.safetensors (or shards), tokenizer.json;
    /// for --task causal-lm also a GGUF file (llama.cpp's format, quantized or not).
    /// [default: assets, the fetched MiniLM (classify); causal-lm needs one]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Data: a CSV file (plain or .bz2) for classify [default: the Rotten Tomatoes
    /// file in --model's directory, labels rotten,fresh, the first 4000/1000 rows];
    /// a JSONL file of prompt/response (or GSM8K question/answer) rows for causal-lm.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub rest: DataOverrides,
}

/// The data flags of `eval`: each overrides the saved setting when given.
#[derive(Args, Clone)]
pub struct EvalDataArgs {
    /// Model directory or GGUF file [default: the one the adapter was trained on].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Data file [default: the one the adapter was trained on].
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub rest: DataOverrides,
}

/// Data flags that override a default (or, for `eval`, a saved setting) when given.
#[derive(Args, Clone, Default)]
pub struct DataOverrides {
    /// Separate test CSV (instead of the --test-every split).
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Text column [default: text, the RT data's].
    #[arg(long)]
    pub text_col: Option<String>,
    /// Label column [default: category, the RT data's].
    #[arg(long)]
    pub label_col: Option<String>,
    /// Label set, comma-separated; label id = position; other rows dropped.
    /// Default: sorted distinct values (rotten,fresh for the default data).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Row i is test if i % N == 0 [default: the RT protocol's, 5].
    #[arg(long)]
    pub test_every: Option<usize>,
    /// First N train rows (default: 4000 for the default RT data, else all).
    #[arg(long)]
    pub train_n: Option<usize>,
    /// First N test rows (default: 1000 for the default RT data, else all;
    /// with --test-data, all of that file's rows, also for `eval --adapter`).
    #[arg(long)]
    pub test_n: Option<usize>,
    /// Truncate to this many tokens [default: classify 48 (the RT protocol's), causal-lm 512].
    #[arg(long)]
    pub max_len: Option<usize>,
    /// causal-lm: the JSONL prompt field [default: prompt].
    #[arg(long)]
    pub prompt_field: Option<String>,
    /// causal-lm: the JSONL response field [default: response].
    #[arg(long)]
    pub response_field: Option<String>,
    /// causal-lm: the JSONL field naming each row's group (a template, a
    /// document): compare's validation split keeps groups whole, and test rows
    /// of groups that also train are reported [default: none].
    #[arg(long, value_name = "FIELD")]
    pub group_field: Option<String>,
    /// causal-lm: greedy generation cap for exact match (0: no generation) [default: 256].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// causal-lm: rows generated together [default: 16].
    #[arg(long)]
    pub gen_batch: Option<usize>,
    /// causal-lm: hold the frozen base's matrices in f32, bf16 or f16 (adapters,
    /// gradients and optimizer state stay f32) [default: f32].
    #[arg(long)]
    pub base_dtype: Option<BaseDtype>,
    /// Remove test rows whose text (classify) or prompt (causal-lm), trimmed,
    /// also occurs among the training rows (counted and reported either way).
    #[arg(long)]
    pub drop_overlap: bool,
}

impl DataOverrides {
    /// The flags of one task given with another (an error, not ignored).
    pub fn check_task(&self, task: TaskKind) -> Result<(), Failure> {
        let (given, other): (Vec<(&str, bool)>, &str) = match task {
            TaskKind::Classify => (
                vec![
                    ("--prompt-field", self.prompt_field.is_some()),
                    ("--response-field", self.response_field.is_some()),
                    ("--group-field", self.group_field.is_some()),
                    ("--max-new-tokens", self.max_new_tokens.is_some()),
                    ("--gen-batch", self.gen_batch.is_some()),
                    ("--base-dtype", self.base_dtype.is_some()),
                ],
                "causal-lm",
            ),
            TaskKind::CausalLm => (
                vec![
                    ("--text-col", self.text_col.is_some()),
                    ("--label-col", self.label_col.is_some()),
                    ("--labels", self.labels.is_some()),
                ],
                "classify",
            ),
        };
        match given.into_iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(bad(flag, format!("applies to --task {other} only"))),
            None => Ok(()),
        }
    }

    /// Applies the split and size flags both tasks have to their settings.
    fn apply_split(
        &self,
        test_data: &mut Option<PathBuf>,
        test_every: &mut usize,
        train_n: &mut Option<usize>,
        test_n: &mut Option<usize>,
        max_len: &mut usize,
    ) {
        if self.test_data.is_some() {
            *test_data = self.test_data.clone();
            // a count defaulted for (or saved with) another test split does
            // not carry over to a new file: without --test-n, all its rows
            *test_n = None;
        }
        if let Some(v) = self.test_every {
            *test_every = v;
        }
        if self.train_n.is_some() {
            *train_n = self.train_n;
        }
        if self.test_n.is_some() {
            *test_n = self.test_n;
        }
        if let Some(v) = self.max_len {
            *max_len = v;
        }
    }

    /// Applies the causal-LM flags given to `c`.
    pub fn apply_lm(&self, c: &mut CausalLmConfig) {
        self.apply_split(
            &mut c.test_data,
            &mut c.test_every,
            &mut c.train_n,
            &mut c.test_n,
            &mut c.max_len,
        );
        if let Some(v) = &self.prompt_field {
            c.prompt_field = v.clone();
        }
        if let Some(v) = &self.response_field {
            c.response_field = v.clone();
        }
        if let Some(v) = &self.group_field {
            c.group_field = Some(v.clone());
        }
        if let Some(v) = self.max_new_tokens {
            c.max_new_tokens = v;
        }
        if let Some(v) = self.gen_batch {
            c.gen_batch = v;
        }
        if let Some(v) = self.base_dtype {
            c.base_dtype = v;
        }
        c.drop_overlap |= self.drop_overlap;
    }

    /// Applies the flags given to `c`.
    pub fn apply(&self, c: &mut ClassifyConfig) {
        self.apply_split(
            &mut c.test_data,
            &mut c.test_every,
            &mut c.train_n,
            &mut c.test_n,
            &mut c.max_len,
        );
        if let Some(v) = &self.text_col {
            c.text_col = v.clone();
        }
        if let Some(v) = &self.label_col {
            c.label_col = v.clone();
        }
        c.drop_overlap |= self.drop_overlap;
        if let Some(labels) = &self.labels {
            // `--labels ""` is an empty label set, not a label named "".
            c.labels = Some(
                labels
                    .iter()
                    .filter(|l| !l.trim().is_empty())
                    .cloned()
                    .collect(),
            );
        }
    }
}
