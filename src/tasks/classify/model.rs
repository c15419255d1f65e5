//! Sequence classification: encoder -> mean over unmasked tokens -> `Linear(d, n_classes)`.

use crate::data::TextBatch;
use crate::models::bert::{BertEncoder, mean_pool};
use crate::train::{RankedBatchOutput, TaskModel};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// A frozen (adapted) BERT encoder with a trainable classification head.
#[derive(Module, Debug)]
pub struct SequenceClassifier {
    /// The encoder (frozen base, adapters trainable).
    pub encoder: BertEncoder,
    /// `Linear(hidden, n_classes)`, trained in full.
    pub head: Linear,
}

impl SequenceClassifier {
    /// A classifier over `encoder` with a fresh head for `n_classes` classes.
    pub fn new(encoder: BertEncoder, hidden: usize, n_classes: usize, device: &Device) -> Self {
        Self {
            encoder,
            head: LinearConfig::new(hidden, n_classes).init(device),
        }
    }

    /// Mean-pooled sentence embeddings `[B, d]`.
    pub fn embed(&self, ids: Tensor<2, Int>, mask: Tensor<2, Int>) -> Tensor<2> {
        mean_pool(self.encoder.forward(ids, mask.clone()), mask)
    }

    /// Class logits `[B, n_classes]` for `ids`, `mask` `[B, T]`.
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2, Int>) -> Tensor<2> {
        self.head.forward(self.embed(ids, mask))
    }
}

impl TaskModel for SequenceClassifier {
    type Batch = TextBatch;

    /// Cross-entropy loss; score = number of correct argmax predictions.
    fn forward_batch(&self, batch: &TextBatch) -> RankedBatchOutput {
        let logits = self.forward(batch.ids.clone(), batch.mask.clone());
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.labels.clone());
        let [n, _] = logits.dims();
        let correct = logits
            .argmax(1)
            .reshape([n])
            .equal(batch.labels.clone())
            .float()
            .sum();
        RankedBatchOutput {
            loss,
            score: correct,
            count: n,
        }
    }
}
