//! `mlora`: train, evaluate and compare MatryoshkaLoRA / LoRA / DyLoRA on text
//! classification, and plot rank-accuracy curves.

use clap::{Args, Parser, Subcommand};
use matryoshka_lora::checkpoint::{ADAPTER_FILE, load_adapter};
use matryoshka_lora::experiment::{
    PreparedData, RunError, build_classifier, evaluate_ranks, prepare_data, run, save_outputs,
    save_plots,
};
use matryoshka_lora::report::{Report, RunConfig, peak_rss_mb};
use matryoshka_lora::{BackendKind, RankSet, aurac_both};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "mlora",
    version,
    about = "MatryoshkaLoRA on burn: train once, deploy any nested rank"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fine-tune with one method, evaluate every rank, write report/adapter/plot.
    Train {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Per-rank accuracy and AURAC of a saved adapter (`--adapter DIR` from `train --out`).
    Eval {
        /// Directory written by `mlora train --out`.
        #[arg(long)]
        adapter: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Evaluation batch size.
        #[arg(long, default_value_t = 128)]
        eval_batch: usize,
        /// Backend: flex, ndarray, wgpu or cuda.
        #[arg(long, default_value = "flex")]
        backend: String,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Train lora, dylora and matryoshka (and matryoshka-exact with --exact) on the
    /// same data and print the rank x method table with each AURAC.
    Compare {
        #[command(flatten)]
        run: RunArgs,
        /// Also run the exact Matryoshka objective.
        #[arg(long)]
        exact: bool,
        /// Methods to compare (overrides the default list).
        #[arg(long, value_delimiter = ',')]
        methods: Option<Vec<String>>,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Speed benchmarks (BENCHMARKS.md has the commands and figures).
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Plot rank (log2 axis) against accuracy for report.json files.
    Plot {
        /// report.json files (or compare.json arrays).
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Output .png or .svg.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// RT protocol: `--warmup` + `--steps` training steps (batch 32, the RT
    /// settings), then the full evaluation at every rank; prints ms/step (after
    /// warm-up), eval seconds and peak RSS.
    Rt(BenchRtArgs),
}

#[derive(Args, Clone)]
struct BenchRtArgs {
    /// Timed training steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// lora, dylora, matryoshka or matryoshka-exact.
    #[arg(long, default_value = "matryoshka")]
    method: String,
    /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
    #[arg(long, default_value = "flex")]
    backend: String,
    /// Model directory (the fetched assets).
    #[arg(long, default_value = "assets")]
    model: PathBuf,
    /// Test rows evaluated at every rank (PROTOCOL.md: 1000).
    #[arg(long, default_value_t = 1000)]
    test_n: usize,
    /// Keep only the first N encoder layers.
    #[arg(long)]
    layers: Option<usize>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// What `mlora bench rt` measured.
#[derive(serde::Serialize)]
struct RtBenchResult {
    bench: &'static str,
    method: String,
    backend: String,
    threads: usize,
    warmup: usize,
    steps: usize,
    batch: usize,
    test_rows: usize,
    ranks: Vec<usize>,
    /// Mean wall ms of the timed steps.
    ms_per_step: f64,
    /// Mean wall ms over every step, warm-up included (what torch_rt.py reports).
    ms_per_step_all: f64,
    /// Wall seconds of the evaluation at every rank.
    eval_seconds: f64,
    peak_rss_mb: f64,
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Model directory: config.json, model.safetensors, tokenizer.json.
    #[arg(long, default_value = "assets")]
    model: PathBuf,
    /// CSV data file (plain or .bz2). Default: the Rotten Tomatoes file in --model's
    /// directory, with labels rotten,fresh.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Separate test CSV (instead of the --test-every split).
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Text column.
    #[arg(long, default_value = "text")]
    text_col: String,
    /// Label column.
    #[arg(long, default_value = "category")]
    label_col: String,
    /// Label set, comma-separated; label id = position; other rows dropped.
    /// Default: sorted distinct values (rotten,fresh for the default data).
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<String>>,
    /// Row i is test if i % N == 0.
    #[arg(long, default_value_t = 5)]
    test_every: usize,
    /// First N train rows (default: 4000 for the default RT data, else all).
    #[arg(long)]
    train_n: Option<usize>,
    /// First N test rows (default: 1000 for the default RT data, else all).
    #[arg(long)]
    test_n: Option<usize>,
    /// Truncate to this many tokens.
    #[arg(long, default_value_t = 48)]
    max_len: usize,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    data: DataArgs,
    /// lora, dylora, matryoshka or matryoshka-exact.
    #[arg(long, default_value = "matryoshka")]
    method: String,
    /// joint (head and adapters together) or probe (linear-probe epoch, then adapters only).
    #[arg(long, default_value = "joint")]
    head_mode: String,
    /// Maximum rank R.
    #[arg(long, default_value_t = 32)]
    rank: usize,
    /// Nested ranks S, ascending (default: powers of two up to R).
    #[arg(long, value_delimiter = ',')]
    ranks: Option<Vec<usize>>,
    /// none, rank, sqrt or alpha:A.
    #[arg(long, default_value = "sqrt")]
    scaling: String,
    /// Adapter targets (Hugging Face module names), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "query,key,value,attention.output.dense,intermediate.dense,output.dense"
    )]
    targets: Vec<String>,
    /// Keep only the first N encoder layers (quick runs).
    #[arg(long)]
    layers: Option<usize>,
    /// Peak learning rate (linear decay to 0).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Gradient-norm clip (0 = off).
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f32,
    /// Training batch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 128)]
    eval_batch: usize,
    /// Epochs.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Seed (initialisation, shuffling, DyLoRA draws).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
    #[arg(long, default_value = "flex")]
    backend: String,
}

#[derive(Args, Clone)]
struct OutArgs {
    /// Output directory: adapter checkpoint, report.json, curve.png/svg.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar or table.
    #[arg(long)]
    quiet: bool,
    /// Print the report as JSON on stdout (implies --quiet progress).
    #[arg(long)]
    json: bool,
}

/// A CLI failure: bad input exits 2, failures while running exit 1.
struct Failure {
    code: u8,
    message: String,
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        use matryoshka_lora::AdapterError as A;
        use matryoshka_lora::bert::LoadError as L;
        use matryoshka_lora::data::DataError as D;
        let (code, flag) = match &e {
            RunError::Adapter(A::BackendUnavailable { .. } | A::UnknownBackend(_)) => {
                (2, "--backend: ")
            }
            RunError::Adapter(A::InvalidTargets(_) | A::NoTargetMatched { .. }) => {
                (2, "--targets: ")
            }
            RunError::Adapter(A::InvalidValue { .. }) => (2, "--scaling: "),
            RunError::Adapter(_) => (2, "--rank/--ranks: "),
            RunError::Load(
                L::MissingDir(_)
                | L::Config { .. }
                | L::NotSafetensors { .. }
                | L::MissingTensor { .. }
                | L::WrongShape { .. }
                | L::UnsupportedDtype { .. }
                | L::Io { .. },
            ) => (2, "--model: "),
            RunError::Load(L::Tokenizer { .. }) => (2, "--model/--max-len: "),
            RunError::Data(D::Io { .. } | D::NoRows { .. }) => (2, "--data: "),
            RunError::Data(D::EmptyLabels) => (2, "--labels: "),
            RunError::Data(D::BadSplit(_)) => (2, "--test-every: "),
            RunError::Data(_) => (2, ""),
            RunError::Invalid(_) => (2, ""),
            RunError::Fit(_) | RunError::Write { .. } => (1, ""),
        };
        Failure {
            code,
            message: format!("{flag}{e}"),
        }
    }
}

fn bad(message: String) -> Failure {
    Failure { code: 2, message }
}

impl DataArgs {
    fn fill(&self, config: &mut RunConfig) {
        config.model = self.model.display().to_string();
        // `--labels ""` is an empty label set, not a label named "".
        let labels = self.labels.clone().map(|l| {
            l.into_iter()
                .filter(|s| !s.trim().is_empty())
                .collect::<Vec<_>>()
        });
        match &self.data {
            Some(data) => {
                config.data = data.display().to_string();
                config.labels = labels;
            }
            None => {
                config.data = self
                    .model
                    .join("rotten_tomatoes_corpus_full.csv.bz2")
                    .display()
                    .to_string();
                config.labels = labels.or(Some(vec!["rotten".into(), "fresh".into()]));
            }
        }
        config.test_data = self.test_data.as_ref().map(|p| p.display().to_string());
        config.text_col = self.text_col.clone();
        config.label_col = self.label_col.clone();
        config.test_every = self.test_every;
        // The RT protocol's default sizes apply to its own data only; a user's
        // --data is used in full unless capped.
        let (train_n, test_n) = if self.data.is_none() {
            (Some(4000), Some(1000))
        } else {
            (None, None)
        };
        config.train_n = self.train_n.or(train_n);
        config.test_n = self.test_n.or(test_n);
        config.max_len = self.max_len;
    }
}

impl RunArgs {
    fn config(&self) -> Result<RunConfig, Failure> {
        let mut c = RunConfig::rt_protocol(Path::new("assets"));
        self.data.fill(&mut c);
        c.method = self.method.clone();
        c.head_mode = self.head_mode.clone();
        c.rank = self.rank;
        c.ranks = match &self.ranks {
            Some(r) => r.clone(),
            None => RankSet::powers_of_two(self.rank)
                .map_err(|e| bad(format!("--rank: {e}")))?
                .ranks()
                .to_vec(),
        };
        c.scaling = self.scaling.clone();
        c.targets = self.targets.clone();
        c.layers = self.layers;
        c.lr = self.lr;
        c.weight_decay = self.weight_decay;
        c.warmup_steps = self.warmup;
        c.grad_clip = (self.grad_clip > 0.0).then_some(self.grad_clip);
        c.batch = self.batch;
        c.eval_batch = self.eval_batch;
        c.epochs = self.epochs;
        c.seed = self.seed;
        c.backend = self.backend.clone();
        validated(c)
    }
}

/// `config` once it validates; otherwise the error naming the flag at fault.
fn validated(config: RunConfig) -> Result<RunConfig, Failure> {
    config.validate().map_err(|e| match e {
        RunError::Invalid(msg) if msg.contains("unknown method") => bad(format!("--method: {msg}")),
        RunError::Invalid(msg) if msg.contains("unknown head mode") => {
            bad(format!("--head-mode: {msg}"))
        }
        RunError::Invalid(msg) if msg.contains("unknown scaling") => {
            bad(format!("--scaling: {msg}"))
        }
        other => other.into(),
    })?;
    Ok(config)
}

/// Refuses an --out that is an existing file, before any work.
fn check_out(out: &OutArgs) -> Result<(), Failure> {
    if let Some(dir) = &out.out
        && dir.exists()
        && !dir.is_dir()
    {
        return Err(bad(format!(
            "--out: {} exists and is not a directory",
            dir.display()
        )));
    }
    Ok(())
}

fn print_table(reports: &[Report]) {
    let mut header = format!("{:>12}", "rank");
    for r in reports {
        header.push_str(&format!(" | {:>16}", r.method));
    }
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    if let Some(first) = reports.first() {
        for (i, k) in first.ranks.iter().enumerate() {
            let mut line = format!("{k:>12}");
            for r in reports {
                line.push_str(&format!(
                    " | {:>15.2}%",
                    r.accuracy.get(i).copied().unwrap_or(f64::NAN)
                ));
            }
            println!("{line}");
        }
    }
    println!("{}", "-".repeat(header.len()));
    type Row = (&'static str, fn(&Report) -> String);
    let rows: [Row; 4] = [
        ("AURAC log2", |r| format!("{:.2}%", r.aurac_log2)),
        ("AURAC linear", |r| format!("{:.2}%", r.aurac_linear)),
        ("ms/step", |r| format!("{:.1}", r.ms_per_step)),
        ("eval s", |r| format!("{:.1}", r.eval_seconds)),
    ];
    for (name, f) in rows {
        let mut line = format!("{name:>12}");
        for r in reports {
            line.push_str(&format!(" | {:>16}", f(r)));
        }
        println!("{line}");
    }
}

fn train_cmd(run_args: RunArgs, out: OutArgs) -> Result<(), Failure> {
    let config = run_args.config()?;
    check_out(&out)?;
    let data = prepare_data(&config)?;
    let quiet = out.quiet || out.json;
    let outcome = run(&config, &data, quiet)?;
    if let Some(dir) = &out.out {
        save_outputs(dir, &outcome.report, Some(outcome.model))?;
    }
    if out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome.report).unwrap_or_default()
        );
    } else if !out.quiet {
        print_table(std::slice::from_ref(&outcome.report));
    }
    Ok(())
}

