//! Adapters as artifacts: merge into a base model, export to PEFT and to
//! llama.cpp, import from PEFT (the subcommands `merge`, `export`, `import`).

use super::args::{OutArgs, PrintArgs};
use super::commands::{prepared, with_out};
use super::data_args::{EvalDataArgs, TaskKind};
use super::failure::{Failure, bad};
use super::output::DataSummary;
use matryoshka_lora::io::{
    ADAPTER_FILE, LEGACY_ADAPTER_FILE, MergeError, PeftAdapter, PeftError, export_gguf_adapter,
    export_peft, merge_adapter, read_meta, read_peft,
};
use matryoshka_lora::models::llama::LlamaCheckpoint;
use matryoshka_lora::tasks::causal_lm::{CausalLmConfig, CausalLmTask};
use matryoshka_lora::tasks::classify::{ClassifyConfig, ClassifyTask};
use matryoshka_lora::train::{Runner, Task, TaskData, TrainConfig, TrainMethod};
use matryoshka_lora::{BackendKind, RankSet, Scaling};
use std::path::{Path, PathBuf};

/// The adapter file of a run directory (or the file itself).
pub fn adapter_file(dir: &Path) -> PathBuf {
    if dir.is_dir() {
        dir.join(ADAPTER_FILE)
    } else {
        dir.to_path_buf()
    }
}

/// The adapter file of a run directory for merging or exporting, which need
/// the module names only the current format records.
fn named_adapter(dir: &Path) -> Result<PathBuf, Failure> {
    let file = adapter_file(dir);
    if !file.is_file() && dir.join(LEGACY_ADAPTER_FILE).is_file() {
        return Err(bad(
            "--adapter",
            format!(
                "{} was saved by an earlier version ({LEGACY_ADAPTER_FILE}, without module names): write it in the current format with `mlora eval --adapter {} --out NEW`, then use NEW",
                dir.display(),
                dir.display()
            ),
        ));
    }
    Ok(file)
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

pub fn merge_cmd(
    adapter: PathBuf,
    rank: usize,
    out: PathBuf,
    model: Option<PathBuf>,
    print: PrintArgs,
) -> Result<(), Failure> {
    let file = named_adapter(&adapter)?;
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

pub fn export_cmd(
    adapter: PathBuf,
    rank: usize,
    peft: PathBuf,
    base_model: Option<String>,
    print: PrintArgs,
) -> Result<(), Failure> {
    let file = named_adapter(&adapter)?;
    let export = export_peft(&file, rank, &peft, base_model.as_deref()).map_err(export_failure)?;
    let json = serde_json::json!({"peft": peft, "config": export.config, "keys": export.keys});
    print.emit(json, || {
        format!(
            "exported rank {} (scale {:.4}) of {} adapted modules to {}",
            export.config.r,
            export.config.scale(),
            export
                .config
                .target_modules
                .as_array()
                .map(|t| t.len())
                .unwrap_or_default(),
            peft.display()
        )
    });
    Ok(())
}

/// An export's failure: a rank outside the adapter's names `--rank`, an
/// unreadable or unexportable adapter `--adapter` (exit 2); writing fails
/// with exit 1.
fn export_failure(e: PeftError) -> Failure {
    match e {
        PeftError::Rank { .. } => bad("--rank", e),
        PeftError::Adapter(_) | PeftError::Invalid { .. } | PeftError::Unsupported { .. } => {
            bad("--adapter", e)
        }
        other => Failure {
            code: 1,
            message: other.to_string(),
        },
    }
}

/// `mlora export --gguf`: the rank-k adapter as llama.cpp's LoRA adapter.
pub fn export_gguf_cmd(
    adapter: PathBuf,
    rank: usize,
    gguf: PathBuf,
    model: Option<PathBuf>,
    print: PrintArgs,
) -> Result<(), Failure> {
    let file = named_adapter(&adapter)?;
    let base = base_model(&file, model)?;
    let config = LlamaCheckpoint::open(&base)
        .and_then(|c| c.config())
        .map_err(|e| bad("--model", e))?;
    let export = export_gguf_adapter(&file, rank, &config, &gguf).map_err(export_failure)?;
    let json = serde_json::json!({
        "gguf": export.path,
        "rank": export.rank,
        "alpha": export.alpha,
        "scale": export.scale,
        "tensors": export.tensors,
    });
    print.emit(json, || {
        format!(
            "exported rank {} (scale {:.4}, adapter.lora.alpha {:.4}) of {} adapted modules to {} (llama-cli -m {} --lora {})",
            export.rank,
            export.scale,
            export.alpha,
            export.tensors.len() / 2,
            gguf.display(),
            base.display(),
            gguf.display()
        )
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn import_cmd(
    peft_dir: PathBuf,
    out: PathBuf,
    task: Option<TaskKind>,
    layers: Option<usize>,
    data_args: EvalDataArgs,
    method: TrainMethod,
    scaling: Scaling,
    backend: BackendKind,
    print: PrintArgs,
) -> Result<(), Failure> {
    let peft = read_peft(&peft_dir).map_err(|e| bad("--peft", e))?;
    let kind = task.unwrap_or(match peft.config.task_type.as_deref() {
        Some("CAUSAL_LM") => TaskKind::CausalLm,
        _ => TaskKind::Classify,
    });
    let model = data_args.model.clone().unwrap_or_else(|| {
        peft.config
            .base_model_name_or_path
            .as_ref()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("assets"))
    });
    data_args.rest.check_task(kind)?;
    if layers.is_some() && kind != TaskKind::CausalLm {
        return Err(bad("--layers", "applies to --task causal-lm only"));
    }
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
    match kind {
        TaskKind::Classify => {
            let mut task = ClassifyConfig::new(&model, data_args.data);
            data_args.rest.apply(&mut task);
            let runner = Runner::new(ClassifyTask::new(task), train)?;
            import_task(runner, &peft, &out, &print)
        }
        TaskKind::CausalLm => {
            let data = data_args.data.ok_or_else(|| {
                bad(
                    "--data",
                    "--task causal-lm needs the JSONL rows to evaluate the imported adapter on",
                )
            })?;
            let mut task = CausalLmConfig::new(model, data);
            data_args.rest.apply_lm(&mut task);
            task.layers = layers;
            let runner = Runner::new(CausalLmTask::new(task), train)?;
            import_task(runner, &peft, &out, &print)
        }
    }
}

/// Imports `peft` through `runner`'s task, evaluates every nested rank and
/// saves the run in `out`.
fn import_task<T: Task>(
    runner: Runner<T>,
    peft: &PeftAdapter,
    out: &Path,
    print: &PrintArgs,
) -> Result<(), Failure>
where
    TaskData<T::Item, T::Meta>: DataSummary,
{
    let runner = runner.quiet(print.quiet_progress());
    let out_args = OutArgs {
        out: Some(out.to_path_buf()),
        print: print.clone(),
    };
    with_out(&out_args, || {
        let data = prepared(&runner, print.quiet_progress(), false)?;
        let imported = runner.import_peft(peft, &data.meta)?;
        let report = runner.evaluate(imported.clone(), &data)?;
        runner.save(out, &report, Some(&imported))?;
        print.print(std::slice::from_ref(&report));
        Ok(())
    })
}
