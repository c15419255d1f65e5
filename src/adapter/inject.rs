//! Attaching adapters to `Linear` layers chosen by module path, in one
//! mechanism: an [`Injection`] (adapter settings, [`Targets`], a log of what
//! was seen and adapted) decides for each candidate layer. The crate's model
//! loaders ask it for every linear they load, under its Hugging Face path
//! (activation-side adapters, [`AdaptableLinear`]); [`adapt_linears`] asks it
//! for every `Linear` of any burn model, under its burn module path.
//!
//! [`adapt_linears`] attaches to a model without touching its code. It uses burn 0.22's reparameterization mechanism (the one behind
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

use super::active_rank::AdaptedModule;
use super::adaptable::AdaptableLinear;
use super::error::{AdapterError, Result};
use super::linear::MatryoshkaLinear;
use super::module::{MatryoshkaAdapter, MatryoshkaConfig};
use super::targets::Targets;
use burn::module::{Module, Param, ParamId, Reparameterizer};
use burn::nn::Linear;
use burn::prelude::*;
use std::cell::RefCell;

/// Which layers get adapters, with which settings, and what happened so far.
///
/// Shared by reference while a model is built (interior mutability records
/// each decision); [`Injection::finish`] checks the outcome.
///
/// ```
/// use burn::nn::LinearConfig;
/// use matryoshka_lora::{Injection, MatryoshkaConfig, Targets};
/// let device = matryoshka_lora::cpu_device();
/// let injection = Injection::new(MatryoshkaConfig::new().with_max_rank(4), Targets::names(["q"]))?;
/// let q = injection.attach("layer.0.q", LinearConfig::new(8, 8).init(&device))?;
/// let v = injection.attach("layer.0.v", LinearConfig::new(8, 8).init(&device))?;
/// assert!(q.is_adapted() && !v.is_adapted());
/// assert_eq!(injection.finish()?, vec!["layer.0.q".to_string()]);
/// # Ok::<(), matryoshka_lora::AdapterError>(())
/// ```
#[derive(Debug)]
pub struct Injection {
    config: MatryoshkaConfig,
    targets: Targets,
    log: RefCell<InjectionLog>,
}

#[derive(Debug, Default)]
struct InjectionLog {
    adapted: Vec<String>,
    seen: Vec<String>,
    /// The parameter id of each adapter's `A`, with the path it was attached at.
    ids: Vec<(ParamId, String)>,
}

impl Injection {
    /// Adapters built from `config` on the layers `targets` selects. Errors on
    /// an invalid `config` (rank set, scaling, method).
    pub fn new(config: MatryoshkaConfig, targets: Targets) -> Result<Self> {
        config.rank_set()?;
        config.train_p()?;
        Ok(Self {
            config,
            targets,
            log: RefCell::default(),
        })
    }

    /// The adapter settings.
    pub fn config(&self) -> &MatryoshkaConfig {
        &self.config
    }

    /// The target selection.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// A fresh adapter for the layer at `path` with weight `[d_input, d_output]`
    /// when `targets` selects it, else `None`; records the decision.
    ///
    /// Errors when `R` exceeds `min(d_input, d_output)`: the rank-`R` update of
    /// such a layer cannot have rank `R`, so the adapter would only waste memory
    /// (a typo such as `R = 100000` would otherwise run out of it).
    pub fn adapter_for(
        &self,
        path: &str,
        d_input: usize,
        d_output: usize,
        device: &Device,
    ) -> Result<Option<MatryoshkaAdapter>> {
        self.log.borrow_mut().seen.push(path.to_string());
        if !self.targets.matches(path) {
            return Ok(None);
        }
        let max_rank = self.config.max_rank;
        if max_rank > d_input.min(d_output) {
            return Err(AdapterError::RankAboveLayer {
                path: path.to_string(),
                max_rank,
                d_input,
                d_output,
            });
        }
        let adapter = self.config.init_adapter(d_input, d_output, device)?;
        let mut log = self.log.borrow_mut();
        log.adapted.push(path.to_string());
        log.ids.push((adapter.lora_a.id, path.to_string()));
        Ok(Some(adapter))
    }

