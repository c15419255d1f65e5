//! Causal-LM instruction fine-tuning as a [`Task`]: JSONL rows, the SFT
//! token rule, a Llama-family decoder with adapters, per-rank loss and
//! greedy-generation exact match.

use super::config::CausalLmConfig;
use super::exact_match::{exact_match, final_answer};
use crate::adapter::Injection;
use crate::data::{
    InstructError, InstructFields, InstructRow, SftBatcher, SftCounts, SftExample, SftTokenizer,
    read_jsonl,
};
use crate::models::llama::{
    DEFAULT_TARGETS, Generation, LlamaCheckpoint, LlamaConfig, LlamaForCausalLm,
};
use crate::models::{BaseDtype, LoadError};
use crate::tasks::{check_split_sizes, load_error};
use crate::train::{
    OverBudget, RankMetrics, RunError, Setting, SplitSummary, Task, TaskData, count_overlapping,
    remove_overlapping,
};
use burn::prelude::*;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// What the causal-LM task learns from its model and data.
#[derive(Debug, Clone, PartialEq)]
pub struct CausalLmMeta {
    /// End-of-sequence ids (the first ends responses; any stops generation).
    pub eos_ids: Vec<u32>,
    /// The padding id.
    pub pad_id: u32,
    /// What truncation did to the training rows.
    pub train_counts: SftCounts,
    /// What truncation did to the test rows.
    pub test_counts: SftCounts,
    /// Test rows whose prompt also occurs among the training rows (with
    /// `drop_overlap`: the rows removed).
    pub test_overlap: usize,
    /// Whether those rows were removed.
    pub overlap_dropped: bool,
    /// Test responses longer than `max_new_tokens` (when it generates and
    /// any are): greedy generation stops before their end, so their final
    /// answers cannot match.
    pub over_generation_budget: Option<OverBudget>,
}

/// Fine-tuning a Llama-family decoder (a Hugging Face directory or a GGUF
/// file) with adapters on
/// instruction data: the loss is the cross-entropy of the response tokens
/// and EOS only; every rank is evaluated by its response-token loss,
/// perplexity, token accuracy and the exact match of greedy generations
/// (AURAC integrates exact match).
///
/// ```no_run
/// use matryoshka_lora::tasks::causal_lm::{CausalLmConfig, CausalLmTask};
/// use matryoshka_lora::train::{Runner, TrainConfig};
/// let task = CausalLmTask::new(CausalLmConfig::new("Llama-3.2-1B", "gsm8k_train.jsonl"));
/// let runner = Runner::new(task, TrainConfig::default())?;
/// let report = runner.train(&runner.prepare()?)?.report;
/// println!("exact match per rank {:?}", report.per_rank["exact_match"]);
/// # Ok::<(), matryoshka_lora::train::RunError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CausalLmTask {
    config: CausalLmConfig,
    /// The model's checkpoint, opened once per task (a GGUF file's header is
    /// parsed and hashed when opened).
    checkpoint: Arc<OnceLock<LlamaCheckpoint>>,
    decoding: Decoding,
}

/// The model's config and the tokenizer that encodes the rows and decodes
/// generations, read once per task (evaluation generates at every rank; a
/// Llama 3 tokenizer is ~9 MB, a GGUF file's is built from its metadata).
#[derive(Clone, Default)]
struct Decoding(Arc<OnceLock<(LlamaConfig, SftTokenizer)>>);

impl std::fmt::Debug for Decoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Decoding(read)"
        } else {
            "Decoding(not read yet)"
        })
    }
}

impl CausalLmTask {
    /// The task for `config`.
    pub fn new(config: CausalLmConfig) -> Self {
        Self {
            config,
            checkpoint: Arc::default(),
            decoding: Decoding::default(),
        }
    }

    /// The config and tokenizer (read on first use).
    fn decoding(&self) -> Result<&(LlamaConfig, SftTokenizer), RunError> {
        if let Some(read) = self.decoding.0.get() {
            return Ok(read);
        }
        let config = self.model_config()?;
        let tokenizer = self.tokenizer(config.eos_ids()[0])?;
        Ok(self.decoding.0.get_or_init(|| (config, tokenizer)))
    }

    /// Its settings.
    pub fn config(&self) -> &CausalLmConfig {
        &self.config
    }

