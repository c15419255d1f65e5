//! The burn-train model: training steps that apply the method, validation steps
//! that evaluate every nested rank.

use super::metrics::Divergence;
use super::model::{RankedBatchOutput, TaskModel};
use super::objective::TrainMethod;
use crate::adapter::{ActiveRank, AdaptedModule, RankSampler, RankSet, RankSubsetSampler};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::train::Interrupter;
use burn::train::ItemLazy;
use burn::train::metric::{Adaptor, LossInput};
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How each training step uses the adapters, and which ranks validation scores.
#[derive(Clone)]
pub struct StepPlan {
    /// The method.
    pub method: TrainMethod,
    /// The nested ranks `S` (ascending): DyLoRA's draws, the exact objective's
    /// ranks, and the validation ranks.
    pub ranks: Vec<usize>,
    /// DyLoRA's seeded rank sampler (shared by clones of the model, so every
    /// step draws the next rank of one sequence).
    pub sampler: Arc<Mutex<RankSampler>>,
    /// `matryoshka-sampled`'s seeded draw of `m` ranks per step.
    pub subsets: Option<Arc<Mutex<RankSubsetSampler>>>,
    /// The draws of recent optimiser steps, so that every shard of a step
    /// (data-parallel workers, accumulated micro-batches) sees the same one.
    draws: Arc<Mutex<StepDraws>>,
    /// Counts steps and stops training at a non-finite loss.
    pub guard: StepGuard,
}

/// What the method drew for one optimiser step.
#[derive(Debug, Clone, Default)]
struct Draw {
    /// DyLoRA's rank.
    rank: Option<usize>,
    /// `matryoshka-sampled`'s ranks.
    subset: Option<Vec<usize>>,
}

/// The draws of the latest optimiser steps, by step (from 0).
#[derive(Debug, Default)]
struct StepDraws {
    /// The step the next fresh draw is for.
    next: usize,
    /// `(step, draw)` of recent steps, oldest first.
    recent: VecDeque<(usize, Draw)>,
}

impl StepDraws {
    /// Steps kept: shards of one step are never further apart than this.
    const KEPT: usize = 64;
}

impl std::fmt::Debug for StepPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepPlan")
            .field("method", &self.method)
            .field("ranks", &self.ranks)
            .field("steps", &self.guard.steps())
            .finish()
    }
}

impl StepPlan {
    /// A plan for `method` over the rank set `set`, DyLoRA draws seeded by `seed`.
    pub fn new(method: TrainMethod, set: &RankSet, seed: u64) -> Self {
        Self {
            method,
            ranks: set.ranks().to_vec(),
            sampler: Arc::new(Mutex::new(RankSampler::new(
                &method.adapter_method(),
                set,
                seed,
            ))),
            subsets: None,
            draws: Arc::default(),
            guard: StepGuard::default(),
        }
    }

    /// With `matryoshka-sampled`'s draw of `m` ranks per step (`R` always
    /// among them with `always_max`), seeded by `seed`.
    pub fn with_rank_samples(
        mut self,
        set: &RankSet,
        m: usize,
        always_max: bool,
        seed: u64,
    ) -> Self {
        self.subsets = Some(Arc::new(Mutex::new(RankSubsetSampler::new(
            set, m, always_max, seed,
        ))));
        self
    }

    /// The plan as it stands after `steps` training steps: the step count set,
    /// DyLoRA's sampler advanced by as many draws (to resume a run).
    pub fn after_steps(self, steps: usize) -> Self {
        if let Some(last) = steps.checked_sub(1) {
            self.draw(Some(last));
        }
        self.guard.steps.store(steps, Ordering::SeqCst);
        self
    }

