//! Running a comparison: every run saved as it finishes, and a comparison
//! cut short (Ctrl-C, a kill, the end of a sitting) resumed where it stopped.
//!
//! The directory of a comparison:
//!
//! - `compare-plan.json`: the plan and every setting ([`CompareState`]),
//!   written first; `--resume` must find the same, or more learning rates
//!   (the grid widened: the new ones train, a choice they beat is re-made).
//! - `<method>[-<head>]/seed-<s>/[rank-<k>/]lr-<lr>/` per run (`rank-<k>`
//!   for `lora-grid`'s runs): a chosen run's test report and adapter, or a
//!   rejected run's validation report; `compared.json` (the [`ComparedRun`])
//!   is written last and marks the directory finished.
//! - `.../lr-<lr>/.valid/`: while its method and seed are being compared, a
//!   validation run's adapter and report (the chosen one's adapter is
//!   evaluated on the test rows from here if the process stopped before);
//!   removed once the chosen run is saved.
//! - `.training/` inside a run's directory: its checkpoints while it trains.
//! - `compare.json` and the plots, when every run is done.

use super::select::remove_superseded;
use super::state::{COMPARE_STATE, CompareState, Resumed};
use super::unit::Unit;
use super::{CompareMethod, ComparePlan, ComparedRun, Comparison};
use crate::io::{read_json_if_exists, write_atomic};
use crate::report::RunConfig;
use crate::train::checkpointing::TRAINING_DIR;
use crate::train::config::TrainConfig;
use crate::train::error::{RunError, Setting};
use crate::train::fit::FitError;
use crate::train::objective::HeadMode;
use crate::train::runner::{RunCheckpoints, Runner, StepLimit, write_plots};
use crate::train::task::{Task, TaskData};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A finished run's [`ComparedRun`], in its directory.
pub const COMPARED_RUN: &str = "compared.json";
/// A run that diverged, in its directory.
pub const DIVERGED_RUN: &str = "diverged.json";
/// A validation run's files while its method and seed are compared.
pub(super) const VALID_DIR: &str = ".valid";

/// A run left out of a comparison because its loss diverged (NaN or
/// infinite): at a learning rate too high for its method, say. The
/// comparison goes on without it; a method whose every learning rate
/// diverged for a seed has no figures for that seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedRun {
    /// The method.
    pub method: CompareMethod,
    /// The head mode.
    pub head_mode: HeadMode,
    /// The seed.
    pub seed: u64,
    /// The grid's rank `k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
    /// The learning rate.
    pub lr: f64,
    /// `valid` (a learning rate being chosen) or `test`.
    pub split: String,
    /// What happened.
    pub reason: String,
}

/// Whether `e` is a run's divergence (not bad settings or I/O).
fn diverged(e: &RunError) -> bool {
    matches!(
        e,
        RunError::Fit(FitError::Diverged { .. } | FitError::NonFiniteEvalLoss { .. })
    )
}

pub(super) fn lr_name(lr: f64) -> String {
    format!("lr-{lr:e}")
}

/// One run to train: its learning rate, the split it is measured on, where
/// it checkpoints, and where its divergence would be recorded.
#[derive(Clone, Copy)]
pub(super) struct Attempt<'a> {
    pub(super) lr: f64,
    pub(super) split: &'a str,
    pub(super) dir: Option<&'a Path>,
    pub(super) record: Option<&'a Path>,
}

/// What the runs of one comparison share while it goes.
pub(super) struct Progress<'a> {
    /// Steps left ([`Runner::stop_after`]).
    budget: Option<usize>,
    resume: bool,
    every: Option<usize>,
    pub(super) on_run: &'a mut dyn FnMut(&ComparedRun),
    /// The runs that diverged, in the order met.
    pub(super) skipped: Vec<SkippedRun>,
}

