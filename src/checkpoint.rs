//! Adapter checkpoints (adapter state only, separate from the frozen base) and
//! atomic file writes.

use burn::module::{Module, ParamGroup};
use burn::store::ModuleRecord;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The adapter checkpoint's file name inside an output directory.
pub const ADAPTER_FILE: &str = "adapter.bpk";

/// Why a checkpoint could not be saved or loaded.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// File system error.
    #[error("checkpoint {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The file is missing.
    #[error("checkpoint {0} does not exist (train with --out DIR first)")]
    Missing(PathBuf),
    /// The checkpoint does not fit the model (another shape, rank or target set).
    #[error(
        "checkpoint {path} does not fit this model: {reason} (was it trained with other --rank/--targets/--layers settings?)"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// burn's message.
        reason: String,
    },
}

/// The trainable state of a run: adapter factors, their constants, and the head.
pub fn adapter_group() -> ParamGroup {
    ParamGroup::from_any_predicates(vec!["lora_a", "lora_b", "p_train", "rank_scale", "head."])
}

/// Writes `bytes` to `path` through a temporary file and a rename, so `path`
/// is either the old file or the complete new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Saves the adapter state of `model` ([`adapter_group`]) to `path`, atomically.
pub fn save_adapter<M: Module>(model: M, path: &Path) -> Result<(), CheckpointError> {
    let io = |e: &dyn std::fmt::Display| CheckpointError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let tmp = temp_path(path);
    model
        .into_record_group(adapter_group())
        .save(&tmp)
        .map_err(|e| io(&format!("{e:?}")))?;
    std::fs::rename(&tmp, path).map_err(|e| io(&e))
}

/// Loads adapter state saved by [`save_adapter`] into `model` (whose base and
/// adapter layout must match). Errors, leaving nothing changed, on a missing,
/// corrupt or mismatched file.
pub fn load_adapter<M: Module>(model: M, path: &Path) -> Result<M, CheckpointError> {
    if !path.is_file() {
        return Err(CheckpointError::Missing(path.to_path_buf()));
    }
    let record = ModuleRecord::load(path).map_err(|e| CheckpointError::Io {
        path: path.to_path_buf(),
        reason: format!("not a readable burnpack checkpoint: {e:?}"),
    })?;
    model
        .try_load_record(record.allow_partial(true))
        .map_err(|e| CheckpointError::Mismatch {
            path: path.to_path_buf(),
            reason: format!("{e:?}"),
        })
}