    /// `base` (frozen) with a fresh adapter when `path` is a target, else
    /// `base` as a plain layer; records the decision.
    pub fn attach(&self, path: &str, base: Linear) -> Result<AdaptableLinear> {
        let [d_input, d_output] = base.weight.shape().dims::<2>();
        let device = base.weight.lazy_device();
        Ok(match self.adapter_for(path, d_input, d_output, &device)? {
            Some(adapter) => AdaptableLinear::Adapted(MatryoshkaLinear::from_parts(base, adapter)?),
            None => AdaptableLinear::Plain(base),
        })
    }

    /// The module paths adapted so far, in order.
    pub fn adapted(&self) -> Vec<String> {
        self.log.borrow().adapted.clone()
    }

    /// The path each adapter was attached at, by the [`ParamId`] of its `A`
    /// (stable through training and cloning): joined with
    /// [`AdaptedModule::adapter_ids`], it names the adapters of the built model
    /// by the paths the injection saw (Hugging Face module names, for the
    /// crate's loaders), whatever order the model keeps them in.
    pub fn adapter_names(&self) -> Vec<(ParamId, String)> {
        self.log.borrow().ids.clone()
    }

    /// Every candidate module path seen so far, in order.
    pub fn seen(&self) -> Vec<String> {
        self.log.borrow().seen.clone()
    }

    /// The adapted module paths, once the whole model has been visited.
    /// Errors when nothing matched, or when a target name matched no layer.
    pub fn finish(&self) -> Result<Vec<String>> {
        let log = self.log.borrow();
        self.targets.check_matched(&log.adapted, &log.seen)?;
        Ok(log.adapted.clone())
    }
}

/// A burn [`Reparameterizer`] that attaches a [`MatryoshkaAdapter`] to every
/// 2-D `weight` its [`Injection`] selects and freezes all base parameters.
///
/// Prefer [`Injection::reparameterize`] or [`adapt_linears`], which also
/// check what matched and fail on errors; use this type directly with
/// `Module::apply_reparameterization`.
pub struct MatryoshkaReparameterizer<'a> {
    /// Which layers, which settings, what happened.
    pub injection: &'a Injection,
    /// The first error met (the mapping itself cannot fail).
    pub error: Option<AdapterError>,
}

impl<'a> MatryoshkaReparameterizer<'a> {
    /// A reparameterizer for `injection`.
    pub fn new(injection: &'a Injection) -> Self {
        Self {
            injection,
            error: None,
        }
    }
}

impl Reparameterizer for &mut MatryoshkaReparameterizer<'_> {
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
        if D != 2 || self.error.is_some() {
            return (base, None);
        }
        let dims = base.lazy_shape();
        let device = base.lazy_device();
        match self
            .injection
            .adapter_for(module_path, dims[0], dims[1], &device)
        {
            Ok(adapter) => (base, adapter),
            Err(e) => {
                self.error = Some(e);
                (base, None)
            }
        }
    }
}

impl Injection {
    /// Attaches adapters to the `Linear` layers of any burn `model` that this
    /// injection selects by burn module path (e.g. `fc1`, `blocks.0.proj`),
    /// through burn's reparameterization (the model's code is unchanged), and
    /// freezes every base parameter; unfreeze what else should train. Errors
    /// on the first adapter that cannot be built, or when the model already
    /// has adapters; call [`Injection::finish`] to check what matched.
    pub fn reparameterize<M: Module>(&self, model: M) -> Result<M> {
        if model.adapter_count() > 0 {
            return Err(AdapterError::InvalidTargets(
                "the model already has Matryoshka adapters; nested reparameterizations are not supported".into(),
            ));
        }
        let mut reparam = MatryoshkaReparameterizer::new(self);
        let model = model.apply_reparameterization(&mut reparam);
        match reparam.error {
            Some(e) => Err(e),
            None => Ok(model),
        }
    }
}

/// Attaches adapters built from `config` to the `Linear` layers of `model`
/// chosen by `targets`, freezing every base parameter. Returns the model and
/// the module paths that were adapted.
///
/// Errors on a bad `config`, when nothing matched or a target name matched no
/// layer (listing the layers seen), when `R` exceeds a selected layer's
/// `min(d_in, d_out)`, or when the model already has adapters.
pub fn adapt_linears<M: Module>(
    model: M,
    config: &MatryoshkaConfig,
    targets: &Targets,
) -> Result<(M, Vec<String>)> {
    let injection = Injection::new(config.clone(), targets.clone())?;
    let model = injection.reparameterize(model)?;
    let adapted = injection.finish()?;
    Ok((model, adapted))
}
