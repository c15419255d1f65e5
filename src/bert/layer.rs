//! One BERT encoder layer.

use super::attention::BertSelfAttention;
use crate::adaptable::AdaptableLinear;
use burn::module::Module;
use burn::nn::LayerNorm;
use burn::prelude::*;
use burn::tensor::activation::gelu;

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
    pub norm: LayerNorm,
}

impl BertLayer {
    /// `x`: `[B, T, d]`, `mask_bias`: `[B, 1, 1, T]` -> `[B, T, d]`.
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let h = self.attention.forward(x, mask_bias);
        let ffn = self
            .output
            .forward(gelu(self.intermediate.forward(h.clone())));
        self.norm.forward(ffn + h)
    }
}
