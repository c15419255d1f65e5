//! Multi-seed comparisons on Rotten Tomatoes (encoder truncated to 2 layers):
//! learning rates are chosen on validation rows only, the summary equals the
//! figures recomputed from the per-run reports, and the sampled objective
//! with every rank drawn is the exact one.

mod common;

use matryoshka_lora::train::{CompareMethod, ComparePlan, HeadMode, TrainMethod};
use serde_json::Value;

#[test]
fn learning_rate_selection_never_looks_at_test_rows() {
    let _turn = common::turn();
    let runner = common::small_rt_runner(TrainMethod::Matryoshka);
    let data = runner.prepare().unwrap();
    let plan = ComparePlan {
        methods: vec![TrainMethod::Matryoshka.into()],
        head_modes: vec![HeadMode::Joint],
        seeds: vec![3],
        lrs: vec![3e-4, 3e-3],
        val_n: Some(64),
        select_on_first_seed: false,
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
fn sampled_objective_with_every_rank_drawn_is_the_exact_one_and_with_one_dyloras() {
    let _turn = common::turn();
    let exact = common::small_rt_runner(TrainMethod::MatryoshkaExact);
    let data = exact.prepare().unwrap();
    let exact = exact.train(&data).unwrap().report;
    let all = common::small_rt_runner(TrainMethod::MatryoshkaSampled);
    let mut config = all.config().clone();
    config.rank_samples = Some(3);
    let all = all.train_with(config.clone(), &data).unwrap().report;
    assert_eq!(all.per_rank, exact.per_rank);
    config.rank_samples = Some(1);
    let one = common::small_rt_runner(TrainMethod::MatryoshkaSampled)
        .train_with(config, &data)
        .unwrap()
        .report;
    assert_ne!(one.per_rank, exact.per_rank);
    assert!(one.curve().iter().all(|a| *a > 50.0), "{:?}", one.curve());
    // one rank drawn per step (R not forced) is DyLoRA's reference draw
    let dylora = common::small_rt_runner(TrainMethod::Dylora)
        .train(&data)
        .unwrap()
        .report;
    assert_eq!(one.per_rank, dylora.per_rank);
}

#[test]
fn lora_grid_trains_one_lora_per_rank_and_is_the_reference_of_the_others() {
    let _turn = common::turn();
    let runner = common::small_rt_runner(TrainMethod::Matryoshka);
    let data = runner.prepare().unwrap();
    let plan = ComparePlan {
        methods: vec![TrainMethod::Matryoshka.into(), CompareMethod::LoraGrid],
        head_modes: vec![HeadMode::Joint],
        seeds: vec![1, 2],
        lrs: vec![2e-3],
        val_n: None,
        select_on_first_seed: false,
    };
    let c = runner.compare_seeds(&plan, &data, None, |_| {}).unwrap();
    // One plain LoRA per seed and k, of max rank k, evaluated at k.
    let grid_runs: Vec<_> = c.runs.iter().filter(|r| r.grid).collect();
    assert_eq!(grid_runs.len(), 6);
    for r in &grid_runs {
        let k = r.report.config.train.rank;
        assert_eq!(r.report.method, TrainMethod::Lora);
        assert_eq!((r.report.max_rank, r.report.ranks.clone()), (k, vec![k]));
        assert_eq!(r.compare_method(), CompareMethod::LoraGrid);
    }
    let run_at = |seed: u64, k: usize| {
        grid_runs
            .iter()
            .find(|r| r.report.seed == seed && r.report.config.train.rank == k)
            .unwrap()
    };
    // The grid's curve is its runs' own-rank figures.
    let grid = c.summary.iter().find(|s| s.method.is_grid()).unwrap();
    let mat = c.summary.iter().find(|s| !s.method.is_grid()).unwrap();
    assert_eq!(grid.ranks, vec![1, 2, 4]);
    assert_eq!(grid.label(), "lora-grid");
    for (i, &k) in grid.ranks.iter().enumerate() {
        let values: Vec<f64> = [1, 2]
            .iter()
            .map(|&s| run_at(s, k).report.curve()[0])
            .collect();
        assert_eq!(grid.curves[0][i], values[0]);
        assert_eq!(grid.curves[1][i], values[1]);
        assert!((grid.accuracy_mean[i] - mean(&values)).abs() < 1e-12);
        assert!((grid.accuracy_std[i] - std(&values)).abs() < 1e-12);
        let losses: Vec<f64> = [1, 2]
            .iter()
            .map(|&s| run_at(s, k).report.series("loss").unwrap()[0])
            .collect();
        assert!((grid.series["loss"].mean[i] - mean(&losses)).abs() < 1e-12);
        // gap_to_grid is the difference of the mean curves
        let gap = mat.gap_to_grid.as_ref().unwrap()[i];
        assert!((gap - (mat.accuracy_mean[i] - grid.accuracy_mean[i])).abs() < 1e-12);
    }
    for (s, curve) in grid.curves.iter().enumerate() {
        let a =
            matryoshka_lora::aurac(&grid.ranks, curve, matryoshka_lora::RankAxis::Log2).unwrap();
        assert!((grid.aurac_log2[s] - a).abs() < 1e-12);
    }
    assert!(grid.gap_to_grid.is_none() && grid.cost_vs_grid.is_none());
    // Costs add up: training seconds of the runs, and their ratio.
    let seconds = |grid: bool| -> f64 {
        c.runs
            .iter()
            .filter(|r| r.grid == grid)
            .map(|r| r.report.train_steps as f64 * r.report.ms_per_step / 1000.0)
            .sum()
    };
    assert!((grid.train_seconds - seconds(true)).abs() < 1e-9);
    assert!((mat.train_seconds - seconds(false)).abs() < 1e-9);
    let cost = mat.cost_vs_grid.unwrap();
    assert!((cost - mat.train_seconds / grid.train_seconds).abs() < 1e-12);
    // The pair against the grid, per rank and in AURAC, over seeds.
    let pair = &c.pairs[0];
    assert_eq!(
        (pair.a.as_str(), pair.b.as_str()),
        ("matryoshka", "lora-grid")
    );
    assert_eq!(pair.per_rank.len(), 3);
    for (i, d) in pair.per_rank.iter().enumerate() {
        assert!((d.mean - mat.gap_to_grid.as_ref().unwrap()[i]).abs() < 1e-9);
    }
    println!(
        "grid {:?} (AURAC {:.2}), matryoshka {:?} (AURAC {:.2}), gap {:?}, cost {cost:.2}x",
        grid.accuracy_mean,
        grid.aurac_log2_mean,
        mat.accuracy_mean,
        mat.aurac_log2_mean,
        mat.gap_to_grid
    );
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
    let _turn = common::turn();
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
    assert_eq!(printed, common::read_json(&out.join("compare.json")));
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
                let report = common::read_json(&run);
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
