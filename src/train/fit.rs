//! Training and evaluation passes through burn-train: the `Learner` for a
//! training run (per-rank validation after each epoch), the `Evaluator` for a
//! trained model.

use super::checkpointing::AdapterStateCheckpointer;
use super::learner_model::{RankedLearnerModel, StepPlan, TrainShard};
use super::metrics::{
    AuracMetric, RankAccuracyMetric, RankEvalCollector, RankEvaluation, RankLossMetric, RankTotals,
};
use super::model::TaskModel;
use super::parallel::DataParallel;
use super::schedule::LinearWarmupDecay;
use super::segments::Segments;
use super::timing::{SplitTimes, Timed};
use crate::adapter::RankAxis;
use burn::data::dataloader::DataLoader;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::AdamWConfig;
use burn::train::checkpoint::{FileCheckpointer, KeepLastNCheckpoints};
use burn::train::metric::LossMetric;
use burn::train::renderer::MetricsRenderer;
use burn::train::{EvaluatorBuilder, Learner, SupervisedTraining};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

/// Optimiser and schedule settings (defaults: the RT protocol).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW `beta_1`.
    pub beta1: f32,
    /// AdamW `beta_2`.
    pub beta2: f32,
    /// AdamW epsilon.
    pub eps: f32,
    /// AdamW decoupled weight decay.
    pub weight_decay: f32,
    /// Linear warmup steps before the linear decay to 0.
    pub warmup_steps: usize,
    /// Gradient-norm clipping threshold (`None`: no clipping).
    pub grad_clip: Option<f32>,
    /// Epochs.
    pub epochs: usize,
    /// Optimiser steps per epoch (to size the schedule).
    pub steps_per_epoch: usize,
    /// Keep the learning rate constant (no warmup, no decay).
    pub constant_lr: bool,
    /// Where burn-train writes its logs.
    pub artifact_dir: PathBuf,
    /// How the steps are grouped into burn-train epochs (`None`: one per
    /// epoch); the loaders given to [`fit`] must follow the same grouping
    /// ([`StepLoader`](super::StepLoader), [`EpochEndLoader`](super::EpochEndLoader)).
    pub segments: Option<Segments>,
    /// Checkpoints after every segment, and where to resume.
    pub checkpoints: Option<FitCheckpoints>,
    /// Data-parallel devices and gradient accumulation (`None`: one device,
    /// the model's, one batch per step). The training loader must cut each
    /// step's batch to match ([`StepLoader::with_split`](super::StepLoader::with_split)).
    #[serde(skip)]
    pub parallel: Option<DataParallel>,
}

/// Training checkpoints of a [`fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitCheckpoints {
    /// The checkpoint directory (`model-{n}.bpk`, `optim-{n}.bpk`, `scheduler-{n}.bpk`).
    pub dir: PathBuf,
    /// The task's trainable modules (saved with the adapters).
    pub modules: Vec<String>,
    /// Resume after segment `n` (from 1) from its checkpoints.
    pub resume_after: Option<usize>,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 0,
            grad_clip: Some(1.0),
            epochs: 1,
            steps_per_epoch: 1,
            constant_lr: false,
            artifact_dir: std::env::temp_dir().join("mlora-train"),
            segments: None,
            checkpoints: None,
            parallel: None,
        }
    }
}

/// Why training failed.
#[derive(Debug, Error)]
pub enum FitError {
    /// A setting is out of range.
    #[error("invalid training setting: {0}")]
    Invalid(String),
    /// burn-train reported an error.
    #[error("training failed: {0}")]
    Learner(String),
    /// The training loss became NaN or infinite; training stopped there.
    #[error(
        "the training loss is not finite ({loss}) at step {step}; training stopped: lower the learning rate, or check the data"
    )]
    Diverged {
        /// The step (from 1) whose loss was not finite.
        step: usize,
        /// That loss.
        loss: f64,
    },
    /// A loss of the per-rank evaluation is NaN or infinite.
    #[error("the evaluation loss at rank {rank} is not finite ({loss}): the adapter diverged")]
    NonFiniteEvalLoss {
        /// The rank.
        rank: usize,
        /// Its loss.
        loss: f64,
    },
    /// Training was stopped before its end (a step limit, Ctrl-C); the last
    /// checkpoint, if any, can resume it.
    #[error("training was stopped at step {step}: {reason}")]
    Interrupted {
        /// Steps taken.
        step: usize,
        /// Why.
        reason: String,
    },
    /// The evaluation saw no examples.
    #[error("the evaluation produced no per-rank figures (no evaluation examples?)")]
    NoEvaluation,
}

