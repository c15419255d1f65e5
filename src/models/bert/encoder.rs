//! The BERT encoder: embeddings and `L` layers, loaded from a Hugging Face
//! directory with adapters attached by Hugging Face module name.

use super::config::BertConfig;
use super::embeddings::BertEmbeddings;
use super::layer::BertLayer;
use super::tokens::TokenLayout;
use crate::adapter::Injection;
use crate::models::{LoadError, ModuleLoader, WeightFiles};
use burn::module::Module;
use burn::prelude::*;
use std::path::Path;

/// The family's default adapter targets, as PEFT's `target_modules`: every
/// encoder linear (`attention.self.{query,key,value}`, `attention.output.dense`,
/// `intermediate.dense`, `output.dense`).
pub const DEFAULT_TARGETS: [&str; 6] = [
    "query",
    "key",
    "value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

/// A BERT encoder with frozen pretrained weights.
///
/// `forward(ids [B, T], mask [B, T]) -> last hidden states [B, T, d]`.
#[derive(Module, Debug)]
pub struct BertEncoder {
    /// Embeddings.
    pub embeddings: BertEmbeddings,
    /// Encoder layers.
    pub layers: Vec<BertLayer>,
}

impl BertEncoder {
    /// Loads `config.json` and the checkpoint from `dir` (all layers, no adapters).
    pub fn from_pretrained(dir: &Path, device: &Device) -> Result<(Self, BertConfig), LoadError> {
        Self::from_pretrained_with(dir, None, None, device)
    }

    /// Loads `config.json` and the checkpoint (`model.safetensors` or shards)
    /// from `dir`, keeping the first `n_layers` layers when given (`None`: all;
    /// more than the model has is an error), with adapters where `injection`
    /// selects (Hugging Face paths such as `encoder.layer.0.attention.self.query`).
    ///
    /// Tensors the encoder does not use (`embeddings.position_ids`, `pooler.*`,
    /// any head) are ignored; checkpoints with a `bert.` prefix load too. A
    /// missing or mis-shaped tensor is an error naming it. When `injection` is
    /// given, its outcome is checked ([`Injection::finish`]).
    pub fn from_pretrained_with(
        dir: &Path,
        n_layers: Option<usize>,
        injection: Option<&Injection>,
        device: &Device,
    ) -> Result<(Self, BertConfig), LoadError> {
        if !dir.is_dir() {
            return Err(LoadError::MissingDir(dir.to_path_buf()));
        }
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let weights = WeightFiles::open_dir(dir)?;
        let root = ModuleLoader::new(&weights, device).with_injection(injection);
        // Hugging Face checkpoints may or may not carry the `bert.` prefix.
        let root = if weights.contains("bert.embeddings.word_embeddings.weight") {
            root.pp("bert")
        } else {
            root
        };
        let encoder = Self::load(&root, &config, n_layers)?;
        if let Some(injection) = injection {
            injection.finish()?;
        }
        Ok((encoder, config))
    }

    /// Loads `embeddings` and `encoder.layer.{0..n}` under `vb`.
    pub fn load(
        vb: &ModuleLoader,
        config: &BertConfig,
        n_layers: Option<usize>,
    ) -> Result<Self, LoadError> {
        let available = config.num_hidden_layers;
        let n = n_layers.unwrap_or(available);
        if n > available {
            return Err(LoadError::TooManyLayers {
                asked: n,
                available,
            });
        }
        let embeddings = BertEmbeddings::load(&vb.pp("embeddings"), config)?;
        let layers = vb.pp("encoder.layer");
        let layers = (0..n)
            .map(|i| BertLayer::load(&layers.pp(i), config))
            .collect::<Result<_, _>>()?;
        Ok(Self { embeddings, layers })
    }

    /// Last hidden states. `ids`, `mask`: `[B, T]` (mask 1 for tokens, 0 for
    /// padding) -> `[B, T, d]`, zero at padding positions: the layers compute on
    /// the real tokens only ([`TokenLayout`]), so a padding position has no
    /// hidden state (Hugging Face's values there are never used either).
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2, Int>) -> Tensor<3> {
        let tokens = TokenLayout::from_mask(mask);
        let (b, t) = (tokens.batch, tokens.len);
        let h = self.embeddings.forward(ids);
        let d = h.dims()[2];
        let mut h = tokens.pack(h.reshape([b * t, d]));
        for layer in &self.layers {
            h = layer.forward(h, &tokens);
        }
        tokens.unpack(h).reshape([b, t, d])
    }
}

/// Mean over unmasked tokens: `hidden [B, T, d]`, `mask [B, T]` -> `[B, d]`.
pub fn mean_pool(hidden: Tensor<3>, mask: Tensor<2, Int>) -> Tensor<2> {
    let m = mask.float().unsqueeze_dim::<3>(2); // [B, T, 1]
    let summed = (hidden * m.clone()).sum_dim(1); // [B, 1, d]
    let counts = m.sum_dim(1).clamp_min(1e-9); // [B, 1, 1]
    let pooled = summed / counts;
    let [b, _, d] = pooled.dims();
    pooled.reshape([b, d])
}
