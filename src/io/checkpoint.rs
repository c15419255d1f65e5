//! Adapter checkpoints: the adapters' state and the task's trainable modules
//! (a head), never the frozen base, as safetensors with metadata that says
//! what they were trained with; the metadata is checked when they are loaded.

use super::atomic::{make_readable, sync_parent, temp_path};
use crate::adapter::{ADAPTER_STATE, ActiveRank, AdaptedModule, Scaling};
use crate::train::TrainMethod;
use burn::module::{Module, ParamGroup};
use burn::store::{BurnpackStore, ModuleSnapshot, ModuleStore, PathFilter, SafetensorsStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The adapter checkpoint's file name inside a run's output directory.
pub const ADAPTER_FILE: &str = "adapter.safetensors";
/// The checkpoint file of runs saved before safetensors (still loaded).
pub const LEGACY_ADAPTER_FILE: &str = "adapter.bpk";
/// The report's file name inside a run's output directory.
pub const REPORT_FILE: &str = "report.json";
/// The safetensors metadata key holding [`AdapterMeta`] as JSON.
pub const METADATA_KEY: &str = "matryoshka_lora";
/// The version of the checkpoint layout this crate writes.
pub const FORMAT_VERSION: u32 = 1;

/// What an adapter checkpoint was trained with, stored in its safetensors
/// metadata (`__metadata__["matryoshka_lora"]`, JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterMeta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// The crate version that wrote it.
    pub crate_version: String,
    /// The task (`classify`).
    pub task: String,
    /// The training method (defines the saved `P`).
    pub method: TrainMethod,
    /// `R`.
    pub max_rank: usize,
    /// `S`.
    pub ranks: Vec<usize>,
    /// The scaling rule.
    pub scaling: Scaling,
    /// The adapter targets (module names).
    pub targets: Vec<String>,
    /// Each adapter's module path in the file -> the module's name in the base
    /// model (its Hugging Face path, e.g. `encoder.layer.0.attention.self.query`).
    pub modules: BTreeMap<String, String>,
    /// Module paths trained in full beside the adapters and saved with them.
    pub trainable_modules: Vec<String>,
    /// A fingerprint of the base model (sha256 of its `config.json`), if the task has one.
    pub base_model: Option<String>,
    /// What the task learned from its data (e.g. `{"labels": [...]}`).
    pub task_info: Value,
    /// Every setting of the run (`report.json`'s `config`).
    pub config: Value,
}

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
    #[error("checkpoint {0} does not exist (train with an output directory first)")]
    Missing(PathBuf),
    /// The file is not a readable checkpoint (truncated, corrupt, another format).
    #[error("checkpoint {path} is not a readable adapter file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The reader's message.
        reason: String,
    },
    /// The checkpoint was trained with another setting than the model it is
    /// loaded onto.
    #[error("checkpoint {path} was trained with {field} = {saved}, but this model has {expected}")]
    Field {
        /// The metadata field.
        field: &'static str,
        /// Its saved value.
        saved: String,
        /// The model's value.
        expected: String,
        /// The file.
        path: PathBuf,
    },
    /// The model has adapter or module tensors the file lacks.
    #[error("checkpoint {path} lacks tensors this model has: {names:?}")]
    MissingTensors {
        /// The file.
        path: PathBuf,
        /// The tensors.
        names: Vec<String>,
    },
    /// The file has tensors the model lacks.
    #[error("checkpoint {path} has tensors this model lacks: {names:?}")]
    UnexpectedTensors {
        /// The file.
        path: PathBuf,
        /// The tensors.
        names: Vec<String>,
    },
    /// Tensors whose shapes or types differ from the model's.
    #[error("checkpoint {path} has tensors of other shapes than this model's: {details}")]
    WrongShapes {
        /// The file.
        path: PathBuf,
        /// Which, and how.
        details: String,
    },
}

/// The regular expressions selecting the saved state: every adapter's
/// [`ADAPTER_STATE`] parameters, and everything under each of `modules`
/// (module paths such as `head`; `head` does not select `lm_head`).
pub fn state_patterns(modules: &[String]) -> Vec<String> {
    state_patterns_under("", modules)
}

