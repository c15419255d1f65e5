//! burn-train metrics: accuracy and loss at each rank and AURAC (shown while
//! training), and the collector that hands the per-rank figures to the runner
//! as numbers.

use super::learner_model::PerRankOutput;
use crate::adapter::{RankAxis, aurac};
use burn::tensor::TensorReadError;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};
use std::sync::{Arc, Mutex};

/// Per-rank sums of one batch, read back from the device: `(loss, score)` per
/// rank and the example count.
#[derive(Debug, Clone)]
pub struct PerRankInput {
    output: PerRankOutput,
}

impl Adaptor<PerRankInput> for PerRankOutput {
    fn adapt(&self) -> PerRankInput {
        PerRankInput {
            output: self.clone(),
        }
    }
}

impl PerRankInput {
    fn at(&self, index: usize) -> Result<(f64, f64, usize), TensorReadError> {
        let out = &self.output.outputs[index];
        let loss = out.loss.clone().try_into_scalar::<f64>()?;
        let score = out.score.clone().try_into_scalar::<f64>()?;
        Ok((loss, score, out.count))
    }
}

/// The metric name of the accuracy at rank `k`.
pub fn rank_accuracy_name(k: usize) -> String {
    format!("Accuracy@r{k}")
}

/// The metric name of the loss at rank `k`.
pub fn rank_loss_name(k: usize) -> String {
    format!("Loss@r{k}")
}

/// The metric name of AURAC on `axis`.
pub fn aurac_metric_name(axis: RankAxis) -> String {
    match axis {
        RankAxis::Log2 => "AURAC-log2".into(),
        RankAxis::Linear => "AURAC-linear".into(),
    }
}

macro_rules! numeric_impl {
    ($t:ty) => {
        impl Numeric for $t {
            fn value(&self) -> Option<NumericEntry> {
                Some(self.state.current_value())
            }
            fn running_value(&self) -> Option<NumericEntry> {
                Some(self.state.running_value())
            }
            fn final_value(&self) -> NumericEntry {
                self.state.final_value()
            }
        }
    };
}

/// Accuracy (%) at one nested rank, averaged over the epoch.
#[derive(Clone)]
pub struct RankAccuracyMetric {
    index: usize,
    name: MetricName,
    state: NumericMetricState,
}

impl RankAccuracyMetric {
    /// The metric for the `index`-th rank `k` of the plan.
    pub fn new(index: usize, k: usize) -> Self {
        Self {
            index,
            name: Arc::new(rank_accuracy_name(k)),
            state: NumericMetricState::new(),
        }
    }
}

impl Metric for RankAccuracyMetric {
    type Input = PerRankInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: Some("%".into()),
            higher_is_better: true,
        }
        .into()
    }

    fn update(
        &mut self,
        item: &PerRankInput,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let (_, score, count) = item.at(self.index)?;
        self.state
            .update(100.0 * score / count.max(1) as f64, count);
        Ok(self
            .state
            .compute_update(FormatOptions::new(self.name()).unit("%").precision(2)))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self
            .state
            .compute_final(FormatOptions::new(self.name()).unit("%").precision(2)))
    }

    fn clear(&mut self) {
        self.state.reset()
    }
}
numeric_impl!(RankAccuracyMetric);

/// Mean loss at one nested rank.
#[derive(Clone)]
pub struct RankLossMetric {
    index: usize,
    name: MetricName,
    state: NumericMetricState,
}

impl RankLossMetric {
    /// The metric for the `index`-th rank `k` of the plan.
    pub fn new(index: usize, k: usize) -> Self {
        Self {
            index,
            name: Arc::new(rank_loss_name(k)),
            state: NumericMetricState::new(),
        }
    }
}

impl Metric for RankLossMetric {
    type Input = PerRankInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: false,
        }
        .into()
    }

    fn update(
        &mut self,
        item: &PerRankInput,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let (loss, _, count) = item.at(self.index)?;
        self.state.update(loss, count);
        Ok(self
            .state
            .compute_update(FormatOptions::new(self.name()).precision(4)))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self
            .state
            .compute_final(FormatOptions::new(self.name()).precision(4)))
    }

    fn clear(&mut self) {
        self.state.reset()
    }
}
numeric_impl!(RankLossMetric);

/// AURAC (%) of the epoch's per-rank accuracies so far.
#[derive(Clone)]
pub struct AuracMetric {
    axis: RankAxis,
    name: MetricName,
    scores: Vec<f64>,
    count: usize,
    state: NumericMetricState,
}

impl AuracMetric {
    /// AURAC on `axis`.
    pub fn new(axis: RankAxis) -> Self {
        Self {
            axis,
            name: Arc::new(aurac_metric_name(axis)),
            scores: Vec::new(),
            count: 0,
            state: NumericMetricState::new(),
        }
    }

    fn current(&self, ranks: &[usize]) -> f64 {
        let accs: Vec<f64> = self
            .scores
            .iter()
            .map(|s| 100.0 * s / self.count.max(1) as f64)
            .collect();
        aurac(ranks, &accs, self.axis).unwrap_or(f64::NAN)
    }
}

