//! The training data loader of a segmented run: the steps of one segment
//! per iteration, in burn's data order, split over workers and
//! micro-batches.

use super::{BatchSplit, LossTerms, Segments, locked};
use crate::train::learner_model::TrainShard;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::Dataset;
use burn::data::dataset::DatasetError;
use burn::data::dataset::transform::ShuffledDataset;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};

/// Where a [`StepLoader`] is: the next segment, and the shuffled order of the
/// latest epoch drawn.
struct Cursor<I> {
    next: usize,
    drawn: usize,
    current: Option<Arc<dyn Dataset<I>>>,
}

/// The training data loader of a segmented run: iteration `k` yields the
/// batches of segment `start + k`, as [`TrainShard`]s of their optimiser
/// steps. The order of the examples is burn's own
/// (`DataLoaderBuilder::shuffle(seed)`: the same generator, forked when the
/// loader moves to its device, reshuffling at each epoch), so a run split
/// into segments, or resumed at one, sees exactly the batches of an unsplit
/// run. Resuming costs no batch: earlier epochs' orders are drawn, not built.
///
/// With a [`BatchSplit`] ([`StepLoader::with_split`]) each step's batch is
/// cut into pieces; burn-train's data-parallel strategies take one loader
/// per worker through `DataLoader::slice` (burn's `split_dataloader`, which
/// asks for `workers` equal ranges of [`DataLoader::num_items`]): here the
/// range starting at `k * num_items / workers` is worker `k`'s pieces of
/// every step, over the same epoch order as the whole loader.
pub struct StepLoader<I, O> {
    dataset: Arc<dyn Dataset<I>>,
    batcher: Arc<dyn Batcher<I, O>>,
    device: Device,
    batch: usize,
    segments: Segments,
    rng: Option<Arc<Mutex<StdRng>>>,
    /// The seed of this loader's next fork, drawn once when it is first
    /// sliced: every worker's share forks the same generator.
    fork_seed: Arc<Mutex<Option<<StdRng as SeedableRng>::Seed>>>,
    /// Whether `to_device` forks the generator (a worker's share holds the
    /// fork already).
    fork_on_move: bool,
    cursor: Arc<Mutex<Cursor<I>>>,
    split: BatchSplit,
    worker: Option<usize>,
    terms: LossTerms<I>,
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
            fork_seed: Arc::default(),
            fork_on_move: true,
            cursor: Self::cursor(start),
            split: BatchSplit::WHOLE,
            worker: None,
            terms: Arc::new(|_| 1),
        }
    }

    /// With each step's batch cut by `split`, pieces weighted by `terms`
    /// (how many terms an example adds to the mean the task's loss is: 1
    /// for a mean over examples, its scored tokens for a causal LM).
    pub fn with_split(mut self, split: BatchSplit, terms: LossTerms<I>) -> Self {
        self.split = split;
        self.terms = terms;
        self
    }

    fn cursor(start: usize) -> Arc<Mutex<Cursor<I>>> {
        Arc::new(Mutex::new(Cursor {
            next: start,
            drawn: 0,
            current: None,
        }))
    }

    /// A loader like this one for `worker` on `device`, its generator forked
    /// from this one's (as burn's loaders do in `to_device`), or (`shared`)
    /// the fork every worker's share gets, so that they see one order: the
    /// order a single device's loader, forked by `to_device`, sees.
    fn derived(&self, worker: Option<usize>, device: &Device, shared: bool) -> Self {
        let rng = self
            .rng
            .as_ref()
            .map(|parent| match (shared, self.fork_on_move) {
                // a worker's share moving to its device: it holds its fork already
                (false, false) => parent.clone(),
                (false, true) => Arc::new(Mutex::new(locked(parent).fork())),
                // every share gets the fork `to_device` would make, drawn once
                // (`fork` is `from_seed` of the parent's next 32 bytes)
                (true, _) => {
                    let mut seed = locked(&self.fork_seed);
                    let seed = *seed.get_or_insert_with(|| {
                        let mut bytes = <StdRng as SeedableRng>::Seed::default();
                        locked(parent).fill_bytes(&mut bytes);
                        bytes
                    });
                    Arc::new(Mutex::new(StdRng::from_seed(seed)))
                }
            });
        let start = locked(&self.cursor).next;
        Self {
            dataset: self.dataset.clone(),
            batcher: self.batcher.clone(),
            device: device.clone(),
            batch: self.batch,
            segments: self.segments,
            rng,
            fork_seed: Arc::default(),
            fork_on_move: self.fork_on_move && !shared,
            cursor: Self::cursor(start),
            split: self.split,
            worker,
            terms: self.terms.clone(),
        }
    }

    /// Segment `i`'s steps: `(step within the run, rows)` of each.
    fn steps(&self, i: usize) -> Vec<(usize, usize, usize)> {
        let (epoch, first, steps) = self.segments.segment(i);
        let len = self.dataset.len();
        (first..first + steps)
            .map(|s| {
                let lo = (s * self.batch).min(len);
                let hi = ((s + 1) * self.batch).min(len);
                (epoch * self.segments.steps_per_epoch + s, lo, hi)
            })
            .filter(|(_, lo, hi)| hi > lo)
            .collect()
    }

    /// The pieces `worker` trains on in segment `i`, in order.
    fn pieces(&self, i: usize, worker: Option<usize>) -> Vec<Piece> {
        let mine = self.split.pieces_of(worker);
        let last = mine.end - 1;
        let mut pieces = Vec::new();
        for (step, lo, hi) in self.steps(i) {
            for c in mine.clone() {
                let (a, b) = self.split.piece(c, hi - lo);
                pieces.push(Piece {
                    step,
                    step_rows: (lo, hi),
                    rows: (lo + a, lo + b),
                    ends_step: c == last,
                });
            }
        }
        pieces
    }

    /// The items `worker` is given in segment `i` (an empty piece counts one).
    fn items_of(&self, i: usize, worker: Option<usize>) -> usize {
        self.pieces(i, worker).iter().map(Piece::items).sum()
    }
}

