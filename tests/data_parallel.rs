//! Data-parallel training and gradient accumulation give the run of one
//! device with the whole batch: two CPU workers through burn-train's `multi`
//! strategy with global batch 2b, and 2 accumulated micro-batches of b, end
//! with the adapters (and head) of one device with batch 2b, for lora,
//! dylora and matryoshka (and matryoshka-sampled, the probe head mode, and
//! the token-weighted causal-LM loss); bad device settings name the setting.

mod common;

use matryoshka_lora::tasks::causal_lm::{CausalLmConfig, CausalLmTask};
use matryoshka_lora::tasks::classify::{ClassifyConfig, ClassifyTask};
use matryoshka_lora::train::{
    HeadMode, ParallelStrategy, RunError, Runner, Setting, Task, TaskModel, TrainConfig,
    TrainMethod,
};
use matryoshka_lora::{BackendKind, DeviceSpec};
use std::path::PathBuf;

/// Two workers on this build's CPU backend.
fn two_cpu_workers() -> Vec<DeviceSpec> {
    let backend = BackendKind::compiled_cpu()[0];
    vec![
        DeviceSpec {
            backend,
            index: None,
        };
        2
    ]
}

use common::{max_diff, values};

/// Trains `config` and returns the trained parameters and held-out losses.
fn trained<T: Task + Clone>(task: &T, config: TrainConfig) -> (Vec<f32>, Vec<f64>) {
    let runner = Runner::new(task.clone(), config).unwrap().quiet(true);
    let data = runner.prepare().unwrap();
    let outcome = runner.train(&data).unwrap();
    let losses = outcome.report.per_rank["loss"].clone();
    (values(&outcome.model), losses)
}

fn untrained<T: Task + Clone>(task: &T, config: TrainConfig) -> Vec<f32>
where
    T::Model: TaskModel,
{
    let runner = Runner::new(task.clone(), config).unwrap().quiet(true);
    let data = runner.prepare().unwrap();
    let device = runner.device().unwrap();
    values(&runner.build_model(&data.meta, &device).unwrap())
}

/// The RT classifier on its first encoder layer: 64 rows, batch 16, 4 steps.
fn classify_task() -> ClassifyTask {
    let mut task = ClassifyConfig::rt_protocol(common::assets_dir());
    task.layers = Some(1);
    task.train_n = Some(64);
    task.test_n = Some(32);
    ClassifyTask::new(task)
}

/// Compares one device (batch `config.batch`) with two CPU workers and with
/// two accumulated micro-batches; returns the two max |diff| and the largest
/// change training made.
fn compare<T: Task + Clone>(task: &T, config: TrainConfig) -> (f32, f32, f32) {
    let start = untrained(task, config.clone());
    let (single, single_loss) = trained(task, config.clone());
    let (workers, workers_loss) = trained(
        task,
        TrainConfig {
            devices: two_cpu_workers(),
            strategy: ParallelStrategy::Multi,
            ..config.clone()
        },
    );
    let (accumulated, accumulated_loss) = trained(
        task,
        TrainConfig {
            grad_accum: 2,
            ..config
        },
    );
    for (a, b) in single_loss.iter().zip(&workers_loss) {
        assert!((a - b).abs() < 1e-4, "{single_loss:?} vs {workers_loss:?}");
    }
    for (a, b) in single_loss.iter().zip(&accumulated_loss) {
        assert!(
            (a - b).abs() < 1e-4,
            "{single_loss:?} vs {accumulated_loss:?}"
        );
    }
    (
        max_diff(&single, &workers),
        max_diff(&single, &accumulated),
        max_diff(&single, &start),
    )
}

#[test]
fn two_workers_and_accumulation_train_the_adapter_of_one_device() {
    let _turn = common::turn();
    let task = classify_task();
    let base = TrainConfig {
        batch: 16,
        lr: 2e-3,
        ..TrainConfig::default().with_max_rank(8).unwrap()
    };
    for (method, head_mode) in [
        (TrainMethod::Lora, HeadMode::Joint),
        (TrainMethod::Dylora, HeadMode::Joint),
        (TrainMethod::Matryoshka, HeadMode::Joint),
        (TrainMethod::MatryoshkaSampled, HeadMode::Joint),
        (TrainMethod::Matryoshka, HeadMode::Probe),
    ] {
        let config = TrainConfig {
            head_mode,
            ..base.clone().with_method(method)
        };
        let (workers, accumulated, moved) = compare(&task, config);
        println!(
            "{method} ({head_mode:?}): max |param diff| 2 workers {workers:.2e}, 2 micro-batches {accumulated:.2e} (training moved parameters by up to {moved:.2e})"
        );
        assert!(moved > 1e-3, "{method}: training changed nothing");
        assert!(workers < 2e-5, "{method}: 2 workers differ by {workers}");
        assert!(
            accumulated < 2e-5,
            "{method}: accumulation differs by {accumulated}"
        );
    }
}

