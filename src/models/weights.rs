//! Reading named tensors from Hugging Face safetensors checkpoints, shared by
//! every model family: one `model.safetensors`, or the shards listed in
//! `model.safetensors.index.json`; F32, F16 and BF16 tensors are converted to
//! f32 on the way in.

use crate::adapter::AdapterError;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The single-file checkpoint name in a Hugging Face model directory.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded checkpoint in a Hugging Face model directory.
pub const SHARD_INDEX: &str = "model.safetensors.index.json";

/// Why a model directory could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The model directory does not exist.
    #[error(
        "model directory {0} does not exist (run scripts/fetch-assets.sh, or give a directory with config.json and model.safetensors)"
    )]
    MissingDir(PathBuf),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `config.json` is invalid or describes another architecture.
    #[error("invalid config {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A weights file is not a safetensors file (or the shard index is invalid).
    #[error("{path} is not a valid safetensors checkpoint: {reason}")]
    NotSafetensors {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A tensor the model needs is absent.
    #[error("tensor `{name}` is missing from {path}")]
    MissingTensor {
        /// Tensor name.
        name: String,
        /// The file (or the directory of a sharded checkpoint).
        path: PathBuf,
    },
    /// A tensor has the wrong shape for the configuration.
    #[error(
        "tensor `{name}` in {path} has shape {got:?}, expected {expected:?} (does config.json match the weights?)"
    )]
    WrongShape {
        /// Tensor name.
        name: String,
        /// The file.
        path: PathBuf,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape in the file.
        got: Vec<usize>,
    },
    /// A tensor has a dtype the loader cannot convert to f32.
    #[error("tensor `{name}` has dtype {dtype}, expected F32, F16 or BF16")]
    UnsupportedDtype {
        /// Tensor name.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// A GGUF file is not GGUF v2/v3, is truncated or corrupt, or lacks
    /// what the model needs.
    #[error("{path} is not a usable GGUF model: {reason}")]
    NotGguf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A GGUF tensor type the crate cannot dequantize.
    #[error(
        "{path}: tensor `{name}` has type {dtype}, which is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): use a file quantized to one of these"
    )]
    UnsupportedGgufType {
        /// The file.
        path: PathBuf,
        /// The GGUF tensor name.
        name: String,
        /// Its type.
        dtype: String,
    },
    /// A GGUF model of an architecture the crate cannot load.
    #[error(
        "{path}: general.architecture `{arch}` is not supported (only `llama`: Llama 2/3, SmolLM2, TinyLlama, ...)"
    )]
    UnsupportedArchitecture {
        /// The file.
        path: PathBuf,
        /// `general.architecture`.
        arch: String,
    },
    /// A path is neither a model directory nor a GGUF file.
    #[error("{0} is neither a model directory (config.json, model.safetensors) nor a GGUF file")]
    NotAModel(PathBuf),
    /// More layers were asked for than the model has.
    #[error("{asked} layers were asked for, but the model has {available}")]
    TooManyLayers {
        /// Layers asked for.
        asked: usize,
        /// Layers in the model.
        available: usize,
    },
    /// A tokenizer file could not be used.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Adapters could not be attached while loading (bad targets or settings).
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}

impl LoadError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where a [`ModuleLoader`](super::ModuleLoader) gets its tensors: a
/// checkpoint on disk ([`WeightFiles`]) or seeded random values
/// ([`RandomWeights`](super::RandomWeights), for benchmarks without weights).
pub trait TensorSource: Sync {
    /// Whether the source holds the tensor `name`.
    fn contains(&self, name: &str) -> bool;
    /// The tensor `name` as f32 values (row-major), checked against `expected` shape.
    fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, LoadError>;
}

impl<T: TensorSource + ?Sized> TensorSource for &T {
    fn contains(&self, name: &str) -> bool {
        (**self).contains(name)
    }
    fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, LoadError> {
        (**self).read_f32(name, expected)
    }
}

impl TensorSource for WeightFiles {
    fn contains(&self, name: &str) -> bool {
        WeightFiles::contains(self, name)
    }
    fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, LoadError> {
        WeightFiles::read_f32(self, name, expected)
    }
}

/// One safetensors file held in memory with its parsed header.
struct SafetensorsFile {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Offset of the data section (8-byte length + JSON header).
    data_start: usize,
    metadata: Metadata,
}

impl SafetensorsFile {
    fn open(path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::io(path, e))?;
        let not_safetensors = |reason: String| LoadError::NotSafetensors {
            path: path.to_path_buf(),
            reason,
        };
        // Full validation (offsets inside the buffer, no overlaps) once, here.
        SafeTensors::deserialize(&bytes).map_err(|e| not_safetensors(e.to_string()))?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&bytes).map_err(|e| not_safetensors(e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            data_start: 8 + header_len,
            metadata,
        })
    }

    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.metadata.info(name)
    }

    fn data(&self, info: &TensorInfo) -> &[u8] {
        let (start, end) = info.data_offsets;
        &self.bytes[self.data_start + start..self.data_start + end]
    }
}

/// The tensors of a Hugging Face checkpoint, by name.
///
/// ```no_run
/// use matryoshka_lora::models::WeightFiles;
/// let weights = WeightFiles::open_dir(std::path::Path::new("assets"))?;
/// let w = weights.read_f32("embeddings.word_embeddings.weight", &[30522, 384])?;
/// # Ok::<(), matryoshka_lora::models::LoadError>(())
/// ```
pub struct WeightFiles {
    /// The directory (sharded) or the file (single), for messages.
    origin: PathBuf,
    files: Vec<SafetensorsFile>,
    /// Tensor name -> index into `files`.
    index: BTreeMap<String, usize>,
}

