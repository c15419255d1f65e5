//! BERT self-attention block with its output projection and post-LayerNorm.

use super::config::BertConfig;
use crate::adapter::AdaptableLinear;
use crate::kernels::{FusedLayerNorm, softmax_last};
use crate::models::{LoadError, ModuleLoader};
use burn::module::Module;
use burn::prelude::*;

use super::tokens::TokenLayout;

/// Multi-head self-attention, `LayerNorm(x + dense(attn(x)))`.
///
/// Hugging Face names: `attention.self.{query,key,value}`, `attention.output.dense`,
/// `attention.output.LayerNorm`.
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    /// `attention.self.query`.
    pub query: AdaptableLinear,
    /// `attention.self.key`.
    pub key: AdaptableLinear,
    /// `attention.self.value`.
    pub value: AdaptableLinear,
    /// `attention.output.dense`.
    pub output: AdaptableLinear,
    /// `attention.output.LayerNorm`.
    pub norm: FusedLayerNorm,
    /// Number of heads.
    pub n_heads: usize,
}

impl BertSelfAttention {
    /// Loads `self.{query,key,value}`, `output.dense` and `output.LayerNorm`
    /// under `vb` (Hugging Face: `encoder.layer.{i}.attention`), each linear
    /// adapted when `vb`'s injection selects it.
    pub fn load(vb: &ModuleLoader, config: &BertConfig) -> Result<Self, LoadError> {
        let d = config.hidden_size;
        let heads = vb.pp("self");
        let output = vb.pp("output");
        Ok(Self {
            query: heads.adaptable_linear("query", d, d, true)?,
            key: heads.adaptable_linear("key", d, d, true)?,
            value: heads.adaptable_linear("value", d, d, true)?,
            output: output.adaptable_linear("dense", d, d, true)?,
            norm: output.layer_norm("LayerNorm", d, config.layer_norm_eps)?,
            n_heads: config.num_attention_heads,
        })
    }

    /// `x`: `[N, d]`, the real tokens packed by `tokens` (see [`TokenLayout`]).
    /// The projections run on the `N` tokens; the score and context products on
    /// the padded `[B, h, T, T]` layout with `tokens.mask_bias`. Returns `[N, d]`.
    pub fn forward(&self, x: Tensor<2>, tokens: &TokenLayout) -> Tensor<2> {
        let [_, d] = x.dims();
        let (b, t, h) = (tokens.batch, tokens.len, self.n_heads);
        let hd = d / h;
        let heads = |y: Tensor<2>| tokens.unpack(y).reshape([b, t, h, hd]).swap_dims(1, 2);
        // 1/√hd scales the packed queries ([N, d]) rather than the scores
        // ([B, h, T, T], several times larger): one pass less each way.
        let q = heads(self.query.forward(x.clone()).div_scalar((hd as f64).sqrt()));
        let k = heads(self.key.forward(x.clone()));
        let v = heads(self.value.forward(x.clone()));
        let scores = q.matmul(k.swap_dims(2, 3)) + tokens.mask_bias.clone();
        let context = softmax_last(scores)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b * t, d]);
        self.norm
            .forward(self.output.forward(tokens.pack(context)) + x)
    }
}
