//! One function per subcommand: settings from the flags, the library's
//! runner and artifact functions, printing.

use super::args::{OutArgs, ParallelArgs, PrintArgs, RunArgs, check_sampled_flags};
use super::cli::{BenchLlmArgs, BenchRtArgs};
use super::data_args::{EvalDataArgs, TaskKind};
use super::failure::{Failure, bad, stopped};
use super::output::{DataSummary, print_data};
use burn::train::Interrupter;
use matryoshka_lora::io::{REPORT_FILE, ensure_writable_dir};
use matryoshka_lora::report::{Report, RunConfig};
use matryoshka_lora::tasks::causal_lm::{CausalLmConfig, CausalLmTask, LlmBench};
use matryoshka_lora::tasks::classify::{ClassifyConfig, ClassifyTask, RtBench};
use matryoshka_lora::train::{
    Comparison, Execution, RunError, Runner, Task, TaskData, TrainConfig, TrainingState,
};
use matryoshka_lora::{BackendKind, DeviceSpec};
use std::path::{Path, PathBuf};

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
pub(crate) fn with_out(
    out: &OutArgs,
    work: impl FnOnce() -> Result<(), Failure>,
) -> Result<(), Failure> {
    let created = check_out(out)?;
    let result = work();
    if let (Err(Failure { code: 2, .. }), Some(dir)) = (&result, created) {
        let _ = std::fs::remove_dir(dir);
    }
    result
}

pub fn train_cmd(run: RunArgs, resume: Option<PathBuf>, out: OutArgs) -> Result<(), Failure> {
    check_sampled_flags(&[run.method], run.rank_samples, run.sample_max)?;
    let quiet = out.print.quiet_progress();
    if let Some(dir) = resume {
        return resume_cmd(&dir, &run, &out.print);
    }
    match run.task {
        TaskKind::Classify => {
            let task = ClassifyTask::new(run.classify_settings()?);
            train_task(run.runner(task, quiet, out.out.as_ref())?, &out)
        }
        TaskKind::CausalLm => {
            let task = CausalLmTask::new(run.causal_lm_settings()?);
            train_task(run.runner(task, quiet, out.out.as_ref())?, &out)
        }
    }
}

/// The runner's data (`for_training`: with the training split's checks,
/// else for evaluation only), its summary line unless `quiet`, and its
/// warnings (labels without test rows, test rows seen in training) always.
pub(crate) fn prepared<T: Task>(
    runner: &Runner<T>,
    quiet: bool,
    for_training: bool,
) -> Result<TaskData<T::Item, T::Meta>, RunError>
where
    TaskData<T::Item, T::Meta>: DataSummary,
{
    let data = if for_training {
        runner.prepare()?
    } else {
        runner.prepare_eval()?
    };
    if !quiet {
        print_data(&data);
    }
    for warning in runner.data_warnings(&data) {
        eprintln!("{warning}");
    }
    Ok(data)
}

