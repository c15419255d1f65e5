//! Choosing a learning rate for one unit of a comparison on validation
//! rows, resumable, and re-made when the grid was widened after the choice.

use super::ComparedRun;
use super::run::{Attempt, Progress, VALID_DIR, lr_name, read_compared, read_skipped, write_json};
use super::unit::Unit;
use crate::train::error::RunError;
use crate::train::runner::Runner;
use crate::train::task::{Task, TaskData};
use std::path::{Path, PathBuf};

/// The figure learning rates are chosen by: the validation AURAC (log2) of
/// a run, kept in a chosen run's record beside its test figures.
fn validation_score(run: &ComparedRun) -> f64 {
    run.val_aurac_log2.unwrap_or(run.report.aurac_log2)
}

impl<T: Task> Runner<T> {
    /// Several learning rates: each trains on the training rows but the
    /// validation ones and is scored there; the best (the first on ties) is
    /// evaluated on the test rows. Returns the rejected runs in
    /// learning-rate order, then the chosen one.
    ///
    /// With `out`, finished runs are read back. When `lrs` holds learning
    /// rates the unit has no record of (the grid was widened on resume) and
    /// its choice was made, only those train; if one beats the choice, the
    /// earlier chosen run becomes a validation record again (its saved
    /// model evaluated on the validation rows: the figures its validation
    /// run had) and the new best is evaluated on the test rows. `trained`:
    /// the selection's training rows and the test rows.
    pub(super) fn select_unit(
        &self,
        unit: &Unit,
        lrs: &[f64],
        selection: &TaskData<T::Item, T::Meta>,
        trained: &TaskData<T::Item, T::Meta>,
        out: Option<&Path>,
        progress: &mut Progress<'_>,
    ) -> Result<Vec<ComparedRun>, RunError> {
        let base = out.map(|o| unit.dir(o));
        let lr_dir = |lr: f64| base.as_ref().map(|b| b.join(lr_name(lr)));
        // A finished unit (a chosen run, a record for every learning rate)
        // is read back whole.
        if base.is_some() {
            let mut saved = Vec::new();
            let mut skipped = Vec::new();
            let mut missing = false;
            for &lr in lrs {
                let run = lr_dir(lr).map(|d| read_compared(&d)).transpose()?.flatten();
                let skip = lr_dir(lr).map(|d| read_skipped(&d)).transpose()?.flatten();
                missing |= run.is_none() && skip.is_none();
                saved.push(run);
                skipped.extend(skip);
            }
            if !missing && saved.iter().flatten().any(|r| r.chosen) {
                progress.skipped.extend(skipped);
                let (chosen, mut rejected): (Vec<_>, Vec<_>) =
                    saved.into_iter().flatten().partition(|r| r.chosen);
                rejected.extend(chosen);
                for run in &rejected {
                    (progress.on_run)(run);
                }
                self.remove_valid_dirs(lrs, &lr_dir)?;
                return Ok(rejected);
            }
        }
        // (learning-rate index, validation run) of the runs that did not diverge
        let mut validated: Vec<(usize, ComparedRun)> = Vec::with_capacity(lrs.len());
        // the best so far: its place in `validated`, and its model when
        // trained in this call
        let mut best: Option<(usize, Option<T::Model>)> = None;
        // the run chosen before the grid was widened: its place in `validated`
        let mut tested: Option<usize> = None;
        for (i, &lr) in lrs.iter().enumerate() {
            let dir = lr_dir(lr);
            let valid_dir = dir.as_ref().map(|d| d.join(VALID_DIR));
            if let Some(skipped) = dir.as_ref().map(|d| read_skipped(d)).transpose()?.flatten() {
                progress.skipped.push(skipped);
                continue;
            }
            let finished = match (&dir, &valid_dir) {
                (Some(dir), Some(valid)) => match read_compared(dir)? {
                    Some(run) => Some(run),
                    None => read_compared(valid)?,
                },
                _ => None,
            };
            let (run, model) = match finished {
                Some(run) => {
                    if run.chosen {
                        tested = Some(validated.len());
                    }
                    (run, None)
                }
                None => {
                    let attempt = Attempt {
                        lr,
                        split: "valid",
                        dir: valid_dir.as_deref(),
                        record: dir.as_deref(),
                    };
                    let Some(outcome) = self.train_or_skip(unit, attempt, selection, progress)?
                    else {
                        continue;
                    };
                    let run = ComparedRun {
                        val_aurac_log2: Some(outcome.report.aurac_log2),
                        report: outcome.report,
                        chosen: false,
                        split: "valid".into(),
                        grid: unit.method.is_grid(),
                    };
                    if let Some(valid) = &valid_dir {
                        self.save(valid, &run.report, Some(&outcome.model))?;
                        write_json(&valid.join(super::COMPARED_RUN), &run)?;
                    }
                    (run, Some(outcome.model))
                }
            };
            (progress.on_run)(&run);
            let better = best
                .as_ref()
                .is_none_or(|&(b, _)| validation_score(&run) > validation_score(&validated[b].1));
            if better {
                best = Some((validated.len(), model));
            }
            validated.push((i, run));
        }
        let Some((chosen_place, model)) = best else {
            return Ok(Vec::new());
        };
        let chosen_at = validated[chosen_place].0;
        if tested == Some(chosen_place) {
            // widened, and the earlier choice stands
            let chosen = validated.remove(chosen_place).1;
            let mut runs: Vec<ComparedRun> = validated.into_iter().map(|(_, r)| r).collect();
            self.write_rejected(&runs, &lr_dir)?;
            self.remove_valid_dirs(lrs, &lr_dir)?;
            runs.push(chosen);
            return Ok(runs);
        }
        // widened, and beaten: the earlier choice back to a validation record
        let demoted = match tested {
            Some(place) => {
                let old = &validated[place].1;
                let lr = old.report.config.train.lr;
                let dir = lr_dir(lr).ok_or_else(|| {
                    RunError::Failed("a chosen run read back has no directory".into())
                })?;
                let config = unit.config(self.config(), lr);
                let model = self.load_run_model(&dir, &config, selection)?;
                let mut report = self.evaluate_with(config, model, selection)?;
                report.train_steps = old.report.train_steps;
                report.ms_per_step = old.report.ms_per_step;
                validated[place].1 = ComparedRun {
                    val_aurac_log2: Some(report.aurac_log2),
                    report,
                    chosen: false,
                    split: "valid".into(),
                    grid: unit.method.is_grid(),
                };
                Some(dir)
            }
            None => None,
        };
        let lr = lrs[chosen_at];
        let config = unit.config(self.config(), lr);
        let model = match (model, &lr_dir(lr)) {
            (Some(model), _) => model,
            (None, Some(dir)) => self.load_run_model(&dir.join(VALID_DIR), &config, trained)?,
            (None, None) => {
                return Err(RunError::Failed(
                    "the chosen validation run's model is neither in memory nor saved".into(),
                ));
            }
        };
        let validation = &validated[chosen_place].1;
        let mut report = self.evaluate_with(config, model.clone(), trained)?;
        report.train_steps = validation.report.train_steps;
        report.ms_per_step = validation.report.ms_per_step;
        let chosen = ComparedRun {
            report,
            chosen: true,
            split: "test".into(),
            val_aurac_log2: validation.val_aurac_log2,
            grid: unit.method.is_grid(),
        };
        let mut runs: Vec<ComparedRun> = validated
            .into_iter()
            .filter(|&(i, _)| i != chosen_at)
            .map(|(_, run)| run)
            .collect();
        if base.is_some() {
            // the rejected runs' records first, the chosen one's last: it
            // marks the unit finished
            self.write_rejected(&runs, &lr_dir)?;
            if let Some(dir) = &demoted {
                remove_all_but_records(dir)?;
            }
            if let Some(dir) = lr_dir(lr) {
                self.save(&dir, &chosen.report, Some(&model))?;
                write_json(&dir.join(super::COMPARED_RUN), &chosen)?;
            }
            self.remove_valid_dirs(lrs, &lr_dir)?;
        }
        (progress.on_run)(&chosen);
        runs.push(chosen);
        Ok(runs)
    }

