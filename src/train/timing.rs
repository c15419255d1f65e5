//! Wall time of each training and validation split, taken from renderer callbacks.

use burn::train::LearnerSummary;
use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::MetricDefinition;
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct TimesState {
    current: Option<(String, Instant)>,
    /// (split name, wall time) in order.
    splits: Vec<(String, Duration)>,
    /// When the current (or last) train split started and when each of its
    /// pieces was reported done.
    train_marks: Vec<Instant>,
    /// Pieces per optimiser step (data-parallel workers x accumulated
    /// micro-batches; 0 or 1: one).
    pieces_per_step: usize,
}

/// The wall time of every split a run went through (`train`, `valid`, ...).
#[derive(Clone, Default)]
pub struct SplitTimes {
    state: Arc<Mutex<TimesState>>,
}

impl SplitTimes {
    /// Total seconds spent in splits named `name`.
    pub fn seconds(&self, name: &str) -> f64 {
        self.state
            .lock()
            .map(|s| {
                s.splits
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, d)| d.as_secs_f64())
                    .sum()
            })
            .unwrap_or(0.0)
    }

    /// Seconds of the last split named `name`.
    pub fn last_seconds(&self, name: &str) -> f64 {
        self.state
            .lock()
            .ok()
            .and_then(|s| {
                s.splits
                    .iter()
                    .rev()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, d)| d.as_secs_f64())
            })
            .unwrap_or(0.0)
    }

    /// Times with `pieces` batches reported per optimiser step (data-parallel
    /// workers x accumulated micro-batches).
    pub fn with_pieces_per_step(self, pieces: usize) -> Self {
        if let Ok(mut s) = self.state.lock() {
            s.pieces_per_step = pieces;
        }
        self
    }

    /// Mean milliseconds per optimiser step of the last train split, leaving
    /// out its first `warmup` steps (`None` when it had no more than
    /// `warmup` steps).
    pub fn steady_ms_per_step(&self, warmup: usize) -> Option<f64> {
        let s = self.state.lock().ok()?;
        let p = s.pieces_per_step.max(1);
        // marks[0] is the split start, marks[i] the end of piece i.
        let steps = s.train_marks.len().checked_sub(1)? / p;
        if steps <= warmup {
            return None;
        }
        let from = s.train_marks[warmup * p];
        let to = s.train_marks[steps * p];
        Some(1000.0 * to.duration_since(from).as_secs_f64() / (steps - warmup) as f64)
    }

    fn start(&self, name: &str) {
        if let Ok(mut s) = self.state.lock() {
            let now = Instant::now();
            if name.eq_ignore_ascii_case("train") {
                s.train_marks = vec![now];
            }
            s.current = Some((name.to_string(), now));
        }
    }

    fn step_done(&self) {
        if let Ok(mut s) = self.state.lock()
            && s.current
                .as_ref()
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case("train"))
        {
            s.train_marks.push(Instant::now());
        }
    }

    fn end(&self) {
        if let Ok(mut s) = self.state.lock()
            && let Some((name, t0)) = s.current.take()
        {
            s.splits.push((name, t0.elapsed()));
        }
    }
}

/// Wraps a renderer and records split times.
pub struct Timed {
    inner: Box<dyn MetricsRenderer>,
    times: SplitTimes,
}

impl Timed {
    /// Records into `times`, forwarding every call to `inner`.
    pub fn new(inner: Box<dyn MetricsRenderer>, times: SplitTimes) -> Self {
        Self { inner, times }
    }
}

impl MetricsRendererTraining for Timed {
    fn update_train(&mut self, state: MetricState) {
        self.inner.update_train(state)
    }
    fn update_valid(&mut self, state: MetricState) {
        self.inner.update_valid(state)
    }
    fn on_train_end(
        &mut self,
        summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        self.times.end();
        self.inner.on_train_end(summary)
    }
}

impl TrainingProgressLogger for Timed {
    fn start(&mut self, epochs: usize, start: usize, items: Option<usize>, label: Option<&str>) {
        self.inner.start(epochs, start, items, label)
    }
    fn update_epoch(&mut self, epoch: usize) {
        self.inner.update_epoch(epoch)
    }
    fn start_split(&mut self, split: &str, total_items: usize) {
        self.times.end();
        self.times.start(split);
        self.inner.start_split(split, total_items)
    }
    fn update_split(&mut self, items_processed: usize) {
        self.times.step_done();
        self.inner.update_split(items_processed)
    }
    fn end_split(&mut self) {
        self.times.end();
        self.inner.end_split()
    }
    fn end(&mut self) {
        self.times.end();
        self.inner.end()
    }
    fn log_event_training(&mut self, event: String) {
        self.inner.log_event_training(event)
    }
}

impl EvaluationProgressLogger for Timed {
    fn start_global_progress(&mut self, total_tests: usize) {
        self.inner.start_global_progress(total_tests)
    }
    fn start_test(&mut self, name: &str, total_items: usize) {
        self.inner.start_test(name, total_items)
    }
    fn update_test_progress(&mut self, items_processed: usize) {
        self.inner.update_test_progress(items_processed)
    }
    fn end_test(&mut self) {
        self.inner.end_test()
    }
    fn end_global_progress(&mut self) {
        self.inner.end_global_progress()
    }
    fn log_event_evaluation(&mut self, event: String) {
        self.inner.log_event_evaluation(event)
    }
}

impl MetricsRendererEvaluation for Timed {
    fn update_test(&mut self, name: EvaluationName, state: MetricState) {
        self.inner.update_test(name, state)
    }
    fn on_test_end(
        &mut self,
        summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        self.inner.on_test_end(summary)
    }
}

impl MetricsRenderer for Timed {
    fn manual_close(&mut self) {
        self.inner.manual_close()
    }
    fn register_metric(&mut self, definition: MetricDefinition) {
        self.inner.register_metric(definition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_step_time_skips_warmup_and_needs_steps() {
        let times = SplitTimes::default();
        assert_eq!(times.steady_ms_per_step(0), None);
        times.start("train");
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(2));
            times.step_done();
        }
        times.end();
        // Steps reported outside a train split are not train steps.
        times.start("valid");
        times.step_done();
        times.end();
        assert_eq!(times.steady_ms_per_step(3), None);
        let all = times.steady_ms_per_step(0).unwrap();
        let steady = times.steady_ms_per_step(1).unwrap();
        assert!(all >= 2.0 && steady >= 2.0, "{all} {steady}");
        assert!(times.seconds("train") >= 0.006);
        assert!(times.seconds("valid") >= 0.0);
    }
}
