//! Comparisons a reviewer would accept: several methods (and head modes) over
//! several seeds, the learning rate chosen per method and seed on a
//! validation split carved from the training examples (never the test ones),
//! the rank grid search (`lora-grid`) as the reference the nested adapter is
//! measured against, and the test figures summarised with means, standard
//! deviations and paired differences between methods over the same seeds.
//! A comparison written to a directory can be resumed
//! ([`Runner::compare_seeds`](super::Runner::compare_seeds)).

mod method;
mod progress;
mod run;
mod select;
mod state;
mod unit;
mod validation;

pub use method::CompareMethod;
pub use progress::CompareProgress;
pub use run::{COMPARED_RUN, DIVERGED_RUN, SkippedRun};
pub use state::{COMPARE_STATE, CompareState};

use super::objective::HeadMode;
use crate::adapter::aurac_both;
use crate::report::{RankWithin, Report};
use crate::stats::{PairedDifference, mean, std_dev};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a comparison runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparePlan {
    /// The methods (`lora-grid` among them for the grid).
    pub methods: Vec<CompareMethod>,
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
    /// Choose the learning rates on the first seed only: the other seeds
    /// train once each, with the first seed's choice for the same method,
    /// head mode (and grid rank), on the same training rows (those but the
    /// validation ones). Saves `(lrs - 1) x (seeds - 1)` runs per method.
    #[serde(default)]
    pub select_on_first_seed: bool,
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
    /// Whether the run is one of `lora-grid`'s (its `config.rank` is its `k`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grid: bool,
}

impl ComparedRun {
    /// The summary entry the run belongs to.
    pub fn compare_method(&self) -> CompareMethod {
        if self.grid {
            CompareMethod::LoraGrid
        } else {
            CompareMethod::Train(self.report.method)
        }
    }

    /// Wall seconds of the run's training (steps x ms per step; a chosen
    /// run carries its validation run's training).
    pub fn train_seconds(&self) -> f64 {
        self.report.train_steps as f64 * self.report.ms_per_step / 1000.0
    }
}

/// A per-rank series over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesSummary {
    /// Per rank, the mean over seeds.
    pub mean: Vec<f64>,
    /// Per rank, the sample standard deviation over seeds.
    pub std: Vec<f64>,
}

/// A method (with its head mode) over the seeds: the test figures of the
/// chosen runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSummary {
    /// The method.
    pub method: CompareMethod,
    /// The head mode.
    pub head_mode: HeadMode,
    /// The seeds, in order.
    pub seeds: Vec<u64>,
    /// The chosen learning rate per seed (the grid: per seed and rank, in
    /// `grid_lrs`; empty here).
    pub lrs: Vec<f64>,
    /// The grid's chosen learning rates, per seed, per rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_lrs: Option<Vec<Vec<f64>>>,
    /// The ranks.
    pub ranks: Vec<usize>,
    /// The curve metric's name (`accuracy`, `exact_match`, ...).
    pub metric: String,
    /// Per rank, the curve metric's mean over seeds.
    pub accuracy_mean: Vec<f64>,
    /// Per rank, its sample standard deviation over seeds.
    pub accuracy_std: Vec<f64>,
    /// Per seed, the curve (one value per rank).
    #[serde(default)]
    pub curves: Vec<Vec<f64>>,
    /// Every per-rank series of the reports (loss, token accuracy, ...),
    /// mean and std over seeds.
    #[serde(default)]
    pub series: BTreeMap<String, SeriesSummary>,
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
    /// Wall seconds of all its runs' training (learning-rate selection
    /// included).
    #[serde(default)]
    pub train_seconds: f64,
    /// Per rank, `accuracy_mean` minus the grid's (when the comparison has
    /// `lora-grid` with the same ranks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_to_grid: Option<Vec<f64>>,
    /// `train_seconds` over the grid's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_vs_grid: Option<f64>,
}

impl MethodSummary {
    /// `method` or `method (probe)`.
    pub fn label(&self) -> String {
        match self.head_mode {
            HeadMode::Joint => self.method.to_string(),
            other => format!("{} ({other})", self.method),
        }
    }

    /// Per seed, the series `name` (the curve metric's curves for it).
    fn of_seeds(reports: &[Vec<&Report>], ranks: &[usize], name: &str) -> Option<Vec<Vec<f64>>> {
        // each seed's reports give the series at their ranks (one report of
        // every rank, or one per rank for the grid)
        reports
            .iter()
            .map(|seed| {
                let mut values = Vec::with_capacity(ranks.len());
                for r in seed {
                    values.extend_from_slice(r.series(name)?);
                }
                (values.len() == ranks.len()).then_some(values)
            })
            .collect()
    }

