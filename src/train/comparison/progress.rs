//! How far a comparison has got and about how long it has left, from the
//! runs it has finished (or read back when it resumes): the training work in
//! LoRA-run equivalents (a run of a method with `p` passes per step counts
//! `p`), the evaluations (per rank evaluated), and the time left at the
//! finished runs' pace.

use super::unit::Unit;
use super::{ComparePlan, ComparedRun};
use crate::train::TrainConfig;
use std::collections::HashSet;

/// Progress of one comparison, fed each run as
/// [`Runner::compare_seeds`](crate::train::Runner::compare_seeds) reports it.
///
/// Work is counted in LoRA-run equivalents: every training run of the plan
/// counts its method's [`TrainConfig::passes_per_step`] (`matryoshka-exact`
/// over six ranks: 6); a chosen run evaluated on the test rows after its
/// validation run adds evaluation time but no work. The time left is the
/// work left at the finished runs' training pace (their reports' training
/// seconds per unit of work) plus the evaluations left at their evaluation
/// pace (seconds per rank evaluated: a grid run evaluates one rank, the
/// others all of `S`), so a resumed comparison estimates from the runs it
/// read back.
///
/// ```
/// use matryoshka_lora::train::{CompareMethod, ComparePlan, CompareProgress, TrainConfig, TrainMethod};
/// let config = TrainConfig::default().with_max_rank(32).unwrap(); // |S| = 6
/// let plan = ComparePlan {
///     methods: vec![TrainMethod::Lora.into(), TrainMethod::MatryoshkaExact.into(), CompareMethod::LoraGrid],
///     head_modes: vec![Default::default()],
///     seeds: vec![1, 2, 3],
///     lrs: vec![1e-3, 3e-3],
///     val_n: Some(64),
///     select_on_first_seed: true,
/// };
/// // lora 2 + 1 + 1 runs, exact the same at 6 each, the grid 6 ranks x (2 + 1 + 1)
/// let progress = CompareProgress::new(&plan, &config);
/// assert_eq!(progress.total(), 4.0 + 24.0 + 24.0);
/// assert_eq!(progress.done(), 0.0);
/// assert_eq!(progress.seconds_left(), None);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CompareProgress {
    total: f64,
    done: f64,
    train_seconds: f64,
    /// Ranks to evaluate in all (each evaluation of a run counts its ranks).
    evals: f64,
    evals_done: f64,
    eval_seconds: f64,
    /// The training runs counted so far.
    trained: HashSet<(Unit, u64)>,
}

impl CompareProgress {
    /// No run finished yet of `plan`, whose runs train with `config`'s
    /// settings (ranks, rank samples) and each method's own.
    pub fn new(plan: &ComparePlan, config: &TrainConfig) -> Self {
        let (mut total, mut evals) = (0.0, 0.0);
        for unit in plan.units(&config.ranks) {
            let chooses = plan.chooses_lr(unit.seed);
            let runs = if chooses { plan.lrs.len() } else { 1 };
            let passes = unit.config(config, config.lr).passes_per_step();
            // a grid unit is evaluated at its own rank, the others at all of S
            let ranks = if unit.rank.is_some() {
                1
            } else {
                config.ranks.len()
            };
            total += (runs * passes) as f64;
            // every run evaluated once, the chosen one again on the test rows
            evals += ((runs + usize::from(chooses)) * ranks) as f64;
        }
        Self {
            total,
            done: 0.0,
            train_seconds: 0.0,
            evals,
            evals_done: 0.0,
            eval_seconds: 0.0,
            trained: HashSet::new(),
        }
    }

    /// Counts `run` as reported. The first report of a training run (its
    /// method, head mode, seed, grid rank and learning rate) adds its work
    /// and its training and evaluation seconds; a later one (the chosen
    /// run's evaluation on the test rows after its validation run) adds its
    /// evaluation seconds only. A chosen run read back when a comparison
    /// resumes comes without its validation report, and counts its training.
    pub fn record(&mut self, run: &ComparedRun) {
        let train = &run.report.config.train;
        let key = (Unit::of_run(run), train.lr.to_bits());
        let ranks = run.report.ranks.len() as f64;
        if self.trained.insert(key) {
            self.done += train.passes_per_step() as f64;
            self.train_seconds += run.train_seconds();
            if run.split == "test" && run.val_aurac_log2.is_some() {
                // read back without its validation evaluation: count that
                // one too, at this one's time
                self.evals_done += ranks;
                self.eval_seconds += run.report.eval_seconds;
            }
        }
        self.evals_done += ranks;
        self.eval_seconds += run.report.eval_seconds;
    }

    /// The plan's work, in LoRA-run equivalents.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// The work of the runs recorded so far.
    pub fn done(&self) -> f64 {
        self.done
    }

    /// The training work left at the recorded runs' training pace (seconds
    /// per unit of work) plus the evaluations left at their evaluation pace
    /// (seconds per rank evaluated); `None` before any work is recorded.
    pub fn seconds_left(&self) -> Option<f64> {
        if self.done <= 0.0 {
            return None;
        }
        let training = (self.total - self.done).max(0.0) * self.train_seconds / self.done;
        let evaluation = if self.evals_done > 0.0 {
            (self.evals - self.evals_done).max(0.0) * self.eval_seconds / self.evals_done
        } else {
            0.0
        };
        Some(training + evaluation)
    }

