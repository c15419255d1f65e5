//! Multi-seed comparisons on Rotten Tomatoes (encoder truncated to 2 layers):
//! learning rates are chosen on validation rows only, the summary equals the
//! figures recomputed from the per-run reports, and the sampled objective
//! with every rank drawn is the exact one.

mod common;

use matryoshka_lora::tasks::classify::{ClassifyConfig, ClassifyTask};
use matryoshka_lora::train::{ComparePlan, HeadMode, Runner, TrainConfig, TrainMethod};
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;

/// Trainings take turns (see tests/train_rt.rs: concurrent runs can differ
/// in the last bits, and these tests compare runs bit for bit).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn runner(method: TrainMethod) -> Runner<ClassifyTask> {
    let mut task = ClassifyConfig::rt_protocol(common::assets_dir());
    task.train_n = Some(320);
    task.test_n = Some(128);
    task.layers = Some(2);
    let train = TrainConfig {
        batch: 16,
        rank: 4,
        ranks: vec![1, 2, 4],
        ..TrainConfig::default()
    }
    .with_method(method);
    Runner::new(ClassifyTask::new(task), train)
        .unwrap()
        .quiet(true)
}

#[test]
fn learning_rate_selection_never_looks_at_test_rows() {
    let _turn = turn();
    let runner = runner(TrainMethod::Matryoshka);
    let data = runner.prepare().unwrap();
    let plan = ComparePlan {
        methods: vec![TrainMethod::Matryoshka],
        head_modes: vec![HeadMode::Joint],
        seeds: vec![3],
        lrs: vec![3e-4, 3e-3],
        val_n: Some(64),
    };
    let real = runner.compare_seeds(&plan, &data, None, |_| {}).unwrap();
    // The same data with the test labels permuted (reversed order).
    let mut shuffled = data.clone();
    let labels: Vec<usize> = shuffled.test.iter().rev().map(|e| e.label).collect();
    for (example, label) in shuffled.test.iter_mut().zip(labels) {
        example.label = label;
    }
    assert!(
        shuffled
            .test
            .iter()
            .zip(&data.test)
            .filter(|(a, b)| a.label != b.label)
            .count()
            > 20
    );
    let other = runner
        .compare_seeds(&plan, &shuffled, None, |_| {})
        .unwrap();

    // One run per learning rate: the rejected one is reported on its
    // validation rows, the chosen one on the test rows (its validation
    // AURAC kept beside).
    assert_eq!(real.runs.len(), 2);
    let valid = |c: &matryoshka_lora::train::Comparison| -> Vec<_> {
        c.runs
            .iter()
            .filter(|r| r.split == "valid")
            .map(|r| (r.report.config.train.lr, r.report.per_rank.clone()))
            .collect()
    };
    assert_eq!(valid(&real).len(), 1, "the chosen lr's run is its test run");
    // Same validation figures, same choice, whatever the test labels are.
    assert_eq!(valid(&real), valid(&other));
    assert_eq!(real.summary[0].lrs, other.summary[0].lrs);
    let chosen = |c: &matryoshka_lora::train::Comparison| {
        c.runs
            .iter()
            .find(|r| r.chosen)
            .map(|r| (r.val_aurac_log2, r.report.clone()))
            .unwrap()
    };
    let (real_val, real_test) = chosen(&real);
    let (other_val, other_test) = chosen(&other);
    assert_eq!(real_val, other_val);
    // The choice is the best validation AURAC.
    let rejected = real.runs.iter().find(|r| !r.chosen).unwrap();
    assert!(real_val.unwrap() >= rejected.report.aurac_log2);
    // ...and the test figures do see the permuted labels.
    assert_ne!(real_test.curve(), other_test.curve());
    println!(
        "chosen lr {} (val AURAC {:.2} vs {:.2}); test {:?} vs permuted {:?}",
        real_test.config.train.lr,
        real_val.unwrap(),
        rejected.report.aurac_log2,
        real_test.curve(),
        other_test.curve()
    );
}

