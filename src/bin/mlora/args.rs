//! The flags several commands share (a run's settings, output, printing,
//! devices) and their mapping to the library's settings (in one place; the
//! data flags in `data_args`); the commands themselves are in `cli`.

use super::artifacts::adapter_file;
use super::data_args::{DataArgs, TaskKind};
use super::failure::{Failure, bad};
use super::output::print_table;
use clap::Args;
use matryoshka_lora::report::{RankWithin, Report};
use matryoshka_lora::tasks::causal_lm::CausalLmConfig;
use matryoshka_lora::tasks::classify::ClassifyConfig;
use matryoshka_lora::train::ParallelStrategy;
use matryoshka_lora::train::{HeadMode, Runner, Task, TrainConfig, TrainMethod};
use matryoshka_lora::{BackendKind, DeviceSpec};
use matryoshka_lora::{RankSet, Scaling};
use std::path::PathBuf;

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
pub const RUN_FLAGS: [&str; 38] = [
    "task",
    "base_dtype",
    "prompt_field",
    "response_field",
    "group_field",
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

/// `--devices`: a comma-separated list of `BACKEND[:INDEX]`.
#[derive(Debug, Clone)]
pub struct DeviceList(pub Vec<DeviceSpec>);

pub(crate) fn parse_devices(s: &str) -> Result<DeviceList, String> {
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