fn llama_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llama")
        .join(name)
}

#[test]
fn a_token_weighted_loss_is_split_by_tokens() {
    let _turn = common::turn();
    // Rows of different response lengths: a split by rows would weight
    // the pieces' mean losses wrongly.
    let mut c = CausalLmConfig::new(llama_fixture("tinyllama"), llama_fixture("arith.jsonl"));
    c.train_n = Some(48);
    c.test_n = Some(8);
    c.max_len = 40;
    c.max_new_tokens = 0;
    let task = CausalLmTask::new(c);
    let config = TrainConfig {
        batch: 8,
        eval_batch: 8,
        lr: 1e-2,
        ..TrainConfig::default().with_max_rank(4).unwrap()
    };
    for method in [
        TrainMethod::Lora,
        TrainMethod::Dylora,
        TrainMethod::Matryoshka,
    ] {
        let (workers, accumulated, moved) = compare(&task, config.clone().with_method(method));
        println!(
            "causal-lm {method}: max |param diff| 2 workers {workers:.2e}, 2 micro-batches {accumulated:.2e} (moved {moved:.2e})"
        );
        assert!(moved > 1e-3);
        assert!(workers < 2e-5, "{method}: {workers}");
        assert!(accumulated < 2e-5, "{method}: {accumulated}");
    }
}

#[test]
fn bad_device_settings_name_the_setting() {
    let task = classify_task();
    let setting_of = |config: TrainConfig| -> Option<Setting> {
        match Runner::new(task.clone(), config) {
            Ok(_) => None,
            Err(e) => {
                let RunError::Invalid { .. } = &e else {
                    panic!("{e}")
                };
                e.setting()
            }
        }
    };
    let base = TrainConfig::default();
    // batch 32 over 3 workers
    let three = vec![two_cpu_workers()[0]; 3];
    assert_eq!(
        setting_of(TrainConfig {
            devices: three,
            ..base.clone()
        }),
        Some(Setting::Devices)
    );
    // batch 32 over 3 micro-batches
    assert_eq!(
        setting_of(TrainConfig {
            grad_accum: 3,
            ..base.clone()
        }),
        Some(Setting::GradAccum)
    );
    assert_eq!(
        setting_of(TrainConfig {
            grad_accum: 0,
            ..base.clone()
        }),
        Some(Setting::GradAccum)
    );
    // ddp needs collective operations (CUDA only in burn 0.22)
    assert_eq!(
        setting_of(TrainConfig {
            devices: two_cpu_workers(),
            strategy: ParallelStrategy::Ddp,
            ..base.clone()
        }),
        Some(Setting::Strategy)
    );
    // devices of another backend than the run's
    if BackendKind::Wgpu.is_compiled() {
        assert_eq!(
            setting_of(TrainConfig {
                devices: DeviceSpec::parse_list("wgpu:0,wgpu:1").unwrap(),
                ..base.clone()
            }),
            Some(Setting::Devices)
        );
    }
    // parsing: unknown, an index on a CPU backend, two backends, one GPU twice
    for bad in [
        "tpu:0",
        "flex:1",
        "cuda:x",
        "cuda:0,wgpu:0",
        "cuda:1,cuda:1",
        "",
    ] {
        assert!(DeviceSpec::parse_list(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_run_resumes_on_other_devices() {
    let _turn = common::turn();
    let task = classify_task();
    let config = TrainConfig {
        batch: 16,
        lr: 2e-3,
        ..TrainConfig::default()
            .with_max_rank(8)
            .unwrap()
            .with_method(TrainMethod::Dylora)
    };
    let runner = |config: TrainConfig| Runner::new(task.clone(), config).unwrap().quiet(true);
    let data = runner(config.clone()).prepare().unwrap();
    let whole = runner(config.clone()).train(&data).unwrap();
    // one device for 2 steps, then two workers accumulating 2 micro-batches
    let tmp = common::temp_dir("dp-resume");
    let dir = tmp.join("run");
    let stopped = runner(config.clone())
        .checkpoint_into(&dir, Some(2))
        .stop_after(2)
        .train(&data);
    assert!(stopped.is_err());
    let moved = TrainConfig {
        devices: two_cpu_workers(),
        grad_accum: 2,
        ..config
    };
    let resumed = runner(moved)
        .checkpoint_into(&dir, Some(2))
        .resume(true)
        .train(&data)
        .unwrap();
    let diff = max_diff(&values(&whole.model), &values(&resumed.model));
    println!("resumed on 2 workers x 2 micro-batches vs one device: max |diff| {diff:.2e}");
    assert!(diff < 2e-5, "{diff}");
    assert_eq!(resumed.report.config.train.devices.len(), 2);
}
