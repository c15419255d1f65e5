//! The Llama-family causal language model: embeddings, decoder layers, final
//! RMSNorm and the output projection (tied to the embeddings or not), loaded
//! from a Hugging Face directory with adapters attached by module name.

use super::attention::LayerCache;
use super::config::LlamaConfig;
use super::layer::LlamaDecoderLayer;
use super::rotary::RotaryEmbedding;
use crate::adapter::{Injection, frozen_forward};
use crate::models::{BaseDtype, LoadError, ModuleLoader, TensorSource};
use burn::module::Module;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;
use burn::tensor::DType;
use std::path::Path;

/// The family's default adapter targets, as PEFT's `target_modules`: every
/// attention and MLP projection.
pub const DEFAULT_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// What masked attention adds to a score it forbids (large and finite, so a
/// row with every key forbidden, a left-padding query, stays finite).
const FORBIDDEN: f64 = -1e9;

/// A Llama-family decoder with frozen pretrained weights (adapters trainable).
///
/// `logits(ids [B, T], mask [B, T]) -> [B, T, V]`; the pieces
/// ([`LlamaForCausalLm::hidden`], [`LlamaForCausalLm::project`]) let callers
/// project only the positions they score, and decode with a KV cache
/// ([`LlamaForCausalLm::generate`]).
#[derive(Module, Debug)]
pub struct LlamaForCausalLm {
    /// `model.embed_tokens`: `[V, d]`.
    pub embed_tokens: Embedding,
    /// `model.layers.{i}`.
    pub layers: Vec<LlamaDecoderLayer>,
    /// `model.norm`.
    pub norm: RmsNorm,
    /// `lm_head` (`[d, V]`); `None` when tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
    /// Rotary position embedding.
    pub rotary: RotaryEmbedding,
}

impl LlamaForCausalLm {
    /// Loads the model at `path`: a Hugging Face directory (`config.json` and
    /// `model.safetensors` or shards; f32, f16 or bf16) or a GGUF file
    /// (dequantized; see [`LlamaCheckpoint`](super::LlamaCheckpoint)),
    /// keeping the first `n_layers` layers when given, with adapters where
    /// `injection` selects (Hugging Face paths such as
    /// `model.layers.0.self_attn.q_proj`; its outcome is checked), holding
    /// the linear and embedding weights in `dtype`. A missing or mis-shaped
    /// tensor is an error naming it; a model of another architecture is an
    /// error naming it.
    pub fn from_pretrained(
        path: &Path,
        n_layers: Option<usize>,
        injection: Option<&Injection>,
        dtype: BaseDtype,
        device: &Device,
    ) -> Result<(Self, LlamaConfig), LoadError> {
        super::LlamaCheckpoint::open(path)?.load(n_layers, injection, dtype, device)
    }

    /// The model of `config` from any tensor source (a checkpoint, or
    /// [`RandomWeights`](crate::models::RandomWeights)).
    pub fn from_source(
        weights: &dyn TensorSource,
        config: &LlamaConfig,
        n_layers: Option<usize>,
        injection: Option<&Injection>,
        dtype: BaseDtype,
        device: &Device,
    ) -> Result<Self, LoadError> {
        let root = ModuleLoader::new(weights, device)
            .with_injection(injection)
            .with_dtype(dtype);
        let model = Self::load(&root, config, n_layers)?;
        if let Some(injection) = injection {
            injection.finish()?;
        }
        Ok(model)
    }