    /// `27/119 LoRA-run equivalents, about 5.7 h left` (minutes under an hour).
    pub fn describe(&self) -> String {
        let work = format!("{:.0}/{:.0} LoRA-run equivalents", self.done, self.total);
        match self.seconds_left() {
            Some(s) if s >= 3600.0 => format!("{work}, about {:.1} h left", s / 3600.0),
            Some(s) => format!("{work}, about {:.0} min left", s / 60.0),
            None => work,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Report, RunConfig};
    use crate::train::{CompareMethod, TrainMethod};

    fn run(config: &TrainConfig, lr: f64, split: &str, val: Option<f64>) -> ComparedRun {
        let config = &TrainConfig {
            lr,
            ..config.clone()
        };
        let report = Report {
            task: "causal-lm".into(),
            method: config.method,
            head_mode: config.head_mode,
            max_rank: config.rank,
            ranks: config.ranks.clone(),
            per_rank: Default::default(),
            aurac_metric: "token_accuracy".into(),
            aurac_log2: 0.0,
            aurac_linear: 0.0,
            scaling: config.scaling,
            seed: config.seed,
            train_steps: 30,
            ms_per_step: 2000.0 * config.passes_per_step() as f64,
            eval_seconds: 40.0,
            peak_rss_mb: 0.0,
            smallest_rank_within: None,
            task_info: Default::default(),
            data: None,
            config: RunConfig {
                train: config.clone(),
                task: Default::default(),
            },
            records: Vec::new(),
        };
        ComparedRun {
            report,
            chosen: split == "test",
            split: split.into(),
            val_aurac_log2: val,
            grid: false,
        }
    }

    #[test]
    fn work_and_time_left_follow_the_finished_runs() {
        let config = TrainConfig::default().with_max_rank(8).unwrap(); // |S| = 4
        let exact = config.clone().with_method(TrainMethod::MatryoshkaExact);
        let lora = config.clone().with_method(TrainMethod::Lora);
        let plan = ComparePlan {
            methods: vec![
                TrainMethod::Lora.into(),
                TrainMethod::MatryoshkaExact.into(),
            ],
            head_modes: vec![Default::default()],
            seeds: vec![1, 2],
            lrs: vec![1e-3, 3e-3],
            val_n: Some(8),
            select_on_first_seed: false,
        };
        let mut p = CompareProgress::new(&plan, &config);
        // 2 seeds x 2 lrs: lora 4 runs, exact 4 runs of 4 passes
        assert_eq!(p.total(), 4.0 + 16.0);
        p.record(&run(&lora, 1e-3, "valid", Some(70.0)));
        p.record(&run(&lora, 3e-3, "valid", Some(69.0)));
        assert_eq!(p.done(), 2.0);
        // training: 60 s per unit, 18 units left; evaluation: 40 s per 4
        // ranks, of 2 x 2 x (2 + 1) x 4 = 48 ranks 8 evaluated
        assert_eq!(p.seconds_left(), Some(18.0 * 60.0 + 40.0 * 10.0));
        assert_eq!(p.describe(), "2/20 LoRA-run equivalents, about 25 min left");
        // the chosen run's test evaluation: its time, no work
        p.record(&run(&lora, 1e-3, "test", Some(70.0)));
        assert_eq!(p.done(), 2.0);
        assert_eq!(p.seconds_left(), Some(18.0 * 60.0 + 36.0 * 10.0));
        // an exact run: 4 passes, 240 s of training
        p.record(&run(&exact, 1e-3, "valid", Some(60.0)));
        assert_eq!(p.done(), 6.0);
        assert_eq!(p.seconds_left(), Some(14.0 * 60.0 + 32.0 * 10.0));
        assert!(
            p.describe()
                .starts_with("6/20 LoRA-run equivalents, about ")
        );
    }

    #[test]
    fn a_resumed_comparison_counts_the_chosen_runs_it_reads_back() {
        let config = TrainConfig::default()
            .with_max_rank(8)
            .unwrap()
            .with_method(TrainMethod::Lora);
        let plan = ComparePlan {
            methods: vec![TrainMethod::Lora.into()],
            head_modes: vec![Default::default()],
            seeds: vec![1, 2],
            lrs: vec![1e-3, 3e-3],
            val_n: Some(8),
            select_on_first_seed: true,
        };
        let mut p = CompareProgress::new(&plan, &config);
        assert_eq!(p.total(), 3.0);
        // a finished unit read back: the rejected run, then the chosen one
        // (its validation report is not read back)
        p.record(&run(&config, 3e-3, "valid", Some(69.0)));
        p.record(&run(&config, 1e-3, "test", Some(70.0)));
        assert_eq!(p.done(), 2.0);
        // training done but the second seed's; its 4 ranks' evaluation left
        assert_eq!(p.seconds_left(), Some(60.0 + 4.0 * 10.0));
        // the second seed, trained once with the first seed's choice
        let seed2 = TrainConfig { seed: 2, ..config };
        p.record(&run(&seed2, 1e-3, "test", None));
        assert_eq!(p.done(), 3.0);
        assert_eq!(p.seconds_left(), Some(0.0));
    }

    #[test]
    fn a_single_learning_rate_trains_each_unit_once_and_the_grid_per_rank() {
        let config = TrainConfig::default().with_max_rank(4).unwrap(); // |S| = 3
        let plan = ComparePlan {
            methods: vec![
                TrainMethod::MatryoshkaSampled.into(),
                CompareMethod::LoraGrid,
            ],
            head_modes: vec![Default::default(), Default::default()],
            seeds: vec![1, 2],
            lrs: vec![1e-3],
            val_n: None,
            select_on_first_seed: true,
        };
        // per head mode and seed: sampled 1 run x 2 passes, the grid 3 runs
        let p = CompareProgress::new(&plan, &config);
        assert_eq!(p.total(), 2.0 * 2.0 * (2.0 + 3.0));
        assert_eq!(p.describe(), "0/20 LoRA-run equivalents");
    }
}
