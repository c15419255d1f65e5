//! The BERT encoder: embeddings, `L` layers, loading from a Hugging Face directory,
//! and adapter injection by Hugging Face module name.

use super::attention::BertSelfAttention;
use super::config::BertConfig;
use super::embeddings::BertEmbeddings;
use super::layer::BertLayer;
use super::tokens::TokenLayout;
use super::weights::{LoadError, WeightFile};
use crate::adaptable::AdaptableLinear;
use crate::adapter::MatryoshkaConfig;
use crate::error::{AdapterError, Result};
use crate::inject::Targets;
use burn::module::Module;
use burn::prelude::*;
use std::path::Path;

/// The RT protocol's adapter targets: every encoder linear (Hugging Face names).
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
    /// Loads `config.json` and `model.safetensors` from `dir` (all layers).
    pub fn from_pretrained(dir: &Path, device: &Device) -> Result<(Self, BertConfig), LoadError> {
        Self::from_pretrained_layers(dir, None, device)
    }

    /// Like [`BertEncoder::from_pretrained`], keeping only the first `n_layers`
    /// layers when given (fast tests; `None` = all).
    ///
    /// PyTorch `[out, in]` linear weights are transposed to burn's `[in, out]`;
    /// tensors the encoder does not use (`embeddings.position_ids`, `pooler.*`, any
    /// head) are ignored. A missing or mis-shaped tensor is an error naming it.
    pub fn from_pretrained_layers(
        dir: &Path,
        n_layers: Option<usize>,
        device: &Device,
    ) -> Result<(Self, BertConfig), LoadError> {
        if !dir.is_dir() {
            return Err(LoadError::MissingDir(dir.to_path_buf()));
        }
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let weights = WeightFile::open(&dir.join("model.safetensors"))?;
        // Hugging Face checkpoints may or may not carry the `bert.` prefix.
        let prefix = if weights
            .names()
            .iter()
            .any(|n| n.starts_with("bert.embeddings."))
        {
            "bert."
        } else {
            ""
        };
        let d = config.hidden_size;
        let eps = config.layer_norm_eps;
        let e = |name: &str| format!("{prefix}embeddings.{name}");
        let embeddings = BertEmbeddings {
            word: weights.embedding(&e("word_embeddings.weight"), config.vocab_size, d, device)?,
            position: weights.embedding(
                &e("position_embeddings.weight"),
                config.max_position_embeddings,
                d,
                device,
            )?,
            token_type: weights.embedding(
                &e("token_type_embeddings.weight"),
                config.type_vocab_size,
                d,
                device,
            )?,
            norm: weights.layer_norm(&e("LayerNorm"), d, eps, device)?,
        };
        let n = n_layers
            .unwrap_or(config.num_hidden_layers)
            .min(config.num_hidden_layers);
        let ffn = config.intermediate_size;
        let mut layers = Vec::with_capacity(n);
        for i in 0..n {
            let p = format!("{prefix}encoder.layer.{i}");
            let lin = |name: &str, d_in, d_out| {
                weights
                    .linear(&format!("{p}.{name}"), d_in, d_out, device)
                    .map(AdaptableLinear::Plain)
            };
            layers.push(BertLayer {
                attention: BertSelfAttention {
                    query: lin("attention.self.query", d, d)?,
                    key: lin("attention.self.key", d, d)?,
                    value: lin("attention.self.value", d, d)?,
                    output: lin("attention.output.dense", d, d)?,
                    norm: weights.layer_norm(
                        &format!("{p}.attention.output.LayerNorm"),
                        d,
                        eps,
                        device,
                    )?,
                    n_heads: config.num_attention_heads,
                },
                intermediate: lin("intermediate.dense", d, ffn)?,
                output: lin("output.dense", ffn, d)?,
                norm: weights.layer_norm(&format!("{p}.output.LayerNorm"), d, eps, device)?,
            });
        }
        Ok((Self { embeddings, layers }, config))
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

    /// Every linear layer with its Hugging Face module path.
    pub fn linear_paths(&self) -> Vec<String> {
        let mut paths = Vec::new();
        for i in 0..self.layers.len() {
            for name in [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "intermediate.dense",
                "output.dense",
            ] {
                paths.push(format!("encoder.layer.{i}.{name}"));
            }
        }
        paths
    }

    /// Attaches adapters from `config` to the linears whose Hugging Face path
    /// (e.g. `encoder.layer.0.attention.self.query`) `targets` matches. Returns
    /// the adapted paths; errors if none matched or the config is invalid.
    pub fn with_adapters(
        mut self,
        config: &MatryoshkaConfig,
        targets: &Targets,
    ) -> Result<(Self, Vec<String>)> {
        config.train_p()?;
        let mut adapted = Vec::new();
        let mut visit = |path: String, layer: AdaptableLinear| -> Result<AdaptableLinear> {
            if targets.matches(&path) {
                adapted.push(path);
                layer.adapt(config)
            } else {
                Ok(layer)
            }
        };
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.drain(..).enumerate() {
            let p = format!("encoder.layer.{i}");
            let BertLayer {
                attention,
                intermediate,
                output,
                norm,
            } = layer;
            let attention = BertSelfAttention {
                query: visit(format!("{p}.attention.self.query"), attention.query)?,
                key: visit(format!("{p}.attention.self.key"), attention.key)?,
                value: visit(format!("{p}.attention.self.value"), attention.value)?,
                output: visit(format!("{p}.attention.output.dense"), attention.output)?,
                norm: attention.norm,
                n_heads: attention.n_heads,
            };
            layers.push(BertLayer {
                attention,
                intermediate: visit(format!("{p}.intermediate.dense"), intermediate)?,
                output: visit(format!("{p}.output.dense"), output)?,
                norm,
            });
        }
        self.layers = layers;
        if adapted.is_empty() {
            return Err(AdapterError::NoTargetMatched {
                patterns: targets.describe(),
                seen: self.linear_paths(),
            });
        }
        Ok((self, adapted))
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
