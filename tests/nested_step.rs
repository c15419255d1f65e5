//! The objectives that are a mean of nested models' losses (exact, sampled)
//! take one backward pass per nested model, so a step holds one model's
//! activations at a time: the gradient they accumulate is the gradient of
//! the mean loss, to float rounding.

mod common;

use burn::module::{ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::train::TrainStep;
use matryoshka_lora::data::TextBatcher;
use matryoshka_lora::tasks::classify::{ClassifyConfig, ClassifyTask};
use matryoshka_lora::train::{
    RankedLearnerModel, Runner, StepPlan, TrainConfig, TrainMethod, TrainShard,
};

/// Every parameter's gradient in `a` against `b`: (largest difference,
/// largest magnitude, parameters compared).
struct Compare<'a> {
    a: &'a GradientsParams,
    b: &'a GradientsParams,
    worst: f32,
    largest: f32,
    compared: usize,
}

impl ModuleVisitor for Compare<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (Some(a), Some(b)) = (self.a.get::<D>(param.id), self.b.get::<D>(param.id)) else {
            assert!(
                self.a.get::<D>(param.id).is_none() && self.b.get::<D>(param.id).is_none(),
                "a gradient on one side only"
            );
            return;
        };
        let a = a.into_data().try_to_vec::<f32>().unwrap();
        let b = b.into_data().try_to_vec::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            self.worst = self.worst.max((x - y).abs());
            self.largest = self.largest.max(x.abs());
        }
        self.compared += 1;
    }
}

#[test]
fn per_pass_steps_give_the_gradient_of_the_mean_loss() {
    let mut task = ClassifyConfig::rt_protocol(common::assets_dir());
    task.train_n = Some(64);
    task.test_n = Some(16);
    task.layers = Some(2);
    for (method, samples) in [
        (TrainMethod::MatryoshkaExact, None),
        (TrainMethod::MatryoshkaSampled, Some(2)),
    ] {
        let config = TrainConfig {
            rank: 4,
            ranks: vec![1, 2, 4],
            rank_samples: samples,
            ..TrainConfig::default()
        }
        .with_method(method);
        let runner = Runner::new(ClassifyTask::new(task.clone()), config).unwrap();
        let data = runner.prepare().unwrap();
        let device = matryoshka_lora::cpu_device().autodiff();
        let set = runner.config().rank_set().unwrap();
        let mut plan = StepPlan::new(method, &set, 7);
        if let Some(m) = samples {
            plan = plan.with_rank_samples(&set, m, false, 7);
        }
        let model = RankedLearnerModel::new(runner.build_model(&data.meta, &device).unwrap(), plan)
            .unwrap();
        let batch = TextBatcher::default().make(&data.train[..16], &device);
        // one step first, so that B is not zero and every factor has a gradient
        let first = TrainStep::step(&model, TrainShard::whole(batch.clone(), 0));
        let model = AdamWConfig::new().init().step(1e-2, model, first.grads);
        // step 1: per pass (the training step) against one graph of the mean
        let per_pass = TrainStep::step(&model, TrainShard::whole(batch.clone(), 1));
        let (mean, _) = model.objective_at(&batch, Some(1));
        let per_pass_loss = per_pass.item.loss.into_scalar::<f32>();
        let whole = GradientsParams::from_grads(mean.clone().backward(), &model);
        let mean_loss = mean.into_scalar::<f32>();
        assert!(
            (per_pass_loss - mean_loss).abs() <= 1e-5 * mean_loss.abs(),
            "{method}: loss {per_pass_loss} vs {mean_loss}"
        );
        let mut compare = Compare {
            a: &per_pass.grads,
            b: &whole,
            worst: 0.0,
            largest: 0.0,
            compared: 0,
        };
        model.visit(&mut compare);
        println!(
            "{method}: {} parameters, largest gradient {:.3e}, largest difference {:.3e}",
            compare.compared, compare.largest, compare.worst
        );
        assert!(
            compare.compared > 2 * 6 && compare.largest > 0.0,
            "{method}"
        );
        assert!(
            compare.worst <= 1e-5 * compare.largest,
            "{method}: {} vs {}",
            compare.worst,
            compare.largest
        );
    }
}
