//! Where a Llama-family decoder comes from: a Hugging Face directory or a
//! GGUF file. The one seam every command and task opens a model through:
//! config, weights (as a [`TensorSource`]), tokenizer and fingerprint.

use super::config::LlamaConfig;
use super::model::LlamaForCausalLm;
use crate::adapter::Injection;
use crate::io::manifest::sha256_hex;
use crate::models::gguf::{GgufModel, is_gguf};
use crate::models::{BaseDtype, LoadError, TensorSource, WeightFiles};
use burn::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::Tokenizer;

/// A Llama-family checkpoint on disk.
///
/// ```no_run
/// use matryoshka_lora::models::llama::LlamaCheckpoint;
/// // a directory (config.json, tokenizer.json, model.safetensors) or a .gguf file
/// let checkpoint = LlamaCheckpoint::open("assets/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref())?;
/// let config = checkpoint.config()?;
/// let tokenizer = checkpoint.tokenizer()?;
/// println!("{} layers, vocabulary {}", config.num_hidden_layers, tokenizer.get_vocab_size(true));
/// # Ok::<(), matryoshka_lora::models::LoadError>(())
/// ```
#[derive(Debug, Clone)]
pub enum LlamaCheckpoint {
    /// A Hugging Face directory: `config.json`, `tokenizer.json`,
    /// `model.safetensors` (or shards).
    HfDir(PathBuf),
    /// A GGUF file (header parsed, tensor data mapped).
    Gguf(Arc<GgufModel>),
}

impl LlamaCheckpoint {
    /// Opens `path`: a directory, or a GGUF file (by extension or magic).
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        if path.is_dir() {
            Ok(Self::HfDir(path.to_path_buf()))
        } else if is_gguf(path) {
            let gguf = GgufModel::open(path)?;
            gguf.llama_architecture()?;
            Ok(Self::Gguf(Arc::new(gguf)))
        } else if !path.exists() {
            Err(LoadError::MissingDir(path.to_path_buf()))
        } else {
            Err(LoadError::NotAModel(path.to_path_buf()))
        }
    }

    /// The directory or file.
    pub fn path(&self) -> &Path {
        match self {
            Self::HfDir(dir) => dir,
            Self::Gguf(gguf) => gguf.path(),
        }
    }

    /// The decoder's config (`config.json`, or the GGUF `llama.*` keys).
    pub fn config(&self) -> Result<LlamaConfig, LoadError> {
        match self {
            Self::HfDir(dir) => LlamaConfig::from_file(&dir.join("config.json")),
            Self::Gguf(gguf) => gguf.llama_config(),
        }
    }

    /// The tokenizer (`tokenizer.json`, or the GGUF file's own unless a
    /// `tokenizer.json` lies beside it), without truncation or padding.
    pub fn tokenizer(&self) -> Result<Tokenizer, LoadError> {
        let (mut tokenizer, path) = match self {
            Self::HfDir(dir) => {
                let path = dir.join("tokenizer.json");
                let t = Tokenizer::from_file(&path).map_err(|e| LoadError::Tokenizer {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                (t, path)
            }
            Self::Gguf(gguf) => (gguf.tokenizer()?, gguf.path().to_path_buf()),
        };
        tokenizer
            .with_truncation(None)
            .map_err(|e| LoadError::Tokenizer {
                path,
                reason: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        Ok(tokenizer)
    }

    /// What identifies the base model in checkpoints: the sha256 of
    /// `config.json`, or of the GGUF header (metadata and tensor infos).
    pub fn fingerprint(&self) -> Option<String> {
        match self {
            Self::HfDir(dir) => std::fs::read(dir.join("config.json"))
                .ok()
                .map(|bytes| sha256_hex(&bytes)),
            Self::Gguf(gguf) => Some(gguf.fingerprint().to_string()),
        }
    }

    /// The weights, by Hugging Face name.
    pub fn weights(&self) -> Result<Box<dyn TensorSource + '_>, LoadError> {
        match self {
            Self::HfDir(dir) => Ok(Box::new(WeightFiles::open_dir(dir)?)),
            Self::Gguf(gguf) => Ok(Box::new(gguf.as_ref())),
        }
    }

    /// The model (see [`LlamaForCausalLm::from_source`]) and its config.
    pub fn load(
        &self,
        n_layers: Option<usize>,
        injection: Option<&Injection>,
        dtype: BaseDtype,
        device: &Device,
    ) -> Result<(LlamaForCausalLm, LlamaConfig), LoadError> {
        let config = self.config()?;
        let weights = self.weights()?;
        let model = LlamaForCausalLm::from_source(
            weights.as_ref(),
            &config,
            n_layers,
            injection,
            dtype,
            device,
        )?;
        Ok((model, config))
    }
}
