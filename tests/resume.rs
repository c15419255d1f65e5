//! Runs that survive: a run stopped after N steps and resumed from its
//! checkpoints ends with the adapter of the uninterrupted run (lora, dylora,
//! matryoshka); checkpointing does not change a run; a NaN loss at step k
//! stops training at step k; a comparison leaves a diverged run out.

mod common;

use common::values;

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use matryoshka_lora::Injection;
use matryoshka_lora::tasks::classify::{ClassifyConfig, ClassifyTask};
use matryoshka_lora::train::{
    ComparePlan, DIVERGED_RUN, FitError, HeadMode, RankedBatchOutput, RunError, Runner, Setting,
    Task, TaskData, TaskModel, TrainConfig, TrainMethod,
};
use std::sync::atomic::{AtomicUsize, Ordering};

/// 2 epochs of 10 steps of the RT classifier on the first encoder layer.
fn runner(method: TrainMethod) -> Runner<ClassifyTask> {
    let mut task = ClassifyConfig::rt_protocol(common::assets_dir());
    task.layers = Some(1);
    task.train_n = Some(160);
    task.test_n = Some(32);
    let config = TrainConfig {
        batch: 16,
        epochs: 2,
        lr: 2e-3,
        method,
        ..TrainConfig::default().with_max_rank(8).unwrap()
    };
    Runner::new(ClassifyTask::new(task), config)
        .unwrap()
        .quiet(true)
}

#[test]
fn a_resumed_run_ends_where_the_uninterrupted_run_does() {
    let _turn = common::turn();
    let dir = common::temp_dir("resume");
    for method in [
        TrainMethod::Lora,
        TrainMethod::Dylora,
        TrainMethod::Matryoshka,
    ] {
        let data = runner(method).prepare().unwrap();
        // uninterrupted, checkpointed every 3 steps
        let whole_dir = dir.join(format!("{method}-whole"));
        let whole = runner(method)
            .checkpoint_into(&whole_dir, Some(3))
            .train(&data)
            .unwrap();
        // checkpointing does not change the run
        let plain = runner(method).train(&data).unwrap();
        assert_eq!(plain.report.per_rank, whole.report.per_rank, "{method}");

        // stopped after step 7 (the last checkpoint is at step 6), then resumed
        let parts_dir = dir.join(format!("{method}-parts"));
        let stopped = runner(method)
            .checkpoint_into(&parts_dir, Some(3))
            .stop_after(7)
            .train(&data);
        match stopped {
            Err(RunError::Fit(FitError::Interrupted { step, .. })) => assert_eq!(step, 7),
            other => panic!("{method}: {:?}", other.err()),
        }
        // a new run into that directory is refused; resuming it works
        let refused = runner(method)
            .checkpoint_into(&parts_dir, Some(3))
            .train(&data)
            .err()
            .unwrap();
        assert_eq!(refused.setting(), Some(Setting::Output), "{refused}");
        let resumed = runner(method)
            .checkpoint_into(&parts_dir, Some(3))
            .resume(true)
            .train(&data)
            .unwrap();
        let (a, b) = (values(&whole.model), values(&resumed.model));
        assert_eq!(a.len(), b.len());
        let max_diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        println!("{method}: resumed vs uninterrupted, max |diff| of all parameters {max_diff:e}");
        assert!(max_diff <= 1e-6, "{method}: {max_diff}");
        assert_eq!(resumed.report.per_rank, whole.report.per_rank, "{method}");
        // resuming with other settings is refused
        let mut other = runner(method).checkpoint_into(&parts_dir, Some(4));
        other = other.resume(true);
        // (the run above finished but was not saved: its checkpoints remain)
        assert!(other.train(&data).is_err());
        // saving the run removes its checkpoints
        let r = runner(method)
            .checkpoint_into(&parts_dir, Some(3))
            .resume(true);
        let again = r.train(&data).unwrap();
        r.save(&parts_dir, &again.report, Some(&again.model))
            .unwrap();
        assert!(!parts_dir.join(".training").exists());
    }
}

// A task whose loss turns NaN at a chosen training step.

#[derive(Module, Debug)]
struct Net {
    fc: Linear,
    head: Linear,
    #[module(skip)]
    calls: std::sync::Arc<AtomicUsize>,
    #[module(skip)]
    nan_at: usize,
}

#[derive(Debug, Clone)]
struct Rows {
    x: Tensor<2>,
    y: Tensor<1, Int>,
}

impl TaskModel for Net {
    type Batch = Rows;
    fn forward_batch(&self, b: &Rows) -> RankedBatchOutput {
        let logits = self.head.forward(self.fc.forward(b.x.clone()));
        let n = b.y.dims()[0];
        let correct = logits
            .clone()
            .argmax(1)
            .reshape([n])
            .equal(b.y.clone())
            .float()
            .sum();
        let mut loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), b.y.clone());
        if logits.is_tracked() {
            let step = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if step == self.nan_at {
                loss = loss.mul_scalar(f32::NAN);
            }
        }
        RankedBatchOutput {
            loss,
            score: correct,
            count: n,
        }
    }
}

