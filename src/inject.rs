//! Attaching adapters to the `Linear` layers of any burn model, chosen by name,
//! without touching the model's code.
//!
//! Uses burn 0.22's reparameterization mechanism (the one behind
//! `Module::apply_lora`): each matched `Linear` weight `W` becomes
//! `W + A[:, :r] diag(p) B[:r]` when read, so `Linear::forward` and the
//! model's forward stay as they are. Every base parameter is frozen, as
//! `apply_lora` does; unfreeze what else should train (a head, say) with
//! `unfreeze_group`. The rank switch ([`AdaptedModule::with_active_rank`])
//! and adapter-only records work as for [`MatryoshkaLinear`](crate::MatryoshkaLinear).
//!
//! The cost of this form is a dense `[d_in, d_out]` update per forward; for
//! models you write yourself, [`MatryoshkaLinear`](crate::MatryoshkaLinear)
//! computes the adapter on the activation side instead.
//!
//! ```
//! use burn::nn::{Linear, LinearConfig};
//! use burn::prelude::*;
//! use matryoshka_lora::{adapt_linears, AdaptedModule, MatryoshkaConfig, Targets};
//!
//! #[derive(Module, Debug)]
//! struct Mlp { fc1: Linear, fc2: Linear }
//!
//! let device = matryoshka_lora::cpu_device(); // or Device::default(): any enabled backend
//! let mlp = Mlp { fc1: LinearConfig::new(4, 8).init(&device), fc2: LinearConfig::new(8, 2).init(&device) };
//! let config = MatryoshkaConfig::new().with_max_rank(4);
//! let (mlp, adapted) = adapt_linears(mlp, &config, &Targets::names(["fc1"]))?;
//! assert_eq!(adapted, vec!["fc1".to_string()]);
//! assert_eq!(mlp.adapter_count(), 1);
//! # Ok::<(), matryoshka_lora::AdapterError>(())
//! ```

use crate::active_rank::AdaptedModule;
use crate::adapter::{MatryoshkaAdapter, MatryoshkaConfig};
use crate::error::{AdapterError, Result};
use burn::module::{Module, Param, Reparameterizer};
use burn::prelude::*;
use regex::Regex;

/// Which `Linear` layers get an adapter, by module path (the weight's path
/// without its trailing `.weight`).
#[derive(Debug, Clone)]
pub enum Targets {
    /// PEFT's `target_modules` list: a layer matches when its path equals a
    /// name or ends with `.name` (e.g. `query` matches `encoder.layer.0.attention.self.query`;
    /// `attention.output.dense` matches only that dense).
    Names(Vec<String>),
    /// A regular expression that must match the whole path.
    Regex(Regex),
    /// Every 2-D weight named `weight`.
    All,
}

impl Targets {
    /// A [`Targets::Names`] list.
    pub fn names<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self::Names(names.into_iter().map(Into::into).collect())
    }

    /// A [`Targets::Regex`]; errors on an invalid expression.
    pub fn regex(pattern: &str) -> Result<Self> {
        Regex::new(&format!("^(?:{pattern})$"))
            .map(Self::Regex)
            .map_err(|e| AdapterError::InvalidTargets(format!("regex `{pattern}`: {e}")))
    }

    /// Whether the layer at `module_path` is a target.
    pub fn matches(&self, module_path: &str) -> bool {
        match self {
            Self::Names(names) => names.iter().any(|n| {
                module_path == n
                    || module_path
                        .strip_suffix(n.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            }),
            Self::Regex(re) => re.is_match(module_path),
            Self::All => true,
        }
    }

    /// The patterns, for error messages.
    pub fn describe(&self) -> Vec<String> {
        match self {
            Self::Names(n) => n.clone(),
            Self::Regex(r) => vec![r.as_str().to_string()],
            Self::All => vec!["*".into()],
        }
    }
}

/// A burn [`Reparameterizer`] that attaches a [`MatryoshkaAdapter`] to every
/// matched 2-D `weight` and freezes all base parameters.
///
/// Prefer [`adapt_linears`], which also reports what matched and fails on
/// errors; use this type directly with `Module::apply_reparameterization`.
pub struct MatryoshkaReparameterizer {
    config: MatryoshkaConfig,
    targets: Targets,
    /// Module paths that received an adapter.
    pub adapted: Vec<String>,
    /// Every 2-D weight path seen.
    pub seen: Vec<String>,
    /// The first error met (the mapping itself cannot fail).
    pub error: Option<AdapterError>,
}

impl MatryoshkaReparameterizer {
    /// A reparameterizer for `targets` with adapters built from `config`.
    pub fn new(config: MatryoshkaConfig, targets: Targets) -> Self {
        Self {
            config,
            targets,
            adapted: Vec::new(),
            seen: Vec::new(),
            error: None,
        }
    }
}

impl Reparameterizer for &mut MatryoshkaReparameterizer {
    type Reparam = MatryoshkaAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<MatryoshkaAdapter>) {
        let base = param.set_require_grad(false);
        let Some(module_path) = path
            .strip_suffix(".weight")
            .or((path == "weight").then_some(""))
        else {
            return (base, None);
        };
        if D != 2 {
            return (base, None);
        }
        self.seen.push(module_path.to_string());
        if !self.targets.matches(module_path) || self.error.is_some() {
            return (base, None);
        }
        let dims = base.lazy_shape();
        let device = base.lazy_device();
        match self.config.init_adapter(dims[0], dims[1], &device) {
            Ok(adapter) => {
                self.adapted.push(module_path.to_string());
                (base, Some(adapter))
            }
            Err(e) => {
                self.error = Some(e);
                (base, None)
            }
        }
    }
}

/// Attaches adapters built from `config` to the `Linear` layers of `model`
/// chosen by `targets`, freezing every base parameter. Returns the model and
/// the module paths that were adapted.
///
/// Errors on a bad `config`, when nothing matched (listing the layers seen),
/// or when the model already has adapters.
pub fn adapt_linears<M: Module>(
    model: M,
    config: &MatryoshkaConfig,
    targets: &Targets,
) -> Result<(M, Vec<String>)> {
    config.rank_set()?;
    config.train_p()?;
    if model.adapter_count() > 0 {
        return Err(AdapterError::InvalidTargets(
            "the model already has Matryoshka adapters; nested reparameterizations are not supported".into(),
        ));
    }
    let mut reparam = MatryoshkaReparameterizer::new(config.clone(), targets.clone());
    let model = model.apply_reparameterization(&mut reparam);
    if let Some(e) = reparam.error {
        return Err(e);
    }
    if reparam.adapted.is_empty() {
        return Err(AdapterError::NoTargetMatched {
            patterns: targets.describe(),
            seen: reparam.seen,
        });
    }
    Ok((model, reparam.adapted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_targets_match_at_dot_boundaries() {
        let t = Targets::names(["query", "attention.output.dense"]);
        assert!(t.matches("encoder.layer.0.attention.self.query"));
        assert!(t.matches("query"));
        assert!(!t.matches("encoder.layer.0.attention.self.subquery"));
        assert!(t.matches("encoder.layer.3.attention.output.dense"));
        assert!(!t.matches("encoder.layer.3.output.dense"));
        let r = Targets::regex(r"layers\.[01]\.fc\d").unwrap();
        assert!(r.matches("layers.1.fc2"));
        assert!(!r.matches("layers.2.fc2"));
        assert!(!r.matches("x.layers.1.fc2"));
        assert!(Targets::regex("(").is_err());
    }
}
