//! `MatryoshkaAdapter`: the trainable factors `A`, `B` and the fixed diagonal `P`.

use super::error::{AdapterError, Result};
use super::method::AdapterMethod;
use super::rank_set::RankSet;
use super::scaling::Scaling;
use burn::config::Config;
use burn::module::{Module, Param, Reparameterization};
use burn::prelude::*;
use burn::tensor::module::linear;
use burn::tensor::{Distribution, Shape, s};
use serde::{Deserialize, Serialize};

/// How the `A` factor is initialised (`B` always starts at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AdapterInit {
    /// The reference code: `A ~ U(-1/sqrt(R), 1/sqrt(R))` (kaiming-uniform with fan-in `R`).
    #[default]
    Reference,
    /// PEFT's layout: `A ~ U(-1/sqrt(d_in), 1/sqrt(d_in))`.
    Peft,
}

impl AdapterInit {
    /// The half-width of the uniform distribution for `A`.
    pub fn bound(&self, d_input: usize, max_rank: usize) -> f64 {
        match self {
            Self::Reference => 1.0 / (max_rank as f64).sqrt(),
            Self::Peft => 1.0 / (d_input as f64).sqrt(),
        }
    }
}

/// Adapter hyper-parameters, independent of any layer shape.
///
/// ```
/// use matryoshka_lora::{AdapterMethod, MatryoshkaConfig, Scaling};
/// let config = MatryoshkaConfig::new()
///     .with_max_rank(16)
///     .with_method(AdapterMethod::Lora)
///     .with_scaling(Scaling::Alpha(32.0));
/// assert_eq!(config.rank_set().unwrap().ranks(), &[1, 2, 4, 8, 16]);
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct MatryoshkaConfig {
    /// Maximum rank `R`.
    #[config(default = 32)]
    pub max_rank: usize,
    /// Nested ranks `S`, ascending; `None` means every power of two up to `R`.
    #[config(default = "None")]
    pub ranks: Option<Vec<usize>>,
    /// The scaling rule `s(r)`.
    #[config(default = "Scaling::Sqrt")]
    pub scaling: Scaling,
    /// The training method (defines `P`).
    #[config(default = "AdapterMethod::matryoshka()")]
    pub method: AdapterMethod,
    /// Initialisation of `A`.
    #[config(default = "AdapterInit::Reference")]
    pub init: AdapterInit,
}

impl MatryoshkaConfig {
    /// The validated `(R, S)`.
    pub fn rank_set(&self) -> Result<RankSet> {
        match &self.ranks {
            Some(ranks) => RankSet::new(self.max_rank, ranks.clone()),
            None => RankSet::powers_of_two(self.max_rank),
        }
    }

    /// The training `P` this configuration defines (length `R`).
    pub fn train_p(&self) -> Result<Vec<f64>> {
        self.method.initial_p(&self.rank_set()?, self.scaling)
    }

    /// Builds an adapter for a `[d_input, d_output]` weight.
    pub fn init_adapter(
        &self,
        d_input: usize,
        d_output: usize,
        device: &Device,
    ) -> Result<MatryoshkaAdapter> {
        for (what, v) in [("d_input", d_input), ("d_output", d_output)] {
            if v == 0 {
                return Err(AdapterError::ShapeMismatch {
                    what: format!("{what} must be at least 1"),
                    expected: vec![1],
                    got: vec![0],
                });
            }
        }
        let set = self.rank_set()?;
        let p = self.train_p()?;
        let r = set.max_rank();
        let bound = self.init.bound(d_input, r);
        let a = Tensor::<2>::random([d_input, r], Distribution::Uniform(-bound, bound), device);
        let b = Tensor::<2>::zeros([r, d_output], device);
        let rank_scale: Vec<f64> = (1..=r).map(|k| self.scaling.factor(k)).collect();
        Ok(MatryoshkaAdapter {
            lora_a: Param::from_tensor(a),
            lora_b: Param::from_tensor(b),
            p_train: constant(&p, device),
            rank_scale: constant(&rank_scale, device),
            p: constant(&p, device),
            grad_mask: constant(&[1.0], device),
            spec: AdapterSpec {
                ranks: set,
                scaling: self.scaling,
                method: self.method.clone(),
            },
        })
    }
}

/// A frozen 1-D parameter: saved with the module, never optimised.
pub(crate) fn constant(values: &[f64], device: &Device) -> Param<Tensor<1>> {
    let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let n = data.len();
    Param::from_tensor(Tensor::from_data(TensorData::new(data, [n]), device))
        .set_require_grad(false)
}

/// What an adapter was configured with (host-side, not saved in records).
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSpec {
    /// `(R, S)`.
    pub ranks: RankSet,
    /// The scaling rule.
    pub scaling: Scaling,
    /// The training method.
    pub method: AdapterMethod,
}

