//! Linear decay to 0 with optional linear warmup.

use burn::optim::LearningRate;
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};

/// `lr(t) = base * t / warmup` for `t < warmup`, then linear decay from `base`
/// to 0 at `total` steps (`t` counts from 0; the first step of a run without
/// warmup uses `base`), as PyTorch's `LambdaLR(1 - t/total)`.
#[derive(Debug, Clone)]
pub struct LinearWarmupDecay {
    base: f64,
    warmup: usize,
    total: usize,
    step: usize,
    decay: bool,
}

impl LinearWarmupDecay {
    /// A schedule over `total` steps with `warmup` warmup steps.
    pub fn new(base: f64, warmup: usize, total: usize) -> Self {
        Self {
            base,
            warmup: warmup.min(total),
            total: total.max(1),
            step: 0,
            decay: true,
        }
    }

    /// A constant learning rate.
    pub fn constant(base: f64) -> Self {
        Self {
            decay: false,
            ..Self::new(base, 0, 1)
        }
    }

    /// The learning rate at step `t` (0-based).
    pub fn at(&self, t: usize) -> f64 {
        if !self.decay {
            self.base
        } else if t < self.warmup {
            self.base * (t + 1) as f64 / self.warmup as f64
        } else {
            let span = (self.total - self.warmup).max(1) as f64;
            self.base * (1.0 - (t - self.warmup) as f64 / span).max(0.0)
        }
    }
}

impl LrScheduler for LinearWarmupDecay {
    fn step(&mut self) -> LearningRate {
        let lr = self.at(self.step);
        self.step += 1;
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar("step", self.step as u64)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(step) = record.scalar::<u64>("step") {
            self.step = step as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decays_to_zero_like_torch_lambda_lr() {
        let mut s = LinearWarmupDecay::new(1e-3, 0, 4);
        let lrs: Vec<f64> = (0..5).map(|_| s.step()).collect();
        let want = [1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0];
        for (a, b) in lrs.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{lrs:?}");
        }
        let w = LinearWarmupDecay::new(1.0, 2, 6);
        assert_eq!(
            [w.at(0), w.at(1), w.at(2), w.at(4), w.at(6)],
            [0.5, 1.0, 1.0, 0.5, 0.0]
        );
        let mut r = LinearWarmupDecay::new(1.0, 0, 10);
        r.step();
        r.step();
        let rec = r.to_record();
        let mut fresh = LinearWarmupDecay::new(1.0, 0, 10);
        fresh.load_record(rec);
        assert_eq!(fresh.step(), r.step());
    }
}
