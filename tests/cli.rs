//! The `mlora` CLI: bad input is a one-line error naming the flag, exit code 2,
//! nothing written; `--json` output parses.

mod common;

use assert_cmd::Command;
use std::path::Path;

fn mlora() -> Command {
    Command::cargo_bin("mlora").unwrap()
}

/// Runs `command`, asserts it succeeded, and parses its stdout as JSON.
fn json_of(command: &mut Command) -> serde_json::Value {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Runs `mlora train` with quick settings plus `extra`; returns (code, stderr).
fn train(out: &Path, extra: &[&str]) -> (i32, String) {
    let assets = common::assets_dir();
    let model = if extra.contains(&"--model") {
        vec![]
    } else {
        vec!["--model".to_string(), assets.display().to_string()]
    };
    let mut args = vec!["train".to_string()];
    args.extend(model);
    args.extend([
        "--layers".into(),
        "1".into(),
        "--train-n".into(),
        "64".into(),
        "--test-n".into(),
        "32".into(),
        "--rank".into(),
        "4".into(),
        "--quiet".into(),
        "--out".into(),
        out.display().to_string(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = common::run_mlora(&args);
    (code, stderr)
}

#[test]
fn bad_input_exits_2_with_a_one_line_error_and_writes_nothing() {
    let dir = common::temp_dir("cli-bad");
    let tiny_csv = dir.join("tiny.csv");
    std::fs::write(
        &tiny_csv,
        "category,text\nfresh,good\nrotten,bad\nfresh,great\n",
    )
    .unwrap();
    let tiny = tiny_csv.display().to_string();
    // model directories that differ from the real one in config.json only
    let variant = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| -> String {
        let assets = common::assets_dir();
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["model.safetensors", "tokenizer.json", "vocab.txt"] {
            std::os::unix::fs::symlink(assets.join(f), d.join(f)).unwrap();
        }
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(assets.join("config.json")).unwrap())
                .unwrap();
        edit(&mut config);
        std::fs::write(d.join("config.json"), config.to_string()).unwrap();
        d.display().to_string()
    };
    let roberta = variant("roberta", &|c| c["model_type"] = "roberta".into());
    let small_vocab = variant("small-vocab", &|c| c["vocab_size"] = 1000.into());
    let rt = common::rt_csv().display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--labels", "rotten,fresh,stale"], "--labels"),
        (
            vec!["--data", &rt, "--labels", "rotten,fresh,stale"],
            "--labels",
        ),
        (vec!["--max-len", "600"], "--max-len"),
        (vec!["--model", &roberta, "--data", &rt], "--model"),
        (vec!["--model", &small_vocab, "--data", &rt], "--model"),
        (vec!["--weight-decay=-1"], "--weight-decay"),
        (vec!["--checkpoint-every", "0"], "--checkpoint-every"),
        (vec!["--method", "lorax"], "--method"),
        (vec!["--ranks", "1,2,64"], "--rank"),
        (vec!["--data", "/nonexistent/data.csv"], "--data"),
        (vec!["--label-col", "sentiment"], "--label-col"),
        (vec!["--data", &tiny], "--train-n"),
        (vec!["--labels", ""], "--labels"),
        (vec!["--model", "/nonexistent/model"], "--model"),
        (vec!["--scaling", "cubic"], "--scaling"),
        (vec!["--backend", "tpu"], "--backend"),
        (vec!["--head-mode", "linear"], "--head-mode"),
        (vec!["--targets", "query,kee"], "--targets"),
        (vec!["--layers", "99"], "--layers"),
        (vec!["--grad-clip=-1"], "--grad-clip"),
        (vec!["--labels", "fresh"], "--labels"),
        (vec!["--labels", "fresh,rotten,fresh"], "--labels"),
        (vec!["--rank", "1000"], "--rank"),
        (vec!["--max-len", "1"], "--max-len"),
        (vec!["--lr", "0"], "--lr"),
        (vec!["--rank-samples", "2"], "--rank-samples"),
        (vec!["--method", "lora", "--sample-max"], "--sample-max"),
        (
            vec!["--method", "matryoshka-sampled", "--rank-samples", "4"],
            "--rank-samples",
        ),
        // data-parallel settings
        (vec!["--devices", "tpu:0,tpu:1"], "--devices"),
        (vec!["--devices", "flex:1"], "--devices"),
        (vec!["--devices", "flex,flex", "--batch", "15"], "--devices"),
        (vec!["--devices", "cuda:0,cuda:0"], "--devices"),
        (vec!["--devices", "flex,wgpu"], "--devices"),
        (vec!["--devices", "cuda:0,cuda:1"], "--devices"),
        (
            vec!["--devices", "flex,flex", "--strategy", "ddp"],
            "--strategy",
        ),
        (
            vec!["--devices", "flex,flex", "--strategy", "fsdp"],
            "--strategy",
        ),
        (vec!["--strategy", "multi"], "--devices"),
        (
            vec!["--devices", "flex,flex", "--backend", "flex"],
            "--devices",
        ),
        (vec!["--grad-accum", "0"], "--grad-accum"),
        (vec!["--grad-accum", "3"], "--grad-accum"),
    ];
    for (i, (extra, flag)) in cases.into_iter().enumerate() {
        let out = dir.join(format!("out{i}"));
        let (code, stderr) = train(&out, &extra);
        assert_eq!(code, 2, "{extra:?}: exit {code}, stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{extra:?}: expected one line, got: {stderr}"
        );
        assert!(lines[0].starts_with("error:"), "{stderr}");
        assert!(
            lines[0].contains(flag),
            "{extra:?}: `{}` does not name {flag}",
            lines[0]
        );
        assert!(!out.exists(), "{extra:?}: --out was written");
    }
}

#[test]
fn json_report_parses_and_eval_reproduces_it() {
    let dir = common::temp_dir("cli-json");
    let out = dir.join("run");
    let (code, stderr) = train(&out, &["--json", "--method", "matryoshka"]);
    assert_eq!(code, 0, "{stderr}");
    for f in [
        "report.json",
        "adapter.safetensors",
        "manifest.json",
        "curve.png",
        "curve.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for key in [
        "method",
        "head_mode",
        "max_rank",
        "ranks",
        "accuracy",
        "loss",
        "aurac_log2",
        "aurac_linear",
        "scaling",
        "seed",
        "train_steps",
        "ms_per_step",
        "eval_seconds",
        "peak_rss_mb",
        "config",
        "task",
        "aurac_metric",
    ] {
        assert!(report.get(key).is_some(), "report.json lacks `{key}`");
    }
    assert_eq!(report["ranks"], serde_json::json!([1, 2, 4]));
    assert_eq!(report["task"], "classify");
    assert_eq!(report["aurac_metric"], "accuracy");
    for (key, value) in [
        ("method", "matryoshka"),
        ("head_mode", "joint"),
        ("scaling", "sqrt"),
        ("backend", "flex"),
        ("label_col", "category"),
    ] {
        assert_eq!(report["config"][key], value, "config.{key}");
    }
    assert_eq!(report["config"]["layers"], 1);
    assert_eq!(report["config"]["test_n"], 32);

    // `eval` on the saved run alone (its own model, data and settings) gives
    // the same per-rank accuracies; it takes --quiet like every subcommand.
    let mut eval = mlora();
    eval.args(["eval", "--adapter", &out.display().to_string()])
        .args(["--json", "--quiet"]);
    let evaluated = json_of(&mut eval);
    let a: Vec<f64> = serde_json::from_value(report["accuracy"].clone()).unwrap();
    let b: Vec<f64> = serde_json::from_value(evaluated["accuracy"].clone()).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-6, "train report {a:?} vs eval {b:?}");
    }
}

