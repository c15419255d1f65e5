//! A GGUF (llama.cpp) model file opened for loading: the header and metadata
//! parsed once, the tensor data memory-mapped (never read into memory
//! twice), and tensors dequantized to f32 under their Hugging Face names.

use super::names::{gguf_tensor, rotary_heads, rows_from_gguf};
use crate::models::{LoadError, TensorSource};
use rlx_gguf::{GgmlType, GgufFile, MetaValue};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The tensor types the crate dequantizes (checked against the Python
/// `gguf` package's `gguf.quants.dequantize` by the test fixtures).
pub const SUPPORTED_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

/// The architectures whose tensors and config this crate reads.
pub const SUPPORTED_ARCHITECTURES: [&str; 1] = ["llama"];

/// A GGUF v2/v3 file: metadata, tensor infos and memory-mapped tensor data.
///
/// As a [`TensorSource`] it answers Hugging Face names
/// (`model.layers.0.self_attn.q_proj.weight` reads `blk.0.attn_q.weight`),
/// dequantized to f32, in PyTorch's `[out, in]` layout, with llama.cpp's
/// rotary row order of `attn_q` / `attn_k` undone; so every model that loads
/// from a Hugging Face directory loads from the GGUF file unchanged.
///
/// ```no_run
/// use matryoshka_lora::models::{TensorSource, gguf::GgufModel};
/// let gguf = GgufModel::open("assets/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref())?;
/// let config = gguf.llama_config()?;
/// let q = gguf.read_f32("model.layers.0.self_attn.q_proj.weight", &[576, 576])?;
/// let tokenizer = gguf.tokenizer()?;
/// # Ok::<(), matryoshka_lora::models::LoadError>(())
/// ```
pub struct GgufModel {
    path: PathBuf,
    file: GgufFile,
    /// sha256 of the header (metadata and tensor infos).
    fingerprint: String,
}

impl std::fmt::Debug for GgufModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufModel")
            .field("path", &self.path)
            .field("version", &self.file.version)
            .field("tensors", &self.file.tensors.len())
            .finish()
    }
}

/// Whether `path` looks like a GGUF file: its extension, or its magic bytes.
pub fn is_gguf(path: &Path) -> bool {
    if path.is_dir() {
        return false;
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|_| &magic == b"GGUF")
}

