//! `report.json`: what one run measured, and every setting it used.

use crate::aurac::aurac_both;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// The settings of a text-classification run (everything needed to repeat it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Model directory (config.json, model.safetensors, tokenizer.json).
    pub model: String,
    /// Data CSV (plain or .bz2).
    pub data: String,
    /// Separate test CSV, if any.
    pub test_data: Option<String>,
    /// Text column.
    pub text_col: String,
    /// Label column.
    pub label_col: String,
    /// Label set (label id = position); `None`: inferred.
    pub labels: Option<Vec<String>>,
    /// Row `i` is test if `i % test_every == 0`.
    pub test_every: usize,
    /// First `n` train rows.
    pub train_n: Option<usize>,
    /// First `n` test rows.
    pub test_n: Option<usize>,
    /// Token truncation length.
    pub max_len: usize,
    /// Keep only the first `n` encoder layers (`None`: all).
    pub layers: Option<usize>,
    /// Adapter targets (Hugging Face module names).
    pub targets: Vec<String>,
    /// Training method name.
    pub method: String,
    /// Head mode name.
    pub head_mode: String,
    /// Maximum rank `R`.
    pub rank: usize,
    /// Nested ranks `S`.
    pub ranks: Vec<usize>,
    /// Scaling rule.
    pub scaling: String,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// Warmup steps.
    pub warmup_steps: usize,
    /// Gradient-norm clip (`None`: off).
    pub grad_clip: Option<f32>,
    /// Batch size (training).
    pub batch: usize,
    /// Batch size (evaluation).
    pub eval_batch: usize,
    /// Epochs.
    pub epochs: usize,
    /// Seed.
    pub seed: u64,
    /// Backend name.
    pub backend: String,
}

/// The measured outcome of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `lora`, `dylora`, `matryoshka` or `matryoshka-exact`.
    pub method: String,
    /// `joint` or `probe`.
    pub head_mode: String,
    /// `R`.
    pub max_rank: usize,
    /// `S`, ascending.
    pub ranks: Vec<usize>,
    /// Test accuracy (%) at each rank.
    pub accuracy: Vec<f64>,
    /// Test loss at each rank.
    pub loss: Vec<f64>,
    /// AURAC on the log2 axis (%).
    pub aurac_log2: f64,
    /// AURAC on the linear axis (%).
    pub aurac_linear: f64,
    /// Scaling rule.
    pub scaling: String,
    /// Seed.
    pub seed: u64,
    /// Optimiser steps taken.
    pub train_steps: usize,
    /// Wall milliseconds per training step (training split time / steps).
    pub ms_per_step: f64,
    /// Wall seconds of the final per-rank evaluation (all ranks).
    pub eval_seconds: f64,
    /// Peak resident memory of the run (MiB).
    pub peak_rss_mb: f64,
    /// Every setting used.
    pub config: RunConfig,
}

impl Report {
    /// Recomputes both AURACs from `ranks` and `accuracy`.
    pub fn recomputed_aurac(&self) -> Result<(f64, f64)> {
        aurac_both(&self.ranks, &self.accuracy)
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
