//! The RT training-step benchmark: the protocol's settings, `warmup + steps`
//! training steps, then the full evaluation at every rank.

use super::config::ClassifyConfig;
use super::task::ClassifyTask;
use crate::backend::{BackendKind, DeviceSpec};
use crate::train::{Execution, RunError, Runner, TrainConfig, TrainMethod};
use serde::Serialize;
use std::path::PathBuf;

/// What to run: the RT protocol (batch 32, R = 32, ...) with these changes.
#[derive(Debug, Clone)]
pub struct RtBench {
    /// Timed training steps.
    pub steps: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// The method.
    pub method: TrainMethod,
    /// The backend.
    pub backend: BackendKind,
    /// Model directory (the fetched assets).
    pub model: PathBuf,
    /// Test rows evaluated at every rank.
    pub test_n: usize,
    /// Keep only the first `n` encoder layers.
    pub layers: Option<usize>,
    /// Training batch size (`None`: the protocol's 32).
    pub batch: Option<usize>,
    /// `matryoshka-sampled`: ranks drawn per step (`None`: the default).
    pub rank_samples: Option<usize>,
    /// `matryoshka-sampled`: `R` always drawn.
    pub sample_max: bool,
    /// Data-parallel devices, how they train, and accumulation (the
    /// [`TrainConfig`] fields of the same names; `batch` is the global batch).
    pub execution: Execution,
}

/// What [`RtBench::run`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct RtBenchResult {
    /// `rt`.
    pub bench: &'static str,
    /// The method.
    pub method: TrainMethod,
    /// The backend.
    pub backend: BackendKind,
    /// Data-parallel devices (empty: one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceSpec>,
    /// Micro-batches accumulated per device per step.
    pub grad_accum: usize,
    /// `matryoshka-sampled`: ranks drawn per step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank_samples: Option<usize>,
    /// `matryoshka-sampled`: `R` always drawn.
    pub sample_max: bool,
    /// Threads of rayon's pool (the CPU backends and the fused kernels share it).
    pub threads: usize,
    /// Untimed steps.
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Batch size.
    pub batch: usize,
    /// Test rows evaluated.
    pub test_rows: usize,
    /// The ranks evaluated.
    pub ranks: Vec<usize>,
    /// Mean wall ms of the timed steps.
    pub ms_per_step: f64,
    /// Mean wall ms over every step, warm-up included (what torch_rt.py reports).
    pub ms_per_step_all: f64,
    /// Wall seconds of the evaluation at every rank.
    pub eval_seconds: f64,
    /// Peak resident memory (MiB).
    pub peak_rss_mb: f64,
}

impl RtBench {
    /// Trains `warmup + steps` steps of the RT protocol and evaluates every rank.
    pub fn run(&self) -> Result<RtBenchResult, RunError> {
        if self.steps == 0 {
            return Err(RunError::Failed("steps must be at least 1".into()));
        }
        let defaults = TrainConfig::default();
        let train = TrainConfig {
            backend: self.backend,
            batch: self.batch.unwrap_or(defaults.batch),
            rank_samples: self.rank_samples,
            sample_max: self.sample_max,
            ..defaults
        }
        .with_method(self.method);
        let train = self.execution.apply(train);
        let mut task = ClassifyConfig::rt_protocol(&self.model);
        task.layers = self.layers;
        task.train_n = Some(train.batch * (self.steps + self.warmup));
        task.test_n = Some(self.test_n);
        let runner = Runner::new(ClassifyTask::new(task), train)?.quiet(true);
        let data = runner.prepare()?;
        let outcome = runner.train(&data)?;
        let ms_per_step = outcome
            .times
            .steady_ms_per_step(self.warmup)
            .ok_or_else(|| RunError::Failed("no timed training steps were recorded".into()))?;
        Ok(RtBenchResult {
            bench: "rt",
            method: outcome.report.method,
            backend: runner.config().backend,
            devices: runner.config().devices.clone(),
            grad_accum: runner.config().grad_accum,
            rank_samples: runner.config().rank_samples,
            sample_max: runner.config().sample_max,
            threads: rayon::current_num_threads(),
            warmup: self.warmup,
            steps: self.steps,
            batch: runner.config().batch,
            test_rows: data.test.len(),
            ranks: outcome.report.ranks.clone(),
            ms_per_step,
            ms_per_step_all: outcome.times.steady_ms_per_step(0).unwrap_or(f64::NAN),
            eval_seconds: outcome.report.eval_seconds,
            peak_rss_mb: outcome.report.peak_rss_mb,
        })
    }
}