fn compare_cmd(
    run_args: RunArgs,
    exact: bool,
    methods: Option<Vec<String>>,
    out: OutArgs,
) -> Result<(), Failure> {
    let base = run_args.config()?;
    check_out(&out)?;
    let mut methods =
        methods.unwrap_or_else(|| vec!["lora".into(), "dylora".into(), "matryoshka".into()]);
    if exact && !methods.iter().any(|m| m == "matryoshka-exact") {
        methods.push("matryoshka-exact".into());
    }
    let configs: Vec<RunConfig> = methods
        .iter()
        .map(|m| {
            let mut c = base.clone();
            c.method = m.clone();
            c.validate()
                .map(|_| c)
                .map_err(|e| bad(format!("--methods: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let data: PreparedData = prepare_data(&base)?;
    let quiet = out.quiet || out.json;
    let mut reports = Vec::new();
    let mut models = Vec::new();
    for c in &configs {
        let outcome = run(c, &data, quiet)?;
        if !quiet {
            eprintln!(
                "{}: AURAC log2 {:.2}%, {:.1} ms/step",
                c.method, outcome.report.aurac_log2, outcome.report.ms_per_step
            );
        }
        reports.push(outcome.report);
        models.push(outcome.model);
    }
    if let Some(dir) = &out.out {
        for (report, model) in reports.iter().zip(models) {
            save_outputs(&dir.join(&report.method), report, Some(model))?;
        }
        let json = serde_json::to_vec_pretty(&reports).unwrap_or_default();
        let path = dir.join("compare.json");
        matryoshka_lora::checkpoint::write_atomic(&path, &json).map_err(|e| Failure {
            code: 1,
            message: format!("cannot write {}: {e}", path.display()),
        })?;
        save_plots(dir, &reports)?;
    }
    if out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        );
    } else if !out.quiet {
        print_table(&reports);
        println!(
            "total {:.1} s, peak RSS {:.0} MiB",
            started.elapsed().as_secs_f64(),
            peak_rss_mb()
        );
    }
    Ok(())
}

fn eval_cmd(
    adapter: PathBuf,
    data_args: DataArgs,
    eval_batch: usize,
    backend: String,
    json: bool,
) -> Result<(), Failure> {
    let report_path = adapter.join("report.json");
    let text = std::fs::read_to_string(&report_path).map_err(|e| {
        bad(format!(
            "--adapter: cannot read {}: {e}",
            report_path.display()
        ))
    })?;
    let saved: Report = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "--adapter: {} is not a report: {e}",
            report_path.display()
        ))
    })?;
    let mut config = saved.config.clone();
    data_args.fill(&mut config);
    config.eval_batch = eval_batch;
    config.backend = backend;
    config.validate()?;
    let backend: BackendKind = config
        .backend
        .parse()
        .map_err(|e| bad(format!("--backend: {e}")))?;
    let device = backend
        .device()
        .map_err(|e| bad(format!("--backend: {e}")))?;
    let data = prepare_data(&config)?;
    let labels = saved
        .config
        .labels
        .clone()
        .map(|l| l.len())
        .unwrap_or(data.labels.len());
    if labels != data.labels.len() {
        return Err(bad(format!(
            "--labels: the adapter was trained with {labels} classes, this data has {}",
            data.labels.len()
        )));
    }
    let model = build_classifier(&config, labels, &device)?;
    let model = load_adapter(model, &adapter.join(ADAPTER_FILE))
        .map_err(|e| bad(format!("--adapter: {e}")))?;
    let t0 = Instant::now();
    let (accuracy, loss) = evaluate_ranks(&model, &config.ranks, &data.test, eval_batch, &device)?;
    let eval_seconds = t0.elapsed().as_secs_f64();
    let (aurac_log2, aurac_linear) = aurac_both(&config.ranks, &accuracy).map_err(|e| Failure {
        code: 1,
        message: e.to_string(),
    })?;
    let report = Report {
        accuracy,
        loss,
        aurac_log2,
        aurac_linear,
        eval_seconds,
        peak_rss_mb: peak_rss_mb(),
        config,
        ..saved
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_table(std::slice::from_ref(&report));
    }
    Ok(())
}

