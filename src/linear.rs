//! `MatryoshkaLinear`: a frozen `Linear` plus a nested-rank adapter, computed on
//! the activation side.

use crate::adapter::{MatryoshkaAdapter, MatryoshkaConfig};
use crate::error::{AdapterError, Result};
use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Configuration of a fresh [`MatryoshkaLinear`] (random frozen base).
///
/// To adapt a pretrained layer use [`MatryoshkaLinear::from_linear`].
#[derive(Config, Debug)]
pub struct MatryoshkaLinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Whether the frozen base has a bias.
    #[config(default = true)]
    pub bias: bool,
    /// The adapter's hyper-parameters.
    #[config(default = "MatryoshkaConfig::new()")]
    pub adapter: MatryoshkaConfig,
}

impl MatryoshkaLinearConfig {
    /// Builds the layer: a burn-initialised frozen `Linear` and a fresh adapter.
    pub fn init(&self, device: &Device) -> Result<MatryoshkaLinear> {
        let base = LinearConfig::new(self.d_input, self.d_output)
            .with_bias(self.bias)
            .init(device);
        MatryoshkaLinear::from_linear(base, &self.adapter)
    }
}

/// A frozen linear layer with a MatryoshkaLoRA adapter.
///
/// * training (`forward`): `y = x W + b + x (A diag(P)) B`
/// * at rank `k` (`forward_at_rank`): `y = x W + b + s(k) x A[:, :k] B[:k]`
/// * merged (`merge(k)`): a plain `Linear` with `W_k = W + s(k) A[:, :k] B[:k]`
///
/// Shapes: `W: [d_in, d_out]`, `A: [d_in, R]`, `B: [R, d_out]`, `x: [..., d_in]`.
///
/// ```
/// use burn::prelude::*;
/// use matryoshka_lora::{MatryoshkaConfig, MatryoshkaLinear, MatryoshkaLinearConfig};
///
/// let device = matryoshka_lora::cpu_device(); // or Device::default(): any enabled backend
/// let layer = MatryoshkaLinearConfig::new(16, 8)
///     .with_adapter(MatryoshkaConfig::new().with_max_rank(4))
///     .init(&device)?;
/// let x = Tensor::<3>::ones([2, 5, 16], &device);
/// let y = layer.forward(x.clone());                  // training form
/// let y2 = layer.forward_at_rank(x.clone(), 2)?;     // nested rank-2 adapter
/// let merged: burn::nn::Linear = layer.merge(2)?;    // deploy rank 2
/// assert_eq!(y.dims(), [2, 5, 8]);
/// assert!(layer.forward_at_rank(x, 5).is_err());     // 5 > R
/// # let _ = (y2, merged);
/// # Ok::<(), matryoshka_lora::AdapterError>(())
/// ```
#[derive(Module, Debug)]
pub struct MatryoshkaLinear {
    /// The frozen base layer (no gradient, never updated).
    pub base: Linear,
    /// The trainable adapter.
    pub adapter: MatryoshkaAdapter,
}

impl MatryoshkaLinear {
    /// Wraps a pretrained `Linear` (its weight `[d_in, d_out]` is frozen) with a
    /// fresh adapter built from `config`, on the weight's device.
    pub fn from_linear(base: Linear, config: &MatryoshkaConfig) -> Result<Self> {
        let [d_input, d_output] = base.weight.shape().dims::<2>();
        let device = base.weight.lazy_device();
        let adapter = config.init_adapter(d_input, d_output, &device)?;
        Self::from_parts(base, adapter)
    }

    /// Joins a base `Linear` and an existing adapter, checking their shapes.
    pub fn from_parts(base: Linear, adapter: MatryoshkaAdapter) -> Result<Self> {
        let [d_input, d_output] = base.weight.shape().dims::<2>();
        let expected = vec![adapter.d_input(), adapter.d_output()];
        if expected != vec![d_input, d_output] {
            return Err(AdapterError::ShapeMismatch {
                what: "base Linear weight vs adapter [d_in, d_out]".into(),
                expected,
                got: vec![d_input, d_output],
            });
        }
        Ok(Self {
            base: freeze_linear(base),
            adapter,
        })
    }

    /// Training-form output: `x W + b + x (A[:, :r] diag(p)) B[:r]` with the
    /// active diagonal `p` (the method's `P` unless a rank was activated).
    /// `x`: `[..., d_in]` -> `[..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.base.forward(x.clone()) + self.adapter.forward(x)
    }

    /// Rank-`k` output `x W + b + s(k) x A[:, :k] B[:k]`; errors unless `1 <= k <= R`.
    pub fn forward_at_rank<const D: usize>(&self, x: Tensor<D>, k: usize) -> Result<Tensor<D>> {
        let delta = self.adapter.forward_at_rank(x.clone(), k)?;
        Ok(self.base.forward(x) + delta)
    }

    /// A plain `Linear` whose output equals `forward_at_rank(., k)`:
    /// `W_k = W + s(k) A[:, :k] B[:k]`, same bias. The result is detached.
    pub fn merge(&self, k: usize) -> Result<Linear> {
        let weight = (self.base.weight.val() + self.adapter.delta_at_rank(k)?).detach();
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias: self
                .base
                .bias
                .as_ref()
                .map(|b| Param::from_tensor(b.val().detach())),
        })
    }

    /// Drops the adapter and returns the (frozen) base layer.
    pub fn into_base(self) -> Linear {
        self.base
    }
}

/// Freezes a `Linear`'s weight and bias (no gradient, not optimised).
pub fn freeze_linear(linear: Linear) -> Linear {
    Linear {
        weight: linear.weight.set_require_grad(false),
        bias: linear.bias.map(|b| b.set_require_grad(false)),
    }
}
