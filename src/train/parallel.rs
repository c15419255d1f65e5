//! Data-parallel training through burn-train's execution strategies, and
//! gradient accumulation.
//!
//! A run on `n` devices with global batch `B` and `a` accumulation steps
//! cuts each optimiser step's batch into `n * a` pieces of `B / (n a)` rows
//! ([`BatchSplit`](super::BatchSplit)); every piece's loss is weighted by its
//! share of the step's loss terms ([`TrainShard`](super::TrainShard)), and
//! burn-train sums the pieces' gradients (on the first device for `multi`,
//! by an all-reduce for `ddp`, over micro-batches for accumulation), so an
//! optimiser step sees the gradient of the whole batch of `B`, the same as
//! one device with batch `B`, up to float reassociation. DyLoRA's rank and
//! `matryoshka-sampled`'s ranks are drawn once per optimiser step and shared
//! by every piece. Validation and the per-rank evaluation run once, on the
//! first device.
//!
//! A [`Runner`](super::Runner) trains data-parallel when its
//! [`TrainConfig`] lists devices (it opens them once):
//!
//! ```
//! use matryoshka_lora::DeviceSpec;
//! use matryoshka_lora::train::{ParallelStrategy, Setting, TrainConfig};
//! // two workers on the CPU, 2 micro-batches each: pieces of 8 rows of a batch of 32
//! let config = TrainConfig {
//!     devices: DeviceSpec::parse_list("flex,flex")?,
//!     strategy: ParallelStrategy::Multi,
//!     grad_accum: 2,
//!     batch: 32,
//!     ..TrainConfig::default()
//! };
//! config.validate()?;
//! let uneven = TrainConfig { batch: 30, ..config.clone() };
//! assert_eq!(uneven.validate().unwrap_err().setting(), Some(Setting::Devices));
//! // ddp needs collective operations: CUDA only in burn 0.22
//! let ddp = TrainConfig { strategy: ParallelStrategy::Ddp, ..config };
//! assert_eq!(ddp.validate().unwrap_err().setting(), Some(Setting::Strategy));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::config::TrainConfig;
use crate::backend::DeviceSpec;
use burn::prelude::*;
use burn::tensor::distributed::{DistributedConfig, ReduceOperation};
use burn::train::{ExecutionStrategy, MultiDeviceOptim};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How several devices train together (`--strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParallelStrategy {
    /// burn-train's `ExecutionStrategy::multi` with the optimiser on the
    /// first device: each worker computes its pieces' gradients, which are
    /// moved to the first device, summed, and applied there. Runs on every
    /// backend (two CPU workers included).
    #[default]
    Multi,
    /// burn-train's `ExecutionStrategy::ddp`: a model copy per device,
    /// gradients summed by an all-reduce after each backward pass. burn 0.22
    /// implements the all-reduce for CUDA only (NCCL); flex, ndarray and WGPU
    /// have no collective operations.
    Ddp,
}

impl ParallelStrategy {
    /// The strategy's name (`multi`, `ddp`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Multi => "multi",
            Self::Ddp => "ddp",
        }
    }

    /// burn-train's execution strategy over `devices` (at least two).
    pub fn execution(&self, devices: Vec<Device>) -> ExecutionStrategy {
        match self {
            Self::Multi => ExecutionStrategy::multi(devices, MultiDeviceOptim::OptimMainDevice),
            // Sum: every piece's loss already carries its share of the step.
            Self::Ddp => ExecutionStrategy::ddp(
                devices,
                DistributedConfig {
                    all_reduce_op: ReduceOperation::Sum,
                },
            ),
        }
    }
}

impl fmt::Display for ParallelStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ParallelStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "multi" => Ok(Self::Multi),
            "ddp" => Ok(Self::Ddp),
            other => Err(format!("unknown strategy `{other}`: use multi or ddp")),
        }
    }
}

/// The devices of a data-parallel run (opened, non-autodiff) and how they
/// train: what [`fit`](super::fit) hands burn-train.
#[derive(Debug, Clone, PartialEq)]
pub struct DataParallel {
    /// The devices, the first one the main device (optimiser, validation).
    pub devices: Vec<Device>,
    /// How they train together.
    pub strategy: ParallelStrategy,
    /// Micro-batches accumulated per device per optimiser step.
    pub grad_accum: usize,
}

impl DataParallel {
    /// Whether more than one device trains.
    pub fn is_multi_device(&self) -> bool {
        self.devices.len() > 1
    }

    /// Batches trained per optimiser step: devices x accumulated micro-batches.
    pub fn pieces_per_step(&self) -> usize {
        self.devices.len().max(1) * self.grad_accum.max(1)
    }
}

/// Where a run trains besides its backend, as [`TrainConfig`] holds it: the
/// data-parallel devices, their strategy and gradient accumulation.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// Data-parallel devices (empty: the backend's default device).
    pub devices: Vec<DeviceSpec>,
    /// How several devices train together.
    pub strategy: ParallelStrategy,
    /// Micro-batches accumulated per device per optimiser step.
    pub grad_accum: usize,
}

impl Default for Execution {
    fn default() -> Self {
        Self {
            devices: Vec::new(),
            strategy: ParallelStrategy::Multi,
            grad_accum: 1,
        }
    }
}

impl Execution {
    /// The execution settings of `config`.
    pub fn of(config: &TrainConfig) -> Self {
        Self {
            devices: config.devices.clone(),
            strategy: config.strategy,
            grad_accum: config.grad_accum,
        }
    }

    /// `config` with these settings (its backend the devices', when listed).
    pub fn apply(&self, mut config: TrainConfig) -> TrainConfig {
        if let Some(first) = self.devices.first() {
            config.backend = first.backend;
        }
        config.devices = self.devices.clone();
        config.strategy = self.strategy;
        config.grad_accum = self.grad_accum;
        config
    }
}
