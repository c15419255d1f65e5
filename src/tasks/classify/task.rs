//! Text classification as a [`Task`]: CSV data, WordPiece tokens, a BERT
//! encoder with adapters and a trained head.

use super::config::ClassifyConfig;
use super::model::SequenceClassifier;
use crate::adapter::Injection;
use crate::data::{
    Column, CsvSpec, DataError, SplitRule, TextBatcher, TextClassificationData, TextExample,
    TextTokenizer, TokenizedExample,
};
use crate::io::manifest::sha256_hex;
use crate::models::LoadError;
use crate::models::bert::{BertConfig, BertEncoder, DEFAULT_TARGETS};
use crate::tasks::{check_split_sizes, load_error};
use crate::train::{
    RunError, Setting, SplitSummary, Task, TaskData, count_overlapping, remove_overlapping,
};
use burn::prelude::*;
use serde_json::{Map, Value};

/// What the classifier learns from its data: the label names (label id =
/// position), how many rows other labels cost, and what the data checks need.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClassLabels {
    /// The label names, in label-id order.
    pub names: Vec<String>,
    /// Rows dropped because their label is not in the label set.
    pub dropped: usize,
    /// Test rows whose text also occurs among the training rows (with
    /// `drop_overlap`: the rows removed).
    pub test_overlap: usize,
    /// Whether those rows were removed.
    pub overlap_dropped: bool,
    /// Settings that emptied a label's training rows (`train_n`, `test_every`).
    pub shaped_by: Vec<String>,
}

impl ClassLabels {
    /// Rows per label (in label-id order) of `examples`.
    pub fn counts(&self, examples: &[TokenizedExample]) -> Vec<usize> {
        let mut counts = vec![0; self.names.len()];
        for e in examples {
            if let Some(c) = counts.get_mut(e.label) {
                *c += 1;
            }
        }
        counts
    }
}

/// Fine-tuning a Hugging Face BERT encoder with adapters for sequence
/// classification: mean pooling over tokens and a `Linear(d, classes)` head
/// trained in full beside the adapters.
///
/// ```no_run
/// use matryoshka_lora::tasks::classify::{ClassifyConfig, ClassifyTask};
/// use matryoshka_lora::train::{Runner, TrainConfig};
/// let task = ClassifyTask::new(ClassifyConfig::new("my-bert", Some("reviews.csv".into())));
/// let runner = Runner::new(task, TrainConfig::default())?;
/// let report = runner.train(&runner.prepare()?)?.report;
/// # Ok::<(), matryoshka_lora::train::RunError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClassifyTask {
    config: ClassifyConfig,
}

impl ClassifyTask {
    /// The task for `config` (label names are trimmed).
    pub fn new(mut config: ClassifyConfig) -> Self {
        if let Some(labels) = &mut config.labels {
            for label in labels.iter_mut() {
                *label = label.trim().to_string();
            }
        }
        Self { config }
    }

    /// Its settings.
    pub fn config(&self) -> &ClassifyConfig {
        &self.config
    }

    fn split_rule(&self) -> SplitRule {
        match &self.config.test_data {
            Some(test) => SplitRule::TestFile(test.clone()),
            None => SplitRule::Every(self.config.test_every),
        }
    }

    /// The setting a data error is about.
    fn data_error(&self, e: DataError) -> RunError {
        let setting = match &e {
            DataError::Io { path, .. } if Some(path) == self.config.test_data.as_ref() => {
                "test_data"
            }
            DataError::Io { .. } | DataError::EmptySplit { .. } => "data",
            DataError::MissingColumn {
                role: Column::Text, ..
            } => "text_col",
            DataError::MissingColumn {
                role: Column::Label,
                ..
            } => "label_col",
            DataError::EmptyLabels
            | DataError::BadLabels { .. }
            | DataError::NoRows { .. }
            | DataError::LabelWithoutRows { .. } => "labels",
            DataError::TooFewRows { split: "train", .. } => "train_n",
            DataError::TooFewRows { .. } => "test_n",
            DataError::BadSplit(_) => "test_every",
        };
        RunError::invalid(Setting::Task(setting), e)
    }
}

impl Task for ClassifyTask {
    type Item = TokenizedExample;
    type Meta = ClassLabels;
    type Model = SequenceClassifier;
    type Batcher = TextBatcher;

    fn name(&self) -> &str {
        "classify"
    }

    fn settings(&self) -> Map<String, Value> {
        match serde_json::to_value(&self.config) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    fn base_model(&self) -> Option<String> {
        std::fs::read(self.config.model.join("config.json"))
            .ok()
            .map(|bytes| sha256_hex(&bytes))
    }

    /// The label names, in label-id order.
    fn describe(&self, labels: &ClassLabels) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("labels".into(), labels.names.clone().into());
        map
    }

    fn default_targets(&self) -> Vec<String> {
        DEFAULT_TARGETS.iter().map(|t| t.to_string()).collect()
    }

