//! The SwiGLU feed-forward block of a Llama decoder layer.

use super::config::LlamaConfig;
use crate::adapter::AdaptableLinear;
use crate::kernels::swiglu;
use crate::models::{LoadError, ModuleLoader};
use burn::module::Module;
use burn::prelude::*;

/// `down_proj(silu(gate_proj(x)) ⊙ up_proj(x))`.
///
/// Hugging Face names: `mlp.{gate,up,down}_proj`.
#[derive(Module, Debug)]
pub struct LlamaMlp {
    /// `gate_proj`: `[d, f]`.
    pub gate_proj: AdaptableLinear,
    /// `up_proj`: `[d, f]`.
    pub up_proj: AdaptableLinear,
    /// `down_proj`: `[f, d]`.
    pub down_proj: AdaptableLinear,
}

impl LlamaMlp {
    /// Loads `{gate,up,down}_proj` under `vb` (Hugging Face: `model.layers.{i}.mlp`).
    pub fn load(vb: &ModuleLoader, config: &LlamaConfig) -> Result<Self, LoadError> {
        let (d, f, bias) = (
            config.hidden_size,
            config.intermediate_size,
            config.mlp_bias,
        );
        Ok(Self {
            gate_proj: vb.adaptable_linear("gate_proj", d, f, bias)?,
            up_proj: vb.adaptable_linear("up_proj", d, f, bias)?,
            down_proj: vb.adaptable_linear("down_proj", f, d, bias)?,
        })
    }

    /// `x`: `[B, T, d]` -> `[B, T, d]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = self.gate_proj.forward(x.clone());
        self.down_proj
            .forward(swiglu(gate, self.up_proj.forward(x)))
    }
}
