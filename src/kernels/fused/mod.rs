//! Softmax and LayerNorm as single autodiff operations on the CPU backends.
//!
//! burn 0.22's autodiff backend differentiates `softmax` and `layer_norm` by
//! decomposing them into element-wise ops: about ten passes over memory each
//! way, one thread each. This module registers each as **one** node with a
//! hand-written backward pass, through a burn backend extension
//! ([`HostFusedBackend`]):
//!
//! - softmax over the last axis, `y = softmax(x)`:
//!   forward = the backend's fused softmax; backward `dx = y ⊙ (g - Σ g⊙y)`;
//! - LayerNorm over the last axis, `y = x̂ γ + β`, `x̂ = (x - μ) r`,
//!   `r = 1/√(σ² + ε)`: forward = the backend's fused LayerNorm; backward
//!   `dx = r (ĝ - mean(ĝ) - x̂ mean(ĝ ⊙ x̂))` with `ĝ = g ⊙ γ`,
//!   `dγ = Σ_rows g ⊙ x̂`, `dβ = Σ_rows g`.
//!
//! On flex the backward passes are one parallel pass over the rows
//! (the crate's host kernels); on ndarray they are the same formulas from
//! tensor ops. [`softmax_last`] and [`layer_norm`] take this path for CPU
//! tensors and burn's own ops on every other backend (WGPU, CUDA).

#[cfg(any(feature = "flex", feature = "ndarray"))]
use crate::kernels::host;
use burn::module::{Module, Param};
use burn::prelude::*;

#[cfg(any(feature = "flex", feature = "ndarray"))]
mod extension;
#[cfg(feature = "flex")]
mod flex;

#[cfg(any(feature = "flex", feature = "ndarray"))]
use burn::backend::Dispatch;
#[cfg(any(feature = "flex", feature = "ndarray"))]
pub use extension::HostFusedBackend;

/// Softmax over the last axis of `x` (any rank). One autodiff node on the
/// CPU backends; burn's `softmax` elsewhere.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(any(feature = "flex", feature = "ndarray"))]
    if host::on_host(&x) {
        return Tensor::from_dispatch(<Dispatch as HostFusedBackend>::fused_softmax(
            x.into_dispatch(),
        ));
    }
    burn::tensor::activation::softmax(x, D - 1)
}

/// Mean cross-entropy of `logits` `[N, V]` against class ids `targets` `[N]`:
/// `mean_n(log Σ_v exp x[n, v] - x[n, t_n])`, `[1]`. One autodiff node on
/// the CPU backends (forward: one pass per row keeping the log-sum-exp;
/// backward: `(softmax(x) - onehot(t)) g / N` in one pass); burn's
/// `CrossEntropyLoss` elsewhere.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    #[cfg(any(feature = "flex", feature = "ndarray"))]
    if host::on_host(&logits) {
        return Tensor::from_dispatch(<Dispatch as HostFusedBackend>::fused_cross_entropy(
            logits.into_dispatch(),
            targets.into_dispatch(),
        ));
    }
    burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, targets)
}

/// SwiGLU `silu(gate) ⊙ up` (`silu(g) = g σ(g)`), any rank, same shapes.
/// One autodiff node on the CPU backends (one pass each way); burn's ops
/// elsewhere.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    #[cfg(any(feature = "flex", feature = "ndarray"))]
    if host::on_host(&gate) && host::on_host(&up) {
        return Tensor::from_dispatch(<Dispatch as HostFusedBackend>::fused_swiglu(
            gate.into_dispatch(),
            up.into_dispatch(),
        ));
    }
    burn::tensor::activation::silu(gate) * up
}

/// LayerNorm over the last axis of `x` (`[.., d]`; `gamma`, `beta`: `[d]`):
/// `(x - μ) / √(σ² + ε) γ + β`. One autodiff node on the CPU backends;
/// burn's `layer_norm` elsewhere.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    #[cfg(any(feature = "flex", feature = "ndarray"))]
    if host::on_host(&x) {
        return Tensor::from_dispatch(<Dispatch as HostFusedBackend>::fused_layer_norm(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            epsilon,
        ));
    }
    burn::tensor::module::layer_norm(x, gamma, Some(beta), epsilon)
}