    /// The method's draw for optimiser step `step` (from 0; `None`: the next
    /// step's). Draws are made in step order from the seeded samplers, so a
    /// run sees the same sequence however its steps are sharded.
    fn draw(&self, step: Option<usize>) -> Draw {
        let Ok(mut draws) = self.draws.lock() else {
            return Draw::default();
        };
        let step = step.unwrap_or(draws.next);
        // Workers of one step are never more than a step apart (they meet at
        // every optimiser step), far within the steps kept.
        if step < draws.next
            && let Some((_, draw)) = draws.recent.iter().find(|(s, _)| *s == step)
        {
            return draw.clone();
        }
        let mut latest = Draw::default();
        while draws.next <= step {
            // Each sampler draws only for its method (DyLoRA's has no
            // choices otherwise; the subset sampler exists for
            // matryoshka-sampled only).
            latest = Draw {
                rank: self.sampler.lock().map(|mut s| s.draw()).unwrap_or(None),
                subset: self
                    .subsets
                    .as_ref()
                    .and_then(|s| s.lock().ok().map(|mut s| s.draw())),
            };
            let next = draws.next;
            draws.recent.push_back((next, latest.clone()));
            if draws.recent.len() > StepDraws::KEPT {
                draws.recent.pop_front();
            }
            draws.next += 1;
        }
        latest
    }
}

/// One piece of an optimiser step's batch, as a data-parallel worker or an
/// accumulated micro-batch trains on it.
///
/// The task's loss is a mean over the piece; `weight` rescales it to the
/// piece's share of the whole step's mean (its loss terms over the step's:
/// rows, or scored tokens for a causal LM). burn-train sums the pieces'
/// gradients (across workers, and over accumulated micro-batches), so the
/// step's gradient is the whole batch's, whatever the split. A single
/// unsplit batch has weight 1 and is trained on unchanged.
#[derive(Debug, Clone)]
pub struct TrainShard<B> {
    /// The piece's batch.
    pub batch: B,
    /// Its share of the step's loss terms.
    pub weight: f64,
    /// The optimiser step it belongs to (from 0, over the whole run).
    pub step: usize,
    /// Whether it is the last piece of its step this worker trains on.
    pub ends_step: bool,
}

impl<B> TrainShard<B> {
    /// A whole batch: optimiser step `step`, weight 1.
    pub fn whole(batch: B, step: usize) -> Self {
        Self {
            batch,
            weight: 1.0,
            step,
            ends_step: true,
        }
    }
}

/// Checks every training step's loss where it is computed: the step that
/// produces a NaN or infinite loss stops training through the
/// [`Interrupter`] (burn-train ends the epoch after that step) and is
/// recorded in [`Divergence`]. Clones share the count and the record.
#[derive(Clone, Default)]
pub struct StepGuard {
    steps: Arc<AtomicUsize>,
    /// The first non-finite loss, if any.
    pub divergence: Divergence,
    /// Stops the run.
    pub interrupter: Interrupter,
    /// Stop after this many steps in all (`None`: at the end).
    pub limit: Option<usize>,
}

impl StepGuard {
    /// Training steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps.load(Ordering::SeqCst)
    }

    /// Records a piece of step `step` (from 0) with loss `value`: stops the
    /// run when it is not finite; counts the step when the piece ends it.
    fn check(&self, step: usize, ends_step: bool, value: f64) {
        let step = step + 1;
        if !value.is_finite() && self.divergence.record(step, value) {
            self.interrupter
                .stop(Some(&format!("non-finite loss {value} at step {step}")));
        }
        if ends_step {
            self.steps.fetch_max(step, Ordering::SeqCst);
            if self.limit == Some(step) {
                self.interrupter
                    .stop(Some(&format!("stopped after step {step} as asked")));
            }
        }
    }
}

/// A [`TaskModel`] wrapped for burn-train's `Learner`.
#[derive(Module, Debug)]
pub struct RankedLearnerModel<T: Module> {
    /// The adapted model.
    pub task: T,
    /// The step plan.
    #[module(skip)]
    pub plan: StepPlan,
}

