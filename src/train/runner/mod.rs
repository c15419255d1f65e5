//! The runner: everything a [`Task`] does not supply, done once for every task.

use super::checkpointing::{CHECKPOINT_SUBDIR, TRAINING_DIR, TrainingState, last_checkpoint};
use super::config::TrainConfig;
use super::error::{RunError, Setting};
use super::fit::{FitCheckpoints, FitOptions, evaluate, fit};
use super::learner_model::{StepPlan, TrainShard};
use super::metrics::RankEvaluation;
use super::model::TaskModel;
use super::objective::{HeadMode, TrainMethod};
use super::parallel::DataParallel;
use super::progress::{ProgressRenderer, QuietRenderer};
use super::segments::{BatchSplit, EpochEndLoader, Segments, StepLoader};
use super::split_summary::{GroupOverlap, SplitSummary};
use super::task::{RankMetrics, Task, TaskData};
use super::timing::SplitTimes;
use crate::adapter::{ActiveRank, AdaptedModule, Injection, RankSet, Targets, aurac_both};
use crate::io::checkpoint::{
    ADAPTER_FILE, AdapterMeta, FORMAT_VERSION, LEGACY_ADAPTER_FILE, REPORT_FILE, adapter_group,
    load_adapter, load_legacy_adapter, load_trainable, modules_group, save_adapter,
};
use crate::io::manifest::{clear_manifest, verify_manifest, write_manifest};
use crate::io::peft::PeftAdapter;
use crate::io::{sync_parent, write_atomic};
use crate::report::{RankWithin, Report, RunConfig, peak_rss_mb, reset_peak_rss};
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::module::{Module, ParamId};
use burn::prelude::*;
use burn::train::Interrupter;
use burn::train::renderer::MetricsRenderer;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod evaluation;
mod saved;
mod training;

pub use evaluation::BaseReport;
use evaluation::Timing;
use saved::create_dir;
pub use saved::{save_plots, write_plots};

/// What a training run produced.
pub struct RunOutcome<M> {
    /// The report (also what `report.json` holds).
    pub report: Report,
    /// The trained model (no autodiff).
    pub model: M,
    /// Wall times of the main training run's splits and steps.
    pub times: SplitTimes,
    /// Optimiser steps this call took (fewer than the report's
    /// `train_steps` when it resumed a checkpointed run).
    pub steps_taken: usize,
}

/// Trains and evaluates a [`Task`] per rank, with validated settings.
///
/// One runner serves a task end to end: [`Runner::prepare`] reads its data
/// once; [`Runner::train`] trains with the configured method through
/// burn-train's `Learner` (seeded data order, the method's `P`, DyLoRA's
/// draws, the probe head mode), evaluates every rank of `S` and returns the
/// report; [`Runner::compare`] does that for several methods on the same
/// data, saving each run as it finishes; [`Runner::evaluate`] and
/// [`Runner::evaluate_saved`] evaluate a trained model or a saved run with
/// the same per-rank evaluation; [`Runner::save`] writes `adapter.safetensors`,
/// `report.json` and the plot atomically.
///
/// The device is chosen here, once, from [`TrainConfig::backend`].
pub struct Runner<T: Task> {
    task: T,
    config: TrainConfig,
    quiet: bool,
    /// The configured backend's device, opened once (non-autodiff): the
    /// first of `devices`.
    device: Device,
    /// Every data-parallel device, opened once (non-autodiff).
    devices: Vec<Device>,
    /// The name each adapter built by this runner was attached under (its
    /// module name in the base model), by the adapter's module path (stable
    /// across training and checkpoint loads, which may renumber parameters).
    names: Mutex<BTreeMap<String, String>>,
    checkpoints: Option<CheckpointSettings>,
    step_limit: Option<usize>,
    interrupter: Interrupter,
    init: Option<PathBuf>,
    tolerance: f64,
}

/// Where and how often a runner checkpoints, and whether it resumes.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointSettings {
    pub(crate) dir: PathBuf,
    pub(crate) every: Option<usize>,
    pub(crate) resume: bool,
}

