//! One Llama decoder layer (pre-norm).

use super::attention::{LayerCache, LlamaAttention};
use super::config::LlamaConfig;
use super::mlp::LlamaMlp;
use crate::models::{LoadError, ModuleLoader};
use burn::module::Module;
use burn::nn::RmsNorm;
use burn::prelude::*;

/// `h = x + attn(rms(x)); h + mlp(rms(h))`.
///
/// Hugging Face names: `self_attn`, `mlp`, `input_layernorm`, `post_attention_layernorm`.
#[derive(Module, Debug)]
pub struct LlamaDecoderLayer {
    /// `self_attn`.
    pub self_attn: LlamaAttention,
    /// `mlp`.
    pub mlp: LlamaMlp,
    /// `input_layernorm`.
    pub input_layernorm: RmsNorm,
    /// `post_attention_layernorm`.
    pub post_attention_layernorm: RmsNorm,
}

impl LlamaDecoderLayer {
    /// Loads the layer under `vb` (Hugging Face: `model.layers.{i}`).
    pub fn load(vb: &ModuleLoader, config: &LlamaConfig) -> Result<Self, LoadError> {
        let (d, eps) = (config.hidden_size, config.rms_norm_eps);
        Ok(Self {
            self_attn: LlamaAttention::load(&vb.pp("self_attn"), config)?,
            mlp: LlamaMlp::load(&vb.pp("mlp"), config)?,
            input_layernorm: vb.rms_norm("input_layernorm", d, eps)?,
            post_attention_layernorm: vb.rms_norm("post_attention_layernorm", d, eps)?,
        })
    }

    /// `x` `[B, n, d]` -> `[B, n, d]`; see [`LlamaAttention::forward`].
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        bias: Tensor<4>,
        cache: Option<&mut Option<LayerCache>>,
    ) -> Tensor<3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), cos, sin, bias, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}
