//! The Llama decoder as a [`TaskModel`]: masked SFT loss and token accuracy.

use crate::data::SftBatch;
use crate::kernels::cross_entropy;
use crate::models::llama::LlamaForCausalLm;
use crate::train::{RankedBatchOutput, TaskModel};
use burn::prelude::*;

impl LlamaForCausalLm {
    /// Logits `[N, V]` of the batch's scored positions only (the last prompt
    /// token through the last response token), so `lm_head` runs on `N`
    /// rows rather than `B T`.
    pub fn scored_logits(&self, batch: &SftBatch) -> Tensor<2> {
        let h = self.hidden(
            batch.ids.clone(),
            batch.positions.clone(),
            batch.mask.clone(),
            None,
        );
        let [b, t, d] = h.dims();
        self.project(h.reshape([b * t, d]).select(0, batch.scored.clone()))
    }
}

impl TaskModel for LlamaForCausalLm {
    type Batch = SftBatch;

    /// Loss: the mean cross-entropy over the batch's scored tokens (response
    /// tokens and EOS, each predicted from everything before it); score: the
    /// scored tokens predicted right (argmax); count: the scored tokens, so
    /// the runner's count-weighted loss over batches is the token-weighted
    /// loss over all rows.
    fn forward_batch(&self, batch: &SftBatch) -> RankedBatchOutput {
        let logits = self.scored_logits(batch);
        let loss = cross_entropy(logits.clone(), batch.targets.clone());
        let n = batch.count;
        let correct = logits
            .argmax(1)
            .reshape([n])
            .equal(batch.targets.clone())
            .float()
            .sum();
        RankedBatchOutput {
            loss,
            score: correct,
            count: n,
        }
    }
}
