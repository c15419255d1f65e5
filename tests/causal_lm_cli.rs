//! `mlora` on the causal-LM task, on the tiny Llama fixture
//! (tests/fixtures/llama): bad input, train / eval / compare / bench, the
//! GPU check's CPU figures, generations.jsonl, and the rank grid with its
//! resume. The library side: tests/causal_lm.rs.

mod common;

use std::path::PathBuf;

/// A file of the tiny Llama fixtures (tests/fixtures/llama).
fn fixture(name: &str) -> PathBuf {
    common::fixture("llama").join(name)
}

/// Runs `mlora args`, asserts it succeeded, and parses its stdout as JSON
/// (`Null` when it printed nothing).
fn json_of(args: &[&str]) -> serde_json::Value {
    let (code, stdout, stderr) = common::run_mlora(args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null)
}

/// `mlora eval --task causal-lm` of the base model in `model` on 8 test rows.
fn eval_base(model: &std::path::Path, max_new_tokens: &str) -> serde_json::Value {
    json_of(&[
        "eval",
        "--task",
        "causal-lm",
        "--model",
        &model.display().to_string(),
        "--data",
        &fixture("arith.jsonl").display().to_string(),
        "--test-n",
        "8",
        "--max-len",
        "40",
        "--max-new-tokens",
        max_new_tokens,
        "--json",
        "--quiet",
    ])
}

