//! Adapter checkpoints: the adapters' state and the task's trainable modules
//! (a head), never the frozen base, in burn's burnpack format.

use super::atomic::temp_path;
use crate::adapter::{ADAPTER_STATE, ActiveRank, AdaptedModule};
use burn::module::{Module, ParamGroup};
use burn::store::{BurnpackStore, ModuleSnapshot, ModuleStore, PathFilter};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The adapter checkpoint's file name inside a run's output directory.
pub const ADAPTER_FILE: &str = "adapter.bpk";
/// The report's file name inside a run's output directory.
pub const REPORT_FILE: &str = "report.json";

/// Why a checkpoint could not be saved or loaded.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// File system error while saving.
    #[error("checkpoint {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The file is missing.
    #[error("checkpoint {0} does not exist (train with an output directory first)")]
    Missing(PathBuf),
    /// The file is not a readable checkpoint (truncated, corrupt, another format).
    #[error("checkpoint {path} is not a readable burnpack file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The reader's message.
        reason: String,
    },
    /// The checkpoint does not fit the model (another shape, rank or target set).
    #[error(
        "checkpoint {path} does not fit this model (was it trained with other rank, target or layer settings?): {reason}"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Which tensors are missing, extra or mis-shaped.
        reason: String,
    },
}

/// The regular expressions selecting the saved state: every adapter's
/// [`ADAPTER_STATE`] parameters, and everything under each of `modules`
/// (module paths such as `head`; `head` does not select `lm_head`).
pub fn state_patterns(modules: &[String]) -> Vec<String> {
    let mut patterns = vec![format!(r"(^|\.)({})$", ADAPTER_STATE.join("|"))];
    patterns.extend(
        modules
            .iter()
            .map(|m| format!(r"^{}\.", regex::escape(m.trim_end_matches('.')))),
    );
    patterns
}

fn group(patterns: Vec<String>) -> ParamGroup {
    // The patterns are built from escaped names and a fixed expression.
    ParamGroup::from_any_regexes(patterns).unwrap_or_else(|_| ParamGroup::from_ids(Vec::new()))
}

/// The adapters' trainable factors `A` and `B` (what trains besides the task's modules).
pub fn adapter_group() -> ParamGroup {
    group(vec![r"(^|\.)(lora_a|lora_b)$".to_string()])
}

/// Every parameter under one of `modules` (module paths such as `head`).
pub fn modules_group(modules: &[String]) -> ParamGroup {
    group(state_patterns(modules).split_off(1))
}

/// The saved state: adapters ([`ADAPTER_STATE`]) and `modules`.
pub fn state_group(modules: &[String]) -> ParamGroup {
    group(state_patterns(modules))
}

fn state_filter(modules: &[String]) -> PathFilter {
    PathFilter::new().with_regexes(state_patterns(modules))
}

/// Saves the adapter state of `model` and the parameters of `modules` to
/// `path`, atomically (a temporary file, then a rename): `path` is either the
/// old file or the complete new one.
pub fn save_adapter<M: Module>(
    model: M,
    path: &Path,
    modules: &[String],
) -> Result<(), CheckpointError> {
    let io = |e: &dyn std::fmt::Display| CheckpointError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let tmp = temp_path(path);
    let mut store = BurnpackStore::from_file(&tmp)
        .auto_extension(false)
        .overwrite(true)
        .with_filter(state_filter(modules));
    if let Err(e) = model.save_into(&mut store) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(&e)
    })
}

/// The tensor names a checkpoint holds, sorted.
pub fn checkpoint_names(path: &Path) -> Result<Vec<String>, CheckpointError> {
    if !path.is_file() {
        return Err(CheckpointError::Missing(path.to_path_buf()));
    }
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    let mut names = store.keys().map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    names.sort();
    Ok(names)
}

/// Loads a checkpoint saved by [`save_adapter`] (with the same `modules`)
/// into `model`, whose base and adapter layout must match. A missing,
/// unreadable or mismatched file is an error: every adapter and module tensor
/// the model has must be in the file with its shape, and the file must hold
/// nothing else.
pub fn load_adapter<M: Module>(
    model: M,
    path: &Path,
    modules: &[String],
) -> Result<M, CheckpointError> {
    checkpoint_names(path)?;
    let mismatch = |reason: String| CheckpointError::Mismatch {
        path: path.to_path_buf(),
        reason,
    };
    let filter = state_filter(modules);
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .allow_partial(true)
        .with_filter(filter.clone());
    let mut model = model;
    let result = model
        .load_from(&mut store)
        .map_err(|e| mismatch(e.to_string()))?;
    let mut problems = Vec::new();
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        problems.push(format!("wrong shapes or types: {}", errors.join("; ")));
    }
    // burn-store lists every absent parameter, selected or not.
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| filter.matches(p))
        .collect();
    if !missing.is_empty() {
        problems.push(format!("the model has tensors the file lacks: {missing:?}"));
    }
    if !result.unused.is_empty() {
        problems.push(format!(
            "the file has tensors the model lacks: {:?}",
            result.unused
        ));
    }
    if problems.is_empty() {
        // The active diagonals follow the loaded training `P`.
        model
            .with_active_rank(ActiveRank::Train)
            .map_err(|e| mismatch(e.to_string()))
    } else {
        Err(mismatch(problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_select_adapter_state_and_whole_modules_only() {
        let re: Vec<regex::Regex> = state_patterns(&["head".to_string()])
            .iter()
            .map(|p| regex::Regex::new(p).unwrap())
            .collect();
        let selected = |path: &str| re.iter().any(|r| r.is_match(path));
        for yes in [
            "encoder.layers.0.attention.query.Adapted.adapter.lora_a",
            "fc1.weight.matryoshka.lora_b",
            "x.p_train",
            "x.rank_scale",
            "head.weight",
            "head.bias",
        ] {
            assert!(selected(yes), "{yes}");
        }
        for no in [
            "lm_head.weight",
            "heads.weight",
            "encoder.layers.0.attention.query.Adapted.adapter.p",
            "x.grad_mask",
            "x.lora_a_extra",
            "encoder.layers.0.attention.query.Adapted.base.weight",
        ] {
            assert!(!selected(no), "{no}");
        }
    }
}
