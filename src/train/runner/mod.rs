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
use super::split_summary::SplitSummary;
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
    /// the last checkpoint): to train in parts, or to test resuming. In
    /// [`Runner::compare_seeds`] the steps of all the runs it trains count
    /// together.
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
        self.task.split_summary(&data).check()?;
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
        self.task.split_summary(data).warnings(data.test.len())
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

    /// Trains with the configured method and evaluates every rank of `S`.
    ///
    /// With [`Runner::checkpoint_into`], checkpoints go to that directory as
    /// training goes, and a run stopped there (Ctrl-C, [`Runner::stop_after`],
    /// a crash) continues from its last checkpoint with [`Runner::resume`]:
    /// the same data order, optimizer state, schedule and DyLoRA draws, so the
    /// resumed run ends where an uninterrupted one would.
    pub fn train(
        &self,
        data: &TaskData<T::Item, T::Meta>,
    ) -> Result<RunOutcome<T::Model>, RunError> {
        let checkpoints = self.checkpoints.as_ref().map(|c| RunCheckpoints {
            dir: &c.dir,
            every: c.every,
            resume: c.resume,
        });
        self.train_run(
            self.method_run(self.config.method)?,
            data,
            checkpoints,
            self.limit(),
        )
    }

    fn limit(&self) -> StepLimit {
        self.step_limit.map_or(StepLimit::None, StepLimit::At)
    }

    /// Trains the run `config` (this runner's settings with another method,
    /// seed, learning rate or head mode) and evaluates every rank of `S`.
    pub fn train_with(
        &self,
        config: TrainConfig,
        data: &TaskData<T::Item, T::Meta>,
    ) -> Result<RunOutcome<T::Model>, RunError> {
        self.train_run(
            Self::run_of(self.resolved(config))?,
            data,
            None,
            self.limit(),
        )
    }

    /// [`Runner::train_with`] checkpointing as `checkpoints` says and
    /// stopping at `limit`.
    pub(crate) fn train_config(
        &self,
        config: TrainConfig,
        data: &TaskData<T::Item, T::Meta>,
        checkpoints: Option<RunCheckpoints<'_>>,
        limit: StepLimit,
    ) -> Result<RunOutcome<T::Model>, RunError> {
        self.train_run(
            Self::run_of(self.resolved(config))?,
            data,
            checkpoints,
            limit,
        )
    }

    fn train_run(
        &self,
        run: MethodRun,
        data: &TaskData<T::Item, T::Meta>,
        checkpoints: Option<RunCheckpoints<'_>>,
        limit: StepLimit,
    ) -> Result<RunOutcome<T::Model>, RunError> {
        let config = &run.config;
        if data.train.is_empty() {
            return Err(RunError::Failed(
                "the task prepared no training examples".into(),
            ));
        }
        let steps_per_epoch = config.steps_per_epoch(data.train.len());
        let every = checkpoints.and_then(|c| c.every);
        let segments = Segments {
            steps_per_epoch,
            epochs: config.epochs,
            every,
        };
        reset_peak_rss();
        let device = self.device()?.autodiff();
        // The model first: bad settings it finds leave nothing written.
        let mut model = self.build_model_for(&run, &data.meta, &device)?;
        // Where this run checkpoints, and where it resumes (segment from 1).
        let (checkpoint_dir, resume_after) = match checkpoints {
            Some(c) => {
                let (dir, resume_after) = self.prepare_checkpoints(c, config, &segments)?;
                (Some(dir), resume_after)
            }
            None => (None, None),
        };
        let start = resume_after.unwrap_or(0);
        if let (Some(path), None) = (&self.init, resume_after) {
            let init = Setting::Task("init_adapter");
            let bytes = std::fs::read(path).map_err(|e| RunError::invalid(init, e))?;
            model = load_trainable(model, bytes, path, &self.task.trainable_modules())
                .map_err(|e| RunError::invalid(init, e))?;
        }
        let scratch = Scratch::new();
        let logs = match &checkpoint_dir {
            Some(dir) => dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.clone()),
            None => scratch.0.clone(),
        };
        let valid = self.loader(&data.test, config.eval_batch, None, &device);
        let modules = self.task.trainable_modules();

        if config.head_mode == HeadMode::Probe && resume_after.is_some() {
            // The probe epoch is behind the checkpoint being resumed (which
            // holds the probed head): set up the main phase's gradients.
            model = model.freeze_group(modules_group(&modules));
        } else if config.head_mode == HeadMode::Probe {
            // One linear-probe epoch: only the task's own modules train, the
            // adapters (B = 0) stay frozen; then those modules are frozen.
            let group = modules_group(&modules);
            let probe = model.freeze().unfreeze_group(group.clone());
            let single =
                RankSet::single(config.rank).map_err(|e| RunError::invalid(Setting::Rank, e))?;
            let options = FitOptions {
                lr: config.lr,
                grad_clip: None,
                steps_per_epoch,
                epochs: 1,
                constant_lr: true,
                artifact_dir: scratch.0.join("probe"),
                parallel: self.parallel(config),
                ..FitOptions::default()
            };
            let mut plan = StepPlan::new(TrainMethod::Lora, &single, config.seed);
            plan.guard.interrupter = self.interrupter.clone();
            let trained = fit(
                probe,
                plan,
                // the probe epoch shuffles with its own stream
                self.train_loader(
                    &data.train,
                    config,
                    config.seed.wrapping_add(0x9e37_79b9),
                    Segments {
                        steps_per_epoch,
                        epochs: 1,
                        every: None,
                    },
                    0,
                    &device,
                ),
                valid.clone(),
                &options,
                self.renderer("probe", config.batch),
            )?;
            // burn-train hands back the validation (non-autodiff) module:
            // `train()` re-enables autodiff with the new gradient settings.
            model = trained
                .task
                .freeze_group(group)
                .unfreeze_group(adapter_group())
                .train();
        }

        let options = FitOptions {
            lr: config.lr,
            weight_decay: config.weight_decay,
            warmup_steps: config.warmup_steps,
            grad_clip: config.grad_clip,
            epochs: config.epochs,
            steps_per_epoch,
            artifact_dir: logs,
            segments: Some(segments),
            checkpoints: checkpoint_dir.map(|dir| FitCheckpoints {
                dir,
                modules: modules.clone(),
                resume_after,
            }),
            parallel: self.parallel(config),
            ..FitOptions::default()
        };
        let done_before = segments.steps_before(start);
        let mut plan = StepPlan::new(config.method, &run.ranks, config.seed);
        if let (TrainMethod::MatryoshkaSampled, Some(m)) = (config.method, config.rank_samples) {
            plan = plan.with_rank_samples(&run.ranks, m, config.sample_max, config.seed);
        }
        let mut plan = plan.after_steps(done_before);
        plan.guard.interrupter = self.interrupter.clone();
        plan.guard.limit = match limit {
            StepLimit::None => None,
            StepLimit::At(n) => Some(n),
            StepLimit::After(n) => Some(done_before + n),
        };
        let train = self.train_loader(&data.train, config, config.seed, segments, start, &device);
        let valid = Arc::new(EpochEndLoader::new(valid, segments, start));
        let started = Instant::now();
        let result = fit(
            model,
            plan,
            train,
            valid,
            &options,
            self.renderer(config.method.name(), config.batch),
        )?;
        let wall = started.elapsed().as_secs_f64();
        let hook_started = Instant::now();
        let hooks = self.evaluate_hooks(&result.task, &run.ranks, data)?;
        let hook_seconds = hook_started.elapsed().as_secs_f64();
        let train_steps = steps_per_epoch * config.epochs;
        let steps_here = (train_steps - done_before).max(1);
        let train_seconds = result.times.seconds("train");
        let ms_per_step = 1000.0
            * if train_seconds > 0.0 {
                train_seconds
            } else {
                wall
            }
            / steps_here as f64;
        let report = self.report(
            &run,
            data,
            result.evaluation,
            hooks,
            Timing {
                train_steps,
                ms_per_step,
                eval_seconds: result.times.last_seconds("valid") + hook_seconds,
            },
        )?;
        Ok(RunOutcome {
            report,
            model: result.task,
            times: result.times,
            steps_taken: train_steps - done_before,
        })
    }

    /// Sets up `dir`'s training checkpoints for a run with `config`: a new run
    /// records its settings; a resumed one must have the same settings, and
    /// resumes after its last complete checkpoint. Returns burn-train's
    /// checkpoint directory and the segment to resume after.
    fn prepare_checkpoints(
        &self,
        checkpoints: RunCheckpoints<'_>,
        config: &TrainConfig,
        segments: &Segments,
    ) -> Result<(PathBuf, Option<usize>), RunError> {
        let steps_per_epoch = segments.steps_per_epoch;
        let RunCheckpoints { dir, every, resume } = checkpoints;
        let state = TrainingState {
            config: RunConfig {
                train: config.clone(),
                task: self.task.settings(),
            },
            checkpoint_every: every,
            steps_per_epoch,
        };
        let checkpoints = dir.join(TRAINING_DIR).join(CHECKPOINT_SUBDIR);
        let saved = TrainingState::read(dir).map_err(|e| RunError::invalid(Setting::Output, e))?;
        match saved {
            Some(saved) if resume => {
                if saved.clone().same_steps() != state.clone().same_steps() {
                    return Err(RunError::invalid(
                        Setting::Output,
                        format!(
                            "the checkpoints in {} are of a run with other settings (or other data): resume with the settings it was started with",
                            dir.display()
                        ),
                    ));
                }
                // A run checkpointed at its very end (finished, not saved)
                // redoes its last segment, which ends in the evaluation.
                let last = last_checkpoint(dir)
                    .map(|c| c.min(segments.count().saturating_sub(1)))
                    .filter(|&c| c > 0);
                Ok((checkpoints, last))
            }
            Some(_) => Err(RunError::invalid(
                Setting::Output,
                format!(
                    "{} holds the checkpoints of an interrupted run: resume it, or write into another directory",
                    dir.display()
                ),
            )),
            None if resume => Err(RunError::invalid(
                Setting::Output,
                format!("{} holds no interrupted run to resume", dir.display()),
            )),
            None => {
                state.write(dir).map_err(|e| RunError::write(dir, e))?;
                Ok((checkpoints, None))
            }
        }
    }

    /// Trains each of `methods` on the same `data` (each from the same seed),
    /// calling `on_report` as each finishes. With `out`, each run is saved
    /// into `out/<method>/` as soon as it finishes (a later failure keeps
    /// it), then `out/compare.json` and the plot of all runs are written.
    pub fn compare(
        &self,
        methods: &[TrainMethod],
        data: &TaskData<T::Item, T::Meta>,
        out: Option<&Path>,
        mut on_report: impl FnMut(&Report),
    ) -> Result<Vec<Report>, RunError> {
        for &method in methods {
            self.method_run(method)?;
        }
        if let Some(dir) = out {
            create_dir(dir)?;
        }
        let mut reports: Vec<Report> = Vec::with_capacity(methods.len());
        for &method in methods {
            let run = || -> Result<Report, RunError> {
                let dir = self.checkpoints.as_ref().map(|c| c.dir.join(method.name()));
                let checkpoints = self.checkpoints.as_ref().zip(dir.as_deref());
                let outcome = self.train_run(
                    self.method_run(method)?,
                    data,
                    checkpoints.map(|(c, dir)| RunCheckpoints {
                        dir,
                        every: c.every,
                        resume: c.resume,
                    }),
                    self.limit(),
                )?;
                if let Some(dir) = out {
                    self.save(
                        &dir.join(method.name()),
                        &outcome.report,
                        Some(&outcome.model),
                    )?;
                }
                Ok(outcome.report)
            };
            let report = run().map_err(|e| RunError::Comparison {
                failed: method.name().to_string(),
                kept: reports
                    .iter()
                    .map(|r| r.method.name().to_string())
                    .collect(),
                source: Box::new(e),
            })?;
            on_report(&report);
            reports.push(report);
        }
        if let Some(dir) = out {
            let json = serde_json::to_vec_pretty(&reports).map_err(|e| RunError::write(dir, e))?;
            let path = dir.join("compare.json");
            write_atomic(&path, &json).map_err(|e| RunError::write(&path, e))?;
            save_plots(dir, &reports)?;
        }
        Ok(reports)
    }
}
