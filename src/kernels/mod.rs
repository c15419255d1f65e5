//! The element-wise compute path on the CPU backends: GELU as one
//! parallel pass with a cheap backward, softmax, LayerNorm, cross-entropy
//! and SwiGLU as single autodiff nodes (a burn backend extension), and the host-memory kernels
//! they run on. On every other backend (WGPU, CUDA) the same functions use
//! burn's tensor ops, which run as device kernels.

mod fused;
mod gelu;
mod host;

#[cfg(any(feature = "flex", feature = "ndarray"))]
pub use fused::HostFusedBackend;
pub use fused::{FusedLayerNorm, cross_entropy, layer_norm, softmax_last, swiglu};
pub use gelu::gelu;
