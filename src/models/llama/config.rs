//! `config.json` of a Hugging Face Llama-family decoder (Llama 2/3.x,
//! TinyLlama, SmolLM2, ...), and the shapes of well-known checkpoints.

use crate::models::LoadError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `rope_scaling` of type `llama3` (Llama 3.1 / 3.2): low frequencies are
/// divided by `factor`, high ones kept, the band between interpolated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// `rope_type` (older configs: `type`); only `llama3` is supported.
    #[serde(alias = "type")]
    pub rope_type: String,
    /// Divisor of the low frequencies.
    pub factor: f64,
    /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are scaled.
    pub low_freq_factor: f64,
    /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// The context length the model was pre-trained with.
    pub original_max_position_embeddings: usize,
}

/// A token id or several (`eos_token_id` of Llama 3.1 is a list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// One id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids, in order.
    pub fn ids(&self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }
}

/// The fields of a Hugging Face Llama `config.json` the decoder uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// The architecture (`llama`; other values are refused).
    #[serde(default)]
    pub model_type: String,
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Hidden size `d`.
    pub hidden_size: usize,
    /// MLP inner size.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads `H`.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention; default `H`).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head size (default `d / H`).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// RoPE frequency scaling (`llama3`), if any.
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// Longest sequence the model supports.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// The output projection is the input embedding (`lm_head` absent).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on the attention projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases on the MLP projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Activation (only `silu`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Beginning-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<TokenIds>,
    /// End-of-sequence id(s): the first ends SFT responses; any stops generation.
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Padding id, if the model has one.
    #[serde(default)]
    pub pad_token_id: Option<TokenIds>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_positions() -> usize {
    2048
}
fn default_act() -> String {
    "silu".into()
}

/// transformers 5 writes `rope_parameters` (`rope_type`, `rope_theta` and
/// the scaling fields) where the Hub's checkpoints have `rope_theta` and
/// `rope_scaling`: the former is rewritten into the latter.
fn classic_rope_fields(mut value: serde_json::Value) -> Result<serde_json::Value, String> {
    let Some(rope) = value.get("rope_parameters").cloned() else {
        return Ok(value);
    };
    if rope.is_null() {
        return Ok(value);
    }
    let rope_type = rope["rope_type"].as_str().unwrap_or("default").to_string();
    if value.get("rope_theta").is_none()
        && let Some(theta) = rope.get("rope_theta")
    {
        value["rope_theta"] = theta.clone();
    }
    if value.get("rope_scaling").is_none_or(|s| s.is_null()) && rope_type != "default" {
        value["rope_scaling"] = rope;
    }
    Ok(value)
}

/// The model shapes `mlora bench llm --config` knows (no weights: random).
pub const PRESETS: [&str; 5] = [
    "llama-3.2-1b",
    "llama-3.1-8b",
    "tinyllama-1.1b",
    "smollm2-135m",
    "tiny",
];

