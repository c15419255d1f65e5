//! The command line: clap definitions, and the mapping from flags to the
//! library's settings (in one place).

use super::artifacts::adapter_file;
use super::failure::{Failure, bad};
use super::output::print_table;
use clap::{Args, Parser, Subcommand, ValueEnum};
use matryoshka_lora::models::BaseDtype;
use matryoshka_lora::models::llama::PRESETS;
use matryoshka_lora::report::{RankWithin, Report};
use matryoshka_lora::tasks::causal_lm::CausalLmConfig;
use matryoshka_lora::tasks::classify::ClassifyConfig;
use matryoshka_lora::train::ParallelStrategy;
use matryoshka_lora::train::{CompareMethod, HeadMode, Runner, Task, TrainConfig, TrainMethod};
use matryoshka_lora::{BackendKind, DeviceSpec};
use matryoshka_lora::{RankSet, Scaling};
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
        #[arg(
            long,
            value_name = "DIR",
            conflicts_with_all = RUN_FLAGS,
            conflicts_with_all = ["exact", "methods", "seeds", "lrs", "val_n", "select_on_first_seed"]
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

/// Which task a run fine-tunes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskKind {
    /// Sequence classification (BERT encoder, CSV data).
    Classify,
    /// Causal-LM instruction fine-tuning (Llama-family decoder, JSONL data).
    CausalLm,
}

