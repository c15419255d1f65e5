//! A task of your own, trained with MatryoshkaLoRA through the crate's runner:
//! an ordinary burn model (nothing in it knows about adapters) and an
//! in-memory dataset. Implementing `TaskModel` (batch -> loss and score) and
//! `Task` (data, batches, model) is all it takes; the runner does the rest
//! (burn-train's Learner with the method's P, per-rank evaluation, AURAC).
//!
//! Run: `cargo run --example custom_task`

use burn::data::dataloader::batcher::Batcher;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;
use burn::tensor::Distribution;
use matryoshka_lora::Injection;
use matryoshka_lora::report::Report;
use matryoshka_lora::train::{
    RankedBatchOutput, RunError, Runner, Setting, Task, TaskData, TaskModel, TrainConfig,
    TrainMethod,
};

/// The model: two hidden layers and a 4-class head.
#[derive(Module, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    head: Linear,
    act: Relu,
}

/// One example and a batch of them.
#[derive(Debug, Clone)]
pub struct Point {
    x: Vec<f32>,
    label: i64,
}

#[derive(Debug, Clone)]
pub struct Points {
    x: Tensor<2>,
    y: Tensor<1, Int>,
}

#[derive(Clone, Default)]
pub struct PointBatcher;

impl Batcher<Point, Points> for PointBatcher {
    fn batch(&self, items: Vec<Point>, device: &Device) -> Points {
        let n = items.len();
        let x: Vec<f32> = items.iter().flat_map(|p| p.x.clone()).collect();
        let y: Vec<i64> = items.iter().map(|p| p.label).collect();
        Points {
            x: Tensor::from_data(TensorData::new(x, [n, DIM]), device),
            y: Tensor::from_data(TensorData::new(y, [n]), device),
        }
    }
}

impl TaskModel for Mlp {
    type Batch = Points;

    fn forward_batch(&self, batch: &Points) -> RankedBatchOutput {
        let h = self.act.forward(self.fc1.forward(batch.x.clone()));
        let logits = self.head.forward(self.act.forward(self.fc2.forward(h)));
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.y.clone());
        let n = batch.y.dims()[0];
        let correct = logits.argmax(1).reshape([n]).equal(batch.y.clone());
        RankedBatchOutput {
            loss,
            score: correct.float().sum(),
            count: n,
        }
    }
}

const DIM: usize = 16;

/// The label is the quadrant of two sums of coordinates.
pub struct Quadrants {
    train: Vec<Point>,
    test: Vec<Point>,
}

impl Quadrants {
    pub fn new(train: usize, test: usize) -> Self {
        let device = matryoshka_lora::cpu_device();
        device.seed(7);
        let x = Tensor::<2>::random([train + test, DIM], Distribution::Normal(0.0, 1.0), &device);
        let x: Vec<f32> = x.into_data().try_to_vec::<f32>().unwrap_or_default();
        let points: Vec<Point> = x
            .chunks(DIM)
            .map(|x| {
                let (u, v): (f32, f32) = (x[..8].iter().sum(), x[8..].iter().sum());
                let label = 2 * i64::from(u > 0.0) + i64::from(v > 0.0);
                Point {
                    x: x.to_vec(),
                    label,
                }
            })
            .collect();
        let (train, test) = points.split_at(train);
        Self {
            train: train.to_vec(),
            test: test.to_vec(),
        }
    }
}

impl Task for Quadrants {
    type Item = Point;
    type Meta = ();
    type Model = Mlp;
    type Batcher = PointBatcher;

    fn name(&self) -> &str {
        "quadrants"
    }

    fn default_targets(&self) -> Vec<String> {
        vec!["fc1".into(), "fc2".into()]
    }

    fn prepare(&self) -> Result<TaskData<Point, ()>, RunError> {
        Ok(TaskData {
            train: self.train.clone(),
            test: self.test.clone(),
            meta: (),
        })
    }

    fn batcher(&self) -> PointBatcher {
        PointBatcher
    }

    fn build_model(&self, _: &(), injection: &Injection, device: &Device) -> Result<Mlp, RunError> {
        let mlp = Mlp {
            fc1: LinearConfig::new(DIM, 64).init(device),
            fc2: LinearConfig::new(64, 64).init(device),
            head: LinearConfig::new(64, 4).init(device),
            act: Relu::new(),
        };
        // Adapters on the layers the targets name, through burn's reparameterization.
        injection
            .reparameterize(mlp)
            .map_err(|e| RunError::invalid(Setting::Targets, e))
    }

    fn trainable_modules(&self) -> Vec<String> {
        vec!["head".into()]
    }
}

/// Trains `methods` on the task and returns their reports.
pub fn run(methods: &[TrainMethod]) -> Result<Vec<Report>, RunError> {
    let config = TrainConfig {
        lr: 1e-2,
        batch: 64,
        epochs: 3,
        ..TrainConfig::default().with_max_rank(16)?
    };
    let runner = Runner::new(Quadrants::new(2048, 512), config)?.quiet(true);
    let data = runner.prepare()?;
    runner.compare(methods, &data, None, |_| {})
}

#[allow(dead_code)]
fn main() -> Result<(), RunError> {
    let reports = run(&[TrainMethod::Lora, TrainMethod::Matryoshka])?;
    println!("rank | {:>10} | {:>10}", "lora", "matryoshka");
    for (i, k) in reports[0].ranks.iter().enumerate() {
        println!(
            "{k:>4} | {:>9.1}% | {:>9.1}%",
            reports[0].curve()[i],
            reports[1].curve()[i]
        );
    }
    println!(
        "AURAC log2 | {:>8.2}% | {:>8.2}%",
        reports[0].aurac_log2, reports[1].aurac_log2
    );
    Ok(())
}
