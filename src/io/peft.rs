//! Hugging Face PEFT's LoRA format, the one PEFT, vLLM and llama.cpp's LoRA
//! converter read: `adapter_config.json` and `adapter_model.safetensors` with
//! `base_model.model.<module>.lora_A.weight` `[r, in]` and `lora_B.weight`
//! `[out, r]`, scaled by `lora_alpha / r` (`lora_alpha / sqrt(r)` with
//! `use_rslora`), and fully trained modules (`modules_to_save`) as
//! `base_model.model.<module>.<param>`.
//!
//! Export writes the rank-`k` adapter of a MatryoshkaLoRA checkpoint with
//! `r = k` and `lora_alpha`/`use_rslora` chosen so that PEFT's scale is
//! `s(k)`; the Matryoshka metadata (R, S, P, method) rides in the safetensors
//! metadata, which PEFT ignores. Import reads a PEFT LoRA adapter as factors
//! in this crate's layout with PEFT's scale folded in.

use super::checkpoint::{AdapterMeta, CheckpointError, read_meta};
use super::temp_path;
use super::{sync_parent, write_atomic};
use crate::adapter::Scaling;
use crate::models::WeightFiles;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// PEFT's adapter configuration file.
pub const PEFT_CONFIG: &str = "adapter_config.json";
/// PEFT's adapter weights file.
pub const PEFT_WEIGHTS: &str = "adapter_model.safetensors";
/// The prefix PEFT gives every key (`PeftModel.base_model.model`).
pub const PEFT_PREFIX: &str = "base_model.model.";

