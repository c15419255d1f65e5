//! Comparisons a reviewer would accept: several methods (and head modes) over
//! several seeds, the learning rate chosen per method and seed on a
//! validation split carved from the training examples (never the test ones),
//! and the test figures summarised with means, standard deviations and paired
//! differences between methods over the same seeds.

use super::config::TrainConfig;
use super::error::{RunError, Setting};
use super::objective::{HeadMode, TrainMethod};
use super::runner::{Runner, write_plots};
use super::task::{Task, TaskData};
use crate::io::write_atomic;
use crate::report::{RankWithin, Report};
use crate::stats::{PairedDifference, mean, std_dev};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a comparison runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparePlan {
    /// The methods.
    pub methods: Vec<TrainMethod>,
    /// The head modes, each with every method.
    pub head_modes: Vec<HeadMode>,
    /// The seeds, each with every method.
    pub seeds: Vec<u64>,
    /// The learning rates tried per method and seed (one: no selection).
    pub lrs: Vec<f64>,
    /// Validation examples (the last ones of the training examples) for
    /// choosing among several learning rates; `None`: one fifth of them, at
    /// most 500.
    pub val_n: Option<usize>,
}

/// One trained run of a comparison: its report, and its role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparedRun {
    /// The run's report: on the test examples for a chosen run, on the
    /// validation examples for a run whose learning rate was not chosen.
    #[serde(flatten)]
    pub report: Report,
    /// Whether this learning rate was chosen for its method, head mode and seed.
    pub chosen: bool,
    /// `test` or `valid`: the examples `report` was measured on.
    pub split: String,
    /// AURAC (log2) on the validation examples, when the learning rate was
    /// chosen on them.
    pub val_aurac_log2: Option<f64>,
}

/// A method (with its head mode) over the seeds: the test figures of the
/// chosen runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSummary {
    /// The method.
    pub method: TrainMethod,
    /// The head mode.
    pub head_mode: HeadMode,
    /// The seeds, in order.
    pub seeds: Vec<u64>,
    /// The chosen learning rate per seed.
    pub lrs: Vec<f64>,
    /// The ranks.
    pub ranks: Vec<usize>,
    /// The curve metric's name (`accuracy`).
    pub metric: String,
    /// Per rank, the mean over seeds.
    pub accuracy_mean: Vec<f64>,
    /// Per rank, the sample standard deviation over seeds.
    pub accuracy_std: Vec<f64>,
    /// AURAC (log2) per seed.
    pub aurac_log2: Vec<f64>,
    /// Mean AURAC (log2).
    pub aurac_log2_mean: f64,
    /// Its standard deviation over seeds.
    pub aurac_log2_std: f64,
    /// Mean AURAC (linear).
    pub aurac_linear_mean: f64,
    /// Its standard deviation over seeds.
    pub aurac_linear_std: f64,
    /// [`RankWithin`] of the mean curve.
    pub smallest_rank_within: Option<RankWithin>,
}

impl MethodSummary {
    /// `method` or `method (probe)`.
    pub fn label(&self) -> String {
        match self.head_mode {
            HeadMode::Joint => self.method.to_string(),
            other => format!("{} ({other})", self.method),
        }
    }
}

/// Two methods over the same seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairSummary {
    /// The first method's label.
    pub a: String,
    /// The second method's label.
    pub b: String,
    /// `a - b` of AURAC (log2), seed by seed.
    pub aurac_log2: PairedDifference,
    /// The plain sentence.
    pub verdict: String,
}

/// A comparison's result (`compare.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// One entry per method and head mode.
    pub summary: Vec<MethodSummary>,
    /// Every pair of summary entries.
    pub pairs: Vec<PairSummary>,
    /// Every run, in the order they finished.
    pub runs: Vec<ComparedRun>,
    /// What was run.
    pub plan: ComparePlan,
}