/// The low-rank adapter of one linear layer: `delta_y = x (A[:, :r] diag(p)) B[:r]`.
///
/// * `lora_a`: `[d_in, R]`, trainable.
/// * `lora_b`: `[R, d_out]`, trainable, initialised to 0.
/// * `p_train`: `[R]`, the method's training `P` (a frozen constant, saved).
/// * `rank_scale`: `[R]`, `s(1), ..., s(R)` (a frozen constant, saved).
/// * `p`: `[r]`, the *active* diagonal: `p_train` while training, `s(k)` repeated
///   `k` times when rank `k` is active (see
///   [`AdaptedModule::with_active_rank`](crate::AdaptedModule::with_active_rank)).
///   Its length is the number of components the forward pass computes.
/// * `grad_mask`: `[1]` (no masking) or `[r]`: which active components receive
///   gradients (original DyLoRA: only component `b`; values are unchanged).
///
/// It is also a burn [`Reparameterization`], so it can be attached to the
/// `Linear` layers of any burn model (see [`adapt_linears`](crate::adapt_linears)).
#[derive(Module, Debug)]
pub struct MatryoshkaAdapter {
    /// `A`: `[d_in, R]`.
    pub lora_a: Param<Tensor<2>>,
    /// `B`: `[R, d_out]`.
    pub lora_b: Param<Tensor<2>>,
    /// The method's training `P`: `[R]`.
    pub p_train: Param<Tensor<1>>,
    /// `s(r)` for `r = 1..=R`: `[R]`.
    pub rank_scale: Param<Tensor<1>>,
    /// The active diagonal: `[r]`, `r <= R`.
    pub p: Param<Tensor<1>>,
    /// `[1]` (all components learn) or `[r]` (1 = learns, 0 = detached).
    pub grad_mask: Param<Tensor<1>>,
    /// Host-side configuration.
    #[module(skip)]
    pub spec: AdapterSpec,
}

impl MatryoshkaAdapter {
    /// Maximum rank `R`.
    pub fn max_rank(&self) -> usize {
        self.spec.ranks.max_rank()
    }

    /// Input features `d_in`.
    pub fn d_input(&self) -> usize {
        self.lora_a.shape().dims::<2>()[0]
    }

    /// Output features `d_out`.
    pub fn d_output(&self) -> usize {
        self.lora_b.shape().dims::<2>()[1]
    }

    /// The number of components the active diagonal computes (`R` while training,
    /// `k` at rank `k`).
    pub fn active_components(&self) -> usize {
        self.p.shape().dims::<1>()[0]
    }

    /// `(A[:, :r] diag(p), B[:r])` with `r` the active length and the gradient
    /// mask applied (values unchanged; masked components get no gradient).
    fn active_factors(&self) -> (Tensor<2>, Tensor<2>) {
        let p = self.p.val();
        let r = p.dims()[0];
        let mut a = self.lora_a.val().slice(s![.., 0..r]);
        let mut b = self.lora_b.val().slice(s![0..r, ..]);
        let mask = self.grad_mask.val();
        if mask.dims()[0] == r && r > 1 {
            // a.detach() + (a - a.detach()) * m: the value of a, gradient m * dL/da.
            let keep =
                |t: Tensor<2>, m: Tensor<2>| t.clone().detach() + (t.clone() - t.detach()) * m;
            a = keep(a, mask.clone().unsqueeze_dim::<2>(0));
            b = keep(b, mask.unsqueeze_dim::<2>(1));
        }
        (a * p.unsqueeze_dim::<2>(0), b)
    }

    /// The active adapter output: `x (A[:, :r] diag(p)) B[:r]`.
    ///
    /// Computed on the activation side (two thin matmuls), never forming a
    /// `[d_in, d_out]` matrix. `x`: `[..., d_in]` -> `[..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let (a, b) = self.active_factors();
        linear(linear(x, a, None), b, None)
    }

    /// The rank-`k` adapter output, `s(k) x A[:, :k] B[:k]`, whatever is active.
    /// `x`: `[..., d_in]` -> `[..., d_out]`. Errors unless `1 <= k <= R`.
    pub fn forward_at_rank<const D: usize>(&self, x: Tensor<D>, k: usize) -> Result<Tensor<D>> {
        self.spec.ranks.check_rank(k)?;
        let a = self.lora_a.val().slice(s![.., 0..k]) * self.spec.scaling.factor(k);
        let b = self.lora_b.val().slice(s![0..k, ..]);
        Ok(linear(linear(x, a, None), b, None))
    }

    /// The dense rank-`k` update `s(k) A[:, :k] B[:k]`: `[d_in, d_out]` (for merging).
    pub fn delta_at_rank(&self, k: usize) -> Result<Tensor<2>> {
        self.spec.ranks.check_rank(k)?;
        let a = self.lora_a.val().slice(s![.., 0..k]) * self.spec.scaling.factor(k);
        Ok(a.matmul(self.lora_b.val().slice(s![0..k, ..])))
    }

    /// The dense active update `A[:, :r] diag(p) B[:r]`: `[d_in, d_out]`.
    pub fn delta(&self) -> Tensor<2> {
        let (a, b) = self.active_factors();
        a.matmul(b)
    }
}

impl Reparameterization for MatryoshkaAdapter {
    const NAME: &'static str = "matryoshka";

    /// Weight-side form for adapters attached to an existing `Linear`:
    /// `W + A[:, :r] diag(p) B[:r]`.
    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let shape: Shape = base.shape();
        base + self.delta().reshape(shape)
    }
}
