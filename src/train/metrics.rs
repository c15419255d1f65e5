//! burn-train metrics: accuracy and loss at each rank, and AURAC.

use super::learner_model::PerRankOutput;
use crate::aurac::{RankAxis, aurac};
use burn::tensor::TensorReadError;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};
use std::sync::Arc;

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