/// What a run produced.
pub struct FitResult<T> {
    /// The trained model (inner, non-autodiff device).
    pub task: T,
    /// The per-rank figures of the last validation pass.
    pub evaluation: RankEvaluation,
    /// Wall times of the train and valid splits.
    pub times: SplitTimes,
}

/// Trains `task` with `plan` on `train`, evaluating every rank of the plan on
/// `valid` after each epoch, through burn-train's `Learner` (on several
/// devices with [`FitOptions::parallel`]: burn-train's `multi` or `ddp`
/// execution strategy, validation on the first device).
///
/// Metrics shown: `Loss` (train), `Accuracy@r{k}` and `Loss@r{k}` for each
/// `k`, `AURAC-log2` and `AURAC-linear` (valid). The per-rank figures of the
/// last validation pass come back as numbers in [`FitResult::evaluation`].
/// A NaN or infinite training loss stops training at once
/// ([`FitError::Diverged`]).
pub fn fit<T: TaskModel>(
    task: T,
    plan: StepPlan,
    train: Arc<dyn DataLoader<TrainShard<T::Batch>>>,
    valid: Arc<dyn DataLoader<T::Batch>>,
    options: &FitOptions,
    renderer: Box<dyn MetricsRenderer>,
) -> Result<FitResult<T>, FitError> {
    if !(options.lr.is_finite() && options.lr > 0.0 && options.lr <= 1.0) {
        return Err(FitError::Invalid(format!(
            "the learning rate must be in (0, 1], got {}",
            options.lr
        )));
    }
    if options.epochs == 0 {
        return Err(FitError::Invalid("epochs must be at least 1".into()));
    }
    let ranks = plan.ranks.clone();
    let guard = plan.guard.clone();
    let model =
        RankedLearnerModel::new(task, plan).map_err(|e| FitError::Invalid(e.to_string()))?;
    let mut optim = AdamWConfig::new()
        .with_beta_1(options.beta1)
        .with_beta_2(options.beta2)
        .with_epsilon(options.eps)
        .with_weight_decay(options.weight_decay);
    if let Some(clip) = options.grad_clip {
        optim = optim.with_grad_clipping(Some(GradientClippingConfig::Norm(clip)));
    }
    let total = options.epochs * options.steps_per_epoch.max(1);
    let schedule = if options.constant_lr {
        LinearWarmupDecay::constant(options.lr)
    } else {
        LinearWarmupDecay::new(options.lr, options.warmup_steps, total)
    };
    let learner = Learner::new(model, optim.init(), schedule);

    let totals = RankTotals::new();
    let times = SplitTimes::default().with_pieces_per_step(
        options
            .parallel
            .as_ref()
            .map_or(1, DataParallel::pieces_per_step),
    );
    let num_epochs = options
        .segments
        .map(|s| s.count())
        .unwrap_or(options.epochs);
    let mut training = SupervisedTraining::new(&options.artifact_dir, train, valid)
        .metric_train_numeric(LossMetric::new())
        .with_interrupter(guard.interrupter.clone())
        .renderer(Box::new(Timed::new(renderer, times.clone())))
        .with_application_logger(None)
        .num_epochs(num_epochs);
    if let Some(parallel) = &options.parallel {
        if parallel.grad_accum > 1 {
            training = training.grads_accumulation(parallel.grad_accum);
        }
        if parallel.is_multi_device() {
            training = training.with_training_strategy(
                parallel
                    .strategy
                    .execution(
                        parallel
                            .devices
                            .iter()
                            .map(|d| d.clone().autodiff())
                            .collect(),
                    )
                    .into(),
            );
        }
    }
    if let Some(checkpoints) = &options.checkpoints {
        training = training
            .with_custom_checkpointers(
                AdapterStateCheckpointer::new(&checkpoints.dir, &checkpoints.modules),
                FileCheckpointer::new(&checkpoints.dir, "optim"),
                FileCheckpointer::new(&checkpoints.dir, "scheduler"),
            )
            .with_checkpointing_strategy(KeepLastNCheckpoints::new(2));
        if let Some(segment) = checkpoints.resume_after {
            training = training.checkpoint(segment);
        }
    }
    let training = register_rank_metrics(
        training,
        &ranks,
        &totals,
        |t, m| t.metric_valid_numeric(m),
        |t, m| t.metric_valid_numeric(m),
        |t, m| t.metric_valid_numeric(m),
        |t, m| t.metric_valid(m),
    );
    // burn-train panics where it cannot write a checkpoint: an error here.
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| training.launch(learner)))
            .map_err(|panic| {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown failure".into());
                FitError::Learner(format!(
                    "training stopped at step {}: {message}",
                    guard.steps()
                ))
            })?;
    if let Some((step, loss)) = guard.divergence.first() {
        return Err(FitError::Diverged { step, loss });
    }
    if let Some(error) = result.error {
        return Err(FitError::Learner(format!("{error:?}")));
    }
    if let Some(interruption) = result.interrupted {
        return Err(FitError::Interrupted {
            step: guard.steps(),
            reason: interruption.reason.unwrap_or_else(|| "stopped".into()),
        });
    }
    let evaluation = checked(totals.latest())?;
    Ok(FitResult {
        task: result.model.task,
        evaluation,
        times,
    })
}