    fn check(&self) -> Result<(), RunError> {
        let c = &self.config;
        if c.max_len < 2 {
            return Err(RunError::invalid(
                Setting::Task("max_len"),
                format!("must be at least 2 ([CLS] and [SEP]), got {}", c.max_len),
            ));
        }
        if c.test_data.is_none() && c.test_every < 2 {
            return Err(self.data_error(DataError::BadSplit(c.test_every)));
        }
        if let Some(labels) = &c.labels {
            let spec = CsvSpec {
                labels: Some(labels.clone()),
                ..CsvSpec::default()
            };
            // Only the label set is checked here; the files are read later.
            if let Err(e @ (DataError::EmptyLabels | DataError::BadLabels { .. })) =
                TextClassificationData::check_spec(&spec)
            {
                return Err(self.data_error(e));
            }
        }
        check_split_sizes(c.train_n, c.test_n)?;
        if c.layers == Some(0) {
            return Err(RunError::invalid(
                Setting::Task("layers"),
                "must be at least 1 (or unset for all layers)",
            ));
        }
        if !c.model.is_dir() {
            return Err(load_error(LoadError::MissingDir(c.model.clone())));
        }
        Ok(())
    }

    fn prepare(&self) -> Result<TaskData<TokenizedExample, ClassLabels>, RunError> {
        let c = &self.config;
        let bert = BertConfig::from_file(&c.model.join("config.json")).map_err(load_error)?;
        if c.max_len > bert.max_position_embeddings {
            return Err(RunError::invalid(
                Setting::Task("max_len"),
                format!(
                    "{} tokens exceed the model's max_position_embeddings = {}",
                    c.max_len, bert.max_position_embeddings
                ),
            ));
        }
        let spec = CsvSpec {
            text_col: c.text_col.clone(),
            label_col: c.label_col.clone(),
            labels: c.labels.clone(),
        };
        let full = TextClassificationData::from_csv(&c.data, &spec, &self.split_rule())
            .map_err(|e| self.data_error(e))?;
        let n_labels = full.labels.len();
        let count = |rows: &[TextExample]| {
            let mut n = vec![0usize; n_labels];
            rows.iter().for_each(|r| n[r.label] += 1);
            n
        };
        let (whole_train, whole_test) = (count(&full.train), count(&full.test));
        let mut data = full
            .truncate(c.train_n, None)
            .map_err(|e| self.data_error(e))?;
        let text: fn(&TextExample) -> &str = |r| &r.text;
        let dropped = c
            .drop_overlap
            .then(|| remove_overlapping(&data.train, &mut data.test, text));
        let data = data
            .truncate(None, c.test_n)
            .map_err(|e| self.data_error(e))?;
        let test_overlap =
            dropped.unwrap_or_else(|| count_overlapping(&data.train, &data.test, text));
        // What emptied a label's training rows, to name it.
        let train_now = count(&data.train);
        let mut shaped_by = Vec::new();
        let emptied = |i: usize| train_now[i] == 0;
        if c.train_n.is_some() && (0..train_now.len()).any(|i| emptied(i) && whole_train[i] > 0) {
            shaped_by.push("train_n".to_string());
        }
        if c.test_data.is_none()
            && (0..train_now.len()).any(|i| emptied(i) && whole_train[i] == 0 && whole_test[i] > 0)
        {
            shaped_by.push("test_every".to_string());
        }
        let tokenizer = TextTokenizer::from_file(&c.model.join("tokenizer.json"), c.max_len)
            .map_err(load_error)?;
        let tokenize = |rows: &[TextExample]| -> Result<Vec<TokenizedExample>, RunError> {
            let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
            let ids = tokenizer.encode_batch(&texts).map_err(load_error)?;
            Ok(ids
                .into_iter()
                .zip(rows)
                .map(|(ids, r)| TokenizedExample {
                    ids,
                    label: r.label,
                })
                .collect())
        };
        let (train, test) = (tokenize(&data.train)?, tokenize(&data.test)?);
        if let Some(id) = train
            .iter()
            .chain(&test)
            .flat_map(|e| e.ids.iter().copied())
            .find(|&id| id as usize >= bert.vocab_size)
        {
            return Err(RunError::invalid(
                Setting::Task("model"),
                format!(
                    "tokenizer.json produced token id {id}, but config.json's vocab_size is {}: the tokenizer is not the model's",
                    bert.vocab_size
                ),
            ));
        }
        Ok(TaskData {
            train,
            test,
            meta: ClassLabels {
                names: data.labels,
                dropped: data.dropped,
                test_overlap,
                overlap_dropped: c.drop_overlap,
                shaped_by,
            },
        })
    }

    fn batcher(&self) -> TextBatcher {
        TextBatcher::default()
    }

    fn build_model(
        &self,
        labels: &ClassLabels,
        injection: &Injection,
        device: &Device,
    ) -> Result<SequenceClassifier, RunError> {
        let (encoder, bert) = BertEncoder::from_pretrained_with(
            &self.config.model,
            self.config.layers,
            Some(injection),
            device,
        )
        .map_err(load_error)?;
        Ok(SequenceClassifier::new(
            encoder,
            bert.hidden_size,
            labels.names.len(),
            device,
        ))
    }

    fn trainable_modules(&self) -> Vec<String> {
        vec!["head".to_string()]
    }

    /// Rows per label in both splits, the majority-class accuracy of the
    /// test split, and test rows whose text also occurs in training.
    fn split_summary(&self, data: &TaskData<TokenizedExample, ClassLabels>) -> SplitSummary {
        let labels = &data.meta;
        SplitSummary {
            test_overlap: Some(labels.test_overlap),
            overlap_dropped: labels.overlap_dropped,
            shaped_by: labels.shaped_by.clone(),
            ..SplitSummary::of_labels(
                &labels.names,
                &labels.counts(&data.train),
                &labels.counts(&data.test),
            )
        }
    }
}