/// A run directory's record `file` ([`COMPARED_RUN`], [`DIVERGED_RUN`]), if
/// it has one.
fn read_record<V: serde::de::DeserializeOwned>(
    dir: &Path,
    file: &str,
    what: &str,
) -> Result<Option<V>, RunError> {
    read_json_if_exists(&dir.join(file), what).map_err(|e| {
        RunError::invalid(
            Setting::Output,
            format!("{e}: remove its directory to train it again"),
        )
    })
}

pub(super) fn read_compared(dir: &Path) -> Result<Option<ComparedRun>, RunError> {
    read_record(dir, COMPARED_RUN, "a finished run's record")
}

pub(super) fn read_skipped(dir: &Path) -> Result<Option<SkippedRun>, RunError> {
    read_record(dir, DIVERGED_RUN, "a diverged run's record")
}

pub(super) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), RunError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| RunError::write(path, e))?;
    write_atomic(path, &json).map_err(|e| RunError::write(path, e))
}

impl<T: Task> Runner<T> {
    /// Runs `plan` on `data`: for every method, head mode and seed (and for
    /// `lora-grid`, every rank `k` of `S` at max rank `k`), each learning
    /// rate trains on the training examples but the last `val_n` and is
    /// scored on those (AURAC log2; the grid's single rank: its figure); the
    /// best one's model is then evaluated on the test examples (with
    /// [`ComparePlan::select_on_first_seed`], the other seeds train once with
    /// the first seed's choice). With one learning rate it trains on all
    /// training examples. `on_run` sees each
    /// run as it finishes (or is read back).
    ///
    /// With `out`, every run is written into
    /// `out/<method>[-<head>]/seed-<s>/[rank-<k>/]<lr>/` as it finishes and
    /// checkpoints while it trains (every [`Runner::checkpoint_into`] steps,
    /// else at epoch ends); then `out/compare.json` and the plot of mean
    /// curves with ±1 standard deviation bands (the grid dashed). A
    /// comparison cut short continues with [`Runner::resume`]`(true)` (and a
    /// `checkpoint_into`): finished runs are read back, the interrupted one
    /// resumes from its last checkpoint, the rest run; the result is the
    /// uninterrupted comparison's. Without `resume`, a directory that holds
    /// a comparison is refused.
    pub fn compare_seeds(
        &self,
        plan: &ComparePlan,
        data: &TaskData<T::Item, T::Meta>,
        out: Option<&Path>,
        mut on_run: impl FnMut(&ComparedRun),
    ) -> Result<Comparison, RunError> {
        let select = plan.lrs.len() > 1;
        if plan.methods.is_empty()
            || plan.head_modes.is_empty()
            || plan.seeds.is_empty()
            || plan.lrs.is_empty()
        {
            return Err(RunError::invalid(
                Setting::Method,
                "a comparison needs at least one method, head mode, seed and learning rate",
            ));
        }
        // Every run's settings are checked before any training.
        let units = plan.units(&self.config().ranks);
        for unit in &units {
            for &lr in &plan.lrs {
                unit.config(self.config(), lr).validate()?;
            }
        }
        let selection = if select {
            let val_n = plan.val_n.unwrap_or((data.train.len() / 5).min(500));
            Some(self.selection_data(data, val_n)?)
        } else {
            None
        };
        let settings = self.checkpoint_settings();
        let mut progress = Progress {
            budget: self.step_limit(),
            resume: settings.is_some_and(|c| c.resume),
            every: settings.and_then(|c| c.every),
            on_run: &mut on_run,
            skipped: Vec::new(),
        };
        if let Some(out) = out {
            self.open_comparison(out, plan, &progress)?;
        }
        // what a chosen run trained on and is tested on: the selection's
        // training rows, the test rows (its report's `data` describes these);
        // with the learning rate chosen on the first seed, the other seeds
        // train on them
        let trained = selection.as_ref().map(|s| TaskData {
            train: s.train.clone(),
            test: data.test.clone(),
            meta: data.meta.clone(),
        });
        let reuse = trained.as_ref().filter(|_| plan.select_on_first_seed);
        let mut runs: Vec<ComparedRun> = Vec::new();
        for unit in &units {
            let fail = |e: RunError, kept: &[ComparedRun]| RunError::Comparison {
                failed: unit.label(),
                kept: kept
                    .iter()
                    .map(|r| {
                        format!(
                            "{} seed {} lr {}",
                            r.compare_method(),
                            r.report.seed,
                            r.report.config.train.lr
                        )
                    })
                    .collect(),
                source: Box::new(e),
            };
            let first_choice = reuse
                .filter(|_| !plan.chooses_lr(unit.seed))
                .and_then(|reuse| {
                    runs.iter()
                        .find(|r| r.chosen && r.report.seed == plan.seeds[0] && unit.is_of(r))
                        .map(|r| (reuse, r.report.config.train.lr))
                });
            let done = match (&selection, first_choice) {
                (_, Some((reuse, lr))) => {
                    if let Some(out) = out {
                        remove_superseded(&unit.dir(out), lr).map_err(|e| fail(e, &runs))?;
                    }
                    self.run_unit(unit, lr, reuse, out, &mut progress)
                }
                (None, _) => self.run_unit(unit, plan.lrs[0], data, out, &mut progress),
                (Some(selection), None) => self.select_unit(
                    unit,
                    &plan.lrs,
                    selection,
                    trained.as_ref().unwrap_or(data),
                    out,
                    &mut progress,
                ),
            }
            .map_err(|e| fail(e, &runs))?;
            runs.extend(done);
        }
        let mut comparison = Comparison::from_runs(plan.clone(), runs, self.report_tolerance());
        comparison.skipped = progress.skipped;
        if let Some(out) = out {
            write_json(&out.join("compare.json"), &comparison)?;
            write_plots(out, |path| {
                crate::plot::plot_summary(&comparison.summary, path)
            })?;
        }
        Ok(comparison)
    }

