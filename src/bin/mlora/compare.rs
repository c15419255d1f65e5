//! `mlora compare`: one run per method, or a comparison over runs (seeds,
//! learning rates, head modes, the rank grid), resumable.

use super::args::{DEFAULTS, OutArgs, PrintArgs, RunArgs, check_sampled_flags};
use super::commands::{prepared, stop_on_ctrl_c, with_out};
use super::data_args::TaskKind;
use super::failure::{Failure, bad, compare_stopped, stopped};
use super::output::{DataSummary, print_comparison};
use matryoshka_lora::tasks::causal_lm::{CausalLmConfig, CausalLmTask};
use matryoshka_lora::tasks::classify::{ClassifyConfig, ClassifyTask};
use matryoshka_lora::train::{
    COMPARE_STATE, CompareMethod, ComparePlan, CompareProgress, CompareState, Runner, Task,
    TaskData, TrainMethod,
};
use std::path::Path;
use std::time::Instant;

/// `compare`'s multi-seed flags.
pub struct Seeds {
    pub seeds: Option<Vec<u64>>,
    pub lrs: Option<Vec<f64>>,
    pub val_n: Option<usize>,
    pub select_on_first_seed: bool,
}

pub fn compare_cmd(
    mut run: RunArgs,
    exact: bool,
    methods: Option<Vec<CompareMethod>>,
    seeds: Seeds,
    out: OutArgs,
) -> Result<(), Failure> {
    let mut methods = methods.unwrap_or_else(|| {
        [
            TrainMethod::Lora,
            TrainMethod::Dylora,
            TrainMethod::Matryoshka,
        ]
        .map(CompareMethod::from)
        .to_vec()
    });
    let exact_method = CompareMethod::from(TrainMethod::MatryoshkaExact);
    if exact && !methods.contains(&exact_method) {
        methods.push(exact_method);
    }
    let trained: Vec<TrainMethod> = methods.iter().map(|m| m.train_method()).collect();
    check_sampled_flags(&trained, run.rank_samples, run.sample_max)?;
    // The grid, seeds, learning rates or head modes: a comparison over runs
    // (`compare_seeds`, resumable); else one run per method (`compare`).
    let many = seeds.seeds.is_some()
        || seeds.lrs.is_some()
        || run.head_mode.len() > 1
        || methods.iter().any(CompareMethod::is_grid);
    let quiet = out.print.quiet_progress();
    let head_modes = std::mem::take(&mut run.head_mode);
    let plan = ComparePlan {
        methods,
        head_modes: if head_modes.is_empty() {
            vec![DEFAULTS.head_mode]
        } else {
            head_modes
        },
        seeds: seeds.seeds.unwrap_or_else(|| vec![run.seed]),
        lrs: seeds.lrs.unwrap_or_else(|| vec![run.lr]),
        val_n: seeds.val_n,
        select_on_first_seed: seeds.select_on_first_seed,
    };
    let checkpoints = out.out.as_ref();
    match run.task {
        TaskKind::Classify => {
            let task = ClassifyTask::new(run.classify_settings()?);
            let runner = run.runner(task, quiet, checkpoints)?;
            compare_either(runner, many, plan, trained, &out)
        }
        TaskKind::CausalLm => {
            let task = CausalLmTask::new(run.causal_lm_settings()?);
            let runner = run.runner(task, quiet, checkpoints)?;
            compare_either(runner, many, plan, trained, &out)
        }
    }
}

/// A comparison over runs (`many`), or one run per method.
fn compare_either<T: Task>(
    runner: Runner<T>,
    many: bool,
    plan: ComparePlan,
    trained: Vec<TrainMethod>,
    out: &OutArgs,
) -> Result<(), Failure>
where
    TaskData<T::Item, T::Meta>: DataSummary,
{
    if many {
        compare_plan_cmd(runner, plan, out)
    } else {
        compare_task(runner, trained, out)
    }
}

/// The closing line of a comparison: wall time and peak memory.
fn print_total(started: Instant) {
    println!(
        "total {:.1} s, peak RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        matryoshka_lora::report::peak_rss_mb()
    );
}

