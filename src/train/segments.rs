//! Training steps grouped into burn-train epochs ("segments") so that
//! burn-train's per-epoch checkpoints fall every `N` steps, and the data
//! loaders that keep the data order of the whole run exactly as if it had not
//! been split (and can start at any segment, to resume).
//!
//! A run of `E` epochs of `n` steps, checkpointed every `N` steps, is
//! `E * ceil(n / N)` segments; a segment never crosses an epoch boundary, so
//! every epoch end is a segment end too. Without `N`, a segment is an epoch.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::Dataset;
use burn::data::dataset::DatasetError;
use burn::data::dataset::transform::{PartialDataset, ShuffledDataset};
use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
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

/// Where a [`StepLoader`] is: the next segment, and the shuffled order of the
/// latest epoch drawn.
struct Cursor<I> {
    next: usize,
    drawn: usize,
    current: Option<Arc<dyn Dataset<I>>>,
}

/// The training data loader of a segmented run: iteration `k` yields the
/// batches of segment `start + k`. The order of the examples is burn's own
/// (`DataLoaderBuilder::shuffle(seed)`: the same generator, forked when the
/// loader moves to its device, reshuffling at each epoch), so a run split
/// into segments, or resumed at one, sees exactly the batches of an unsplit
/// run. Resuming costs no batch: earlier epochs' orders are drawn, not built.
pub struct StepLoader<I, O> {
    dataset: Arc<dyn Dataset<I>>,
    batcher: Arc<dyn Batcher<I, O>>,
    device: Device,
    batch: usize,
    segments: Segments,
    rng: Option<Arc<Mutex<StdRng>>>,
    cursor: Arc<Mutex<Cursor<I>>>,
}

impl<I, O> StepLoader<I, O>
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    /// Batches of `batch` examples of `dataset`, shuffled with `seed`
    /// (`None`: in order), on `device`, starting at segment `start`.
    pub fn new(
        dataset: Arc<dyn Dataset<I>>,
        batcher: Arc<dyn Batcher<I, O>>,
        batch: usize,
        seed: Option<u64>,
        segments: Segments,
        start: usize,
        device: &Device,
    ) -> Self {
        Self {
            dataset,
            batcher,
            device: device.clone(),
            batch: batch.max(1),
            segments,
            rng: seed.map(|s| Arc::new(Mutex::new(StdRng::seed_from_u64(s)))),
            cursor: Self::cursor(start),
        }
    }

    fn cursor(start: usize) -> Arc<Mutex<Cursor<I>>> {
        Arc::new(Mutex::new(Cursor {
            next: start,
            drawn: 0,
            current: None,
        }))
    }

    /// A loader like this one with a generator forked from this one's (as
    /// burn's loaders do in `to_device` and `slice`).
    fn derived(&self, dataset: Arc<dyn Dataset<I>>, device: &Device) -> Self {
        let rng = self.rng.as_ref().map(|rng| {
            let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
            Arc::new(Mutex::new(rng.fork()))
        });
        let start = self
            .cursor
            .lock()
            .map(|c| c.next)
            .unwrap_or_else(|p| p.into_inner().next);
        Self {
            dataset,
            batcher: self.batcher.clone(),
            device: device.clone(),
            batch: self.batch,
            segments: self.segments,
            rng,
            cursor: Self::cursor(start),
        }
    }

    /// The examples of segment `i`: `[start, end)` of its epoch's order.
    fn items(&self, i: usize) -> (usize, usize) {
        let (_, first, steps) = self.segments.segment(i);
        let len = self.dataset.len();
        (
            (first * self.batch).min(len),
            ((first + steps) * self.batch).min(len),
        )
    }
}

impl<I, O> DataLoader<O> for StepLoader<I, O>
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let mut cursor = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        let i = cursor.next;
        cursor.next += 1;
        let (epoch, _, _) = self.segments.segment(i);
        // Draw each epoch's order once, in order (earlier epochs when resuming).
        while cursor.drawn <= epoch || cursor.current.is_none() {
            let order: Arc<dyn Dataset<I>> = match &self.rng {
                Some(rng) => {
                    let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
                    Arc::new(ShuffledDataset::new(self.dataset.clone(), &mut *rng))
                }
                None => self.dataset.clone(),
            };
            cursor.drawn += 1;
            cursor.current = Some(order);
        }
        let dataset = cursor
            .current
            .clone()
            .unwrap_or_else(|| self.dataset.clone());
        let (start, end) = self.items(i);
        Box::new(SegmentIter {
            dataset,
            batcher: self.batcher.clone(),
            device: self.device.clone(),
            batch: self.batch,
            start,
            end,
            position: start,
        })
    }

    fn num_items(&self) -> usize {
        let next = self.cursor.lock().map(|c| c.next).unwrap_or(0);
        let (start, end) = self.items(next);
        end - start
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.derived(self.dataset.clone(), device))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        let part: Arc<dyn Dataset<I>> =
            Arc::new(PartialDataset::new(self.dataset.clone(), start, end));
        Arc::new(self.derived(part, &self.device))
    }
}

/// The batches of one segment.
struct SegmentIter<I, O> {
    dataset: Arc<dyn Dataset<I>>,
    batcher: Arc<dyn Batcher<I, O>>,
    device: Device,
    batch: usize,
    start: usize,
    end: usize,
    position: usize,
}

