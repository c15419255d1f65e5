//! `mlora`: train, evaluate and compare MatryoshkaLoRA / LoRA / DyLoRA on text
//! classification, and plot rank-accuracy curves.
//!
//! A thin layer over the library: clap definitions, the flag-to-settings
//! mapping (and back, for errors) in one place, printing.

use burn::train::Interrupter;
use clap::{Args, Parser, Subcommand};
use matryoshka_lora::BackendKind;
use matryoshka_lora::data::TokenizedExample;
use matryoshka_lora::io::{
    ADAPTER_FILE, MergeError, PeftError, REPORT_FILE, ensure_writable_dir, export_peft,
    merge_adapter, read_meta, read_peft,
};
use matryoshka_lora::report::{Report, RunConfig};
use matryoshka_lora::tasks::classify::{ClassLabels, ClassifyConfig, ClassifyTask, RtBench};
use matryoshka_lora::train::{
    FitError, HeadMode, RunError, Runner, Setting, Task, TaskData, TrainConfig, TrainMethod,
    TrainingState,
};
use matryoshka_lora::{RankSet, Scaling};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "mlora",
    version,
    about = "MatryoshkaLoRA on burn: train once, deploy any nested rank",
    args_override_self = true
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
        /// Continue the interrupted run in DIR (its --out) from its last
        /// checkpoint, with the settings it was started with.
        #[arg(long, value_name = "DIR", conflicts_with_all = RUN_FLAGS)]
        resume: Option<PathBuf>,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Per-rank accuracy and AURAC of a saved run (`--adapter DIR` from `train --out`),
    /// with the settings it was trained with; a flag given here overrides one.
    Eval {
        /// Directory written by `mlora train --out`.
        #[arg(long)]
        adapter: PathBuf,
        #[command(flatten)]
        data: EvalDataArgs,
        /// Evaluation batch size.
        #[arg(long)]
        eval_batch: Option<usize>,
        /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
        #[arg(long)]
        backend: Option<BackendKind>,
        #[command(flatten)]
        print: PrintArgs,
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
        methods: Option<Vec<TrainMethod>>,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Merge a saved adapter at rank k into its base model: a complete Hugging
    /// Face model directory (weights `W + s(k) A[:, :k] B[:k]`, dtypes kept).
    Merge {
        /// Directory written by `mlora train --out`.
        #[arg(long)]
        adapter: PathBuf,
        /// The rank to merge.
        #[arg(long)]
        rank: usize,
        /// The merged model's directory.
        #[arg(long)]
        out: PathBuf,
        /// The base model [default: the one the adapter was trained on].
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        print: PrintArgs,
    },
    /// Export a saved adapter at rank k as a Hugging Face PEFT LoRA adapter
    /// (adapter_config.json + adapter_model.safetensors).
    Export {
        /// Directory written by `mlora train --out`.
        #[arg(long)]
        adapter: PathBuf,
        /// The rank to export (PEFT's r).
        #[arg(long)]
        rank: usize,
        /// The PEFT adapter's directory.
        #[arg(long)]
        peft: PathBuf,
        /// `base_model_name_or_path` to record [default: the model the adapter was trained on].
        #[arg(long)]
        base_model: Option<String>,
        #[command(flatten)]
        print: PrintArgs,
    },
    /// Import a Hugging Face PEFT LoRA adapter: evaluate it at every nested rank
    /// and save it as a run (a starting point: `train --init-adapter DIR`).
    Import {
        /// The PEFT adapter's directory.
        #[arg(long)]
        peft: PathBuf,
        /// The run's directory (adapter, report, plot).
        #[arg(long)]
        out: PathBuf,
        /// Model (default: the PEFT adapter's base_model_name_or_path when it is a
        /// directory, else assets) and data (default: the Rotten Tomatoes file in it).
        #[command(flatten)]
        data: EvalDataArgs,
        /// The method of further training from it (sets P).
        #[arg(long, default_value_t = DEFAULTS.method)]
        method: TrainMethod,
        /// The scaling rule of the imported adapter's nested ranks.
        #[arg(long, default_value_t = DEFAULTS.scaling)]
        scaling: Scaling,
        /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
        #[arg(long, default_value_t = DEFAULTS.backend)]
        backend: BackendKind,
        #[command(flatten)]
        print: PrintArgs,
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
        #[command(flatten)]
        print: PrintArgs,
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
    /// lora, dylora, dylora-original, matryoshka or matryoshka-exact.
    #[arg(long, default_value_t = DEFAULTS.method)]
    method: TrainMethod,
    /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
    #[arg(long, default_value_t = DEFAULTS.backend)]
    backend: BackendKind,
    /// Model directory (the fetched assets).
    #[arg(long, default_value = "assets")]
    model: PathBuf,
    /// Test rows evaluated at every rank (PROTOCOL.md: 1000).
    #[arg(long, default_value_t = 1000)]
    test_n: usize,
    /// Keep only the first N encoder layers.
    #[arg(long)]
    layers: Option<usize>,
    #[command(flatten)]
    print: PrintArgs,
}

/// The data flags of `train` and `compare`.
#[derive(Args, Clone)]
struct DataArgs {
    /// Model directory: config.json, model.safetensors, tokenizer.json.
    #[arg(long, default_value = "assets")]
    model: PathBuf,
    /// CSV data file (plain or .bz2). Default: the Rotten Tomatoes file in --model's
    /// directory, with labels rotten,fresh and the first 4000/1000 rows.
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    rest: DataOverrides,
}

/// The data flags of `eval`: each overrides the saved setting when given.
#[derive(Args, Clone)]
struct EvalDataArgs {
    /// Model directory [default: the one the adapter was trained on].
    #[arg(long)]
    model: Option<PathBuf>,
    /// CSV data file [default: the one the adapter was trained on].
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    rest: DataOverrides,
}

/// Data flags that override a default (or, for `eval`, a saved setting) when given.
#[derive(Args, Clone, Default)]
struct DataOverrides {
    /// Separate test CSV (instead of the --test-every split).
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Text column [default: text, the RT data's].
    #[arg(long)]
    text_col: Option<String>,
    /// Label column [default: category, the RT data's].
    #[arg(long)]
    label_col: Option<String>,
    /// Label set, comma-separated; label id = position; other rows dropped.
    /// Default: sorted distinct values (rotten,fresh for the default data).
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<String>>,
    /// Row i is test if i % N == 0 [default: the RT protocol's, 5].
    #[arg(long)]
    test_every: Option<usize>,
    /// First N train rows (default: 4000 for the default RT data, else all).
    #[arg(long)]
    train_n: Option<usize>,
    /// First N test rows (default: 1000 for the default RT data, else all).
    #[arg(long)]
    test_n: Option<usize>,
    /// Truncate to this many tokens [default: the RT protocol's, 48].
    #[arg(long)]
    max_len: Option<usize>,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    data: DataArgs,
    /// lora, dylora, dylora-original, matryoshka or matryoshka-exact.
    #[arg(long, default_value_t = DEFAULTS.method)]
    method: TrainMethod,
    /// joint (head and adapters together) or probe (linear-probe epoch, then adapters only).
    #[arg(long, default_value_t = DEFAULTS.head_mode)]
    head_mode: HeadMode,
    /// Maximum rank R.
    #[arg(long, default_value_t = DEFAULTS.rank)]
    rank: usize,
    /// Nested ranks S, ascending (default: powers of two up to R).
    #[arg(long, value_delimiter = ',')]
    ranks: Option<Vec<usize>>,
    /// none, rank, sqrt or alpha:A.
    #[arg(long, default_value_t = DEFAULTS.scaling)]
    scaling: Scaling,
    /// Adapter targets (Hugging Face module names, PEFT-style), comma-separated
    /// [default: the model family's, every encoder linear].
    #[arg(long, value_delimiter = ',')]
    targets: Option<Vec<String>>,
    /// Keep only the first N encoder layers (quick runs).
    #[arg(long)]
    layers: Option<usize>,
    /// Peak learning rate (linear decay to 0).
    #[arg(long, default_value_t = DEFAULTS.lr)]
    lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = DEFAULTS.weight_decay)]
    weight_decay: f32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = DEFAULTS.warmup_steps)]
    warmup: usize,
    /// Gradient-norm clip (0 = off).
    #[arg(long, default_value_t = DEFAULTS.grad_clip.unwrap_or(0.0))]
    grad_clip: f32,
    /// Training batch size.
    #[arg(long, default_value_t = DEFAULTS.batch)]
    batch: usize,
    /// Evaluation batch size.
    #[arg(long, default_value_t = DEFAULTS.eval_batch)]
    eval_batch: usize,
    /// Epochs.
    #[arg(long, default_value_t = DEFAULTS.epochs)]
    epochs: usize,
    /// Seed (initialisation, shuffling, DyLoRA draws).
    #[arg(long, default_value_t = DEFAULTS.seed)]
    seed: u64,
    /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
    #[arg(long, default_value_t = DEFAULTS.backend)]
    backend: BackendKind,
    /// With --out: also checkpoint every N steps (always at each epoch end),
    /// so an interrupted run loses at most N steps (`train --resume DIR`).
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<usize>,
    /// Start from the factors (and head) of a saved adapter, e.g. one made by
    /// `mlora import` (same rank and targets); P is this run's method's.
    #[arg(long, value_name = "DIR")]
    init_adapter: Option<PathBuf>,
}

