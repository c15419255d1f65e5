//! Training and evaluating any task per rank: the [`Task`] trait an
//! application implements once, the [`Runner`] that does everything else, and
//! the burn-train pieces underneath (the learner model applying each method's
//! `P`, per-rank metrics, AURAC, the schedule, progress and timing).
//!
//! ```no_run
//! use matryoshka_lora::tasks::classify::{ClassifyConfig, ClassifyTask};
//! use matryoshka_lora::train::{Runner, TrainConfig, TrainMethod};
//!
//! let task = ClassifyTask::new(ClassifyConfig::rt_protocol("assets"));
//! let runner = Runner::new(task, TrainConfig::default().with_method(TrainMethod::Matryoshka))?;
//! let data = runner.prepare()?;
//! let outcome = runner.train(&data)?;
//! println!("AURAC {:.2}, accuracy per rank {:?}", outcome.report.aurac_log2, outcome.report.curve());
//! runner.save("runs/rt".as_ref(), &outcome.report, Some(&outcome.model))?;
//! # Ok::<(), matryoshka_lora::train::RunError>(())
//! ```

mod checkpointing;
mod comparison;
mod config;
mod error;
mod fit;
mod learner_model;
mod metrics;
mod model;
mod objective;
mod parallel;
mod progress;
mod runner;
mod schedule;
mod segments;
mod split_summary;
mod task;
mod timing;

pub use checkpointing::{AdapterStateCheckpointer, TRAINING_DIR, TrainingState, last_checkpoint};
pub use comparison::{
    COMPARE_STATE, COMPARED_RUN, CompareMethod, ComparePlan, CompareProgress, CompareState,
    ComparedRun, Comparison, DIVERGED_RUN, MethodSummary, PairSummary, SeriesSummary, SkippedRun,
};
pub use config::TrainConfig;
pub use error::{BoxError, RunError, Setting};
pub use fit::{FitCheckpoints, FitError, FitOptions, FitResult, evaluate, fit};
pub use learner_model::{
    PerRankOutput, RankedLearnerModel, StepGuard, StepPlan, TrainShard, TrainStepOutput,
};
pub use metrics::{
    AuracMetric, Divergence, RankAccuracyMetric, RankEvalCollector, RankEvaluation, RankLossMetric,
    RankTotals, aurac_metric_name, rank_accuracy_name, rank_loss_name,
};
pub use model::{RankedBatchOutput, TaskModel};
pub use objective::{HeadMode, ParseError, TrainMethod};
pub use parallel::{DataParallel, Execution, ParallelStrategy};
pub use progress::{ProgressRenderer, QuietRenderer};
pub use runner::{BaseReport, RunOutcome, Runner, save_plots, write_plots};
pub use schedule::LinearWarmupDecay;
pub use segments::{BatchSplit, EpochEndLoader, LossTerms, Segments, StepLoader};
pub use split_summary::{
    GroupOverlap, OverBudget, SplitSummary, count_overlapping, majority_accuracy, overlapping,
    remove_overlapping,
};
pub use task::{RankMetrics, Task, TaskData};
pub use timing::{SplitTimes, Timed};
