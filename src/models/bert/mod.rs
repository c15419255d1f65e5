//! A BERT encoder (Hugging Face layout) on burn's backend-agnostic API, with
//! adapters on any subset of its linear layers.

mod attention;
mod config;
mod embeddings;
mod encoder;
mod layer;
mod tokens;

pub use attention::BertSelfAttention;
pub use config::BertConfig;
pub use embeddings::BertEmbeddings;
pub use encoder::{BertEncoder, DEFAULT_TARGETS, mean_pool};
pub use layer::BertLayer;
pub use tokens::TokenLayout;