/// Training-step output: the loss of the step's objective.
pub struct TrainStepOutput {
    /// `[1]`.
    pub loss: Tensor<1>,
    /// The rank DyLoRA drew for the step, if any.
    pub drawn_rank: Option<usize>,
}

impl ItemLazy for TrainStepOutput {
    fn sync(self) -> Result<Self, burn::tensor::ExecutionError> {
        self.loss.device().flush()?;
        Ok(Self {
            loss: self.loss.without_autodiff(),
            drawn_rank: self.drawn_rank,
        })
    }
}

impl Adaptor<LossInput> for TrainStepOutput {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

/// Validation output: loss and score at every rank of the plan.
#[derive(Debug, Clone)]
pub struct PerRankOutput {
    /// The ranks, ascending.
    pub ranks: Vec<usize>,
    /// One output per rank.
    pub outputs: Vec<RankedBatchOutput>,
}

impl ItemLazy for PerRankOutput {
    fn sync(self) -> Result<Self, burn::tensor::ExecutionError> {
        if let Some(first) = self.outputs.first() {
            first.loss.device().flush()?;
        }
        Ok(self)
    }
}

impl<T: TaskModel> RankedLearnerModel<T> {
    /// Wraps `task`; errors if a rank of `plan` is not usable by every adapter.
    pub fn new(task: T, plan: StepPlan) -> crate::adapter::Result<Self> {
        for &k in &plan.ranks {
            task.clone().with_active_rank(ActiveRank::Rank(k))?;
        }
        if let Some((_, max_rank)) = task.adapter_paths().into_iter().min_by_key(|(_, r)| *r)
            && plan.method == TrainMethod::DyloraOriginal
        {
            // DyLoRA-original draws from 1..=R: R must be the same everywhere.
            task.clone()
                .with_active_rank(ActiveRank::Component(max_rank))?;
        }
        Ok(Self { task, plan })
    }

    /// The task with `rank` active (ranks are validated in [`RankedLearnerModel::new`]).
    fn at(&self, rank: ActiveRank) -> T {
        match self.task.clone().with_active_rank(rank) {
            Ok(task) => task,
            Err(e) => unreachable!("{rank:?} was validated when the plan was built: {e}"),
        }
    }

    fn at_rank(&self, k: usize) -> T {
        self.at(ActiveRank::Rank(k))
    }

    /// The objective's loss for one batch (the next step's draw), and
    /// DyLoRA's drawn rank.
    pub fn objective(&self, batch: &T::Batch) -> (Tensor<1>, Option<usize>) {
        self.objective_at(batch, None)
    }

    /// The objective's loss for one batch of optimiser step `step` (from 0;
    /// every batch of a step gets the step's draw), and DyLoRA's drawn rank.
    pub fn objective_at(
        &self,
        batch: &T::Batch,
        step: Option<usize>,
    ) -> (Tensor<1>, Option<usize>) {
        let draw = self.plan.draw(step);
        match self.plan.method {
            TrainMethod::Lora | TrainMethod::Matryoshka => {
                (self.task.forward_batch(batch).loss, None)
            }
            TrainMethod::Dylora | TrainMethod::DyloraOriginal => match draw.rank {
                Some(b) => {
                    let rank = if self.plan.method == TrainMethod::Dylora {
                        ActiveRank::Rank(b)
                    } else {
                        ActiveRank::Component(b)
                    };
                    (self.at(rank).forward_batch(batch).loss, Some(b))
                }
                None => (self.task.forward_batch(batch).loss, None),
            },
            TrainMethod::MatryoshkaExact => (self.mean_loss(&self.plan.ranks, batch), None),
            TrainMethod::MatryoshkaSampled => {
                let ranks = draw.subset.unwrap_or_else(|| self.plan.ranks.clone());
                (self.mean_loss(&ranks, batch), None)
            }
        }
    }