    /// The model's checkpoint (a Hugging Face directory or a GGUF file),
    /// opened on first use.
    pub fn checkpoint(&self) -> Result<&LlamaCheckpoint, RunError> {
        if let Some(opened) = self.checkpoint.get() {
            return Ok(opened);
        }
        let opened = LlamaCheckpoint::open(&self.config.model).map_err(load_error)?;
        Ok(self.checkpoint.get_or_init(|| opened))
    }

    /// The model's config (`config.json`, or the GGUF file's metadata).
    pub fn model_config(&self) -> Result<LlamaConfig, RunError> {
        self.checkpoint()?.config().map_err(load_error)
    }

    fn fields(&self) -> InstructFields {
        InstructFields {
            prompt: self.config.prompt_field.clone(),
            response: self.config.response_field.clone(),
            group: self.config.group_field.clone(),
        }
    }

    fn read(
        &self,
        path: &std::path::Path,
        setting: &'static str,
    ) -> Result<Vec<InstructRow>, RunError> {
        read_jsonl(path, &self.fields()).map_err(|e| {
            let setting = match &e {
                InstructError::MissingField {
                    flag: "--prompt-field",
                    ..
                } => "prompt_field",
                InstructError::MissingField { .. } => "response_field",
                InstructError::MissingGroup { .. } => "group_field",
                _ => setting,
            };
            RunError::invalid(Setting::Task(setting), e)
        })
    }

    /// The train and test rows by the split rule, each cut to its `n`, and
    /// the test rows whose prompt also occurs in training (removed first
    /// with `drop_overlap`).
    fn rows(&self) -> Result<(Vec<InstructRow>, Vec<InstructRow>, usize), RunError> {
        let c = &self.config;
        let rows = self.read(&c.data, "data")?;
        let (mut train, mut test) = match &c.test_data {
            Some(path) => (rows, self.read(path, "test_data")?),
            None => {
                let (mut train, mut test) = (Vec::new(), Vec::new());
                for (i, row) in rows.into_iter().enumerate() {
                    if i % c.test_every == 0 {
                        test.push(row);
                    } else {
                        train.push(row);
                    }
                }
                (train, test)
            }
        };
        let cut = |split: &str, rows: &mut Vec<InstructRow>, n: Option<usize>, key| {
            if let Some(n) = n {
                if n > rows.len() {
                    return Err(RunError::invalid(
                        Setting::Task(key),
                        format!(
                            "the {split} split has {} rows but {n} were asked for",
                            rows.len()
                        ),
                    ));
                }
                rows.truncate(n);
            }
            if rows.is_empty() {
                return Err(RunError::invalid(
                    Setting::Task("data"),
                    format!("the {split} split is empty"),
                ));
            }
            Ok(())
        };
        let prompt: fn(&InstructRow) -> &str = |r| &r.prompt;
        cut("train", &mut train, c.train_n, "train_n")?;
        let dropped = c
            .drop_overlap
            .then(|| remove_overlapping(&train, &mut test, prompt));
        cut("test", &mut test, c.test_n, "test_n")?;
        let test_overlap = dropped.unwrap_or_else(|| count_overlapping(&train, &test, prompt));
        Ok((train, test, test_overlap))
    }

    fn tokenizer(&self, eos: u32) -> Result<SftTokenizer, RunError> {
        let checkpoint = self.checkpoint()?;
        let tokenizer = checkpoint.tokenizer().map_err(load_error)?;
        SftTokenizer::new(tokenizer, eos, self.config.max_len).map_err(|e| {
            load_error(LoadError::Tokenizer {
                path: checkpoint.path().to_path_buf(),
                reason: e.to_string(),
            })
        })
    }
}

/// Whether `device` can hold a base in `dtype` (an error naming the setting if not).
pub(crate) fn check_dtype(dtype: BaseDtype, device: &Device) -> Result<(), RunError> {
    if dtype == BaseDtype::F32 || device.supports_dtype(dtype.dtype()) {
        Ok(())
    } else {
        Err(RunError::invalid(
            Setting::Task("base_dtype"),
            format!(
                "this backend's device cannot compute in {dtype}: use f32 (or another backend)"
            ),
        ))
    }
}

impl Task for CausalLmTask {
    type Item = SftExample;
    type Meta = CausalLmMeta;
    type Model = LlamaForCausalLm;
    type Batcher = SftBatcher;

    /// The loss is a mean over scored tokens (response and EOS).
    fn loss_terms(item: &SftExample) -> usize {
        item.target_count()
    }

    fn name(&self) -> &str {
        "causal-lm"
    }