/// The flags that shape a run, which `--resume` takes from the run itself.
const RUN_FLAGS: [&str; 29] = [
    "model",
    "data",
    "test_data",
    "text_col",
    "label_col",
    "labels",
    "test_every",
    "train_n",
    "test_n",
    "max_len",
    "method",
    "head_mode",
    "rank",
    "ranks",
    "scaling",
    "targets",
    "layers",
    "lr",
    "weight_decay",
    "warmup",
    "grad_clip",
    "batch",
    "eval_batch",
    "epochs",
    "seed",
    "backend",
    "checkpoint_every",
    "init_adapter",
    "out",
];

#[derive(Args, Clone)]
struct PrintArgs {
    /// No progress bar or table.
    #[arg(long)]
    quiet: bool,
    /// Print the report as JSON on stdout (implies --quiet progress).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct OutArgs {
    /// Output directory: adapter checkpoint, report.json, curve.png/svg.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    print: PrintArgs,
}

/// The training defaults (the RT protocol's), shown by `--help`: one place,
/// the library's.
static DEFAULTS: std::sync::LazyLock<TrainConfig> = std::sync::LazyLock::new(TrainConfig::default);

/// A CLI failure: bad input exits 2, failures while running exit 1.
struct Failure {
    code: u8,
    message: String,
}