impl Comparison {
    /// Builds the summary and the pairs from the chosen runs.
    pub fn from_runs(plan: ComparePlan, runs: Vec<ComparedRun>, tolerance: f64) -> Self {
        let mut summary = Vec::new();
        for &head_mode in &plan.head_modes {
            for &method in &plan.methods {
                let chosen: Vec<&Report> = plan
                    .seeds
                    .iter()
                    .filter_map(|&seed| {
                        runs.iter()
                            .find(|r| {
                                r.chosen
                                    && r.report.method == method
                                    && r.report.head_mode == head_mode
                                    && r.report.seed == seed
                            })
                            .map(|r| &r.report)
                    })
                    .collect();
                let Some(first) = chosen.first() else {
                    continue;
                };
                let per_rank = |i: usize| -> Vec<f64> {
                    chosen
                        .iter()
                        .map(|r| r.curve().get(i).copied().unwrap_or(f64::NAN))
                        .collect()
                };
                let ranks = first.ranks.clone();
                let accuracy_mean: Vec<f64> =
                    (0..ranks.len()).map(|i| mean(&per_rank(i))).collect();
                let accuracy_std = (0..ranks.len()).map(|i| std_dev(&per_rank(i))).collect();
                let log2: Vec<f64> = chosen.iter().map(|r| r.aurac_log2).collect();
                let linear: Vec<f64> = chosen.iter().map(|r| r.aurac_linear).collect();
                summary.push(MethodSummary {
                    method,
                    head_mode,
                    seeds: chosen.iter().map(|r| r.seed).collect(),
                    lrs: chosen.iter().map(|r| r.config.train.lr).collect(),
                    smallest_rank_within: RankWithin::of(&ranks, &accuracy_mean, tolerance),
                    ranks,
                    metric: first.aurac_metric.clone(),
                    accuracy_mean,
                    accuracy_std,
                    aurac_log2_mean: mean(&log2),
                    aurac_log2_std: std_dev(&log2),
                    aurac_log2: log2,
                    aurac_linear_mean: mean(&linear),
                    aurac_linear_std: std_dev(&linear),
                });
            }
        }
        let mut pairs = Vec::new();
        for (i, a) in summary.iter().enumerate() {
            for b in &summary[i + 1..] {
                if a.seeds != b.seeds {
                    continue;
                }
                let d = PairedDifference::new(&a.aurac_log2, &b.aurac_log2);
                let verdict = d.verdict(&a.label(), &b.label(), "AURAC");
                pairs.push(PairSummary {
                    a: a.label(),
                    b: b.label(),
                    aurac_log2: d,
                    verdict,
                });
            }
        }
        Self {
            summary,
            pairs,
            runs,
            plan,
        }
    }
}

fn lr_name(lr: f64) -> String {
    format!("lr-{lr:e}")
}