/// [`state_patterns`] for a model held at module path `prefix` (e.g. `task.`
/// inside burn-train's learner model).
pub fn state_patterns_under(prefix: &str, modules: &[String]) -> Vec<String> {
    let mut patterns = vec![format!(r"(^|\.)({})$", ADAPTER_STATE.join("|"))];
    patterns.extend(modules.iter().map(|m| {
        format!(
            r"^{}{}\.",
            regex::escape(prefix),
            regex::escape(m.trim_end_matches('.'))
        )
    }));
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

/// The path filter selecting the saved state ([`state_patterns`]).
pub fn state_filter(modules: &[String]) -> PathFilter {
    PathFilter::new().with_regexes(state_patterns(modules))
}

fn io_error(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> CheckpointError + '_ {
    move |e| CheckpointError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Saves the adapter state of `model` and the parameters of
/// `meta.trainable_modules` to `path` as safetensors with `meta` in its
/// metadata, atomically (temporary file, fsync, rename, directory fsync).
pub fn save_adapter<M: Module>(
    model: M,
    path: &Path,
    meta: &AdapterMeta,
) -> Result<(), CheckpointError> {
    let io = io_error(path);
    let json = serde_json::to_string(meta).map_err(|e| io(&e))?;
    let tmp = temp_path(path);
    let mut store = SafetensorsStore::from_file(&tmp)
        .overwrite(true)
        .filter(state_filter(&meta.trainable_modules))
        .metadata(METADATA_KEY, json);
    let written = model
        .save_into(&mut store)
        .map_err(|e| io(&e))
        .and_then(|_| {
            make_readable(&tmp)
                .and_then(|_| std::fs::File::open(&tmp))
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&e))
        })
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| io(&e)))
        .and_then(|_| sync_parent(path).map_err(|e| io(&e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The safetensors header of `path`: tensor names and `__metadata__`,
/// read without the tensor data.
fn read_header(path: &Path) -> Result<(Vec<String>, BTreeMap<String, String>), CheckpointError> {
    if !path.is_file() {
        return Err(CheckpointError::Missing(path.to_path_buf()));
    }
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path)(&e))?;
    let file_len = file.metadata().map_err(|e| io_error(path)(&e))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| corrupt("shorter than a safetensors header".into()))?;
    let len = u64::from_le_bytes(len);
    if len > file_len.saturating_sub(8) || len > 100 << 20 {
        return Err(corrupt(format!(
            "header length {len} does not fit the file ({file_len} bytes)"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| corrupt(e.to_string()))?;
    let header: BTreeMap<String, Value> =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("header: {e}")))?;
    let mut names = Vec::new();
    let mut metadata = BTreeMap::new();
    let mut data_end = 0u64;
    for (name, value) in header {
        if name == "__metadata__" {
            metadata = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        } else {
            let end = value["data_offsets"][1].as_u64().unwrap_or(u64::MAX);
            data_end = data_end.max(end);
            names.push(name);
        }
    }
    if 8 + len + data_end > file_len {
        return Err(corrupt(format!(
            "truncated: its tensors need {} bytes, the file has {file_len}",
            8 + len + data_end
        )));
    }
    names.sort();
    Ok((names, metadata))
}

/// The tensor names a checkpoint holds, sorted (safetensors or legacy burnpack).
pub fn checkpoint_names(path: &Path) -> Result<Vec<String>, CheckpointError> {
    if path.extension().is_some_and(|e| e == "bpk") {
        if !path.is_file() {
            return Err(CheckpointError::Missing(path.to_path_buf()));
        }
        let mut store = BurnpackStore::from_file(path).auto_extension(false);
        let mut names = store.keys().map_err(|e| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        names.sort();
        return Ok(names);
    }
    Ok(read_header(path)?.0)
}

/// The metadata a checkpoint was saved with.
pub fn read_meta(path: &Path) -> Result<AdapterMeta, CheckpointError> {
    let (_, metadata) = read_header(path)?;
    let json = metadata
        .get(METADATA_KEY)
        .ok_or_else(|| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("no `{METADATA_KEY}` metadata: not an adapter written by this crate"),
        })?;
    serde_json::from_str(json).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("`{METADATA_KEY}` metadata: {e}"),
    })
}

/// Checks the fields of `saved` that must equal the model's (`expected`).
fn check_meta(
    path: &Path,
    saved: &AdapterMeta,
    expected: &AdapterMeta,
) -> Result<(), CheckpointError> {
    let field = |field: &'static str, saved: String, expected: String| {
        if saved == expected {
            Ok(())
        } else {
            Err(CheckpointError::Field {
                field,
                saved,
                expected,
                path: path.to_path_buf(),
            })
        }
    };
    field("task", saved.task.clone(), expected.task.clone())?;
    if let (Some(s), Some(e)) = (&saved.base_model, &expected.base_model) {
        field("base model (sha256 of config.json)", s.clone(), e.clone())?;
    }
    field(
        "max rank R",
        json(&saved.max_rank),
        json(&expected.max_rank),
    )?;
    field("ranks S", json(&saved.ranks), json(&expected.ranks))?;
    field(
        "scaling",
        saved.scaling.to_string(),
        expected.scaling.to_string(),
    )?;
    let names = |m: &AdapterMeta| json(&m.modules.values().collect::<Vec<_>>());
    field("adapted modules", names(saved), names(expected))?;
    field(
        "trainable modules",
        json(&saved.trainable_modules),
        json(&expected.trainable_modules),
    )?;
    field(
        "task data",
        json(&saved.task_info),
        json(&expected.task_info),
    )
}