fn train_task<T: Task>(runner: Runner<T>, out: &OutArgs) -> Result<(), Failure>
where
    TaskData<T::Item, T::Meta>: DataSummary,
{
    let quiet = out.print.quiet_progress();
    stop_on_ctrl_c(runner.interrupter());
    with_out(out, || {
        let data = prepared(&runner, quiet, true)?;
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
fn resume_cmd(dir: &Path, run: &RunArgs, print: &PrintArgs) -> Result<(), Failure> {
    let mut state = TrainingState::read(dir)
        .map_err(|e| bad("--resume", e))?
        .ok_or_else(|| {
            bad(
                "--resume",
                format!("{} holds no interrupted run to resume", dir.display()),
            )
        })?;
    // Where it continues may change (the steps are the same).
    run.apply_execution(&mut state.config.train)?;
    // A causal-LM run's settings have the prompt field; a classifier's do not.
    if state.config.task.contains_key("prompt_field") {
        let task: CausalLmConfig = state
            .config
            .task_settings()
            .map_err(|e| bad("--resume", format!("not a causal-LM run: {e}")))?;
        resume_task(CausalLmTask::new(task), state, dir, print)
    } else {
        let task: ClassifyConfig = state
            .config
            .task_settings()
            .map_err(|e| bad("--resume", format!("not a classification run: {e}")))?;
        resume_task(ClassifyTask::new(task), state, dir, print)
    }
}

fn resume_task<T: Task>(
    task: T,
    state: TrainingState,
    dir: &Path,
    print: &PrintArgs,
) -> Result<(), Failure>
where
    TaskData<T::Item, T::Meta>: DataSummary,
{
    let runner = Runner::new(task, state.config.train.clone())?
        .quiet(print.quiet_progress())
        .checkpoint_into(dir, state.checkpoint_every)
        .resume(true);
    stop_on_ctrl_c(runner.interrupter());
    let data = prepared(&runner, print.quiet_progress(), true)?;
    let outcome = runner.train(&data).map_err(|e| stopped(e, Some(dir)))?;
    runner.save(dir, &outcome.report, Some(&outcome.model))?;
    print.print(std::slice::from_ref(&outcome.report));
    Ok(())
}

/// Ctrl-C stops training at the next step boundary (leaving its last
/// checkpoint to resume from); a second Ctrl-C quits at once.
pub(crate) fn stop_on_ctrl_c(interrupter: Interrupter) {
    let pressed = std::sync::atomic::AtomicBool::new(false);
    let _ = ctrlc::set_handler(move || {
        if pressed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping at the next step (Ctrl-C again to quit at once)");
        interrupter.stop(Some("interrupted (Ctrl-C)"));
    });
}

/// `eval`'s flags.
pub struct EvalArgs {
    pub adapter: Option<PathBuf>,
    pub task: Option<TaskKind>,
    pub data: EvalDataArgs,
    pub eval_batch: Option<usize>,
    pub backend: Option<BackendKind>,
    pub layers: Option<usize>,
    pub out: Option<PathBuf>,
    pub tolerance: f64,
    pub print: PrintArgs,
}

pub fn eval_cmd(args: EvalArgs) -> Result<(), Failure> {
    let Some(adapter) = args.adapter.clone() else {
        return eval_base_cmd(args);
    };
    if args.layers.is_some() {
        return Err(bad(
            "--layers",
            "is the saved run's with --adapter (drop the flag)",
        ));
    }
    let saved = Report::read(&adapter.join(REPORT_FILE)).map_err(|e| bad("--adapter", e))?;
    let kind = TaskKind::of_name(&saved.task).ok_or_else(|| {
        bad(
            "--adapter",
            format!(
                "{} is a run of an unknown task `{}`",
                adapter.display(),
                saved.task
            ),
        )
    })?;
    if let Some(task) = args.task
        && task != kind
    {
        return Err(bad(
            "--task",
            format!("the run in {} is a {} run", adapter.display(), saved.task),
        ));
    }
    args.data.rest.check_task(kind)?;
    let not_a = |what: &str, e: serde_json::Error| {
        bad(
            "--adapter",
            format!("{} is not a {what} run: {e}", adapter.display()),
        )
    };
    match kind {
        TaskKind::Classify => {
            let mut task: ClassifyConfig = saved
                .config
                .task_settings()
                .map_err(|e| not_a("classification", e))?;
            if let Some(model) = args.data.model.clone() {
                task.model = model;
            }
            if let Some(data) = args.data.data.clone() {
                task.data = data;
            }
            args.data.rest.apply(&mut task);
            eval_saved(ClassifyTask::new(task), &saved, &adapter, &args)
        }
        TaskKind::CausalLm => {
            let mut task: CausalLmConfig = saved
                .config
                .task_settings()
                .map_err(|e| not_a("causal-LM", e))?;
            if let Some(model) = args.data.model.clone() {
                task.model = model;
            }
            if let Some(data) = args.data.data.clone() {
                task.data = data;
            }
            args.data.rest.apply_lm(&mut task);
            eval_saved(CausalLmTask::new(task), &saved, &adapter, &args)
        }
    }
}

fn eval_saved<T: Task>(
    task: T,
    saved: &Report,
    adapter: &Path,
    args: &EvalArgs,
) -> Result<(), Failure>
where
    TaskData<T::Item, T::Meta>: DataSummary,
{
    let print = &args.print;
    let mut train = saved.config.train.clone();
    if let Some(b) = args.eval_batch {
        train.eval_batch = b;
    }
    if let Some(b) = args.backend {
        train.backend = b;
    }
    if !print.quiet {
        let now = RunConfig {
            train: train.clone(),
            task: task.settings(),
        };
        for note in overridden(&saved.config, &now) {
            eprintln!("note: {note}");
        }
    }
    let runner = Runner::new(task, train)?
        .quiet(print.quiet_progress())
        .tolerance(args.tolerance);
    let data = prepared(&runner, print.quiet, false)?;
    let (report, model) = runner.evaluate_saved(adapter, &data)?;
    if let Some(out) = &args.out {
        runner.save(out, &report, Some(&model))?;
    }
    print.print(std::slice::from_ref(&report));
    Ok(())
}

/// `eval --task causal-lm` without `--adapter`: the base model alone.
fn eval_base_cmd(args: EvalArgs) -> Result<(), Failure> {
    match args.task {
        Some(TaskKind::CausalLm) => {}
        Some(TaskKind::Classify) => {
            return Err(bad(
                "--adapter",
                "a classifier's head is trained with its adapter: give the run to evaluate",
            ));
        }
        None => {
            return Err(bad(
                "--adapter",
                "give the run to evaluate (or --task causal-lm --model DIR --data FILE for the base model alone)",
            ));
        }
    }
    if args.out.is_some() {
        return Err(bad(
            "--out",
            "there is no adapter to save without --adapter",
        ));
    }
    args.data.rest.check_task(TaskKind::CausalLm)?;
    let model = args.data.model.clone().ok_or_else(|| {
        bad(
            "--model",
            "the base model (directory or GGUF file) is needed without --adapter",
        )
    })?;
    let data = args.data.data.clone().ok_or_else(|| {
        bad(
            "--data",
            "a JSONL file of prompt/response (or question/answer) rows is needed",
        )
    })?;
    let mut task = CausalLmConfig::new(model, data);
    args.data.rest.apply_lm(&mut task);
    task.layers = args.layers;
    let mut train = TrainConfig::default();
    if let Some(b) = args.eval_batch {
        train.eval_batch = b;
    }
    if let Some(b) = args.backend {
        train.backend = b;
    }
    let print = &args.print;
    let runner = Runner::new(CausalLmTask::new(task), train)?.quiet(print.quiet_progress());
    let data = prepared(&runner, print.quiet, false)?;
    let report = runner.evaluate_base(&data)?;
    print.emit(&report, || {
        let figures: Vec<String> = report
            .base
            .iter()
            .map(|(name, value)| format!("{name} {value:.4}"))
            .collect();
        format!(
            "base model on {} test rows: {} ({:.1} s)",
            report.examples,
            figures.join(", "),
            report.eval_seconds
        )
    });
    Ok(())
}

pub fn bench_llm_cmd(args: BenchLlmArgs) -> Result<(), Failure> {
    args.check()?;
    let (backend, execution) = execution_of(args.backend, &args.parallel)?;
    let result = LlmBench {
        config: args.config.clone(),
        model: args.model.clone(),
        batch: args.batch,
        seq: args.seq,
        steps: args.steps,
        warmup: args.warmup,
        rank: args.rank,
        method: args.method,
        backend,
        layers: args.layers,
        peak_tflops: args.peak_tflops,
        seed: args.seed,
        base_dtype: args.base_dtype,
        lr: args.lr,
        init_std: args.init_std,
        execution,
    }
    .run()?;
    args.print.emit(&result, || {
        let mfu = match result.mfu {
            Some(m) => format!(", MFU {:.1}%", 100.0 * m),
            None => String::new(),
        };
        let device = match result.device_reserved_mb {
            Some(mb) => format!(", device memory {mb:.0} MiB"),
            None => String::new(),
        };
        format!(
            "llm {} ({} layers, base {}) {} on {}: batch {} x {} tokens, R = {}: {:.1} ms/step, {:.0} tokens/s, {:.2} GFLOP/step = {:.3} TFLOP/s{mfu}; matmul floor {:.1} ms at {:.0} GFLOP/s (step = {:.2}x floor), peak RSS {:.0} MiB{device} (formula: {:.0} MiB)",
            result.config,
            result.layers,
            result.base_dtype,
            result.method,
            placement(&result.backend, &result.devices, result.grad_accum),
            result.batch,
            result.seq,
            result.rank,
            result.ms_per_step,
            result.tokens_per_s,
            1000.0 * result.tflop_per_step,
            result.tflops,
            result.matmul_floor_ms,
            result.gemm_gflops,
            result.ms_per_step / result.matmul_floor_ms,
            result.peak_rss_mb,
            result.formula_mb
        )
    });
    Ok(())
}

/// Where a bench ran: `flex`, `cuda:0,cuda:1`, with `(accumulating N)`.
fn placement(backend: &BackendKind, devices: &[DeviceSpec], grad_accum: usize) -> String {
    let on = if devices.is_empty() {
        backend.to_string()
    } else {
        devices
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    if grad_accum > 1 {
        format!("{on} (accumulating {grad_accum})")
    } else {
        on
    }
}

/// A bench's backend and execution settings from its flags.
fn execution_of(
    backend: BackendKind,
    parallel: &ParallelArgs,
) -> Result<(BackendKind, Execution), Failure> {
    let mut train = TrainConfig::default();
    parallel.apply(Some(backend), &mut train)?;
    Ok((train.backend, Execution::of(&train)))
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

pub fn bench_rt_cmd(args: BenchRtArgs) -> Result<(), Failure> {
    if args.steps == 0 {
        return Err(bad("--steps", "must be at least 1"));
    }
    check_sampled_flags(&[args.method], args.rank_samples, args.sample_max)?;
    let (backend, execution) = execution_of(args.backend, &args.parallel)?;
    let result = RtBench {
        steps: args.steps,
        warmup: args.warmup,
        method: args.method,
        backend,
        model: args.model,
        test_n: args.test_n,
        layers: args.layers,
        batch: args.batch,
        rank_samples: args.rank_samples,
        sample_max: args.sample_max,
        execution,
    }
    .run()?;
    args.print.emit(&result, || {
        format!(
            "rt {} on {}: {:.1} ms/step ({} steps after {} warm-up), eval of {} rows at {} ranks {:.2} s, peak RSS {:.0} MiB",
            result.method,
            placement(&result.backend, &result.devices, result.grad_accum),
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

pub fn plot_cmd(paths: Vec<PathBuf>, output: PathBuf, print: PrintArgs) -> Result<(), Failure> {
    // compare.json files: their mean curves with bands (the grid dashed)
    let comparisons: Vec<Comparison> = paths
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            serde_json::from_str::<Comparison>(&text).ok()
        })
        .collect();
    if !comparisons.is_empty() {
        if comparisons.len() != paths.len() {
            return Err(bad(
                "REPORTS",
                "give either report.json files or compare.json files, not both: a comparison is drawn as mean curves with bands, a report as one line",
            ));
        }
        let summary: Vec<_> = comparisons.into_iter().flat_map(|c| c.summary).collect();
        matryoshka_lora::plot::plot_summary(&summary, &output).map_err(|e| bad("-o", e))?;
        let json = serde_json::json!({"output": output, "methods": summary.len()});
        print.emit(json, || {
            format!(
                "plotted {} methods' mean curves to {}",
                summary.len(),
                output.display()
            )
        });
        return Ok(());
    }
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
