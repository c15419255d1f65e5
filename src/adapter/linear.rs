//! `MatryoshkaLinear`: a frozen `Linear` plus a nested-rank adapter, computed on
//! the activation side.

use super::error::{AdapterError, Result};
use super::module::{MatryoshkaAdapter, MatryoshkaConfig};
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
    ///
    /// When the adapter takes no gradient (inference, or a frozen adapter) and
    /// `x` has more than `d_in d_out / (d_in + d_out)` rows, the same function is
    /// computed as one matmul with the folded weight `W + A[:, :r] diag(p) B[:r]`
    /// (cheaper than the two thin adapter matmuls per row); values agree to
    /// float rounding.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.folds_into_weight(&x) {
            let weight = in_dtype(self.base.weight.val(), x.dtype()) + self.adapter.delta();
            return burn::tensor::module::linear(
                x,
                weight,
                self.base.bias.as_ref().map(|b| b.val()),
            );
        }
        frozen_forward(&self.base, x.clone()) + self.adapter.forward(x)
    }

    /// Whether folding the active adapter into the weight is exact for autodiff
    /// (no adapter gradient wanted) and saves work for `x`'s row count.
    fn folds_into_weight<const D: usize>(&self, x: &Tensor<D>) -> bool {
        let (d_in, d_out) = (self.adapter.d_input(), self.adapter.d_output());
        let rows = x.shape().num_elements() / d_in.max(1);
        !self.adapter.lora_a.val().is_tracked()
            && !self.adapter.lora_b.val().is_tracked()
            && rows * (d_in + d_out) > d_in * d_out
    }

    /// Rank-`k` output `x W + b + s(k) x A[:, :k] B[:k]`; errors unless `1 <= k <= R`.
    pub fn forward_at_rank<const D: usize>(&self, x: Tensor<D>, k: usize) -> Result<Tensor<D>> {
        let delta = self.adapter.forward_at_rank(x.clone(), k)?;
        Ok(frozen_forward(&self.base, x) + delta)
    }

    /// A plain `Linear` whose output equals `forward_at_rank(., k)`:
    /// `W_k = W + s(k) A[:, :k] B[:k]`, same bias. The result is detached.
    pub fn merge(&self, k: usize) -> Result<Linear> {
        let delta = self.adapter.delta_at_rank(k)?;
        let weight = (in_dtype(self.base.weight.val(), delta.dtype()) + delta).detach();
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

/// `x W + b` for a frozen `Linear` held in any float dtype: a base stored in
/// bf16 or f16 multiplies `x` cast to its dtype, and the result comes back in
/// `x`'s dtype (f32), so adapters, gradients and everything around stay f32.
/// `[..., d_in] -> [..., d_out]`.
pub fn frozen_forward<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    let (wanted, held) = (x.dtype(), linear.weight.val().dtype());
    if wanted == held {
        linear.forward(x)
    } else {
        in_dtype(linear.forward(x.cast(held)), wanted)
    }
}

/// `t` in `dtype` (unchanged when it already is).
pub(crate) fn in_dtype<const D: usize>(t: Tensor<D>, dtype: burn::tensor::DType) -> Tensor<D> {
    if t.dtype() == dtype { t } else { t.cast(dtype) }
}

/// Freezes a `Linear`'s weight and bias (no gradient, not optimised).
pub fn freeze_linear(linear: Linear) -> Linear {
    Linear {
        weight: linear.weight.set_require_grad(false),
        bias: linear.bias.map(|b| b.set_require_grad(false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::AdapterMethod;
    use burn::tensor::Distribution;

    fn layer(device: &Device) -> MatryoshkaLinear {
        let config = MatryoshkaConfig::new()
            .with_max_rank(8)
            .with_method(AdapterMethod::matryoshka());
        let layer = MatryoshkaLinearConfig::new(12, 10)
            .with_adapter(config)
            .init(device)
            .unwrap();
        // B starts at 0: give it values so the adapter term matters.
        let b = layer.adapter.lora_b.val();
        let b = Tensor::random(b.dims(), Distribution::Default, device);
        MatryoshkaLinear {
            adapter: MatryoshkaAdapter {
                lora_b: Param::from_tensor(b),
                ..layer.adapter
            },
            ..layer
        }
    }

    fn max_abs(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn folded_inference_forward_equals_the_two_path_sum() {
        let device = crate::cpu_device();
        let layer = layer(&device);
        // 40 rows > 12 * 10 / 22: folded; 2 rows: not folded.
        for rows in [40, 2] {
            let x = Tensor::<2>::random([rows, 12], Distribution::Default, &device);
            let two_paths = layer.base.forward(x.clone()) + layer.adapter.forward(x.clone());
            assert_eq!(layer.folds_into_weight(&x), rows == 40);
            assert!(max_abs(layer.forward(x), two_paths) < 1e-5);
        }
    }

    #[test]
    fn trainable_adapter_is_never_folded() {
        let device = crate::cpu_device().autodiff();
        let layer = layer(&device);
        let x = Tensor::<2>::random([40, 12], Distribution::Default, &device);
        assert!(!layer.folds_into_weight(&x));
        let grads = layer.forward(x).sum().backward();
        assert!(layer.adapter.lora_b.val().grad(&grads).is_some());
        let frozen = layer.no_grad();
        let x = Tensor::<2>::random([40, 12], Distribution::Default, &device);
        assert!(frozen.folds_into_weight(&x));
    }
}
