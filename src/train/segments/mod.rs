//! Training steps grouped into burn-train epochs ("segments") so that
//! burn-train's per-epoch checkpoints fall every `N` steps, and the data
//! loaders that keep the data order of the whole run exactly as if it had not
//! been split (and can start at any segment, to resume).
//!
//! A run of `E` epochs of `n` steps, checkpointed every `N` steps, is
//! `E * ceil(n / N)` segments; a segment never crosses an epoch boundary, so
//! every epoch end is a segment end too. Without `N`, a segment is an epoch.
//!
//! [`StepLoader`] (`step_loader.rs`) yields the training batches of one
//! segment per iteration; [`EpochEndLoader`] (`epoch_end.rs`) gates the
//! validation loader to epoch ends.

mod epoch_end;
mod step_loader;

pub use epoch_end::EpochEndLoader;
pub use step_loader::StepLoader;

use std::sync::{Arc, Mutex};

/// How a run's training steps are grouped into burn-train epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segments {
    /// Optimiser steps per epoch.
    pub steps_per_epoch: usize,
    /// Epochs.
    pub epochs: usize,
    /// Steps per segment (`None`: one segment per epoch).
    pub every: Option<usize>,
}

impl Segments {
    fn per_epoch(&self) -> usize {
        match self.every {
            Some(n) if n > 0 => self.steps_per_epoch.div_ceil(n).max(1),
            _ => 1,
        }
    }

    fn length(&self) -> usize {
        match self.every {
            Some(n) if n > 0 => n,
            _ => self.steps_per_epoch,
        }
    }

    /// The number of segments (burn-train epochs) of the run.
    pub fn count(&self) -> usize {
        self.per_epoch() * self.epochs
    }

    /// Segment `i` (from 0): its epoch (from 0), its first step within that
    /// epoch, and its number of steps.
    pub fn segment(&self, i: usize) -> (usize, usize, usize) {
        let per_epoch = self.per_epoch();
        let (epoch, j) = (i / per_epoch, i % per_epoch);
        let first = (j * self.length()).min(self.steps_per_epoch);
        (
            epoch,
            first,
            self.length().min(self.steps_per_epoch - first),
        )
    }

    /// Whether segment `i` ends an epoch.
    pub fn ends_epoch(&self, i: usize) -> bool {
        (i + 1).is_multiple_of(self.per_epoch())
    }

    /// Optimiser steps taken before segment `i`.
    pub fn steps_before(&self, i: usize) -> usize {
        let (epoch, first, _) = self.segment(i);
        epoch * self.steps_per_epoch + first
    }
}

/// How each optimiser step's batch is split: over data-parallel workers,
/// and within each worker over accumulated micro-batches.
///
/// Step `s`'s batch (rows `[s B, (s + 1) B)` of the epoch's order) is cut
/// into `workers * micro_batches` contiguous pieces as even as the rows
/// allow; worker `k` trains on pieces `k * micro_batches ..` in turn, each a
/// [`TrainShard`](crate::train::TrainShard) weighted by its share of the step's loss terms. A piece
/// left without rows (the last, short batch of an epoch, cut finer than it
/// has rows) holds a copy of the step's first row with weight 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSplit {
    /// Data-parallel workers (devices).
    pub workers: usize,
    /// Micro-batches per worker per optimiser step (gradient accumulation).
    pub micro_batches: usize,
}

impl BatchSplit {
    /// One piece per step: the whole batch.
    pub const WHOLE: BatchSplit = BatchSplit {
        workers: 1,
        micro_batches: 1,
    };

    fn pieces(&self) -> usize {
        self.workers.max(1) * self.micro_batches.max(1)
    }

    /// Rows `[lo, hi)` (relative to the step's first row) of piece `c` of a
    /// step of `rows` rows.
    fn piece(&self, c: usize, rows: usize) -> (usize, usize) {
        let p = self.pieces();
        (c * rows / p, (c + 1) * rows / p)
    }

    /// The pieces worker `worker` trains on (`None`: all, in order).
    fn pieces_of(&self, worker: Option<usize>) -> std::ops::Range<usize> {
        match worker {
            Some(k) => {
                let a = self.micro_batches.max(1);
                k * a..(k + 1) * a
            }
            None => 0..self.pieces(),
        }
    }
}

impl Default for BatchSplit {
    fn default() -> Self {
        Self::WHOLE
    }
}

/// How many terms an example adds to the mean its batch's loss is.
pub type LossTerms<I> = Arc<dyn Fn(&I) -> usize + Send + Sync>;

/// The value behind `mutex`, also from a poisoned lock.
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the loaders' tests share: a batcher that keeps the ids.
#[cfg(test)]
mod test_loaders {
    use burn::data::dataloader::DataLoader;
    use burn::data::dataloader::batcher::Batcher;
    use burn::prelude::*;

    /// Batches of row ids, as they are.
    #[derive(Clone, Default)]
    pub struct Ids;
    impl Batcher<u32, Vec<u32>> for Ids {
        fn batch(&self, items: Vec<u32>, _device: &Device) -> Vec<u32> {
            items
        }
    }

    /// Every batch of one iteration of `loader`.
    pub fn batches(loader: &dyn DataLoader<Vec<u32>>) -> Vec<Vec<u32>> {
        loader.iter().map(|b| b.unwrap()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_partition_the_steps_and_end_at_epochs() {
        let s = Segments {
            steps_per_epoch: 10,
            epochs: 2,
            every: Some(4),
        };
        assert_eq!(s.count(), 6);
        let parts: Vec<_> = (0..6).map(|i| s.segment(i)).collect();
        assert_eq!(
            parts,
            [
                (0, 0, 4),
                (0, 4, 4),
                (0, 8, 2),
                (1, 0, 4),
                (1, 4, 4),
                (1, 8, 2)
            ]
        );
        assert_eq!(
            (0..6).map(|i| s.ends_epoch(i)).collect::<Vec<_>>(),
            [false, false, true, false, false, true]
        );
        assert_eq!(s.steps_before(4), 14);
        let whole = Segments { every: None, ..s };
        assert_eq!((whole.count(), whole.segment(1)), (2, (1, 0, 10)));
    }
}
