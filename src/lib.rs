//! # matryoshka-lora
//!
//! MatryoshkaLoRA on [burn](https://burn.dev) 0.22: one LoRA adapter of rank `R`
//! trained so that every nested prefix rank `k` in `S` is itself an accurate
//! adapter. One training run replaces a grid search over ranks; at deployment
//! pick `k` per budget, or merge the rank-`k` adapter into the weights.
//!
//! The crate also implements the baselines it generalises (plain LoRA, DyLoRA)
//! and the paper's metric, AURAC.
//!
//! Everything is backend-agnostic: burn 0.22 modules and tensors carry no
//! backend type, the [`Device`](burn::prelude::Device) picks one at run time
//! (flex or ndarray on CPU, WGPU, CUDA — whichever the build enabled).
//!
//! ## Where things are
//! - The adapter core, at the root: [`RankSet`], [`Scaling`], [`AdapterMethod`]
//!   (`(R, S)`, `s(r)`, the `P` family); [`MatryoshkaAdapter`] (`A`, `B`, the
//!   fixed `P` and the active diagonal); [`MatryoshkaLinear`] and
//!   [`AdaptableLinear`] (a frozen `Linear` plus an adapter, computed on the
//!   activation side, with `forward_at_rank` and `merge`); [`Injection`] and
//!   [`adapt_linears`] (adapters on layers chosen by module path, in models of
//!   this crate or any burn model); [`AdaptedModule::with_active_rank`]
//!   (switch a whole model to rank `k`); [`aurac()`].
//! - [`train`]: the [`Task`](train::Task) trait an application implements
//!   once, and the [`Runner`](train::Runner) that trains it through
//!   burn-train with the method's `P` (on one device, or data-parallel on
//!   several with gradient accumulation: `TrainConfig::devices`), evaluates
//!   every rank, and writes the report, checkpoint and plot.
//! - [`tasks`]: the crate's tasks ([`tasks::classify`], [`tasks::causal_lm`]);
//!   [`models`]: model families (BERT, Llama) and the shared weight loader
//!   (Hugging Face safetensors, or GGUF files through [`models::gguf`]);
//!   [`data`]: CSV text and JSONL instruction data; [`io`]: checkpoints,
//!   atomic writes, PEFT and llama.cpp (GGUF) adapter export, merges;
//!   [`train::SplitSummary`]: data sanity checks; [`report`], [`plot`];
//!   [`kernels`]: the fused CPU compute path; [`backend`]: the device,
//!   chosen in one place; [`host_memory`]: the allocator setting for CPU
//!   training.
//!
//! ```
//! use burn::prelude::*;
//! use matryoshka_lora::{aurac, ActiveRank, AdaptedModule, MatryoshkaConfig, MatryoshkaLinearConfig, RankAxis};
//!
//! let device = matryoshka_lora::cpu_device(); // or Device::default(): any enabled backend
//! let layer = MatryoshkaLinearConfig::new(32, 16)
//!     .with_adapter(MatryoshkaConfig::new().with_max_rank(8)) // S = {1, 2, 4, 8}, sqrt scaling
//!     .init(&device)?;
//! let x = Tensor::<2>::random([4, 32], burn::tensor::Distribution::Default, &device);
//! let train_out = layer.forward(x.clone()); // x W + b + x (A diag(P)) B
//! for k in [1, 2, 4, 8] {
//!     let at_k = layer.clone().with_active_rank(ActiveRank::Rank(k))?.forward(x.clone());
//!     let merged = layer.merge(k)?.forward(x.clone());
//!     let err = (at_k - merged).abs().max().into_scalar::<f32>();
//!     assert!(err < 1e-5);
//! }
//! let auc = aurac(&[1, 2, 4, 8], &[70.0, 75.0, 80.0, 82.0], RankAxis::Log2)?;
//! assert!((auc - 77.0).abs() < 1e-9);
//! # let _ = train_out;
//! # Ok::<(), matryoshka_lora::AdapterError>(())
//! ```
#![deny(missing_docs)]

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod adapter;
pub mod backend;
pub mod data;
pub mod host_memory;
pub mod io;
pub mod kernels;
pub mod models;
pub mod plot;
pub mod report;
pub mod stats;
pub mod tasks;
pub mod train;

pub use adapter::{
    ActiveRank, AdaptableLinear, AdaptedModule, AdapterError, AdapterInit, AdapterMethod,
    AdapterSpec, DyLoraVariant, Injection, MatryoshkaAdapter, MatryoshkaConfig, MatryoshkaLinear,
    MatryoshkaLinearConfig, MatryoshkaReparameterizer, RankAxis, RankSampler, RankSet,
    RankSubsetSampler, Scaling, Targets, adapt_linears, aurac, aurac_both, freeze_linear,
    frozen_forward, lora_p, matryoshka_p, rank_p,
};
pub use backend::{BackendKind, DeviceSpec, cpu_device};