impl Metric for AuracMetric {
    type Input = PerRankInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: Some("%".into()),
            higher_is_better: true,
        }
        .into()
    }

    fn update(
        &mut self,
        item: &PerRankInput,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        if self.scores.len() != item.output.ranks.len() {
            self.scores = vec![0.0; item.output.ranks.len()];
            self.count = 0;
        }
        let mut count = 0;
        for i in 0..item.output.ranks.len() {
            let (_, score, n) = item.at(i)?;
            self.scores[i] += score;
            count = n;
        }
        self.count += count;
        // The state holds the epoch-cumulative AURAC; reset it so that its
        // running mean is exactly that value.
        let value = self.current(&item.output.ranks);
        self.state.reset();
        self.state.update(value, self.count);
        Ok(self
            .state
            .compute_update(FormatOptions::new(self.name()).unit("%").precision(2)))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self
            .state
            .compute_final(FormatOptions::new(self.name()).unit("%").precision(2)))
    }

    fn clear(&mut self) {
        self.scores.clear();
        self.count = 0;
        self.state.reset()
    }
}
numeric_impl!(AuracMetric);

/// Loss and score sums at each rank of one evaluation pass.
#[derive(Debug, Clone, PartialEq)]
struct RankSums {
    ranks: Vec<usize>,
    /// `sum over batches of mean loss * count`, per rank.
    loss: Vec<f64>,
    /// Summed scores, per rank.
    score: Vec<f64>,
    /// Examples.
    count: usize,
}

/// The per-rank figures of one evaluation pass over a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct RankEvaluation {
    /// The ranks, ascending.
    pub ranks: Vec<usize>,
    /// Mean loss per example at each rank.
    pub loss: Vec<f64>,
    /// `100 * sum of scores / examples` at each rank (accuracy, in %).
    pub score: Vec<f64>,
    /// Examples evaluated.
    pub examples: usize,
}

#[derive(Default)]
struct TotalsState {
    /// The pass being accumulated.
    current: Option<RankSums>,
    /// The last pass burn-train closed (end of a validation epoch).
    completed: Option<RankSums>,
}

/// Where [`RankEvalCollector`] (inside burn-train) puts each evaluation pass's
/// per-rank sums and where the runner reads them: computed once, by the pass
/// itself, handed over as numbers. Clones share the same totals.
#[derive(Clone, Default)]
pub struct RankTotals {
    state: Arc<Mutex<TotalsState>>,
}

impl RankTotals {
    /// Empty totals.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one batch's per-rank output (values read from the device).
    pub fn add(&self, output: &PerRankOutput) -> Result<(), TensorReadError> {
        let n = output.ranks.len();
        let mut batch = RankSums {
            ranks: output.ranks.clone(),
            loss: vec![0.0; n],
            score: vec![0.0; n],
            count: 0,
        };
        for (i, out) in output.outputs.iter().enumerate() {
            batch.loss[i] = out.loss.clone().try_into_scalar::<f64>()? * out.count as f64;
            batch.score[i] = out.score.clone().try_into_scalar::<f64>()?;
            batch.count = out.count;
        }
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        match &mut state.current {
            Some(sums) if sums.ranks == batch.ranks => {
                for i in 0..n {
                    sums.loss[i] += batch.loss[i];
                    sums.score[i] += batch.score[i];
                }
                sums.count += batch.count;
            }
            slot => *slot = Some(batch),
        }
        Ok(())
    }

    /// Closes the pass being accumulated (burn-train clears its metrics at the
    /// end of each validation epoch).
    pub fn close_pass(&self) {
        if let Ok(mut state) = self.state.lock()
            && let Some(sums) = state.current.take()
        {
            state.completed = Some(sums);
        }
    }

    /// The figures of the latest pass: the one being accumulated if it has
    /// data, else the last one closed. `None` before any batch.
    pub fn latest(&self) -> Option<RankEvaluation> {
        let state = self.state.lock().ok()?;
        let sums = state.current.as_ref().or(state.completed.as_ref())?;
        let n = sums.count.max(1) as f64;
        Some(RankEvaluation {
            ranks: sums.ranks.clone(),
            loss: sums.loss.iter().map(|l| l / n).collect(),
            score: sums.score.iter().map(|s| 100.0 * s / n).collect(),
            examples: sums.count,
        })
    }
}

/// A burn-train metric that feeds every evaluation batch into [`RankTotals`].
/// It displays the examples seen so far.
#[derive(Clone)]
pub struct RankEvalCollector {
    totals: RankTotals,
    name: MetricName,
}

impl RankEvalCollector {
    /// A collector writing into `totals`.
    pub fn new(totals: RankTotals) -> Self {
        Self {
            totals,
            name: Arc::new("per-rank".to_string()),
        }
    }
}

impl RankEvalCollector {
    /// The examples accumulated so far, as a metric entry.
    fn seen(&self) -> SerializedEntry {
        let seen = self.totals.latest().map(|e| e.examples).unwrap_or(0);
        SerializedEntry::new(format!("{seen} examples"), seen.to_string())
    }
}

impl Metric for RankEvalCollector {
    type Input = PerRankInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(
        &mut self,
        item: &PerRankInput,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.totals.add(&item.output)?;
        Ok(self.seen())
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self.seen())
    }

    fn clear(&mut self) {
        self.totals.close_pass();
    }
}

/// The first training step whose loss was not finite, and that loss.
/// Clones share the record.
#[derive(Clone, Default)]
pub struct Divergence {
    first: Arc<Mutex<Option<(usize, f64)>>>,
}

impl Divergence {
    /// `(step, loss)` of the first non-finite loss (steps count from 1), if any.
    pub fn first(&self) -> Option<(usize, f64)> {
        self.first.lock().ok().and_then(|f| *f)
    }

    /// Records `(step, loss)` unless a divergence was recorded before;
    /// whether this one was recorded.
    pub fn record(&self, step: usize, loss: f64) -> bool {
        match self.first.lock() {
            Ok(mut first) if first.is_none() => {
                *first = Some((step, loss));
                true
            }
            _ => false,
        }
    }
}
