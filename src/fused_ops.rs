#![allow(deprecated)] // burn 0.22 deprecates NdArray, which this crate still supports.
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
//! ([`crate::host_kernels`]); on ndarray they are the same formulas from
//! tensor ops. [`softmax_last`] and [`layer_norm`] take this path for CPU
//! tensors and burn's own ops on every other backend (WGPU, CUDA).

use crate::host_kernels;
use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::module::{Module, Param};
use burn::prelude::*;

/// Softmax over the last axis of `x` (any rank). One autodiff node on the
/// CPU backends; burn's `softmax` elsewhere.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if host_kernels::on_host(&x) {
        Tensor::from_dispatch(<Dispatch as HostFusedBackend>::fused_softmax(
            x.into_dispatch(),
        ))
    } else {
        burn::tensor::activation::softmax(x, D - 1)
    }
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
    if host_kernels::on_host(&x) {
        Tensor::from_dispatch(<Dispatch as HostFusedBackend>::fused_layer_norm(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            epsilon,
        ))
    } else {
        burn::tensor::module::layer_norm(x, gamma, Some(beta), epsilon)
    }
}

/// A LayerNorm module computed by [`layer_norm`]: burn-nn's `LayerNorm`
/// with the same parameter names (`gamma`, `beta`) and a readable `epsilon`.
///
/// ```
/// use burn::prelude::*;
/// use matryoshka_lora::fused_ops::FusedLayerNorm;
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

/// The fused operations, per backend. The defaults are burn's own forward
/// ops and the backward formulas from tensor ops; flex overrides the backward
/// passes with host kernels, autodiff registers each forward as one node.
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait HostFusedBackend: Backend {
    /// `softmax(x)` over the last axis.
    fn fused_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let last = x.shape().num_dims() - 1;
        Self::softmax(x, last)
    }

    /// Gradient of softmax: `y ⊙ (g - Σ_last g ⊙ y)`, `y` the forward output.
    fn fused_softmax_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        softmax_backward_from_ops::<Self>(y, grad)
    }

    /// `LayerNorm(x) = x̂ γ + β` over the last axis.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), epsilon)
    }

    /// Gradients of LayerNorm for upstream `grad`: `(dx, dγ, dβ)`; `dγ`, `dβ`
    /// are empty (shape `[0]`) unless `affine_grads`.
    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
        affine_grads: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        layer_norm_backward_from_ops::<Self>(x, gamma, grad, epsilon, affine_grads)
    }
}

fn softmax_backward_from_ops<B: Backend>(
    y: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let last = y.shape().num_dims() - 1;
    let dot = B::float_sum_dim(B::float_mul(grad.clone(), y.clone()), last);
    B::float_mul(y, B::float_sub(grad, dot))
}

fn layer_norm_backward_from_ops<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    grad: FloatTensor<B>,
    epsilon: f64,
    affine_grads: bool,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let rank = shape.num_dims();
    let last = rank - 1;
    let d = shape[last];
    let mean = B::float_mean_dim(x.clone(), last);
    let centered = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), last);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, epsilon.into())));
    let x_hat = B::float_mul(centered, rstd.clone());
    let row: Vec<usize> = (0..rank).map(|i| if i == last { d } else { 1 }).collect();
    let gamma_row = B::float_reshape(gamma, Shape::from(row));
    let g_hat = B::float_mul(grad.clone(), gamma_row);
    let m1 = B::float_mean_dim(g_hat.clone(), last);
    let m2 = B::float_mean_dim(B::float_mul(g_hat.clone(), x_hat.clone()), last);
    let dx = B::float_mul(
        rstd,
        B::float_sub(B::float_sub(g_hat, m1), B::float_mul(x_hat.clone(), m2)),
    );
    let device = dx.device();
    let (d_gamma, d_beta) = if affine_grads {
        let rows = shape.num_elements() / d.max(1);
        let flat = |t: FloatTensor<B>| B::float_reshape(t, Shape::from(vec![rows, d]));
        let d_gamma = B::float_sum_dim(flat(B::float_mul(grad.clone(), x_hat)), 0);
        let d_beta = B::float_sum_dim(flat(grad), 0);
        (
            B::float_reshape(d_gamma, Shape::from(vec![d])),
            B::float_reshape(d_beta, Shape::from(vec![d])),
        )
    } else {
        let empty = || B::float_zeros(Shape::from(vec![0]), &device, dx.dtype().into());
        (empty(), empty())
    };
    (dx, d_gamma, d_beta)
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)]
impl HostFusedBackend for burn::backend::NdArray {}

#[cfg(feature = "flex")]
mod flex_kernels {
    use super::*;
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::TensorData;
    use rayon::prelude::*;

    /// Rows per parallel task for a row length `len`.
    fn rows_per_task(len: usize) -> usize {
        (host_kernels::CHUNK / len.max(1)).max(1)
    }

    /// The contiguous `f32` values of `t`, or `None` for another dtype.
    fn f32_values(t: &FlexTensor) -> Option<FlexTensor> {
        (t.dtype() == burn::tensor::DType::F32).then(|| t.to_contiguous())
    }

    fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, shape))
    }

    impl HostFusedBackend for Flex {
        fn fused_softmax_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
            let (Some(yc), Some(gc)) = (f32_values(&y), f32_values(&grad)) else {
                return softmax_backward_from_ops::<Flex>(y, grad);
            };
            let shape = y.shape();
            let len = shape[shape.num_dims() - 1].max(1);
            let (ys, gs): (&[f32], &[f32]) = (yc.storage(), gc.storage());
            let mut dx = vec![0.0f32; ys.len()];
            let step = rows_per_task(len) * len;
            dx.par_chunks_mut(step)
                .zip(ys.par_chunks(step).zip(gs.par_chunks(step)))
                .for_each(|(dx, (ys, gs))| {
                    for ((dx, y), g) in dx.chunks_mut(len).zip(ys.chunks(len)).zip(gs.chunks(len)) {
                        let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                        for ((d, y), g) in dx.iter_mut().zip(y).zip(g) {
                            *d = y * (g - dot);
                        }
                    }
                });
            tensor(dx, shape)
        }

        fn fused_layer_norm_backward(
            x: FlexTensor,
            gamma: FlexTensor,
            grad: FlexTensor,
            epsilon: f64,
            affine_grads: bool,
        ) -> (FlexTensor, FlexTensor, FlexTensor) {
            let (Some(xc), Some(gmc), Some(gc)) =
                (f32_values(&x), f32_values(&gamma), f32_values(&grad))
            else {
                return layer_norm_backward_from_ops::<Flex>(x, gamma, grad, epsilon, affine_grads);
            };
            let shape = x.shape();
            let d = shape[shape.num_dims() - 1].max(1);
            let (xs, gamma_s, gs): (&[f32], &[f32], &[f32]) =
                (xc.storage(), gmc.storage(), gc.storage());
            let eps = epsilon as f32;
            let mut dx = vec![0.0f32; xs.len()];
            let step = rows_per_task(d) * d;
            // Each task returns its partial Σ g x̂ and Σ g (empty unless affine_grads).
            let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
                .par_chunks_mut(step)
                .zip(xs.par_chunks(step).zip(gs.par_chunks(step)))
                .map(|(dx, (xs, gs))| {
                    let (mut dgamma, mut dbeta) = if affine_grads {
                        (vec![0.0f32; d], vec![0.0f32; d])
                    } else {
                        (Vec::new(), Vec::new())
                    };
                    for ((dx, x), g) in dx.chunks_mut(d).zip(xs.chunks(d)).zip(gs.chunks(d)) {
                        let inv_d = 1.0 / d as f32;
                        let mean = x.iter().sum::<f32>() * inv_d;
                        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() * inv_d;
                        let rstd = 1.0 / (var + eps).sqrt();
                        let (mut m1, mut m2) = (0.0f32, 0.0f32);
                        for ((v, g), gm) in x.iter().zip(g).zip(gamma_s) {
                            let g_hat = g * gm;
                            m1 += g_hat;
                            m2 += g_hat * (v - mean) * rstd;
                        }
                        m1 *= inv_d;
                        m2 *= inv_d;
                        for (((o, v), g), gm) in dx.iter_mut().zip(x).zip(g).zip(gamma_s) {
                            let x_hat = (v - mean) * rstd;
                            *o = rstd * (g * gm - m1 - x_hat * m2);
                        }
                        if affine_grads {
                            for (((dg, db), v), g) in
                                dgamma.iter_mut().zip(dbeta.iter_mut()).zip(x).zip(g)
                            {
                                *dg += g * (v - mean) * rstd;
                                *db += g;
                            }
                        }
                    }
                    (dgamma, dbeta)
                })
                .collect();
            let (d_gamma, d_beta) = if affine_grads {
                let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
                for (pg, pb) in &partials {
                    for i in 0..d {
                        dgamma[i] += pg[i];
                        dbeta[i] += pb[i];
                    }
                }
                (dgamma, dbeta)
            } else {
                (Vec::new(), Vec::new())
            };
            let n = d_gamma.len();
            (
                tensor(dx, shape),
                tensor(d_gamma, Shape::from(vec![n])),
                tensor(d_beta, Shape::from(vec![n])),
            )
        }
    }
}

impl<B: Backend + HostFusedBackend, C: CheckpointStrategy> HostFusedBackend for Autodiff<B, C> {
    fn fused_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SoftmaxBackward;

        impl<B: Backend + HostFusedBackend> Backward<B, 1> for SoftmaxBackward {
            /// The forward output `y`.
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                if let [Some(parent)] = ops.parents {
                    grads.register::<B>(parent.id, B::fused_softmax_backward(ops.state, grad));
                }
            }
        }

        let (primitive, node) = x.into_parts();
        match SoftmaxBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_softmax(primitive);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_softmax(primitive)),
        }
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LayerNormBackward;

        impl<B: Backend + HostFusedBackend> Backward<B, 3> for LayerNormBackward {
            /// `x`, `γ` and `ε`.
            type State = (FloatTensor<B>, FloatTensor<B>, f64);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let [px, pg, pb] = ops.parents;
                let (x, gamma, epsilon) = ops.state;
                let affine = pg.is_some() || pb.is_some();
                let (dx, d_gamma, d_beta) =
                    B::fused_layer_norm_backward(x, gamma, grad, epsilon, affine);
                if let Some(node) = px {
                    grads.register::<B>(node.id, dx);
                }
                if let Some(node) = pg {
                    grads.register::<B>(node.id, d_gamma);
                }
                if let Some(node) = pb {
                    grads.register::<B>(node.id, d_beta);
                }
            }
        }

        let (x, x_node) = x.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        let (beta, beta_node) = beta.into_parts();
        match LayerNormBackward
            .prepare::<C>([x_node, gamma_node, beta_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_layer_norm(x.clone(), gamma.clone(), beta, epsilon);
                prep.finish((x, gamma, epsilon), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_layer_norm(x, gamma, beta, epsilon)),
        }
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
}
