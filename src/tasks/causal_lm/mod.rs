//! Causal-LM instruction fine-tuning, the paper's own setting: a
//! Llama-family decoder with adapters on every attention and MLP
//! projection, JSONL prompt/response (or GSM8K) rows with the prompt
//! masked out of the loss, and per-rank loss, perplexity and
//! greedy-generation exact match.

mod bench;
mod config;
mod exact_match;
mod memory;
mod model;
mod task;

pub use bench::{LlmBench, LlmBenchResult, SyntheticLmTask, step_flops};
pub use config::CausalLmConfig;
pub use exact_match::{exact_match, final_answer};
pub use memory::{DeviceMemory, MemoryPlan};
pub use task::{CausalLmMeta, CausalLmTask};
