//! `mlora bench llm`: training steps of adapters on every projection of a
//! Llama-shaped model with seeded random weights and random token rows (no
//! download, nothing to carry), as a [`Task`] the one runner trains.

use super::memory::MemoryPlan;
use crate::adapter::Injection;
use crate::backend::{BackendKind, DeviceSpec};
use crate::data::{SftBatcher, SftExample};
use crate::models::TensorSource;
use crate::models::llama::{DEFAULT_TARGETS, LlamaConfig, LlamaForCausalLm, PRESETS};
use crate::models::{BaseDtype, RandomWeights};
use crate::train::{
    Execution, RunError, Runner, Setting, Task, TaskData, TrainConfig, TrainMethod,
};
use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};

/// A causal-LM task on random rows of `seq` tokens (the first half prompt,
/// the rest response ending in EOS; ids `3 + h(seed, split, row, i) mod
/// (V - 3)` with the hash of `scripts/torch_llm.py`), with a model of a
/// named shape and random weights (drawn on the host from `seed`, the same
/// on every backend), or a Hugging Face directory's.
#[derive(Debug, Clone)]
pub struct SyntheticLmTask {
    /// The preset's name (or the model directory's path).
    pub preset: String,
    /// The model directory whose weights to load (`None`: random weights).
    pub model_dir: Option<std::path::PathBuf>,
    /// Its shape.
    pub model: LlamaConfig,
    /// Keep only the first `n` layers.
    pub layers: Option<usize>,
    /// Tokens per row.
    pub seq: usize,
    /// Training rows.
    pub train_rows: usize,
    /// Evaluation rows.
    pub test_rows: usize,
    /// Seed of the weights and rows.
    pub seed: u64,
    /// The dtype of the frozen base's matrices.
    pub base_dtype: BaseDtype,
    /// Standard deviation of the random base's matrix entries.
    pub init_std: f32,
}

impl SyntheticLmTask {
    /// The task on preset `name` (see [`PRESETS`]).
    pub fn new(
        name: &str,
        seq: usize,
        train_rows: usize,
        test_rows: usize,
        seed: u64,
    ) -> Result<Self, RunError> {
        let model = LlamaConfig::preset(name).ok_or_else(|| {
            RunError::invalid(
                Setting::Task("config"),
                format!(
                    "unknown model config `{name}`; known: {}",
                    PRESETS.join(", ")
                ),
            )
        })?;
        Ok(Self::of(
            name.to_string(),
            None,
            model,
            seq,
            train_rows,
            test_rows,
            seed,
        ))
    }

    /// The task on the model at `dir` (a Hugging Face directory or a GGUF
    /// file: its config and weights).
    pub fn from_dir(
        dir: &std::path::Path,
        seq: usize,
        train_rows: usize,
        test_rows: usize,
        seed: u64,
    ) -> Result<Self, RunError> {
        let model = crate::models::llama::LlamaCheckpoint::open(dir)
            .and_then(|c| c.config())
            .map_err(crate::tasks::load_error)?;
        let name = dir.display().to_string();
        Ok(Self::of(
            name,
            Some(dir.to_path_buf()),
            model,
            seq,
            train_rows,
            test_rows,
            seed,
        ))
    }

    /// All layers, an f32 base, random entries of the default deviation.
    fn of(
        preset: String,
        model_dir: Option<std::path::PathBuf>,
        model: LlamaConfig,
        seq: usize,
        train_rows: usize,
        test_rows: usize,
        seed: u64,
    ) -> Self {
        Self {
            preset,
            model_dir,
            model,
            layers: None,
            seq,
            train_rows,
            test_rows,
            seed,
            base_dtype: BaseDtype::F32,
            init_std: RandomWeights::new(seed).std,
        }
    }

    fn rows(&self, n: usize, stream: u64) -> Vec<SftExample> {
        let v = self.model.vocab_size as u64;
        let eos = self.model.eos_ids()[0];
        let prompt_len = (self.seq / 2).max(1);
        (0..n)
            .map(|row| {
                let mut ids: Vec<u32> = (0..self.seq - 1)
                    .map(|i| {
                        let mut z = self.seed ^ (stream << 48) ^ ((row as u64) << 24) ^ i as u64;
                        z = z.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        z ^= z >> 29;
                        z = z.wrapping_mul(0xbf58_476d_1ce4_e5b9);
                        z ^= z >> 32;
                        (3 + z % (v - 3)) as u32
                    })
                    .collect();
                ids.push(eos);
                SftExample {
                    ids,
                    prompt_len,
                    reference: String::new(),
                    group: None,
                }
            })
            .collect()
    }
}