impl LlamaConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::io(path, e))?;
        let bad = |reason: String| LoadError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        // The architecture first: a BERT config should say so, not miss a field.
        let model_type = value["model_type"].as_str().unwrap_or("");
        if model_type != "llama" {
            return Err(bad(format!(
                "model_type `{model_type}` is not a Llama-family decoder (expected `llama`: Llama, TinyLlama, SmolLM2, ...)"
            )));
        }
        let value = classic_rope_fields(value).map_err(bad)?;
        let config: Self = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        config.validate().map_err(bad)?;
        Ok(config)
    }

    /// The shape of a well-known checkpoint (see [`PRESETS`]); `tiny` is a
    /// 2-layer model for tests and GPU checks.
    pub fn preset(name: &str) -> Option<Self> {
        let base = Self {
            model_type: "llama".into(),
            vocab_size: 128_256,
            hidden_size: 2048,
            intermediate_size: 8192,
            num_hidden_layers: 16,
            num_attention_heads: 32,
            num_key_value_heads: Some(8),
            head_dim: Some(64),
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: Some(RopeScaling {
                rope_type: "llama3".into(),
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
            max_position_embeddings: 131_072,
            tie_word_embeddings: true,
            attention_bias: false,
            mlp_bias: false,
            hidden_act: "silu".into(),
            bos_token_id: Some(TokenIds::One(128_000)),
            eos_token_id: Some(TokenIds::One(128_001)),
            pad_token_id: None,
        };
        Some(match name {
            "llama-3.2-1b" => base,
            "llama-3.1-8b" => Self {
                hidden_size: 4096,
                intermediate_size: 14_336,
                num_hidden_layers: 32,
                head_dim: Some(128),
                rope_scaling: base
                    .rope_scaling
                    .clone()
                    .map(|s| RopeScaling { factor: 8.0, ..s }),
                tie_word_embeddings: false,
                ..base
            },
            "tinyllama-1.1b" => Self {
                vocab_size: 32_000,
                intermediate_size: 5632,
                num_hidden_layers: 22,
                num_key_value_heads: Some(4),
                rope_theta: 10_000.0,
                rope_scaling: None,
                max_position_embeddings: 2048,
                tie_word_embeddings: false,
                bos_token_id: Some(TokenIds::One(1)),
                eos_token_id: Some(TokenIds::One(2)),
                ..base
            },
            "smollm2-135m" => Self {
                vocab_size: 49_152,
                hidden_size: 576,
                intermediate_size: 1536,
                num_hidden_layers: 30,
                num_attention_heads: 9,
                num_key_value_heads: Some(3),
                head_dim: Some(64),
                rope_theta: 100_000.0,
                rope_scaling: None,
                max_position_embeddings: 8192,
                bos_token_id: Some(TokenIds::One(0)),
                eos_token_id: Some(TokenIds::One(0)),
                ..base
            },
            "tiny" => Self {
                vocab_size: 512,
                hidden_size: 64,
                intermediate_size: 128,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_key_value_heads: Some(2),
                head_dim: Some(16),
                rope_theta: 10_000.0,
                rope_scaling: None,
                max_position_embeddings: 2048,
                bos_token_id: Some(TokenIds::One(1)),
                eos_token_id: Some(TokenIds::One(2)),
                ..base
            },
            _ => return None,
        })
    }

    /// Checks the shapes fit together and the features are supported.
    pub fn validate(&self) -> Result<(), String> {
        if self.hidden_act != "silu" {
            return Err(format!(
                "hidden_act `{}` is not supported (only silu)",
                self.hidden_act
            ));
        }
        let h = self.num_attention_heads;
        let kv = self.kv_heads();
        if h == 0 || kv == 0 || !h.is_multiple_of(kv) {
            return Err(format!(
                "num_attention_heads {h} is not a multiple of num_key_value_heads {kv}"
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(h) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {h} (and head_dim is not given)",
                self.hidden_size
            ));
        }
        if !self.head_size().is_multiple_of(2) || self.head_size() == 0 {
            return Err(format!(
                "head_dim {} must be even for rotary embeddings",
                self.head_size()
            ));
        }
        if self.vocab_size == 0 || self.num_hidden_layers == 0 {
            return Err("vocab_size and num_hidden_layers must be at least 1".into());
        }
        if let Some(s) = &self.rope_scaling {
            if s.rope_type != "llama3" {
                return Err(format!(
                    "rope_scaling type `{}` is not supported (only llama3)",
                    s.rope_type
                ));
            }
            if s.factor <= 0.0 || s.high_freq_factor <= s.low_freq_factor {
                return Err(
                    "rope_scaling needs factor > 0 and high_freq_factor > low_freq_factor".into(),
                );
            }
        }
        if self.eos_ids().is_empty() {
            return Err("eos_token_id is missing (SFT rows end with it)".into());
        }
        Ok(())
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head size.
    pub fn head_size(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// End-of-sequence ids (the first ends SFT responses).
    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::ids)
            .unwrap_or_default()
    }

    /// The id that pads batches: `pad_token_id`, else the first EOS id.
    pub fn pad_id(&self) -> u32 {
        self.pad_token_id
            .as_ref()
            .and_then(|p| p.ids().first().copied())
            .or_else(|| self.eos_ids().first().copied())
            .unwrap_or(0)
    }

    /// Parameters of the frozen base: embeddings, the seven projections per
    /// layer, norms, and `lm_head` when untied.
    pub fn parameter_count(&self) -> usize {
        self.parameter_count_with(self.num_hidden_layers)
    }

    /// [`LlamaConfig::parameter_count`] of the model cut to its first `layers` layers.
    pub fn parameter_count_with(&self, layers: usize) -> usize {
        let (d, f, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (q, kv) = (
            self.num_attention_heads * self.head_size(),
            self.kv_heads() * self.head_size(),
        );
        let layer = d * q + 2 * d * kv + q * d + 3 * d * f + 2 * d;
        let head = if self.tie_word_embeddings { 0 } else { v * d };
        v * d + layers * layer + d + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_count_parameters() {
        for name in PRESETS {
            let c = LlamaConfig::preset(name).unwrap();
            c.validate().unwrap();
        }
        // Llama-3.2-1B: 1.236 B parameters (tied embeddings)
        let n = LlamaConfig::preset("llama-3.2-1b")
            .unwrap()
            .parameter_count();
        assert_eq!(n, 1_235_814_400);
        // SmolLM2-135M: 134.5 M
        let n = LlamaConfig::preset("smollm2-135m")
            .unwrap()
            .parameter_count();
        assert_eq!(n, 134_515_008);
        assert!(LlamaConfig::preset("gpt-2").is_none());
    }
}