impl<I, O> Iterator for SegmentIter<I, O> {
    type Item = Result<O, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.end {
            return None;
        }
        let stop = (self.position + self.batch).min(self.end);
        let items: Result<Vec<I>, DatasetError> =
            (self.position..stop).map(|k| self.dataset.get(k)).collect();
        self.position = stop;
        Some(items.map(|items| self.batcher.batch(items, &self.device)))
    }
}

impl<I, O> DataLoaderIterator<O> for SegmentIter<I, O> {
    fn progress(&self) -> Progress {
        Progress::new(self.position - self.start, self.end - self.start, None)
    }
}

/// The validation loader of a segmented run: iteration `k` (segment
/// `start + k`) yields the whole validation set when that segment ends an
/// epoch, and nothing otherwise, so validation runs once per epoch as in an
/// unsplit run.
pub struct EpochEndLoader<O> {
    inner: Arc<dyn DataLoader<O>>,
    segments: Segments,
    next: Arc<Mutex<usize>>,
}

impl<O: Send + 'static> EpochEndLoader<O> {
    /// Gates `inner` by `segments`, starting at segment `start`.
    pub fn new(inner: Arc<dyn DataLoader<O>>, segments: Segments, start: usize) -> Self {
        Self {
            inner,
            segments,
            next: Arc::new(Mutex::new(start)),
        }
    }

    fn with_inner(&self, inner: Arc<dyn DataLoader<O>>) -> Self {
        let start = *self.next.lock().unwrap_or_else(|p| p.into_inner());
        Self::new(inner, self.segments, start)
    }
}

impl<O: Send + 'static> DataLoader<O> for EpochEndLoader<O> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let i = *next;
        *next += 1;
        if self.segments.ends_epoch(i) {
            self.inner.iter()
        } else {
            Box::new(Nothing(std::marker::PhantomData))
        }
    }

    fn num_items(&self) -> usize {
        let next = *self.next.lock().unwrap_or_else(|p| p.into_inner());
        if self.segments.ends_epoch(next) {
            self.inner.num_items()
        } else {
            0
        }
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.with_inner(self.inner.to_device(device)))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.with_inner(self.inner.slice(start, end)))
    }
}

/// An empty iteration.
struct Nothing<O>(std::marker::PhantomData<O>);

impl<O> Iterator for Nothing<O> {
    type Item = Result<O, DatasetError>;
    fn next(&mut self) -> Option<Self::Item> {
        None
    }
}

impl<O> DataLoaderIterator<O> for Nothing<O> {
    fn progress(&self) -> Progress {
        Progress::new(0, 0, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataloader::DataLoaderBuilder;
    use burn::data::dataset::InMemDataset;

    #[derive(Clone, Default)]
    struct Ids;
    impl Batcher<u32, Vec<u32>> for Ids {
        fn batch(&self, items: Vec<u32>, _device: &Device) -> Vec<u32> {
            items
        }
    }

    fn batches(loader: &dyn DataLoader<Vec<u32>>) -> Vec<Vec<u32>> {
        loader.iter().map(|b| b.unwrap()).collect()
    }

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

    #[test]
    fn the_order_is_burns_whether_split_or_resumed() {
        let device = Device::default();
        let items: Vec<u32> = (0..23).collect();
        let burn = DataLoaderBuilder::new(Ids)
            .batch_size(4)
            .shuffle(42)
            .build(InMemDataset::new(items.clone()))
            .to_device(&device);
        let expected: Vec<Vec<u32>> = (0..3).flat_map(|_| batches(&*burn)).collect();
        assert_eq!(expected.len(), 18);
        let segments = Segments {
            steps_per_epoch: 6,
            epochs: 3,
            every: Some(4),
        };
        let dataset: Arc<dyn Dataset<u32>> = Arc::new(InMemDataset::new(items));
        let loader = |start| {
            StepLoader::new(
                dataset.clone(),
                Arc::new(Ids),
                4,
                Some(42),
                segments,
                start,
                &device,
            )
            .to_device(&device)
        };
        let split = loader(0);
        let all: Vec<Vec<u32>> = (0..segments.count())
            .flat_map(|_| batches(&*split))
            .collect();
        assert_eq!(all, expected);
        // resumed at segment 3 (epoch 1, steps 4..6): the batches from step 10 on
        let resumed = loader(3);
        let rest: Vec<Vec<u32>> = (3..segments.count())
            .flat_map(|_| batches(&*resumed))
            .collect();
        assert_eq!(rest, expected[10..]);
    }

    #[test]
    fn validation_runs_at_epoch_ends_only() {
        let device = Device::default();
        let valid = DataLoaderBuilder::new(Ids)
            .batch_size(2)
            .build(InMemDataset::new(vec![1u32, 2, 3]));
        let segments = Segments {
            steps_per_epoch: 5,
            epochs: 2,
            every: Some(2),
        };
        let gated = EpochEndLoader::new(valid, segments, 1).to_device(&device);
        let sizes: Vec<usize> = (1..6).map(|_| batches(&*gated).len()).collect();
        assert_eq!(sizes, [0, 2, 0, 0, 2]);
    }
}