/// Where one run checkpoints: its directory (checkpoints go to
/// `dir/.training`), how often, and whether it continues the checkpoints
/// found there (else it refuses to start over them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunCheckpoints<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) every: Option<usize>,
    pub(crate) resume: bool,
}

/// When a run stops before its end.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StepLimit {
    /// At the end.
    None,
    /// After step `n` of the run (counted from its start, resumed steps included).
    At(usize),
    /// After `n` more steps than the run had taken when it started (resumed).
    After(usize),
}

/// The per-method part of a run: settings and what they define.
struct MethodRun {
    config: TrainConfig,
    ranks: RankSet,
    injection_config: crate::adapter::MatryoshkaConfig,
}

/// A burn-train scratch directory (logs), removed however the run ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self(std::env::temp_dir().join(format!("mlora-learner-{}-{n}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl<T: Task> Runner<T> {
    /// A runner for `task` with `config`: validates every setting (the
    /// task's too) and resolves the adapter targets to the task's defaults
    /// when `config` names none. Errors name the setting at fault.
    pub fn new(task: T, mut config: TrainConfig) -> Result<Self, RunError> {
        config.validate()?;
        task.check()?;
        if config.targets.is_none() {
            let defaults = task.default_targets();
            if defaults.is_empty() {
                return Err(RunError::invalid(
                    Setting::Targets,
                    "the task has no default adapter targets: name the modules to adapt",
                ));
            }
            config.targets = Some(defaults);
        }
        let devices = if config.devices.is_empty() {
            vec![
                config
                    .backend
                    .open()
                    .map_err(|e| RunError::invalid(Setting::Backend, e))?,
            ]
        } else {
            config
                .devices
                .iter()
                .map(|d| d.open())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| RunError::invalid(Setting::Devices, e))?
        };
        let device = devices[0].clone();
        if config.head_mode == HeadMode::Probe && task.trainable_modules().is_empty() {
            return Err(RunError::invalid(
                Setting::HeadMode,
                "the task trains no module besides the adapters, so there is no head to probe: use joint",
            ));
        }
        Ok(Self {
            task,
            config,
            quiet: false,
            device,
            devices,
            names: Mutex::default(),
            checkpoints: None,
            step_limit: None,
            interrupter: Interrupter::new(),
            init: None,
            tolerance: RankWithin::DEFAULT_TOLERANCE,
        })
    }

    /// Without progress bars (`true`) or with them on stderr (`false`, the default).
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Checkpoints training into `dir` (the run's output directory; kept in
    /// `dir/.training` until the run is saved there): every `every` steps
    /// when given, and at every epoch end. `compare` uses `dir/<method>`.
    pub fn checkpoint_into(mut self, dir: impl Into<PathBuf>, every: Option<usize>) -> Self {
        let resume = self.checkpoints.as_ref().is_some_and(|c| c.resume);
        self.checkpoints = Some(CheckpointSettings {
            dir: dir.into(),
            every,
            resume,
        });
        self
    }

    /// Continues the run checkpointed into [`Runner::checkpoint_into`]'s
    /// directory instead of refusing to start over it. Its settings must be
    /// those the run was started with, except where it trains (backend,
    /// devices, strategy, accumulation).
    ///
    /// burn-train loads the optimizer state onto `Device::default()` before
    /// moving it to each parameter's device; in a build with a GPU backend
    /// that default is the GPU, so a program that may resume on a machine
    /// without one sets `BURN_DEVICE=flex` (the `mlora` binary does).
    pub fn resume(mut self, resume: bool) -> Self {
        if let Some(c) = &mut self.checkpoints {
            c.resume = resume;
        }
        self
    }

    /// Stops training after `steps` optimiser steps in all (resumable from
    /// the last checkpoint): to train in parts, or to test resuming; a run
    /// whose last step is the limit finishes. In [`Runner::compare_seeds`]
    /// the steps of all the runs it trains count together.
    pub fn stop_after(mut self, steps: usize) -> Self {
        self.step_limit = Some(steps);
        self
    }

    /// Starts training from the `A`, `B` and trainable modules of a saved
    /// adapter (an `adapter.safetensors`, e.g. one `mlora import` made from
    /// PEFT) instead of fresh ones. Its rank and adapted modules must be this
    /// run's; `P` is this run's method's.
    pub fn init_from(mut self, adapter: impl Into<PathBuf>) -> Self {
        self.init = Some(adapter.into());
        self
    }

    /// The handle that stops training at the next step boundary (e.g. on
    /// Ctrl-C); the run ends with [`FitError::Interrupted`](super::FitError).
    pub fn interrupter(&self) -> Interrupter {
        self.interrupter.clone()
    }

    /// The tolerance (points of the curve metric) of each report's
    /// `smallest_rank_within` (default 1.0).
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The tolerance of each report's `smallest_rank_within`.
    pub fn report_tolerance(&self) -> f64 {
        self.tolerance
    }

    /// Where and how this runner checkpoints, if it does.
    pub(crate) fn checkpoint_settings(&self) -> Option<&CheckpointSettings> {
        self.checkpoints.as_ref()
    }

    /// The step limit of [`Runner::stop_after`].
    /// Whether progress and notes stay off the terminal ([`Runner::quiet`]).
    pub(crate) fn is_quiet(&self) -> bool {
        self.quiet
    }

    pub(crate) fn step_limit(&self) -> Option<usize> {
        self.step_limit
    }

    /// The task.
    pub fn task(&self) -> &T {
        &self.task
    }

    /// The validated settings (targets resolved).
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The (non-autodiff) device of the configured backend, opened (and,
    /// for a GPU, checked to work) when the runner was made.
    pub fn device(&self) -> Result<Device, RunError> {
        Ok(self.device.clone())
    }

    /// Reads and preprocesses the task's data (once; share it between runs).
    pub fn prepare(&self) -> Result<TaskData<T::Item, T::Meta>, RunError> {
        let data = self.prepare_eval()?;
        if data.train.is_empty() {
            return Err(RunError::invalid(
                Setting::Task("data"),
                "the training split is empty",
            ));
        }
        self.split_summary(&data).check()?;
        Ok(data)
    }

    /// [`Runner::prepare`] for evaluation only: the training split is not
    /// checked (it may be empty or degenerate), the test split must have rows.
    pub fn prepare_eval(&self) -> Result<TaskData<T::Item, T::Meta>, RunError> {
        let data = self.task.prepare()?;
        if data.test.is_empty() {
            return Err(RunError::invalid(
                Setting::Task("data"),
                "the test split is empty",
            ));
        }
        Ok(data)
    }

    /// What a reader of results on `data` should know (labels without test
    /// rows, test rows that also occur in training): one line each.
    pub fn data_warnings(&self, data: &TaskData<T::Item, T::Meta>) -> Vec<String> {
        self.split_summary(data).warnings(data.test.len())
    }

    /// The task's [`Task::split_summary`] of `data`, with the overlap of the
    /// splits' groups ([`Task::group`]) when the task names groups.
    pub(crate) fn split_summary(&self, data: &TaskData<T::Item, T::Meta>) -> SplitSummary {
        let mut summary = self.task.split_summary(data);
        summary.groups = GroupOverlap::of(
            data.train.iter().map(|i| self.task.group(i)),
            data.test.iter().map(|i| self.task.group(i)),
        );
        summary
    }

    fn method_run(&self, method: TrainMethod) -> Result<MethodRun, RunError> {
        Self::run_of(self.config.clone().with_method(method))
    }

    /// The per-run part of `config`, validated.
    fn run_of(config: TrainConfig) -> Result<MethodRun, RunError> {
        config.validate()?;
        Ok(MethodRun {
            ranks: config.rank_set()?,
            injection_config: config.adapter_config()?,
            config,
        })
    }

    /// `config` with this runner's (resolved) targets when it names none,
    /// and this runner's devices (opened once, when it was made).
    fn resolved(&self, mut config: TrainConfig) -> TrainConfig {
        if config.targets.is_none() {
            config.targets = self.config.targets.clone();
        }
        config.backend = self.config.backend;
        config.devices = self.config.devices.clone();
        config.strategy = self.config.strategy;
        config
    }

    /// The training loader of a run: `items` in batches of `config.batch`,
    /// shuffled with `seed`, from segment `start`, each step's batch cut over
    /// the run's devices and accumulation steps.
    fn train_loader(
        &self,
        items: &[T::Item],
        config: &TrainConfig,
        seed: u64,
        segments: Segments,
        start: usize,
        device: &Device,
    ) -> Arc<dyn DataLoader<TrainShard<<T::Model as TaskModel>::Batch>>> {
        let terms: fn(&T::Item) -> usize = T::loss_terms;
        Arc::new(
            StepLoader::new(
                Arc::new(InMemDataset::new(items.to_vec())),
                Arc::new(self.task.batcher()),
                config.batch,
                Some(seed),
                segments,
                start,
                device,
            )
            .with_split(
                BatchSplit {
                    workers: self.devices.len(),
                    micro_batches: config.grad_accum,
                },
                Arc::new(terms),
            ),
        )
    }

    /// The devices and accumulation burn-train runs `config` with (`None`:
    /// one device, one batch per step).
    fn parallel(&self, config: &TrainConfig) -> Option<DataParallel> {
        (self.devices.len() > 1 || config.grad_accum > 1).then(|| DataParallel {
            devices: self.devices.clone(),
            strategy: config.strategy,
            grad_accum: config.grad_accum,
        })
    }

    fn targets(config: &TrainConfig) -> Targets {
        Targets::names(
            config
                .targets
                .iter()
                .flatten()
                .map(|t| t.trim())
                .filter(|t| !t.is_empty())
                .map(String::from),
        )
    }

    /// The task's model with fresh adapters on `device` (seeded by the
    /// configured seed), checking that the targets matched.
    ///
    /// The seed makes the initialisation reproducible: runners in other
    /// threads wait while a model is built (burn's device generator is
    /// process-wide), so concurrent runs do not interleave their draws; other
    /// code drawing random numbers on the same backend meanwhile would.
    pub fn build_model(&self, meta: &T::Meta, device: &Device) -> Result<T::Model, RunError> {
        self.build_model_for(&self.method_run(self.config.method)?, meta, device)
    }

    fn build_model_for(
        &self,
        run: &MethodRun,
        meta: &T::Meta,
        device: &Device,
    ) -> Result<T::Model, RunError> {
        // The device's random generator is process-wide: runs building models
        // in other threads at the same time would interleave their draws.
        static MODEL_INIT: Mutex<()> = Mutex::new(());
        let _init = MODEL_INIT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        device.seed(run.config.seed);
        let injection = Injection::new(run.injection_config.clone(), Self::targets(&run.config))
            .map_err(|e| RunError::invalid(Setting::Ranks, e))?;
        let model = self.task.build_model(meta, &injection, device)?;
        injection
            .finish()
            .map_err(|e| RunError::invalid(Setting::Targets, e))?;
        let attached: BTreeMap<ParamId, String> = injection.adapter_names().into_iter().collect();
        if let Ok(mut names) = self.names.lock() {
            for (path, id) in model.adapter_ids() {
                if let Some(name) = attached.get(&id) {
                    names.insert(path, name.clone());
                }
            }
        }
        // The task's own modules train (a model adapted by reparameterization
        // comes back with every parameter frozen).
        let modules = self.task.trainable_modules();
        Ok(if modules.is_empty() {
            model
        } else {
            model.unfreeze_group(modules_group(&modules))
        })
    }

    fn renderer(&self, label: &str, batch: usize) -> Box<dyn MetricsRenderer> {
        if self.quiet {
            Box::new(QuietRenderer)
        } else {
            Box::new(ProgressRenderer::new(label, batch))
        }
    }

    fn loader(
        &self,
        items: &[T::Item],
        batch: usize,
        shuffle: Option<u64>,
        device: &Device,
    ) -> Arc<dyn DataLoader<<T::Model as TaskModel>::Batch>> {
        let builder = DataLoaderBuilder::new(self.task.batcher())
            .batch_size(batch)
            .set_device(device.clone());
        let builder = match shuffle {
            Some(seed) => builder.shuffle(seed),
            None => builder,
        };
        builder.build(InMemDataset::new(items.to_vec()))
    }
}