    /// Loads `model.embed_tokens`, `model.layers.{0..n}`, `model.norm` and
    /// `lm_head` (unless tied) under `vb`.
    pub fn load(
        vb: &ModuleLoader,
        config: &LlamaConfig,
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
        let (d, v) = (config.hidden_size, config.vocab_size);
        let body = vb.pp("model");
        let layers = (0..n)
            .map(|i| LlamaDecoderLayer::load(&body.pp("layers").pp(i), config))
            .collect::<Result<Vec<_>, _>>()?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(vb.linear("lm_head", d, v, false)?)
        };
        Ok(Self {
            embed_tokens: body.embedding("embed_tokens", v, d)?,
            layers,
            norm: body.rms_norm("norm", d, config.rms_norm_eps)?,
            lm_head,
            rotary: RotaryEmbedding::new(config, vb.device()),
        })
    }

    /// The final hidden states `[B, n, d]` (after `model.norm`) of the new
    /// tokens `ids` `[B, n]` at `positions` `[B, n]`.
    ///
    /// `key_mask` `[B, T]` marks the real tokens (1) among every position
    /// attended (`T` = cached + `n`); query `i` attends key `j` when `j` is
    /// at or before it and real. With `caches` (one slot per layer), keys
    /// and values are taken from and appended to them.
    pub fn hidden(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        key_mask: Tensor<2, Int>,
        caches: Option<&mut [Option<LayerCache>]>,
    ) -> Tensor<3> {
        let [_, n] = ids.dims();
        let bias = attention_bias(key_mask, n);
        let (cos, sin) = self.rotary.tables(positions);
        let mut x = in_f32(self.embed_tokens.forward(ids));
        match caches {
            Some(caches) => {
                for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
                    x = layer.forward(x, &cos, &sin, bias.clone(), Some(cache));
                }
            }
            None => {
                for layer in &self.layers {
                    x = layer.forward(x, &cos, &sin, bias.clone(), None);
                }
            }
        }
        self.norm.forward(x)
    }

    /// Logits `[.., V]` of hidden states `[.., d]` (`lm_head`, or the
    /// embedding matrix transposed when tied).
    pub fn project<const D: usize>(&self, h: Tensor<D>) -> Tensor<D> {
        match &self.lm_head {
            Some(head) => frozen_forward(head, h),
            None => {
                let w = self.embed_tokens.weight.val().transpose();
                let dims = h.dims();
                let d = dims[D - 1];
                let rows = h.shape().num_elements() / d;
                let v = w.dims()[1];
                let mut out = dims;
                out[D - 1] = v;
                let held = w.dtype();
                in_f32(h.reshape([rows, d]).cast(held).matmul(w)).reshape(out)
            }
        }
    }

    /// Logits `[B, T, V]` of `ids` `[B, T]` with `mask` `[B, T]` (1 = token;
    /// padding on either side: each row's positions count its tokens).
    pub fn logits(&self, ids: Tensor<2, Int>, mask: Tensor<2, Int>) -> Tensor<3> {
        let positions = positions_of(&mask);
        self.project(self.hidden(ids, positions, mask, None))
    }
}

/// `t` as f32 (a half-precision base's outputs).
fn in_f32<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    match t.dtype() {
        DType::F32 => t,
        _ => t.cast(DType::F32),
    }
}

/// Positions `[B, T]` of padded rows: the number of real tokens before each
/// (`cumsum(mask) - 1`, 0 on leading padding), as transformers' `generate`
/// computes them.
pub fn positions_of(mask: &Tensor<2, Int>) -> Tensor<2, Int> {
    let [b, t] = mask.dims();
    let values: Vec<i64> = mask
        .clone()
        .into_data()
        .try_to_vec_as::<i64>()
        .unwrap_or_else(|_| vec![1; b * t]);
    let positions = positions_from(&values, b, t);
    Tensor::from_data(TensorData::new(positions, [b, t]), &mask.device())
}

/// `cumsum(mask) - 1` per row of a row-major `[b, t]` mask, 0 on padding
/// before the first token.
pub(crate) fn positions_from(mask: &[i64], b: usize, t: usize) -> Vec<i64> {
    let mut out = vec![0i64; b * t];
    for row in 0..b {
        let mut seen = 0;
        for col in 0..t {
            seen += mask[row * t + col];
            out[row * t + col] = (seen - 1).max(0);
        }
    }
    out
}

/// The additive attention bias `[B, 1, n, T]` for the last `n` of `T`
/// positions: 0 where query `i` (position `T - n + i`) may attend key `j`
/// (`j <= T - n + i` and `key_mask[j] = 1`), -1e9 elsewhere.
pub fn attention_bias(key_mask: Tensor<2, Int>, n: usize) -> Tensor<4> {
    let [b, t] = key_mask.dims();
    let device = key_mask.device();
    let keys = Tensor::<1, Int>::arange(0..t as i64, &device)
        .reshape([1, t])
        .expand([n, t]);
    let queries = Tensor::<1, Int>::arange((t - n) as i64..t as i64, &device)
        .reshape([n, 1])
        .expand([n, t]);
    let causal = keys.lower_equal(queries).float().reshape([1, n, t]);
    let allowed = causal * key_mask.float().reshape([b, 1, t]);
    allowed
        .sub_scalar(1.0)
        .mul_scalar(-FORBIDDEN)
        .reshape([b, 1, n, t])
}