/// Evaluates `task` at every rank of `ranks` on `data` through burn-train's
/// `Evaluator`, with the same per-rank metrics as training's validation.
pub fn evaluate<T: TaskModel>(
    task: T,
    ranks: &crate::adapter::RankSet,
    data: Arc<dyn DataLoader<T::Batch>>,
    artifact_dir: &std::path::Path,
    renderer: Box<dyn MetricsRenderer>,
) -> Result<RankEvaluation, FitError> {
    let plan = StepPlan::new(super::TrainMethod::Matryoshka, ranks, 0);
    let model =
        RankedLearnerModel::new(task, plan).map_err(|e| FitError::Invalid(e.to_string()))?;
    let totals = RankTotals::new();
    let builder = EvaluatorBuilder::new(artifact_dir)
        .renderer(renderer)
        .with_application_logger(None);
    let builder = register_rank_metrics(
        builder,
        ranks.ranks(),
        &totals,
        |b, m| b.metric_numeric(m),
        |b, m| b.metric_numeric(m),
        |b, m| b.metric_numeric(m),
        |b, m| b.metric(m),
    );
    let result = builder.build(model).eval("test", data);
    if let Some(error) = result.error {
        return Err(FitError::Learner(format!("{error:?}")));
    }
    checked(totals.latest())
}

/// Registers `Accuracy@r{k}`, `Loss@r{k}`, both AURACs and the collector on a
/// burn-train builder (the `Learner`'s validation or the `Evaluator`).
fn register_rank_metrics<B>(
    mut builder: B,
    ranks: &[usize],
    totals: &RankTotals,
    accuracy: impl Fn(B, RankAccuracyMetric) -> B,
    loss: impl Fn(B, RankLossMetric) -> B,
    auc: impl Fn(B, AuracMetric) -> B,
    collector: impl Fn(B, RankEvalCollector) -> B,
) -> B {
    for (i, &k) in ranks.iter().enumerate() {
        builder = accuracy(builder, RankAccuracyMetric::new(i, k));
        builder = loss(builder, RankLossMetric::new(i, k));
    }
    builder = auc(builder, AuracMetric::new(RankAxis::Log2));
    builder = auc(builder, AuracMetric::new(RankAxis::Linear));
    collector(builder, RankEvalCollector::new(totals.clone()))
}

/// The evaluation, if it exists and every loss is finite.
fn checked(evaluation: Option<RankEvaluation>) -> Result<RankEvaluation, FitError> {
    let evaluation = evaluation.ok_or(FitError::NoEvaluation)?;
    if let Some((&rank, &loss)) = evaluation
        .ranks
        .iter()
        .zip(&evaluation.loss)
        .find(|(_, l)| !l.is_finite())
    {
        return Err(FitError::NonFiniteEvalLoss { rank, loss });
    }
    Ok(evaluation)
}
