//! Training with burn-train: the methods, per-rank metrics and AURAC, reports.
//!
//! Task-generic: a model implements [`RankedTask`] (batch -> loss and a score
//! summed over examples), and [`RankedLearnerModel`] turns it into a burn-train
//! model whose training step applies the method's `P` and whose validation step
//! evaluates every nested rank.

mod fit;
mod learner_model;
mod metric_log;
mod metrics;
mod objective;
mod progress;
mod schedule;
mod task;
mod timing;

pub use fit::{FitError, FitOptions, FitResult, fit};
pub use learner_model::{PerRankOutput, RankedLearnerModel, StepPlan, TrainStepOutput};
pub use metric_log::MetricLog;
pub use metrics::{
    AuracMetric, RankAccuracyMetric, RankLossMetric, aurac_metric_name, rank_accuracy_name,
    rank_loss_name,
};
pub use objective::{HeadMode, ParseError, TrainMethod};
pub use progress::{ProgressRenderer, QuietRenderer};
pub use schedule::LinearWarmupDecay;
pub use task::{RankedBatchOutput, RankedTask};
pub use timing::{SplitTimes, Timed};