#[test]
fn sampled_objective_with_every_rank_drawn_is_the_exact_objective() {
    let _turn = turn();
    let exact = runner(TrainMethod::MatryoshkaExact);
    let data = exact.prepare().unwrap();
    let exact = exact.train(&data).unwrap().report;
    let all = runner(TrainMethod::MatryoshkaSampled);
    let mut config = all.config().clone();
    config.rank_samples = Some(3);
    let all = all.train_with(config.clone(), &data).unwrap().report;
    assert_eq!(all.per_rank, exact.per_rank);
    config.rank_samples = Some(1);
    let one = runner(TrainMethod::MatryoshkaSampled)
        .train_with(config, &data)
        .unwrap()
        .report;
    assert_ne!(one.per_rank, exact.per_rank);
    assert!(one.curve().iter().all(|a| *a > 50.0), "{:?}", one.curve());
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn std(xs: &[f64]) -> f64 {
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

#[test]
fn cli_compare_over_seeds_writes_every_run_and_a_summary_of_them() {
    let _turn = turn();
    let dir = common::temp_dir("compare-seeds");
    let out = dir.join("cmp");
    let output = assert_cmd::Command::cargo_bin("mlora")
        .unwrap()
        .args(["compare", "--model"])
        .arg(common::assets_dir())
        .args([
            "--methods",
            "lora,matryoshka",
            "--seeds",
            "1,2",
            "--lrs",
            "1e-3,2e-3",
            "--val-n",
            "64",
            "--layers",
            "2",
            "--train-n",
            "320",
            "--test-n",
            "128",
            "--batch",
            "16",
            "--rank",
            "4",
            "--json",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, read_json(&out.join("compare.json")));
    assert!(out.join("curve.svg").is_file());

    // Every run's report is on disk: 2 methods x 2 seeds x 2 lrs.
    let mut chosen = std::collections::BTreeMap::new();
    for method in ["lora", "matryoshka"] {
        for seed in [1u64, 2] {
            for lr in ["lr-1e-3", "lr-2e-3"] {
                let run = out
                    .join(method)
                    .join(format!("seed-{seed}"))
                    .join(lr)
                    .join("report.json");
                let report = read_json(&run);
                assert_eq!(report["method"], method);
                assert_eq!(report["seed"], seed);
                // A chosen run's directory holds its test report and adapter.
                if run.with_file_name("adapter.safetensors").is_file() {
                    assert!(chosen.insert((method, seed), report).is_none());
                } else {
                    assert_eq!(report["split"], "valid");
                }
            }
        }
    }
    assert_eq!(chosen.len(), 4, "one chosen run per method and seed");
    let runs = printed["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 8);
    assert_eq!(runs.iter().filter(|r| r["chosen"] == true).count(), 4);

    // The summary equals the figures recomputed from the per-run reports.
    let summary = printed["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 2);
    let mut aurac = Vec::new();
    for entry in summary {
        let method = entry["method"].as_str().unwrap();
        assert_eq!(entry["head_mode"], "joint");
        let reports: Vec<&Value> = [1u64, 2].iter().map(|s| &chosen[&(method, *s)]).collect();
        let lrs: Vec<f64> = reports
            .iter()
            .map(|r| r["config"]["lr"].as_f64().unwrap())
            .collect();
        assert_eq!(floats(&entry["lrs"]), lrs);
        let curves: Vec<Vec<f64>> = reports.iter().map(|r| floats(&r["accuracy"])).collect();
        for (i, (m, s)) in floats(&entry["accuracy_mean"])
            .iter()
            .zip(floats(&entry["accuracy_std"]))
            .enumerate()
        {
            let at: Vec<f64> = curves.iter().map(|c| c[i]).collect();
            assert!((m - mean(&at)).abs() < 1e-9, "{method} rank {i}");
            assert!((s - std(&at)).abs() < 1e-9, "{method} rank {i}");
        }
        let log2: Vec<f64> = reports
            .iter()
            .map(|r| r["aurac_log2"].as_f64().unwrap())
            .collect();
        assert!((entry["aurac_log2_mean"].as_f64().unwrap() - mean(&log2)).abs() < 1e-9);
        assert!((entry["aurac_log2_std"].as_f64().unwrap() - std(&log2)).abs() < 1e-9);
        let linear: Vec<f64> = reports
            .iter()
            .map(|r| r["aurac_linear"].as_f64().unwrap())
            .collect();
        assert!((entry["aurac_linear_mean"].as_f64().unwrap() - mean(&linear)).abs() < 1e-9);
        aurac.push(log2);
    }
    // The pair: lora - matryoshka, seed by seed; t(0.975, 1 df) = 12.7062.
    let pair = &printed["pairs"][0];
    assert_eq!(pair["a"], "lora");
    assert_eq!(pair["b"], "matryoshka");
    let d: Vec<f64> = aurac[0].iter().zip(&aurac[1]).map(|(a, b)| a - b).collect();
    let half = 12.706_204_736 * std(&d) / 2f64.sqrt();
    let diff = &pair["aurac_log2"];
    assert!((diff["mean"].as_f64().unwrap() - mean(&d)).abs() < 1e-9);
    let ci = floats(&diff["ci95"]);
    assert!((ci[0] - (mean(&d) - half)).abs() < 1e-6);
    assert!((ci[1] - (mean(&d) + half)).abs() < 1e-6);
    let verdict = pair["verdict"].as_str().unwrap();
    assert!(verdict.starts_with("lora vs matryoshka: "), "{verdict}");
    assert!(
        verdict.contains("95 % t-interval over 2 seeds"),
        "{verdict}"
    );
    println!("{verdict}");
}