/// `mlora train --task causal-lm` on the tinyllama fixture with quick
/// settings plus `extra`; returns (code, stdout, stderr).
fn lm_train(out: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let mut args: Vec<String> = [
        "train",
        "--task",
        "causal-lm",
        "--rank",
        "4",
        "--batch",
        "8",
        "--train-n",
        "32",
        "--test-n",
        "8",
        "--max-len",
        "40",
        "--max-new-tokens",
        "4",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(out.display().to_string());
    if !extra.contains(&"--model") {
        args.extend(["--model".into(), fixture("tinyllama").display().to_string()]);
    }
    if !extra.contains(&"--data") {
        args.extend([
            "--data".into(),
            fixture("arith.jsonl").display().to_string(),
        ]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::run_mlora(&args)
}

#[test]
fn cli_bad_input_is_one_line_naming_the_flag_exit_2_nothing_written() {
    let dir = common::temp_dir("lm-cli-bad");
    let no_field = dir.join("no_field.jsonl");
    std::fs::write(
        &no_field,
        "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"c\"}\n",
    )
    .unwrap();
    let bert_dir = dir.join("bert");
    std::fs::create_dir_all(&bert_dir).unwrap();
    std::fs::write(
        bert_dir.join("config.json"),
        r#"{"model_type": "bert", "vocab_size": 10}"#,
    )
    .unwrap();
    let no_field = no_field.display().to_string();
    let bert_dir = bert_dir.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--data", &no_field], "--response-field"),
        (vec!["--prompt-field", "instruction"], "--prompt-field"),
        (vec!["--max-len", "6"], "--max-len"),
        (vec!["--model", &bert_dir], "--model"),
        (vec!["--labels", "a,b"], "--labels"),
        (vec!["--gen-batch", "0"], "--gen-batch"),
        (vec!["--rank", "64"], "--rank"),
    ];
    for (extra, flag) in cases {
        let out = dir.join("out");
        let extra: Vec<&str> = extra.into_iter().chain(["--quiet"]).collect();
        let (code, _, stderr) = lm_train(&out, &extra);
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        // data warnings (here: responses longer than --max-new-tokens 4) may
        // come first; the error is one line
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("warning: "))
            .collect();
        assert_eq!(lines.len(), 1, "{extra:?}: not one line: {stderr}");
        let line = lines[0];
        assert!(
            line.starts_with(&format!("error: {flag}")),
            "{extra:?}: {line}"
        );
        assert!(!out.exists(), "{extra:?}: wrote {}", out.display());
    }
    let (code, _, stderr) = lm_train(&dir.join("o"), &["--model", &bert_dir]);
    assert!(
        code == 2 && stderr.contains("model_type `bert`"),
        "{stderr}"
    );
}

#[test]
fn cli_train_eval_base_eval_compare_and_bench() {
    let dir = common::temp_dir("lm-cli");
    // --max-len 10: rows whose prompt is 10 tokens lose their whole response
    // and are left out, said in the data summary.
    let (code, _, stderr) = lm_train(&dir.join("short"), &["--max-len", "10", "--train-n", "64"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("left out: --max-len removed their whole response"),
        "{stderr}"
    );

    let run = dir.join("run");
    let (code, stdout, stderr) = lm_train(&run, &["--json", "--lr", "3e-2", "--epochs", "2"]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["task"], "causal-lm");
    // every test response is longer than --max-new-tokens 4: said, and kept
    // in the report's data section
    assert!(
        stderr.contains("warning: 8 of 8 test responses are longer than --max-new-tokens 4"),
        "{stderr}"
    );
    let over = &report["data"]["over_generation_budget"];
    assert_eq!(
        (over["rows"].as_u64(), over["max_new_tokens"].as_u64()),
        (Some(8), Some(4))
    );
    assert!(over["longest"].as_u64().unwrap() > 4, "{over}");
    for key in [
        "loss",
        "exact_match",
        "perplexity",
        "token_accuracy",
        "cut_generations",
    ] {
        assert_eq!(report[key].as_array().unwrap().len(), 3, "{key}");
    }
    assert_eq!(report["aurac_metric"], "exact_match");
    // the saved run evaluates to the same figures
    let again = json_of(&[
        "eval",
        "--adapter",
        &run.display().to_string(),
        "--json",
        "--quiet",
    ]);
    for key in ["loss", "exact_match", "token_accuracy"] {
        assert_eq!(again[key], report[key], "{key}");
    }
    // the base model alone
    let base = eval_base(&fixture("tinyllama"), "4");
    assert_eq!(base["ranks"], serde_json::json!([]));
    assert!(base["base_loss"].as_f64().unwrap() > report["loss"][2].as_f64().unwrap() + 0.05);
    assert!(base["base_exact_match"].is_number());
    // merged at rank 2 into a model directory, the base model alone gives
    // the adapter's rank-2 loss (the f16 checkpoint rounds the merged weights)
    let merged = dir.join("merged");
    json_of(&[
        "merge",
        "--adapter",
        &run.display().to_string(),
        "--rank",
        "2",
        "--out",
        &merged.display().to_string(),
        "--json",
    ]);
    let merged_eval = eval_base(&merged, "0");
    let (m, r2) = (
        merged_eval["base_loss"].as_f64().unwrap(),
        report["loss"][1].as_f64().unwrap(),
    );
    println!("merged at rank 2: loss {m} vs the adapter's {r2}");
    assert!((m - r2).abs() < 1e-3, "{m} vs {r2}");
    // compare writes each method's run and the summary
    let cmp = dir.join("cmp");
    let reports = json_of(&[
        "compare",
        "--task",
        "causal-lm",
        "--model",
        &fixture("smollm2").display().to_string(),
        "--data",
        &fixture("arith.jsonl").display().to_string(),
        "--methods",
        "lora,matryoshka",
        "--rank",
        "4",
        "--batch",
        "8",
        "--train-n",
        "16",
        "--test-n",
        "8",
        "--max-len",
        "40",
        "--max-new-tokens",
        "2",
        "--json",
        "--out",
        &cmp.display().to_string(),
    ]);
    assert_eq!(reports.as_array().map(Vec::len), Some(2));
    for m in ["lora", "matryoshka"] {
        assert!(cmp.join(m).join("adapter.safetensors").is_file(), "{m}");
    }
    // bench llm on the tiny shape
    let bench = json_of(&[
        "bench", "llm", "--config", "tiny", "--batch", "2", "--seq", "32", "--steps", "2", "--json",
    ]);
    assert!(bench["ms_per_step"].as_f64().unwrap() > 0.0);
    assert!(bench["tokens_per_s"].as_f64().unwrap() > 0.0);
    let (code, _, stderr) = common::run_mlora(&["bench", "llm", "--config", "gpt-9"]);
    assert_eq!(code, 2);
    assert!(stderr.starts_with("error: --config"));
}

/// The CPU figures scripts/gpu-check.sh compares every GPU backend with are
/// what this build computes (same host-drawn weights, adapters and rows), and
/// the script runs the same arguments.
#[test]
fn gpu_check_fixture_is_this_builds_cpu_run() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/gpu_check_cpu.json")).unwrap(),
    )
    .unwrap();
    let args: Vec<&str> = fixture["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let script = std::fs::read_to_string(root.join("scripts/gpu-check.sh")).unwrap();
    let script: String = script.split_whitespace().collect::<Vec<_>>().join(" ");
    for pair in args.chunks(2) {
        assert!(
            script.contains(&pair.join(" ")),
            "gpu-check.sh lacks {pair:?}"
        );
    }
    let mut command = vec!["bench", "llm"];
    command.extend(&args);
    command.extend(["--backend", "flex", "--json"]);
    let run = json_of(&command);
    let (want, got) = (
        fixture["loss"].as_array().unwrap(),
        run["loss"].as_array().unwrap(),
    );
    assert_eq!(want.len(), got.len());
    for (w, g) in want.iter().zip(got) {
        let (w, g) = (w.as_f64().unwrap(), g.as_f64().unwrap());
        assert!((w - g).abs() < 1e-4, "{w} vs {g}");
    }
}

/// A run that generates writes generations.jsonl (in its manifest): one
/// record per test row and rank, whose `correct` flags give the report's
/// exact match, and `mlora eval --adapter RUN --out DIR` writes it too.
#[test]
fn generating_runs_write_their_generations() {
    let dir = common::temp_dir("lm-generations");
    let run = dir.join("run");
    let (code, _, stderr) = lm_train(&run, &["--ranks", "1,2,4", "--quiet"]);
    assert_eq!(code, 0, "{stderr}");
    let check = |run: &std::path::Path| {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap())
                .unwrap();
        let text = std::fs::read_to_string(run.join("generations.jsonl")).unwrap();
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 8 * 3, "8 test rows x 3 ranks");
        for (i, &k) in [1u64, 2, 4].iter().enumerate() {
            let at_k: Vec<&serde_json::Value> = records.iter().filter(|r| r["rank"] == k).collect();
            assert_eq!(at_k.len(), 8);
            let rows: Vec<u64> = at_k.iter().map(|r| r["row"].as_u64().unwrap()).collect();
            assert_eq!(rows, (0..8).collect::<Vec<_>>());
            for r in &at_k {
                for key in ["prompt", "reference", "generated"] {
                    assert!(r[key].is_string(), "{key}: {r}");
                }
                assert!(r["prompt"].as_str().unwrap().contains("What is"), "{r}");
            }
            let correct = at_k.iter().filter(|r| r["correct"] == true).count();
            let em = report["exact_match"][i].as_f64().unwrap();
            assert!(
                (em - 100.0 * correct as f64 / 8.0).abs() < 1e-9,
                "rank {k}: {em}"
            );
            // `stopped` says which rows reached --max-new-tokens (4 here):
            // those, and only those, generated 4 tokens' worth of text
            let cut = at_k.iter().filter(|r| r["stopped"] == "length").count();
            assert_eq!(
                cut + at_k.iter().filter(|r| r["stopped"] == "eos").count(),
                8
            );
            let cut_pct = report["cut_generations"][i].as_f64().unwrap();
            assert!(
                (cut_pct - 100.0 * cut as f64 / 8.0).abs() < 1e-9,
                "rank {k}: {cut_pct}"
            );
        }
        let manifest = std::fs::read_to_string(run.join("manifest.json")).unwrap();
        assert!(manifest.contains("generations.jsonl"), "{manifest}");
    };
    check(&run);
    // `mlora eval --adapter RUN --out OUT --quiet` plus `extra`
    let eval_into = |out: &std::path::Path, extra: &[&str]| {
        let (run, out) = (run.display().to_string(), out.display().to_string());
        let mut args = vec!["eval", "--adapter", &run, "--out", &out, "--quiet"];
        args.extend_from_slice(extra);
        json_of(&args);
    };
    let again = dir.join("again");
    eval_into(&again, &[]);
    check(&again);
    // another test file: all its rows, not the run's saved --test-n (8)
    let other = dir.join("other.jsonl");
    let all = std::fs::read_to_string(fixture("arith.jsonl")).unwrap();
    let last: Vec<&str> = all.lines().rev().take(5).collect();
    std::fs::write(&other, last.join("\n") + "\n").unwrap();
    let elsewhere = dir.join("elsewhere");
    eval_into(&elsewhere, &["--test-data", &other.display().to_string()]);
    let text = std::fs::read_to_string(elsewhere.join("generations.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 5 * 3, "5 test rows x 3 ranks");
}

#[test]
fn cli_lora_grid_on_a_causal_lm_and_its_resume() {
    let dir = std::env::temp_dir().join(format!("mlora-lm-grid-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("cmp");
    let model = fixture("tinyllama").display().to_string();
    let data = fixture("arith.jsonl").display().to_string();
    let out_s = out.display().to_string();
    // what both comparisons below share
    let shared = [
        "compare",
        "--task",
        "causal-lm",
        "--model",
        &model,
        "--data",
        &data,
        "--rank",
        "4",
        "--ranks",
        "1,2,4",
        "--train-n",
        "48",
        "--test-n",
        "8",
        "--out",
        &out_s,
    ];
    let first = [
        "--methods",
        "matryoshka,lora-grid",
        "--max-len",
        "40",
        "--max-new-tokens",
        "4",
        "--batch",
        "8",
        "--lr",
        "1e-2",
        "--json",
    ];
    let printed = json_of(&[&shared[..], &first[..]].concat());
    let runs = printed["runs"].as_array().unwrap();
    let grid_runs: Vec<&serde_json::Value> = runs.iter().filter(|r| r["grid"] == true).collect();
    assert_eq!(grid_runs.len(), 3);
    let summary = printed["summary"].as_array().unwrap();
    let grid = summary.iter().find(|s| s["method"] == "lora-grid").unwrap();
    let mat = summary
        .iter()
        .find(|s| s["method"] == "matryoshka")
        .unwrap();
    assert_eq!(grid["metric"], "exact_match");
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    for (i, k) in [1u64, 2, 4].into_iter().enumerate() {
        let run = grid_runs
            .iter()
            .find(|r| r["config"]["rank"] == k)
            .unwrap_or_else(|| panic!("no grid run at rank {k}"));
        assert_eq!(run["method"], "lora");
        assert_eq!(floats(&run["ranks"]), vec![k as f64]);
        // one seed: the grid's curve and series are its runs' own-rank figures
        assert_eq!(
            floats(&grid["accuracy_mean"])[i],
            floats(&run["exact_match"])[0]
        );
        for series in ["loss", "token_accuracy"] {
            assert_eq!(
                floats(&grid["series"][series]["mean"])[i],
                floats(&run[series])[0],
                "{series}"
            );
        }
        let gap = floats(&mat["gap_to_grid"])[i];
        let want = floats(&mat["accuracy_mean"])[i] - floats(&grid["accuracy_mean"])[i];
        assert!((gap - want).abs() < 1e-9);
        // each run's directory, the grid's under rank-<k>
        assert!(
            out.join(format!(
                "lora-grid/seed-42/rank-{k}/lr-1e-2/adapter.safetensors"
            ))
            .is_file()
        );
    }
    let cost = mat["cost_vs_grid"].as_f64().unwrap();
    let secs = |s: &serde_json::Value| s["train_seconds"].as_f64().unwrap();
    assert!((cost - secs(mat) / secs(grid)).abs() < 1e-9);
    // A finished comparison resumed trains nothing and prints the same result.
    let again = json_of(&["compare", "--resume", &out_s, "--json"]);
    assert_eq!(again["summary"], printed["summary"]);
    assert_eq!(again["runs"], printed["runs"]);
    // --resume takes its settings from the comparison
    let (code, _, _) = common::run_mlora(&["compare", "--resume", &out_s, "--lr", "1e-3"]);
    assert_eq!(code, 2);
    // its one learning rate cannot become a grid (no validation rows)
    let (code, _, stderr) =
        common::run_mlora(&["compare", "--resume", &out_s, "--lrs", "1e-2,3e-2"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("ran one learning rate"), "{stderr}");
    // and a new comparison into it is refused, pointing at --resume
    let (code, _, stderr) = common::run_mlora(&[&shared[..], &["--methods", "lora-grid"]].concat());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("compare --resume"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--group-field`: a comparison chooses its learning rate on whole groups
/// that never train (the validation run's report says so), test rows of
/// groups that also train are warned of and counted, and a row without the
/// field is refused naming the flag.
#[test]
fn cli_compare_validates_on_whole_groups() {
    let dir = common::temp_dir("lm-groups");
    // arith rows tagged with 8 interleaved groups (numbers, as reasoning-gym's templates)
    let text = std::fs::read_to_string(fixture("arith.jsonl")).unwrap();
    let mut grouped = String::new();
    for (i, line) in text.lines().take(60).enumerate() {
        let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
        row["template"] = (i * 3 % 8).into();
        grouped.push_str(&format!("{row}\n"));
    }
    let data = dir.join("grouped.jsonl");
    std::fs::write(&data, grouped).unwrap();
    let model = fixture("tinyllama").display().to_string();
    let data_s = data.display().to_string();
    let out = dir.join("cmp");
    let out_s = out.display().to_string();
    let args = |group: &str| -> Vec<String> {
        [
            "compare",
            "--task",
            "causal-lm",
            "--model",
            &model,
            "--data",
            &data_s,
            "--group-field",
            group,
            "--methods",
            "lora",
            "--lrs",
            "1e-2,3e-2",
            "--val-n",
            "10",
            "--rank",
            "2",
            "--ranks",
            "1,2",
            "--train-n",
            "40",
            "--test-n",
            "8",
            "--max-len",
            "40",
            "--max-new-tokens",
            "0",
            "--batch",
            "8",
            "--json",
            "--out",
            &out_s,
        ]
        .map(String::from)
        .to_vec()
    };
    let run =
        |args: &[String]| common::run_mlora(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, _, stderr) = run(&args("nope"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no string or number field `nope` (--group-field)"),
        "{stderr}"
    );
    assert!(!out.join("compare.json").exists());
    // 37 validation rows: walking back, whole groups reach them only with all 40
    let mut greedy = args("template");
    let at = greedy.iter().position(|a| a == "--val-n").unwrap();
    greedy[at + 1] = "37".into();
    let (code, _, stderr) = run(&greedy);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--val-n") && stderr.contains("the groups of the last 37 rows hold all 40"),
        "{stderr}"
    );

    let (code, stdout, stderr) = run(&args("template"));
    assert_eq!(code, 0, "{stderr}");
    // the test split (every 5th row) shares the training rows' groups
    assert!(
        stderr.contains("of 8 test rows belong to groups that also train"),
        "{stderr}"
    );
    // the groups of the 40 training rows (the file's rows i with i % 5 != 0)
    let train_groups: std::collections::BTreeSet<usize> = (0..60)
        .filter(|i| i % 5 != 0)
        .take(40)
        .map(|i| i * 3 % 8)
        .collect();
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let runs = printed["runs"].as_array().unwrap();
    let split = |name: &str| -> Vec<&serde_json::Value> {
        runs.iter().filter(|r| r["split"] == name).collect()
    };
    // the rejected learning rate's report is on the validation rows: whole
    // groups, none of them training, all the training rows' groups between them
    let [valid] = split("valid")[..] else {
        panic!("one validation report: {runs:?}")
    };
    let groups = &valid["data"]["groups"];
    assert_eq!(groups["shared"], 0, "{groups}");
    assert_eq!(groups["test_rows_shared"], 0, "{groups}");
    let whole = groups["train"].as_u64().unwrap() + groups["test"].as_u64().unwrap();
    assert_eq!(whole as usize, train_groups.len(), "{groups}");
    // the chosen one's is on the test rows, which share groups with training;
    // its training rows are the ones it trained on (the validation rows' left out)
    let [chosen] = split("test")[..] else {
        panic!("one test report: {runs:?}")
    };
    assert!(chosen["data"]["groups"]["shared"].as_u64().unwrap() > 0);
    assert_eq!(chosen["data"]["groups"]["train"], groups["train"]);
    // resumed, the same
    let again = json_of(&["compare", "--resume", &out_s, "--json"]);
    assert_eq!(again["summary"], printed["summary"]);
    // without --json, a line per run read back (the rejected learning
    // rate's, the chosen one's) with the comparison's progress: 2 learning
    // rates x 1 seed of plain LoRA, all finished
    let (code, _, stderr) = common::run_mlora(&["compare", "--resume", &out_s]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("AURAC log2"))
        .collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].contains("on valid [1/2 LoRA-run equivalents, about "),
        "{stderr}"
    );
    assert!(
        lines[1].ends_with("(chosen) [2/2 LoRA-run equivalents, about 0 min left]"),
        "{stderr}"
    );
}
