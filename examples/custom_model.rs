//! Adapting the `Linear` layers of a burn model you already have, by name,
//! without touching its forward pass; training a few steps; then evaluating
//! every nested rank and merging one.
//!
//! Run: `cargo run --example custom_model`

use burn::module::ParamGroup;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use matryoshka_lora::{
    ActiveRank, AdaptedModule, MatryoshkaConfig, Targets, adapt_linears, aurac_both, cpu_device,
};

/// An ordinary burn model: nothing in it knows about adapters.
#[derive(Module, Debug)]
struct Classifier {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    head: Linear,
    act: Relu,
}

impl Classifier {
    fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(16, 64).init(device),
            fc2: LinearConfig::new(64, 64).init(device),
            fc3: LinearConfig::new(64, 64).init(device),
            head: LinearConfig::new(64, 4).init(device),
            act: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h = self.act.forward(self.fc1.forward(x));
        let h = self.act.forward(self.fc2.forward(h));
        let h = self.act.forward(self.fc3.forward(h));
        self.head.forward(h)
    }
}

/// A synthetic 4-class task: the label is the quadrant of two random projections.
fn batch(n: usize, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let x = Tensor::<2>::random([n, 16], Distribution::Normal(0.0, 1.0), device);
    let u = x.clone().slice([0..n, 0..8]).sum_dim(1);
    let v = x.clone().slice([0..n, 8..16]).sum_dim(1);
    let label = u.greater_elem(0.0).int() * 2 + v.greater_elem(0.0).int();
    (x, label.reshape([n]))
}

fn accuracy(model: &Classifier, x: Tensor<2>, y: Tensor<1, Int>) -> f64 {
    let n = y.dims()[0] as f64;
    let correct = model
        .forward(x)
        .argmax(1)
        .reshape([y.dims()[0]])
        .equal(y)
        .int()
        .sum();
    100.0 * correct.into_scalar::<f64>() / n
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = cpu_device().autodiff();
    device.seed(42);
    let model = Classifier::new(&device);

    // One call: adapters on fc1..fc3 (chosen by name), every base parameter frozen.
    let config = MatryoshkaConfig::new().with_max_rank(16); // S = {1, 2, 4, 8, 16}
    let (model, adapted) = adapt_linears(model, &config, &Targets::names(["fc1", "fc2", "fc3"]))?;
    // The head trains in full: unfreeze it explicitly.
    let mut model = model.unfreeze_group(ParamGroup::from_predicate("head"));
    println!("adapted layers: {adapted:?}");

    let ranks = config.rank_set()?.ranks().to_vec();
    let (x_test, y_test) = batch(512, &device);
    let mut optim = AdamWConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    for step in 1..=150 {
        let (x, y) = batch(64, &device);
        let loss = loss_fn.forward(model.forward(x), y);
        if step % 50 == 0 {
            println!(
                "step {step:3}  loss {:.4}",
                loss.clone().into_scalar::<f32>()
            );
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }

    // Every nested rank of the one trained adapter, without retraining.
    let mut accs = Vec::new();
    for &k in &ranks {
        let at_k = model.clone().with_active_rank(ActiveRank::Rank(k))?;
        let acc = accuracy(&at_k, x_test.clone(), y_test.clone());
        println!("rank {k:2}: test accuracy {acc:.1}%");
        accs.push(acc);
    }
    let (log2, linear) = aurac_both(&ranks, &accs)?;
    println!("AURAC log2 {log2:.2}  linear {linear:.2}");

    // Deploy rank 4: burn's materialize() merges W + s(4) A[:, :4] B[:4] into plain weights.
    let merged = model
        .clone()
        .with_active_rank(ActiveRank::Rank(4))?
        .valid()
        .materialize();
    assert_eq!(merged.adapter_count(), 0);
    let merged_acc = accuracy(&merged, x_test.inner(), y_test.inner());
    println!("merged rank 4: test accuracy {merged_acc:.1}%");
    Ok(())
}
