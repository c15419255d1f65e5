//! What one device holds to train adapters on a Llama-family model: the
//! formula behind the README's "Scaling" table and `mlora memory`.
//!
//! With `P` base parameters, `P_a = L R Σ (d_in + d_out)` adapter parameters
//! (all seven projections of `L` layers), `n` tokens per device
//! (rows x sequence length) of which `n_s` are scored:
//!
//! - base weights: `P * bytes(dtype)` (frozen; no gradients, no optimiser state);
//! - adapters: `4 P_a` (f32 weights) + `4 P_a` (gradients) + `8 P_a` (AdamW's
//!   two moments) on a device that steps the optimiser: every device under
//!   `ddp`, the first under `multi`, which also receives the other workers'
//!   gradients (`4 P_a` each); the other `multi` workers hold `8 P_a`;
//! - activations saved for the backward pass, f32, per token and layer:
//!   `6 d + 2 kv + 3 f + 7 R + H T` (both RMSNorms' inputs and outputs, `q`,
//!   `k`, `v`, the attention output, the attention probabilities over `T`
//!   keys, SwiGLU's gate, up and output, each adapter's `x A`), times
//!   `L n * 4` bytes;
//! - the output projection at scored positions: logits and their gradient,
//!   `2 n_s V * 4` bytes;
//! - one layer's attention workspace beside them: `2 B H T^2 * 4` bytes
//!   (the scores and their masked copy in the forward pass, the
//!   probabilities' and scores' gradients in the backward pass; no fused
//!   attention kernel here).
//!
//! It leaves out what does not grow with the model (the backend's pools and
//! their rounding, the tokenizer, the process itself); measured against it in
//! BENCHMARKS.md.

use crate::models::BaseDtype;
use crate::models::llama::LlamaConfig;
use crate::train::ParallelStrategy;
use serde::Serialize;

/// Bytes per device, by what they hold (see the module docs for the formula).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DeviceMemory {
    /// The frozen base's weights.
    pub base: f64,
    /// Adapter weights, their gradients, the optimiser's moments and
    /// gradients received from other workers.
    pub adapters: f64,
    /// Activations saved for the backward pass.
    pub activations: f64,
    /// Logits at scored positions and their gradient.
    pub logits: f64,
    /// One layer's attention scores and their gradients, alive beside the rest.
    pub workspace: f64,
}

impl DeviceMemory {
    /// The sum.
    pub fn total(&self) -> f64 {
        self.base + self.adapters + self.activations + self.logits + self.workspace
    }
}

/// The shape of a training run on one device of a data-parallel group.
#[derive(Debug, Clone)]
pub struct MemoryPlan<'a> {
    /// The model.
    pub model: &'a LlamaConfig,
    /// Layers built (`None`: all).
    pub layers: Option<usize>,
    /// Adapter rank `R`.
    pub rank: usize,
    /// The base's dtype.
    pub base_dtype: BaseDtype,
    /// Rows per device per micro-batch (global batch / devices / accumulation).
    pub rows: usize,
    /// Tokens per row.
    pub seq: usize,
    /// Scored tokens per row (the response and EOS).
    pub scored: usize,
    /// Devices.
    pub devices: usize,
    /// How they train.
    pub strategy: ParallelStrategy,
}

impl MemoryPlan<'_> {
    /// Adapter parameters (`P_a`).
    pub fn adapter_params(&self) -> usize {
        let m = self.model;
        let hd = m.head_size();
        let (d, f) = (m.hidden_size, m.intermediate_size);
        let (q, kv) = (m.num_attention_heads * hd, m.kv_heads() * hd);
        self.layer_count() * self.rank * ((d + q) + 2 * (d + kv) + (q + d) + 2 * (d + f) + (f + d))
    }

    fn layer_count(&self) -> usize {
        self.layers.unwrap_or(self.model.num_hidden_layers)
    }

    /// What the first device holds (under `multi`, the one that steps the
    /// optimiser) and what each other device holds.
    pub fn per_device(&self) -> (DeviceMemory, DeviceMemory) {
        let m = self.model;
        let l = self.layer_count() as f64;
        let base = m.parameter_count_with(self.layer_count()) as f64
            * match self.base_dtype {
                BaseDtype::F32 => 4.0,
                BaseDtype::Bf16 | BaseDtype::F16 => 2.0,
            };
        let pa = self.adapter_params() as f64;
        let hd = m.head_size();
        let (d, f) = (m.hidden_size as f64, m.intermediate_size as f64);
        let kv = (m.kv_heads() * hd) as f64;
        let h = m.num_attention_heads as f64;
        let tokens = (self.rows * self.seq) as f64;
        let per_token = 6.0 * d + 2.0 * kv + 3.0 * f + 7.0 * self.rank as f64 + h * self.seq as f64;
        let activations = 4.0 * l * tokens * per_token;
        let logits = 2.0 * (self.rows * self.scored) as f64 * m.vocab_size as f64 * 4.0;
        let workspace = 2.0 * self.rows as f64 * h * (self.seq as f64).powi(2) * 4.0;
        let workers = self.devices.max(1) as f64;
        let (first_adapters, other_adapters) = match self.strategy {
            ParallelStrategy::Ddp => (16.0 * pa, 16.0 * pa),
            ParallelStrategy::Multi => (16.0 * pa + 4.0 * pa * (workers - 1.0), 8.0 * pa),
        };
        let memory = |adapters| DeviceMemory {
            base,
            adapters,
            activations,
            logits,
            workspace,
        };
        (memory(first_adapters), memory(other_adapters))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_counts_are_the_papers_and_the_formula_adds_up() {
        let eight = LlamaConfig::preset("llama-3.1-8b").unwrap();
        let plan = MemoryPlan {
            model: &eight,
            layers: None,
            rank: 256,
            base_dtype: BaseDtype::Bf16,
            rows: 1,
            seq: 512,
            scored: 256,
            devices: 2,
            strategy: ParallelStrategy::Multi,
        };
        // 32 layers x 256 x (q 8192 + k, v 2 x 5120 + o 8192 + gate, up 2 x 18432 + down 18432)
        assert_eq!(plan.adapter_params(), 32 * 256 * 81_920);
        let (first, other) = plan.per_device();
        assert_eq!(first.base, 2.0 * eight.parameter_count() as f64);
        let pa = plan.adapter_params() as f64;
        assert_eq!((first.adapters, other.adapters), (20.0 * pa, 8.0 * pa));
        let per_token = 6.0 * 4096.0 + 2.0 * 1024.0 + 3.0 * 14336.0 + 7.0 * 256.0 + 32.0 * 512.0;
        assert_eq!(first.activations, 4.0 * 32.0 * 512.0 * per_token);
        assert_eq!(first.logits, 2.0 * 256.0 * 128_256.0 * 4.0);
        assert_eq!(first.workspace, 2.0 * 32.0 * 512.0 * 512.0 * 4.0);
        let ddp = MemoryPlan {
            strategy: ParallelStrategy::Ddp,
            ..plan
        };
        assert_eq!(ddp.per_device().1.adapters, 16.0 * pa);
    }
}