fn compare_task<T: Task>(
    runner: Runner<T>,
    methods: Vec<TrainMethod>,
    out: &OutArgs,
) -> Result<(), Failure>
where
    TaskData<T::Item, T::Meta>: DataSummary,
{
    let quiet = out.print.quiet_progress();
    stop_on_ctrl_c(runner.interrupter());
    with_out(out, || {
        let started = Instant::now();
        let data = prepared(&runner, quiet, true)?;
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
            print_total(started);
        }
        Ok(())
    })?;
    Ok(())
}

/// `compare --resume DIR`: the comparison cut short in `dir`, continued
/// with the settings it was started with (where it trains may change), its
/// learning-rate grid widened to `lrs` when given.
pub fn compare_resume_cmd(
    dir: &Path,
    run: &RunArgs,
    lrs: Option<Vec<f64>>,
    print: PrintArgs,
) -> Result<(), Failure> {
    let mut state = CompareState::read(dir)
        .map_err(|e| bad("--resume", e))?
        .ok_or_else(|| {
            bad(
                "--resume",
                format!(
                    "{} holds no comparison to resume (no {COMPARE_STATE}: it was not written by `mlora compare --out` with --seeds, --lrs, several --head-mode or lora-grid)",
                    dir.display()
                ),
            )
        })?;
    run.apply_execution(&mut state.config.train)?;
    if let Some(lrs) = lrs {
        state.plan.lrs = lrs;
    }
    let out = OutArgs {
        out: Some(dir.to_path_buf()),
        print,
    };
    if state.config.task.contains_key("prompt_field") {
        let task: CausalLmConfig = state
            .config
            .task_settings()
            .map_err(|e| bad("--resume", format!("not a causal-LM comparison: {e}")))?;
        resume_task(CausalLmTask::new(task), state, dir, &out)
    } else {
        let task: ClassifyConfig = state
            .config
            .task_settings()
            .map_err(|e| bad("--resume", format!("not a classification comparison: {e}")))?;
        resume_task(ClassifyTask::new(task), state, dir, &out)
    }
}

/// The comparison `state` of `task`, resumed in `dir` (`out`'s directory).
fn resume_task<T: Task>(
    task: T,
    state: CompareState,
    dir: &Path,
    out: &OutArgs,
) -> Result<(), Failure>
where
    TaskData<T::Item, T::Meta>: DataSummary,
{
    let runner = Runner::new(task, state.config.train)?
        .quiet(out.print.quiet_progress())
        .tolerance(state.tolerance)
        .checkpoint_into(dir, state.checkpoint_every)
        .resume(true);
    compare_plan_cmd(runner, state.plan, out)
}

/// A comparison over runs (`compare --seeds/--lrs/--head-mode a,b`, the
/// grid, or `--resume`): every method, head mode and seed, the learning rate
/// chosen on validation rows, mean ± std and paired differences.
fn compare_plan_cmd<T: Task>(
    runner: Runner<T>,
    plan: ComparePlan,
    out: &OutArgs,
) -> Result<(), Failure>
where
    TaskData<T::Item, T::Meta>: DataSummary,
{
    let quiet = out.print.quiet_progress();
    stop_on_ctrl_c(runner.interrupter());
    with_out(out, || {
        let started = Instant::now();
        let data = prepared(&runner, quiet, true)?;
        let mut progress = CompareProgress::new(&plan, runner.config());
        let comparison = runner
            .compare_seeds(&plan, &data, out.out.as_deref(), |r| {
                progress.record(r);
                if !quiet {
                    let rank = if r.grid {
                        format!(", rank {}", r.report.config.train.rank)
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "{} ({}), seed {}{rank}, lr {}: AURAC log2 {:.2}% on {}{} [{}]",
                        r.compare_method(),
                        r.report.head_mode,
                        r.report.seed,
                        r.report.config.train.lr,
                        r.report.aurac_log2,
                        r.split,
                        if r.chosen && r.val_aurac_log2.is_some() {
                            " (chosen)"
                        } else {
                            ""
                        },
                        progress.describe()
                    );
                }
            })
            .map_err(|e| compare_stopped(e, out.out.as_deref()))?;
        if out.print.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&comparison).unwrap_or_default()
            );
        } else if !out.print.quiet {
            print_comparison(&comparison);
            print_total(started);
        }
        Ok(())
    })
}