impl Task for SyntheticLmTask {
    type Item = SftExample;
    type Meta = ();
    type Model = LlamaForCausalLm;
    type Batcher = SftBatcher;

    /// The loss is a mean over scored tokens (response and EOS).
    fn loss_terms(item: &SftExample) -> usize {
        item.target_count()
    }

    fn name(&self) -> &str {
        "causal-lm"
    }

    fn settings(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("config".into(), self.preset.clone().into());
        map.insert("seq".into(), self.seq.into());
        map.insert("base_dtype".into(), self.base_dtype.to_string().into());
        map
    }

    fn default_targets(&self) -> Vec<String> {
        DEFAULT_TARGETS.iter().map(|t| t.to_string()).collect()
    }

    fn check(&self) -> Result<(), RunError> {
        if self.seq < 2 || self.seq > self.model.max_position_embeddings {
            return Err(RunError::invalid(
                Setting::Task("seq"),
                format!(
                    "must be between 2 and the model's {} positions, got {}",
                    self.model.max_position_embeddings, self.seq
                ),
            ));
        }
        Ok(())
    }

    fn prepare(&self) -> Result<TaskData<SftExample, ()>, RunError> {
        Ok(TaskData {
            train: self.rows(self.train_rows, 1),
            test: self.rows(self.test_rows, 2),
            meta: (),
        })
    }

    fn batcher(&self) -> SftBatcher {
        SftBatcher { pad_id: 0 }
    }

    fn build_model(
        &self,
        _meta: &(),
        injection: &Injection,
        device: &Device,
    ) -> Result<LlamaForCausalLm, RunError> {
        super::task::check_dtype(self.base_dtype, device)?;
        let model = match &self.model_dir {
            Some(dir) => LlamaForCausalLm::from_pretrained(
                dir,
                self.layers,
                Some(injection),
                self.base_dtype,
                device,
            )
            .map(|(model, _)| model),
            None => LlamaForCausalLm::from_source(
                &RandomWeights {
                    seed: self.seed,
                    std: self.init_std,
                },
                &self.model,
                self.layers,
                Some(injection),
                self.base_dtype,
                device,
            ),
        }
        .map_err(crate::tasks::load_error)?;
        // Every backend starts from the same adapters: A drawn on the host.
        Ok(model.map(&mut HostAdapterInit {
            path: Vec::new(),
            seed: self.seed,
        }))
    }

    fn score_name(&self) -> &str {
        "token_accuracy"
    }
}

/// Replaces every adapter's `A` (`[d_in, R]`) with values drawn on the host
/// from the seed and the adapter's module path, uniform on `±1/√R` (the
/// reference initialisation), so that every backend trains the same model.
struct HostAdapterInit {
    path: Vec<String>,
    seed: u64,
}

impl ModuleMapper for HostAdapterInit {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.path.last().map(String::as_str) != Some("lora_a") || D != 2 {
            return param;
        }
        let name = self.path.join(".");
        let seed = self.seed;
        param.map(|t| {
            let dims = t.dims();
            let r = dims[D - 1].max(1);
            let source = RandomWeights {
                seed,
                std: (1.0 / (3.0 * r as f32)).sqrt(),
            };
            let Ok(values) = source.read_f32(&name, &dims) else {
                return t;
            };
            let fresh = Tensor::<D>::from_data(TensorData::new(values, dims), &t.device());
            if t.is_require_grad() {
                fresh.require_grad()
            } else {
                fresh
            }
        })
    }
}

/// What to run: `warmup + steps` training steps at batch `batch` x `seq`.
#[derive(Debug, Clone)]
pub struct LlmBench {
    /// A preset of [`PRESETS`].
    pub config: String,
    /// A model directory to load instead of the preset's random weights.
    pub model: Option<std::path::PathBuf>,
    /// Rows per step.
    pub batch: usize,
    /// Tokens per row.
    pub seq: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// `R` (`S`: powers of two up to it).
    pub rank: usize,
    /// The method.
    pub method: TrainMethod,
    /// The backend.
    pub backend: BackendKind,
    /// Keep only the first `n` layers.
    pub layers: Option<usize>,
    /// The device's dense peak (TFLOP/s) for the utilisation figure.
    pub peak_tflops: Option<f64>,
    /// Seed of the weights and rows.
    pub seed: u64,
    /// The dtype of the frozen base's matrices.
    pub base_dtype: BaseDtype,
    /// Peak learning rate.
    pub lr: f64,
    /// Standard deviation of the random base's entries (`None`: 0.02).
    pub init_std: Option<f32>,
    /// Data-parallel devices, how they train, and accumulation (`batch` is
    /// the global batch).
    pub execution: Execution,
}

