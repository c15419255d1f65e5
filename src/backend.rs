//! Choosing the device, in one place.
//!
//! burn 0.22 picks the backend at run time from the [`Device`]; this module
//! maps a user's choice (CLI flag, config, `BURN_DEVICE`) to a device of a
//! backend the build enabled, with a clear error otherwise.

use crate::adapter::{AdapterError, Result};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A compute backend this crate can be built with.
/// Serialised as its feature name (`"flex"`, `"wgpu"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's pure-Rust CPU backend (feature `flex`, the default).
    Flex,
    /// The ndarray CPU backend (feature `ndarray`; deprecated in burn 0.22).
    Ndarray,
    /// WGPU: Vulkan, Metal or DX12 on any GPU vendor (feature `wgpu`).
    Wgpu,
    /// NVIDIA CUDA (feature `cuda`).
    Cuda,
}

impl BackendKind {
    /// All backends, in the order [`BackendKind::compiled`] lists them.
    pub const ALL: [BackendKind; 4] = [Self::Flex, Self::Ndarray, Self::Wgpu, Self::Cuda];

    /// The cargo feature that enables this backend.
    pub fn feature(&self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }

    /// Whether this build includes the backend.
    pub fn is_compiled(&self) -> bool {
        match self {
            Self::Flex => cfg!(feature = "flex"),
            Self::Ndarray => cfg!(feature = "ndarray"),
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backends this build includes.
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// The CPU backends this build includes (flex, ndarray).
    pub fn compiled_cpu() -> Vec<BackendKind> {
        Self::compiled()
            .into_iter()
            .filter(|b| matches!(b, Self::Flex | Self::Ndarray))
            .collect()
    }

    /// Whether `device` (with or without autodiff) is a device of one of this
    /// build's CPU backends ([`BackendKind::compiled_cpu`]), whose tensors
    /// live in host memory.
    pub fn is_cpu_device(device: &Device) -> bool {
        let inner = device.clone().inner();
        Self::compiled_cpu()
            .into_iter()
            .any(|b| b.device().is_ok_and(|d| d == inner))
    }

    /// A (non-autodiff) device of this backend; call `.autodiff()` to train.
    /// Errors when the build does not include the backend.
    #[allow(unreachable_code)]
    pub fn device(&self) -> Result<Device> {
        match self {
            Self::Flex => {
                #[cfg(feature = "flex")]
                return Ok(Device::flex());
            }
            Self::Ndarray => {
                #[cfg(feature = "ndarray")]
                #[allow(deprecated)]
                return Ok(Device::ndarray());
            }
            Self::Wgpu => {
                #[cfg(feature = "wgpu")]
                return Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
            }
            Self::Cuda => {
                #[cfg(feature = "cuda")]
                return Ok(Device::cuda(0));
            }
        }
        Err(AdapterError::BackendUnavailable {
            backend: self.to_string(),
            feature: self.feature(),
            compiled: Self::compiled().iter().map(|b| b.to_string()).collect(),
        })
    }
}

impl BackendKind {
    /// A (non-autodiff) device of this backend that has been seen to work:
    /// for WGPU and CUDA one small operation runs on it first, so a machine
    /// without a usable GPU is an error here rather than a panic at the first
    /// operation of a run.
    pub fn open(&self) -> Result<Device> {
        let device = self.device()?;
        if self.is_gpu() {
            probe(*self, &self.to_string(), device)
        } else {
            Ok(device)
        }
    }

    /// Whether the backend's devices are GPUs (WGPU, CUDA).
    pub fn is_gpu(&self) -> bool {
        matches!(self, Self::Wgpu | Self::Cuda)
    }
}

/// `device` of `backend` (named `name` in errors), after one small
/// operation has run on it.
fn probe(backend: BackendKind, name: &str, device: Device) -> Result<Device> {
    let probe = device.clone();
    // The backend reports a missing device by panicking: catch it, and
    // keep its message off the terminal.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(move || {
        Tensor::<1>::ones([2], &probe)
            .sum()
            .try_into_scalar::<f32>()
    });
    std::panic::set_hook(hook);
    let reason = match outcome {
        Ok(Ok(2.0)) => return Ok(device),
        Ok(Ok(sum)) => format!("a test sum gave {sum}, not 2"),
        Ok(Err(e)) => format!("{e:?}"),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the device could not be opened".into()),
    };
    let hint = match backend {
        BackendKind::Cuda => " (CUDA needs an NVIDIA GPU and its driver, libcuda.so)",
        BackendKind::Wgpu => {
            " (WGPU needs a Vulkan, Metal or DX12 driver; on Linux without a GPU, Mesa's lavapipe)"
        }
        _ => "",
    };
    Err(AdapterError::BackendUnusable {
        backend: name.to_string(),
        reason: format!("{}{hint}", reason.lines().next().unwrap_or_default()),
    })
}

