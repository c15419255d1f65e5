//! Merging a trained adapter into a GGUF base: the same rank-`k` update as
//! [`merge_adapter`](super::merge_adapter), written as a complete Hugging
//! Face directory (the dequantized base plus `s(k) A[:, :k] B[:k]`, f32
//! `model.safetensors`; `config.json` and `tokenizer.json` from the GGUF
//! metadata), which transformers, PEFT and llama.cpp's converter all read.

use super::checkpoint::AdapterMeta;
use super::merge::{
    MergeError, MergeSummary, io, merge_record, rank_updates, write_task_modules, write_weights,
};
use super::{TASK_MODULES_FILE, write_atomic};
use crate::models::gguf::{GgufModel, hf_tensor};
use crate::models::{SINGLE_FILE, TensorSource};
use safetensors::Dtype;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Merges `adapter` at `rank` into the GGUF model `gguf_path`, writing a
/// Hugging Face directory to `out_dir` (see the module docs).
pub(super) fn merge_into_gguf_base(
    gguf_path: &Path,
    adapter: &Path,
    meta: &AdapterMeta,
    rank: usize,
    out_dir: &Path,
) -> Result<MergeSummary, MergeError> {
    let gguf = GgufModel::open(gguf_path)?;
    let config = gguf.llama_config()?;
    let tokenizer = gguf.tokenizer()?;
    let scale = meta.scaling.factor(rank);
    let updates = rank_updates(adapter, meta, rank, scale)?;
    std::fs::create_dir_all(out_dir).map_err(|e| io(out_dir)(&e))?;

    let mut tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    let mut merged = Vec::new();
    for name in gguf.tensor_names() {
        let Some(hf) = hf_tensor(&name) else {
            continue; // rope_freqs: config.json's rope_scaling says it
        };
        let shape = gguf.shape(&name).unwrap_or_default();
        let mut values = gguf.read_f32(&hf, &shape)?;
        if let Some(update) = updates.get(&hf) {
            if shape != update.shape {
                return Err(MergeError::Shape {
                    name: hf,
                    expected: update.shape.to_vec(),
                    got: shape,
                });
            }
            for (v, d) in values.iter_mut().zip(&update.delta) {
                *v += d;
            }
            merged.push(hf.clone());
        }
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.insert(hf, (Dtype::F32, shape, bytes));
    }
    for name in updates.keys() {
        if !merged.contains(name) {
            return Err(MergeError::MissingWeight { name: name.clone() });
        }
    }
    merged.sort();
    let output = out_dir.join(SINGLE_FILE);
    let mut metadata = HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    let mut record = merge_record(meta, rank);
    record["gguf_base"] = gguf_path.display().to_string().into();
    metadata.insert("mlora_merged".into(), record.to_string());
    write_weights(&output, &tensors, metadata)?;

    let mut config_json = serde_json::to_value(&config).map_err(|e| io(out_dir)(&e))?;
    config_json["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    config_json["torch_dtype"] = "float32".into();
    let config_path = out_dir.join("config.json");
    let text = serde_json::to_vec_pretty(&config_json).map_err(|e| io(&config_path)(&e))?;
    write_atomic(&config_path, &text).map_err(|e| io(&config_path)(&e))?;
    let tokenizer_path = out_dir.join("tokenizer.json");
    let text = tokenizer
        .to_string(true)
        .map_err(|e| io(&tokenizer_path)(&e))?;
    write_atomic(&tokenizer_path, text.as_bytes()).map_err(|e| io(&tokenizer_path)(&e))?;
    write_task_modules(adapter, meta, &out_dir.join(TASK_MODULES_FILE))?;
    Ok(MergeSummary {
        rank,
        scale,
        merged,
        weight_files: vec![SINGLE_FILE.to_string()],
        copied: vec!["config.json".into(), "tokenizer.json".into()],
    })
}