impl TaskKind {
    /// The report's `task` name of this kind.
    pub fn of_name(name: &str) -> Option<Self> {
        match name {
            "classify" => Some(Self::Classify),
            "causal-lm" => Some(Self::CausalLm),
            _ => None,
        }
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

/// The data flags of `train` and `compare`.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// Model directory: config.json, model.safetensors (or shards), tokenizer.json;
    /// for --task causal-lm also a GGUF file (llama.cpp's format, quantized or not).
    /// [default: assets, the fetched MiniLM (classify); causal-lm needs one]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Data: a CSV file (plain or .bz2) for classify [default: the Rotten Tomatoes
    /// file in --model's directory, labels rotten,fresh, the first 4000/1000 rows];
    /// a JSONL file of prompt/response (or GSM8K question/answer) rows for causal-lm.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub rest: DataOverrides,
}

/// The data flags of `eval`: each overrides the saved setting when given.
#[derive(Args, Clone)]
pub struct EvalDataArgs {
    /// Model directory or GGUF file [default: the one the adapter was trained on].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Data file [default: the one the adapter was trained on].
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub rest: DataOverrides,
}

/// Data flags that override a default (or, for `eval`, a saved setting) when given.
#[derive(Args, Clone, Default)]
pub struct DataOverrides {
    /// Separate test CSV (instead of the --test-every split).
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Text column [default: text, the RT data's].
    #[arg(long)]
    pub text_col: Option<String>,
    /// Label column [default: category, the RT data's].
    #[arg(long)]
    pub label_col: Option<String>,
    /// Label set, comma-separated; label id = position; other rows dropped.
    /// Default: sorted distinct values (rotten,fresh for the default data).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Row i is test if i % N == 0 [default: the RT protocol's, 5].
    #[arg(long)]
    pub test_every: Option<usize>,
    /// First N train rows (default: 4000 for the default RT data, else all).
    #[arg(long)]
    pub train_n: Option<usize>,
    /// First N test rows (default: 1000 for the default RT data, else all).
    #[arg(long)]
    pub test_n: Option<usize>,
    /// Truncate to this many tokens [default: classify 48 (the RT protocol's), causal-lm 512].
    #[arg(long)]
    pub max_len: Option<usize>,
    /// causal-lm: the JSONL prompt field [default: prompt].
    #[arg(long)]
    pub prompt_field: Option<String>,
    /// causal-lm: the JSONL response field [default: response].
    #[arg(long)]
    pub response_field: Option<String>,
    /// causal-lm: greedy generation cap for exact match (0: no generation) [default: 256].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// causal-lm: rows generated together [default: 16].
    #[arg(long)]
    pub gen_batch: Option<usize>,
    /// causal-lm: hold the frozen base's matrices in f32, bf16 or f16 (adapters,
    /// gradients and optimizer state stay f32) [default: f32].
    #[arg(long)]
    pub base_dtype: Option<BaseDtype>,
    /// Remove test rows whose text (classify) or prompt (causal-lm), trimmed,
    /// also occurs among the training rows (counted and reported either way).
    #[arg(long)]
    pub drop_overlap: bool,
}

/// Where a run trains besides `--backend`: data-parallel devices and
/// gradient accumulation.
#[derive(Args, Clone, Default)]
pub struct ParallelArgs {
    /// Train data-parallel on these devices, comma-separated, one backend:
    /// cuda:0,cuda:1 | wgpu:0,wgpu:1 | flex,flex (two workers on the CPU).
    /// --batch is the global batch, split evenly over them; validation runs on
    /// the first. With --resume: continue on these.
    #[arg(long, value_name = "LIST", conflicts_with = "backend", value_parser = parse_devices)]
    pub devices: Option<DeviceList>,
    /// With --devices: multi (gradients summed on the first device; any
    /// backend) or ddp (all-reduce between devices; CUDA only) [default: multi].
    #[arg(long, requires = "devices")]
    pub strategy: Option<ParallelStrategy>,
    /// Accumulate N micro-batches per device per optimiser step: the step
    /// still sees the gradient of the whole --batch [default: 1].
    #[arg(long, value_name = "N")]
    pub grad_accum: Option<usize>,
}

impl ParallelArgs {
    /// Applies `backend` (when given) and these flags (those given) to `train`.
    pub fn apply(
        &self,
        backend: Option<BackendKind>,
        train: &mut TrainConfig,
    ) -> Result<(), Failure> {
        if let Some(DeviceList(devices)) = &self.devices {
            DeviceSpec::check_list(devices).map_err(|e| bad("--devices", e))?;
            let backend = devices[0].backend;
            backend.device().map_err(|e| bad("--devices", e))?;
            train.backend = backend;
            train.devices = devices.clone();
        } else if let Some(backend) = backend {
            train.backend = backend;
            train.devices = Vec::new();
        }
        if let Some(strategy) = self.strategy {
            train.strategy = strategy;
        }
        if let Some(n) = self.grad_accum {
            train.grad_accum = n;
        }
        Ok(())
    }
}

#[derive(Args, Clone)]
pub struct RunArgs {
    /// classify (BERT encoder, CSV) or causal-lm (Llama-family decoder, JSONL).
    #[arg(long, value_enum, default_value = "classify")]
    pub task: TaskKind,
    #[command(flatten)]
    pub data: DataArgs,
    /// lora, dylora, dylora-original, matryoshka, matryoshka-exact or matryoshka-sampled.
    #[arg(long, default_value_t = DEFAULTS.method)]
    pub method: TrainMethod,
    /// joint (head and adapters together) or probe (linear-probe epoch, then adapters only).
    /// (compare: a comma-separated list, each with every method)
    #[arg(long, value_delimiter = ',', default_value = "joint")]
    pub head_mode: Vec<HeadMode>,
    /// Maximum rank R.
    #[arg(long, default_value_t = DEFAULTS.rank)]
    pub rank: usize,
    /// Nested ranks S, ascending (default: powers of two up to R).
    #[arg(long, value_delimiter = ',')]
    pub ranks: Option<Vec<usize>>,
    /// matryoshka-sampled: ranks of S drawn per step (default 2).
    #[arg(long, value_name = "M")]
    pub rank_samples: Option<usize>,
    /// matryoshka-sampled: R is always one of the drawn ranks.
    #[arg(long)]
    pub sample_max: bool,
    /// none, rank, sqrt or alpha:A.
    #[arg(long, default_value_t = DEFAULTS.scaling)]
    pub scaling: Scaling,
    /// Adapter targets (Hugging Face module names, PEFT-style), comma-separated
    /// [default: the model family's: every encoder linear; every attention and MLP projection].
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
    /// Keep only the first N encoder/decoder layers (quick runs).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Peak learning rate (linear decay to 0).
    #[arg(long, default_value_t = DEFAULTS.lr)]
    pub lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = DEFAULTS.weight_decay)]
    pub weight_decay: f32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = DEFAULTS.warmup_steps)]
    pub warmup: usize,
    /// Gradient-norm clip (0 = off).
    #[arg(long, default_value_t = DEFAULTS.grad_clip.unwrap_or(0.0))]
    pub grad_clip: f32,
    /// Training batch size.
    #[arg(long, default_value_t = DEFAULTS.batch)]
    pub batch: usize,
    /// Evaluation batch size.
    #[arg(long, default_value_t = DEFAULTS.eval_batch)]
    pub eval_batch: usize,
    /// Epochs.
    #[arg(long, default_value_t = DEFAULTS.epochs)]
    pub epochs: usize,
    /// Seed (initialisation, shuffling, DyLoRA draws).
    #[arg(long, default_value_t = DEFAULTS.seed)]
    pub seed: u64,
    /// Backend: flex, ndarray, wgpu or cuda (must be compiled in) [default: flex].
    /// With --resume: continue on this backend.
    #[arg(long)]
    pub backend: Option<BackendKind>,
    #[command(flatten)]
    pub parallel: ParallelArgs,
    /// Report the smallest rank within this many points of the best rank's accuracy.
    #[arg(long, default_value_t = RankWithin::DEFAULT_TOLERANCE)]
    pub tolerance: f64,
    /// With --out: also checkpoint every N steps (always at each epoch end),
    /// so an interrupted run loses at most N steps (`train --resume DIR`).
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Start from the factors (and head) of a saved adapter, e.g. one made by
    /// `mlora import` (same rank and targets); P is this run's method's.
    #[arg(long, value_name = "DIR")]
    pub init_adapter: Option<PathBuf>,
}

