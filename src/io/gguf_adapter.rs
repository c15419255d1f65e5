//! A rank-`k` adapter as llama.cpp's LoRA adapter file (GGUF), for
//! `llama-cli -m base.gguf --lora adapter.gguf` and every runtime built on
//! llama.cpp (Ollama, LM Studio, llama-cpp-python).
//!
//! The layout is what llama.cpp's `convert_lora_to_gguf.py` writes:
//! `general.type` = `adapter`, `adapter.type` = `lora`,
//! `general.architecture` the base's, and per adapted module
//! `blk.N.<tensor>.weight.lora_a` (`[k, d_in]`) and `.lora_b` (`[d_out, k]`),
//! f32, with `lora_b`'s rows of `attn_q` / `attn_k` in llama.cpp's rotary
//! order. llama.cpp scales the update by `alpha / k` (times the user's
//! `--lora-scaled` factor, 1 by default): `adapter.lora.alpha` = `s(k) k`
//! makes that the crate's rank-`k` scaling `s(k)`.

use super::atomic::{make_readable, sync_parent, temp_path};
use super::checkpoint::read_meta;
use super::peft::{PeftError, rank_factors};
use crate::models::WeightFiles;
use crate::models::gguf::{gguf_module, rotary_heads, rows_to_gguf};
use crate::models::llama::LlamaConfig;
use rlx_gguf::{GgmlType, GgufWriter, MetaValue};
use std::path::{Path, PathBuf};

/// What a llama.cpp adapter export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufAdapterExport {
    /// The rank exported.
    pub rank: usize,
    /// `adapter.lora.alpha` (= `s(k) k`).
    pub alpha: f64,
    /// The crate's scale `s(k)`.
    pub scale: f64,
    /// Every tensor written, in file order.
    pub tensors: Vec<String>,
    /// The file.
    pub path: PathBuf,
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes the rank-`rank` adapter of the crate's checkpoint `adapter` (a
/// Llama-family causal-LM run) as a llama.cpp LoRA adapter at `out`
/// (atomically), for the base model whose config is `base` (its head counts
/// give the rotary row order).
///
/// Fails, writing nothing, on a rank outside `1..=R`, a module llama.cpp has
/// no tensor for (a classifier's, a BERT encoder's), or trainable modules
/// beside the adapters (llama.cpp adapters hold LoRA factors only).
pub fn export_gguf_adapter(
    adapter: &Path,
    rank: usize,
    base: &LlamaConfig,
    out: &Path,
) -> Result<GgufAdapterExport, PeftError> {
    let meta = read_meta(adapter)?;
    let unsupported = |feature: String| PeftError::Unsupported {
        path: adapter.to_path_buf(),
        feature,
    };
    if !meta.trainable_modules.is_empty() {
        return Err(unsupported(format!(
            "trainable modules beside the adapters ({}) in a llama.cpp adapter",
            meta.trainable_modules.join(", ")
        )));
    }
    let weights = WeightFiles::open(adapter).map_err(|e| PeftError::Io {
        path: adapter.to_path_buf(),
        reason: e.to_string(),
    })?;
    let factors = rank_factors(adapter, &meta, &weights, rank)?;
    let scale = meta.scaling.factor(rank);
    let alpha = scale * rank as f64;
    let mut writer = GgufWriter::new();
    writer.set_arch("llama");
    writer.set_meta("general.type", MetaValue::String("adapter".into()));
    writer.set_meta("adapter.type", MetaValue::String("lora".into()));
    writer.set_meta("adapter.lora.alpha", MetaValue::F32(alpha as f32));
    writer.set_meta(
        "general.name",
        MetaValue::String(format!("matryoshka-lora {} rank {rank}", meta.method)),
    );
    let mut tensors = Vec::new();
    for f in factors {
        let module = gguf_module(&f.module).ok_or_else(|| {
            unsupported(format!(
                "module `{}` (llama.cpp has no tensor for it; only Llama decoder projections export)",
                f.module
            ))
        })?;
        let name = format!("{module}.weight");
        let lora_b = match rotary_heads(&name, base.num_attention_heads, base.kv_heads()) {
            Some(heads) => rows_to_gguf(&f.lora_b, f.d_out, rank, heads),
            None => f.lora_b,
        };
        // GGUF lists dimensions innermost first.
        for (suffix, shape, values) in [
            ("lora_a", vec![f.d_in, rank], f.lora_a),
            ("lora_b", vec![rank, f.d_out], lora_b),
        ] {
            let tensor = format!("{name}.{suffix}");
            writer
                .add_tensor_bytes(&tensor, shape, GgmlType::F32, le_bytes(&values))
                .map_err(|e| PeftError::Io {
                    path: out.to_path_buf(),
                    reason: format!("{e:#}"),
                })?;
            tensors.push(tensor);
        }
    }
    let io = |e: &dyn std::fmt::Display| PeftError::Io {
        path: out.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io(&e))?;
    }
    let tmp = temp_path(out);
    writer
        .write_to_path(&tmp)
        .map_err(|e| io(&format!("{e:#}")))
        .and_then(|_| std::fs::rename(&tmp, out).map_err(|e| io(&e)))
        .and_then(|_| make_readable(out).map_err(|e| io(&e)))
        .and_then(|_| sync_parent(out).map_err(|e| io(&e)))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
    Ok(GgufAdapterExport {
        rank,
        alpha,
        scale,
        tensors,
        path: out.to_path_buf(),
    })
}
