//! A Llama-family decoder's [`LlamaConfig`] from a GGUF file's `llama.*`
//! metadata (what llama.cpp's converter writes from `config.json`).

use super::file::GgufModel;
use crate::models::LoadError;
use crate::models::llama::{LlamaConfig, RopeScaling, TokenIds, inverse_frequencies};

/// The `original_max_position_embeddings` Llama 3.1 / 3.2 were trained with,
/// when the file does not say (`llama.rope.scaling.original_context_length`).
const LLAMA3_ORIGINAL_CONTEXT: usize = 8192;

impl GgufModel {
    /// The decoder's config from the `llama.*` keys:
    ///
    /// | GGUF key | `config.json` field |
    /// | --- | --- |
    /// | `block_count` | `num_hidden_layers` |
    /// | `embedding_length` | `hidden_size` |
    /// | `feed_forward_length` | `intermediate_size` |
    /// | `attention.head_count` / `head_count_kv` | `num_attention_heads` / `num_key_value_heads` |
    /// | `attention.key_length` | `head_dim` |
    /// | `attention.layer_norm_rms_epsilon` | `rms_norm_eps` |
    /// | `rope.freq_base` | `rope_theta` |
    /// | `rope_freqs` tensor (Llama 3.1/3.2) | `rope_scaling` of type `llama3` |
    /// | `context_length` | `max_position_embeddings` |
    /// | `vocab_size` (else the token count) | `vocab_size` |
    /// | no `output.weight` tensor | `tie_word_embeddings` |
    /// | `tokenizer.ggml.{bos,eos,padding}_token_id` | `{bos,eos,pad}_token_id` |
    pub fn llama_config(&self) -> Result<LlamaConfig, LoadError> {
        let arch = self.llama_architecture()?.to_string();
        let key = |k: &str| format!("{arch}.{k}");
        let required = |k: &str| {
            self.meta_usize(&key(k))
                .ok_or_else(|| self.bad(format!("metadata key `{}` is missing", key(k))))
        };
        let hidden_size = required("embedding_length")?;
        let heads = required("attention.head_count")?;
        let kv_heads = self
            .meta_usize(&key("attention.head_count_kv"))
            .unwrap_or(heads);
        let head_dim = self
            .meta_usize(&key("attention.key_length"))
            .unwrap_or(hidden_size / heads.max(1));
        if let Some(rot) = self.meta_usize(&key("rope.dimension_count"))
            && rot != head_dim
        {
            return Err(self.bad(format!(
                "rope.dimension_count {rot} differs from the head size {head_dim}: partial rotary embeddings are not supported"
            )));
        }
        if let Some(kind) = self.meta_str(&key("rope.scaling.type"))
            && kind != "none"
        {
            return Err(self.bad(format!(
                "rope scaling `{kind}` is not supported (only none, or Llama 3's rope_freqs)"
            )));
        }
        let vocab_size = match self.meta_usize(&key("vocab_size")) {
            Some(v) => v,
            None => self
                .meta("tokenizer.ggml.tokens")
                .and_then(|t| t.as_array())
                .map(<[_]>::len)
                .ok_or_else(|| {
                    self.bad(format!(
                        "neither `{}` nor tokenizer.ggml.tokens says the vocabulary size",
                        key("vocab_size")
                    ))
                })?,
        };
        let rope_theta = self.meta_f64(&key("rope.freq_base")).unwrap_or(10_000.0);
        let rope_scaling = self.llama3_scaling(head_dim, rope_theta)?;
        let id = |k: &str| {
            self.meta_usize(&format!("tokenizer.ggml.{k}"))
                .map(|v| TokenIds::One(v as u32))
        };
        let config = LlamaConfig {
            model_type: "llama".into(),
            vocab_size,
            hidden_size,
            intermediate_size: required("feed_forward_length")?,
            num_hidden_layers: required("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv_heads),
            head_dim: Some(head_dim),
            rms_norm_eps: self
                .meta_f64(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5),
            rope_theta,
            rope_scaling,
            max_position_embeddings: self.meta_usize(&key("context_length")).unwrap_or(2048),
            tie_word_embeddings: !self.has_tensor("output.weight"),
            attention_bias: self.has_tensor("blk.0.attn_q.bias"),
            mlp_bias: self.has_tensor("blk.0.ffn_up.bias"),
            hidden_act: "silu".into(),
            bos_token_id: id("bos_token_id"),
            eos_token_id: id("eos_token_id"),
            pad_token_id: id("padding_token_id"),
        };
        config.validate().map_err(|e| self.bad(e))?;
        Ok(config)
    }

    /// Llama 3.1/3.2's `rope_scaling` from the `rope_freqs` tensor llama.cpp
    /// stores instead (a divisor per frequency): `factor` is its largest
    /// entry, and the whole must equal the `llama3` rule with
    /// `low_freq_factor` 1, `high_freq_factor` 4 and the original context.
    fn llama3_scaling(
        &self,
        head_dim: usize,
        theta: f64,
    ) -> Result<Option<RopeScaling>, LoadError> {
        if !self.has_tensor("rope_freqs.weight") {
            return Ok(None);
        }
        let (divisors, _) = self.read_gguf("rope_freqs.weight")?;
        if divisors.len() != head_dim / 2 {
            return Err(self.bad(format!(
                "rope_freqs has {} entries, the head size {head_dim} needs {}",
                divisors.len(),
                head_dim / 2
            )));
        }
        let factor = divisors.iter().fold(1f32, |m, &v| m.max(v)) as f64;
        if factor == 1.0 {
            return Ok(None);
        }
        let original = self
            .meta_usize("llama.rope.scaling.original_context_length")
            .unwrap_or(LLAMA3_ORIGINAL_CONTEXT);
        let scaling = RopeScaling {
            rope_type: "llama3".into(),
            factor,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: original,
        };
        let plain = inverse_frequencies(head_dim, theta, None);
        let scaled = inverse_frequencies(head_dim, theta, Some(&scaling));
        let fits = plain
            .iter()
            .zip(&scaled)
            .zip(&divisors)
            .all(|((p, s), d)| ((p / s) / d - 1.0).abs() < 1e-4);
        if fits {
            Ok(Some(scaling))
        } else {
            Err(self.bad(format!(
                "rope_freqs is not Llama 3's scaling rule (factor {factor}, low 1, high 4, original context {original}): not supported"
            )))
        }
    }
}
