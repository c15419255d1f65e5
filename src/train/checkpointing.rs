//! Training checkpoints through burn-train's checkpointers: the model's
//! adapter state (never the frozen base), the optimizer and the schedule,
//! every segment, with the run's settings beside them to resume it.

use super::config::TrainConfig;
use super::segments::Segments;
use crate::io::checkpoint::state_patterns_under;
use crate::io::write_atomic;
use crate::report::RunConfig;
use burn::store::ModuleRecord;
use burn::train::checkpoint::{Checkpointer, CheckpointerError};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The hidden directory of a run's training checkpoints, inside its output
/// directory (removed once the run's outputs are saved).
pub const TRAINING_DIR: &str = ".training";
/// The settings of a checkpointed run, inside [`TRAINING_DIR`].
pub const TRAINING_STATE: &str = "run.json";
/// burn-train's checkpoint directory, inside [`TRAINING_DIR`].
pub const CHECKPOINT_SUBDIR: &str = "checkpoint";

/// What a checkpointed run is: enough to resume it without any other input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Every setting (task's and training's).
    pub config: RunConfig,
    /// Steps per segment (`None`: per epoch).
    pub checkpoint_every: Option<usize>,
    /// Optimiser steps per epoch (sizes the segments).
    pub steps_per_epoch: usize,
}

impl TrainingState {
    /// The segments of the run.
    pub fn segments(&self, train: &TrainConfig) -> Segments {
        Segments {
            steps_per_epoch: self.steps_per_epoch,
            epochs: train.epochs,
            every: self.checkpoint_every,
        }
    }

    /// The state with where the run trains left out (backend, devices,
    /// strategy, accumulation): two states equal here take the same steps,
    /// so a run may resume on other devices.
    pub fn same_steps(mut self) -> Self {
        let defaults = TrainConfig::default();
        let train = &mut self.config.train;
        train.backend = defaults.backend;
        train.devices = defaults.devices;
        train.strategy = defaults.strategy;
        train.grad_accum = defaults.grad_accum;
        self
    }

    /// Reads `dir/.training/run.json`, if there is one.
    pub fn read(dir: &Path) -> Result<Option<Self>, String> {
        let path = dir.join(TRAINING_DIR).join(TRAINING_STATE);
        crate::io::read_json_if_exists(&path, "a training state")
    }

    /// Writes `dir/.training/run.json` (creating the directory), atomically.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let training = dir.join(TRAINING_DIR);
        std::fs::create_dir_all(training.join(CHECKPOINT_SUBDIR))?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(&training.join(TRAINING_STATE), &json)
    }
}

/// The last segment (from 1, burn-train's epoch number) whose model,
/// optimizer and scheduler checkpoints are all in `dir/.training/checkpoint`.
pub fn last_checkpoint(dir: &Path) -> Option<usize> {
    let checkpoints = dir.join(TRAINING_DIR).join(CHECKPOINT_SUBDIR);
    let entries = std::fs::read_dir(&checkpoints).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("model-")?
                .strip_suffix(".bpk")?
                .parse::<usize>()
                .ok()
        })
        .filter(|epoch| {
            ["optim", "scheduler"]
                .iter()
                .all(|kind| checkpoints.join(format!("{kind}-{epoch}.bpk")).is_file())
        })
        .max()
}

/// A burn-train model checkpointer that keeps only the adapters' state and
/// the task's trainable modules of the learner's model record (the frozen
/// base is rebuilt from its own weights when a run resumes).
pub struct AdapterStateCheckpointer {
    dir: PathBuf,
    keep: Vec<Regex>,
}

impl AdapterStateCheckpointer {
    /// Checkpoints in `dir` (`model-{epoch}.bpk`) of the adapter state and of
    /// `modules`, for a task held at `task.` in the learner's model.
    pub fn new(dir: &Path, modules: &[String]) -> Self {
        Self {
            dir: dir.to_path_buf(),
            keep: state_patterns_under("task.", modules)
                .iter()
                .filter_map(|p| Regex::new(p).ok())
                .collect(),
        }
    }

    fn path(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("model-{epoch}.bpk"))
    }
}

fn unknown(e: impl std::fmt::Display) -> CheckpointerError {
    CheckpointerError::Unknown(e.to_string())
}

impl Checkpointer<ModuleRecord> for AdapterStateCheckpointer {
    fn save(&self, epoch: usize, record: ModuleRecord) -> Result<(), CheckpointerError> {
        let bytes = record.into_bytes().map_err(CheckpointerError::Record)?;
        let tensors: Vec<burn_pack::Tensor> = burn_pack::Reader::from_bytes(bytes)
            .and_then(|r| r.into_tensors())
            .map_err(unknown)?
            .into_iter()
            .filter(|t| self.keep.iter().any(|re| re.is_match(&t.name)))
            .collect();
        std::fs::create_dir_all(&self.dir).map_err(CheckpointerError::IOError)?;
        // Written to a scratch file, synced and renamed into place.
        burn_pack::Writer::new(tensors)
            .auto_extension(false)
            .overwrite(true)
            .write_to_file(self.path(epoch))
            .map_err(unknown)
    }

    fn delete(&self, epoch: usize) -> Result<(), CheckpointerError> {
        match std::fs::remove_file(self.path(epoch)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CheckpointerError::IOError(e)),
        }
    }

    fn restore(&self, epoch: usize) -> Result<ModuleRecord, CheckpointerError> {
        Ok(ModuleRecord::load(self.path(epoch))
            .map_err(CheckpointerError::Record)?
            .allow_partial(true))
    }
}