/// The flag that sets `setting` (its config key when no flag does).
fn flag(setting: Setting) -> &'static str {
    match setting {
        Setting::Targets => "--targets",
        Setting::Method => "--method",
        Setting::HeadMode => "--head-mode",
        Setting::Rank => "--rank",
        Setting::Ranks => "--ranks",
        Setting::Scaling => "--scaling",
        Setting::Lr => "--lr",
        Setting::WeightDecay => "--weight-decay",
        Setting::WarmupSteps => "--warmup",
        Setting::GradClip => "--grad-clip",
        Setting::Batch => "--batch",
        Setting::EvalBatch => "--eval-batch",
        Setting::Epochs => "--epochs",
        Setting::Seed => "--seed",
        Setting::Backend => "--backend",
        Setting::Output => "--out",
        Setting::Task(key) => match key {
            "model" => "--model",
            "data" => "--data",
            "test_data" => "--test-data",
            "text_col" => "--text-col",
            "label_col" => "--label-col",
            "labels" => "--labels",
            "test_every" => "--test-every",
            "train_n" => "--train-n",
            "test_n" => "--test-n",
            "max_len" => "--max-len",
            "layers" => "--layers",
            "adapter" => "--adapter",
            "peft" => "--peft",
            "init_adapter" => "--init-adapter",
            other => other,
        },
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        match e.setting() {
            Some(setting) => bad(flag(setting), e.reason()),
            None => Failure {
                code: 1,
                message: e.to_string(),
            },
        }
    }
}

fn bad(flag: &str, message: impl std::fmt::Display) -> Failure {
    Failure {
        code: 2,
        message: format!("{flag}: {message}"),
    }
}

impl DataOverrides {
    /// Applies the flags given to `c`.
    fn apply(&self, c: &mut ClassifyConfig) {
        if self.test_data.is_some() {
            c.test_data = self.test_data.clone();
        }
        if let Some(v) = &self.text_col {
            c.text_col = v.clone();
        }
        if let Some(v) = &self.label_col {
            c.label_col = v.clone();
        }
        if let Some(labels) = &self.labels {
            // `--labels ""` is an empty label set, not a label named "".
            c.labels = Some(
                labels
                    .iter()
                    .filter(|l| !l.trim().is_empty())
                    .cloned()
                    .collect(),
            );
        }
        if let Some(v) = self.test_every {
            c.test_every = v;
        }
        if self.train_n.is_some() {
            c.train_n = self.train_n;
        }
        if self.test_n.is_some() {
            c.test_n = self.test_n;
        }
        if let Some(v) = self.max_len {
            c.max_len = v;
        }
    }
}

