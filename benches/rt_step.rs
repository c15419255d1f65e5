//! One training step of the RT protocol (MiniLM-L6, adapters on all 36 linears,
//! R = 32, batch 32, max 48 tokens, AdamW with grad-norm clip 1.0) for plain LoRA
//! and MatryoshkaLoRA, and the evaluation of one 128-row batch at every rank of
//! S = {1, 2, 4, 8, 16, 32}, on every CPU backend this build enables.
//!
//! Needs the fetched assets (`scripts/fetch-assets.sh`, or `MLORA_ASSETS=DIR`);
//! without them it says so and measures nothing.
//!
//! ```bash
//! cargo bench --bench rt_step --features ndarray
//! ```

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use matryoshka_lora::BackendKind;
use matryoshka_lora::data::{TextBatcher, TokenizedExample};
use matryoshka_lora::tasks::classify::{
    ClassLabels, ClassifyConfig, ClassifyTask, SequenceClassifier,
};
use matryoshka_lora::train::{
    RankedLearnerModel, Runner, StepPlan, TaskData, TrainConfig, TrainMethod,
};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

fn assets() -> Option<PathBuf> {
    let dir = std::env::var_os("MLORA_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets"));
    dir.join("model.safetensors").is_file().then_some(dir)
}

fn model_for(
    runner: &Runner<ClassifyTask>,
    data: &TaskData<TokenizedExample, ClassLabels>,
    method: TrainMethod,
    device: &Device,
) -> RankedLearnerModel<SequenceClassifier> {
    let config = runner.config().clone().with_method(method);
    let runner = Runner::new(runner.task().clone(), config).expect("RT settings");
    let classifier = runner
        .build_model(&data.meta, device)
        .expect("RT classifier");
    let set = runner.config().rank_set().expect("RT rank set");
    RankedLearnerModel::new(
        classifier,
        StepPlan::new(method, &set, runner.config().seed),
    )
    .expect("RT plan")
}

fn rt_step(c: &mut Criterion) {
    // as the mlora binary does (BENCHMARKS.md)
    matryoshka_lora::host_memory::keep_tensor_buffers();
    let Some(assets) = assets() else {
        eprintln!("rt_step: no assets (run scripts/fetch-assets.sh or set MLORA_ASSETS); skipped");
        return;
    };
    let mut task = ClassifyConfig::rt_protocol(&assets);
    task.train_n = Some(64);
    task.test_n = Some(128);
    let runner = Runner::new(ClassifyTask::new(task), TrainConfig::default()).expect("RT settings");
    let data = runner.prepare().expect("RT data");
    let train: Vec<TokenizedExample> = data.train[..32].to_vec();
    for backend in BackendKind::compiled_cpu() {
        let Ok(plain) = backend.device() else {
            continue;
        };
        let device = plain.clone().autodiff();
        let batcher = TextBatcher::default();
        let mut group = c.benchmark_group(format!("rt/{}", backend.feature()));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(2));
        group.measurement_time(Duration::from_secs(10));
        for method in [TrainMethod::Lora, TrainMethod::Matryoshka] {
            let mut model = Some(model_for(&runner, &data, method, &device));
            let mut optim = AdamWConfig::new()
                .with_weight_decay(0.0)
                .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
                .init();
            let batch = batcher.make(&train, &device);
            group.bench_function(BenchmarkId::new("train_step", method.name()), |b| {
                b.iter(|| {
                    let Some(m) = model.take() else { return 0.0 };
                    let (loss, _) = m.objective(&batch);
                    let value = loss.clone().into_scalar::<f32>();
                    let grads = GradientsParams::from_grads(loss.backward(), &m);
                    model = Some(optim.step(1e-3, m, grads));
                    black_box(value)
                })
            });
        }
        let eval = model_for(&runner, &data, TrainMethod::Matryoshka, &plain);
        let test = batcher.make(&data.test, &plain);
        group.bench_function(
            BenchmarkId::new("eval_128_rows_all_ranks", "matryoshka"),
            |b| {
                b.iter(|| {
                    let out = eval.evaluate(&test);
                    black_box(
                        out.outputs
                            .into_iter()
                            .map(|o| o.score.into_scalar::<f32>())
                            .sum::<f32>(),
                    )
                })
            },
        );
        group.finish();
    }
}

criterion_group!(benches, rt_step);
criterion_main!(benches);
