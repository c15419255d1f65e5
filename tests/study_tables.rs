//! README's study tables are `scripts/study_tables.py --readme` run on the
//! committed results (`benches/results/`), and that script's figures are
//! the crate's own: its AURAC and per-rank means are the comparison
//! summary's, its gaps to the grid and their 95 % t-intervals the
//! summary's `gap_to_grid` and `pairs`; `study_evals.py` and
//! `study_status.py` read a study's directories right.

mod common;

use matryoshka_lora::train::Comparison;
use std::path::Path;
use std::process::Command;

/// The committed chain part of the LLM study.
const CHAIN: &str = "benches/results/llm_chain_2026-12-04.json";
/// The committed gsm part of the LLM study.
const GSM: &str = "benches/results/llm_gsm_2026-12-05.json";

/// The arguments of every `` `python3 scripts/<name> ...` `` command README
/// names inline (a command may wrap over lines).
fn readme_commands(readme: &str, name: &str) -> Vec<Vec<String>> {
    readme
        .split(&format!("`python3 scripts/{name} "))
        .skip(1)
        .filter_map(|rest| rest.split('`').next())
        .map(|command| command.split_whitespace().map(String::from).collect())
        .collect()
}

/// README's `study_tables.py --readme` commands: its study tables.
fn readme_table_commands(readme: &str) -> Vec<Vec<String>> {
    readme_commands(readme, "study_tables.py")
        .into_iter()
        .filter(|args| args.iter().any(|a| a == "--readme"))
        .collect()
}

/// The script's output for `args`, run from the crate's root.
fn study_table(args: &[String]) -> String {
    script("study_tables.py", args)
}

/// `scripts/<name>`'s output for `args`, run from the crate's root.
fn script(name: &str, args: &[String]) -> String {
    let out = Command::new("python3")
        .arg(Path::new("scripts").join(name))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("python3 runs (the study scripts need it)");
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The cells of the table row whose label is `label`, after the label and
/// the base column.
fn row<'a>(table: &'a str, label: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {label} |")))
        .unwrap_or_else(|| panic!("no row {label:?} in\n{table}"));
    let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
    cells[2..].to_vec()
}

#[test]
fn readme_holds_the_scripts_tables_of_the_committed_results() {
    let readme = include_str!("../README.md");
    let commands = readme_table_commands(readme);
    for part in [CHAIN, GSM] {
        assert!(
            commands.iter().any(|args| args.iter().any(|a| a == part)),
            "README names no study table of {part}: {commands:?}"
        );
    }
    for args in &commands {
        let table = study_table(args);
        assert!(table.lines().count() > 8, "{args:?} gave\n{table}");
        assert!(
            readme.contains(table.trim_end()),
            "README's table for {args:?} is not the script's output; paste it:\n{table}"
        );
    }
    // the evaluations' tables README shows from committed `--save` files
    for args in readme_commands(readme, "study_evals.py") {
        if !args[0].ends_with(".json") {
            continue; // a study's directory, not committed
        }
        let table = script("study_evals.py", &args);
        assert!(
            readme.contains(table.trim()),
            "README's table for study_evals.py {args:?} is not the script's output:\n{table}"
        );
    }
}

#[test]
fn the_scripts_figures_are_the_crates_summary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(CHAIN)).expect("committed results");
    let comparison: Comparison = serde_json::from_str(&text).expect("a compare.json");
    let table = study_table(&[CHAIN.into(), "--readme".into(), "exact_match".into()]);
    let summary = &comparison.summary;
    assert_eq!(summary.len(), 6);
    let aurac = row(&table, "**AURAC** (log2)");
    let ranks = &summary[0].ranks;
    for (i, s) in summary.iter().enumerate() {
        assert_eq!(s.metric, "exact_match");
        assert_eq!(
            aurac[i].trim_matches('*'),
            format!("{:.1} ± {:.1}", s.aurac_log2_mean, s.aurac_log2_std),
            "{}",
            s.label()
        );
        for (r, k) in ranks.iter().enumerate() {
            assert_eq!(
                row(&table, &k.to_string())[i],
                format!("{:.1} ± {:.1}", s.accuracy_mean[r], s.accuracy_std[r])
            );
        }
        let Some(gaps) = &s.gap_to_grid else {
            assert_eq!(s.label(), "lora-grid");
            continue;
        };
        let pair = comparison
            .pairs
            .iter()
            .find(|p| p.a == s.label() && p.b == "lora-grid")
            .expect("a pair against the grid");
        for (r, k) in ranks.iter().enumerate() {
            let (lo, hi) = pair.per_rank[r].ci95.expect("three seeds");
            assert_eq!(
                row(&table, &format!("gap to grid, k = {k}"))[i],
                format!("{:+.1} [{lo:+.1}, {hi:+.1}]", gaps[r]),
                "{} at k = {k}",
                s.label()
            );
        }
    }
    // the best AURAC is the bold one
    let bold: Vec<&str> = aurac
        .iter()
        .copied()
        .filter(|c| c.starts_with("**"))
        .collect();
    assert_eq!(bold, vec!["**43.6 ± 0.3**"]);
}