fn bench_rt_cmd(args: BenchRtArgs) -> Result<(), Failure> {
    if args.steps == 0 {
        return Err(bad("--steps must be at least 1".into()));
    }
    let mut config = RunConfig::rt_protocol(&args.model);
    config.method = args.method.clone();
    config.backend = args.backend.clone();
    config.layers = args.layers;
    config.train_n = Some(config.batch * (args.steps + args.warmup));
    config.test_n = Some(args.test_n);
    let config = validated(config)?;
    let data = prepare_data(&config)?;
    let outcome = run(&config, &data, true)?;
    let ms_per_step = outcome
        .times
        .steady_ms_per_step(args.warmup)
        .ok_or_else(|| Failure {
            code: 1,
            message: "no timed training steps were recorded".into(),
        })?;
    let result = RtBenchResult {
        bench: "rt",
        method: outcome.report.method.clone(),
        backend: config.backend.clone(),
        // The CPU backends and the fused kernels share rayon's global pool.
        threads: rayon::current_num_threads(),
        warmup: args.warmup,
        steps: args.steps,
        batch: config.batch,
        test_rows: data.test.len(),
        ranks: config.ranks.clone(),
        ms_per_step,
        ms_per_step_all: outcome.times.steady_ms_per_step(0).unwrap_or(f64::NAN),
        eval_seconds: outcome.report.eval_seconds,
        peak_rss_mb: outcome.report.peak_rss_mb,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    } else {
        println!(
            "rt {} on {}: {:.1} ms/step ({} steps after {} warm-up), eval of {} rows at {} ranks {:.2} s, peak RSS {:.0} MiB",
            result.method,
            result.backend,
            result.ms_per_step,
            result.steps,
            result.warmup,
            result.test_rows,
            result.ranks.len(),
            result.eval_seconds,
            result.peak_rss_mb
        );
    }
    Ok(())
}

