//! README's study tables are `scripts/study_tables.py --readme` run on the
//! committed results (`benches/results/`), and that script's figures are
//! the crate's own: its AURAC and per-rank means are the comparison
//! summary's, its gaps to the grid and their 95 % t-intervals the
//! summary's `gap_to_grid` and `pairs`.

use matryoshka_lora::train::Comparison;
use std::path::Path;
use std::process::Command;

const CHAIN: &str = "benches/results/llm_chain_2026-12-04.json";

/// The arguments of every `` `python3 scripts/study_tables.py ... --readme ...` ``
/// command README names (a command may wrap over lines).
fn readme_table_commands(readme: &str) -> Vec<Vec<String>> {
    readme
        .split("`python3 scripts/study_tables.py ")
        .skip(1)
        .filter_map(|rest| rest.split('`').next())
        .map(|command| {
            command
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|args| args.iter().any(|a| a == "--readme"))
        .collect()
}

/// The script's output for `args`, run from the crate's root.
fn study_table(args: &[String]) -> String {
    let out = Command::new("python3")
        .arg("scripts/study_tables.py")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("python3 runs (the study scripts need it)");
    assert!(
        out.status.success(),
        "study_tables.py {args:?}: {}",
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
    assert!(
        commands.iter().any(|args| args.iter().any(|a| a == CHAIN)),
        "README names no study table of {CHAIN}: {commands:?}"
    );
    for args in &commands {
        let table = study_table(args);
        assert!(table.lines().count() > 8, "{args:?} gave\n{table}");
        assert!(
            readme.contains(table.trim_end()),
            "README's table for {args:?} is not the script's output; paste it:\n{table}"
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
