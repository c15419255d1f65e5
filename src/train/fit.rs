//! One training run through burn-train's `Learner`.

use super::learner_model::{RankedLearnerModel, StepPlan};
use super::metric_log::MetricLog;
use super::metrics::{AuracMetric, RankAccuracyMetric, RankLossMetric, rank_loss_name};
use super::schedule::LinearWarmupDecay;
use super::task::RankedTask;
use super::timing::{SplitTimes, Timed};
use crate::aurac::RankAxis;
use burn::data::dataloader::DataLoader;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::AdamWConfig;
use burn::train::metric::LossMetric;
use burn::train::renderer::MetricsRenderer;
use burn::train::{Learner, SupervisedTraining};
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
    /// The loss became NaN or infinite.
    #[error("the loss is not finite ({0}): lower --lr, or check the data")]
    NonFiniteLoss(f64),
}

/// What a run produced.
pub struct FitResult<T> {
    /// The trained model (inner, non-autodiff device).
    pub task: T,
    /// Every logged metric.
    pub log: MetricLog,
    /// Wall times of the train and valid splits.
    pub times: SplitTimes,
}

/// Trains `task` with `plan` on `train`, evaluating every rank of the plan on
/// `valid` after each epoch, through burn-train's `Learner`.
///
/// Metrics logged: `Loss` (train), `Accuracy@r{k}` and `Loss@r{k}` for each
/// `k`, `AURAC-log2` and `AURAC-linear` (valid).
pub fn fit<T: RankedTask>(
    task: T,
    plan: StepPlan,
    train: Arc<dyn DataLoader<T::Batch>>,
    valid: Arc<dyn DataLoader<T::Batch>>,
    options: &FitOptions,
    renderer: Box<dyn MetricsRenderer>,
) -> Result<FitResult<T>, FitError> {
    if !(options.lr.is_finite() && options.lr > 0.0 && options.lr <= 1.0) {
        return Err(FitError::Invalid(format!(
            "--lr must be in (0, 1], got {}",
            options.lr
        )));
    }
    if options.epochs == 0 {
        return Err(FitError::Invalid("--epochs must be at least 1".into()));
    }
    let ranks = plan.ranks.clone();
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

    let log = MetricLog::new();
    let times = SplitTimes::default();
    let mut training = SupervisedTraining::new(&options.artifact_dir, train, valid)
        .metric_train_numeric(LossMetric::new())
        .with_metric_logger(log.clone())
        .renderer(Box::new(Timed::new(renderer, times.clone())))
        .with_application_logger(None)
        .num_epochs(options.epochs);
    for (i, &k) in ranks.iter().enumerate() {
        training = training
            .metric_valid_numeric(RankAccuracyMetric::new(i, k))
            .metric_valid_numeric(RankLossMetric::new(i, k));
    }
    training = training
        .metric_valid_numeric(AuracMetric::new(RankAxis::Log2))
        .metric_valid_numeric(AuracMetric::new(RankAxis::Linear));
    let result = training.launch(learner);
    if let Some(error) = result.error {
        return Err(FitError::Learner(format!("{error:?}")));
    }
    let epoch = log.last_epoch();
    if let Some(loss) = log.value("Loss", "train", epoch)
        && !loss.is_finite()
    {
        return Err(FitError::NonFiniteLoss(loss));
    }
    for &k in &ranks {
        if let Some(loss) = log.value(&rank_loss_name(k), "valid", epoch)
            && !loss.is_finite()
        {
            return Err(FitError::NonFiniteLoss(loss));
        }
    }
    Ok(FitResult {
        task: result.model.task,
        log,
        times,
    })
}