/// What [`LlmBench::run`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct LlmBenchResult {
    /// `llm`.
    pub bench: &'static str,
    /// The preset.
    pub config: String,
    /// Layers built.
    pub layers: usize,
    /// The method.
    pub method: TrainMethod,
    /// The backend.
    pub backend: BackendKind,
    /// Data-parallel devices (empty: one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceSpec>,
    /// Micro-batches accumulated per device per step.
    pub grad_accum: usize,
    /// The dtype of the frozen base's matrices.
    pub base_dtype: BaseDtype,
    /// Rows per step (all devices).
    pub batch: usize,
    /// Tokens per row.
    pub seq: usize,
    /// `R`.
    pub rank: usize,
    /// Untimed steps.
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Frozen base parameters.
    pub base_params: usize,
    /// Trainable adapter parameters.
    pub adapter_params: usize,
    /// Mean wall ms of the timed steps.
    pub ms_per_step: f64,
    /// Tokens (batch x seq) per second.
    pub tokens_per_s: f64,
    /// Model FLOPs of one step (see [`step_flops`]).
    pub tflop_per_step: f64,
    /// Achieved TFLOP/s.
    pub tflops: f64,
    /// `tflops / peak_tflops` when the peak is given.
    pub mfu: Option<f64>,
    /// Peak resident host memory (MiB).
    pub peak_rss_mb: f64,
    /// The measured rate of one dense matmul of the step's largest shape
    /// (`[B T, d] x [d, F]`, the MLP's, in the base dtype) on the device,
    /// best of 5 (GFLOP/s).
    pub gemm_gflops: f64,
    /// The step's FLOPs at that rate on every device: the time no step of
    /// this size can beat on this machine (ms).
    pub matmul_floor_ms: f64,
    /// Device memory burn's allocator holds after the run (MiB): its pools
    /// keep the pages they grew to, so this is the run's peak to within a
    /// pool page. `None` on backends that do not report it (the CPU ones).
    pub device_reserved_mb: Option<f64>,
    /// What [`MemoryPlan`]'s formula says the first device holds (MiB).
    pub formula_mb: f64,
    /// The ranks evaluated after training (on `batch` held-out rows).
    pub ranks: Vec<usize>,
    /// The held-out response loss at each rank (the GPU check compares these
    /// across backends: same host-drawn weights, adapters and rows).
    pub loss: Vec<f64>,
}

/// The FLOPs of one training step with frozen base weights:
/// `4 P N` for the frozen projections (forward, and input gradients
/// backward; no weight gradients), `6 P_a N` for the adapters, `12 L B T² H hd`
/// for the attention products (forward 2 + 2, backward twice that; causal
/// halves are computed in full) and `4 d V n_s` for the output projection
/// on the `n_s` scored tokens. `P`: projection parameters of all layers;
/// `P_a = Σ R (d_in + d_out)`; `N = B T`.
pub fn step_flops(
    model: &LlamaConfig,
    layers: usize,
    batch: usize,
    seq: usize,
    scored: usize,
    rank: usize,
) -> f64 {
    let (d, f, v) = (
        model.hidden_size as f64,
        model.intermediate_size as f64,
        model.vocab_size as f64,
    );
    let hd = model.head_size() as f64;
    let (q, kv) = (
        model.num_attention_heads as f64 * hd,
        model.kv_heads() as f64 * hd,
    );
    let l = layers as f64;
    let n = (batch * seq) as f64;
    let projections = l * (d * q + 2.0 * d * kv + q * d + 3.0 * d * f);
    let r = rank as f64;
    let adapters = l * r * ((d + q) + 2.0 * (d + kv) + (q + d) + 2.0 * (d + f) + (f + d));
    let attention = 12.0 * l * batch as f64 * (seq as f64).powi(2) * q;
    4.0 * projections * n + 6.0 * adapters * n + attention + 4.0 * d * v * scored as f64
}

/// GFLOP/s of `[m, k] x [k, n]` matmuls in `dtype` on `device`: one
/// warm-up, then the best of 5, each read back (so a GPU's queue is counted).
pub fn gemm_rate(device: &Device, [m, k, n]: [usize; 3], dtype: BaseDtype) -> f64 {
    let held = |t: Tensor<2>| match dtype {
        BaseDtype::F32 => t,
        other => t.cast(other.dtype()),
    };
    let a = held(Tensor::<2>::random(
        [m, k],
        burn::tensor::Distribution::Default,
        device,
    ));
    let b = held(Tensor::<2>::random(
        [k, n],
        burn::tensor::Distribution::Default,
        device,
    ));
    let once = || {
        let started = std::time::Instant::now();
        let c = a.clone().matmul(b.clone());
        let _ = c.sum().into_data();
        started.elapsed().as_secs_f64()
    };
    once();
    let best = (0..5).map(|_| once()).fold(f64::INFINITY, f64::min);
    2.0 * (m * k * n) as f64 / best.max(1e-9) / 1e9
}

