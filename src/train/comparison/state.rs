//! What a comparison was started with (`compare-plan.json`), and which
//! settings a resumed comparison may bring: the same, or a wider
//! learning-rate grid.

use super::ComparePlan;
use super::run::write_json;
use crate::io::read_json_if_exists;
use crate::report::RunConfig;
use crate::train::checkpointing::TrainingState;
use crate::train::error::RunError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file of a comparison's settings, in its directory.
pub const COMPARE_STATE: &str = "compare-plan.json";

/// What a comparison was started with (`compare-plan.json`): enough to
/// resume it without any other input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareState {
    /// The plan.
    pub plan: ComparePlan,
    /// Every setting (the task's and training's).
    pub config: RunConfig,
    /// Steps between checkpoints of each run (`None`: at epoch ends).
    pub checkpoint_every: Option<usize>,
    /// The tolerance of the summary's `smallest_rank_within`.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    crate::report::RankWithin::DEFAULT_TOLERANCE
}

/// How a resumed comparison's settings relate to the saved ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resumed {
    /// The same steps (where it trains may differ).
    Same,
    /// The same but for learning rates added to the grid: every saved one
    /// is still there, so the finished runs stand and only the new ones
    /// train (a choice they beat is re-made).
    Widened,
    /// Learning rates added to a comparison of one: its runs trained on
    /// the validation rows too, so they cannot be chosen among.
    OneLearningRate,
    /// Anything else.
    Other,
}

impl CompareState {
    /// Reads `dir/compare-plan.json`, if there is one.
    pub fn read(dir: &Path) -> Result<Option<Self>, String> {
        read_json_if_exists(&dir.join(COMPARE_STATE), "a comparison's settings")
    }

    /// Writes `dir/compare-plan.json` (atomically).
    pub(super) fn write(&self, dir: &Path) -> Result<(), RunError> {
        write_json(&dir.join(COMPARE_STATE), self)
    }

    /// Whether `other` takes the same steps (where it trains may differ).
    fn same_steps(&self, other: &Self) -> bool {
        let steps = |s: &Self| {
            TrainingState {
                config: s.config.clone(),
                checkpoint_every: s.checkpoint_every,
                steps_per_epoch: 0,
            }
            .same_steps()
        };
        self.plan == other.plan && self.tolerance == other.tolerance && steps(self) == steps(other)
    }

    /// How this state (a resume's) relates to `saved`. A grid can only
    /// widen a comparison that chose among several learning rates: with
    /// one, its runs trained on the validation rows too.
    pub(super) fn resumes(&self, saved: &Self) -> Resumed {
        if self.same_steps(saved) {
            return Resumed::Same;
        }
        let mut narrowed = self.clone();
        narrowed.plan.lrs = saved.plan.lrs.clone();
        let kept = saved.plan.lrs.iter().all(|lr| self.plan.lrs.contains(lr));
        match (kept && narrowed.same_steps(saved), saved.plan.lrs.len()) {
            (false, _) => Resumed::Other,
            (true, 1) => Resumed::OneLearningRate,
            (true, _) => Resumed::Widened,
        }
    }
}