/// Why a PEFT adapter could not be written or read.
#[derive(Debug, Error)]
pub enum PeftError {
    /// The crate's adapter could not be read.
    #[error(transparent)]
    Adapter(#[from] CheckpointError),
    /// The rank is not one the adapter has.
    #[error("rank {rank} is not in 1..={max_rank}, the adapter's ranks")]
    Rank {
        /// The rank asked for.
        rank: usize,
        /// The adapter's `R`.
        max_rank: usize,
    },
    /// The PEFT adapter uses a feature this crate does not represent.
    #[error("{path}: {feature} is not supported (a plain LoRA adapter is)")]
    Unsupported {
        /// The adapter directory.
        path: PathBuf,
        /// The feature.
        feature: String,
    },
    /// The PEFT files are malformed.
    #[error("{path} is not a PEFT LoRA adapter: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

fn io(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> PeftError + '_ {
    move |e| PeftError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The fields of `adapter_config.json` this crate writes and reads (any other
/// field of a file being read is ignored; see [`read_peft`] for the ones
/// that make an adapter unsupported).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeftConfig {
    /// `LORA`.
    pub peft_type: String,
    /// The LoRA rank `r`.
    pub r: usize,
    /// `lora_alpha`: the scale is `lora_alpha / r`, or `/ sqrt(r)` with rsLoRA.
    pub lora_alpha: f64,
    /// rsLoRA scaling.
    #[serde(default)]
    pub use_rslora: bool,
    /// The adapted modules (names or suffixes, or one regular expression).
    pub target_modules: Value,
    /// Modules trained in full and saved whole.
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// The base model.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// `none`.
    #[serde(default = "bias_none")]
    pub bias: String,
    /// Dropout (not applied in evaluation).
    #[serde(default)]
    pub lora_dropout: f64,
    /// Weights stored `[in, out]` (GPT-2's Conv1D); not supported here.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Weight-decomposed LoRA; not supported here.
    #[serde(default)]
    pub use_dora: bool,
    /// Trained biases in `lora_B`; not supported here.
    #[serde(default)]
    pub lora_bias: bool,
    /// Per-module ranks; not supported here.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, Value>,
    /// Per-module alphas; not supported here.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, Value>,
    /// Set by PEFT for saved adapters.
    #[serde(default = "yes")]
    pub inference_mode: bool,
    /// PEFT's task type (`null` for a base model of one's own).
    #[serde(default)]
    pub task_type: Option<String>,
}

fn bias_none() -> String {
    "none".into()
}

fn yes() -> bool {
    true
}

impl PeftConfig {
    /// PEFT's scale of this adapter: `lora_alpha / r` or `lora_alpha / sqrt(r)`.
    pub fn scale(&self) -> f64 {
        let r = self.r as f64;
        if self.use_rslora {
            self.lora_alpha / r.sqrt()
        } else {
            self.lora_alpha / r
        }
    }

    /// `(lora_alpha, use_rslora)` whose PEFT scale at `r = k` equals `scaling`'s `s(k)`.
    pub fn alpha_for(scaling: Scaling, k: usize) -> (f64, bool) {
        match scaling {
            Scaling::Sqrt => (1.0, true),
            Scaling::Rank => (1.0, false),
            Scaling::None => (k as f64, false),
            Scaling::Alpha(alpha) => (alpha, false),
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftExport {
    /// The configuration written.
    pub config: PeftConfig,
    /// Every tensor key written, sorted.
    pub keys: Vec<String>,
}

/// A 2-D row-major `[rows, cols]` matrix of f32, transposed.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = values[i * cols + j];
        }
    }
    out
}

/// The first `k` columns of a row-major `[rows, cols]` matrix.
fn first_columns(values: &[f32], rows: usize, cols: usize, k: usize) -> Vec<f32> {
    (0..rows)
        .flat_map(|i| values[i * cols..i * cols + k].iter().copied())
        .collect()
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// One adapted module's rank-`k` factors in PEFT's (and llama.cpp's) layout.
pub(crate) struct RankFactors {
    /// The module's name in the base model (its Hugging Face path).
    pub module: String,
    /// `lora_A = A[:, :k]^T`: `[k, d_in]`, row-major.
    pub lora_a: Vec<f32>,
    /// `lora_B = B[:k]^T`: `[d_out, k]`, row-major.
    pub lora_b: Vec<f32>,
    /// `d_in`.
    pub d_in: usize,
    /// `d_out`.
    pub d_out: usize,
}

fn read_tensor(
    adapter: &Path,
    weights: &WeightFiles,
    name: &str,
) -> Result<(Vec<f32>, Vec<usize>), PeftError> {
    let shape = weights.shape(name).ok_or_else(|| PeftError::Invalid {
        path: adapter.to_path_buf(),
        reason: format!("tensor `{name}` is missing"),
    })?;
    let values = weights
        .read_f32(name, &shape)
        .map_err(|e| io(adapter)(&e))?;
    Ok((values, shape))
}

/// The rank-`k` factors of every adapted module of the checkpoint `adapter`
/// (`meta` its metadata, `weights` its tensors), checking `k` against `R`.
pub(crate) fn rank_factors(
    adapter: &Path,
    meta: &AdapterMeta,
    weights: &WeightFiles,
    rank: usize,
) -> Result<Vec<RankFactors>, PeftError> {
    if rank == 0 || rank > meta.max_rank {
        return Err(PeftError::Rank {
            rank,
            max_rank: meta.max_rank,
        });
    }
    meta.modules
        .iter()
        .map(|(path, module)| {
            let (a, a_shape) = read_tensor(adapter, weights, &format!("{path}.lora_a"))?;
            let (b, b_shape) = read_tensor(adapter, weights, &format!("{path}.lora_b"))?;
            let (d_in, r, d_out) = (a_shape[0], a_shape[1], b_shape[1]);
            // A[:, :k] is [d_in, k]: lora_A is its transpose [k, d_in].
            let a_k = first_columns(&a, d_in, r, rank);
            Ok(RankFactors {
                module: module.clone(),
                lora_a: transpose(&a_k, d_in, rank),
                // B[:k] is [k, d_out]: lora_B is its transpose [d_out, k].
                lora_b: transpose(&b[..rank * d_out], rank, d_out),
                d_in,
                d_out,
            })
        })
        .collect()
}

/// Writes the rank-`k` adapter of the crate's checkpoint `adapter` as a PEFT
/// LoRA adapter in `out` (`adapter_config.json`, `adapter_model.safetensors`):
/// `lora_A = A[:, :k]^T`, `lora_B = B[:k]^T`, `r = k`, the scale `s(k)`
/// through `lora_alpha`/`use_rslora`, `target_modules` the adapted modules'
/// names in the base model, and the task's trainable modules as
/// `modules_to_save` (2-D `weight`s as Linear weights, `[out, in]`).
pub fn export_peft(
    adapter: &Path,
    rank: usize,
    out: &Path,
    base_model: Option<&str>,
) -> Result<PeftExport, PeftError> {
    let meta = read_meta(adapter)?;
    let weights = WeightFiles::open(adapter).map_err(|e| io(adapter)(&e))?;
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for f in rank_factors(adapter, &meta, &weights, rank)? {
        let key = |w: &str| format!("{PEFT_PREFIX}{}.{w}.weight", f.module);
        tensors.insert(key("lora_A"), (vec![rank, f.d_in], le_bytes(&f.lora_a)));
        tensors.insert(key("lora_B"), (vec![f.d_out, rank], le_bytes(&f.lora_b)));
    }
    let read = |name: &str| read_tensor(adapter, &weights, name);
    let prefixes: Vec<String> = meta
        .trainable_modules
        .iter()
        .map(|m| format!("{m}."))
        .collect();
    for name in weights.names() {
        if !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            continue;
        }
        let (values, shape) = read(&name)?;
        let (values, shape) = if shape.len() == 2 && name.ends_with(".weight") {
            // burn's Linear weight is [in, out]; PyTorch's is [out, in].
            (
                transpose(&values, shape[0], shape[1]),
                vec![shape[1], shape[0]],
            )
        } else {
            (values, shape)
        };
        tensors.insert(format!("{PEFT_PREFIX}{name}"), (shape, le_bytes(&values)));
    }
    let (lora_alpha, use_rslora) = PeftConfig::alpha_for(meta.scaling, rank);
    let mut targets: Vec<String> = meta.modules.values().cloned().collect();
    targets.sort();
    let config = PeftConfig {
        peft_type: "LORA".into(),
        r: rank,
        lora_alpha,
        use_rslora,
        target_modules: targets.into(),
        modules_to_save: (!meta.trainable_modules.is_empty())
            .then(|| meta.trainable_modules.clone()),
        base_model_name_or_path: base_model
            .map(String::from)
            .or_else(|| meta.config["model"].as_str().map(String::from)),
        bias: "none".into(),
        lora_dropout: 0.0,
        fan_in_fan_out: false,
        use_dora: false,
        lora_bias: false,
        rank_pattern: BTreeMap::new(),
        alpha_pattern: BTreeMap::new(),
        inference_mode: true,
        task_type: None,
    };
    std::fs::create_dir_all(out).map_err(|e| io(out)(&e))?;
    let mut metadata = HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert(
        "matryoshka_lora".to_string(),
        serde_json::to_string(&meta).map_err(|e| io(out)(&e))?,
    );
    metadata.insert("matryoshka_lora_rank".to_string(), rank.to_string());
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, (shape, bytes))| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| io(out)(&e))
        })
        .collect::<Result<_, _>>()?;
    let weights_path = out.join(PEFT_WEIGHTS);
    let tmp = temp_path(&weights_path);
    safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .map_err(|e| io(&weights_path)(&e))
        .and_then(|_| std::fs::rename(&tmp, &weights_path).map_err(|e| io(&weights_path)(&e)))
        .and_then(|_| sync_parent(&weights_path).map_err(|e| io(&weights_path)(&e)))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
    let json = serde_json::to_vec_pretty(&config).map_err(|e| io(out)(&e))?;
    let config_path = out.join(PEFT_CONFIG);
    write_atomic(&config_path, &json).map_err(|e| io(&config_path)(&e))?;
    Ok(PeftExport {
        config,
        keys: tensors.into_keys().collect(),
    })
}

