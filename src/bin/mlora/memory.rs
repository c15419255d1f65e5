//! `mlora memory`: the memory formula's bytes per device for each rank and
//! base dtype (README, "Scaling").

use super::cli::MemoryArgs;
use super::failure::{Failure, bad};
use matryoshka_lora::models::BaseDtype;
use matryoshka_lora::models::llama::{LlamaCheckpoint, LlamaConfig, PRESETS};
use matryoshka_lora::tasks::causal_lm::{DeviceMemory, MemoryPlan};

/// `mlora memory`: the formula's bytes per device for each rank and dtype.
pub fn memory_cmd(args: MemoryArgs) -> Result<(), Failure> {
    let model = match &args.model {
        Some(dir) => LlamaCheckpoint::open(dir)
            .and_then(|c| c.config())
            .map_err(|e| bad("--model", e))?,
        None => LlamaConfig::preset(&args.config).ok_or_else(|| {
            bad(
                "--config",
                format!(
                    "unknown model shape `{}`: use one of {}",
                    args.config,
                    PRESETS.join(", ")
                ),
            )
        })?,
    };
    let devices = args.devices.as_ref().map_or(1, |d| d.0.len());
    let pieces = devices * args.grad_accum;
    if args.grad_accum == 0 {
        return Err(bad("--grad-accum", "must be at least 1, got 0"));
    }
    if args.batch == 0 || !args.batch.is_multiple_of(pieces) {
        return Err(bad(
            "--batch",
            format!(
                "must be a positive multiple of {pieces} ({devices} devices x {} accumulation steps)",
                args.grad_accum
            ),
        ));
    }
    let scored = args.scored.unwrap_or(args.seq / 2);
    if scored > args.seq {
        return Err(bad(
            "--scored",
            format!("at most --seq ({}), got {scored}", args.seq),
        ));
    }
    let mut rows = Vec::new();
    for &rank in &args.rank {
        if rank == 0 {
            return Err(bad("--rank", "must be at least 1"));
        }
        for &base_dtype in &args.base_dtype {
            let plan = MemoryPlan {
                model: &model,
                layers: None,
                rank,
                base_dtype,
                rows: args.batch / pieces,
                seq: args.seq,
                scored,
                devices,
                strategy: args.strategy,
            };
            let (first, other) = plan.per_device();
            rows.push(MemoryRow {
                rank,
                base_dtype,
                adapter_params: plan.adapter_params(),
                rows_per_device: plan.rows,
                first_device_gib: Gib::of(first),
                other_device_total_gib: (devices > 1).then(|| Gib::of(other).total),
            });
        }
    }
    args.print.emit(&rows, || {
        let mut text = format!(
            "{} ({} layers, {:.2} B base parameters), {} device(s), {}, {} row(s) x {} tokens ({} scored) per device per micro-batch:\n",
            args.model.as_ref().map_or(args.config.clone(), |d| d.display().to_string()),
            model.num_hidden_layers,
            model.parameter_count() as f64 / 1e9,
            devices,
            args.strategy,
            args.batch / pieces,
            args.seq,
            scored
        );
        text.push_str("   R | base |  adapter params |  base GiB | adapters GiB | activations GiB | logits GiB | attention GiB | first device GiB | other devices GiB\n");
        for r in &rows {
            let f = &r.first_device_gib;
            text.push_str(&format!(
                "{:>4} | {:>4} | {:>15} | {:>9.2} | {:>12.2} | {:>15.2} | {:>10.2} | {:>13.2} | {:>16.2} | {:>17}\n",
                r.rank,
                r.base_dtype.to_string(),
                r.adapter_params,
                f.parts.base,
                f.parts.adapters,
                f.parts.activations,
                f.parts.logits,
                f.parts.workspace,
                f.total,
                r.other_device_total_gib.map_or("-".to_string(), |g| format!("{g:.2}")),
            ));
        }
        text.trim_end().to_string()
    });
    Ok(())
}

/// One line of `mlora memory`: a rank and base dtype.
#[derive(serde::Serialize)]
struct MemoryRow {
    rank: usize,
    base_dtype: BaseDtype,
    adapter_params: usize,
    rows_per_device: usize,
    first_device_gib: Gib,
    other_device_total_gib: Option<f64>,
}

/// A device's memory in GiB, by part and in all.
#[derive(serde::Serialize)]
struct Gib {
    #[serde(flatten)]
    parts: DeviceMemory,
    total: f64,
}

impl Gib {
    fn of(bytes: DeviceMemory) -> Self {
        let gib = |b: f64| b / f64::from(1u32 << 30);
        Self {
            parts: DeviceMemory {
                base: gib(bytes.base),
                adapters: gib(bytes.adapters),
                activations: gib(bytes.activations),
                logits: gib(bytes.logits),
                workspace: gib(bytes.workspace),
            },
            total: gib(bytes.total()),
        }
    }
}
