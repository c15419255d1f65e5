//! Data sanity through the CLI: a degenerate training split is an error
//! naming the flags with the per-label counts (exit 2, nothing written), a
//! label without test rows and test rows seen in training are warnings,
//! `--drop-overlap` removes them, and the majority-class baseline is reported.

mod common;

use common::run_mlora as run;
use std::path::Path;

/// A CSV (`text,category`) of `rows` (text, label).
fn write_csv(path: &Path, rows: &[(String, &str)]) {
    let mut text = String::from("text,category\n");
    for (t, l) in rows {
        text.push_str(&format!("\"{t}\",{l}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// `mlora train` on the real encoder's first layer, quick settings, plus `extra`.
fn train(data: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let model = common::assets_dir().display().to_string();
    let (data, out) = (data.display().to_string(), out.display().to_string());
    let mut args = vec![
        "train",
        "--model",
        &model,
        "--data",
        &data,
        "--layers",
        "1",
        "--rank",
        "2",
        "--ranks",
        "1,2",
        "--batch",
        "8",
        "--max-len",
        "16",
        "--out",
        &out,
        "--json",
        "--quiet",
    ];
    args.extend(extra);
    run(&args)
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn a_degenerate_training_split_is_an_error_naming_the_flags_with_counts() {
    let dir = common::temp_dir("sanity-degenerate");
    let rt = common::rt_csv();
    let out = dir.join("out");
    // the file's first rows are all `plot`: the inferred labels are three
    let (code, _, stderr) = train(&rt, &out, &["--train-n", "64", "--test-n", "32"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: --labels:"), "{stderr}");
    assert!(
        stderr.contains("no training rows of `fresh`, `rotten`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("train [fresh 0, plot 64, rotten 0]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("test [fresh 0, plot 32, rotten 0]"),
        "{stderr}"
    );
    assert!(stderr.contains("--train-n chose these rows"), "{stderr}");
    assert!(!out.exists());
    // a listed label with no training rows
    let (code, _, stderr) = train(
        &rt,
        &out,
        &[
            "--train-n",
            "64",
            "--test-n",
            "32",
            "--labels",
            "plot,fresh",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no training rows of `fresh`"), "{stderr}");
    assert!(stderr.contains("train [fresh 0, plot 64]"), "{stderr}");
    assert!(!out.exists());
    // a single label: one class (refused with the label set itself)
    let (code, _, stderr) = train(&rt, &out, &["--train-n", "64", "--labels", "plot"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--labels") && stderr.contains("at least two labels"),
        "{stderr}"
    );
    // empty splits name their flag
    for (flag, args) in [
        ("--train-n", ["--train-n", "0", "--test-n", "8"]),
        ("--test-n", ["--train-n", "8", "--test-n", "0"]),
    ] {
        let (code, _, stderr) = train(&rt, &out, &args);
        assert_eq!(code, 2, "{flag}: {stderr}");
        assert!(stderr.starts_with(&format!("error: {flag}:")), "{stderr}");
        assert!(!out.exists());
    }
}

#[test]
fn overlap_and_missing_test_labels_are_warned_reported_and_droppable() {
    let dir = common::temp_dir("sanity-overlap");
    // 40 rows, every 5th a test row (8 test rows); test rows 0, 5 and 10
    // repeat training rows 1, 6 and 11 (one with extra spaces); no test row
    // is labelled `neutral`
    let mut rows: Vec<(String, &str)> = (0..40)
        .map(|i| {
            let label = if i % 5 == 3 {
                "neutral"
            } else if i % 2 == 0 {
                "good"
            } else {
                "bad"
            };
            (format!("review number {i} of the film"), label)
        })
        .collect();
    rows[0].0 = "review number 1 of the film".into();
    rows[5].0 = "  review number 6 of the film ".into();
    rows[10].0 = "review number 11 of the film".into();
    let csv = dir.join("reviews.csv");
    write_csv(&csv, &rows);
    let out = dir.join("run");
    let (code, _, stderr) = train(&csv, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: 3 of 8 test rows also occur in training"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: label `neutral` has no test rows"),
        "{stderr}"
    );
    let data = &report(&out)["data"];
    assert_eq!(data["test_overlap"], 3);
    // test rows: 0 good, 5 bad, 10 good, 15 bad, 20 good, 25 bad, 30 good, 35 bad
    assert_eq!(
        data["test_counts"],
        serde_json::json!({"bad": 4, "good": 4, "neutral": 0})
    );
    assert_eq!(data["train_counts"]["neutral"], 8);
    assert_eq!(data["majority_accuracy"], 50.0);
    // --drop-overlap: 5 test rows remain
    let dropped = dir.join("dropped");
    let (code, _, stderr) = train(&csv, &dropped, &["--drop-overlap"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("3 test rows also occur in training and were dropped"),
        "{stderr}"
    );
    let data = &report(&dropped)["data"];
    assert_eq!(data["test_overlap"], 3);
    assert_eq!(data["overlap_dropped"], true);
    assert_eq!(
        data["test_counts"],
        serde_json::json!({"bad": 3, "good": 2, "neutral": 0})
    );
    assert_eq!(data["majority_accuracy"], 60.0);
}

#[test]
fn causal_lm_prompts_seen_in_training_are_counted_and_droppable() {
    let dir = common::temp_dir("sanity-lm");
    let mut lines = Vec::new();
    for i in 0..20 {
        // rows 0 and 10 (test) repeat the prompts of rows 1 and 11 (train)
        let prompt_of = if i % 10 == 0 { i + 1 } else { i };
        lines.push(format!(
            "{{\"prompt\": \"What is {prompt_of} + 1?\\n\", \"response\": \"{}\"}}",
            prompt_of + 1
        ));
    }
    let data = dir.join("rows.jsonl");
    std::fs::write(&data, lines.join("\n")).unwrap();
    let model = common::fixture("llama/tinyllama").display().to_string();
    let data_s = data.display().to_string();
    for (extra, overlap_line, test_rows) in [
        (None, "warning: 2 of 4 test rows also occur in training", 4),
        (
            Some("--drop-overlap"),
            "2 test rows also occur in training and were dropped",
            2,
        ),
    ] {
        let out = dir.join(format!("run-{test_rows}"));
        let out_s = out.display().to_string();
        let mut args = vec![
            "train",
            "--task",
            "causal-lm",
            "--model",
            &model,
            "--data",
            &data_s,
            "--rank",
            "2",
            "--ranks",
            "1,2",
            "--batch",
            "4",
            "--max-len",
            "24",
            "--max-new-tokens",
            "0",
            "--out",
            &out_s,
            "--quiet",
        ];
        args.extend(extra);
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains(overlap_line), "{stderr}");
        let report = report(&out);
        assert_eq!(report["data"]["test_overlap"], 2);
        let _ = test_rows;
    }
}
