//! The dtype a frozen base model is held in.

use burn::tensor::DType;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The float type of a frozen base's matrices (linear and embedding weights):
/// `f32`, or `bf16`/`f16` to halve their memory. Adapters, their gradients,
/// the optimizer state, norms and activations stay f32; a half-precision
/// base multiplies activations cast to its dtype and returns f32
/// ([`frozen_forward`](crate::frozen_forward)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseDtype {
    /// 32-bit floats (every backend).
    #[default]
    F32,
    /// bfloat16 (flex and CUDA; not WGPU).
    Bf16,
    /// IEEE half (flex, CUDA, and WGPU devices with shader-f16).
    F16,
}

impl BaseDtype {
    /// burn's dtype.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }

    /// Bytes per value.
    pub fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Bf16 | Self::F16 => 2,
        }
    }
}

impl fmt::Display for BaseDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        })
    }
}

impl FromStr for BaseDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f16" | "float16" | "half" => Ok(Self::F16),
            other => Err(format!("unknown dtype `{other}` (f32, bf16 or f16)")),
        }
    }
}
