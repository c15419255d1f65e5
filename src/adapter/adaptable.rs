//! `AdaptableLinear`: a linear layer that is either plain or adapted, for models
//! written with adapters in mind (the crate's BERT encoder, Llama next).

use super::error::Result;
use super::linear::{MatryoshkaLinear, freeze_linear};
use super::module::MatryoshkaConfig;
use burn::module::Module;
use burn::nn::Linear;
use burn::prelude::*;

/// A frozen-or-adapted linear layer. Models hold this where an adapter may go;
/// their forward calls [`AdaptableLinear::forward`] either way.
///
/// ```
/// use burn::nn::LinearConfig;
/// use matryoshka_lora::{AdaptableLinear, MatryoshkaConfig};
/// let device = matryoshka_lora::cpu_device();
/// let layer = AdaptableLinear::Plain(LinearConfig::new(8, 8).init(&device));
/// let layer = layer.adapt(&MatryoshkaConfig::new().with_max_rank(4))?;
/// assert!(layer.is_adapted());
/// # Ok::<(), matryoshka_lora::AdapterError>(())
/// ```
// One per projection, so the size difference costs nothing worth a Box
// (which burn's Module derive does not traverse).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum AdaptableLinear {
    /// A plain `Linear` (frozen or not, as the model decides).
    Plain(Linear),
    /// A frozen `Linear` with a Matryoshka adapter.
    Adapted(MatryoshkaLinear),
}

impl AdaptableLinear {
    /// `x W + b` (plus the active adapter output when adapted). `[..., d_in] -> [..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Plain(linear) => super::linear::frozen_forward(linear, x),
            Self::Adapted(adapted) => adapted.forward(x),
        }
    }

    /// Attaches a fresh adapter (freezing the base). Adapting an adapted layer
    /// replaces its adapter.
    pub fn adapt(self, config: &MatryoshkaConfig) -> Result<Self> {
        let base = match self {
            Self::Plain(linear) => linear,
            Self::Adapted(adapted) => adapted.into_base(),
        };
        Ok(Self::Adapted(MatryoshkaLinear::from_linear(base, config)?))
    }

    /// Freezes the layer's own weight and bias (the adapter, if any, stays trainable).
    pub fn freeze_base(self) -> Self {
        match self {
            Self::Plain(linear) => Self::Plain(freeze_linear(linear)),
            adapted => adapted,
        }
    }

    /// Whether an adapter is attached.
    pub fn is_adapted(&self) -> bool {
        matches!(self, Self::Adapted(_))
    }

    /// The adapted layer, if any.
    pub fn adapted(&self) -> Option<&MatryoshkaLinear> {
        match self {
            Self::Adapted(adapted) => Some(adapted),
            Self::Plain(_) => None,
        }
    }

    /// The base layer's weight `[d_in, d_out]`.
    pub fn base(&self) -> &Linear {
        match self {
            Self::Plain(linear) => linear,
            Self::Adapted(adapted) => &adapted.base,
        }
    }

    /// Merges the adapter at rank `k` into a plain layer (a plain layer is returned as is).
    pub fn merged(self, k: usize) -> Result<Self> {
        match self {
            Self::Adapted(adapted) => Ok(Self::Plain(adapted.merge(k)?)),
            plain => Ok(plain),
        }
    }
}