impl RunArgs {
    /// The task's and the training settings these flags give.
    fn settings(&self) -> Result<(ClassifyConfig, TrainConfig), Failure> {
        let mut task = ClassifyConfig::new(&self.data.model, self.data.data.clone());
        self.data.rest.apply(&mut task);
        task.layers = self.layers;
        let ranks = match &self.ranks {
            Some(r) => r.clone(),
            None => RankSet::powers_of_two(self.rank)
                .map_err(|e| bad("--rank", e))?
                .ranks()
                .to_vec(),
        };
        let train = TrainConfig {
            targets: self.targets.clone(),
            method: self.method,
            head_mode: self.head_mode,
            rank: self.rank,
            ranks,
            scaling: self.scaling,
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup_steps: self.warmup,
            grad_clip: (self.grad_clip != 0.0).then_some(self.grad_clip),
            batch: self.batch,
            eval_batch: self.eval_batch,
            epochs: self.epochs,
            seed: self.seed,
            backend: self.backend,
        };
        Ok((task, train))
    }

    /// The runner of these flags, checkpointing into `out` when given.
    fn runner(&self, quiet: bool, out: Option<&PathBuf>) -> Result<Runner<ClassifyTask>, Failure> {
        if self.checkpoint_every == Some(0) {
            return Err(bad("--checkpoint-every", "must be at least 1"));
        }
        let (task, train) = self.settings()?;
        let mut runner = Runner::new(ClassifyTask::new(task), train)?.quiet(quiet);
        if let Some(init) = &self.init_adapter {
            runner = runner.init_from(adapter_file(init));
        }
        Ok(match out {
            Some(dir) => runner.checkpoint_into(dir, self.checkpoint_every),
            None => runner,
        })
    }
}

impl PrintArgs {
    fn quiet_progress(&self) -> bool {
        self.quiet || self.json
    }

    /// `json` on stdout with `--json`, else the line `text` unless `--quiet`.
    fn emit(&self, json: impl serde::Serialize, text: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
        } else if !self.quiet {
            println!("{}", text());
        }
    }

    fn print(&self, reports: &[Report]) {
        if self.json {
            let json = match reports {
                [one] => serde_json::to_string_pretty(one),
                many => serde_json::to_string_pretty(many),
            };
            println!("{}", json.unwrap_or_default());
        } else if !self.quiet {
            print_table(reports);
        }
    }
}

/// Creates --out and test-writes it, before any training. Returns the
/// directory when this call created it (to be removed again if the run fails
/// on bad input before writing anything).
fn check_out(out: &OutArgs) -> Result<Option<PathBuf>, Failure> {
    let Some(dir) = &out.out else {
        return Ok(None);
    };
    let created = !dir.exists();
    ensure_writable_dir(dir)
        .map_err(|e| bad("--out", format!("cannot write into {}: {e}", dir.display())))?;
    Ok(created.then(|| dir.clone()))
}

/// Runs `work` with --out prepared; on bad input (exit 2) an --out this run
/// created and left empty is removed, so bad input writes nothing.
fn with_out(out: &OutArgs, work: impl FnOnce() -> Result<(), Failure>) -> Result<(), Failure> {
    let created = check_out(out)?;
    let result = work();
    if let (Err(Failure { code: 2, .. }), Some(dir)) = (&result, created) {
        let _ = std::fs::remove_dir(dir);
    }
    result
}

