//! The adapter core: `(R, S)`, the scaling rule, the `P` family, the adapter
//! module and its linear layers, injection into models, the rank switch and
//! AURAC. Everything here is re-exported at the crate root.

mod active_rank;
mod adaptable;
mod aurac;
mod error;
mod inject;
mod linear;
mod method;
mod module;
mod rank_set;
mod scaling;
mod targets;

pub use active_rank::{ActiveRank, AdaptedModule};
pub use adaptable::AdaptableLinear;
pub use aurac::{RankAxis, aurac, aurac_both};
pub use error::{AdapterError, Result};
pub use inject::{Injection, MatryoshkaReparameterizer, adapt_linears};
pub use linear::{MatryoshkaLinear, MatryoshkaLinearConfig, freeze_linear, frozen_forward};
pub use method::{
    AdapterMethod, DyLoraVariant, RankSampler, RankSubsetSampler, lora_p, matryoshka_p, rank_p,
};
pub use module::{AdapterInit, AdapterSpec, MatryoshkaAdapter, MatryoshkaConfig};
pub use rank_set::RankSet;
pub use scaling::{ParseScalingError, Scaling};
pub use targets::Targets;

/// The parameter names of an adapter's saved state (its trainable factors and
/// its constants), as the last segment of their module paths. The active
/// diagonal `p` and the gradient mask are derived from these and not saved.
pub const ADAPTER_STATE: [&str; 4] = ["lora_a", "lora_b", "p_train", "rank_scale"];
