//! A burn-train metric logger whose values can be read after training.

use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct LogState {
    names: HashMap<MetricId, String>,
    /// (name, split, epoch) -> (latest running value, final value)
    values: HashMap<(String, String, usize), (f64, Option<f64>)>,
    last_epoch: usize,
}

/// Records every numeric metric's epoch value, per split. Clone it, give one
/// clone to `SupervisedTraining::with_metric_logger`, read the other.
#[derive(Clone, Default)]
pub struct MetricLog {
    state: Arc<Mutex<LogState>>,
}

impl MetricLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The epoch value of `name` on `split` (`"train"` / `"valid"`) for `epoch`
    /// (1-based): the metric's final value when it logged one, else its last
    /// running value.
    pub fn value(&self, name: &str, split: &str, epoch: usize) -> Option<f64> {
        let state = self.state.lock().ok()?;
        state
            .values
            .get(&(name.to_string(), split.to_string(), epoch))
            .map(|(running, fin)| fin.unwrap_or(*running))
    }

    /// The last epoch that logged anything.
    pub fn last_epoch(&self) -> usize {
        self.state.lock().map(|s| s.last_epoch).unwrap_or(0)
    }
}

fn split_name(split: &Split) -> String {
    format!("{split}").to_ascii_lowercase()
}

impl MetricLogger for MetricLog {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.last_epoch = state.last_epoch.max(epoch);
        let split = split_name(split);
        for numeric in update.entries_numeric {
            let Some(name) = state.names.get(&numeric.entry.metric_id).cloned() else {
                continue;
            };
            let parsed = NumericEntry::deserialize(&numeric.entry.serialized_entry.serialized).ok();
            let key = (name, split.clone(), epoch);
            let slot = state.values.entry(key).or_insert((f64::NAN, None));
            match parsed {
                Some(NumericEntry::Final(v)) => slot.1 = Some(v),
                _ => {
                    if let Some(running) = numeric
                        .running_entry
                        .as_ref()
                        .or(numeric.numeric_entry.as_ref())
                    {
                        slot.0 = running.current();
                    }
                }
            }
        }
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        Ok(self
            .value(name, &split_name(split), epoch)
            .map(|v| vec![NumericEntry::Value(v)])
            .unwrap_or_default())
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        if let Ok(mut state) = self.state.lock() {
            state
                .names
                .insert(definition.metric_id.clone(), definition.name.to_string());
        }
    }

    fn log_epoch_summary(&mut self, _summary: EpochSummary) {}
}
