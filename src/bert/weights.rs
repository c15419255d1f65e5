//! Reading named tensors from a Hugging Face `model.safetensors`.

use crate::fused_ops::FusedLayerNorm;
use burn::module::Param;
use burn::nn::{Embedding, Linear};
use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a model directory could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The model directory does not exist.
    #[error(
        "model directory {0} does not exist (run scripts/fetch-assets.sh, or pass --model DIR with config.json and model.safetensors)"
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
    /// `config.json` is invalid.
    #[error("invalid config {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The weights file is not a safetensors file.
    #[error("{path} is not a valid safetensors file: {reason}")]
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
        /// The file.
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
    /// A tokenizer file could not be used.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl LoadError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A safetensors file held in memory, read tensor by tensor (as frozen f32 params).
pub struct WeightFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl WeightFile {
    /// Reads `path` and checks that it parses as safetensors.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::io(path, e))?;
        SafeTensors::deserialize(&bytes).map_err(|e| LoadError::NotSafetensors {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
        })
    }

    /// Every tensor name in the file.
    pub fn names(&self) -> Vec<String> {
        SafeTensors::deserialize(&self.bytes)
            .map(|st| st.names().into_iter().map(String::from).collect())
            .unwrap_or_default()
    }

    /// The tensor `name` as f32 values, checked against `expected` shape.
    pub fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, LoadError> {
        let st = SafeTensors::deserialize(&self.bytes).map_err(|e| LoadError::NotSafetensors {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let view = st.tensor(name).map_err(|_| LoadError::MissingTensor {
            name: name.to_string(),
            path: self.path.clone(),
        })?;
        if view.shape() != expected {
            return Err(LoadError::WrongShape {
                name: name.to_string(),
                path: self.path.clone(),
                expected: expected.to_vec(),
                got: view.shape().to_vec(),
            });
        }
        let data = view.data();
        let values = match view.dtype() {
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

    /// A frozen tensor parameter of the given shape.
    pub fn param<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Param<Tensor<D>>, LoadError> {
        let values = self.read_f32(name, &shape)?;
        Ok(frozen(Tensor::from_data(
            TensorData::new(values, shape),
            device,
        )))
    }

    /// A frozen `Linear` from PyTorch's `{prefix}.weight` `[out, in]` (transposed
    /// to burn's `[in, out]`) and `{prefix}.bias` `[out]`.
    pub fn linear(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Result<Linear, LoadError> {
        let w = self.read_f32(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let mut t = vec![0f32; w.len()];
        for o in 0..d_out {
            for i in 0..d_in {
                t[i * d_out + o] = w[o * d_in + i];
            }
        }
        let weight = frozen(Tensor::from_data(TensorData::new(t, [d_in, d_out]), device));
        let bias = self.param(&format!("{prefix}.bias"), [d_out], device)?;
        Ok(Linear {
            weight,
            bias: Some(bias),
        })
    }

    /// A frozen [`FusedLayerNorm`] from `{prefix}.weight` / `{prefix}.bias`.
    pub fn layer_norm(
        &self,
        prefix: &str,
        d: usize,
        eps: f64,
        device: &Device,
    ) -> Result<FusedLayerNorm, LoadError> {
        Ok(FusedLayerNorm {
            gamma: self.param(&format!("{prefix}.weight"), [d], device)?,
            beta: self.param(&format!("{prefix}.bias"), [d], device)?,
            epsilon: eps,
        })
    }

    /// A frozen `Embedding` from `{name}` `[n, d]`.
    pub fn embedding(
        &self,
        name: &str,
        n: usize,
        d: usize,
        device: &Device,
    ) -> Result<Embedding, LoadError> {
        Ok(Embedding {
            weight: self.param(name, [n, d], device)?,
        })
    }
}

fn frozen<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(t).set_require_grad(false)
}
