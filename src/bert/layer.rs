//! One BERT encoder layer.

use super::attention::BertSelfAttention;
use crate::adaptable::AdaptableLinear;
use crate::fused_ops::FusedLayerNorm;
use burn::module::Module;
use burn::prelude::*;

use super::gelu::gelu;
use super::tokens::TokenLayout;

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
    /// `x`: `[N, d]`, the real tokens packed by `tokens` -> `[N, d]`.
    pub fn forward(&self, x: Tensor<2>, tokens: &TokenLayout) -> Tensor<2> {
        let h = self.attention.forward(x, tokens);
        let ffn = self
            .output
            .forward(gelu(self.intermediate.forward(h.clone())));
        self.norm.forward(ffn + h)
    }
}
