//! What the command line prints: the rank x method table and the data summary.

use matryoshka_lora::data::{SftCounts, SftExample, TokenizedExample};
use matryoshka_lora::report::Report;
use matryoshka_lora::tasks::causal_lm::CausalLmMeta;
use matryoshka_lora::tasks::classify::ClassLabels;
use matryoshka_lora::train::{Comparison, MethodSummary, TaskData};

pub fn print_table(reports: &[Report]) {
    let mut header = format!("{:>12}", "rank");
    for r in reports {
        header.push_str(&format!(" | {:>16}", r.method.name()));
    }
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    if let Some(first) = reports.first() {
        for (i, k) in first.ranks.iter().enumerate() {
            let mut line = format!("{k:>12}");
            for r in reports {
                let v = r.curve().get(i).copied().unwrap_or(f64::NAN);
                line.push_str(&format!(" | {v:>15.2}%"));
            }
            println!("{line}");
        }
    }
    println!("{}", "-".repeat(header.len()));
    type Row = (&'static str, fn(&Report) -> String);
    let rows: [Row; 5] = [
        ("AURAC log2", |r| format!("{:.2}%", r.aurac_log2)),
        ("AURAC linear", |r| format!("{:.2}%", r.aurac_linear)),
        ("ms/step", |r| format!("{:.1}", r.ms_per_step)),
        ("eval s", |r| format!("{:.1}", r.eval_seconds)),
        ("smallest k", |r| match &r.smallest_rank_within {
            Some(w) => format!("{} ({:.2}%)", w.rank, w.value),
            None => "-".into(),
        }),
    ];
    for (name, f) in rows {
        let mut line = format!("{name:>12}");
        for r in reports {
            line.push_str(&format!(" | {:>16}", f(r)));
        }
        println!("{line}");
    }
    // the trivial baseline: always the test split's most frequent label
    if let Some(majority) = reports
        .first()
        .and_then(|r| r.data.as_ref())
        .and_then(|d| d.majority_accuracy)
    {
        println!(
            "{:>12} | {:>15.2}%  (always the most frequent test label)",
            "majority", majority
        );
    }
}

/// A one-line summary of a task's prepared data.
pub trait DataSummary {
    /// The line.
    fn summary(&self) -> String;
}

/// The data summary on stderr.
pub fn print_data(data: &impl DataSummary) {
    eprintln!("{}", data.summary());
}

impl DataSummary for TaskData<SftExample, CausalLmMeta> {
    /// Rows and scored tokens per split, and what truncation did.
    fn summary(&self) -> String {
        let split = |examples: &[SftExample], counts: &SftCounts| {
            let tokens: usize = examples.iter().map(SftExample::target_count).sum();
            let mut s = format!("{} rows ({tokens} response tokens", examples.len());
            if counts.truncated > 0 {
                s.push_str(&format!(", {} cut by --max-len", counts.truncated));
            }
            if counts.dropped > 0 {
                s.push_str(&format!(
                    ", {} left out: --max-len removed their whole response",
                    counts.dropped
                ));
            }
            s + ")"
        };
        format!(
            "data: train {}, test {}",
            split(&self.train, &self.meta.train_counts),
            split(&self.test, &self.meta.test_counts)
        )
    }
}

impl DataSummary for TaskData<TokenizedExample, ClassLabels> {
    /// The rows of each split per label, and the rows dropped.
    fn summary(&self) -> String {
        let data = self;
        let split = |examples: &[TokenizedExample]| {
            let counts = data.meta.counts(examples);
            let per_label: Vec<String> = data
                .meta
                .names
                .iter()
                .zip(counts)
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            format!("{} ({})", examples.len(), per_label.join(", "))
        };
        let dropped = match data.meta.dropped {
            0 => String::new(),
            n => format!("; {n} rows with other labels dropped"),
        };
        format!(
            "data: train {}, test {}{dropped}",
            split(&data.train),
            split(&data.test)
        )
    }
}

/// The multi-seed table: per rank and method, mean ± std over seeds; AURAC;
/// the chosen learning rates; the paired verdicts.
pub fn print_comparison(c: &Comparison) {
    let width = 19;
    let mut header = format!("{:>12}", "rank");
    for m in &c.summary {
        header.push_str(&format!(" | {:>width$}", m.label()));
    }
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    if let Some(first) = c.summary.first() {
        for (i, k) in first.ranks.iter().enumerate() {
            let mut line = format!("{k:>12}");
            for m in &c.summary {
                let cell = format!("{:.2} ± {:.2}", m.accuracy_mean[i], m.accuracy_std[i]);
                line.push_str(&format!(" | {cell:>width$}"));
            }
            println!("{line}");
        }
    }
    println!("{}", "-".repeat(header.len()));
    let row = |name: &str, f: &dyn Fn(&MethodSummary) -> String| {
        let mut line = format!("{name:>12}");
        for m in &c.summary {
            line.push_str(&format!(" | {:>width$}", f(m)));
        }
        println!("{line}");
    };
    row("AURAC log2", &|m| {
        format!("{:.2} ± {:.2}", m.aurac_log2_mean, m.aurac_log2_std)
    });
    row("AURAC lin", &|m| {
        format!("{:.2} ± {:.2}", m.aurac_linear_mean, m.aurac_linear_std)
    });
    row("smallest k", &|m| match &m.smallest_rank_within {
        Some(w) => format!("{} ({:.2}%)", w.rank, w.value),
        None => "-".into(),
    });
    if c.summary.iter().any(|m| m.gap_to_grid.is_some()) {
        // the mean gap over ranks, and the worst rank's
        row("gap to grid", &|m| match &m.gap_to_grid {
            Some(gap) if !gap.is_empty() => {
                let mean = gap.iter().sum::<f64>() / gap.len() as f64;
                let (worst, at) =
                    gap.iter()
                        .zip(&m.ranks)
                        .fold(
                            (f64::INFINITY, 0),
                            |(w, k), (&g, &r)| {
                                if g < w { (g, r) } else { (w, k) }
                            },
                        );
                format!("{mean:+.2} ({worst:+.2}@{at})")
            }
            _ => "-".into(),
        });
        row("cost vs grid", &|m| match m.cost_vs_grid {
            Some(x) => format!("{x:.2}x"),
            None => "-".into(),
        });
    }
    row("lr chosen", &|m| {
        let lrs = |lrs: &[f64]| {
            lrs.iter()
                .map(|lr| format!("{lr:e}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        match &m.grid_lrs {
            // per seed, the learning rate of each rank
            Some(grid) => grid.iter().map(|l| lrs(l)).collect::<Vec<_>>().join(";"),
            None => lrs(&m.lrs),
        }
    });
    // the trivial baseline of the test split the chosen runs were measured on
    if let Some(majority) = c
        .runs
        .iter()
        .filter(|r| r.chosen)
        .find_map(|r| r.report.data.as_ref().and_then(|d| d.majority_accuracy))
    {
        println!(
            "{:>12} | {majority:.2}% (always the most frequent test label)",
            "majority"
        );
    }
    println!("seeds {:?}", c.plan.seeds);
    for s in &c.skipped {
        let rank = s.rank.map(|k| format!(" rank {k}")).unwrap_or_default();
        println!(
            "left out (diverged): {} ({}) seed {}{rank} lr {:e} on {}: {}",
            s.method, s.head_mode, s.seed, s.lr, s.split, s.reason
        );
    }
    for pair in &c.pairs {
        println!("{}", pair.verdict);
    }
}
