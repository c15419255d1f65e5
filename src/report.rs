//! `report.json`: what one run measured, and every setting it used.

use crate::adapter::{AdapterError, Scaling, aurac_both};
use crate::train::{HeadMode, SplitSummary, TrainConfig, TrainMethod};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Every setting of a run: the training settings and the task's own
/// (serialised side by side in one object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Method, ranks, optimiser, batches, seed, backend.
    #[serde(flatten)]
    pub train: TrainConfig,
    /// The task's settings ([`Task::settings`](crate::train::Task::settings)),
    /// e.g. the classifier's model, data and columns.
    #[serde(flatten)]
    pub task: Map<String, Value>,
}

impl RunConfig {
    /// The task's settings as the task's own settings type.
    pub fn task_settings<C: serde::de::DeserializeOwned>(&self) -> Result<C, serde_json::Error> {
        serde_json::from_value(Value::Object(self.task.clone()))
    }
}

fn classify() -> String {
    "classify".into()
}

fn accuracy() -> String {
    "accuracy".into()
}

/// The measured outcome of one run.
///
/// Per-rank figures are top-level keys, one value per rank of `ranks`: `loss`
/// and the task's score (`accuracy` for classification), plus any metric of
/// the task's own evaluation. AURAC is computed over `aurac_metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The task (`classify`).
    #[serde(default = "classify")]
    pub task: String,
    /// The training method.
    pub method: TrainMethod,
    /// The head mode.
    pub head_mode: HeadMode,
    /// `R`.
    pub max_rank: usize,
    /// `S`, ascending.
    pub ranks: Vec<usize>,
    /// Per-rank series by name (`accuracy`, `loss`, ...), one value per rank.
    #[serde(flatten)]
    pub per_rank: BTreeMap<String, Vec<f64>>,
    /// The per-rank series AURAC integrates and the plot draws.
    #[serde(default = "accuracy")]
    pub aurac_metric: String,
    /// AURAC on the log2 axis (%).
    pub aurac_log2: f64,
    /// AURAC on the linear axis (%).
    pub aurac_linear: f64,
    /// Scaling rule.
    pub scaling: Scaling,
    /// Seed.
    pub seed: u64,
    /// Optimiser steps taken (0 for an evaluation only).
    pub train_steps: usize,
    /// Wall milliseconds per training step (training split time / steps).
    pub ms_per_step: f64,
    /// Wall seconds of the final per-rank evaluation (all ranks).
    pub eval_seconds: f64,
    /// Peak resident memory of the run (MiB).
    pub peak_rss_mb: f64,
    /// The smallest rank whose score is within a tolerance of the best rank's:
    /// the cheapest adapter that gives up (almost) nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smallest_rank_within: Option<RankWithin>,
    /// What the task learned from its data (the classifier's `labels`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub task_info: Map<String, Value>,
    /// What the task said about its splits: per-label counts, test rows
    /// that also occur in training, the majority-class accuracy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<SplitSummary>,
    /// Every setting used.
    pub config: RunConfig,
    /// One record per evaluated example and rank (the causal LM's
    /// generations), saved beside the report as the task's records file,
    /// not in `report.json`.
    #[serde(skip)]
    pub records: Vec<Value>,
}

/// The deployment answer of a rank-accuracy curve: the smallest rank `k` of
/// `S` whose score is within `tolerance` points of the best rank's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankWithin {
    /// The smallest such rank.
    pub rank: usize,
    /// Its score (accuracy for classification, %).
    pub value: f64,
    /// The best rank.
    pub best_rank: usize,
    /// The best score.
    pub best_value: f64,
    /// The tolerance (points).
    pub tolerance: f64,
}

impl RankWithin {
    /// The tolerance reports use unless told otherwise (points).
    pub const DEFAULT_TOLERANCE: f64 = 1.0;

    /// The smallest rank of `ranks` (ascending) whose `scores` entry is
    /// within `tolerance` of the best (the first best on ties); `None` for
    /// no ranks or a non-finite score.
    pub fn of(ranks: &[usize], scores: &[f64], tolerance: f64) -> Option<Self> {
        if ranks.is_empty() || ranks.len() != scores.len() || scores.iter().any(|s| !s.is_finite())
        {
            return None;
        }
        let (best, &best_value) =
            scores
                .iter()
                .enumerate()
                .fold((0, &f64::NEG_INFINITY), |acc, (i, s)| {
                    if s > acc.1 { (i, s) } else { acc }
                });
        let i = scores.iter().position(|&s| s >= best_value - tolerance)?;
        Some(Self {
            rank: ranks[i],
            value: scores[i],
            best_rank: ranks[best],
            best_value,
            tolerance,
        })
    }
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a report.
    #[error("{path} is not a report.json: {source}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// The parser's message.
        source: serde_json::Error,
    },
}

impl Report {
    /// Reads a `report.json`.
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads the reports of a file holding one report or an array of them.
    pub fn read_many(path: &Path) -> Result<Vec<Self>, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str::<Vec<Report>>(&text).or_else(|_| {
            serde_json::from_str::<Report>(&text)
                .map(|r| vec![r])
                .map_err(|source| ReportError::Parse {
                    path: path.to_path_buf(),
                    source,
                })
        })
    }

    /// The per-rank series `name`, if the report has it.
    pub fn series(&self, name: &str) -> Option<&[f64]> {
        self.per_rank.get(name).map(Vec::as_slice)
    }

    /// The per-rank series AURAC is computed over (empty if absent).
    pub fn curve(&self) -> &[f64] {
        self.series(&self.aurac_metric).unwrap_or(&[])
    }

    /// [`RankWithin`] of this report's curve with `tolerance`.
    pub fn smallest_rank_within(&self, tolerance: f64) -> Option<RankWithin> {
        RankWithin::of(&self.ranks, self.curve(), tolerance)
    }

    /// Recomputes both AURACs from `ranks` and [`Report::curve`].
    pub fn recomputed_aurac(&self) -> Result<(f64, f64), AdapterError> {
        aurac_both(&self.ranks, self.curve())
    }
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Resets the peak RSS counter (Linux: `5` to `/proc/self/clear_refs`), so that
/// [`peak_rss_mb`] measures from now on. Best effort.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_rank_within_the_tolerance_of_the_best() {
        let ranks = [1, 2, 4, 8, 16, 32];
        let acc = [65.6, 66.2, 67.8, 71.5, 74.0, 76.2];
        let w = RankWithin::of(&ranks, &acc, 1.0).unwrap();
        assert_eq!((w.rank, w.best_rank), (32, 32));
        let w = RankWithin::of(&ranks, &acc, 2.5).unwrap();
        assert_eq!((w.rank, w.value), (16, 74.0));
        // DyLoRA's curve peaks early: rank 4 is the best, rank 1 within 2.2
        let dylora = [76.2, 77.2, 78.4, 77.8, 77.7, 76.4];
        let w = RankWithin::of(&ranks, &dylora, 2.2).unwrap();
        assert_eq!((w.rank, w.best_rank, w.best_value), (1, 4, 78.4));
        // rank 2 (77.2) is 1.2 below the best: outside 1.0, inside 1.3
        assert_eq!(RankWithin::of(&ranks, &dylora, 1.0).unwrap().rank, 4);
        assert_eq!(RankWithin::of(&ranks, &dylora, 1.3).unwrap().rank, 2);
        assert!(RankWithin::of(&[], &[], 1.0).is_none());
        assert!(RankWithin::of(&[1, 2], &[f64::NAN, 1.0], 1.0).is_none());
    }
}
