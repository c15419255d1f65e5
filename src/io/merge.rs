//! Merging a trained adapter at rank `k` into its base model: a complete
//! Hugging Face model directory whose adapted linear weights are
//! `W + s(k) A[:, :k] B[:k]` (PyTorch layout, `[out, in]`, each tensor in its
//! original dtype), every other tensor and file as it was.
//!
//! It works on the checkpoint's names (the adapter metadata names each
//! adapted module as the base checkpoint does), so it serves every model
//! family the crate loads, single-file or sharded.

use super::atomic::make_readable;
use super::checkpoint::{AdapterMeta, CheckpointError, read_meta};
use super::manifest::sha256_hex;
use super::sync_parent;
use super::temp_path;
use crate::models::{LoadError, SHARD_INDEX, SINGLE_FILE, WeightFiles};
use burn::prelude::*;
use burn::tensor::s;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The file of a merged directory holding the task's trainable modules (a
/// classifier head: not part of the base model), in the crate's layout.
pub const TASK_MODULES_FILE: &str = "task_modules.safetensors";

/// Why a merge failed.
#[derive(Debug, Error)]
pub enum MergeError {
    /// The adapter could not be read.
    #[error(transparent)]
    Adapter(#[from] CheckpointError),
    /// The base model could not be read.
    #[error(transparent)]
    Model(#[from] LoadError),
    /// The rank is not one the adapter has.
    #[error("rank {rank} is not in 1..={max_rank}, the adapter's ranks")]
    Rank {
        /// The rank asked for.
        rank: usize,
        /// The adapter's `R`.
        max_rank: usize,
    },
    /// An adapted module has no weight in the base checkpoint.
    #[error(
        "the base model has no tensor `{name}` for the adapted module: is it the model the adapter was trained on?"
    )]
    MissingWeight {
        /// The tensor name.
        name: String,
    },
    /// A base weight does not have the adapter's shape.
    #[error("tensor `{name}` has shape {got:?}, the adapter needs {expected:?}")]
    Shape {
        /// The tensor name.
        name: String,
        /// The adapter's `[out, in]`.
        expected: Vec<usize>,
        /// The base weight's shape.
        got: Vec<usize>,
    },
    /// A base weight's dtype cannot be merged into.
    #[error("tensor `{name}` has dtype {dtype}; merging needs F32, F16 or BF16")]
    Dtype {
        /// The tensor name.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// The output directory would overwrite the base model.
    #[error("the output directory {0} is the base model's: merge into another directory")]
    IntoBase(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

pub(super) fn io(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> MergeError + '_ {
    move |e| MergeError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// What a merge wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeSummary {
    /// The rank merged.
    pub rank: usize,
    /// The scale `s(k)` applied.
    pub scale: f64,
    /// The base checkpoint's names of the merged weights.
    pub merged: Vec<String>,
    /// The weight files written.
    pub weight_files: Vec<String>,
    /// The other files copied (config, tokenizer, ...).
    pub copied: Vec<String>,
}

/// One adapted module's rank-`k` update.
pub(super) struct Update {
    /// `s(k) (A[:, :k] B[:k])^T`, `[out, in]`, row-major.
    pub(super) delta: Vec<f32>,
    pub(super) shape: [usize; 2],
}

/// Files that hold weights in other formats: not copied (the merged
/// directory's weights are its safetensors).
const WEIGHT_EXTENSIONS: [&str; 9] = [
    "safetensors",
    "bin",
    "pt",
    "pth",
    "h5",
    "msgpack",
    "ckpt",
    "onnx",
    "gguf",
];

/// Merges the adapter `adapter` (an `adapter.safetensors`) at rank `rank`
/// into the Hugging Face model in `model_dir`, writing a complete model
/// directory to `out_dir`: the weight files (single or sharded, same names,
/// dtypes kept) with every adapted module's weight replaced by
/// `W + s(k) A[:, :k] B[:k]`, the other files copied (config, tokenizer), and
/// the task's trainable modules in [`TASK_MODULES_FILE`].
pub fn merge_adapter(
    model_dir: &Path,
    adapter: &Path,
    rank: usize,
    out_dir: &Path,
) -> Result<MergeSummary, MergeError> {
    let meta = read_meta(adapter)?;
    if rank == 0 || rank > meta.max_rank {
        return Err(MergeError::Rank {
            rank,
            max_rank: meta.max_rank,
        });
    }
    if crate::models::gguf::is_gguf(model_dir) {
        return super::merge_gguf::merge_into_gguf_base(model_dir, adapter, &meta, rank, out_dir);
    }
    if !model_dir.is_dir() {
        return Err(LoadError::MissingDir(model_dir.to_path_buf()).into());
    }
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(model_dir, out_dir) {
        return Err(MergeError::IntoBase(out_dir.to_path_buf()));
    }
    let scale = meta.scaling.factor(rank);
    let updates = rank_updates(adapter, &meta, rank, scale)?;
    std::fs::create_dir_all(out_dir).map_err(|e| io(out_dir)(&e))?;

    // The weight files: the shards of the index, or the single file.
    let index = model_dir.join(SHARD_INDEX);
    let files: Vec<String> = if model_dir.join(SINGLE_FILE).is_file() || !index.is_file() {
        vec![SINGLE_FILE.to_string()]
    } else {
        let text = std::fs::read_to_string(&index).map_err(|e| io(&index)(&e))?;
        let parsed: serde_json::Value = serde_json::from_str(&text).map_err(|e| io(&index)(&e))?;
        let mut shards: Vec<String> = parsed["weight_map"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        shards.sort();
        shards.dedup();
        shards
    };
    let mut merged = Vec::new();
    for file in &files {
        merged.extend(merge_file(
            &model_dir.join(file),
            &out_dir.join(file),
            &updates,
            &meta,
            rank,
        )?);
    }
    for name in updates.keys() {
        if !merged.contains(name) {
            return Err(MergeError::MissingWeight { name: name.clone() });
        }
    }
    merged.sort();

    // Everything else: config, tokenizer files, the shard index.
    let mut copied = Vec::new();
    for entry in std::fs::read_dir(model_dir).map_err(|e| io(model_dir)(&e))? {
        let entry = entry.map_err(|e| io(model_dir)(&e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let is_weights = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| WEIGHT_EXTENSIONS.contains(&e));
        if !path.is_file() || is_weights || name.starts_with('.') {
            continue;
        }
        std::fs::copy(&path, out_dir.join(&name)).map_err(|e| io(&path)(&e))?;
        copied.push(name);
    }
    copied.sort();
    write_task_modules(adapter, &meta, &out_dir.join(TASK_MODULES_FILE))?;
    Ok(MergeSummary {
        rank,
        scale,
        merged,
        weight_files: files,
        copied,
    })
}

/// Each adapted module's rank-`k` update by its weight's checkpoint name.
pub(super) fn rank_updates(
    adapter: &Path,
    meta: &AdapterMeta,
    rank: usize,
    scale: f64,
) -> Result<HashMap<String, Update>, MergeError> {
    let weights = WeightFiles::open(adapter)?;
    let device = crate::cpu_device();
    let mut updates = HashMap::new();
    for (path, module) in &meta.modules {
        let read = |factor: &str| -> Result<(Vec<f32>, Vec<usize>), MergeError> {
            let name = format!("{path}.{factor}");
            let shape = weights
                .shape(&name)
                .ok_or_else(|| CheckpointError::MissingTensors {
                    path: adapter.to_path_buf(),
                    names: vec![name.clone()],
                })?;
            Ok((weights.read_f32(&name, &shape)?, shape))
        };
        let (a, a_shape) = read("lora_a")?;
        let (b, b_shape) = read("lora_b")?;
        let (d_in, r, d_out) = (a_shape[0], a_shape[1], b_shape[1]);
        let a = Tensor::<2>::from_data(TensorData::new(a, [d_in, r]), &device);
        let b = Tensor::<2>::from_data(TensorData::new(b, [r, d_out]), &device);
        let delta = a
            .slice(s![.., 0..rank])
            .matmul(b.slice(s![0..rank, ..]))
            .mul_scalar(scale)
            .swap_dims(0, 1);
        let delta = delta
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| io(adapter)(&format!("{e:?}")))?;
        updates.insert(
            format!("{module}.weight"),
            Update {
                delta,
                shape: [d_out, d_in],
            },
        );
    }
    Ok(updates)
}

/// Writes `input`'s tensors to `output` with the updates applied; returns
/// the names updated.
fn merge_file(
    input: &Path,
    output: &Path,
    updates: &HashMap<String, Update>,
    meta: &AdapterMeta,
    rank: usize,
) -> Result<Vec<String>, MergeError> {
    let bytes = std::fs::read(input).map_err(|e| io(input)(&e))?;
    let not_safetensors = |e: &dyn std::fmt::Display| LoadError::NotSafetensors {
        path: input.to_path_buf(),
        reason: e.to_string(),
    };
    let file = SafeTensors::deserialize(&bytes).map_err(|e| not_safetensors(&e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| not_safetensors(&e))?;
    let mut metadata: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    metadata.insert("mlora_merged".into(), merge_record(meta, rank).to_string());
    let mut merged = Vec::new();
    let mut tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, view) in file.tensors() {
        let shape = view.shape().to_vec();
        let data = match updates.get(&name) {
            Some(update) => {
                if shape != update.shape {
                    return Err(MergeError::Shape {
                        name,
                        expected: update.shape.to_vec(),
                        got: shape,
                    });
                }
                merged.push(name.clone());
                add_in_dtype(&name, view.dtype(), view.data(), &update.delta)?
            }
            None => view.data().to_vec(),
        };
        tensors.insert(name, (view.dtype(), shape, data));
    }
    write_weights(output, &tensors, metadata)?;
    Ok(merged)
}

/// What a merged weight file records of its merge (safetensors metadata
/// `mlora_merged`).
pub(super) fn merge_record(meta: &AdapterMeta, rank: usize) -> serde_json::Value {
    serde_json::json!({
        "rank": rank,
        "scaling": meta.scaling.to_string(),
        "method": meta.method,
        "adapter_task": meta.task,
    })
}

/// Writes `tensors` (name -> dtype, shape, bytes) with `metadata` to the
/// safetensors file `output`, atomically (temp file + rename), readable.
pub(super) fn write_weights(
    output: &Path,
    tensors: &BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
    metadata: HashMap<String, String>,
) -> Result<(), MergeError> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| io(output)(&e))
        })
        .collect::<Result<_, _>>()?;
    let tmp = temp_path(output);
    safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .map_err(|e| io(output)(&e))
        .and_then(|_| std::fs::rename(&tmp, output).map_err(|e| io(output)(&e)))
        .and_then(|_| make_readable(output).map_err(|e| io(output)(&e)))
        .and_then(|_| sync_parent(output).map_err(|e| io(output)(&e)))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// `data` (in `dtype`) plus `delta`, in `dtype`.
fn add_in_dtype(
    name: &str,
    dtype: Dtype,
    data: &[u8],
    delta: &[f32],
) -> Result<Vec<u8>, MergeError> {
    /// Each 2-byte value read, `delta` added, and written back.
    fn halves(
        data: &[u8],
        delta: &[f32],
        read: fn([u8; 2]) -> f32,
        write: fn(f32) -> [u8; 2],
    ) -> Vec<u8> {
        data.chunks_exact(2)
            .zip(delta)
            .flat_map(|(c, d)| write(read([c[0], c[1]]) + d))
            .collect()
    }
    Ok(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .zip(delta)
            .flat_map(|(c, d)| (f32::from_le_bytes([c[0], c[1], c[2], c[3]]) + d).to_le_bytes())
            .collect(),
        Dtype::F16 => halves(
            data,
            delta,
            |b| half::f16::from_le_bytes(b).to_f32(),
            |v| half::f16::from_f32(v).to_le_bytes(),
        ),
        Dtype::BF16 => halves(
            data,
            delta,
            |b| half::bf16::from_le_bytes(b).to_f32(),
            |v| half::bf16::from_f32(v).to_le_bytes(),
        ),
        other => {
            return Err(MergeError::Dtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    })
}

/// The adapter file's tensors that are not adapter state (the task's
/// trainable modules), with the adapter's metadata, to `path`.
pub(super) fn write_task_modules(
    adapter: &Path,
    meta: &AdapterMeta,
    path: &Path,
) -> Result<(), MergeError> {
    let bytes = std::fs::read(adapter).map_err(|e| io(adapter)(&e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| io(adapter)(&e))?;
    let prefixes: Vec<String> = meta
        .trainable_modules
        .iter()
        .map(|m| format!("{m}."))
        .collect();
    let kept: Vec<(String, TensorView)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| prefixes.iter().any(|p| name.starts_with(p.as_str())))
        .collect();
    let mut metadata = HashMap::new();
    metadata.insert(
        "matryoshka_lora".to_string(),
        serde_json::to_string(meta).map_err(|e| io(path)(&e))?,
    );
    metadata.insert("adapter_sha256".to_string(), sha256_hex(&bytes));
    safetensors::serialize_to_file(kept, Some(metadata), path).map_err(|e| io(path)(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::Scaling;
    use crate::train::TrainMethod;

    fn bytes_f32(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn merges_in_the_base_dtype_and_copies_the_rest() {
        let root = std::env::temp_dir().join(format!("mlora-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (model, out) = (root.join("model"), root.join("merged"));
        std::fs::create_dir_all(&model).unwrap();
        // base: a [2 out, 3 in] f16 weight, a bias, an unrelated bf16 tensor
        let w: Vec<f32> = vec![1.0, 2.0, 3.0, -1.0, -2.0, -3.0];
        let w16: Vec<u8> = w
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let bias = bytes_f32(&[0.5, 0.5]);
        let other: Vec<u8> = half::bf16::from_f32(7.0).to_le_bytes().to_vec();
        safetensors::serialize_to_file(
            vec![
                (
                    "layer.q.weight",
                    TensorView::new(Dtype::F16, vec![2, 3], &w16).unwrap(),
                ),
                (
                    "layer.q.bias",
                    TensorView::new(Dtype::F32, vec![2], &bias).unwrap(),
                ),
                (
                    "other",
                    TensorView::new(Dtype::BF16, vec![1], &other).unwrap(),
                ),
            ],
            None,
            &model.join(SINGLE_FILE),
        )
        .unwrap();
        std::fs::write(model.join("config.json"), "{}").unwrap();
        std::fs::write(model.join("tokenizer.json"), "{}").unwrap();
        std::fs::write(model.join("pytorch_model.bin"), "stale").unwrap();
        // adapter: A [3 in, R = 2], B [2, 2 out], R = 2, no scaling
        let a = bytes_f32(&[1.0, 10.0, 0.0, 10.0, 1.0, 10.0]);
        let b = bytes_f32(&[0.25, -0.25, 100.0, 100.0]);
        let head = bytes_f32(&[1.0, 2.0]);
        let meta = AdapterMeta {
            format: 1,
            crate_version: "test".into(),
            task: "t".into(),
            method: TrainMethod::Lora,
            max_rank: 2,
            ranks: vec![1, 2],
            scaling: Scaling::None,
            targets: vec!["q".into()],
            modules: [("x.adapter".to_string(), "layer.q".to_string())].into(),
            trainable_modules: vec!["head".into()],
            base_model: None,
            task_info: serde_json::Value::Null,
            config: serde_json::Value::Null,
        };
        let adapter = root.join("adapter.safetensors");
        safetensors::serialize_to_file(
            vec![
                (
                    "x.adapter.lora_a",
                    TensorView::new(Dtype::F32, vec![3, 2], &a).unwrap(),
                ),
                (
                    "x.adapter.lora_b",
                    TensorView::new(Dtype::F32, vec![2, 2], &b).unwrap(),
                ),
                (
                    "head.weight",
                    TensorView::new(Dtype::F32, vec![2], &head).unwrap(),
                ),
            ],
            Some(
                [(
                    "matryoshka_lora".to_string(),
                    serde_json::to_string(&meta).unwrap(),
                )]
                .into(),
            ),
            &adapter,
        )
        .unwrap();

        let summary = merge_adapter(&model, &adapter, 1, &out).unwrap();
        assert_eq!(summary.merged, ["layer.q.weight"]);
        assert_eq!(summary.copied, ["config.json", "tokenizer.json"]);
        let merged = WeightFiles::open_dir(&out).unwrap();
        // rank 1: delta[o][i] = A[i][0] * B[0][o] = [1, 0, 1] x [0.25, -0.25]
        let want = [1.25, 2.0, 3.25, -1.25, -2.0, -3.25];
        assert_eq!(merged.read_f32("layer.q.weight", &[2, 3]).unwrap(), want);
        let bytes = std::fs::read(out.join(SINGLE_FILE)).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("layer.q.weight").unwrap().dtype(), Dtype::F16);
        assert_eq!(st.tensor("other").unwrap().dtype(), Dtype::BF16);
        assert_eq!(merged.read_f32("layer.q.bias", &[2]).unwrap(), [0.5, 0.5]);
        let task = WeightFiles::open(&out.join(TASK_MODULES_FILE)).unwrap();
        assert_eq!(task.names(), ["head.weight"]);

        assert!(matches!(
            merge_adapter(&model, &adapter, 3, &out),
            Err(MergeError::Rank {
                rank: 3,
                max_rank: 2
            })
        ));
        assert!(matches!(
            merge_adapter(&model, &adapter, 1, &model),
            Err(MergeError::IntoBase(_))
        ));
        let _ = std::fs::remove_dir_all(&root);
    }
}
