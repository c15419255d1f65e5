//! A Hugging Face `tokenizer.json` with our own truncation and no fixed padding.

use crate::models::LoadError;
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// A `tokenizers` tokenizer that truncates to `max_len` tokens (special tokens
/// included) and never pads (batches pad to their longest member).
///
/// The MiniLM `tokenizer.json` fixes truncation at 128 and padding to 128;
/// both are overridden here.
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    max_len: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`. `max_len` must be at least 2 (`[CLS]`, `[SEP]`).
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self, LoadError> {
        let err = |reason: String| LoadError::Tokenizer {
            path: path.to_path_buf(),
            reason,
        };
        if max_len < 2 {
            return Err(err(format!(
                "max length {max_len} is too small (need >= 2)"
            )));
        }
        if !path.is_file() {
            return Err(err("file not found (run scripts/fetch-assets.sh)".into()));
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| err(e.to_string()))?;
        inner.with_padding(None);
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            max_len,
        })
    }

    /// The truncation length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Token ids of each text (`[CLS] ... [SEP]`, truncated).
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, LoadError> {
        let encodings =
            self.inner
                .encode_batch(texts.to_vec(), true)
                .map_err(|e| LoadError::Tokenizer {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }
}
