//! The one trait a model implements to be trained and evaluated per rank.

use burn::module::{Module, ModuleDisplay};
use burn::prelude::*;

/// What one batch yields at the model's active rank.
#[derive(Debug, Clone)]
pub struct RankedBatchOutput {
    /// Mean loss over the batch, `[1]`.
    pub loss: Tensor<1>,
    /// Sum of per-example scores, `[1]` (correct predictions for classification,
    /// exact matches for generation, ...). The task's score (%) is
    /// `100 * score / count`.
    pub score: Tensor<1>,
    /// Examples in the batch.
    pub count: usize,
}

/// A model with adapters that maps a batch to a loss and a score at its
/// active rank. Everything else (the method's `P`, DyLoRA's draws, per-rank
/// evaluation, AURAC) is the runner's business.
pub trait TaskModel: Module + ModuleDisplay + 'static {
    /// The batch type (what the data loader yields).
    type Batch: Clone + Send + Sync + std::fmt::Debug + 'static;

    /// Loss and score of `batch` with the adapters' active diagonals.
    fn forward_batch(&self, batch: &Self::Batch) -> RankedBatchOutput;
}