impl<T: Task> Runner<T> {
    /// Runs `plan` on `data`: for every method, head mode and seed, each
    /// learning rate trains on the training examples but the last `val_n`
    /// and is scored on those (AURAC log2); the best one's model is then
    /// evaluated on the test examples. With one learning rate it trains on
    /// all training examples. Every run's report (and each chosen run's
    /// adapter) is written into `out/<method>[-<head>]/seed-<s>/<lr>/` as it
    /// finishes, then `out/compare.json` and the plot of mean curves with
    /// ±1 standard deviation bands. `on_run` sees each run as it finishes.
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
        let run_config = |method, head_mode, seed, lr| TrainConfig {
            head_mode,
            seed,
            lr,
            ..self.config().clone().with_method(method)
        };
        for &method in &plan.methods {
            for &head in &plan.head_modes {
                for &lr in &plan.lrs {
                    run_config(method, head, plan.seeds[0], lr).validate()?;
                }
            }
        }
        let val_n = plan.val_n.unwrap_or((data.train.len() / 5).min(500));
        let selection = if select {
            if val_n == 0 || val_n >= data.train.len() {
                return Err(RunError::invalid(
                    Setting::Task("val_n"),
                    format!(
                        "the validation split must leave training examples: 1..{}, got {val_n}",
                        data.train.len()
                    ),
                ));
            }
            let cut = data.train.len() - val_n;
            Some(TaskData {
                train: data.train[..cut].to_vec(),
                test: data.train[cut..].to_vec(),
                meta: data.meta.clone(),
            })
        } else {
            None
        };
        let mut runs: Vec<ComparedRun> = Vec::new();
        let save = |run: &ComparedRun, model: Option<&T::Model>| -> Result<(), RunError> {
            let Some(out) = out else { return Ok(()) };
            let r = &run.report;
            let head = match r.head_mode {
                HeadMode::Joint => String::new(),
                other => format!("-{other}"),
            };
            let dir: PathBuf = out
                .join(format!("{}{head}", r.method))
                .join(format!("seed-{}", r.seed))
                .join(lr_name(r.config.train.lr));
            match model {
                Some(model) => self.save(&dir, &run.report, Some(model)),
                None => {
                    std::fs::create_dir_all(&dir).map_err(|e| RunError::write(&dir, e))?;
                    let json =
                        serde_json::to_vec_pretty(run).map_err(|e| RunError::write(&dir, e))?;
                    let path = dir.join("report.json");
                    write_atomic(&path, &json).map_err(|e| RunError::write(&path, e))
                }
            }
        };
        for &head_mode in &plan.head_modes {
            for &method in &plan.methods {
                for &seed in &plan.seeds {
                    let label = format!("{method} ({head_mode}), seed {seed}");
                    let fail = |e: RunError, kept: &[ComparedRun]| RunError::Comparison {
                        failed: label.clone(),
                        kept: kept
                            .iter()
                            .map(|r| {
                                format!(
                                    "{} seed {} lr {}",
                                    r.report.method, r.report.seed, r.report.config.train.lr
                                )
                            })
                            .collect(),
                        source: Box::new(e),
                    };
                    match &selection {
                        None => {
                            let config = run_config(method, head_mode, seed, plan.lrs[0]);
                            let outcome =
                                self.train_with(config, data).map_err(|e| fail(e, &runs))?;
                            let run = ComparedRun {
                                report: outcome.report,
                                chosen: true,
                                split: "test".into(),
                                val_aurac_log2: None,
                            };
                            save(&run, Some(&outcome.model)).map_err(|e| fail(e, &runs))?;
                            on_run(&run);
                            runs.push(run);
                        }
                        Some(selection) => {
                            // Only the best model so far is kept (the first on
                            // ties): the others are dropped as soon as they lose.
                            let mut chosen_model: Option<(ComparedRun, T::Model, TrainConfig)> =
                                None;
                            let mut chosen_at = 0;
                            let mut others: Vec<(usize, ComparedRun)> = Vec::new();
                            for (i, &lr) in plan.lrs.iter().enumerate() {
                                let config = run_config(method, head_mode, seed, lr);
                                let outcome = self
                                    .train_with(config.clone(), selection)
                                    .map_err(|e| fail(e, &runs))?;
                                let run = ComparedRun {
                                    val_aurac_log2: Some(outcome.report.aurac_log2),
                                    report: outcome.report,
                                    chosen: false,
                                    split: "valid".into(),
                                };
                                save(&run, None).map_err(|e| fail(e, &runs))?;
                                on_run(&run);
                                let better = chosen_model.as_ref().is_none_or(|(best, _, _)| {
                                    run.report.aurac_log2 > best.report.aurac_log2
                                });
                                if better {
                                    let lost = chosen_model.replace((run, outcome.model, config));
                                    if let Some((lost, _, _)) = lost {
                                        others.push((chosen_at, lost));
                                    }
                                    chosen_at = i;
                                } else {
                                    others.push((i, run));
                                }
                            }
                            // the validation runs not chosen, in learning-rate order
                            others.sort_by_key(|(i, _)| *i);
                            runs.extend(others.into_iter().map(|(_, run)| run));
                            if let Some((validation, model, config)) = chosen_model {
                                let mut report = self
                                    .evaluate_with(config, model.clone(), data)
                                    .map_err(|e| fail(e, &runs))?;
                                report.train_steps = validation.report.train_steps;
                                report.ms_per_step = validation.report.ms_per_step;
                                let run = ComparedRun {
                                    report,
                                    chosen: true,
                                    split: "test".into(),
                                    val_aurac_log2: validation.val_aurac_log2,
                                };
                                save(&run, Some(&model)).map_err(|e| fail(e, &runs))?;
                                on_run(&run);
                                runs.push(run);
                            }
                        }
                    }
                }
            }
        }
        let comparison = Comparison::from_runs(plan.clone(), runs, self.report_tolerance());
        if let Some(out) = out {
            let json =
                serde_json::to_vec_pretty(&comparison).map_err(|e| RunError::write(out, e))?;
            let path = out.join("compare.json");
            write_atomic(&path, &json).map_err(|e| RunError::write(&path, e))?;
            write_plots(out, |path| {
                crate::plot::plot_summary(&comparison.summary, path)
            })?;
        }
        Ok(comparison)
    }
}
