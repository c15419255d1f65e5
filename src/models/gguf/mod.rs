//! GGUF (llama.cpp's model format) as a source of Llama-family models: the
//! file that people who run LLMs locally already have (llama.cpp, Ollama,
//! LM Studio).
//!
//! [`GgufModel`] is a [`TensorSource`](crate::models::TensorSource) that
//! answers Hugging Face names with dequantized f32 tensors, so the decoder
//! loads from it through the same [`ModuleLoader`](crate::models::ModuleLoader)
//! as from a Hugging Face directory; its [`GgufModel::llama_config`] and
//! [`GgufModel::tokenizer`] come from the file's metadata. The container and
//! the block formats are read by the `rlx-gguf` crate (memory-mapped, GGUF
//! v2/v3; F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K checked
//! here against the Python `gguf` package).
//!
//! A quantized base is held dequantized (f32, or `--base-dtype bf16/f16`):
//! the frozen base is the 4-bit model's values, as in QLoRA.

mod config;
mod file;
mod names;
mod tokenizer;

pub use file::{GgufModel, SUPPORTED_ARCHITECTURES, SUPPORTED_TYPES, is_gguf};
pub use names::{gguf_module, gguf_tensor, hf_tensor, rotary_heads, rows_from_gguf, rows_to_gguf};
pub use tokenizer::PRE_TOKENIZERS;
