//! Short real training runs on Rotten Tomatoes (encoder truncated to 2 layers)
//! through the runner: every method learns, and the report's numbers are
//! consistent.

mod common;

use matryoshka_lora::AdaptedModule;
use matryoshka_lora::tasks::classify::{ClassifyConfig, ClassifyTask};
use matryoshka_lora::train::{HeadMode, Runner, TrainConfig, TrainMethod};

fn quick() -> (ClassifyConfig, TrainConfig) {
    let mut task = ClassifyConfig::rt_protocol(common::assets_dir());
    task.train_n = Some(640);
    task.test_n = Some(256);
    task.layers = Some(2);
    let train = TrainConfig {
        batch: 16,
        rank: 8,
        ranks: vec![1, 2, 4, 8],
        lr: 2e-3,
        ..TrainConfig::default()
    };
    (task, train)
}

fn majority(labels: impl Iterator<Item = usize>) -> f64 {
    let (mut n, mut positives) = (0.0, 0.0);
    for l in labels {
        n += 1.0;
        positives += l as f64;
    }
    100.0 * f64::max(positives, n - positives) / n
}

#[test]
fn every_method_beats_chance_and_reports_consistent_aurac() {
    let _turn = common::turn();
    let (task, train) = quick();
    let runner = Runner::new(ClassifyTask::new(task), train)
        .unwrap()
        .quiet(true);
    let data = runner.prepare().unwrap();
    let majority = majority(data.test.iter().map(|e| e.label));
    let methods = [
        TrainMethod::Lora,
        TrainMethod::Dylora,
        TrainMethod::DyloraOriginal,
        TrainMethod::Matryoshka,
        TrainMethod::MatryoshkaExact,
    ];
    let reports = runner.compare(&methods, &data, None, |_| {}).unwrap();
    assert_eq!(reports.len(), methods.len());
    for (method, report) in methods.iter().zip(&reports) {
        println!(
            "{method}: acc {:?} AURAC {:.2}/{:.2} ({:.0} ms/step, eval {:.1} s)",
            report.curve(),
            report.aurac_log2,
            report.aurac_linear,
            report.ms_per_step,
            report.eval_seconds
        );
        assert_eq!(report.method, *method);
        assert_eq!(report.task, "classify");
        assert_eq!(report.train_steps, 40);
        let accuracy = report.series("accuracy").unwrap();
        assert_eq!(accuracy.len(), 4);
        let at_r = accuracy[3];
        assert!(
            at_r > majority + 3.0,
            "{method}: rank-8 accuracy {at_r:.1}% vs majority {majority:.1}%"
        );
        let (log2, linear) = report.recomputed_aurac().unwrap();
        assert!((log2 - report.aurac_log2).abs() < 1e-9);
        assert!((linear - report.aurac_linear).abs() < 1e-9);
        let loss = report.series("loss").unwrap();
        assert!(loss.iter().all(|l| l.is_finite() && *l > 0.0));
        assert!(report.ms_per_step > 0.0 && report.eval_seconds > 0.0 && report.peak_rss_mb > 0.0);
        assert_eq!(report.config.train.method, *method);
    }
    // The same seed gives the same run (initialisation, data order, draws).
    let again = runner
        .compare(&[TrainMethod::Dylora], &data, None, |_| {})
        .unwrap();
    assert_eq!(again[0].per_rank, reports[1].per_rank);
}

#[test]
fn probe_head_mode_trains_head_then_adapters_and_evaluate_agrees() {
    let _turn = common::turn();
    let (task, mut train) = quick();
    train.head_mode = HeadMode::Probe;
    let runner = Runner::new(ClassifyTask::new(task), train)
        .unwrap()
        .quiet(true);
    let data = runner.prepare().unwrap();
    let majority = majority(data.test.iter().map(|e| e.label));
    let outcome = runner.train(&data).unwrap();
    let report = &outcome.report;
    println!("probe matryoshka: acc {:?}", report.curve());
    assert_eq!(report.head_mode, HeadMode::Probe);
    assert!(
        report.curve()[3] > majority + 3.0,
        "{:?} vs majority {majority:.1}",
        report.curve()
    );
    // adapters trained (B moved off 0) in the second phase
    let layer = &outcome.model.encoder.layers[0];
    let b = layer
        .attention
        .query
        .adapted()
        .unwrap()
        .adapter
        .lora_b
        .val();
    assert!(b.abs().max().into_scalar::<f32>() > 0.0);

    // The runner's evaluation of the trained model (burn-train's Evaluator)
    // gives the training run's per-rank figures.
    assert_eq!(outcome.model.adapter_count(), 12);
    let evaluated = runner.evaluate(outcome.model, &data).unwrap();
    assert_eq!(evaluated.series("accuracy"), report.series("accuracy"));
    for (a, b) in evaluated
        .series("loss")
        .unwrap()
        .iter()
        .zip(report.series("loss").unwrap())
    {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}
