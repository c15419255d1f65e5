//! Grouped-query self-attention of a Llama decoder layer, with an optional
//! key/value cache for decoding.

use super::config::LlamaConfig;
use super::rotary::RotaryEmbedding;
use crate::adapter::AdaptableLinear;
use crate::kernels::softmax_last;
use crate::models::{LoadError, ModuleLoader};
use burn::module::Module;
use burn::prelude::*;

/// The keys and values of the positions seen so far, one layer's:
/// `[B, H_kv, T_past, hd]` each (rotary already applied to the keys).
#[derive(Debug, Clone)]
pub struct LayerCache {
    /// Keys.
    pub k: Tensor<4>,
    /// Values.
    pub v: Tensor<4>,
}

/// `o_proj(softmax(q kᵀ / √hd + bias) v)` with `H` query heads sharing
/// `H_kv` key/value heads (each key/value head serves `H / H_kv` query heads).
///
/// Hugging Face names: `self_attn.{q,k,v,o}_proj`.
#[derive(Module, Debug)]
pub struct LlamaAttention {
    /// `q_proj`: `[d, H hd]`.
    pub q_proj: AdaptableLinear,
    /// `k_proj`: `[d, H_kv hd]`.
    pub k_proj: AdaptableLinear,
    /// `v_proj`: `[d, H_kv hd]`.
    pub v_proj: AdaptableLinear,
    /// `o_proj`: `[H hd, d]`.
    pub o_proj: AdaptableLinear,
    /// Query heads `H`.
    pub n_heads: usize,
    /// Key/value heads `H_kv`.
    pub n_kv_heads: usize,
    /// Per-head size `hd`.
    pub head_dim: usize,
}

impl LlamaAttention {
    /// Loads `{q,k,v,o}_proj` under `vb` (Hugging Face: `model.layers.{i}.self_attn`),
    /// each adapted when `vb`'s injection selects it.
    pub fn load(vb: &ModuleLoader, config: &LlamaConfig) -> Result<Self, LoadError> {
        let (d, hd) = (config.hidden_size, config.head_size());
        let (h, kv) = (config.num_attention_heads, config.kv_heads());
        let bias = config.attention_bias;
        Ok(Self {
            q_proj: vb.adaptable_linear("q_proj", d, h * hd, bias)?,
            k_proj: vb.adaptable_linear("k_proj", d, kv * hd, bias)?,
            v_proj: vb.adaptable_linear("v_proj", d, kv * hd, bias)?,
            o_proj: vb.adaptable_linear("o_proj", h * hd, d, bias)?,
            n_heads: h,
            n_kv_heads: kv,
            head_dim: hd,
        })
    }

    /// `x` `[B, n, d]` (the new positions), rotary tables `[B, 1, n, hd]`,
    /// `bias` `[B, 1, n, T]` (0 where a query may attend a key, a large
    /// negative number elsewhere; `T` = cached + new positions). With a
    /// cache, the new keys and values are appended to it. Returns `[B, n, d]`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        bias: Tensor<4>,
        cache: Option<&mut Option<LayerCache>>,
    ) -> Tensor<3> {
        let [b, n, _] = x.dims();
        let (h, kv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let rep = h / kv;
        let heads = |y: Tensor<3>, count: usize| y.reshape([b, n, count, hd]).swap_dims(1, 2);
        // 1/√hd on the queries ([B, n, H hd]) rather than the scores.
        let q = heads(
            self.q_proj
                .forward(x.clone())
                .div_scalar((hd as f64).sqrt()),
            h,
        );
        let k = heads(self.k_proj.forward(x.clone()), kv);
        let v = heads(self.v_proj.forward(x), kv);
        let q = RotaryEmbedding::apply(q, cos, sin);
        let k = RotaryEmbedding::apply(k, cos, sin);
        let (k, v) = match cache {
            Some(slot) => {
                let (k, v) = match slot.take() {
                    Some(past) => (
                        Tensor::cat(vec![past.k, k], 2),
                        Tensor::cat(vec![past.v, v], 2),
                    ),
                    None => (k, v),
                };
                *slot = Some(LayerCache {
                    k: k.clone(),
                    v: v.clone(),
                });
                (k, v)
            }
            None => (k, v),
        };
        let t = k.dims()[2];
        // Query head j uses key/value head j / rep: group the query heads
        // by their key/value head instead of repeating the keys and values.
        let q = q.reshape([b, kv, rep * n, hd]);
        let scores =
            q.matmul(k.swap_dims(2, 3)).reshape([b, kv, rep, n, t]) + bias.reshape([b, 1, 1, n, t]);
        let probs = softmax_last(scores).reshape([b, kv, rep * n, t]);
        let context = probs
            .matmul(v)
            .reshape([b, h, n, hd])
            .swap_dims(1, 2)
            .reshape([b, n, h * hd]);
        self.o_proj.forward(context)
    }
}