    fn settings(&self) -> Map<String, Value> {
        match serde_json::to_value(&self.config) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    fn base_model(&self) -> Option<String> {
        self.checkpoint().ok()?.fingerprint()
    }

    fn default_targets(&self) -> Vec<String> {
        DEFAULT_TARGETS.iter().map(|t| t.to_string()).collect()
    }

    fn check(&self) -> Result<(), RunError> {
        let c = &self.config;
        let invalid =
            |key: &'static str, why: String| Err(RunError::invalid(Setting::Task(key), why));
        if c.max_len < 2 {
            return invalid("max_len", format!("must be at least 2, got {}", c.max_len));
        }
        if c.test_data.is_none() && c.test_every < 2 {
            return invalid(
                "test_every",
                format!(
                    "the test split rule needs N >= 2 (row i is test if i % N == 0), got {}",
                    c.test_every
                ),
            );
        }
        check_split_sizes(c.train_n, c.test_n)?;
        if c.gen_batch == 0 {
            return invalid("gen_batch", "must be at least 1".into());
        }
        if c.layers == Some(0) {
            return invalid(
                "layers",
                "must be at least 1 (or unset for all layers)".into(),
            );
        }
        // The model opens (a directory, or a GGUF file that is whole and of a
        // supported architecture) before any data is read or anything written.
        self.checkpoint().map(|_| ())
    }

    fn prepare(&self) -> Result<TaskData<SftExample, CausalLmMeta>, RunError> {
        let (model, tokenizer) = self.decoding()?;
        let eos_ids = model.eos_ids();
        let (train, test, test_overlap) = self.rows()?;
        let encode = |rows: &[InstructRow], split: &str| {
            let (examples, counts) = tokenizer.encode(rows).map_err(|e| match e {
                InstructError::PromptTooLong { .. } => {
                    RunError::invalid(Setting::Task("max_len"), format!("{split} split: {e}"))
                }
                e => RunError::invalid(Setting::Task("model"), e),
            })?;
            if examples.is_empty() {
                return Err(RunError::invalid(
                    Setting::Task("max_len"),
                    format!("every {split} row's response was truncated away: raise --max-len"),
                ));
            }
            Ok((examples, counts))
        };
        let (train, train_counts) = encode(&train, "train")?;
        let (test, test_counts) = encode(&test, "test")?;
        if let Some(id) = train
            .iter()
            .chain(&test)
            .flat_map(|e| e.ids.iter().copied())
            .find(|&id| id as usize >= model.vocab_size)
        {
            return Err(RunError::invalid(
                Setting::Task("model"),
                format!(
                    "the tokenizer produced token id {id}, but the model's vocab_size is {}: the tokenizer is not the model's",
                    model.vocab_size
                ),
            ));
        }
        let response_len = |e: &SftExample| {
            e.ids[e.prompt_len..]
                .iter()
                .filter(|id| !eos_ids.contains(id))
                .count()
        };
        let max_new_tokens = self.config.max_new_tokens;
        let over = test
            .iter()
            .filter(|e| response_len(e) > max_new_tokens)
            .count();
        let over_generation_budget = (max_new_tokens > 0 && over > 0).then(|| OverBudget {
            rows: over,
            max_new_tokens,
            longest: test.iter().map(response_len).max().unwrap_or(0),
        });
        Ok(TaskData {
            train,
            test,
            meta: CausalLmMeta {
                pad_id: model.pad_id(),
                eos_ids,
                train_counts,
                test_counts,
                test_overlap,
                overlap_dropped: self.config.drop_overlap,
                over_generation_budget,
            },
        })
    }

    fn batcher(&self) -> SftBatcher {
        // Right padding is never attended by a scored position nor scored;
        // the id only has to exist.
        SftBatcher { pad_id: 0 }
    }

    fn build_model(
        &self,
        _meta: &CausalLmMeta,
        injection: &Injection,
        device: &Device,
    ) -> Result<LlamaForCausalLm, RunError> {
        check_dtype(self.config.base_dtype, device)?;
        let (model, _) = self
            .checkpoint()?
            .load(
                self.config.layers,
                Some(injection),
                self.config.base_dtype,
                device,
            )
            .map_err(load_error)?;
        Ok(model)
    }

    fn score_name(&self) -> &str {
        "token_accuracy"
    }

    /// Greedy generation of every evaluation prompt (batches of `gen_batch`,
    /// KV-cached, at most `max_new_tokens`), scored by exact match (%).
    fn evaluate_at_rank(
        &self,
        model: &LlamaForCausalLm,
        rank: usize,
        examples: &[SftExample],
        device: &Device,
    ) -> Result<RankMetrics, RunError> {
        Ok(self
            .evaluate_at_rank_recorded(model, rank, examples, device)?
            .0)
    }

    /// [`Task::evaluate_at_rank`] with one record per test row: `row`,
    /// `rank`, `prompt`, `reference`, `generated`, `extracted` (the final
    /// answer exact match compares, or the trimmed text), `correct`, and
    /// `stopped`: `"eos"`, or `"length"` when the row reached
    /// `max_new_tokens` (cut short, or ending exactly there). Besides
    /// `exact_match`, the metric `cut_generations` is the % of rows that
    /// stopped by length.
    fn evaluate_at_rank_recorded(
        &self,
        model: &LlamaForCausalLm,
        rank: usize,
        examples: &[SftExample],
        _device: &Device,
    ) -> Result<(RankMetrics, Vec<Value>), RunError> {
        if self.config.max_new_tokens == 0 || examples.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let (config, tokenizer) = self.decoding()?;
        let settings = Generation {
            max_new_tokens: self.config.max_new_tokens,
            eos_ids: config.eos_ids(),
            pad_id: config.pad_id(),
        };
        let decode = |ids: &[u32], skip_special: bool| {
            tokenizer
                .tokenizer()
                .decode(ids, skip_special)
                .map_err(|e| RunError::Failed(e.to_string().into()))
        };
        let mut matches = 0usize;
        let mut cut = 0usize;
        let mut records = Vec::with_capacity(examples.len());
        for (chunk_index, chunk) in examples.chunks(self.config.gen_batch).enumerate() {
            let prompts: Vec<Vec<u32>> = chunk
                .iter()
                .map(|e| e.ids[..e.prompt_len].to_vec())
                .collect();
            let outputs = model.generate(&prompts, &settings);
            for (i, (example, ids)) in chunk.iter().zip(outputs).enumerate() {
                let by_length = ids.len() >= settings.max_new_tokens;
                cut += usize::from(by_length);
                let text = decode(&ids, true)?;
                let correct = exact_match(&text, &example.reference);
                matches += usize::from(correct);
                let extracted = match final_answer(&example.reference) {
                    Some(_) => final_answer(&text),
                    None => Some(text.trim().to_string()),
                };
                records.push(serde_json::json!({
                    "row": chunk_index * self.config.gen_batch + i,
                    "rank": rank,
                    "prompt": decode(&example.ids[..example.prompt_len], false)?,
                    "reference": example.reference,
                    "generated": text,
                    "extracted": extracted,
                    "correct": correct,
                    "stopped": if by_length { "length" } else { "eos" },
                }));
            }
        }
        let percent = |n: usize| 100.0 * n as f64 / examples.len() as f64;
        let metrics = vec![
            ("exact_match".to_string(), percent(matches)),
            ("cut_generations".to_string(), percent(cut)),
        ];
        Ok((metrics, records))
    }

    fn records_file(&self) -> &str {
        "generations.jsonl"
    }

    fn curve_metric(&self) -> String {
        if self.config.max_new_tokens == 0 {
            "token_accuracy".into()
        } else {
            "exact_match".into()
        }
    }

    /// `perplexity` = `exp(loss)` per rank.
    fn finish_metrics(&self, per_rank: &mut BTreeMap<String, Vec<f64>>) {
        if let Some(loss) = per_rank.get("loss") {
            let ppl = loss.iter().map(|l| l.exp()).collect();
            per_rank.insert("perplexity".into(), ppl);
        }
    }

    /// The row's `group_field` value.
    fn group<'a>(&self, item: &'a SftExample) -> Option<&'a str> {
        item.group.as_deref()
    }

    /// Test rows whose prompt also occurs among the training rows, and test
    /// responses longer than the generation budget.
    fn split_summary(&self, data: &TaskData<SftExample, CausalLmMeta>) -> SplitSummary {
        SplitSummary {
            test_overlap: Some(data.meta.test_overlap),
            overlap_dropped: data.meta.overlap_dropped,
            over_generation_budget: data.meta.over_generation_budget.clone(),
            ..SplitSummary::default()
        }
    }

    /// The EOS ids responses were trained to end with.
    fn describe(&self, meta: &CausalLmMeta) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("eos_ids".into(), meta.eos_ids.clone().into());
        map
    }
}
