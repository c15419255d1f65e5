//! Why a run failed, with the setting at fault as data.

use super::fit::FitError;
use std::fmt;
use std::path::PathBuf;
use thiserror::Error;

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A setting of a run, named by its key in `report.json`'s `config`.
///
/// Library errors carry this (not a command-line flag); the `mlora` binary
/// maps each setting to its flag in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setting {
    /// Adapter target modules.
    Targets,
    /// Training method.
    Method,
    /// Head mode.
    HeadMode,
    /// Maximum rank `R`.
    Rank,
    /// Nested ranks `S`.
    Ranks,
    /// Ranks drawn per step by `matryoshka-sampled`.
    RankSamples,
    /// Scaling rule.
    Scaling,
    /// Peak learning rate.
    Lr,
    /// AdamW weight decay.
    WeightDecay,
    /// Warmup steps.
    WarmupSteps,
    /// Gradient-norm clip.
    GradClip,
    /// Training batch size.
    Batch,
    /// Evaluation batch size.
    EvalBatch,
    /// Epochs.
    Epochs,
    /// Seed.
    Seed,
    /// Compute backend.
    Backend,
    /// Data-parallel devices.
    Devices,
    /// How several devices train together.
    Strategy,
    /// Micro-batches accumulated per optimiser step.
    GradAccum,
    /// The run's output (and checkpoint) directory.
    Output,
    /// A task's own setting, by its config key (e.g. `data`, `label_col`).
    Task(&'static str),
}

impl Setting {
    /// The setting's key in `report.json`'s `config`.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Targets => "targets",
            Self::Method => "method",
            Self::HeadMode => "head_mode",
            Self::Rank => "rank",
            Self::Ranks => "ranks",
            Self::RankSamples => "rank_samples",
            Self::Scaling => "scaling",
            Self::Lr => "lr",
            Self::WeightDecay => "weight_decay",
            Self::WarmupSteps => "warmup_steps",
            Self::GradClip => "grad_clip",
            Self::Batch => "batch",
            Self::EvalBatch => "eval_batch",
            Self::Epochs => "epochs",
            Self::Seed => "seed",
            Self::Backend => "backend",
            Self::Devices => "devices",
            Self::Strategy => "strategy",
            Self::GradAccum => "grad_accum",
            Self::Output => "out",
            Self::Task(key) => key,
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.key())
    }
}

/// Why a run failed.
#[derive(Debug, Error)]
pub enum RunError {
    /// Bad input: a setting, or the file or data it names, is unusable.
    #[error("invalid setting {setting}: {source}")]
    Invalid {
        /// The setting at fault.
        setting: Setting,
        /// What is wrong with it.
        #[source]
        source: BoxError,
    },
    /// Training failed (diverged, or burn-train reported an error).
    #[error(transparent)]
    Fit(#[from] FitError),
    /// Writing an output file failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A failure while running that no setting explains.
    #[error("{0}")]
    Failed(BoxError),
    /// One run of a comparison failed; the runs before it finished and were kept.
    #[error("{failed} failed ({}): {source}", kept_note(kept))]
    Comparison {
        /// The method that failed.
        failed: String,
        /// The methods that finished (and were saved, with an output directory).
        kept: Vec<String>,
        /// Why it failed.
        source: Box<RunError>,
    },
}

fn kept_note(kept: &[String]) -> String {
    if kept.is_empty() {
        "no run had finished".to_string()
    } else {
        format!("finished and kept: {}", kept.join(", "))
    }
}

impl RunError {
    /// Bad input for `setting`.
    pub fn invalid(setting: Setting, source: impl Into<BoxError>) -> Self {
        Self::Invalid {
            setting,
            source: source.into(),
        }
    }

    /// The setting at fault, when the error is bad input.
    pub fn setting(&self) -> Option<Setting> {
        match self {
            Self::Invalid { setting, .. } => Some(*setting),
            Self::Comparison { source, .. } => source.setting(),
            _ => None,
        }
    }

    /// What is wrong, without the setting's name (for callers that name the
    /// setting their own way, e.g. by a command-line flag).
    pub fn reason(&self) -> String {
        match self {
            Self::Invalid { source, .. } => source.to_string(),
            Self::Comparison {
                failed,
                kept,
                source,
            } => format!("{failed} failed ({}): {}", kept_note(kept), source.reason()),
            other => other.to_string(),
        }
    }

    /// A write failure of `path`.
    pub fn write(path: impl Into<PathBuf>, reason: impl fmt::Display) -> Self {
        Self::Write {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