/// Writes an evaluation's `report.json` (what `mlora eval --out` writes, the
/// fields the script reads) into `dir`.
fn eval_report(dir: &Path, lr: f64, ranks: &[usize], exact_match: &[f64], loss: &[f64]) {
    std::fs::create_dir_all(dir).unwrap();
    let report = serde_json::json!({
        "ranks": ranks, "exact_match": exact_match, "loss": loss, "config": {"lr": lr},
    });
    std::fs::write(dir.join("report.json"), report.to_string()).unwrap();
}

#[test]
fn study_evals_assembles_the_grid_per_rank_and_reads_back_what_it_saves() {
    let tmp = common::temp_dir("study-evals");
    let evals = tmp.join("originals");
    let lora = evals.join("lora/seed-1/lr-1e-2");
    eval_report(
        &lora,
        1e-2,
        &[1, 2, 4],
        &[10.0, 20.0, 40.0],
        &[1.5, 1.25, 1.0],
    );
    for (k, em) in [(1, 30.0), (2, 35.0), (4, 50.0)] {
        let run = evals.join(format!("lora-grid/seed-1/rank-{k}/lr-1e-3"));
        eval_report(&run, 1e-3, &[k], &[em], &[2.0]);
    }
    let saved = tmp.join("saved.json");
    let args = |source: &Path, save: bool| {
        let mut args = vec![
            source.display().to_string(),
            "--series".into(),
            "exact_match,loss".into(),
        ];
        if save {
            args.extend(["--save".into(), saved.display().to_string()]);
        }
        args
    };
    let table = script("study_evals.py", &args(&evals, true));
    let lines: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(lines[0], "| k | lora (lr 1e-2) | lora-grid (lr 1e-3) |");
    assert_eq!(lines[1], "| 1 | 10.0 | 30.0 |");
    assert_eq!(lines[3], "| 4 | 40.0 | 50.0 |");
    // AURAC (log2): (10 + 20) / 2 and (20 + 40) / 2 over two octaves: 22.5;
    // the grid's (30 + 35) / 2 and (35 + 50) / 2: 37.5
    assert_eq!(lines[4], "| AURAC | 22.5 | 37.5 |");
    assert_eq!(lines[6], "| 1 | 1.500 | 2.000 |");
    assert_eq!(script("study_evals.py", &args(&saved, false)), table);
}

/// `study_status.py STUDY` counts a comparison part's runs and an evaluation
/// part's `mlora eval --out` runs, and adds up their hours.
#[test]
fn study_status_counts_comparisons_and_evaluations() {
    let study = common::temp_dir("study-status");
    let write = |path: &Path, value: serde_json::Value| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, value.to_string()).unwrap();
    };
    let plan = serde_json::json!({
        "plan": {"lrs": [1e-3, 1e-2], "seeds": [1], "methods": ["lora", "matryoshka-exact"]},
        "config": {"ranks": [1, 2, 4]},
    });
    write(&study.join("gsm/compare-plan.json"), plan);
    // lora's two runs finished (36 s of training + 18 s of evaluation each),
    // matryoshka-exact's not started: 2 of 2 + 3 x 2 LoRA-run equivalents
    for lr in ["1e-3", "1e-2"] {
        let run = study.join(format!("gsm/lora/seed-1/lr-{lr}"));
        write(
            &run.join("report.json"),
            serde_json::json!({"ms_per_step": 1000.0, "train_steps": 36, "eval_seconds": 18.0}),
        );
        write(&run.join("compared.json"), serde_json::json!({}));
    }
    // an evaluation part: two `mlora eval --out` runs of 90 s each
    for method in ["lora", "lora-grid/seed-1/rank-2"] {
        write(
            &study.join(format!("originals/{method}/seed-1/lr-1e-3/report.json")),
            serde_json::json!({"eval_seconds": 90.0}),
        );
    }
    let text = script("study_status.py", &[study.display().to_string()]);
    assert!(
        text.contains("work 2 / 8 LoRA-run equivalents (25 %)"),
        "{text}"
    );
    assert!(
        text.contains("lora                   2 /   2 runs (x1), 0.9 min per run"),
        "{text}"
    );
    assert!(
        text.contains("originals: 2 evaluations finished, 0.05 h"),
        "{text}"
    );
    // 2 x 54 s + 2 x 90 s = 288 s
    assert!(
        text.contains(": 0.08 h in all finished runs and evaluations"),
        "{text}"
    );
}
