//! One BERT encoder layer.

use super::attention::BertSelfAttention;
use super::config::BertConfig;
use super::tokens::TokenLayout;
use crate::adapter::AdaptableLinear;
use crate::kernels::{FusedLayerNorm, gelu};
use crate::models::{LoadError, ModuleLoader};
use burn::module::Module;
use burn::prelude::*;

/// Attention then the feed-forward block `LayerNorm(h + output(gelu(intermediate(h))))`
/// (exact erf GELU, post-LayerNorm).
#[derive(Module, Debug)]
pub struct BertLayer {
    /// The attention block.
    pub attention: BertSelfAttention,
    /// `intermediate.dense`: `[d, ffn]`.
    pub intermediate: AdaptableLinear,
    /// `output.dense`: `[ffn, d]`.
    pub output: AdaptableLinear,
    /// `output.LayerNorm`.
    pub norm: FusedLayerNorm,
}

impl BertLayer {
    /// Loads `attention`, `intermediate.dense`, `output.dense` and
    /// `output.LayerNorm` under `vb` (Hugging Face: `encoder.layer.{i}`).
    pub fn load(vb: &ModuleLoader, config: &BertConfig) -> Result<Self, LoadError> {
        let (d, ffn) = (config.hidden_size, config.intermediate_size);
        let output = vb.pp("output");
        Ok(Self {
            attention: BertSelfAttention::load(&vb.pp("attention"), config)?,
            intermediate: vb
                .pp("intermediate")
                .adaptable_linear("dense", d, ffn, true)?,
            output: output.adaptable_linear("dense", ffn, d, true)?,
            norm: output.layer_norm("LayerNorm", d, config.layer_norm_eps)?,
        })
    }

    /// `x`: `[N, d]`, the real tokens packed by `tokens` -> `[N, d]`.
    pub fn forward(&self, x: Tensor<2>, tokens: &TokenLayout) -> Tensor<2> {
        let h = self.attention.forward(x, tokens);
        let ffn = self
            .output
            .forward(gelu(self.intermediate.forward(h.clone())));
        self.norm.forward(ffn + h)
    }
}
