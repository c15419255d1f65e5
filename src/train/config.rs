//! The training settings of a run, typed, with the RT protocol's values as
//! defaults, and validated in one place.

use super::error::{RunError, Setting};
use super::objective::{HeadMode, TrainMethod};
use super::parallel::ParallelStrategy;
use crate::adapter::{AdapterError, MatryoshkaConfig, RankSet, Scaling};
use crate::backend::{BackendKind, DeviceSpec};
use serde::{Deserialize, Serialize};

/// How a run trains: method, adapter shape, optimiser, schedule, batches,
/// seed and backend. Serialised into `report.json`'s `config` (with the
/// task's own settings beside it) under the keys [`Setting::key`] names.
///
/// The defaults are the RT protocol's (`../shared/PROTOCOL.md`): MatryoshkaLoRA,
/// `R = 32`, `S = {1, 2, 4, 8, 16, 32}`, sqrt scaling, AdamW lr 1e-3 without
/// weight decay, linear decay to 0 without warmup, grad-norm clip 1.0,
/// batch 32, 1 epoch, seed 42, the flex backend.
///
/// ```
/// use matryoshka_lora::train::{Setting, TrainConfig, TrainMethod};
/// let config = TrainConfig::default().with_method(TrainMethod::Lora).with_max_rank(16)?;
/// assert_eq!(config.ranks, [1, 2, 4, 8, 16]);
/// let bad = TrainConfig { lr: 0.0, ..TrainConfig::default() };
/// assert_eq!(bad.validate().unwrap_err().setting(), Some(Setting::Lr));
/// # Ok::<(), matryoshka_lora::train::RunError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Adapter target modules (PEFT's `target_modules`); `None`: the task's
    /// defaults (a report records the list used).
    pub targets: Option<Vec<String>>,
    /// The training method.
    pub method: TrainMethod,
    /// How the task's own trainable modules (a head) train.
    pub head_mode: HeadMode,
    /// Maximum rank `R`.
    pub rank: usize,
    /// Nested ranks `S`, ascending (evaluated, and drawn or summed in training).
    pub ranks: Vec<usize>,
    /// `matryoshka-sampled`: ranks drawn from `S` per step (`1..=|S|`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_samples: Option<usize>,
    /// `matryoshka-sampled`: `R` is always one of the drawn ranks (the rest
    /// drawn from the others); otherwise all are drawn from `S` uniformly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sample_max: bool,
    /// Scaling rule `s(r)`.
    pub scaling: Scaling,
    /// Peak learning rate (AdamW), in `(0, 1]`.
    pub lr: f64,
    /// AdamW decoupled weight decay, `>= 0`.
    pub weight_decay: f32,
    /// Linear warmup steps before the linear decay to 0.
    pub warmup_steps: usize,
    /// Gradient-norm clipping threshold (`None`: off).
    pub grad_clip: Option<f32>,
    /// Training batch size.
    pub batch: usize,
    /// Evaluation batch size.
    pub eval_batch: usize,
    /// Epochs.
    pub epochs: usize,
    /// Seed of the initialisation, the data order and DyLoRA's draws.
    pub seed: u64,
    /// Compute backend.
    pub backend: BackendKind,
    /// Data-parallel devices, all of `backend` (empty: its one default
    /// device). `batch` is the global batch, split evenly over them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceSpec>,
    /// How several devices train together.
    #[serde(default, skip_serializing_if = "is_multi")]
    pub strategy: ParallelStrategy,
    /// Micro-batches accumulated per device per optimiser step (`>= 1`): each
    /// step still sees the gradient of the whole `batch`.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub grad_accum: usize,
}

fn is_multi(strategy: &ParallelStrategy) -> bool {
    *strategy == ParallelStrategy::Multi
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            targets: None,
            method: TrainMethod::Matryoshka,
            head_mode: HeadMode::Joint,
            rank: 32,
            ranks: vec![1, 2, 4, 8, 16, 32],
            rank_samples: None,
            sample_max: false,
            scaling: Scaling::Sqrt,
            lr: 1e-3,
            weight_decay: 0.0,
            warmup_steps: 0,
            grad_clip: Some(1.0),
            batch: 32,
            eval_batch: 128,
            epochs: 1,
            seed: 42,
            backend: BackendKind::Flex,
            devices: Vec::new(),
            strategy: ParallelStrategy::Multi,
            grad_accum: 1,
        }
    }
}

impl TrainConfig {
    /// With `method`; `matryoshka-sampled` draws
    /// [`DEFAULT_RANK_SAMPLES`](Self::DEFAULT_RANK_SAMPLES) ranks per step unless
    /// `rank_samples` says otherwise, and other methods carry no sampling settings.
    pub fn with_method(mut self, method: TrainMethod) -> Self {
        self.method = method;
        if method == TrainMethod::MatryoshkaSampled {
            self.rank_samples.get_or_insert(Self::DEFAULT_RANK_SAMPLES);
        } else {
            self.rank_samples = None;
            self.sample_max = false;
        }
        self
    }