#[test]
fn bench_rt_prints_timings_as_json() {
    let assets = common::assets_dir();
    let mut bench = mlora();
    bench
        .args(["bench", "rt", "--model", &assets.display().to_string()])
        .args([
            "--layers", "1", "--steps", "2", "--warmup", "1", "--test-n", "16",
        ])
        .args(["--method", "lora", "--json"]);
    let r = json_of(&mut bench);
    assert_eq!(r["bench"], "rt");
    assert_eq!(r["steps"], 2);
    assert_eq!(r["warmup"], 1);
    assert_eq!(r["test_rows"], 16);
    assert_eq!(r["ranks"], serde_json::json!([1, 2, 4, 8, 16, 32]));
    for key in [
        "ms_per_step",
        "ms_per_step_all",
        "eval_seconds",
        "peak_rss_mb",
    ] {
        let v = r[key].as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }

    let bad = mlora()
        .args(["bench", "rt", "--model", &assets.display().to_string()])
        .args(["--steps", "0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--steps"));
}

#[test]
fn dylora_original_trains_and_its_adapter_evaluates() {
    let dir = common::temp_dir("cli-dylora-original");
    let out = dir.join("run");
    let (code, stderr) = train(&out, &["--method", "dylora-original"]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["method"], "dylora-original");
    assert_eq!(report["config"]["method"], "dylora-original");
    let evaluated = json_of(
        mlora()
            .args(["eval", "--adapter", &out.display().to_string()])
            .arg("--json"),
    );
    assert_eq!(evaluated["method"], "dylora-original");
    assert_eq!(evaluated["accuracy"], report["accuracy"]);
}