    /// Records the comparison's settings in `out`, or checks them when it
    /// resumes.
    fn open_comparison(
        &self,
        out: &Path,
        plan: &ComparePlan,
        progress: &Progress<'_>,
    ) -> Result<(), RunError> {
        let state = CompareState {
            plan: plan.clone(),
            config: RunConfig {
                train: self.config().clone(),
                task: self.task().settings(),
            },
            checkpoint_every: progress.every,
            tolerance: self.report_tolerance(),
        };
        let saved = CompareState::read(out).map_err(|e| RunError::invalid(Setting::Output, e))?;
        let shown = out.display();
        match saved {
            Some(saved) if progress.resume => match state.resumes(&saved) {
                Resumed::Same => Ok(()),
                Resumed::Widened => state.write(out),
                Resumed::OneLearningRate => Err(RunError::invalid(
                    Setting::Output,
                    format!(
                        "the comparison in {shown} ran one learning rate, each run on every training row: more learning rates need validation rows to choose on, so start a new comparison with them"
                    ),
                )),
                Resumed::Other => Err(RunError::invalid(
                    Setting::Output,
                    format!(
                        "the comparison in {shown} was started with other settings (or other data): resume it with the settings in its {COMPARE_STATE} (only the learning rates may grow: every one it has, and more)"
                    ),
                )),
            },
            Some(_) => Err(RunError::invalid(
                Setting::Output,
                format!(
                    "{shown} holds a comparison: continue it with `mlora compare --resume {shown}`, or write into another directory"
                ),
            )),
            None if progress.resume => Err(RunError::invalid(
                Setting::Output,
                format!("{shown} holds no comparison to resume (no {COMPARE_STATE})"),
            )),
            None => {
                std::fs::create_dir_all(out).map_err(|e| RunError::write(out, e))?;
                state.write(out)
            }
        }
    }