/// The flags that shape a run, which `--resume` takes from the run itself
/// (where it runs, `--backend`/`--devices`/`--strategy`/`--grad-accum`, may
/// change: the steps are the same).
pub const RUN_FLAGS: [&str; 37] = [
    "task",
    "base_dtype",
    "prompt_field",
    "response_field",
    "max_new_tokens",
    "gen_batch",
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
    "rank_samples",
    "sample_max",
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
    "checkpoint_every",
    "tolerance",
    "init_adapter",
    "out",
];

#[derive(Args, Clone)]
pub struct PrintArgs {
    /// No progress bar or table.
    #[arg(long)]
    pub quiet: bool,
    /// Print the report as JSON on stdout (implies --quiet progress).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone)]
pub struct OutArgs {
    /// Output directory: adapter checkpoint, report.json, curve.png/svg.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub print: PrintArgs,
}

/// The training defaults (the RT protocol's), shown by `--help`: one place,
/// the library's.
pub static DEFAULTS: std::sync::LazyLock<TrainConfig> =
    std::sync::LazyLock::new(TrainConfig::default);

impl DataOverrides {
    /// The flags of one task given with another (an error, not ignored).
    pub fn check_task(&self, task: TaskKind) -> Result<(), Failure> {
        let (given, other): (Vec<(&str, bool)>, &str) = match task {
            TaskKind::Classify => (
                vec![
                    ("--prompt-field", self.prompt_field.is_some()),
                    ("--response-field", self.response_field.is_some()),
                    ("--max-new-tokens", self.max_new_tokens.is_some()),
                    ("--gen-batch", self.gen_batch.is_some()),
                    ("--base-dtype", self.base_dtype.is_some()),
                ],
                "causal-lm",
            ),
            TaskKind::CausalLm => (
                vec![
                    ("--text-col", self.text_col.is_some()),
                    ("--label-col", self.label_col.is_some()),
                    ("--labels", self.labels.is_some()),
                ],
                "classify",
            ),
        };
        match given.into_iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(bad(flag, format!("applies to --task {other} only"))),
            None => Ok(()),
        }
    }

    /// Applies the split and size flags both tasks have to their settings.
    fn apply_split(
        &self,
        test_data: &mut Option<PathBuf>,
        test_every: &mut usize,
        train_n: &mut Option<usize>,
        test_n: &mut Option<usize>,
        max_len: &mut usize,
    ) {
        if self.test_data.is_some() {
            *test_data = self.test_data.clone();
        }
        if let Some(v) = self.test_every {
            *test_every = v;
        }
        if self.train_n.is_some() {
            *train_n = self.train_n;
        }
        if self.test_n.is_some() {
            *test_n = self.test_n;
        }
        if let Some(v) = self.max_len {
            *max_len = v;
        }
    }

    /// Applies the causal-LM flags given to `c`.
    pub fn apply_lm(&self, c: &mut CausalLmConfig) {
        self.apply_split(
            &mut c.test_data,
            &mut c.test_every,
            &mut c.train_n,
            &mut c.test_n,
            &mut c.max_len,
        );
        if let Some(v) = &self.prompt_field {
            c.prompt_field = v.clone();
        }
        if let Some(v) = &self.response_field {
            c.response_field = v.clone();
        }
        if let Some(v) = self.max_new_tokens {
            c.max_new_tokens = v;
        }
        if let Some(v) = self.gen_batch {
            c.gen_batch = v;
        }
        if let Some(v) = self.base_dtype {
            c.base_dtype = v;
        }
        c.drop_overlap |= self.drop_overlap;
    }

    /// Applies the flags given to `c`.
    pub fn apply(&self, c: &mut ClassifyConfig) {
        self.apply_split(
            &mut c.test_data,
            &mut c.test_every,
            &mut c.train_n,
            &mut c.test_n,
            &mut c.max_len,
        );
        if let Some(v) = &self.text_col {
            c.text_col = v.clone();
        }
        if let Some(v) = &self.label_col {
            c.label_col = v.clone();
        }
        c.drop_overlap |= self.drop_overlap;
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
    }
}

/// `--devices`: a comma-separated list of `BACKEND[:INDEX]`.
#[derive(Debug, Clone)]
pub struct DeviceList(pub Vec<DeviceSpec>);