    /// Ranks `matryoshka-sampled` draws per step when not told.
    pub const DEFAULT_RANK_SAMPLES: usize = 2;

    /// Forward and backward passes of the network per training step:
    /// `|S|` for `matryoshka-exact`, `m` (`rank_samples`, at most `|S|`) for
    /// `matryoshka-sampled`, 1 for the one-pass methods. A step's cost
    /// scales with it (BENCHMARKS.md, "Step cost per method").
    ///
    /// ```
    /// use matryoshka_lora::train::{TrainConfig, TrainMethod};
    /// let c = TrainConfig::default().with_max_rank(32).unwrap(); // S = {1, 2, ..., 32}
    /// assert_eq!(c.clone().with_method(TrainMethod::MatryoshkaExact).passes_per_step(), 6);
    /// assert_eq!(c.clone().with_method(TrainMethod::MatryoshkaSampled).passes_per_step(), 2);
    /// assert_eq!(c.with_method(TrainMethod::Matryoshka).passes_per_step(), 1);
    /// ```
    pub fn passes_per_step(&self) -> usize {
        match self.method {
            TrainMethod::MatryoshkaExact => self.ranks.len().max(1),
            TrainMethod::MatryoshkaSampled => self
                .rank_samples
                .unwrap_or(Self::DEFAULT_RANK_SAMPLES)
                .clamp(1, self.ranks.len().max(1)),
            _ => 1,
        }
    }

    /// With maximum rank `R` and `S` the powers of two up to `R` (the
    /// reference's rank set). Errors on `R = 0`.
    pub fn with_max_rank(mut self, rank: usize) -> Result<Self, RunError> {
        let set = RankSet::powers_of_two(rank).map_err(|e| RunError::invalid(Setting::Rank, e))?;
        self.rank = rank;
        self.ranks = set.ranks().to_vec();
        Ok(self)
    }

    /// The validated `(R, S)`.
    pub fn rank_set(&self) -> Result<RankSet, RunError> {
        RankSet::new(self.rank, self.ranks.clone()).map_err(|e| {
            let setting = match e {
                AdapterError::ZeroMaxRank => Setting::Rank,
                _ => Setting::Ranks,
            };
            RunError::invalid(setting, e)
        })
    }

    /// The adapter settings this configuration defines (validated).
    pub fn adapter_config(&self) -> Result<MatryoshkaConfig, RunError> {
        let set = self.rank_set()?;
        let config = MatryoshkaConfig::new()
            .with_max_rank(set.max_rank())
            .with_ranks(Some(set.ranks().to_vec()))
            .with_scaling(self.scaling)
            .with_method(self.method.adapter_method());
        config
            .train_p()
            .map_err(|e| RunError::invalid(Setting::Scaling, e))?;
        Ok(config)
    }

