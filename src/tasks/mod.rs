//! The crate's own tasks, each an instance of [`Task`](crate::train::Task)
//! trained and evaluated by the one [`Runner`](crate::train::Runner).

pub mod causal_lm;
pub mod classify;

use crate::adapter::AdapterError;
use crate::models::LoadError;
use crate::train::{RunError, Setting};

/// The setting a model-loading error is about.
pub(crate) fn load_error(e: LoadError) -> RunError {
    let setting = match &e {
        LoadError::TooManyLayers { .. } => Setting::Task("layers"),
        LoadError::Adapter(
            AdapterError::NoTargetMatched { .. }
            | AdapterError::UnmatchedTargets { .. }
            | AdapterError::InvalidTargets(_),
        ) => Setting::Targets,
        LoadError::Adapter(AdapterError::RankAboveLayer { .. }) => Setting::Rank,
        LoadError::Adapter(_) => Setting::Ranks,
        _ => Setting::Task("model"),
    };
    RunError::invalid(setting, e)
}

/// `--train-n 0` or `--test-n 0`: a split without rows trains or measures
/// nothing, an error naming the setting.
pub(crate) fn check_split_sizes(
    train_n: Option<usize>,
    test_n: Option<usize>,
) -> Result<(), RunError> {
    for (key, n) in [("train_n", train_n), ("test_n", test_n)] {
        if n == Some(0) {
            return Err(RunError::invalid(
                Setting::Task(key),
                "must be at least 1 (a split without rows trains or measures nothing)",
            ));
        }
    }
    Ok(())
}
