//! The validation loader of a segmented run: the whole validation set at
//! epoch ends, nothing between.

use super::{Segments, locked};
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::DatasetError;
use burn::prelude::*;
use std::sync::{Arc, Mutex};

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
        let start = *locked(&self.next);
        Self::new(inner, self.segments, start)
    }
}

impl<O: Send + 'static> DataLoader<O> for EpochEndLoader<O> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let mut next = locked(&self.next);
        let i = *next;
        *next += 1;
        if self.segments.ends_epoch(i) {
            self.inner.iter()
        } else {
            Box::new(Nothing(std::marker::PhantomData))
        }
    }

    fn num_items(&self) -> usize {
        let next = *locked(&self.next);
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
    use super::super::test_loaders::{Ids, batches};
    use super::*;
    use burn::data::dataloader::DataLoaderBuilder;
    use burn::data::dataset::InMemDataset;

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
