//! Building a model from a Hugging Face checkpoint by composing module paths,
//! module by module (candle's `VarBuilder` pattern), with adapters attached on
//! the way through one [`Injection`].
//!
//! A model family's layout is written once, in the `load` functions of its
//! modules: each takes a [`ModuleLoader`] positioned at its own path and asks
//! for its children by their Hugging Face names. The same path names the
//! weights in the checkpoint and the module in adapter targets, so adapters
//! need no per-model name lists.

use super::dtype::BaseDtype;
use super::weights::{LoadError, TensorSource};
use crate::adapter::{AdaptableLinear, Injection};
use crate::kernels::FusedLayerNorm;
use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;

/// A position in a checkpoint's module tree, and what to load there.
///
/// Every tensor is loaded frozen (no gradient), as f32 unless
/// [`ModuleLoader::with_dtype`] says otherwise for linear and embedding
/// weights; PyTorch's `[out, in]` linear weights are transposed to burn's
/// `[in, out]`.
///
/// ```no_run
/// use matryoshka_lora::models::{ModuleLoader, WeightFiles};
/// let weights = WeightFiles::open_dir(std::path::Path::new("assets"))?;
/// let device = matryoshka_lora::cpu_device();
/// let root = ModuleLoader::new(&weights, &device);
/// let layer = root.pp("encoder.layer").pp(0);
/// let query = layer.pp("attention.self").linear("query", 384, 384, true)?;
/// assert_eq!(layer.path("output.dense"), "encoder.layer.0.output.dense");
/// # Ok::<(), matryoshka_lora::models::LoadError>(())
/// ```
#[derive(Clone)]
pub struct ModuleLoader<'a> {
    weights: &'a dyn TensorSource,
    device: &'a Device,
    prefix: String,
    injection: Option<&'a Injection>,
    dtype: BaseDtype,
}

impl<'a> ModuleLoader<'a> {
    /// A loader at the root of `weights` (a [`WeightFiles`](super::WeightFiles)
    /// checkpoint or [`RandomWeights`](super::RandomWeights)), building on
    /// `device`, without adapters.
    pub fn new(weights: &'a dyn TensorSource, device: &'a Device) -> Self {
        Self {
            weights,
            device,
            prefix: String::new(),
            injection: None,
            dtype: BaseDtype::F32,
        }
    }

    /// The same loader, holding linear and embedding weights in `dtype`
    /// (norm weights and biases of norms stay f32).
    pub fn with_dtype(mut self, dtype: BaseDtype) -> Self {
        self.dtype = dtype;
        self
    }

    /// The same loader, attaching adapters where `injection` selects.
    pub fn with_injection(mut self, injection: Option<&'a Injection>) -> Self {
        self.injection = injection;
        self
    }

    /// The loader one level down, at `self.path(name)` ("push prefix").
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        Self {
            prefix: self.path(&name.to_string()),
            ..self.clone()
        }
    }

    /// The full path of `name` under this loader.
    pub fn path(&self, name: &str) -> String {
        match (self.prefix.is_empty(), name.is_empty()) {
            (true, _) => name.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{name}", self.prefix),
        }
    }

    /// The device modules are built on.
    pub fn device(&self) -> &Device {
        self.device
    }

    /// Whether the checkpoint holds the tensor `name` under this loader.
    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(&self.path(name))
    }

    /// The frozen tensor `name` of shape `shape`.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Param<Tensor<D>>, LoadError> {
        let values = self.weights.read_f32(&self.path(name), &shape)?;
        Ok(frozen(Tensor::from_data(
            TensorData::new(values, shape),
            self.device,
        )))
    }

    /// The frozen `Linear` `name` from `{name}.weight` `[d_out, d_in]` (PyTorch
    /// layout, transposed to burn's `[d_in, d_out]`) and, when `bias`, from
    /// `{name}.bias` `[d_out]`.
    pub fn linear(
        &self,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear, LoadError> {
        let at = self.pp(name);
        let w = self.weights.read_f32(&at.path("weight"), &[d_out, d_in])?;
        let mut t = vec![0f32; w.len()];
        for o in 0..d_out {
            for i in 0..d_in {
                t[i * d_out + o] = w[o * d_in + i];
            }
        }
        let weight = frozen(self.held(Tensor::from_data(
            TensorData::new(t, [d_in, d_out]),
            self.device,
        )));
        let bias = if bias {
            let b = at.weights.read_f32(&at.path("bias"), &[d_out])?;
            Some(frozen(self.held(Tensor::from_data(
                TensorData::new(b, [d_out]),
                self.device,
            ))))
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// The `Linear` `name` (as [`ModuleLoader::linear`]), with a fresh adapter
    /// when this loader's [`Injection`] selects its path.
    pub fn adaptable_linear(
        &self,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<AdaptableLinear, LoadError> {
        let base = self.linear(name, d_in, d_out, bias)?;
        match self.injection {
            Some(injection) => Ok(injection.attach(&self.path(name), base)?),
            None => Ok(AdaptableLinear::Plain(base)),
        }
    }

    /// The frozen LayerNorm `name` from `{name}.weight` and `{name}.bias` `[d]`.
    pub fn layer_norm(&self, name: &str, d: usize, eps: f64) -> Result<FusedLayerNorm, LoadError> {
        let at = self.pp(name);
        Ok(FusedLayerNorm {
            gamma: at.tensor("weight", [d])?,
            beta: at.tensor("bias", [d])?,
            epsilon: eps,
        })
    }

    /// The frozen `RmsNorm` `name` from `{name}.weight` `[d]`.
    pub fn rms_norm(&self, name: &str, d: usize, eps: f64) -> Result<RmsNorm, LoadError> {
        Ok(RmsNorm {
            gamma: self.pp(name).tensor("weight", [d])?,
            epsilon: eps,
        })
    }

    /// The frozen `Embedding` `name` from `{name}.weight` `[n, d]`.
    pub fn embedding(&self, name: &str, n: usize, d: usize) -> Result<Embedding, LoadError> {
        let values = self
            .weights
            .read_f32(&self.pp(name).path("weight"), &[n, d])?;
        Ok(Embedding {
            weight: frozen(self.held(Tensor::from_data(
                TensorData::new(values, [n, d]),
                self.device,
            ))),
        })
    }
}

impl ModuleLoader<'_> {
    /// `t` in the loader's base dtype.
    fn held<const D: usize>(&self, t: Tensor<D>) -> Tensor<D> {
        match self.dtype {
            BaseDtype::F32 => t,
            other => t.cast(other.dtype()),
        }
    }
}

fn frozen<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(t).set_require_grad(false)
}