/// A LayerNorm module computed by [`layer_norm`]: burn-nn's `LayerNorm`
/// with the same parameter names (`gamma`, `beta`) and a readable `epsilon`.
///
/// ```
/// use burn::prelude::*;
/// use matryoshka_lora::kernels::FusedLayerNorm;
///
/// let device = matryoshka_lora::cpu_device();
/// let norm = FusedLayerNorm::new(4, 1e-5, &device);
/// let y = norm.forward(Tensor::<2>::from_floats([[1.0, 2.0, 3.0, 4.0]], &device));
/// let mean = y.clone().mean().into_scalar::<f32>();
/// assert!(mean.abs() < 1e-6);
/// ```
#[derive(Module, Debug)]
pub struct FusedLayerNorm {
    /// Scale `γ`: `[d]`.
    pub gamma: Param<Tensor<1>>,
    /// Shift `β`: `[d]`.
    pub beta: Param<Tensor<1>>,
    /// `ε` added to the variance.
    pub epsilon: f64,
}

impl FusedLayerNorm {
    /// `γ = 1`, `β = 0` over a last axis of size `d`.
    pub fn new(d: usize, epsilon: f64, device: &Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([d], device)),
            beta: Param::from_tensor(Tensor::zeros([d], device)),
            epsilon,
        }
    }

    /// `x`: `[.., d]` -> `[.., d]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        layer_norm(x, self.gamma.val(), self.beta.val(), self.epsilon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendKind;
    use burn::nn::LayerNormConfig;
    use burn::tensor::Distribution;

    fn max_abs<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// Autodiff devices of every CPU backend in this build.
    fn cpu_devices() -> Vec<Device> {
        BackendKind::compiled_cpu()
            .into_iter()
            .filter_map(|b| b.device().ok())
            .map(|d| d.autodiff())
            .collect()
    }

    #[test]
    fn softmax_matches_burn_in_value_and_gradient() {
        for device in cpu_devices() {
            // 2 x 3 x 70 x 70: several parallel tasks.
            let x = Tensor::<4>::random([2, 3, 70, 70], Distribution::Normal(0.0, 3.0), &device);
            let w = Tensor::<4>::random([2, 3, 70, 70], Distribution::Default, &device);
            let x1 = x.clone().require_grad();
            let x2 = x.require_grad();
            let ours = softmax_last(x1.clone());
            let reference = burn::tensor::activation::softmax(x2.clone(), 3);
            assert!(max_abs(ours.clone(), reference.clone()) < 1e-6);
            let g1 = x1.grad(&(ours * w.clone()).sum().backward()).unwrap();
            let g2 = x2.grad(&(reference * w).sum().backward()).unwrap();
            let err = max_abs(g1, g2);
            assert!(err < 1e-6, "{device:?}: gradient error {err}");
        }
    }

    /// flex's softmax through [`softmax_last`] is flex's own, bit for bit,
    /// on masked attention scores (the underflowing `exp`s it skips are `+0`).
    #[cfg(feature = "flex")]
    #[test]
    fn softmax_on_flex_is_flexs_own_bit_for_bit_on_masked_scores() {
        let device = BackendKind::Flex.device().unwrap();
        let [b, h, t] = [2, 3, 70];
        let scores = Tensor::<4>::random([b, h, t, t], Distribution::Normal(0.0, 3.0), &device);
        let key_mask = Tensor::<2, Int>::from_data(
            TensorData::new(
                (0..b * t)
                    .map(|i| i64::from(i % t >= 5))
                    .collect::<Vec<_>>(),
                [b, t],
            ),
            &device,
        );
        let bias = crate::models::llama::attention_bias(key_mask, t);
        let x = scores + bias;
        for x in [x.clone(), x.clone().slice([0..1, 0..1, 0..7, 0..t])] {
            let dims = x.dims();
            let ours = softmax_last(x.clone()).into_data();
            let flex = burn::tensor::activation::softmax(x, 3).into_data();
            let bits = |d: TensorData| -> Vec<u32> { d.iter::<f32>().map(f32::to_bits).collect() };
            assert_eq!(bits(ours), bits(flex), "{dims:?}");
        }
    }

    #[test]
    fn layer_norm_matches_burn_in_value_and_all_gradients() {
        for device in cpu_devices() {
            let mut norm = LayerNormConfig::new(96).with_epsilon(1e-12).init(&device);
            norm.gamma = norm
                .gamma
                .map(|g| g.random_like(Distribution::Normal(1.0, 0.5)).require_grad());
            norm.beta = norm
                .beta
                .map(|b| b.map(|b| b.random_like(Distribution::Normal(0.0, 0.5)).require_grad()));
            let fused = FusedLayerNorm {
                gamma: norm.gamma.clone(),
                beta: norm.beta.clone().unwrap(),
                epsilon: 1e-12,
            };
            let x = Tensor::<3>::random([7, 300, 96], Distribution::Normal(0.5, 2.0), &device);
            let w = Tensor::<3>::random([7, 300, 96], Distribution::Default, &device);
            let x1 = x.clone().require_grad();
            let x2 = x.require_grad();
            let ours = fused.forward(x1.clone());
            let reference = norm.forward(x2.clone());
            assert!(max_abs(ours.clone(), reference.clone()) < 1e-5);
            let grads1 = (ours * w.clone()).sum().backward();
            let grads2 = (reference * w).sum().backward();
            let err = max_abs(x1.grad(&grads1).unwrap(), x2.grad(&grads2).unwrap());
            assert!(err < 1e-5, "{device:?}: dx error {err}");
            for param in [norm.gamma.val(), norm.beta.as_ref().unwrap().val()] {
                let reference = param.grad(&grads2).expect("reference affine gradient");
                let ours = param.grad(&grads1).expect("fused affine gradient");
                let scale = reference.clone().abs().max().into_scalar::<f32>();
                let err = max_abs(ours, reference) / scale;
                assert!(
                    err < 1e-5,
                    "{device:?}: affine gradient relative error {err}"
                );
            }
        }
    }

    #[test]
    fn untracked_inputs_take_the_forward_only() {
        for device in cpu_devices() {
            let device = device.inner();
            let x = Tensor::<2>::random([5, 40], Distribution::Default, &device);
            let err = max_abs(
                softmax_last(x.clone()),
                burn::tensor::activation::softmax(x.clone(), 1),
            );
            assert!(err < 1e-6);
            let norm = LayerNormConfig::new(40).init(&device);
            let fused = FusedLayerNorm::new(40, 1e-5, &device);
            assert!(max_abs(fused.forward(x.clone()), norm.forward(x)) < 1e-5);
        }
    }

    #[test]
    fn cross_entropy_matches_burn_in_value_and_gradient() {
        for device in cpu_devices() {
            let logits = Tensor::<2>::random([37, 1000], Distribution::Normal(0.0, 4.0), &device);
            let ids: Vec<i64> = (0..37).map(|i| (i * 271 % 1000) as i64).collect();
            let targets = Tensor::<1, Int>::from_data(TensorData::new(ids, [37]), &device);
            let x1 = logits.clone().require_grad();
            let x2 = logits.require_grad();
            let ours = cross_entropy(x1.clone(), targets.clone());
            let reference = burn::nn::loss::CrossEntropyLossConfig::new()
                .init(&device)
                .forward(x2.clone(), targets);
            assert!(max_abs(ours.clone(), reference.clone()) < 1e-5);
            // a non-trivial upstream gradient
            let g1 = x1.grad(&(ours * 3.0).backward()).unwrap();
            let g2 = x2.grad(&(reference * 3.0).backward()).unwrap();
            assert!(max_abs(g1, g2) < 1e-6);
        }
    }

    #[test]
    fn swiglu_matches_burn_in_value_and_gradient() {
        for device in cpu_devices() {
            let gate = Tensor::<3>::random([3, 70, 130], Distribution::Normal(0.0, 3.0), &device);
            let up = Tensor::<3>::random([3, 70, 130], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<3>::random([3, 70, 130], Distribution::Default, &device);
            let (g1, u1) = (gate.clone().require_grad(), up.clone().require_grad());
            let (g2, u2) = (gate.require_grad(), up.require_grad());
            let ours = swiglu(g1.clone(), u1.clone());
            let reference = burn::tensor::activation::silu(g2.clone()) * u2.clone();
            assert!(max_abs(ours.clone(), reference.clone()) < 1e-5);
            let grads1 = (ours * w.clone()).sum().backward();
            let grads2 = (reference * w).sum().backward();
            assert!(max_abs(g1.grad(&grads1).unwrap(), g2.grad(&grads2).unwrap()) < 1e-5);
            assert!(max_abs(u1.grad(&grads1).unwrap(), u2.grad(&grads2).unwrap()) < 1e-5);
        }
    }
}