    /// Checks every setting that can be checked without data, weights or a
    /// device; the error names the setting at fault.
    pub fn validate(&self) -> Result<(), RunError> {
        self.adapter_config()?;
        match (self.method, self.rank_samples) {
            (TrainMethod::MatryoshkaSampled, None) => {
                return Err(RunError::invalid(
                    Setting::RankSamples,
                    "matryoshka-sampled needs the number of ranks drawn per step",
                ));
            }
            (TrainMethod::MatryoshkaSampled, Some(m)) if m == 0 || m > self.ranks.len() => {
                return Err(RunError::invalid(
                    Setting::RankSamples,
                    format!(
                        "must be in 1..={} (the ranks of S), got {m}",
                        self.ranks.len()
                    ),
                ));
            }
            _ => {}
        }
        for (setting, value) in [
            (Setting::Batch, self.batch),
            (Setting::EvalBatch, self.eval_batch),
            (Setting::Epochs, self.epochs),
        ] {
            if value == 0 {
                return Err(RunError::invalid(setting, "must be at least 1, got 0"));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 1.0) {
            return Err(RunError::invalid(
                Setting::Lr,
                format!("must be in (0, 1], got {}", self.lr),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(RunError::invalid(
                Setting::WeightDecay,
                format!("must be a finite number >= 0, got {}", self.weight_decay),
            ));
        }
        if let Some(clip) = self.grad_clip
            && !(clip.is_finite() && clip > 0.0)
        {
            return Err(RunError::invalid(
                Setting::GradClip,
                format!("must be a finite number > 0 (or off), got {clip}"),
            ));
        }
        if let Some(targets) = &self.targets
            && targets.iter().all(|t| t.trim().is_empty())
        {
            return Err(RunError::invalid(
                Setting::Targets,
                "name at least one module (or leave unset for the task's defaults)",
            ));
        }
        if !self.backend.is_compiled() {
            return Err(RunError::invalid(
                Setting::Backend,
                AdapterError::BackendUnavailable {
                    backend: self.backend.to_string(),
                    feature: self.backend.feature(),
                    compiled: BackendKind::compiled()
                        .iter()
                        .map(|b| b.to_string())
                        .collect(),
                },
            ));
        }
        self.validate_parallel()
    }

    /// Data-parallel workers: the devices listed, or 1.
    pub fn workers(&self) -> usize {
        self.devices.len().max(1)
    }

    /// The device, batch and accumulation settings checked together.
    fn validate_parallel(&self) -> Result<(), RunError> {
        if self.grad_accum == 0 {
            return Err(RunError::invalid(
                Setting::GradAccum,
                "must be at least 1, got 0",
            ));
        }
        if !self.devices.is_empty() {
            DeviceSpec::check_list(&self.devices)
                .map_err(|e| RunError::invalid(Setting::Devices, e))?;
            if let Some(other) = self.devices.iter().find(|d| d.backend != self.backend) {
                return Err(RunError::invalid(
                    Setting::Devices,
                    format!(
                        "{other} is not a device of the run's backend, {}",
                        self.backend
                    ),
                ));
            }
        }
        let (n, a) = (self.workers(), self.grad_accum);
        if !self.batch.is_multiple_of(n * a) {
            let (setting, why) = if n > 1 {
                (
                    Setting::Devices,
                    format!("{n} devices x {a} accumulation step(s)"),
                )
            } else {
                (Setting::GradAccum, format!("{a} accumulation steps"))
            };
            return Err(RunError::invalid(
                setting,
                format!(
                    "the batch of {} does not split evenly over {why}: use a batch that is a multiple of {}",
                    self.batch,
                    n * a
                ),
            ));
        }
        if self.strategy == ParallelStrategy::Ddp && n > 1 && self.backend != BackendKind::Cuda {
            return Err(RunError::invalid(
                Setting::Strategy,
                format!(
                    "ddp needs collective operations, which burn 0.22 implements for CUDA only (NCCL), not {}: use multi (gradients summed on the first device)",
                    self.backend
                ),
            ));
        }
        Ok(())
    }

    /// Optimiser steps per epoch for `train_examples` examples.
    pub fn steps_per_epoch(&self, train_examples: usize) -> usize {
        train_examples.div_ceil(self.batch.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_rt_protocol_and_errors_name_the_setting() {
        let c = TrainConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.rank_set().unwrap(), RankSet::powers_of_two(32).unwrap());
        let cases: Vec<(TrainConfig, Setting)> = vec![
            (
                TrainConfig {
                    rank: 0,
                    ..c.clone()
                },
                Setting::Rank,
            ),
            (
                TrainConfig {
                    ranks: vec![1, 64],
                    ..c.clone()
                },
                Setting::Ranks,
            ),
            (
                TrainConfig {
                    ranks: vec![4, 2],
                    ..c.clone()
                },
                Setting::Ranks,
            ),
            (
                TrainConfig {
                    ranks: vec![],
                    ..c.clone()
                },
                Setting::Ranks,
            ),
            (
                TrainConfig {
                    scaling: Scaling::Alpha(-1.0),
                    ..c.clone()
                },
                Setting::Scaling,
            ),
            (
                TrainConfig {
                    batch: 0,
                    ..c.clone()
                },
                Setting::Batch,
            ),
            (
                TrainConfig {
                    eval_batch: 0,
                    ..c.clone()
                },
                Setting::EvalBatch,
            ),
            (
                TrainConfig {
                    epochs: 0,
                    ..c.clone()
                },
                Setting::Epochs,
            ),
            (
                TrainConfig {
                    lr: f64::NAN,
                    ..c.clone()
                },
                Setting::Lr,
            ),
            (
                TrainConfig {
                    lr: 2.0,
                    ..c.clone()
                },
                Setting::Lr,
            ),
            (
                TrainConfig {
                    weight_decay: -1.0,
                    ..c.clone()
                },
                Setting::WeightDecay,
            ),
            (
                TrainConfig {
                    grad_clip: Some(f32::INFINITY),
                    ..c.clone()
                },
                Setting::GradClip,
            ),
            (
                TrainConfig {
                    targets: Some(vec![" ".into()]),
                    ..c.clone()
                },
                Setting::Targets,
            ),
        ];
        for (config, setting) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.setting(), Some(setting), "{err}");
            assert!(!err.reason().contains("--"), "a flag name in `{err}`");
        }
        for b in BackendKind::ALL {
            let config = TrainConfig {
                backend: b,
                ..c.clone()
            };
            assert_eq!(config.validate().is_ok(), b.is_compiled());
        }
    }

    #[test]
    fn serialises_to_the_report_strings() {
        let c = TrainConfig {
            method: TrainMethod::DyloraOriginal,
            scaling: Scaling::Alpha(16.0),
            ..TrainConfig::default()
        };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["method"], "dylora-original");
        assert_eq!(json["head_mode"], "joint");
        assert_eq!(json["scaling"], "alpha:16");
        assert_eq!(json["backend"], "flex");
        assert_eq!(serde_json::from_value::<TrainConfig>(json).unwrap(), c);
    }
}
