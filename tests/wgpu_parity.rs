//! The adapter's forward and backward on WGPU match the CPU backend within 1e-4.
//! Built with `--features wgpu`; in CI it runs on Mesa's lavapipe (software Vulkan).
#![cfg(feature = "wgpu")]

use burn::module::Param;
use burn::prelude::*;
use matryoshka_lora::{BackendKind, MatryoshkaConfig, MatryoshkaLinear, MatryoshkaLinearConfig};

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec_as::<f32>().unwrap()
}

/// The same layer (same numbers) on `device`: built on the CPU, its tensors
/// copied as data into fresh parameters on `device`.
fn layer_on(device: &Device) -> MatryoshkaLinear {
    let (d_in, d_out, r) = (48, 40, 16);
    let cpu = matryoshka_lora::cpu_device();
    cpu.seed(7);
    let config = MatryoshkaLinearConfig::new(d_in, d_out)
        .with_adapter(MatryoshkaConfig::new().with_max_rank(r));
    let source = config.init(&cpu).unwrap();
    // Read the source values now: burn initialises `Linear` weights lazily, on
    // first use, from the device RNG at that moment.
    let (w, bias, a) = (
        source.base.weight.val().into_data(),
        source.base.bias.as_ref().map(|b| b.val().into_data()),
        source.adapter.lora_a.val().into_data(),
    );
    let b: Vec<f32> = (0..r * d_out)
        .map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.5)
        .collect();
    let mut layer = config.init(device).unwrap();
    layer.base.weight =
        Param::from_tensor(Tensor::<2>::from_data(w, device)).set_require_grad(false);
    layer.base.bias =
        bias.map(|b| Param::from_tensor(Tensor::<1>::from_data(b, device)).set_require_grad(false));
    layer.adapter.lora_a = Param::from_tensor(Tensor::<2>::from_data(a, device));
    layer.adapter.lora_b =
        Param::from_tensor(Tensor::from_data(TensorData::new(b, [r, d_out]), device));
    layer
}

fn run(device: &Device) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let device = device.clone().autodiff();
    let layer = layer_on(&device);
    let x: Vec<f32> = (0..3 * 5 * 48)
        .map(|i| ((i * 13 % 29) as f32 / 29.0) - 0.5)
        .collect();
    let x = Tensor::<3>::from_data(TensorData::new(x, [3, 5, 48]), &device);
    let y = layer.forward(x.clone());
    let at4 = layer.forward_at_rank(x, 4).unwrap();
    let grads = (y.clone() * y.clone()).mean().backward();
    let ga = layer.adapter.lora_a.val().grad(&grads).unwrap();
    let gb = layer.adapter.lora_b.val().grad(&grads).unwrap();
    (
        to_vec(y.inner()),
        to_vec(at4.inner()),
        to_vec(ga),
        to_vec(gb),
    )
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn wgpu_forward_and_backward_match_cpu() {
    let cpu = run(&matryoshka_lora::cpu_device());
    // `open` checks the device works (Mesa lavapipe in CI)
    let gpu = run(&BackendKind::Wgpu.open().unwrap());
    for (name, c, g) in [
        ("forward", &cpu.0, &gpu.0),
        ("forward_at_rank(4)", &cpu.1, &gpu.1),
        ("dL/dA", &cpu.2, &gpu.2),
        ("dL/dB", &cpu.3, &gpu.3),
    ] {
        let d = max_diff(c, g);
        println!("{name}: max |cpu - wgpu| = {d:e}");
        assert!(d < 1e-4, "{name}: {d}");
    }
}
