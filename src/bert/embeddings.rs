//! BERT embeddings: word + position + token type, then LayerNorm.

use crate::fused_ops::FusedLayerNorm;
use burn::module::Module;
use burn::nn::Embedding;
use burn::prelude::*;
use burn::tensor::s;

/// `LayerNorm(word[ids] + position[0..T] + token_type[0])`, all frozen.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `[vocab, d]`.
    pub word: Embedding,
    /// `[max_positions, d]`.
    pub position: Embedding,
    /// `[type_vocab, d]`; every token gets type 0 (single-segment input).
    pub token_type: Embedding,
    /// Post-sum LayerNorm.
    pub norm: FusedLayerNorm,
}

impl BertEmbeddings {
    /// `ids`: `[B, T]` -> `[B, T, d]`. `T` must not exceed the position table.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, t] = ids.dims();
        let words = self.word.forward(ids);
        let positions = self
            .position
            .weight
            .val()
            .slice(s![0..t, ..])
            .unsqueeze_dim::<3>(0);
        let token_type = self
            .token_type
            .weight
            .val()
            .slice(s![0..1, ..])
            .unsqueeze_dim::<3>(0);
        self.norm.forward(words + positions + token_type)
    }
}
