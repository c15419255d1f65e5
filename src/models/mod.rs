//! Model families loaded from Hugging Face directories, and the weight
//! loading they share: the safetensors reader ([`WeightFiles`]: one file or
//! shards, f32/f16/bf16) and the path-composing [`ModuleLoader`] that attaches
//! adapters through one [`Injection`](crate::Injection).

pub mod bert;
mod loader;
mod weights;

pub use loader::ModuleLoader;
pub use weights::{LoadError, SHARD_INDEX, SINGLE_FILE, WeightFiles};
