//! [`HostFusedBackend`]: the burn backend extension behind [`super`]'s
//! fused softmax and LayerNorm, its default (tensor-op) bodies, and its
//! autodiff implementation (one node per call, hand-written backward).
#![allow(deprecated)] // burn 0.22 deprecates NdArray, which this crate still supports.

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IndexingUpdateOp, IntTensor};
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

    /// Mean cross-entropy of `logits` `[N, V]` against class ids `targets`
    /// `[N]`: `mean_n(lse_n - x[n, t_n])`, `lse_n = log Σ_v exp x[n, v]`.
    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::fused_cross_entropy_forward(logits, targets).0
    }

    /// The loss `[1]` and the row log-sum-exps `lse` `[N]` (kept for backward).
    fn fused_cross_entropy_forward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        cross_entropy_forward_from_ops::<Self>(logits, targets)
    }

    /// `dlogits = (softmax(x) - onehot(t)) g / N` for the loss's upstream `g` `[1]`.
    fn fused_cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        cross_entropy_backward_from_ops::<Self>(logits, targets, lse, grad)
    }

    /// SwiGLU `silu(g) ⊙ u`, `silu(g) = g σ(g)`.
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let silu = Self::float_mul(gate.clone(), Self::sigmoid(gate));
        Self::float_mul(silu, up)
    }

    /// Gradients of SwiGLU for upstream `grad`: `(dg, du)` =
    /// `(grad ⊙ u ⊙ σ(g)(1 + g(1 - σ(g))), grad ⊙ silu(g))`.
    fn fused_swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        swiglu_backward_from_ops::<Self>(gate, up, grad)
    }
}

pub(super) fn swiglu_backward_from_ops<B: Backend>(
    gate: FloatTensor<B>,
    up: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let sig = B::sigmoid(gate.clone());
    let silu = B::float_mul(gate.clone(), sig.clone());
    let one_minus = B::float_add_scalar(B::float_neg(sig.clone()), 1.0f32.into());
    let slope = B::float_mul(
        sig,
        B::float_add_scalar(B::float_mul(gate, one_minus), 1.0f32.into()),
    );
    let d_gate = B::float_mul(B::float_mul(grad.clone(), up), slope);
    let d_up = B::float_mul(grad, silu);
    (d_gate, d_up)
}

pub(super) fn cross_entropy_forward_from_ops<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let n = logits.shape()[0];
    let max = B::float_max_dim(logits.clone(), 1);
    let sum = B::float_sum_dim(B::float_exp(B::float_sub(logits.clone(), max.clone())), 1);
    let lse = B::float_add(B::float_log(sum), max);
    let idx = B::int_reshape(targets, Shape::from(vec![n, 1]));
    let picked = B::float_gather(1, logits, idx);
    let loss = B::float_mean(B::float_sub(lse.clone(), picked));
    (loss, B::float_reshape(lse, Shape::from(vec![n])))
}

pub(super) fn cross_entropy_backward_from_ops<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
    lse: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let n = logits.shape()[0];
    let device = logits.device();
    let dtype = logits.dtype();
    let probs = B::float_exp(B::float_sub(
        logits,
        B::float_reshape(lse, Shape::from(vec![n, 1])),
    ));
    let idx = B::int_reshape(targets, Shape::from(vec![n, 1]));
    let minus_one = B::float_neg(B::float_ones(
        Shape::from(vec![n, 1]),
        &device,
        dtype.into(),
    ));
    let d = B::float_scatter(1, probs, idx, minus_one, IndexingUpdateOp::Add);
    let g = B::float_mul_scalar(
        B::float_reshape(grad, Shape::from(vec![1, 1])),
        (1.0f32 / n.max(1) as f32).into(),
    );
    B::float_mul(d, g)
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

    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct CrossEntropyBackward;

        impl<B: Backend + HostFusedBackend> Backward<B, 1> for CrossEntropyBackward {
            /// `logits`, `targets` and the row log-sum-exps.
            type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                if let [Some(parent)] = ops.parents {
                    let (logits, targets, lse) = ops.state;
                    grads.register::<B>(
                        parent.id,
                        B::fused_cross_entropy_backward(logits, targets, lse, grad),
                    );
                }
            }
        }

        let (x, node) = logits.into_parts();
        match CrossEntropyBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (loss, lse) = B::fused_cross_entropy_forward(x.clone(), targets.clone());
                prep.finish((x, targets, lse), loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_cross_entropy_forward(x, targets).0),
        }
    }

    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SwigluBackward;

        impl<B: Backend + HostFusedBackend> Backward<B, 2> for SwigluBackward {
            /// `gate` and `up`.
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let [pg, pu] = ops.parents;
                let (gate, up) = ops.state;
                let (d_gate, d_up) = B::fused_swiglu_backward(gate, up, grad);
                if let Some(node) = pg {
                    grads.register::<B>(node.id, d_gate);
                }
                if let Some(node) = pu {
                    grads.register::<B>(node.id, d_up);
                }
            }
        }

        let (gate, gate_node) = gate.into_parts();
        let (up, up_node) = up.into_parts();
        match SwigluBackward
            .prepare::<C>([gate_node, up_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_swiglu(gate.clone(), up.clone());
                prep.finish((gate, up), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_swiglu(gate, up)),
        }
    }
}
