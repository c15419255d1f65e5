//! Comparisons that survive a stop (`compare --resume`) on Rotten Tomatoes
//! (encoder truncated to 2 layers): one cut short after its first run and
//! during its second resumes to the uninterrupted comparison's figures, a
//! finished one trains nothing, and a grid widened on resume gives the
//! comparison started with the wider grid.

mod common;

use matryoshka_lora::report::RankWithin;
use matryoshka_lora::train::{ComparePlan, Comparison, FitError, HeadMode, RunError, TrainMethod};
use serde_json::Value;

/// What a resumed comparison must reproduce: every figure but the timings.
fn figures(c: &Comparison) -> Vec<Value> {
    let mut out = Vec::new();
    for s in &c.summary {
        out.push(serde_json::json!([
            s.method,
            s.seeds,
            s.lrs,
            s.grid_lrs,
            s.ranks,
            s.accuracy_mean,
            s.accuracy_std,
            s.curves,
            s.series,
            s.aurac_log2,
            s.smallest_rank_within
        ]));
    }
    for p in &c.pairs {
        out.push(serde_json::json!([p.a, p.b, p.aurac_log2, p.per_rank]));
    }
    for r in &c.runs {
        out.push(serde_json::json!([
            r.report.method,
            r.report.seed,
            r.report.config.train.lr,
            r.report.config.train.rank,
            r.report.per_rank,
            r.chosen,
            r.split,
            r.val_aurac_log2,
            r.grid
        ]));
    }
    out
}

#[test]
fn a_comparison_cut_short_resumes_to_the_uninterrupted_result() {
    let _turn = common::turn();
    let dir = common::temp_dir("compare-resume");
    let data = common::small_rt_runner(TrainMethod::Lora)
        .prepare()
        .unwrap();
    let plan = ComparePlan {
        methods: vec![TrainMethod::Lora.into(), TrainMethod::Matryoshka.into()],
        head_modes: vec![HeadMode::Joint],
        seeds: vec![5],
        lrs: vec![1e-3, 3e-3],
        val_n: Some(64),
        select_on_first_seed: false,
    };
    // (320 - 64) / 16 = 16 steps per validation run, checkpoints every 5
    let whole_dir = dir.join("whole");
    let whole = common::small_rt_runner(TrainMethod::Lora)
        .checkpoint_into(&whole_dir, Some(5))
        .compare_seeds(&plan, &data, Some(&whole_dir), |_| {})
        .unwrap();
    // a directory holding a comparison is refused without resume
    let refused = common::small_rt_runner(TrainMethod::Lora)
        .compare_seeds(&plan, &data, Some(&whole_dir), |_| {})
        .unwrap_err();
    assert!(refused.to_string().contains("--resume"), "{refused}");

    // Stopped after the first run finished, at step 7 of the second.
    let parts = dir.join("parts");
    let mut seen = 0;
    let stopped = common::small_rt_runner(TrainMethod::Lora)
        .checkpoint_into(&parts, Some(5))
        .stop_after(16 + 7)
        .compare_seeds(&plan, &data, Some(&parts), |_| seen += 1);
    match stopped {
        Err(RunError::Comparison { source, .. }) => {
            assert!(matches!(
                *source,
                RunError::Fit(FitError::Interrupted { step: 7, .. })
            ))
        }
        other => panic!("{:?}", other.err()),
    }
    assert_eq!(seen, 1);
    let unit = parts.join("lora/seed-5");
    assert!(unit.join("lr-1e-3/.valid/compared.json").is_file());
    assert!(unit.join("lr-3e-3/.valid/.training").is_dir());
    assert!(!parts.join("compare.json").exists());

    // Resumed: the first run read back, the second from its step-5 checkpoint.
    let mut resumed_runs = Vec::new();
    let resumed = common::small_rt_runner(TrainMethod::Lora)
        .checkpoint_into(&parts, Some(5))
        .resume(true)
        .compare_seeds(&plan, &data, Some(&parts), |r| {
            resumed_runs.push(r.report.config.train.lr)
        })
        .unwrap();
    assert_eq!(figures(&resumed), figures(&whole));
    assert_eq!(resumed.runs.len(), 4);
    assert!(!unit.join("lr-1e-3/.valid").exists() && !unit.join("lr-3e-3/.valid").exists());
    assert_eq!(
        common::read_json(&parts.join("compare.json"))["summary"],
        serde_json::to_value(&resumed.summary).unwrap()
    );
    // A finished comparison trains nothing (no step allowed) and gives the same.
    let again = common::small_rt_runner(TrainMethod::Lora)
        .checkpoint_into(&parts, Some(5))
        .resume(true)
        .stop_after(0)
        .compare_seeds(&plan, &data, Some(&parts), |_| {})
        .unwrap();
    assert_eq!(again.summary, resumed.summary);
    // Other settings are refused.
    let mut other = plan.clone();
    other.seeds = vec![6];
    let err = common::small_rt_runner(TrainMethod::Lora)
        .checkpoint_into(&parts, Some(5))
        .resume(true)
        .compare_seeds(&other, &data, Some(&parts), |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("other settings"), "{err}");
}

