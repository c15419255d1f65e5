//! How the command line fails: bad input names its flag and exits 2, a run
//! stopped by Ctrl-C exits 130 saying how to resume, anything else exits 1.

use matryoshka_lora::train::{FitError, RunError, Setting};
use std::path::Path;

/// A CLI failure: bad input exits 2, failures while running exit 1.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

/// The flag that sets `setting` (its config key when no flag does).
pub fn flag(setting: Setting) -> &'static str {
    match setting {
        Setting::Targets => "--targets",
        Setting::Method => "--method",
        Setting::HeadMode => "--head-mode",
        Setting::Rank => "--rank",
        Setting::Ranks => "--ranks",
        Setting::RankSamples => "--rank-samples",
        Setting::Scaling => "--scaling",
        Setting::Lr => "--lr",
        Setting::WeightDecay => "--weight-decay",
        Setting::WarmupSteps => "--warmup",
        Setting::GradClip => "--grad-clip",
        Setting::Batch => "--batch",
        Setting::EvalBatch => "--eval-batch",
        Setting::Epochs => "--epochs",
        Setting::Seed => "--seed",
        Setting::Backend => "--backend",
        Setting::Devices => "--devices",
        Setting::Strategy => "--strategy",
        Setting::GradAccum => "--grad-accum",
        Setting::Output => "--out",
        Setting::Task(key) => match key {
            "model" => "--model",
            "data" => "--data",
            "test_data" => "--test-data",
            "text_col" => "--text-col",
            "label_col" => "--label-col",
            "labels" => "--labels",
            "test_every" => "--test-every",
            "train_n" => "--train-n",
            "test_n" => "--test-n",
            "max_len" => "--max-len",
            "prompt_field" => "--prompt-field",
            "response_field" => "--response-field",
            "group_field" => "--group-field",
            "max_new_tokens" => "--max-new-tokens",
            "gen_batch" => "--gen-batch",
            "base_dtype" => "--base-dtype",
            "config" => "--config",
            "seq" => "--seq",
            "steps" => "--steps",
            "layers" => "--layers",
            "adapter" => "--adapter",
            "peft" => "--peft",
            "init_adapter" => "--init-adapter",
            other => other,
        },
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        match e.setting() {
            Some(setting) => bad(flag(setting), e.reason()),
            None => Failure {
                code: 1,
                message: e.to_string(),
            },
        }
    }
}

pub fn bad(flag: &str, message: impl std::fmt::Display) -> Failure {
    Failure {
        code: 2,
        message: format!("{flag}: {message}"),
    }
}

/// A run stopped before its end (Ctrl-C) says how to continue it, exit
/// code 130; any other error as usual. `dir`: the run's (or, for a
/// comparison, the comparison's) output directory.
pub fn stopped(error: RunError, dir: Option<&Path>) -> Failure {
    let is_stop = |e: &RunError| matches!(e, RunError::Fit(FitError::Interrupted { .. }));
    let run_dir = match &error {
        RunError::Comparison { failed, source, .. } if is_stop(source) => {
            dir.map(|d| d.join(failed))
        }
        e if is_stop(e) => dir.map(Path::to_path_buf),
        _ => return error.into(),
    };
    let hint = match run_dir {
        Some(d) => format!("; continue it with: mlora train --resume {}", d.display()),
        None => " (without --out there is no checkpoint to resume from)".to_string(),
    };
    Failure {
        code: 130,
        message: format!("{error}{hint}"),
    }
}

/// [`stopped`] for a comparison over runs: one stopped with `--out` goes on
/// with `mlora compare --resume OUT`.
pub fn compare_stopped(error: RunError, out: Option<&Path>) -> Failure {
    let is_stop = |e: &RunError| matches!(e, RunError::Fit(FitError::Interrupted { .. }));
    let stop = match &error {
        RunError::Comparison { source, .. } => is_stop(source),
        e => is_stop(e),
    };
    if !stop {
        return error.into();
    }
    let hint = match out {
        Some(d) => format!(
            "; the finished runs are kept, continue it with: mlora compare --resume {}",
            d.display()
        ),
        None => " (without --out nothing is kept to resume from)".to_string(),
    };
    Failure {
        code: 130,
        message: format!("{error}{hint}"),
    }
}
