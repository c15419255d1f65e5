//! Short real training runs on Rotten Tomatoes (encoder truncated to 2 layers):
//! every method learns, and the report's numbers are consistent.

mod common;

use matryoshka_lora::experiment::{prepare_data, run};
use matryoshka_lora::report::RunConfig;

fn quick_config() -> RunConfig {
    let mut c = RunConfig::rt_protocol(&common::assets_dir());
    c.train_n = Some(640);
    c.test_n = Some(256);
    c.layers = Some(2);
    c.batch = 16;
    c.rank = 8;
    c.ranks = vec![1, 2, 4, 8];
    c.lr = 2e-3;
    c
}

#[test]
fn every_method_beats_chance_and_reports_consistent_aurac() {
    let base = quick_config();
    let data = prepare_data(&base).unwrap();
    let positives = data.test.iter().filter(|e| e.label == 1).count() as f64;
    let majority =
        100.0 * positives.max(data.test.len() as f64 - positives) / data.test.len() as f64;
    for method in ["lora", "dylora", "matryoshka", "matryoshka-exact"] {
        let mut config = base.clone();
        config.method = method.into();
        let report = run(&config, &data, true).unwrap().report;
        println!(
            "{method}: acc {:?} AURAC {:.2}/{:.2} ({:.0} ms/step, eval {:.1} s)",
            report.accuracy,
            report.aurac_log2,
            report.aurac_linear,
            report.ms_per_step,
            report.eval_seconds
        );
        assert_eq!(report.train_steps, 40);
        assert_eq!(report.accuracy.len(), 4);
        let at_r = report.accuracy[3];
        assert!(
            at_r > majority + 3.0,
            "{method}: rank-8 accuracy {at_r:.1}% vs majority {majority:.1}%"
        );
        let (log2, linear) = report.recomputed_aurac().unwrap();
        assert!((log2 - report.aurac_log2).abs() < 1e-9);
        assert!((linear - report.aurac_linear).abs() < 1e-9);
        assert!(report.loss.iter().all(|l| l.is_finite() && *l > 0.0));
        assert!(report.ms_per_step > 0.0 && report.eval_seconds > 0.0 && report.peak_rss_mb > 0.0);
    }
}

#[test]
fn probe_head_mode_trains_head_then_adapters() {
    let mut config = quick_config();
    config.head_mode = "probe".into();
    let data = prepare_data(&config).unwrap();
    let positives = data.test.iter().filter(|e| e.label == 1).count() as f64;
    let majority =
        100.0 * positives.max(data.test.len() as f64 - positives) / data.test.len() as f64;
    let outcome = run(&config, &data, true).unwrap();
    let report = outcome.report;
    println!("probe matryoshka: acc {:?}", report.accuracy);
    assert_eq!(report.head_mode, "probe");
    assert!(
        report.accuracy[3] > majority + 3.0,
        "{:?} vs majority {majority:.1}",
        report.accuracy
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
}