/// `--resume --lrs` with more learning rates: only the new ones train; a
/// choice they beat is re-made (the earlier chosen run back to its
/// validation figures, the later seeds retrained at the new choice), and
/// the result is the comparison started with the wider grid.
#[test]
fn a_widened_grid_resumes_to_the_comparison_started_with_it() {
    let _turn = common::turn();
    let dir = common::temp_dir("compare-widen");
    let data = common::small_rt_runner(TrainMethod::Lora)
        .prepare()
        .unwrap();
    let plan = |lrs: Vec<f64>| ComparePlan {
        methods: vec![TrainMethod::Lora.into()],
        head_modes: vec![HeadMode::Joint],
        seeds: vec![5, 6],
        lrs,
        val_n: Some(64),
        select_on_first_seed: true,
    };
    let narrow = plan(vec![1e-5, 3e-5]);
    let wide = plan(vec![1e-5, 3e-5, 3e-3]);
    let wider = plan(vec![1e-5, 3e-5, 3e-3, 1e-6]);
    let whole_dir = dir.join("whole");
    let whole = common::small_rt_runner(TrainMethod::Lora)
        .checkpoint_into(&whole_dir, None)
        .compare_seeds(&wide, &data, Some(&whole_dir), |_| {})
        .unwrap();
    let chosen: Vec<(u64, f64)> = whole
        .runs
        .iter()
        .filter(|r| r.chosen)
        .map(|r| (r.report.seed, r.report.config.train.lr))
        .collect();
    assert_eq!(
        chosen,
        vec![(5, 3e-3), (6, 3e-3)],
        "the widening must change the choice"
    );

    let parts = dir.join("parts");
    let resumed = |plan: &ComparePlan, steps: usize| {
        common::small_rt_runner(TrainMethod::Lora)
            .checkpoint_into(&parts, None)
            .resume(true)
            .stop_after(steps)
            .compare_seeds(plan, &data, Some(&parts), |_| {})
    };
    let first = common::small_rt_runner(TrainMethod::Lora)
        .checkpoint_into(&parts, None)
        .compare_seeds(&narrow, &data, Some(&parts), |_| {})
        .unwrap();
    let old = first.runs.iter().find(|r| r.chosen).unwrap();
    let old_lr = old.report.config.train.lr;
    assert!(
        parts
            .join("lora/seed-6")
            .join(format!("lr-{old_lr:e}"))
            .is_dir()
    );
    // a narrower grid or another learning rate is refused
    for lrs in [vec![1e-5], vec![1e-5, 1e-3]] {
        let err = resumed(&plan(lrs), 0).unwrap_err();
        assert!(
            err.to_string().contains("only the learning rates may grow"),
            "{err}"
        );
    }
    // widened: 16 steps for the new validation run, 16 for seed 6 at the
    // new choice (the same 256 rows), nothing else trains (any other run
    // would stop at once and fail the comparison)
    let widened = resumed(&wide, 16 + 16).unwrap();
    assert_eq!(figures(&widened), figures(&whole));
    assert_eq!(
        common::read_json(&parts.join("compare-plan.json"))["plan"]["lrs"],
        serde_json::json!([1e-5, 3e-5, 3e-3])
    );
    // the earlier choice is a validation record again, with the figures its
    // validation run had; seed 6's run at it is gone
    let demoted = parts.join(format!("lora/seed-5/lr-{old_lr:e}"));
    let mut kept: Vec<String> = std::fs::read_dir(&demoted)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept, vec!["compared.json", "report.json"]);
    let record = widened
        .runs
        .iter()
        .find(|r| r.report.seed == 5 && r.report.config.train.lr == old_lr)
        .unwrap();
    assert!(!record.chosen && record.split == "valid");
    assert_eq!(record.val_aurac_log2, old.val_aurac_log2);
    assert!(
        !parts
            .join("lora/seed-6")
            .join(format!("lr-{old_lr:e}"))
            .exists()
    );
    assert!(
        parts
            .join("lora/seed-6/lr-3e-3/adapter.safetensors")
            .is_file()
    );

    // widened again by a learning rate that loses: its validation run alone
    // trains, the choice and its runs stand
    let again = resumed(&wider, 16).unwrap();
    assert_eq!(again.runs.len(), widened.runs.len() + 1);
    let new = again
        .runs
        .iter()
        .find(|r| r.report.config.train.lr == 1e-6)
        .unwrap();
    assert!(!new.chosen && new.split == "valid");
    let without_new = Comparison::from_runs(
        wide.clone(),
        again
            .runs
            .iter()
            .filter(|r| r.report.config.train.lr != 1e-6)
            .cloned()
            .collect(),
        RankWithin::DEFAULT_TOLERANCE,
    );
    assert_eq!(figures(&without_new), figures(&widened));
}
