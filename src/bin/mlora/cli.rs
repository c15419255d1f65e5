//! The command line's commands: clap's `Cli`, its subcommands and their own
//! flags (the flags shared by several commands are in `args`).

use super::args::*;
use super::data_args::{EvalDataArgs, TaskKind};
use super::failure::{Failure, bad};
use clap::{Args, Parser, Subcommand};
use matryoshka_lora::BackendKind;
use matryoshka_lora::Scaling;
use matryoshka_lora::models::BaseDtype;
use matryoshka_lora::models::llama::PRESETS;
use matryoshka_lora::report::RankWithin;
use matryoshka_lora::train::{CompareMethod, ParallelStrategy, TrainMethod};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "mlora",
    version,
    about = "MatryoshkaLoRA on burn: train once, deploy any nested rank",
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Per-rank figures and AURAC of a saved run (`--adapter DIR` from `train --out`),
    /// with the settings it was trained with; a flag given here overrides one.
    /// `--task causal-lm` without `--adapter` evaluates the base model alone.
    Eval {
        /// Directory written by `mlora train --out`.
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// Without --adapter: the task whose base model to evaluate (causal-lm).
        #[arg(long)]
        task: Option<TaskKind>,
        #[command(flatten)]
        data: EvalDataArgs,
        /// Evaluation batch size.
        #[arg(long)]
        eval_batch: Option<usize>,
        /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
        #[arg(long)]
        backend: Option<BackendKind>,
        /// Without --adapter: keep only the first N layers.
        #[arg(long)]
        layers: Option<usize>,
        /// Also save the evaluated run here, in the current format (e.g. to
        /// upgrade a run saved as adapter.bpk by an earlier version).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Report the smallest rank within this many points of the best rank's accuracy.
        #[arg(long, default_value_t = RankWithin::DEFAULT_TOLERANCE)]
        tolerance: f64,
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
        /// Methods to compare (overrides the default list); `lora-grid` adds
        /// the rank grid search: a plain LoRA of max rank k for every k of
        /// --ranks, each evaluated at its own rank.
        #[arg(long, value_delimiter = ',')]
        methods: Option<Vec<CompareMethod>>,
        /// Continue the comparison cut short in DIR (its --out): finished runs
        /// are read back, the interrupted one resumes from its last
        /// checkpoint, the rest run; the settings are the ones it was started with.
        /// With --lrs (every learning rate it has, and more) it widens the
        /// grid: only the new ones train, and a choice they beat is re-made.
        #[arg(
            long,
            value_name = "DIR",
            conflicts_with_all = RUN_FLAGS,
            conflicts_with_all = ["exact", "methods", "seeds", "val_n", "select_on_first_seed"]
        )]
        resume: Option<PathBuf>,
        /// Run every method with each seed; summarise mean ± std and paired
        /// differences over them.
        #[arg(long, value_delimiter = ',')]
        seeds: Option<Vec<u64>>,
        /// Learning rates tried per method and seed; the one with the best
        /// validation AURAC is kept (validation rows from the training rows).
        #[arg(long, value_delimiter = ',')]
        lrs: Option<Vec<f64>>,
        /// Validation rows for choosing the learning rate: the last N training
        /// rows [default: a fifth of them, at most 500].
        #[arg(long)]
        val_n: Option<usize>,
        /// Choose the learning rates (--lrs) on the first seed only; the other
        /// seeds train once each with its choice (on the same rows).
        #[arg(long, requires = "lrs")]
        select_on_first_seed: bool,
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
    /// (adapter_config.json + adapter_model.safetensors, `--peft DIR`) or as a
    /// llama.cpp LoRA adapter (`--gguf FILE`, causal-LM runs on Llama-family
    /// models: `llama-cli -m base.gguf --lora FILE`).
    #[command(group(clap::ArgGroup::new("format").required(true).args(["peft", "gguf"])))]
    Export {
        /// Directory written by `mlora train --out`.
        #[arg(long)]
        adapter: PathBuf,
        /// The rank to export (PEFT's r).
        #[arg(long)]
        rank: usize,
        /// The PEFT adapter's directory.
        #[arg(long)]
        peft: Option<PathBuf>,
        /// The llama.cpp adapter file (GGUF) to write.
        #[arg(long)]
        gguf: Option<PathBuf>,
        /// `base_model_name_or_path` to record [default: the model the adapter was trained on].
        #[arg(long)]
        base_model: Option<String>,
        /// With --gguf: the base model (directory or GGUF file) whose head
        /// counts order llama.cpp's rows [default: the one the adapter was trained on].
        #[arg(long)]
        model: Option<PathBuf>,
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
        /// The task [default: causal-lm when the adapter's task_type is CAUSAL_LM, else classify].
        #[arg(long)]
        task: Option<TaskKind>,
        /// causal-lm: keep only the first N decoder layers (as the adapter was trained).
        #[arg(long)]
        layers: Option<usize>,
        /// Model (default: the PEFT adapter's base_model_name_or_path when it is a
        /// directory or GGUF file, else assets) and data (classify: default the
        /// Rotten Tomatoes file in it; causal-lm: required).
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
    /// Memory per device to train adapters on a Llama-family model, from the
    /// formula (README, "Scaling"): base weights, adapter state, activations.
    Memory(MemoryArgs),
    /// Plot rank (log2 axis) against accuracy for report.json files, or a
    /// comparison's mean curves with ±1 std bands (the grid dashed).
    Plot {
        /// report.json files (one line each), or compare.json files.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Output .png or .svg.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        print: PrintArgs,
    },
}

