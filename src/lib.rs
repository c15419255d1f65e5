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
//! ## Pieces
//! - [`RankSet`], [`Scaling`], [`AdapterMethod`]: `(R, S)`, `s(r)` and the `P` family.
//! - [`MatryoshkaAdapter`]: `A`, `B`, the fixed `P` (a saved constant) and the
//!   active diagonal; [`MatryoshkaLinear`]: a frozen `Linear` plus an adapter,
//!   computed on the activation side, with `forward_at_rank` and `merge`.
//! - [`adapt_linears`]: attach adapters to the `Linear` layers of any burn model
//!   by name, without changing its code.
//! - [`AdaptedModule::with_active_rank`]: switch a whole model to rank `k`.
//! - [`aurac()`]: area under the rank-accuracy curve.
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

pub mod active_rank;
pub mod adaptable;
pub mod adapter;
pub mod aurac;
pub mod backend;
pub mod bert;
pub mod checkpoint;
pub mod classifier;
pub mod data;
pub mod error;
pub mod experiment;
pub mod fused_ops;
mod host_kernels;
pub mod inject;
pub mod linear;
pub mod method;
pub mod plot;
pub mod rank_set;
pub mod report;
pub mod scaling;
pub mod train;

pub use active_rank::{ActiveRank, AdaptedModule};
pub use adaptable::AdaptableLinear;
pub use adapter::{AdapterInit, AdapterSpec, MatryoshkaAdapter, MatryoshkaConfig};
pub use aurac::{RankAxis, aurac, aurac_both};
pub use backend::{BackendKind, cpu_device};
pub use error::{AdapterError, Result};
pub use inject::{MatryoshkaReparameterizer, Targets, adapt_linears};
pub use linear::{MatryoshkaLinear, MatryoshkaLinearConfig, freeze_linear};
pub use method::{AdapterMethod, DyLoraVariant, RankSampler, lora_p, matryoshka_p, rank_p};
pub use rank_set::RankSet;
pub use scaling::Scaling;