fn print_table(reports: &[Report]) {
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

fn train_cmd(run: RunArgs, resume: Option<PathBuf>, out: OutArgs) -> Result<(), Failure> {
    let quiet = out.print.quiet_progress();
    if let Some(dir) = resume {
        return resume_cmd(&dir, &out.print);
    }
    let runner = run.runner(quiet, out.out.as_ref())?;
    stop_on_ctrl_c(runner.interrupter());
    with_out(&out, || {
        let data = runner.prepare()?;
        if !quiet {
            print_data(&data);
        }
        let outcome = runner
            .train(&data)
            .map_err(|e| stopped(e, out.out.as_deref()))?;
        if let Some(dir) = &out.out {
            runner.save(dir, &outcome.report, Some(&outcome.model))?;
        }
        out.print.print(std::slice::from_ref(&outcome.report));
        Ok(())
    })
}

/// `train --resume DIR`: the interrupted run in `dir`, continued.
fn resume_cmd(dir: &Path, print: &PrintArgs) -> Result<(), Failure> {
    let state = TrainingState::read(dir)
        .map_err(|e| bad("--resume", e))?
        .ok_or_else(|| {
            bad(
                "--resume",
                format!("{} holds no interrupted run to resume", dir.display()),
            )
        })?;
    let task: ClassifyConfig = state
        .config
        .task_settings()
        .map_err(|e| bad("--resume", format!("not a classification run: {e}")))?;
    let runner = Runner::new(ClassifyTask::new(task), state.config.train.clone())?
        .quiet(print.quiet_progress())
        .checkpoint_into(dir, state.checkpoint_every)
        .resume(true);
    stop_on_ctrl_c(runner.interrupter());
    let data = runner.prepare()?;
    if !print.quiet_progress() {
        print_data(&data);
    }
    let outcome = runner.train(&data).map_err(|e| stopped(e, Some(dir)))?;
    runner.save(dir, &outcome.report, Some(&outcome.model))?;
    print.print(std::slice::from_ref(&outcome.report));
    Ok(())
}

/// The rows of each split per label, and the rows dropped, on stderr.
fn print_data(data: &TaskData<TokenizedExample, ClassLabels>) {
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
    eprintln!(
        "data: train {}, test {}{dropped}",
        split(&data.train),
        split(&data.test)
    );
}

/// Ctrl-C stops training at the next step boundary (leaving its last
/// checkpoint to resume from); a second Ctrl-C quits at once.
fn stop_on_ctrl_c(interrupter: Interrupter) {
    let pressed = std::sync::atomic::AtomicBool::new(false);
    let _ = ctrlc::set_handler(move || {
        if pressed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping at the next step (Ctrl-C again to quit at once)");
        interrupter.stop(Some("interrupted (Ctrl-C)"));
    });
}

/// A run stopped before its end (Ctrl-C) says how to continue it, exit
/// code 130; any other error as usual. `dir`: the run's (or, for a
/// comparison, the comparison's) output directory.
fn stopped(error: RunError, dir: Option<&Path>) -> Failure {
    let is_stop = |e: &RunError| matches!(e, RunError::Fit(FitError::Interrupted { .. }));
    let run_dir = match &error {
        RunError::Comparison { failed, source, .. } if is_stop(source) => {
            dir.map(|d| d.join(failed))
        }
        e if is_stop(e) => dir.map(Path::to_path_buf),
        _ => return error.into(),
    };
    let hint = match run_dir {
        Some(d) => format!("; continue it with: mlora train --resume {}", d.display()),
        None => " (without --out there is no checkpoint to resume from)".to_string(),
    };
    Failure {
        code: 130,
        message: format!("{error}{hint}"),
    }
}

fn compare_cmd(
    run: RunArgs,
    exact: bool,
    methods: Option<Vec<TrainMethod>>,
    out: OutArgs,
) -> Result<(), Failure> {
    let mut methods = methods.unwrap_or_else(|| {
        vec![
            TrainMethod::Lora,
            TrainMethod::Dylora,
            TrainMethod::Matryoshka,
        ]
    });
    if exact && !methods.contains(&TrainMethod::MatryoshkaExact) {
        methods.push(TrainMethod::MatryoshkaExact);
    }
    let quiet = out.print.quiet_progress();
    let runner = run.runner(quiet, out.out.as_ref())?;
    stop_on_ctrl_c(runner.interrupter());
    with_out(&out, || {
        let started = Instant::now();
        let data = runner.prepare()?;
        if !quiet {
            print_data(&data);
        }
        let reports = runner
            .compare(&methods, &data, out.out.as_deref(), |r| {
                if !quiet {
                    eprintln!(
                        "{}: AURAC log2 {:.2}%, {:.1} ms/step",
                        r.method, r.aurac_log2, r.ms_per_step
                    );
                }
            })
            .map_err(|e| stopped(e, out.out.as_deref()))?;
        out.print.print(&reports);
        if !out.print.quiet_progress() {
            println!(
                "total {:.1} s, peak RSS {:.0} MiB",
                started.elapsed().as_secs_f64(),
                matryoshka_lora::report::peak_rss_mb()
            );
        }
        Ok(())
    })?;
    Ok(())
}

fn eval_cmd(
    adapter: PathBuf,
    overrides: EvalDataArgs,
    eval_batch: Option<usize>,
    backend: Option<BackendKind>,
    print: PrintArgs,
) -> Result<(), Failure> {
    let saved = Report::read(&adapter.join(REPORT_FILE)).map_err(|e| bad("--adapter", e))?;
    let mut task: ClassifyConfig = saved.config.task_settings().map_err(|e| {
        bad(
            "--adapter",
            format!("{} is not a classification run: {e}", adapter.display()),
        )
    })?;
    if let Some(model) = overrides.model {
        task.model = model;
    }
    if let Some(data) = overrides.data {
        task.data = data;
    }
    overrides.rest.apply(&mut task);
    let mut train = saved.config.train.clone();
    if let Some(b) = eval_batch {
        train.eval_batch = b;
    }
    if let Some(b) = backend {
        train.backend = b;
    }
    if !print.quiet {
        let now = RunConfig {
            train: train.clone(),
            task: ClassifyTask::new(task.clone()).settings(),
        };
        for note in overridden(&saved.config, &now) {
            eprintln!("note: {note}");
        }
    }
    let runner = Runner::new(ClassifyTask::new(task), train)?.quiet(print.quiet_progress());
    let data = runner.prepare()?;
    if !print.quiet {
        print_data(&data);
    }
    let (report, _) = runner.evaluate_saved(&adapter, &data)?;
    print.print(std::slice::from_ref(&report));
    Ok(())
}

/// The adapter file of a run directory (or the file itself).
fn adapter_file(dir: &Path) -> PathBuf {
    if dir.is_dir() {
        dir.join(ADAPTER_FILE)
    } else {
        dir.to_path_buf()
    }
}

/// The base model of a saved adapter, unless `model` names one.
fn base_model(adapter: &Path, model: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(model) = model {
        return Ok(model);
    }
    let meta = read_meta(adapter).map_err(|e| bad("--adapter", e))?;
    meta.config["model"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| {
            bad(
                "--model",
                "the adapter does not say which model it was trained on: give --model",
            )
        })
}

fn merge_cmd(
    adapter: PathBuf,
    rank: usize,
    out: PathBuf,
    model: Option<PathBuf>,
    print: PrintArgs,
) -> Result<(), Failure> {
    let file = adapter_file(&adapter);
    let model = base_model(&file, model)?;
    let summary = merge_adapter(&model, &file, rank, &out).map_err(|e| match e {
        MergeError::Rank { .. } => bad("--rank", e),
        MergeError::IntoBase(_) => bad("--out", e),
        MergeError::Adapter(_) => bad("--adapter", e),
        MergeError::Model(_) | MergeError::MissingWeight { .. } | MergeError::Shape { .. } => {
            bad("--model", e)
        }
        other => Failure {
            code: 1,
            message: other.to_string(),
        },
    })?;
    let json = serde_json::json!({
        "rank": summary.rank,
        "scale": summary.scale,
        "merged": summary.merged,
        "weight_files": summary.weight_files,
        "copied": summary.copied,
        "out": out,
    });
    print.emit(json, || {
        format!(
            "merged {} weights at rank {} (scale {:.4}) into {}",
            summary.merged.len(),
            summary.rank,
            summary.scale,
            out.display()
        )
    });
    Ok(())
}

fn export_cmd(
    adapter: PathBuf,
    rank: usize,
    peft: PathBuf,
    base_model: Option<String>,
    print: PrintArgs,
) -> Result<(), Failure> {
    let file = adapter_file(&adapter);
    let export = export_peft(&file, rank, &peft, base_model.as_deref()).map_err(|e| match e {
        PeftError::Rank { .. } => bad("--rank", e),
        PeftError::Adapter(_) | PeftError::Invalid { .. } => bad("--adapter", e),
        other => Failure {
            code: 1,
            message: other.to_string(),
        },
    })?;
    let json = serde_json::json!({"peft": peft, "config": export.config, "keys": export.keys});
    print.emit(json, || {
        format!(
            "exported rank {} (scale {:.4}) of {} modules to {}",
            export.config.r,
            export.config.scale(),
            export.keys.len() / 2,
            peft.display()
        )
    });
    Ok(())
}

fn import_cmd(
    peft_dir: PathBuf,
    out: PathBuf,
    data_args: EvalDataArgs,
    method: TrainMethod,
    scaling: Scaling,
    backend: BackendKind,
    print: PrintArgs,
) -> Result<(), Failure> {
    let peft = read_peft(&peft_dir).map_err(|e| bad("--peft", e))?;
    let model = data_args.model.unwrap_or_else(|| {
        peft.config
            .base_model_name_or_path
            .as_ref()
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| PathBuf::from("assets"))
    });
    let mut task = ClassifyConfig::new(&model, data_args.data);
    data_args.rest.apply(&mut task);
    let r = peft.config.r;
    let train = TrainConfig {
        targets: Some(peft.targets()),
        method,
        rank: r,
        ranks: RankSet::powers_of_two(r)
            .map_err(|e| bad("--peft", e))?
            .ranks()
            .to_vec(),
        scaling,
        backend,
        ..TrainConfig::default()
    };
    let runner = Runner::new(ClassifyTask::new(task), train)?.quiet(print.quiet_progress());
    let out_args = OutArgs {
        out: Some(out.clone()),
        print: print.clone(),
    };
    with_out(&out_args, || {
        let data = runner.prepare()?;
        if !print.quiet_progress() {
            print_data(&data);
        }
        let imported = runner.import_peft(&peft, &data.meta)?;
        let report = runner.evaluate(imported.clone(), &data)?;
        runner.save(&out, &report, Some(&imported))?;
        print.print(std::slice::from_ref(&report));
        Ok(())
    })
}