impl GgufModel {
    /// Parses the header of `path` and maps its tensor data. Fails with one
    /// line naming the file when it is not GGUF v2/v3, is truncated (a
    /// tensor past the end of the file), holds a tensor type the crate cannot
    /// dequantize, or is not a model (`general.type` other than `model`).
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        if !path.is_file() {
            return Err(LoadError::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file (scripts/fetch-llm.sh fetches SmolLM2-135M-Instruct's)",
                ),
            ));
        }
        let bad = |reason: String| LoadError::NotGguf {
            path: path.to_path_buf(),
            reason,
        };
        let file = GgufFile::from_path_mmap(path).map_err(|e| bad(format!("{e:#}")))?;
        if !(2..=3).contains(&file.version) {
            return Err(bad(format!(
                "GGUF version {} is not supported (2 or 3)",
                file.version
            )));
        }
        // Every tensor inside the file (a truncated download fails here, not mid-load).
        let mut names: Vec<&String> = file.tensors.keys().collect();
        names.sort();
        for name in names {
            let t = &file.tensors[name];
            if !SUPPORTED_TYPES.contains(&t.dtype) {
                return Err(LoadError::UnsupportedGgufType {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    dtype: t.dtype.name().to_string(),
                });
            }
            file.tensor_bytes(t).map_err(|e| {
                bad(format!(
                    "truncated or corrupt: {e:#} (tensor `{name}`; download the file again)"
                ))
            })?;
        }
        let fingerprint = {
            let mut header = vec![0u8; file.data_offset() as usize];
            std::fs::File::open(path)
                .and_then(|mut f| f.read_exact(&mut header))
                .map_err(|e| LoadError::io(path, e))?;
            format!("{:x}", Sha256::digest(&header))
        };
        let model = Self {
            path: path.to_path_buf(),
            file,
            fingerprint,
        };
        if let Some(kind) = model.meta_str("general.type")
            && kind != "model"
        {
            return Err(model.bad(format!(
                "general.type is `{kind}`, not a model (a llama.cpp adapter file? give the base model's GGUF file)"
            )));
        }
        Ok(model)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.file.version
    }

    /// sha256 of the header (metadata and tensor infos): what identifies the
    /// base model in checkpoints.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `general.architecture`, or `None` when absent.
    pub fn architecture(&self) -> Option<&str> {
        self.meta_str("general.architecture")
    }

    /// The architecture, checked to be one the crate loads.
    pub fn llama_architecture(&self) -> Result<&str, LoadError> {
        let arch = self.architecture().unwrap_or("");
        if SUPPORTED_ARCHITECTURES.contains(&arch) {
            Ok(arch)
        } else {
            Err(LoadError::UnsupportedArchitecture {
                path: self.path.clone(),
                arch: arch.to_string(),
            })
        }
    }

    /// The GGUF tensor names, sorted.
    pub fn tensor_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.file.tensors.keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether the file holds the GGUF tensor `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.file.tensors.contains_key(name)
    }

    /// The shape of the GGUF tensor `name`, outermost first (GGUF lists
    /// dimensions innermost first).
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let t = self.file.tensors.get(name)?;
        Some(t.shape.iter().rev().copied().collect())
    }

    /// The type of the GGUF tensor `name` (`Q4_1`, `F32`, ...).
    pub fn tensor_type(&self, name: &str) -> Option<&'static str> {
        self.file.tensors.get(name).map(|t| t.dtype.name())
    }

    /// The metadata value `key`.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.file.metadata.get(key)
    }

    /// The string `key`.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta(key).and_then(MetaValue::as_str)
    }

    /// The unsigned integer `key` (any integer type).
    pub fn meta_usize(&self, key: &str) -> Option<usize> {
        match self.meta(key)? {
            MetaValue::U8(v) => Some(*v as usize),
            MetaValue::U16(v) => Some(*v as usize),
            MetaValue::I8(v) if *v >= 0 => Some(*v as usize),
            MetaValue::I16(v) if *v >= 0 => Some(*v as usize),
            other => other.as_u64().map(|v| v as usize),
        }
    }

    /// The float `key` (f32 values as the shortest decimal that rounds to
    /// them: 1e-5 stored as f32 reads as 1e-5, as in `config.json`).
    pub fn meta_f64(&self, key: &str) -> Option<f64> {
        match self.meta(key)? {
            MetaValue::F32(v) => format!("{v}").parse().ok(),
            MetaValue::F64(v) => Some(*v),
            _ => self.meta_usize(key).map(|v| v as f64),
        }
    }

    /// The boolean `key`.
    pub fn meta_bool(&self, key: &str) -> Option<bool> {
        match self.meta(key)? {
            MetaValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The string array `key`.
    pub fn meta_strings(&self, key: &str) -> Option<Vec<&str>> {
        self.meta(key)?
            .as_array()?
            .iter()
            .map(MetaValue::as_str)
            .collect()
    }

    /// The numeric array `key` as f64.
    pub fn meta_numbers(&self, key: &str) -> Option<Vec<f64>> {
        self.meta(key)?
            .as_array()?
            .iter()
            .map(|v| match v {
                MetaValue::F32(x) => Some(*x as f64),
                MetaValue::F64(x) => Some(*x),
                MetaValue::I32(x) => Some(*x as f64),
                MetaValue::I8(x) => Some(*x as f64),
                MetaValue::I16(x) => Some(*x as f64),
                MetaValue::I64(x) => Some(*x as f64),
                MetaValue::U8(x) => Some(*x as f64),
                MetaValue::U16(x) => Some(*x as f64),
                MetaValue::U32(x) => Some(*x as f64),
                MetaValue::U64(x) => Some(*x as f64),
                _ => None,
            })
            .collect()
    }

    /// The GGUF tensor `name` dequantized to f32, row-major, with its shape
    /// outermost first (GGUF lists dimensions innermost first).
    pub fn read_gguf(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), LoadError> {
        let shape = self.shape(name).ok_or_else(|| LoadError::MissingTensor {
            name: name.to_string(),
            path: self.path.clone(),
        })?;
        let values = self
            .file
            .dequant_f32(name)
            .map_err(|e| self.bad(format!("tensor `{name}`: {e:#}")))?
            .0;
        Ok((values, shape))
    }

    /// Query and key/value heads, for llama.cpp's rotary row order.
    fn heads(&self) -> (usize, usize) {
        let arch = self.architecture().unwrap_or("llama");
        let h = self
            .meta_usize(&format!("{arch}.attention.head_count"))
            .unwrap_or(1);
        let kv = self
            .meta_usize(&format!("{arch}.attention.head_count_kv"))
            .unwrap_or(h);
        (h, kv)
    }

    pub(crate) fn bad(&self, reason: String) -> LoadError {
        LoadError::NotGguf {
            path: self.path.clone(),
            reason,
        }
    }
}

impl TensorSource for GgufModel {
    fn contains(&self, name: &str) -> bool {
        gguf_tensor(name).is_some_and(|g| self.has_tensor(&g))
    }

    fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, LoadError> {
        let gguf = gguf_tensor(name).ok_or_else(|| LoadError::MissingTensor {
            name: name.to_string(),
            path: self.path.clone(),
        })?;
        if !self.has_tensor(&gguf) {
            return Err(LoadError::MissingTensor {
                name: format!("{gguf}` (`{name}"),
                path: self.path.clone(),
            });
        }
        let (values, shape) = self.read_gguf(&gguf)?;
        if shape != expected {
            return Err(LoadError::WrongShape {
                name: gguf,
                path: self.path.clone(),
                expected: expected.to_vec(),
                got: shape,
            });
        }
        let (h, kv) = self.heads();
        Ok(match rotary_heads(&gguf, h, kv) {
            Some(heads) => {
                let rows = shape[0];
                let cols = shape.get(1).copied().unwrap_or(1);
                rows_from_gguf(&values, rows, cols, heads)
            }
            None => values,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::WeightFiles;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gguf")
            .join(name)
    }

    /// Every supported type against `gguf.quants.dequantize` (scripts/make_gguf_fixtures.py).
    #[test]
    fn dequantizes_every_supported_type_as_the_gguf_package() {
        let gguf = GgufModel::open(&fixture("quants.gguf")).unwrap();
        let expected = WeightFiles::open(&fixture("quants_expected.safetensors")).unwrap();
        assert_eq!(gguf.version(), 3);
        for ty in SUPPORTED_TYPES {
            let name = ty.name();
            assert_eq!(gguf.tensor_type(name), Some(name));
            let (got, shape) = gguf.read_gguf(name).unwrap();
            assert_eq!(shape, [2, 512], "{name}");
            let want = expected.read_f32(name, &[2, 512]).unwrap();
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs() / w.abs().max(1e-3))
                .fold(0f32, f32::max);
            // equal up to float rounding (the scales are f16, the sums f32)
            assert!(worst <= 1e-6, "{name}: worst relative difference {worst}");
            assert!(
                want.iter().any(|v| *v != 0.0),
                "{name}: fixture is all zeros"
            );
        }
    }

    fn write_truncated(name: &str, keep: usize) -> PathBuf {
        let bytes = std::fs::read(fixture("quants.gguf")).unwrap();
        let path = std::env::temp_dir().join(format!("mlora-{name}-{}.gguf", std::process::id()));
        std::fs::write(&path, &bytes[..keep.min(bytes.len())]).unwrap();
        path
    }

    #[test]
    fn truncated_or_foreign_files_are_one_line_errors() {
        let len = std::fs::metadata(fixture("quants.gguf")).unwrap().len() as usize;
        // data cut short: the last tensor ends past the file
        let cut = write_truncated("cut-data", len - 100);
        let e = GgufModel::open(&cut).unwrap_err().to_string();
        assert!(
            e.contains("truncated") && e.contains(&cut.display().to_string()),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        // header cut short
        let cut_header = write_truncated("cut-header", 40);
        let e = GgufModel::open(&cut_header).unwrap_err().to_string();
        assert!(e.contains("not a usable GGUF model"), "{e}");
        // not GGUF at all
        let text = std::env::temp_dir().join(format!("mlora-not-gguf-{}.gguf", std::process::id()));
        std::fs::write(&text, b"definitely not a model file").unwrap();
        let e = GgufModel::open(&text).unwrap_err().to_string();
        assert!(e.contains("not a GGUF file"), "{e}");
        // missing
        let e = GgufModel::open(Path::new("no/such.gguf"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fetch-llm.sh"), "{e}");
        for p in [cut, cut_header, text] {
            let _ = std::fs::remove_file(p);
        }
        // GGUF v2 has v3's layout; v1 is refused
        let mut bytes = std::fs::read(fixture("quants.gguf")).unwrap();
        let v2 = std::env::temp_dir().join(format!("mlora-v2-{}.gguf", std::process::id()));
        bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
        std::fs::write(&v2, &bytes).unwrap();
        let gguf = GgufModel::open(&v2).unwrap();
        assert_eq!(gguf.version(), 2);
        assert_eq!(gguf.read_gguf("Q4_K").unwrap().1, [2, 512]);
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        std::fs::write(&v2, &bytes).unwrap();
        assert!(GgufModel::open(&v2).is_err());
        let _ = std::fs::remove_file(&v2);
        // a file of tensors only is no Llama: the architecture is checked
        let gguf = GgufModel::open(&fixture("spm.gguf")).unwrap();
        assert!(gguf.llama_config().is_err());
    }
}