fn parse_devices(s: &str) -> Result<DeviceList, String> {
    s.split(',')
        .map(|d| d.parse::<DeviceSpec>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()
        .map(DeviceList)
}

/// `--rank-samples`/`--sample-max` only mean something to matryoshka-sampled:
/// given without it among `methods`, they are an error, not ignored.
pub fn check_sampled_flags(
    methods: &[TrainMethod],
    rank_samples: Option<usize>,
    sample_max: bool,
) -> Result<(), Failure> {
    if methods.contains(&TrainMethod::MatryoshkaSampled) {
        return Ok(());
    }
    let flag = match (rank_samples, sample_max) {
        (Some(_), _) => "--rank-samples",
        (None, true) => "--sample-max",
        (None, false) => return Ok(()),
    };
    Err(bad(
        flag,
        "applies to --method matryoshka-sampled only (add it to the methods, or drop the flag)",
    ))
}

impl RunArgs {
    /// The classification task's settings these flags give.
    pub fn classify_settings(&self) -> Result<ClassifyConfig, Failure> {
        self.data.rest.check_task(TaskKind::Classify)?;
        let model = self
            .data
            .model
            .clone()
            .unwrap_or_else(|| PathBuf::from("assets"));
        let mut task = ClassifyConfig::new(&model, self.data.data.clone());
        self.data.rest.apply(&mut task);
        task.layers = self.layers;
        Ok(task)
    }

    /// The causal-LM task's settings these flags give.
    pub fn causal_lm_settings(&self) -> Result<CausalLmConfig, Failure> {
        self.data.rest.check_task(TaskKind::CausalLm)?;
        let model = self.data.model.clone().ok_or_else(|| {
            bad("--model", "--task causal-lm needs a Llama-family model: a directory (config.json, tokenizer.json, model.safetensors) or a GGUF file")
        })?;
        let data = self.data.data.clone().ok_or_else(|| {
            bad(
                "--data",
                "--task causal-lm needs a JSONL file of prompt/response (or question/answer) rows",
            )
        })?;
        let mut task = CausalLmConfig::new(model, data);
        self.data.rest.apply_lm(&mut task);
        task.layers = self.layers;
        Ok(task)
    }

    /// The training settings these flags give.
    pub fn train_settings(&self) -> Result<TrainConfig, Failure> {
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
            head_mode: match self.head_mode.as_slice() {
                [one] => *one,
                [] => DEFAULTS.head_mode,
                _ => {
                    return Err(bad(
                        "--head-mode",
                        "train takes one head mode (compare takes several)",
                    ));
                }
            },
            rank: self.rank,
            ranks,
            rank_samples: self.rank_samples,
            sample_max: self.sample_max,
            scaling: self.scaling,
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup_steps: self.warmup,
            grad_clip: (self.grad_clip != 0.0).then_some(self.grad_clip),
            batch: self.batch,
            eval_batch: self.eval_batch,
            epochs: self.epochs,
            seed: self.seed,
            ..TrainConfig::default()
        };
        let mut train = train;
        self.apply_execution(&mut train)?;
        // The method's own sampling settings (matryoshka-sampled's default m).
        let sampled_settings = (train.rank_samples, train.sample_max);
        let mut train = train.with_method(self.method);
        if self.method != TrainMethod::MatryoshkaSampled && sampled_settings != (None, false) {
            // kept for a comparison that includes matryoshka-sampled
            (train.rank_samples, train.sample_max) = sampled_settings;
        }
        Ok(train)
    }

    /// Applies the flags that say where a run trains (`--backend`,
    /// `--devices`, `--strategy`, `--grad-accum`) to `train`, those given only.
    pub fn apply_execution(&self, train: &mut TrainConfig) -> Result<(), Failure> {
        self.parallel.apply(self.backend, train)
    }

    /// The runner of `task` with these flags, checkpointing into `out` when given.
    pub fn runner<T: Task>(
        &self,
        task: T,
        quiet: bool,
        out: Option<&PathBuf>,
    ) -> Result<Runner<T>, Failure> {
        if self.checkpoint_every == Some(0) {
            return Err(bad("--checkpoint-every", "must be at least 1"));
        }
        let train = self.train_settings()?;
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(bad("--tolerance", "must be a finite number >= 0"));
        }
        let mut runner = Runner::new(task, train)?
            .quiet(quiet)
            .tolerance(self.tolerance);
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
    pub fn quiet_progress(&self) -> bool {
        self.quiet || self.json
    }

    /// `json` on stdout with `--json`, else the line `text` unless `--quiet`.
    pub fn emit(&self, json: impl serde::Serialize, text: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
        } else if !self.quiet {
            println!("{}", text());
        }
    }

    pub fn print(&self, reports: &[Report]) {
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