impl LlmBench {
    /// Trains `warmup + steps` steps and measures them.
    pub fn run(&self) -> Result<LlmBenchResult, RunError> {
        if self.steps == 0 {
            return Err(RunError::invalid(
                Setting::Task("steps"),
                "must be at least 1",
            ));
        }
        let rows = self.batch * (self.steps + self.warmup);
        let mut task = match &self.model {
            Some(dir) => SyntheticLmTask::from_dir(dir, self.seq, rows, self.batch, self.seed)?,
            None => SyntheticLmTask::new(&self.config, self.seq, rows, self.batch, self.seed)?,
        };
        task.layers = self.layers;
        task.base_dtype = self.base_dtype;
        if let Some(std) = self.init_std {
            task.init_std = std;
        }
        let layers = self.layers.unwrap_or(task.model.num_hidden_layers);
        let train = TrainConfig {
            backend: self.backend,
            batch: self.batch,
            eval_batch: self.batch,
            seed: self.seed,
            lr: self.lr,
            ..TrainConfig::default()
        }
        .with_max_rank(self.rank)?
        .with_method(self.method);
        let train = self.execution.apply(train);
        let model = task.model.clone();
        let runner = Runner::new(task, train)?.quiet(true);
        let data = runner.prepare()?;
        let outcome = runner.train(&data)?;
        let ms_per_step = outcome
            .times
            .steady_ms_per_step(self.warmup)
            .ok_or_else(|| RunError::Failed("no timed training steps were recorded".into()))?;
        let scored: usize = data.train[..self.batch]
            .iter()
            .map(|e| e.target_count())
            .sum();
        let flops = step_flops(&model, layers, self.batch, self.seq, scored, self.rank);
        let config = runner.config();
        let pieces = config.workers() * config.grad_accum;
        let (first_device, _) = MemoryPlan {
            model: &model,
            layers: Some(layers),
            rank: self.rank,
            base_dtype: self.base_dtype,
            rows: self.batch / pieces,
            seq: self.seq,
            scored: scored / self.batch,
            devices: config.workers(),
            strategy: config.strategy,
        }
        .per_device();
        let tflops = flops / (ms_per_step / 1000.0) / 1e12;
        let device = runner.device()?;
        let gemm_gflops = gemm_rate(
            &device,
            [
                self.batch / pieces * self.seq,
                model.hidden_size,
                model.intermediate_size,
            ],
            self.base_dtype,
        );
        let matmul_floor_ms = flops / (gemm_gflops * 1e9 * config.workers() as f64) * 1000.0;
        let hd = model.head_size();
        let (d, f) = (model.hidden_size, model.intermediate_size);
        let (q, kv) = (model.num_attention_heads * hd, model.kv_heads() * hd);
        let adapter_params =
            layers * self.rank * ((d + q) + 2 * (d + kv) + (q + d) + 2 * (d + f) + (f + d));
        Ok(LlmBenchResult {
            bench: "llm",
            config: runner.task().preset.clone(),
            layers,
            method: self.method,
            backend: runner.config().backend,
            devices: runner.config().devices.clone(),
            grad_accum: runner.config().grad_accum,
            base_dtype: self.base_dtype,
            batch: self.batch,
            seq: self.seq,
            rank: self.rank,
            warmup: self.warmup,
            steps: self.steps,
            base_params: model.parameter_count_with(layers),
            adapter_params,
            ms_per_step,
            tokens_per_s: (self.batch * self.seq) as f64 / (ms_per_step / 1000.0),
            tflop_per_step: flops / 1e12,
            tflops,
            // the peak of every device that trained
            mfu: self
                .peak_tflops
                .map(|p| tflops / (p * runner.config().workers() as f64)),
            peak_rss_mb: outcome.report.peak_rss_mb,
            gemm_gflops,
            matmul_floor_ms,
            device_reserved_mb: device
                .memory_pool_usage()
                .map(|u| u.bytes_reserved as f64 / (1024.0 * 1024.0)),
            formula_mb: first_device.total() / (1024.0 * 1024.0),
            ranks: outcome.report.ranks.clone(),
            loss: outcome.report.series("loss").unwrap_or_default().to_vec(),
        })
    }
}