impl WeightFiles {
    /// The checkpoint of a model directory: `model.safetensors`, else the
    /// shards named by `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self, LoadError> {
        if !dir.is_dir() {
            return Err(LoadError::MissingDir(dir.to_path_buf()));
        }
        let single = dir.join(SINGLE_FILE);
        let index = dir.join(SHARD_INDEX);
        if single.is_file() || !index.is_file() {
            return Self::open(&single);
        }
        let text = std::fs::read_to_string(&index).map_err(|e| LoadError::io(&index, e))?;
        #[derive(serde::Deserialize)]
        struct ShardIndex {
            weight_map: BTreeMap<String, String>,
        }
        let parsed: ShardIndex =
            serde_json::from_str(&text).map_err(|e| LoadError::NotSafetensors {
                path: index.clone(),
                reason: format!("not a shard index: {e}"),
            })?;
        let mut shard_names: Vec<&String> = parsed.weight_map.values().collect();
        shard_names.sort();
        shard_names.dedup();
        let mut files = Vec::with_capacity(shard_names.len());
        let mut position = BTreeMap::new();
        for name in shard_names {
            position.insert(name.clone(), files.len());
            files.push(SafetensorsFile::open(&dir.join(name))?);
        }
        let mut names = BTreeMap::new();
        for (tensor, shard) in &parsed.weight_map {
            let i = position[shard];
            if files[i].info(tensor).is_none() {
                return Err(LoadError::MissingTensor {
                    name: tensor.clone(),
                    path: files[i].path.clone(),
                });
            }
            names.insert(tensor.clone(), i);
        }
        Ok(Self {
            origin: dir.to_path_buf(),
            files,
            index: names,
        })
    }

    /// One safetensors file.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let file = SafetensorsFile::open(path)?;
        let index = file
            .metadata
            .tensors()
            .into_keys()
            .map(|name| (name, 0))
            .collect();
        Ok(Self {
            origin: path.to_path_buf(),
            files: vec![file],
            index,
        })
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }

    /// The shape of the tensor `name`, if the checkpoint holds it.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let &i = self.index.get(name)?;
        self.files[i].info(name).map(|info| info.shape.clone())
    }

    /// Whether the checkpoint holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The tensor `name` as f32 values (row-major), checked against `expected` shape.
    pub fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, LoadError> {
        let (file, info) = self
            .index
            .get(name)
            .and_then(|&i| self.files[i].info(name).map(|info| (&self.files[i], info)))
            .ok_or_else(|| LoadError::MissingTensor {
                name: name.to_string(),
                path: self.origin.clone(),
            })?;
        if info.shape != expected {
            return Err(LoadError::WrongShape {
                name: name.to_string(),
                path: file.path.clone(),
                expected: expected.to_vec(),
                got: info.shape.clone(),
            });
        }
        let data = file.data(info);
        let values = match info.dtype {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(LoadError::UnsupportedDtype {
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn write(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn reads_dtypes_shards_and_reports_errors() {
        let dir = std::env::temp_dir().join(format!("mlora-weights-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let half: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let bf: Vec<u8> = [0.25f32, 4.0]
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        write(
            &dir.join("a.safetensors"),
            &[
                (
                    "x.weight",
                    Dtype::F32,
                    vec![2, 2],
                    f32_bytes(&[1., 2., 3., 4.]),
                ),
                ("x.half", Dtype::F16, vec![2], half),
            ],
        );
        write(
            &dir.join("b.safetensors"),
            &[
                ("y.bf", Dtype::BF16, vec![2], bf),
                ("y.int", Dtype::I32, vec![1], vec![0, 0, 0, 0]),
            ],
        );
        std::fs::write(
            dir.join(SHARD_INDEX),
            r#"{"metadata":{},"weight_map":{"x.weight":"a.safetensors","x.half":"a.safetensors","y.bf":"b.safetensors","y.int":"b.safetensors"}}"#,
        )
        .unwrap();
        let w = WeightFiles::open_dir(&dir).unwrap();
        assert_eq!(w.names(), ["x.half", "x.weight", "y.bf", "y.int"]);
        assert_eq!(w.read_f32("x.weight", &[2, 2]).unwrap(), [1., 2., 3., 4.]);
        assert_eq!(w.read_f32("x.half", &[2]).unwrap(), [1.5, -2.0]);
        assert_eq!(w.read_f32("y.bf", &[2]).unwrap(), [0.25, 4.0]);
        assert!(matches!(
            w.read_f32("x.weight", &[4]),
            Err(LoadError::WrongShape { .. })
        ));
        assert!(matches!(
            w.read_f32("y.int", &[1]),
            Err(LoadError::UnsupportedDtype { .. })
        ));
        let missing = w.read_f32("z", &[1]).unwrap_err();
        assert!(matches!(missing, LoadError::MissingTensor { .. }));
        assert!(missing.to_string().contains("`z`"), "{missing}");
        // an index naming a tensor its shard lacks
        std::fs::write(
            dir.join(SHARD_INDEX),
            r#"{"weight_map":{"x.gone":"a.safetensors"}}"#,
        )
        .unwrap();
        assert!(matches!(
            WeightFiles::open_dir(&dir),
            Err(LoadError::MissingTensor { .. })
        ));
        std::fs::write(dir.join(SINGLE_FILE), b"not safetensors").unwrap();
        assert!(matches!(
            WeightFiles::open_dir(&dir),
            Err(LoadError::NotSafetensors { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(
            WeightFiles::open_dir(&dir),
            Err(LoadError::MissingDir(_))
        ));
    }
}
