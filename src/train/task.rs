//! The task abstraction: what an application supplies so that the
//! [`Runner`](super::Runner) can train and evaluate it per rank.

use super::error::RunError;
use super::model::TaskModel;
use super::split_summary::SplitSummary;
use crate::adapter::Injection;
use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use serde_json::{Map, Value};

/// A task's prepared examples, read and preprocessed once and shared by every
/// run on them (the methods of a comparison, say).
#[derive(Debug, Clone)]
pub struct TaskData<I, M> {
    /// Training examples, in data order (the runner shuffles per epoch).
    pub train: Vec<I>,
    /// Evaluation examples, in data order.
    pub test: Vec<I>,
    /// What the task learned from the data besides the examples (label
    /// names, a vocabulary, ...), used to build the model.
    pub meta: M,
}

/// Per-rank results a task computes itself, beyond the teacher-forced loss
/// and score of [`TaskModel::forward_batch`]: name and value, e.g.
/// `("exact_match", 41.5)` from generation.
pub type RankMetrics = Vec<(String, f64)>;

/// A fine-tuning task: a model with adapters, its data, and how it is scored.
///
/// The [`Runner`](super::Runner) does everything else once, for every task:
/// seeded data order, training through burn-train's `Learner` with the
/// method's `P` (DyLoRA's draws, the exact objective, the probe head mode),
/// per-rank evaluation at every `k` in `S`, AURAC, the report, checkpoints,
/// atomic output files and the plot.
///
/// Only [`Task::name`], [`Task::prepare`], [`Task::batcher`] and
/// [`Task::build_model`] have no default. `examples/custom_task.rs` is a
/// complete implementation for a model of one's own.
pub trait Task {
    /// One prepared example, as the data loader holds it.
    type Item: Clone + Send + Sync + std::fmt::Debug + 'static;
    /// What [`Task::prepare`] learns from the data for [`Task::build_model`].
    type Meta: Clone;
    /// The model with adapters.
    type Model: TaskModel;
    /// Turns items into a batch of [`Task::Model`] on a device.
    type Batcher: Batcher<Self::Item, <Self::Model as TaskModel>::Batch> + Clone + 'static;

    /// The task's name in reports (`report.json`'s `task`).
    fn name(&self) -> &str;

    /// The task's own settings, recorded in `report.json`'s `config` beside
    /// the training settings (the data and model it was given, ...).
    fn settings(&self) -> Map<String, Value> {
        Map::new()
    }

    /// A fingerprint of the base model (e.g. the sha256 of its `config.json`),
    /// saved with an adapter and compared when the adapter is loaded.
    fn base_model(&self) -> Option<String> {
        None
    }

    /// What the task learned from its data that a trained adapter depends on
    /// (e.g. `{"labels": [...]}`): recorded in the report and the adapter's
    /// metadata, and compared when a saved adapter is loaded.
    fn describe(&self, _meta: &Self::Meta) -> Map<String, Value> {
        Map::new()
    }

    /// The adapter targets used when the run names none (PEFT's
    /// `target_modules`, matched against the model's module paths).
    fn default_targets(&self) -> Vec<String> {
        Vec::new()
    }

    /// Checks the task's settings without reading data or weights
    /// (errors name the setting: [`RunError::invalid`]).
    fn check(&self) -> Result<(), RunError> {
        Ok(())
    }

    /// Reads and preprocesses the data.
    fn prepare(&self) -> Result<TaskData<Self::Item, Self::Meta>, RunError>;

    /// The batcher for training and evaluation batches.
    fn batcher(&self) -> Self::Batcher;

    /// How many terms `item` adds to the mean that
    /// [`TaskModel::forward_batch`]'s loss is over its batch: 1 (the default)
    /// for a mean over examples; a causal LM's loss is a mean over scored
    /// tokens, so its examples count their scored tokens. When a step's
    /// batch is split over devices or accumulated micro-batches, each piece's
    /// loss is weighted by its share of these, so the step's gradient is the
    /// whole batch's.
    fn loss_terms(_item: &Self::Item) -> usize {
        1
    }

    /// Builds (or loads) the model on `device` with adapters wherever
    /// `injection` selects; the runner seeds `device` first and checks the
    /// injection's outcome afterwards.
    fn build_model(
        &self,
        meta: &Self::Meta,
        injection: &Injection,
        device: &Device,
    ) -> Result<Self::Model, RunError>;

    /// Module paths (burn's, e.g. `head`) whose parameters train in full
    /// beside the adapters, and are saved with them. A path selects that
    /// module and everything under it.
    fn trainable_modules(&self) -> Vec<String> {
        Vec::new()
    }

    /// The name of the score [`TaskModel::forward_batch`] sums (`accuracy`):
    /// the report's per-rank key for `100 * score / count`.
    fn score_name(&self) -> &str {
        "accuracy"
    }

    /// Evaluation that is not one teacher-forced batch (generation, say):
    /// called once per rank `k` of `S` with the model at rank `k` (no
    /// gradients), on the evaluation examples. Each returned metric becomes a
    /// per-rank key of the report.
    fn evaluate_at_rank(
        &self,
        _model: &Self::Model,
        _rank: usize,
        _examples: &[Self::Item],
        _device: &Device,
    ) -> Result<RankMetrics, RunError> {
        Ok(Vec::new())
    }

    /// [`Task::evaluate_at_rank`] with one record per evaluated example (a
    /// generation: prompt, reference, output, whether it matched), which the
    /// runner writes to the run directory as [`Task::records_file`], one JSON
    /// object per line, ranks in order. The default records nothing.
    fn evaluate_at_rank_recorded(
        &self,
        model: &Self::Model,
        rank: usize,
        examples: &[Self::Item],
        device: &Device,
    ) -> Result<(RankMetrics, Vec<Value>), RunError> {
        Ok((
            self.evaluate_at_rank(model, rank, examples, device)?,
            Vec::new(),
        ))
    }

    /// The file [`Task::evaluate_at_rank_recorded`]'s records go to in a run
    /// directory (`generations.jsonl` for the causal LM).
    fn records_file(&self) -> &str {
        "records.jsonl"
    }

    /// The per-rank metric AURAC integrates and the plot draws: the score by
    /// default, or a metric of [`Task::evaluate_at_rank`].
    fn curve_metric(&self) -> String {
        self.score_name().to_string()
    }

    /// What the task can say about its prepared splits (per-label counts,
    /// test rows that also occur in training, ...): the runner refuses a
    /// degenerate split ([`SplitSummary::check`]), prints its warnings and
    /// records it in `report.json`'s `data`. The default knows nothing.
    fn split_summary(&self, _data: &TaskData<Self::Item, Self::Meta>) -> SplitSummary {
        SplitSummary::default()
    }

    /// The group `item` belongs to, when the task's data names groups (the
    /// causal LM's `group_field`: a template, a document): rows of one group
    /// are near-duplicates of each other. A comparison's validation split
    /// then keeps groups whole (no group both trains and validates), and the
    /// runner reports groups shared by the training and test rows
    /// ([`SplitSummary::groups`]). `None` (the default): the item is a group
    /// of its own.
    fn group<'a>(&self, _item: &'a Self::Item) -> Option<&'a str> {
        None
    }

    /// Per-rank series derived from the others once all are computed
    /// (the causal-LM task adds `perplexity = exp(loss)`).
    fn finish_metrics(&self, _per_rank: &mut std::collections::BTreeMap<String, Vec<f64>>) {}
}