type Row = (Vec<f32>, i64);

#[derive(Clone)]
struct ToRows;

impl Batcher<Row, Rows> for ToRows {
    fn batch(&self, items: Vec<Row>, device: &Device) -> Rows {
        let n = items.len();
        let x: Vec<f32> = items.iter().flat_map(|(x, _)| x.clone()).collect();
        let y: Vec<i64> = items.iter().map(|(_, y)| *y).collect();
        Rows {
            x: Tensor::from_data(TensorData::new(x, [n, 8]), device),
            y: Tensor::from_data(TensorData::new(y, [n]), device),
        }
    }
}

struct Sign {
    calls: std::sync::Arc<AtomicUsize>,
    nan_at: usize,
}

impl Task for Sign {
    type Item = Row;
    type Meta = ();
    type Model = Net;
    type Batcher = ToRows;
    fn name(&self) -> &str {
        "sign"
    }
    fn prepare(&self) -> Result<TaskData<Row, ()>, RunError> {
        let row = |i: usize| -> Row {
            let x: Vec<f32> = (0..8)
                .map(|j| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0)
                .collect();
            let y = i64::from(x[0] > 0.0);
            (x, y)
        };
        Ok(TaskData {
            train: (0..320).map(row).collect(),
            test: (320..384).map(row).collect(),
            meta: (),
        })
    }
    fn batcher(&self) -> ToRows {
        ToRows
    }
    fn build_model(&self, _: &(), injection: &Injection, device: &Device) -> Result<Net, RunError> {
        let net = Net {
            fc: LinearConfig::new(8, 8).init(device),
            head: LinearConfig::new(8, 2).init(device),
            calls: self.calls.clone(),
            nan_at: self.nan_at,
        };
        injection
            .reparameterize(net)
            .map_err(|e| RunError::invalid(Setting::Targets, e))
    }
    fn default_targets(&self) -> Vec<String> {
        vec!["fc".into()]
    }
    fn trainable_modules(&self) -> Vec<String> {
        vec!["head".into()]
    }
}

#[test]
fn a_nan_loss_at_step_k_stops_training_at_step_k() {
    let _turn = common::turn();
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let task = Sign {
        calls: calls.clone(),
        nan_at: 4,
    };
    let config = TrainConfig {
        batch: 32,
        ..TrainConfig::default().with_max_rank(4).unwrap()
    };
    let runner = Runner::new(task, config).unwrap().quiet(true);
    let err = runner.train(&runner.prepare().unwrap()).err().unwrap();
    match &err {
        RunError::Fit(FitError::Diverged { step, loss }) => {
            assert_eq!(*step, 4);
            assert!(loss.is_nan());
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("step 4"), "{err}");
    assert!(err.to_string().contains("learning rate"), "{err}");
    // 10 steps in the epoch, none after the fourth
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[test]
fn a_comparison_skips_a_diverged_run_records_it_and_resumes_past_it() {
    let _turn = common::turn();
    let dir = common::temp_dir("compare-diverged");
    let out = dir.join("cmp");
    // 256 training rows after 64 validation rows: 8 steps of 32 per run; the
    // shared call count makes the second learning rate's run diverge at its
    // third step
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let runner = |nan_at: usize| {
        let task = Sign {
            calls: calls.clone(),
            nan_at,
        };
        let config = TrainConfig {
            batch: 32,
            ..TrainConfig::default().with_max_rank(4).unwrap()
        };
        Runner::new(task, config)
            .unwrap()
            .quiet(true)
            .checkpoint_into(&out, Some(4))
    };
    let plan = ComparePlan {
        methods: vec![TrainMethod::Lora.into()],
        head_modes: vec![HeadMode::Joint],
        seeds: vec![1],
        lrs: vec![1e-3, 2e-3],
        val_n: Some(64),
        select_on_first_seed: false,
    };
    let first = runner(8 + 3);
    let data = first.prepare().unwrap();
    let c = first
        .compare_seeds(&plan, &data, Some(&out), |_| {})
        .unwrap();
    assert_eq!(c.skipped.len(), 1, "{:?}", c.skipped);
    let s = &c.skipped[0];
    assert_eq!((s.lr, s.seed, s.split.as_str()), (2e-3, 1, "valid"));
    assert!(s.reason.contains("step 3"), "{}", s.reason);
    // the other learning rate was chosen and evaluated on the test rows
    assert_eq!(c.runs.len(), 1);
    assert!(c.runs[0].chosen && c.runs[0].report.config.train.lr == 1e-3);
    assert_eq!(c.summary.len(), 1);
    let record = out.join("lora/seed-1/lr-2e-3");
    assert!(record.join(DIVERGED_RUN).is_file());
    assert!(!record.join(".valid/.training").exists());
    // resumed: nothing trains (no step allowed), the same result
    calls.store(0, Ordering::SeqCst);
    let again = runner(usize::MAX)
        .resume(true)
        .stop_after(0)
        .compare_seeds(&plan, &data, Some(&out), |_| {})
        .unwrap();
    assert_eq!(again.skipped, c.skipped);
    assert_eq!(again.summary, c.summary);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