    /// Trains `config` on `data`, checkpointing into `dir` (resuming the
    /// checkpoints there when the comparison resumes), within the step budget.
    fn train_unit_run(
        &self,
        config: TrainConfig,
        data: &TaskData<T::Item, T::Meta>,
        dir: Option<&Path>,
        progress: &mut Progress<'_>,
    ) -> Result<crate::train::RunOutcome<T::Model>, RunError> {
        if progress.budget == Some(0) {
            return Err(FitError::Interrupted {
                step: 0,
                reason: "the comparison's step limit was reached".into(),
            }
            .into());
        }
        let checkpoints = dir.map(|dir| RunCheckpoints {
            dir,
            every: progress.every,
            resume: progress.resume && dir.join(TRAINING_DIR).is_dir(),
        });
        let limit = progress.budget.map_or(StepLimit::None, StepLimit::After);
        let outcome = self.train_config(config, data, checkpoints, limit)?;
        if let Some(budget) = &mut progress.budget {
            *budget = budget.saturating_sub(outcome.steps_taken);
        }
        Ok(outcome)
    }

    /// `train_unit_run`, with a divergence recorded (in `dir`,
    /// and in the comparison's `skipped`) instead of ending the comparison:
    /// `Ok(None)` then.
    pub(super) fn train_or_skip(
        &self,
        unit: &Unit,
        attempt: Attempt<'_>,
        data: &TaskData<T::Item, T::Meta>,
        progress: &mut Progress<'_>,
    ) -> Result<Option<crate::train::RunOutcome<T::Model>>, RunError> {
        let Attempt {
            lr,
            split,
            dir,
            record,
        } = attempt;
        let config = unit.config(self.config(), lr);
        match self.train_unit_run(config, data, dir, progress) {
            Ok(outcome) => Ok(Some(outcome)),
            Err(e) if diverged(&e) => {
                let skipped = SkippedRun {
                    method: unit.method,
                    head_mode: unit.head_mode,
                    seed: unit.seed,
                    rank: unit.rank,
                    lr,
                    split: split.into(),
                    reason: e.to_string(),
                };
                if let Some(record) = record {
                    std::fs::create_dir_all(record).map_err(|e| RunError::write(record, e))?;
                    write_json(&record.join(DIVERGED_RUN), &skipped)?;
                    // its checkpoints cannot be resumed into anything useful
                    if let Some(dir) = dir
                        && dir.join(TRAINING_DIR).is_dir()
                    {
                        let training = dir.join(TRAINING_DIR);
                        std::fs::remove_dir_all(&training)
                            .map_err(|e| RunError::write(&training, e))?;
                    }
                }
                progress.skipped.push(skipped);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// One learning rate: trains on all training rows, evaluates on the test rows.
    fn run_unit(
        &self,
        unit: &Unit,
        lr: f64,
        data: &TaskData<T::Item, T::Meta>,
        out: Option<&Path>,
        progress: &mut Progress<'_>,
    ) -> Result<Vec<ComparedRun>, RunError> {
        let dir = out.map(|o| unit.dir(o).join(lr_name(lr)));
        if let Some(dir) = &dir {
            if let Some(run) = read_compared(dir)? {
                (progress.on_run)(&run);
                return Ok(vec![run]);
            }
            if let Some(skipped) = read_skipped(dir)? {
                progress.skipped.push(skipped);
                return Ok(Vec::new());
            }
        }
        let attempt = Attempt {
            lr,
            split: "test",
            dir: dir.as_deref(),
            record: dir.as_deref(),
        };
        let Some(outcome) = self.train_or_skip(unit, attempt, data, progress)? else {
            return Ok(Vec::new());
        };
        let run = ComparedRun {
            report: outcome.report,
            chosen: true,
            split: "test".into(),
            val_aurac_log2: None,
            grid: unit.method.is_grid(),
        };
        if let Some(dir) = &dir {
            self.save(dir, &run.report, Some(&outcome.model))?;
            write_json(&dir.join(COMPARED_RUN), &run)?;
        }
        (progress.on_run)(&run);
        Ok(vec![run])
    }
}
