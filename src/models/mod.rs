//! Model families loaded from Hugging Face directories (BERT encoders,
//! Llama-family decoders; those also from GGUF files), and the weight loading they share: the
//! safetensors reader ([`WeightFiles`]: one file or shards, f32/f16/bf16),
//! seeded [`RandomWeights`] for models without a checkpoint, and the path-composing [`ModuleLoader`] that attaches
//! adapters through one [`Injection`](crate::Injection).

pub mod bert;
mod dtype;
pub mod gguf;
pub mod llama;
mod loader;
mod random;
mod weights;

pub use dtype::BaseDtype;
pub use loader::ModuleLoader;
pub use random::RandomWeights;
pub use weights::{LoadError, SHARD_INDEX, SINGLE_FILE, TensorSource, WeightFiles};
