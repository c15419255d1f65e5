//! Llama-family causal decoders (Llama 2 / 3.x, TinyLlama, SmolLM2, ...):
//! RMSNorm, rotary embeddings (with `llama3` frequency scaling),
//! grouped-query attention with a causal mask and a KV cache, SwiGLU MLP,
//! tied or untied output embeddings, loaded from a Hugging Face directory or
//! a GGUF file ([`LlamaCheckpoint`]); one concept per file, weights loaded by
//! composing Hugging Face paths module by module.

mod attention;
mod checkpoint;
mod config;
mod generate;
mod layer;
mod mlp;
mod model;
mod rotary;

pub use attention::{LayerCache, LlamaAttention};
pub use checkpoint::LlamaCheckpoint;
pub use config::{LlamaConfig, PRESETS, RopeScaling, TokenIds};
pub use generate::Generation;
pub use layer::LlamaDecoderLayer;
pub use mlp::LlamaMlp;
pub use model::{DEFAULT_TARGETS, LlamaForCausalLm, attention_bias, positions_of};
pub use rotary::{RotaryEmbedding, inverse_frequencies};