    /// Each rejected run's records (`report.json`, `compared.json`) in its
    /// learning rate's directory.
    fn write_rejected(
        &self,
        runs: &[ComparedRun],
        lr_dir: &dyn Fn(f64) -> Option<PathBuf>,
    ) -> Result<(), RunError> {
        for run in runs {
            if let Some(dir) = lr_dir(run.report.config.train.lr) {
                std::fs::create_dir_all(&dir).map_err(|e| RunError::write(&dir, e))?;
                write_json(&dir.join(crate::io::REPORT_FILE), run)?;
                write_json(&dir.join(super::COMPARED_RUN), run)?;
            }
        }
        Ok(())
    }

    fn remove_valid_dirs(
        &self,
        lrs: &[f64],
        lr_dir: &dyn Fn(f64) -> Option<PathBuf>,
    ) -> Result<(), RunError> {
        for &lr in lrs {
            if let Some(valid) = lr_dir(lr).map(|d| d.join(VALID_DIR))
                && valid.is_dir()
            {
                std::fs::remove_dir_all(&valid).map_err(|e| RunError::write(&valid, e))?;
            }
        }
        Ok(())
    }
}

/// A run directory that was a chosen run's, now a rejected run's: all but
/// its records (`report.json`, `compared.json`) removed (its adapter,
/// plots, generations).
fn remove_all_but_records(dir: &Path) -> Result<(), RunError> {
    let keep = [crate::io::REPORT_FILE, super::COMPARED_RUN];
    let entries = std::fs::read_dir(dir).map_err(|e| RunError::write(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| RunError::write(dir, e))?;
        let path = entry.path();
        if keep.iter().any(|k| entry.file_name() == *k) {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| RunError::write(&path, e))?;
    }
    Ok(())
}

/// Removes the runs of `unit_dir` at learning rates other than `lr` (a
/// later seed's runs at an earlier choice of the first seed, before the
/// grid was widened and the choice re-made).
pub(super) fn remove_superseded(unit_dir: &Path, lr: f64) -> Result<(), RunError> {
    let Ok(entries) = std::fs::read_dir(unit_dir) else {
        return Ok(());
    };
    let keep = lr_name(lr);
    for entry in entries {
        let entry = entry.map_err(|e| RunError::write(unit_dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("lr-") && name != keep && entry.path().is_dir() {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(|e| RunError::write(&path, e))?;
        }
    }
    Ok(())
}
