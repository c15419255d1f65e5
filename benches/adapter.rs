//! Adapter forward+backward and all-rank evaluation at BERT-base and Llama-1B
//! layer shapes: the frozen dense layer alone, plain LoRA, MatryoshkaLoRA and
//! burn 0.22's own `apply_lora`, on every backend this build enables.
//!
//! ```bash
//! cargo bench --bench adapter --features ndarray            # flex + ndarray
//! cargo bench --bench adapter --features ndarray -- bert    # one shape family
//! ```
//!
//! Each iteration: `y = layer(x)` for `x: [tokens, d_in]` that requires a
//! gradient (as inside a network), then `sum(y).backward()`: the frozen weight
//! gets no gradient, `x` and the adapter factors do.

use burn::module::Lora;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use matryoshka_lora::{
    AdapterMethod, BackendKind, MatryoshkaConfig, MatryoshkaLinear, MatryoshkaLinearConfig,
    Scaling, freeze_linear,
};
use std::hint::black_box;
use std::time::Duration;

/// (name, d_in, d_out, tokens).
const SHAPES: [(&str, usize, usize, usize); 4] = [
    ("bert-base.attn.768x768", 768, 768, 256),
    ("bert-base.ffn.768x3072", 768, 3072, 256),
    ("llama-1b.attn.2048x2048", 2048, 2048, 128),
    ("llama-1b.mlp.2048x8192", 2048, 8192, 128),
];
const RANK: usize = 32;

fn adapter_config(method: AdapterMethod) -> MatryoshkaConfig {
    MatryoshkaConfig::new()
        .with_max_rank(RANK)
        .with_scaling(Scaling::Sqrt)
        .with_method(method)
}

/// Forward, backward and a read of one gradient (forces the work on lazy backends).
fn step(y: Tensor<2>, x: &Tensor<2>) -> f32 {
    let grads = y.sum().backward();
    x.grad(&grads)
        .map(|g| g.slice([0..1, 0..1]).into_scalar::<f32>())
        .unwrap_or(0.0)
}

fn forward_backward(c: &mut Criterion) {
    // as the mlora binary does (BENCHMARKS.md)
    matryoshka_lora::host_memory::keep_tensor_buffers();
    for backend in BackendKind::compiled() {
        let Ok(device) = backend.device() else {
            continue;
        };
        let device = device.autodiff();
        for (name, d_in, d_out, tokens) in SHAPES {
            let mut group = c.benchmark_group(format!("fwd_bwd/{}/{name}", backend.feature()));
            group.sample_size(10);
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(3));
            let base: Linear = freeze_linear(LinearConfig::new(d_in, d_out).init(&device));
            let x = || {
                Tensor::<2>::random([tokens, d_in], Distribution::Default, &device).require_grad()
            };
            let lora =
                MatryoshkaLinear::from_linear(base.clone(), &adapter_config(AdapterMethod::Lora))
                    .expect("valid bench adapter");
            let matryoshka = MatryoshkaLinear::from_linear(
                base.clone(),
                &adapter_config(AdapterMethod::matryoshka()),
            )
            .expect("valid bench adapter");
            let burn_lora: Linear = base.clone().apply_lora(Lora::new(RANK, RANK as f64));
            let variants: [(&str, &dyn Fn(Tensor<2>) -> Tensor<2>); 4] = [
                ("dense-frozen", &|x| base.forward(x)),
                ("lora", &|x| lora.forward(x)),
                ("matryoshka", &|x| matryoshka.forward(x)),
                ("burn-apply_lora", &|x| burn_lora.forward(x)),
            ];
            for (variant, forward) in variants {
                group.bench_function(BenchmarkId::from_parameter(variant), |b| {
                    b.iter(|| {
                        let x = x();
                        black_box(step(forward(x.clone()), &x))
                    })
                });
            }
            group.finish();
        }
    }
}

/// Evaluation at every rank of S = {1, 2, 4, ..., 32}: |S| rank-k forwards of one
/// layer (no autodiff), against |S| forwards of the dense layer alone.
fn eval_all_ranks(c: &mut Criterion) {
    // as the mlora binary does (BENCHMARKS.md)
    matryoshka_lora::host_memory::keep_tensor_buffers();
    for backend in BackendKind::compiled() {
        let Ok(device) = backend.device() else {
            continue;
        };
        let (name, d_in, d_out, tokens) = SHAPES[1];
        let mut group = c.benchmark_group(format!("eval_all_ranks/{}/{name}", backend.feature()));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        let layer = matryoshka_layer(d_in, d_out, &device);
        let ranks: Vec<usize> = layer.adapter.spec.ranks.ranks().to_vec();
        let x = Tensor::<2>::random([tokens, d_in], Distribution::Default, &device);
        group.bench_function(BenchmarkId::from_parameter("dense-x|S|"), |b| {
            b.iter(|| {
                let mut acc = 0.0;
                for _ in &ranks {
                    acc += layer
                        .base
                        .forward(x.clone())
                        .slice([0..1, 0..1])
                        .into_scalar::<f32>();
                }
                black_box(acc)
            })
        });
        group.bench_function(BenchmarkId::from_parameter("matryoshka-every-rank"), |b| {
            b.iter(|| {
                let mut acc = 0.0;
                for &k in &ranks {
                    let y = layer.forward_at_rank(x.clone(), k).expect("k in S");
                    acc += y.slice([0..1, 0..1]).into_scalar::<f32>();
                }
                black_box(acc)
            })
        });
        group.finish();
    }
}

fn matryoshka_layer(d_in: usize, d_out: usize, device: &Device) -> MatryoshkaLinear {
    MatryoshkaLinearConfig::new(d_in, d_out)
        .with_adapter(adapter_config(AdapterMethod::matryoshka()))
        .init(device)
        .expect("valid bench adapter")
}

criterion_group!(benches, forward_backward, eval_all_ranks);
criterion_main!(benches);