    /// The nested models a step of optimiser step `step` runs one by one
    /// (the exact objective's `S`, the sampled one's draw), or `None` for a
    /// method of one forward pass.
    fn nested_passes(&self, step: Option<usize>) -> Option<Vec<usize>> {
        match self.plan.method {
            TrainMethod::MatryoshkaExact => Some(self.plan.ranks.clone()),
            TrainMethod::MatryoshkaSampled => Some(
                self.plan
                    .draw(step)
                    .subset
                    .unwrap_or_else(|| self.plan.ranks.clone()),
            ),
            _ => None,
        }
    }

    /// The step of an objective that is a mean of nested models' losses,
    /// `L = (1/n) sum_k L_k`, with one backward pass per nested model:
    /// `grad L = (1/n) sum_k grad L_k` is accumulated while only one
    /// model's activations are alive, so memory is one pass's, not `n`
    /// passes' (the same gradient up to float rounding). Returns the
    /// gradients and `L` (detached); `None` for no ranks.
    fn nested_step(
        &self,
        ranks: &[usize],
        batch: &T::Batch,
        weight: f64,
    ) -> Option<(GradientsParams, Tensor<1>)> {
        let n = ranks.len() as f64;
        let mut accumulated = GradientsAccumulator::<Self>::new();
        let total = ranks
            .iter()
            .map(|&k| {
                let loss = self.at_rank(k).forward_batch(batch).loss / n;
                let grads = (loss.clone() * weight).backward();
                accumulated.accumulate(self, GradientsParams::from_grads(grads, self));
                loss.detach()
            })
            .reduce(|sum, loss| sum + loss)?;
        Some((accumulated.grads(), total))
    }

    /// The mean of the nested models' losses at `ranks` (the model's own
    /// loss when there are none).
    fn mean_loss(&self, ranks: &[usize], batch: &T::Batch) -> Tensor<1> {
        let n = ranks.len() as f64;
        ranks
            .iter()
            .map(|&k| self.at_rank(k).forward_batch(batch).loss)
            .reduce(|a, b| a + b)
            .map(|sum| sum / n)
            .unwrap_or_else(|| self.task.forward_batch(batch).loss)
    }

    /// Loss and score at every rank of the plan.
    pub fn evaluate(&self, batch: &T::Batch) -> PerRankOutput {
        PerRankOutput {
            ranks: self.plan.ranks.clone(),
            outputs: self
                .plan
                .ranks
                .iter()
                .map(|&k| self.at_rank(k).forward_batch(batch))
                .collect(),
        }
    }
}

impl<T: TaskModel> TrainStep for RankedLearnerModel<T> {
    type Input = TrainShard<T::Batch>;
    type Output = TrainStepOutput;

    fn step(&self, shard: TrainShard<T::Batch>) -> TrainOutput<TrainStepOutput> {
        let nested = self
            .nested_passes(Some(shard.step))
            .and_then(|ranks| self.nested_step(&ranks, &shard.batch, shard.weight));
        let (grads, loss, drawn_rank) = match nested {
            Some((grads, loss)) => (grads, loss, None),
            None => {
                let (loss, drawn_rank) = self.objective_at(&shard.batch, Some(shard.step));
                // The piece's share of the step's mean (a whole batch: as it is).
                let grads = if shard.weight == 1.0 {
                    loss.backward()
                } else {
                    (loss.clone() * shard.weight).backward()
                };
                (GradientsParams::from_grads(grads, self), loss, drawn_rank)
            }
        };
        // One scalar read per piece: the step that diverges is the one that stops.
        let value = loss.clone().try_into_scalar::<f64>().unwrap_or(f64::NAN);
        self.plan.guard.check(shard.step, shard.ends_step, value);
        let item = TrainStepOutput { loss, drawn_rank };
        TrainOutput { grads, item }
    }
}

impl<T: TaskModel> InferenceStep for RankedLearnerModel<T> {
    type Input = T::Batch;
    type Output = PerRankOutput;

    fn step(&self, batch: T::Batch) -> PerRankOutput {
        self.evaluate(&batch)
    }
}
