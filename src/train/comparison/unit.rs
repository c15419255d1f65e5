//! The units of a comparison: one training configuration each (a method,
//! one `k` of the grid, a head mode and a seed) over the plan's learning
//! rates, in the order a comparison runs them. The runner and the progress
//! estimate both expand a plan here.

use super::{CompareMethod, ComparePlan, ComparedRun};
use crate::train::config::TrainConfig;
use crate::train::objective::HeadMode;
use std::path::{Path, PathBuf};

/// One training configuration of a comparison: a method (one `k` of the
/// grid), a head mode and a seed, over the plan's learning rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Unit {
    pub(super) method: CompareMethod,
    pub(super) head_mode: HeadMode,
    pub(super) seed: u64,
    /// The grid's `k`.
    pub(super) rank: Option<usize>,
}

impl Unit {
    /// The unit `run` belongs to.
    pub(super) fn of_run(run: &ComparedRun) -> Self {
        Self {
            method: run.compare_method(),
            head_mode: run.report.head_mode,
            seed: run.report.seed,
            rank: run.grid.then_some(run.report.config.train.rank),
        }
    }

    /// `out/<method>[-<head>]/seed-<s>/[rank-<k>/]`: its runs' parent.
    pub(super) fn dir(&self, out: &Path) -> PathBuf {
        let head = match self.head_mode {
            HeadMode::Joint => String::new(),
            other => format!("-{other}"),
        };
        let dir = out
            .join(format!("{}{head}", self.method))
            .join(format!("seed-{}", self.seed));
        match self.rank {
            Some(k) => dir.join(format!("rank-{k}")),
            None => dir,
        }
    }

    /// Whether `run` is of this unit's method, head mode (and grid rank),
    /// whatever its seed.
    pub(super) fn is_of(&self, run: &ComparedRun) -> bool {
        run.compare_method() == self.method
            && run.report.head_mode == self.head_mode
            && self.rank.is_none_or(|k| run.report.config.train.rank == k)
    }

    /// `lora-grid (joint), seed 1, rank 4`.
    pub(super) fn label(&self) -> String {
        let rank = self.rank.map(|k| format!(", rank {k}")).unwrap_or_default();
        format!(
            "{} ({}), seed {}{rank}",
            self.method, self.head_mode, self.seed
        )
    }

    /// Its settings at learning rate `lr`: the comparison's `base` settings
    /// with its method, head mode and seed (a grid unit: `R = k`, `S = {k}`).
    pub(super) fn config(&self, base: &TrainConfig, lr: f64) -> TrainConfig {
        let mut config = TrainConfig {
            head_mode: self.head_mode,
            seed: self.seed,
            lr,
            ..base.clone().with_method(self.method.train_method())
        };
        if let Some(k) = self.rank {
            config.rank = k;
            config.ranks = vec![k];
        }
        config
    }
}

impl ComparePlan {
    /// Every unit of the plan, in the order a comparison runs them: head
    /// modes, then methods, then seeds, and for `lora-grid` every `k` of
    /// `ranks` (the comparison's `S`).
    pub(super) fn units(&self, ranks: &[usize]) -> Vec<Unit> {
        let mut units = Vec::new();
        for &head_mode in &self.head_modes {
            for &method in &self.methods {
                for &seed in &self.seeds {
                    let unit = |rank| Unit {
                        method,
                        head_mode,
                        seed,
                        rank,
                    };
                    if method.is_grid() {
                        units.extend(ranks.iter().map(|&k| unit(Some(k))));
                    } else {
                        units.push(unit(None));
                    }
                }
            }
        }
        units
    }

    /// Whether the units of `seed` choose their learning rate among
    /// [`lrs`](ComparePlan::lrs) on the validation rows; if not, they train
    /// once (at the single learning rate, or at the first seed's choice).
    pub(super) fn chooses_lr(&self, seed: u64) -> bool {
        self.lrs.len() > 1 && (!self.select_on_first_seed || self.seeds.first() == Some(&seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::TrainMethod;

    fn plan(methods: Vec<CompareMethod>, lrs: Vec<f64>, first_seed: bool) -> ComparePlan {
        ComparePlan {
            methods,
            head_modes: vec![HeadMode::Joint],
            seeds: vec![7, 8],
            lrs,
            val_n: None,
            select_on_first_seed: first_seed,
        }
    }

    #[test]
    fn units_run_method_by_method_seed_by_seed_and_the_grid_rank_by_rank() {
        let lora = CompareMethod::Train(TrainMethod::Lora);
        let p = plan(vec![lora, CompareMethod::LoraGrid], vec![1e-3], false);
        let units: Vec<(CompareMethod, u64, Option<usize>)> = p
            .units(&[2, 4])
            .iter()
            .map(|u| (u.method, u.seed, u.rank))
            .collect();
        let grid = CompareMethod::LoraGrid;
        assert_eq!(
            units,
            vec![
                (lora, 7, None),
                (lora, 8, None),
                (grid, 7, Some(2)),
                (grid, 7, Some(4)),
                (grid, 8, Some(2)),
                (grid, 8, Some(4)),
            ]
        );
    }

    #[test]
    fn a_grid_units_config_is_a_plain_lora_of_max_rank_k() {
        let p = plan(vec![CompareMethod::LoraGrid], vec![1e-3], false);
        let base = TrainConfig::default().with_max_rank(8).unwrap();
        let unit = p.units(&base.ranks)[1];
        let config = unit.config(&base, 3e-3);
        assert_eq!((config.rank, config.ranks.clone()), (2, vec![2]));
        assert_eq!(
            (config.method, config.seed, config.lr),
            (TrainMethod::Lora, 7, 3e-3)
        );
        assert_eq!(unit.label(), "lora-grid (joint), seed 7, rank 2");
        assert_eq!(
            unit.dir(Path::new("out")),
            Path::new("out/lora-grid/seed-7/rank-2")
        );
    }

    #[test]
    fn only_the_first_seed_chooses_when_told_and_one_learning_rate_never() {
        let lora = vec![CompareMethod::Train(TrainMethod::Lora)];
        let first = plan(lora.clone(), vec![1e-3, 3e-3], true);
        assert_eq!((first.chooses_lr(7), first.chooses_lr(8)), (true, false));
        let every = plan(lora.clone(), vec![1e-3, 3e-3], false);
        assert_eq!((every.chooses_lr(7), every.chooses_lr(8)), (true, true));
        let single = plan(lora, vec![1e-3], false);
        assert_eq!((single.chooses_lr(7), single.chooses_lr(8)), (false, false));
    }
}