#[test]
fn ctrl_c_leaves_a_checkpoint_that_train_resume_continues() {
    let dir = common::temp_dir("cli-resume");
    let out = dir.join("run");
    let assets = common::assets_dir();
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("mlora"))
        .args(["train", "--model", &assets.display().to_string()])
        .args([
            "--layers",
            "1",
            "--train-n",
            "480",
            "--test-n",
            "32",
            "--batch",
            "16",
        ])
        .args(["--rank", "4", "--checkpoint-every", "2", "--quiet"])
        .args(["--out", &out.display().to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Ctrl-C once the first checkpoint is on disk
    let checkpoint = out.join(".training/checkpoint/model-1.bpk");
    let started = std::time::Instant::now();
    while !checkpoint.is_file() {
        assert!(
            started.elapsed().as_secs() < 120,
            "no checkpoint was written"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("mlora train --resume"), "{stderr}");
    assert!(!out.join("report.json").exists());

    // a new run into it is refused; --resume with other run flags too
    let (code, stderr) = train(&out, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--out") && stderr.contains("interrupted"),
        "{stderr}"
    );
    let conflicting = mlora()
        .args([
            "train",
            "--resume",
            &out.display().to_string(),
            "--lr",
            "0.1",
        ])
        .output()
        .unwrap();
    assert_eq!(conflicting.status.code(), Some(2));

    let resumed = json_of(
        mlora()
            .args(["train", "--resume", &out.display().to_string()])
            .arg("--json"),
    );
    assert_eq!(resumed["train_steps"], 30);
    assert_eq!(resumed["config"]["train_n"], 480);
    for f in ["report.json", "adapter.safetensors", "manifest.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(!out.join(".training").exists());
    let again = mlora()
        .args(["train", "--resume", &out.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
}

#[test]
fn import_eval_train_from_export_and_merge() {
    let dir = common::temp_dir("cli-artifacts");
    let assets = common::assets_dir().display().to_string();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft");
    let imported = dir.join("imported");
    let report = json_of(
        mlora()
            .args(["import", "--peft", &fixture.display().to_string()])
            .args(["--out", &imported.display().to_string(), "--model", &assets])
            .args(["--train-n", "64", "--test-n", "48", "--json"]),
    );
    assert_eq!(report["max_rank"], 4);
    assert_eq!(report["ranks"], serde_json::json!([1, 2, 4]));
    assert_eq!(report["train_steps"], 0);
    // the imported run evaluates like any saved run
    let evaluated = json_of(
        mlora()
            .args(["eval", "--adapter", &imported.display().to_string()])
            .arg("--json"),
    );
    assert_eq!(evaluated["accuracy"], report["accuracy"]);

    // further MatryoshkaLoRA training from it
    let trained = dir.join("trained");
    let (code, stderr) = train(
        &trained,
        &[
            "--layers",
            "6",
            "--targets",
            "query,value,intermediate.dense",
            "--init-adapter",
            &imported.display().to_string(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    // from an adapter of another rank: refused, naming the flag
    let (code, stderr) = train(
        &dir.join("wrong"),
        &[
            "--layers",
            "6",
            "--rank",
            "8",
            "--targets",
            "query,value,intermediate.dense",
            "--init-adapter",
            &imported.display().to_string(),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--init-adapter"), "{stderr}");

    let peft = dir.join("peft");
    let exported = json_of(
        mlora()
            .args(["export", "--adapter", &trained.display().to_string()])
            .args([
                "--rank",
                "2",
                "--peft",
                &peft.display().to_string(),
                "--json",
            ]),
    );
    assert_eq!(exported["config"]["r"], 2);
    assert_eq!(exported["config"]["use_rslora"], true);
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        assert!(peft.join(f).is_file(), "{f}");
    }
    let merged = dir.join("merged");
    let summary = json_of(
        mlora()
            .args(["merge", "--adapter", &trained.display().to_string()])
            .args([
                "--rank",
                "2",
                "--out",
                &merged.display().to_string(),
                "--json",
            ]),
    );
    assert_eq!(summary["merged"].as_array().map(|m| m.len()), Some(18));
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(merged.join(f).is_file(), "{f}");
    }

    // bad input: one line naming the flag, exit 2
    for (args, flag) in [
        (
            vec!["merge", "--adapter", "X", "--rank", "9", "--out", "Y"],
            "--rank",
        ),
        (
            vec!["export", "--adapter", "X", "--rank", "0", "--peft", "Y"],
            "--rank",
        ),
        (
            vec!["import", "--peft", "/nonexistent", "--out", "Y"],
            "--peft",
        ),
    ] {
        let args: Vec<String> = args
            .iter()
            .map(|a| match *a {
                "X" => trained.display().to_string(),
                "Y" => dir.join("never").display().to_string(),
                other => other.to_string(),
            })
            .collect();
        let output = mlora().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    assert!(!dir.join("never").exists());
}

#[test]
fn labels_are_trimmed() {
    let dir = common::temp_dir("cli-labels");
    let out = dir.join("run");
    let (code, stderr) = train(&out, &["--labels", "rotten, fresh"]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["config"]["labels"],
        serde_json::json!(["rotten", "fresh"])
    );
    assert_eq!(
        report["task_info"]["labels"],
        serde_json::json!(["rotten", "fresh"])
    );
}

/// `mlora plot compare.json` draws the comparison's mean curves (here the
/// committed LLM study's chain part, six methods with the grid).
#[test]
fn plot_draws_a_comparisons_mean_curves() {
    let dir = common::temp_dir("cli-plot-compare");
    let out = dir.join("chain.svg");
    let compare = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/results/llm_chain_2026-12-04.json");
    let (code, stdout, stderr) = common::run_mlora(&[
        "plot",
        compare.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["methods"], 6);
    let svg = std::fs::read_to_string(&out).unwrap();
    for label in [
        "matryoshka-exact (AURAC 43.6 ± 0.3, 3 seeds)",
        "lora-grid (AURAC 41.4 ± 0.9, 3 seeds)",
    ] {
        assert!(svg.contains(label), "{label} missing");
    }
    // a comparison and a report together are refused, naming the argument
    let report = common::fixture("llama/arith.jsonl");
    let (code, _, stderr) = common::run_mlora(&[
        "plot",
        compare.to_str().unwrap(),
        report.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("REPORTS: give either"), "{stderr}");
}