/// A value as compact JSON, for messages.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Loads a checkpoint saved by [`save_adapter`] into `model`, after checking
/// its metadata against `expected` (the model's): task, base model, method,
/// `R`, `S`, scaling, adapted modules, trainable modules and the task's data
/// (label names) must be equal, else [`CheckpointError::Field`] names the first that
/// differs. Then every adapter and module tensor of the model must be in the
/// file with its shape, and the file must hold nothing else. The active
/// diagonals are set to the loaded training `P`.
pub fn load_adapter<M: Module>(
    model: M,
    path: &Path,
    expected: &AdapterMeta,
) -> Result<M, CheckpointError> {
    let saved = read_meta(path)?;
    check_meta(path, &saved, expected)?;
    let mut store = SafetensorsStore::from_file(path)
        .allow_partial(true)
        .filter(state_filter(&saved.trainable_modules));
    apply(model, &mut store, path, &saved.trainable_modules)
}

/// Loads only the trainable state (every adapter's `A` and `B`, and the
/// parameters of `modules`) from the safetensors `bytes` (named as the
/// crate saves adapters) into `model`, leaving its `P` and other constants
/// as they are: a starting point for training with another method, or an
/// imported adapter. Every `A`, `B` and module tensor of the model must be
/// there with its shape; other tensors are ignored. `source` names the data
/// in errors.
pub fn load_trainable<M: Module>(
    model: M,
    bytes: Vec<u8>,
    source: &Path,
    modules: &[String],
) -> Result<M, CheckpointError> {
    let mut patterns = vec![r"(^|\.)(lora_a|lora_b)$".to_string()];
    patterns.extend(state_patterns(modules).split_off(1));
    let filter = PathFilter::new().with_regexes(patterns);
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .allow_partial(true)
        .filter(filter.clone());
    // The file may hold other tensors (P, constants): they are not used.
    let (model, _unused) = load_selected(model, &mut store, source, &filter)?;
    Ok(model)
}

/// Loads a checkpoint written by earlier versions (`adapter.bpk`, burnpack,
/// no metadata) into `model`: tensors must match as in [`load_adapter`].
pub fn load_legacy_adapter<M: Module>(
    model: M,
    path: &Path,
    modules: &[String],
) -> Result<M, CheckpointError> {
    checkpoint_names(path)?;
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .allow_partial(true)
        .with_filter(state_filter(modules));
    apply(model, &mut store, path, modules)
}

/// Loads the tensors of `store` that `filter` selects into `model`: every
/// selected parameter of the model must be there with its shape. Returns the
/// model and the store's tensors no parameter took.
fn load_selected<M: Module, S: ModuleStore>(
    model: M,
    store: &mut S,
    path: &Path,
    filter: &PathFilter,
) -> Result<(M, Vec<String>), CheckpointError> {
    let mut model = model;
    let wrong = |details: String| CheckpointError::WrongShapes {
        path: path.to_path_buf(),
        details,
    };
    let result = model.load_from(store).map_err(|e| wrong(e.to_string()))?;
    if !result.errors.is_empty() {
        let details: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(wrong(details.join("; ")));
    }
    // burn-store lists every absent parameter, selected or not.
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| filter.matches(p))
        .collect();
    if !missing.is_empty() {
        return Err(CheckpointError::MissingTensors {
            path: path.to_path_buf(),
            names: missing,
        });
    }
    Ok((model, result.unused))
}

fn apply<M: Module, S: ModuleStore>(
    model: M,
    store: &mut S,
    path: &Path,
    modules: &[String],
) -> Result<M, CheckpointError> {
    let (model, unused) = load_selected(model, store, path, &state_filter(modules))?;
    if !unused.is_empty() {
        return Err(CheckpointError::UnexpectedTensors {
            path: path.to_path_buf(),
            names: unused,
        });
    }
    // The active diagonals follow the loaded training `P`.
    model
        .with_active_rank(ActiveRank::Train)
        .map_err(|e| CheckpointError::WrongShapes {
            path: path.to_path_buf(),
            details: e.to_string(),
        })
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
