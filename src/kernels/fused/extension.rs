//! [`HostFusedBackend`]: the burn backend extension behind [`super`]'s
//! fused softmax and LayerNorm, its default (tensor-op) bodies, and its
//! autodiff implementation (one node per call, hand-written backward).
#![allow(deprecated)] // burn 0.22 deprecates NdArray, which this crate still supports.

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, backend_extension};
use burn::prelude::*;

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

pub(super) fn softmax_backward_from_ops<B: Backend>(
    y: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let last = y.shape().num_dims() - 1;
    let dot = B::float_sum_dim(B::float_mul(grad.clone(), y.clone()), last);
    B::float_mul(y, B::float_sub(grad, dot))
}

pub(super) fn layer_norm_backward_from_ops<B: Backend>(
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