    fn build(
        method: CompareMethod,
        head_mode: HeadMode,
        seeds: Vec<u64>,
        reports: &[Vec<&Report>],
        tolerance: f64,
    ) -> Option<Self> {
        let first = reports.first()?.first()?;
        let ranks: Vec<usize> = reports[0].iter().flat_map(|r| r.ranks.clone()).collect();
        let metric = first.aurac_metric.clone();
        let curves = Self::of_seeds(reports, &ranks, &metric)?;
        let at = |values: &[Vec<f64>], i: usize| -> Vec<f64> {
            values
                .iter()
                .map(|c| c.get(i).copied().unwrap_or(f64::NAN))
                .collect()
        };
        let stats = |values: &[Vec<f64>]| SeriesSummary {
            mean: (0..ranks.len()).map(|i| mean(&at(values, i))).collect(),
            std: (0..ranks.len()).map(|i| std_dev(&at(values, i))).collect(),
        };
        let series = first
            .per_rank
            .keys()
            .filter_map(|name| {
                Self::of_seeds(reports, &ranks, name).map(|v| (name.clone(), stats(&v)))
            })
            .collect();
        let curve = stats(&curves);
        let (log2, linear): (Vec<f64>, Vec<f64>) = if method.is_grid() {
            curves
                .iter()
                .map(|c| aurac_both(&ranks, c).unwrap_or((f64::NAN, f64::NAN)))
                .unzip()
        } else {
            reports
                .iter()
                .map(|s| (s[0].aurac_log2, s[0].aurac_linear))
                .unzip()
        };
        let lrs_of =
            |s: &Vec<&Report>| -> Vec<f64> { s.iter().map(|r| r.config.train.lr).collect() };
        Some(Self {
            method,
            head_mode,
            seeds,
            lrs: if method.is_grid() {
                Vec::new()
            } else {
                reports.iter().map(|s| s[0].config.train.lr).collect()
            },
            grid_lrs: method
                .is_grid()
                .then(|| reports.iter().map(lrs_of).collect()),
            smallest_rank_within: RankWithin::of(&ranks, &curve.mean, tolerance),
            ranks,
            metric,
            accuracy_mean: curve.mean,
            accuracy_std: curve.std,
            curves,
            series,
            aurac_log2_mean: mean(&log2),
            aurac_log2_std: std_dev(&log2),
            aurac_log2: log2,
            aurac_linear_mean: mean(&linear),
            aurac_linear_std: std_dev(&linear),
            train_seconds: 0.0,
            gap_to_grid: None,
            cost_vs_grid: None,
        })
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
    /// `a - b` of the curve metric at each rank, seed by seed (when both
    /// have the same ranks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_rank: Vec<PairedDifference>,
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
    /// The runs left out because they diverged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedRun>,
    /// What was run.
    pub plan: ComparePlan,
}

impl Comparison {
    /// Builds the summary and the pairs from the chosen runs.
    pub fn from_runs(plan: ComparePlan, runs: Vec<ComparedRun>, tolerance: f64) -> Self {
        let mut summary = Vec::new();
        for &head_mode in &plan.head_modes {
            for &method in &plan.methods {
                let mine = |r: &&ComparedRun| {
                    r.compare_method() == method && r.report.head_mode == head_mode
                };
                // per seed: the chosen report (the grid: one per rank, ascending)
                let mut seeds: Vec<u64> = Vec::new();
                let mut reports: Vec<Vec<&Report>> = Vec::new();
                for &seed in &plan.seeds {
                    let mut chosen: Vec<&Report> = runs
                        .iter()
                        .filter(mine)
                        .filter(|r| r.chosen && r.report.seed == seed)
                        .map(|r| &r.report)
                        .collect();
                    chosen.sort_by_key(|r| r.config.train.rank);
                    if !chosen.is_empty() {
                        seeds.push(seed);
                        reports.push(chosen);
                    }
                }
                // a grid seed missing a rank (every learning rate diverged
                // there) is left out, not the whole grid
                let full = reports.iter().map(Vec::len).max().unwrap_or(0);
                let (seeds, reports): (Vec<u64>, Vec<Vec<&Report>>) = seeds
                    .into_iter()
                    .zip(reports)
                    .filter(|(_, r)| r.len() == full)
                    .unzip();
                if let Some(mut entry) =
                    MethodSummary::build(method, head_mode, seeds, &reports, tolerance)
                {
                    entry.train_seconds = runs
                        .iter()
                        .filter(mine)
                        .map(ComparedRun::train_seconds)
                        .sum();
                    summary.push(entry);
                }
            }
        }
        // every entry against the grid of its head mode
        let grids: Vec<MethodSummary> = summary
            .iter()
            .filter(|s| s.method.is_grid())
            .cloned()
            .collect();
        for entry in summary.iter_mut().filter(|s| !s.method.is_grid()) {
            let Some(grid) = grids
                .iter()
                .find(|g| g.head_mode == entry.head_mode && g.ranks == entry.ranks)
            else {
                continue;
            };
            entry.gap_to_grid = Some(
                entry
                    .accuracy_mean
                    .iter()
                    .zip(&grid.accuracy_mean)
                    .map(|(a, g)| a - g)
                    .collect(),
            );
            entry.cost_vs_grid =
                (grid.train_seconds > 0.0).then(|| entry.train_seconds / grid.train_seconds);
        }
        let mut pairs = Vec::new();
        for (i, a) in summary.iter().enumerate() {
            for b in &summary[i + 1..] {
                if a.seeds != b.seeds {
                    continue;
                }
                let d = PairedDifference::new(&a.aurac_log2, &b.aurac_log2);
                let verdict = d.verdict(&a.label(), &b.label(), "AURAC");
                let per_rank = if a.ranks == b.ranks {
                    (0..a.ranks.len())
                        .map(|k| {
                            let at = |s: &MethodSummary| -> Vec<f64> {
                                s.curves.iter().map(|c| c[k]).collect()
                            };
                            PairedDifference::new(&at(a), &at(b))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                pairs.push(PairSummary {
                    a: a.label(),
                    b: b.label(),
                    aurac_log2: d,
                    per_rank,
                    verdict,
                });
            }
        }
        Self {
            summary,
            pairs,
            runs,
            skipped: Vec::new(),
            plan,
        }
    }
}
