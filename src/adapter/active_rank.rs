//! Switching every adapter of a model between its training `P` and a rank `k`.

use super::error::{AdapterError, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use burn::tensor::{Shape, s};

/// The container name burn's module traversal reports for adapter fields.
const ADAPTER_CONTAINER: &str = "Struct:MatryoshkaAdapter";

/// Which diagonal every adapter of a model uses in its forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActiveRank {
    /// The method's training `P` (MatryoshkaLoRA's sum of nested adapters,
    /// LoRA's `s(R)`, ...).
    #[default]
    Train,
    /// The nested rank-`k` adapter: `s(k)` on the first `k` components, the rest
    /// not computed. Used for evaluation at rank `k` and for DyLoRA's drawn rank.
    Rank(usize),
    /// The original DyLoRA step at rank `b`: the rank-`b` adapter, with
    /// components `1..b` detached so that only component `b` learns.
    Component(usize),
}

impl ActiveRank {
    /// The rank whose adapter is active, if not the training `P`.
    pub fn rank(&self) -> Option<usize> {
        match self {
            Self::Train => None,
            Self::Rank(k) | Self::Component(k) => Some(*k),
        }
    }
}

/// Model-wide adapter controls for any burn module containing
/// [`MatryoshkaAdapter`](crate::MatryoshkaAdapter)s: as drop-in
/// [`MatryoshkaLinear`](crate::MatryoshkaLinear) layers or attached to plain
/// `Linear` layers by [`adapt_linears`](crate::adapt_linears).
///
/// ```
/// use burn::prelude::*;
/// use matryoshka_lora::{ActiveRank, AdaptedModule, MatryoshkaConfig, MatryoshkaLinearConfig};
///
/// let device = matryoshka_lora::cpu_device(); // or Device::default(): any enabled backend
/// let layer = MatryoshkaLinearConfig::new(8, 8)
///     .with_adapter(MatryoshkaConfig::new().with_max_rank(4))
///     .init(&device)?;
/// assert_eq!(layer.adapter_count(), 1);
/// let at_rank_2 = layer.with_active_rank(ActiveRank::Rank(2))?;
/// assert_eq!(at_rank_2.adapter.active_components(), 2);
/// assert!(at_rank_2.clone().with_active_rank(ActiveRank::Rank(9)).is_err());
/// # Ok::<(), matryoshka_lora::AdapterError>(())
/// ```
pub trait AdaptedModule: Module + Sized {
    /// Returns the module with every adapter's active diagonal set to `rank`.
    ///
    /// Cheap: parameters are shared, only the small `p` vectors change; the
    /// trainable factors keep their ids, so gradients still reach them.
    /// Errors (and returns nothing) if a rank is outside `1..=R` of some adapter.
    fn with_active_rank(self, rank: ActiveRank) -> Result<Self> {
        // Validate first, so a failure never leaves a half-switched module.
        let mut check = AdapterScan::default();
        self.visit(&mut check);
        if let Some(k) = rank.rank() {
            for (path, max_rank) in &check.adapters {
                if k == 0 || k > *max_rank {
                    return Err(AdapterError::RankSwitch {
                        path: path.clone(),
                        reason: AdapterError::UnusableRank {
                            rank: k,
                            max_rank: *max_rank,
                        }
                        .to_string(),
                    });
                }
            }
        }
        let mut mapper = RankSwitch {
            rank,
            path: Vec::new(),
            p_train: None,
            rank_scale: None,
        };
        Ok(self.map(&mut mapper))
    }

    /// The number of adapters in the module.
    fn adapter_count(&self) -> usize {
        self.adapter_paths().len()
    }

    /// The module path of every adapter and its maximum rank `R`.
    fn adapter_paths(&self) -> Vec<(String, usize)> {
        let mut scan = AdapterScan::default();
        self.visit(&mut scan);
        scan.adapters
    }

    /// The module path of every adapter and the [`ParamId`] of its `A`.
    fn adapter_ids(&self) -> Vec<(String, ParamId)> {
        let mut scan = AdapterScan::default();
        self.visit(&mut scan);
        scan.ids
    }
}

impl<M: Module> AdaptedModule for M {}

/// Finds adapters (by their `rank_scale` constant) and their `R`.
#[derive(Default)]
struct AdapterScan {
    path: Vec<(String, String)>,
    adapters: Vec<(String, usize)>,
    ids: Vec<(String, ParamId)>,
}

impl AdapterScan {
    fn adapter_path(path: &[(String, String)]) -> String {
        path[..path.len().saturating_sub(1)]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }
}

impl ModuleVisitor for AdapterScan {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some((field, container)) = self.path.last()
            && container == ADAPTER_CONTAINER
        {
            match field.as_str() {
                "rank_scale" => {
                    let max_rank = param.shape().num_elements();
                    self.adapters
                        .push((Self::adapter_path(&self.path), max_rank));
                }
                "lora_a" => self.ids.push((Self::adapter_path(&self.path), param.id)),
                _ => {}
            }
        }
    }
}

/// Rewrites each adapter's active `p` from its `p_train` / `rank_scale`
/// (which precede `p` in field order).
struct RankSwitch {
    rank: ActiveRank,
    path: Vec<(String, String)>,
    p_train: Option<Tensor<1>>,
    rank_scale: Option<Tensor<1>>,
}

fn flat<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    let n = t.shape().num_elements();
    t.reshape([n])
}

impl ModuleMapper for RankSwitch {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((field, container)) = self.path.last() else {
            return param;
        };
        if container != ADAPTER_CONTAINER {
            return param;
        }
        match field.as_str() {
            "p_train" => {
                self.p_train = Some(flat(param.val()));
                param
            }
            "rank_scale" => {
                self.rank_scale = Some(flat(param.val()));
                param
            }
            "p" => {
                let new_p = match self.rank.rank() {
                    None => self.p_train.take(),
                    // k was validated against R before mapping.
                    Some(k) => self
                        .rank_scale
                        .take()
                        .map(|scale| scale.slice(s![k - 1..k]).repeat_dim(0, k)),
                };
                match new_p {
                    Some(p) => {
                        let n = p.shape().num_elements();
                        param.map(|_| p.reshape(Shape::new([n])))
                    }
                    None => param,
                }
            }
            "grad_mask" => {
                let device = param.val().device();
                let mask = match self.rank {
                    ActiveRank::Component(b) if b > 1 => {
                        let mut m = vec![0f32; b];
                        m[b - 1] = 1.0;
                        Tensor::<1>::from_data(TensorData::new(m, [b]), &device)
                    }
                    _ => Tensor::<1>::ones([1], &device),
                };
                let n = mask.shape().num_elements();
                param.map(|_| mask.reshape(Shape::new([n])))
            }
            _ => param,
        }
    }
}