/// One device of a data-parallel run, as a user names it: `BACKEND[:INDEX]`
/// (`cuda:1`, `wgpu:0`, `flex`). A list is comma-separated
/// (`cuda:0,cuda:1`); see [`DeviceSpec::parse_list`].
///
/// GPU indices are the backend's: CUDA's device ordinal, WGPU's discrete-GPU
/// index (`wgpu` without one is WGPU's default device). The CPU backends have
/// one device, the host: `flex,flex` runs two data-parallel workers on it
/// (burn-train's threads share the cores), which checks the data-parallel
/// path on a machine without GPUs but does not make it faster.
///
/// ```
/// use matryoshka_lora::{BackendKind, DeviceSpec};
/// let list = DeviceSpec::parse_list("cuda:0, cuda:1")?;
/// assert_eq!(list[1], DeviceSpec { backend: BackendKind::Cuda, index: Some(1) });
/// assert_eq!(list[1].to_string(), "cuda:1");
/// assert!(DeviceSpec::parse_list("cuda:0,wgpu:0").is_err()); // two backends
/// assert!(DeviceSpec::parse_list("cuda:0,cuda:0").is_err()); // one GPU twice
/// # Ok::<(), matryoshka_lora::AdapterError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceSpec {
    /// The backend.
    pub backend: BackendKind,
    /// The GPU index (`None`: the backend's default device; CPU backends have no index).
    pub index: Option<usize>,
}

impl DeviceSpec {
    /// Parses a comma-separated list of devices, all of one backend, no GPU
    /// listed twice (a CPU backend may be listed once per worker).
    pub fn parse_list(s: &str) -> Result<Vec<DeviceSpec>> {
        let specs = s
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<DeviceSpec>>>()?;
        Self::check_list(&specs)?;
        Ok(specs)
    }

    /// Checks a device list: at least one device, one backend, each GPU once.
    pub fn check_list(specs: &[DeviceSpec]) -> Result<()> {
        let Some(first) = specs.first() else {
            return Err(AdapterError::InvalidDevice(
                "no device listed: name at least one, e.g. cuda:0".into(),
            ));
        };
        if let Some(other) = specs.iter().find(|d| d.backend != first.backend) {
            return Err(AdapterError::InvalidDevice(format!(
                "{first} and {other} are devices of two backends: data-parallel workers share one backend"
            )));
        }
        if first.backend.is_gpu() {
            for (i, d) in specs.iter().enumerate() {
                if specs[..i].iter().any(|e| e.ordinal() == d.ordinal()) {
                    return Err(AdapterError::InvalidDevice(format!(
                        "{d} is listed twice: each data-parallel worker needs its own GPU"
                    )));
                }
            }
        }
        Ok(())
    }

    fn ordinal(&self) -> usize {
        self.index.unwrap_or(0)
    }

    /// The (non-autodiff) device; errors when the build lacks the backend.
    #[allow(unused_variables)]
    pub fn device(&self) -> Result<Device> {
        let Some(index) = self.index else {
            return self.backend.device();
        };
        match self.backend {
            BackendKind::Wgpu => {
                #[cfg(feature = "wgpu")]
                return Ok(Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(index)));
            }
            BackendKind::Cuda => {
                #[cfg(feature = "cuda")]
                return Ok(Device::cuda(index));
            }
            _ => {}
        }
        // a backend this build lacks (CPU backends take no index)
        self.backend.device()
    }

    /// The device, after one small operation has run on it (see
    /// [`BackendKind::open`]): a GPU index the machine does not have is an
    /// error here, not a panic mid-run.
    pub fn open(&self) -> Result<Device> {
        let device = self.device()?;
        if self.backend.is_gpu() {
            probe(self.backend, &self.to_string(), device)
        } else {
            Ok(device)
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}:{i}", self.backend),
            None => write!(f, "{}", self.backend),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = AdapterError;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let (name, index) = match s.split_once(':') {
            Some((name, index)) => (name, Some(index)),
            None => (s, None),
        };
        let backend: BackendKind = name.parse().map_err(|_| {
            AdapterError::InvalidDevice(format!(
                "unknown device `{s}`: use flex, ndarray, wgpu[:N] or cuda[:N]"
            ))
        })?;
        let index = match index {
            None => None,
            Some(_) if !backend.is_gpu() => {
                return Err(AdapterError::InvalidDevice(format!(
                    "`{s}`: {backend} has one device, the host (no index); list it once per worker, e.g. {backend},{backend}"
                )));
            }
            Some(i) => Some(i.trim().parse::<usize>().map_err(|_| {
                AdapterError::InvalidDevice(format!(
                    "`{s}`: the device index must be a number, e.g. {backend}:0"
                ))
            })?),
        };
        Ok(Self { backend, index })
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The default CPU device: flex if built, else ndarray, else `Device::default()`.
///
/// Tests and examples use this so that a build with `wgpu` enabled (whose
/// `Device::default()` is the GPU) still runs them on the CPU.
pub fn cpu_device() -> Device {
    BackendKind::compiled_cpu()
        .first()
        .and_then(|b| b.device().ok())
        .unwrap_or_default()
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.feature())
    }
}

impl FromStr for BackendKind {
    type Err = AdapterError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flex" => Ok(Self::Flex),
            "ndarray" => Ok(Self::Ndarray),
            "wgpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(AdapterError::UnknownBackend(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_availability() {
        assert_eq!("FLEX".parse::<BackendKind>().unwrap(), BackendKind::Flex);
        assert!("tpu".parse::<BackendKind>().is_err());
        for b in BackendKind::ALL {
            assert_eq!(b.is_compiled(), BackendKind::compiled().contains(&b));
            if !b.is_compiled() {
                let err = b.device().unwrap_err().to_string();
                assert!(err.contains(b.feature()), "{err}");
            }
        }
        for b in BackendKind::compiled_cpu() {
            assert!(b.open().is_ok());
            let device = b.device().unwrap();
            assert!(BackendKind::is_cpu_device(&device));
            assert!(BackendKind::is_cpu_device(&device.autodiff()));
        }
    }
}
