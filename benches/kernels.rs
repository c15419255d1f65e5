//! The crate's fused CPU kernels against the backend's own op on the same
//! input, in one process: softmax over attention scores, with and without a
//! causal mask, at SmolLM2-135M's shape in the LLM study (batch 8, 9 heads,
//! 320 positions) and at BERT-base's (batch 32, 12 heads, 128 positions).
//!
//! ```bash
//! cargo bench --bench kernels                 # flex (the default CPU backend)
//! cargo bench --bench kernels -- causal       # the masked cases only
//! ```
//!
//! `backend` is burn's `softmax` on a flex tensor (flex's fused kernel),
//! `ours` is [`matryoshka_lora::kernels::softmax_last`]: the same values bit
//! for bit (a unit test checks), without libm's slow underflow path for the
//! masked scores.

use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{Criterion, criterion_group, criterion_main};
use matryoshka_lora::BackendKind;
use matryoshka_lora::kernels::softmax_last;
use matryoshka_lora::models::llama::attention_bias;
use std::hint::black_box;
use std::time::Duration;

/// (name, batch, heads, positions).
const SHAPES: [(&str, usize, usize, usize); 2] = [
    ("smollm2-135m.b8.t320", 8, 9, 320),
    ("bert-base.b32.t128", 32, 12, 128),
];

fn softmax(c: &mut Criterion) {
    matryoshka_lora::host_memory::keep_tensor_buffers();
    let Ok(device) = BackendKind::Flex.device() else {
        return;
    };
    for (name, b, h, t) in SHAPES {
        let scores = Tensor::<4>::random([b, h, t, t], Distribution::Normal(0.0, 3.0), &device);
        let all_keys = Tensor::<2, Int>::ones([b, t], &device);
        let causal = scores.clone() + attention_bias(all_keys, t);
        for (mask, x) in [("causal", causal), ("unmasked", scores)] {
            let mut group = c.benchmark_group(format!("softmax/{mask}/{name}"));
            group.sample_size(10);
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(3));
            group.bench_function("backend", |bench| {
                bench.iter(|| black_box(burn::tensor::activation::softmax(x.clone(), 3)))
            });
            group.bench_function("ours", |bench| {
                bench.iter(|| black_box(softmax_last(x.clone())))
            });
            group.finish();
        }
    }
}

criterion_group!(benches, softmax);
criterion_main!(benches);