#[derive(Args, Clone)]
pub struct MemoryArgs {
    /// Model shape: llama-3.2-1b, llama-3.1-8b, tinyllama-1.1b, smollm2-135m or tiny.
    #[arg(long, default_value = "llama-3.2-1b")]
    pub config: String,
    /// A Llama-family model (a directory with config.json, or a GGUF file) instead.
    #[arg(long, conflicts_with = "config")]
    pub model: Option<PathBuf>,
    /// Adapter ranks R, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32")]
    pub rank: Vec<usize>,
    /// Global batch (rows per optimiser step).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per row.
    #[arg(long, default_value_t = 512)]
    pub seq: usize,
    /// Scored (response) tokens per row [default: half of --seq].
    #[arg(long)]
    pub scored: Option<usize>,
    /// The base's dtypes, comma-separated: f32, bf16, f16.
    #[arg(long, value_delimiter = ',', default_value = "bf16")]
    pub base_dtype: Vec<BaseDtype>,
    /// Data-parallel devices (as `train --devices`; only their number matters).
    #[arg(long, value_name = "LIST", value_parser = parse_devices)]
    pub devices: Option<DeviceList>,
    /// multi or ddp.
    #[arg(long, default_value = "multi")]
    pub strategy: ParallelStrategy,
    /// Micro-batches accumulated per device per step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    #[command(flatten)]
    pub print: PrintArgs,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// RT protocol: `--warmup` + `--steps` training steps (batch 32, the RT
    /// settings), then the full evaluation at every rank; prints ms/step (after
    /// warm-up), eval seconds and peak RSS.
    Rt(BenchRtArgs),
    /// Causal LM: training steps of adapters on all seven projections of a
    /// Llama-shaped model with random weights (no download); prints ms/step,
    /// tokens/s, peak memory and model FLOPs utilisation.
    Llm(BenchLlmArgs),
}

#[derive(Args, Clone)]
pub struct BenchLlmArgs {
    /// Model shape: llama-3.2-1b, llama-3.1-8b, tinyllama-1.1b, smollm2-135m or tiny.
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// A Llama-family model to load instead (a directory or a GGUF file: its shape and weights).
    #[arg(long, conflicts_with = "config")]
    pub model: Option<PathBuf>,
    /// Random weights (the only source: accepted for clarity).
    #[arg(long)]
    pub random_init: bool,
    /// Rows per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per row (half prompt, half response).
    #[arg(long, default_value_t = 512)]
    pub seq: usize,
    /// Timed training steps.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Maximum rank R (S: powers of two up to it).
    #[arg(long, default_value_t = 32)]
    pub rank: usize,
    /// lora, dylora, dylora-original, matryoshka, matryoshka-exact or matryoshka-sampled.
    #[arg(long, default_value_t = DEFAULTS.method)]
    pub method: TrainMethod,
    /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
    #[arg(long, default_value_t = DEFAULTS.backend)]
    pub backend: BackendKind,
    #[command(flatten)]
    pub parallel: ParallelArgs,
    /// Keep only the first N layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// The frozen base's matrices in f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub base_dtype: BaseDtype,
    /// Peak learning rate.
    #[arg(long, default_value_t = DEFAULTS.lr)]
    pub lr: f64,
    /// Standard deviation of the random weights (default 0.02; larger gives a
    /// peakier model whose losses show more of the computation).
    #[arg(long)]
    pub init_std: Option<f32>,
    /// The device's dense peak in TFLOP/s, for model FLOPs utilisation.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Seed of the weights and rows.
    #[arg(long, default_value_t = DEFAULTS.seed)]
    pub seed: u64,
    #[command(flatten)]
    pub print: PrintArgs,
}

impl BenchLlmArgs {
    pub fn check(&self) -> Result<(), Failure> {
        if self.model.is_none() && !PRESETS.contains(&self.config.as_str()) {
            return Err(bad(
                "--config",
                format!(
                    "unknown model config `{}`; known: {}",
                    self.config,
                    PRESETS.join(", ")
                ),
            ));
        }
        if self.steps == 0 {
            return Err(bad("--steps", "must be at least 1"));
        }
        if self.batch == 0 {
            return Err(bad("--batch", "must be at least 1"));
        }
        if let Some(p) = self.peak_tflops
            && !(p.is_finite() && p > 0.0)
        {
            return Err(bad("--peak-tflops", "must be a positive number"));
        }
        Ok(())
    }
}

#[derive(Args, Clone)]
pub struct BenchRtArgs {
    /// Timed training steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// lora, dylora, dylora-original, matryoshka, matryoshka-exact or matryoshka-sampled.
    #[arg(long, default_value_t = DEFAULTS.method)]
    pub method: TrainMethod,
    /// Backend: flex, ndarray, wgpu or cuda (must be compiled in).
    #[arg(long, default_value_t = DEFAULTS.backend)]
    pub backend: BackendKind,
    #[command(flatten)]
    pub parallel: ParallelArgs,
    /// Model directory (the fetched assets).
    #[arg(long, default_value = "assets")]
    pub model: PathBuf,
    /// Test rows evaluated at every rank (PROTOCOL.md: 1000).
    #[arg(long, default_value_t = 1000)]
    pub test_n: usize,
    /// Keep only the first N encoder layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Training batch size [default: the RT protocol's, 32].
    #[arg(long)]
    pub batch: Option<usize>,
    /// matryoshka-sampled: ranks of S drawn per step (default 2).
    #[arg(long, value_name = "M")]
    pub rank_samples: Option<usize>,
    /// matryoshka-sampled: R is always one of the drawn ranks.
    #[arg(long)]
    pub sample_max: bool,
    #[command(flatten)]
    pub print: PrintArgs,
}
