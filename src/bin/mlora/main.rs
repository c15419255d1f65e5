//! `mlora`: train (and resume), evaluate and compare MatryoshkaLoRA / LoRA /
//! DyLoRA on text classification and causal-LM instruction tuning (Hugging
//! Face directories or GGUF files); merge, export to PEFT and llama.cpp, import from PEFT;
//! plot rank-accuracy curves.
//!
//! A thin layer over the library: clap definitions and the flag-to-settings
//! mapping (`args`; the data flags in `data_args`), errors back to flags and
//! exit codes (`failure`), one function per subcommand (`commands`;
//! `artifacts` for merge, export and import; `memory`), printing (`output`).

mod args;
mod artifacts;
mod cli;
mod commands;
mod compare;
mod data_args;
mod failure;
mod memory;
mod output;

use artifacts::*;
use clap::Parser;
use cli::{BenchCommand, Cli, Command};
use commands::*;
use compare::{Seeds, compare_cmd, compare_resume_cmd};
use memory::memory_cmd;
use std::process::ExitCode;

/// A clap error as one line: its message without the usage hint.
fn one_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let text = text.split("\n\nFor more information").next().unwrap_or("");
    let text = text.trim().trim_start_matches("error:").trim();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn main() -> ExitCode {
    // burn-train loads a resumed run's optimizer state onto `Device::default()`
    // (then moves it to each parameter's device), and in a build with `cuda`
    // or `wgpu` that default is the GPU: without one, resuming even a CPU run
    // would fail. Every device of a run is chosen explicitly (`--backend`,
    // `--devices`), so the default is pinned to the host unless the user set it.
    if std::env::var_os("BURN_DEVICE").is_none()
        && let Some(cpu) = matryoshka_lora::BackendKind::compiled_cpu().first()
    {
        // SAFETY: first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("BURN_DEVICE", cpu.feature()) };
    }
    // Tensor-sized buffers stay in the heap between steps (BENCHMARKS.md).
    matryoshka_lora::host_memory::keep_tensor_buffers();
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
            resume,
            seeds,
            lrs,
            val_n,
            select_on_first_seed,
            out,
        } => match resume {
            Some(dir) => compare_resume_cmd(&dir, &run, lrs, out.print),
            None => compare_cmd(
                run,
                exact,
                methods,
                Seeds {
                    seeds,
                    lrs,
                    val_n,
                    select_on_first_seed,
                },
                out,
            ),
        },
        Command::Eval {
            adapter,
            task,
            data,
            eval_batch,
            backend,
            layers,
            out,
            tolerance,
            print,
        } => eval_cmd(EvalArgs {
            adapter,
            task,
            data,
            eval_batch,
            backend,
            layers,
            out,
            tolerance,
            print,
        }),
        Command::Bench {
            which: BenchCommand::Rt(args),
        } => bench_rt_cmd(args),
        Command::Bench {
            which: BenchCommand::Llm(args),
        } => bench_llm_cmd(args),
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
            gguf,
            base_model,
            model,
            print,
        } => match (peft, gguf) {
            (Some(peft), _) => export_cmd(adapter, rank, peft, base_model, print),
            (None, Some(gguf)) => export_gguf_cmd(adapter, rank, gguf, model, print),
            (None, None) => Err(failure::bad("--peft", "give --peft DIR or --gguf FILE")),
        },
        Command::Import {
            peft,
            out,
            task,
            layers,
            data,
            method,
            scaling,
            backend,
            print,
        } => import_cmd(
            peft, out, task, layers, data, method, scaling, backend, print,
        ),
        Command::Memory(args) => memory_cmd(args),
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