/// One adapted module of a PEFT adapter, in this crate's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftModule {
    /// `A`: `[d_in, r]`, row-major (`lora_A^T`).
    pub a: Vec<f32>,
    /// `B`: `[r, d_out]`, row-major (`lora_B^T`), unscaled.
    pub b: Vec<f32>,
    /// `d_in`.
    pub d_input: usize,
    /// `d_out`.
    pub d_output: usize,
}

/// A PEFT LoRA adapter read into this crate's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftAdapter {
    /// Its configuration.
    pub config: PeftConfig,
    /// The adapted modules by their name in the base model (from the
    /// tensor keys, whatever form `target_modules` had).
    pub modules: BTreeMap<String, PeftModule>,
    /// The saved modules' tensors by name without PEFT's prefix (e.g.
    /// `head.weight`), in burn's layout (2-D `weight`s as Linear weights,
    /// `[in, out]`), with their shapes.
    pub saved: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Reads a PEFT LoRA adapter directory. Refuses what this crate does not
/// represent: another `peft_type`, DoRA, `fan_in_fan_out`, per-module
/// `rank_pattern`/`alpha_pattern`, and biases.
pub fn read_peft(dir: &Path) -> Result<PeftAdapter, PeftError> {
    let config_path = dir.join(PEFT_CONFIG);
    let text = std::fs::read_to_string(&config_path).map_err(|e| io(&config_path)(&e))?;
    let config: PeftConfig = serde_json::from_str(&text).map_err(|e| PeftError::Invalid {
        path: config_path.clone(),
        reason: e.to_string(),
    })?;
    let unsupported = |feature: &str| PeftError::Unsupported {
        path: dir.to_path_buf(),
        feature: feature.to_string(),
    };
    if config.peft_type != "LORA" {
        return Err(unsupported(&format!("peft_type {}", config.peft_type)));
    }
    if config.use_dora {
        return Err(unsupported("DoRA (use_dora)"));
    }
    if config.lora_bias {
        return Err(unsupported("lora_bias"));
    }
    if config.fan_in_fan_out {
        return Err(unsupported("fan_in_fan_out"));
    }
    if !config.rank_pattern.is_empty() || !config.alpha_pattern.is_empty() {
        return Err(unsupported("a per-module rank_pattern or alpha_pattern"));
    }
    if config.bias != "none" {
        return Err(unsupported(&format!("bias = {}", config.bias)));
    }
    let weights_path = dir.join(PEFT_WEIGHTS);
    let weights = WeightFiles::open(&weights_path).map_err(|e| io(&weights_path)(&e))?;
    let invalid = |reason: String| PeftError::Invalid {
        path: weights_path.clone(),
        reason,
    };
    let mut modules = BTreeMap::new();
    let mut saved = BTreeMap::new();
    let saved_prefixes: Vec<String> = config
        .modules_to_save
        .iter()
        .flatten()
        .map(|m| format!("{PEFT_PREFIX}{m}."))
        .collect();
    for name in weights.names() {
        let shape = weights.shape(&name).unwrap_or_default();
        let values = weights
            .read_f32(&name, &shape)
            .map_err(|e| invalid(e.to_string()))?;
        if let Some(module) = name
            .strip_prefix(PEFT_PREFIX)
            .and_then(|n| n.strip_suffix(".lora_A.weight"))
        {
            let b_name = format!("{PEFT_PREFIX}{module}.lora_B.weight");
            let b_shape = weights
                .shape(&b_name)
                .ok_or_else(|| invalid(format!("`{b_name}` is missing beside `{name}`")))?;
            let b = weights
                .read_f32(&b_name, &b_shape)
                .map_err(|e| invalid(e.to_string()))?;
            if shape.len() != 2
                || b_shape.len() != 2
                || shape[0] != config.r
                || b_shape[1] != config.r
            {
                return Err(invalid(format!(
                    "`{module}` has lora_A {shape:?} and lora_B {b_shape:?}, not [r, in] and [out, r] with r = {}",
                    config.r
                )));
            }
            let (r, d_input, d_output) = (shape[0], shape[1], b_shape[0]);
            modules.insert(
                module.to_string(),
                PeftModule {
                    a: transpose(&values, r, d_input),
                    b: transpose(&b, d_output, r),
                    d_input,
                    d_output,
                },
            );
        } else if name.ends_with(".lora_B.weight") {
            continue;
        } else if saved_prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            let stripped = name[PEFT_PREFIX.len()..].to_string();
            let (values, shape) = if shape.len() == 2 && stripped.ends_with(".weight") {
                (
                    transpose(&values, shape[0], shape[1]),
                    vec![shape[1], shape[0]],
                )
            } else {
                (values, shape)
            };
            saved.insert(stripped, (shape, values));
        } else {
            return Err(invalid(format!(
                "tensor `{name}` is neither a LoRA factor nor part of a module to save"
            )));
        }
    }
    if modules.is_empty() {
        return Err(invalid("no lora_A/lora_B tensors".into()));
    }
    Ok(PeftAdapter {
        config,
        modules,
        saved,
    })
}

impl PeftAdapter {
    /// The factors to load as this crate's rank-`r` adapter for `module` with
    /// scaling `scaling`: `A`, and `B` with PEFT's scale folded in
    /// (`B * scale_peft / s(r)`), so the adapter at rank `r` computes what
    /// PEFT does.
    pub fn factors(&self, module: &str, scaling: Scaling) -> Option<(Vec<f32>, Vec<f32>)> {
        let m = self.modules.get(module)?;
        let fold = (self.config.scale() / scaling.factor(self.config.r)) as f32;
        Some((m.a.clone(), m.b.iter().map(|v| v * fold).collect()))
    }

    /// The adapted modules' names (exact names in the base model).
    pub fn targets(&self) -> Vec<String> {
        self.modules.keys().cloned().collect()
    }
}

/// A compact description of `meta` for PEFT consumers, the fields a reader
/// of `adapter_model.safetensors`'s metadata needs.
pub fn matryoshka_summary(meta: &AdapterMeta) -> Value {
    serde_json::json!({
        "max_rank": meta.max_rank,
        "ranks": meta.ranks,
        "scaling": meta.scaling.to_string(),
        "method": meta.method,
    })
}