fn plot_cmd(paths: Vec<PathBuf>, output: PathBuf) -> Result<(), Failure> {
    let mut reports = Vec::new();
    for p in &paths {
        let text = std::fs::read_to_string(p)
            .map_err(|e| bad(format!("cannot read {}: {e}", p.display())))?;
        match serde_json::from_str::<Vec<Report>>(&text) {
            Ok(many) => reports.extend(many),
            Err(_) => reports.push(
                serde_json::from_str::<Report>(&text)
                    .map_err(|e| bad(format!("{} is not a report.json: {e}", p.display())))?,
            ),
        }
    }
    matryoshka_lora::plot::plot_reports(&reports, &output).map_err(|e| bad(format!("-o: {e}")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train { run, out } => train_cmd(run, out),
        Command::Compare {
            run,
            exact,
            methods,
            out,
        } => compare_cmd(run, exact, methods, out),
        Command::Eval {
            adapter,
            data,
            eval_batch,
            backend,
            json,
        } => eval_cmd(adapter, data, eval_batch, backend, json),
        Command::Bench {
            which: BenchCommand::Rt(args),
        } => bench_rt_cmd(args),
        Command::Plot { reports, output } => plot_cmd(reports, output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message.replace('\n', " "));
            ExitCode::from(f.code)
        }
    }
}