/// The saved settings `now` changes, one line each with the flag that changed it.
fn overridden(saved: &RunConfig, now: &RunConfig) -> Vec<String> {
    let (Ok(serde_json::Value::Object(before)), Ok(serde_json::Value::Object(after))) =
        (serde_json::to_value(saved), serde_json::to_value(now))
    else {
        return Vec::new();
    };
    after
        .iter()
        .filter(|(key, value)| before.get(*key) != Some(*value))
        .map(|(key, value)| {
            let was = before.get(key).cloned().unwrap_or_default();
            format!(
                "--{} overrides the saved setting: {was} -> {value}",
                key.replace('_', "-")
            )
        })
        .collect()
}

fn bench_rt_cmd(args: BenchRtArgs) -> Result<(), Failure> {
    if args.steps == 0 {
        return Err(bad("--steps", "must be at least 1"));
    }
    let result = RtBench {
        steps: args.steps,
        warmup: args.warmup,
        method: args.method,
        backend: args.backend,
        model: args.model,
        test_n: args.test_n,
        layers: args.layers,
    }
    .run()?;
    args.print.emit(&result, || {
        format!(
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
        )
    });
    Ok(())
}

fn plot_cmd(paths: Vec<PathBuf>, output: PathBuf, print: PrintArgs) -> Result<(), Failure> {
    let mut reports = Vec::new();
    for p in &paths {
        reports.extend(Report::read_many(p).map_err(|e| bad("REPORTS", e))?);
    }
    matryoshka_lora::plot::plot_reports(&reports, &output).map_err(|e| bad("-o", e))?;
    let json = serde_json::json!({"output": output, "reports": reports.len()});
    print.emit(json, || {
        format!("plotted {} runs to {}", reports.len(), output.display())
    });
    Ok(())
}

/// A clap error as one line: its message without the usage hint.
fn one_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let text = text.split("\n\nFor more information").next().unwrap_or("");
    let text = text.trim().trim_start_matches("error:").trim();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            eprintln!("error: {}", one_line(&e));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Train { run, resume, out } => train_cmd(run, resume, out),
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
            print,
        } => eval_cmd(adapter, data, eval_batch, backend, print),
        Command::Bench {
            which: BenchCommand::Rt(args),
        } => bench_rt_cmd(args),
        Command::Merge {
            adapter,
            rank,
            out,
            model,
            print,
        } => merge_cmd(adapter, rank, out, model, print),
        Command::Export {
            adapter,
            rank,
            peft,
            base_model,
            print,
        } => export_cmd(adapter, rank, peft, base_model, print),
        Command::Import {
            peft,
            out,
            data,
            method,
            scaling,
            backend,
            print,
        } => import_cmd(peft, out, data, method, scaling, backend, print),
        Command::Plot {
            reports,
            output,
            print,
        } => plot_cmd(reports, output, print),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message.replace('\n', " "));
            ExitCode::from(f.code)
        }
    }
}