impl<I, O> DataLoader<TrainShard<O>> for StepLoader<I, O>
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<TrainShard<O>> + 'a> {
        let mut cursor = locked(&self.cursor);
        let i = cursor.next;
        cursor.next += 1;
        let (epoch, _, _) = self.segments.segment(i);
        // Draw each epoch's order once, in order (earlier epochs when resuming).
        while cursor.drawn <= epoch || cursor.current.is_none() {
            let order: Arc<dyn Dataset<I>> = match &self.rng {
                Some(rng) => {
                    let mut rng = locked(rng);
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
        let pieces = self.pieces(i, self.worker);
        Box::new(SegmentIter {
            dataset,
            batcher: self.batcher.clone(),
            device: self.device.clone(),
            split: self.split,
            terms: self.terms.clone(),
            total: pieces.iter().map(Piece::items).sum(),
            processed: 0,
            step_terms: None,
            pieces: pieces.into_iter(),
        })
    }

    fn num_items(&self) -> usize {
        let next = self.cursor.lock().map(|c| c.next).unwrap_or(0);
        match (self.worker, self.split.workers) {
            (None, n) if n > 1 => {
                n * (0..n)
                    .map(|k| self.items_of(next, Some(k)))
                    .max()
                    .unwrap_or(0)
            }
            (worker, _) => self.items_of(next, worker),
        }
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<TrainShard<O>>> {
        Arc::new(self.derived(self.worker, device, false))
    }

    /// Worker `k`'s share, for the range starting at `k * num_items / workers`
    /// (what burn's `split_dataloader` asks for); the whole loader when the
    /// batches are not split over workers.
    fn slice(&self, start: usize, _end: usize) -> Arc<dyn DataLoader<TrainShard<O>>> {
        let n = self.split.workers;
        if n <= 1 || self.worker.is_some() {
            return Arc::new(self.derived(self.worker, &self.device, true));
        }
        let share = self.num_items() / n;
        let k = start.checked_div(share).unwrap_or(0).min(n - 1);
        Arc::new(self.derived(Some(k), &self.device, true))
    }
}

/// One piece of a step, as rows of the epoch's order.
struct Piece {
    step: usize,
    step_rows: (usize, usize),
    rows: (usize, usize),
    ends_step: bool,
}

impl Piece {
    /// The items it counts for in progress (a piece without rows: one).
    fn items(&self) -> usize {
        (self.rows.1 - self.rows.0).max(1)
    }
}

/// The pieces of one segment a worker trains on.
struct SegmentIter<I, O> {
    dataset: Arc<dyn Dataset<I>>,
    batcher: Arc<dyn Batcher<I, O>>,
    device: Device,
    split: BatchSplit,
    terms: LossTerms<I>,
    total: usize,
    processed: usize,
    /// The loss terms of the current step's whole batch: `(step, terms)`.
    step_terms: Option<(usize, usize)>,
    pieces: std::vec::IntoIter<Piece>,
}

impl<I, O> SegmentIter<I, O> {
    fn get(&self, rows: (usize, usize)) -> Result<Vec<I>, DatasetError> {
        (rows.0..rows.1).map(|k| self.dataset.get(k)).collect()
    }
}

impl<I: Clone, O> Iterator for SegmentIter<I, O> {
    type Item = Result<TrainShard<O>, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let piece = self.pieces.next()?;
        self.processed += piece.items();
        if self.split.pieces() == 1 {
            return Some(self.get(piece.rows).map(|items| {
                TrainShard::whole(self.batcher.batch(items, &self.device), piece.step)
            }));
        }
        Some(self.shard(&piece))
    }
}

impl<I: Clone, O> SegmentIter<I, O> {
    /// A piece of a split step, weighted by its share of the step's loss
    /// terms (read once per step).
    fn shard(&mut self, piece: &Piece) -> Result<TrainShard<O>, DatasetError> {
        let all = match self.step_terms {
            Some((step, terms)) if step == piece.step => terms,
            _ => {
                let terms = self
                    .get(piece.step_rows)?
                    .iter()
                    .map(|x| (self.terms)(x))
                    .sum();
                self.step_terms = Some((piece.step, terms));
                terms
            }
        };
        let (items, weight) = if piece.rows.1 > piece.rows.0 {
            let items = self.get(piece.rows)?;
            let terms = items.iter().map(|x| (self.terms)(x)).sum::<usize>();
            let weight = if all == 0 {
                0.0
            } else {
                terms as f64 / all as f64
            };
            (items, weight)
        } else {
            // no rows of this step: a copy of its first, weighing nothing
            let first = piece.step_rows.0;
            (self.get((first, first + 1))?, 0.0)
        };
        Ok(TrainShard {
            batch: self.batcher.batch(items, &self.device),
            weight,
            step: piece.step,
            ends_step: piece.ends_step,
        })
    }
}

impl<I: Clone, O> DataLoaderIterator<TrainShard<O>> for SegmentIter<I, O> {
    fn progress(&self) -> Progress {
        Progress::new(self.processed, self.total, None)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_loaders::{Ids, batches};
    use super::*;
    use burn::data::dataloader::DataLoaderBuilder;
    use burn::data::dataset::InMemDataset;

    fn shards(loader: &dyn DataLoader<TrainShard<Vec<u32>>>) -> Vec<TrainShard<Vec<u32>>> {
        loader.iter().map(|b| b.unwrap()).collect()
    }

    fn whole(loader: &dyn DataLoader<TrainShard<Vec<u32>>>) -> Vec<Vec<u32>> {
        shards(loader).into_iter().map(|s| s.batch).collect()
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
        let all: Vec<Vec<u32>> = (0..segments.count()).flat_map(|_| whole(&*split)).collect();
        assert_eq!(all, expected);
        // resumed at segment 3 (epoch 1, steps 4..6): the batches from step 10 on
        let resumed = loader(3);
        let rest: Vec<Vec<u32>> = (3..segments.count())
            .flat_map(|_| whole(&*resumed))
            .collect();
        assert_eq!(rest, expected[10..]);
    }

    /// burn's `split_dataloader`: `n` equal ranges of `num_items`, each
    /// sliced and moved to its device.
    fn split_like_burn(
        loader: &StepLoader<u32, Vec<u32>>,
        n: usize,
        device: &Device,
    ) -> Vec<Arc<dyn DataLoader<TrainShard<Vec<u32>>>>> {
        let step = loader.num_items() / n;
        (0..n)
            .map(|k| {
                let end = if k == n - 1 {
                    loader.num_items()
                } else {
                    (k + 1) * step
                };
                loader.slice(k * step, end).to_device(device)
            })
            .collect()
    }

    #[test]
    fn workers_and_micro_batches_share_each_step_by_its_loss_terms() {
        let device = Device::default();
        // 23 rows, batch 8: steps of 8, 8 and 7 rows; two workers of two
        // micro-batches each (pieces of 2 rows, the last step 1-2-2-2).
        let items: Vec<u32> = (0..23).collect();
        let dataset: Arc<dyn Dataset<u32>> = Arc::new(InMemDataset::new(items));
        let segments = Segments {
            steps_per_epoch: 3,
            epochs: 2,
            every: None,
        };
        let loader = |split| {
            StepLoader::new(
                dataset.clone(),
                Arc::new(Ids),
                8,
                Some(7),
                segments,
                0,
                &device,
            )
            .with_split(split, Arc::new(|x: &u32| 1 + (*x as usize % 3)))
        };
        let single = loader(BatchSplit::WHOLE).to_device(&device);
        let split = BatchSplit {
            workers: 2,
            micro_batches: 2,
        };
        let workers = split_like_burn(&loader(split), 2, &device);
        for _epoch in 0..2 {
            let expected = shards(&*single);
            let got: Vec<Vec<TrainShard<Vec<u32>>>> =
                workers.iter().map(|w| shards(&**w)).collect();
            assert_eq!(got[0].len(), 6);
            assert_eq!(got[1].len(), 6);
            for (s, step) in expected.iter().enumerate() {
                assert_eq!(
                    (step.step, step.weight, step.ends_step),
                    (s % 3 + 3 * _epoch, 1.0, true)
                );
                let pieces: Vec<&TrainShard<Vec<u32>>> = got[0][2 * (s % 3)..2 * (s % 3) + 2]
                    .iter()
                    .chain(&got[1][2 * (s % 3)..2 * (s % 3) + 2])
                    .collect();
                // the pieces, in order, are the step's batch; their weights
                // are their shares of its loss terms
                let rows: Vec<u32> = pieces.iter().flat_map(|p| p.batch.clone()).collect();
                assert_eq!(rows, step.batch);
                let terms =
                    |rows: &[u32]| rows.iter().map(|x| 1 + (*x as usize % 3)).sum::<usize>() as f64;
                for p in &pieces {
                    assert_eq!(p.step, step.step);
                    assert!((p.weight - terms(&p.batch) / terms(&step.batch)).abs() < 1e-12);
                }
                assert!((pieces.iter().map(|p| p.weight).sum::<f64>() - 1.0).abs() < 1e-12);
                assert_eq!(
                    pieces.iter().map(|p| p.ends_step).collect::<Vec<_>>(),
                    [false, true, false, true]
                );
            }
        }
    }

    #[test]
    fn a_piece_without_rows_weighs_nothing() {
        let device = Device::default();
        // 9 rows, batch 8: the second step has 1 row for 2 workers.
        let dataset: Arc<dyn Dataset<u32>> = Arc::new(InMemDataset::new((0..9).collect()));
        let segments = Segments {
            steps_per_epoch: 2,
            epochs: 1,
            every: None,
        };
        let loader = StepLoader::new(dataset, Arc::new(Ids), 8, None, segments, 0, &device)
            .with_split(
                BatchSplit {
                    workers: 2,
                    micro_batches: 1,
                },
                Arc::new(|_: &u32| 1),
            );
        let workers = split_like_burn(&loader, 2, &device);
        let a = shards(&*workers[0]);
        let b = shards(&*workers[1]);
        assert_eq!((a[1].batch.clone(), a[1].weight), (vec![8], 0.0));
        assert_eq!((b[1].batch.clone(), b[1].weight), (vec![8], 1.0));
        assert_eq!((a[0].weight, b[0].weight), (0.5, 0.5));
    }
}
