//! BERT embeddings: word + position + token type, then LayerNorm.

use super::config::BertConfig;
use crate::kernels::FusedLayerNorm;
use crate::models::{LoadError, ModuleLoader};
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
    /// Loads `word_embeddings`, `position_embeddings`, `token_type_embeddings`
    /// and `LayerNorm` under `vb` (Hugging Face: `embeddings`).
    pub fn load(vb: &ModuleLoader, config: &BertConfig) -> Result<Self, LoadError> {
        let d = config.hidden_size;
        Ok(Self {
            word: vb.embedding("word_embeddings", config.vocab_size, d)?,
            position: vb.embedding("position_embeddings", config.max_position_embeddings, d)?,
            token_type: vb.embedding("token_type_embeddings", config.type_vocab_size, d)?,
            norm: vb.layer_norm("LayerNorm", d, config.layer_norm_eps)?,
        })
    }

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
