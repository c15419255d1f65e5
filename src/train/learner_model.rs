//! The burn-train model: training steps that apply the method, validation steps
//! that evaluate every nested rank.

use super::metrics::Divergence;
use super::model::{RankedBatchOutput, TaskModel};
use super::objective::TrainMethod;
use crate::adapter::{ActiveRank, AdaptedModule, RankSampler, RankSet, RankSubsetSampler};
use burn::module::Module;
use burn::prelude::*;
use burn::train::Interrupter;
use burn::train::ItemLazy;
use burn::train::metric::{Adaptor, LossInput};
use burn::train::{InferenceStep, TrainOutput, TrainStep};
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
    /// Counts steps and stops training at a non-finite loss.
    pub guard: StepGuard,
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
        if let Ok(mut sampler) = self.sampler.lock() {
            for _ in 0..steps {
                sampler.draw();
            }
        }
        if let Some(Ok(mut subsets)) = self.subsets.as_ref().map(|s| s.lock()) {
            for _ in 0..steps {
                subsets.draw();
            }
        }
        self.guard.steps.store(steps, Ordering::SeqCst);
        self
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

    /// Counts a step with loss `value`; stops the run when it is not finite.
    fn check(&self, value: f64) {
        let step = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
        if !value.is_finite() && self.divergence.record(step, value) {
            self.interrupter
                .stop(Some(&format!("non-finite loss {value} at step {step}")));
        }
        if self.limit == Some(step) {
            self.interrupter
                .stop(Some(&format!("stopped after step {step} as asked")));
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

    fn draw(&self) -> Option<usize> {
        self.plan
            .sampler
            .lock()
            .map(|mut s| s.draw())
            .unwrap_or(None)
    }

    /// The objective's loss for one batch, and DyLoRA's drawn rank.
    pub fn objective(&self, batch: &T::Batch) -> (Tensor<1>, Option<usize>) {
        match self.plan.method {
            TrainMethod::Lora | TrainMethod::Matryoshka => {
                (self.task.forward_batch(batch).loss, None)
            }
            TrainMethod::Dylora | TrainMethod::DyloraOriginal => match self.draw() {
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
                let ranks = self
                    .plan
                    .subsets
                    .as_ref()
                    .and_then(|s| s.lock().ok().map(|mut s| s.draw()))
                    .unwrap_or_else(|| self.plan.ranks.clone());
                (self.mean_loss(&ranks, batch), None)
            }
        }
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
    type Input = T::Batch;
    type Output = TrainStepOutput;

    fn step(&self, batch: T::Batch) -> TrainOutput<TrainStepOutput> {
        let (loss, drawn_rank) = self.objective(&batch);
        // One scalar read per step: the step that diverges is the one that stops.
        let value = loss.clone().try_into_scalar::<f64>().unwrap_or(f64::NAN);
        self.plan.guard.check(value);
        let grads = loss.backward();
        TrainOutput::new(self, grads, TrainStepOutput { loss, drawn_rank })
    }
}

impl<T: TaskModel> InferenceStep for RankedLearnerModel<T> {
    type Input = T::Batch;
    type Output = PerRankOutput;

    fn step(&self, batch: T::Batch) -> PerRankOutput {
        self.evaluate(&batch)
    }
}
