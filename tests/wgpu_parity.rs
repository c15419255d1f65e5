//! The adapter's forward and backward on WGPU match the CPU backend within 1e-4.
//! Built with `--features wgpu`; in CI it runs on Mesa's lavapipe (software Vulkan).
#![cfg(feature = "wgpu")]

mod common;

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

use common::max_diff;

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

/// The Llama decoder (llama3 fixture: tied embeddings, GQA, llama3 RoPE
/// scaling) on WGPU: logits and the masked SFT loss within 1e-4 of the CPU's,
/// and the same greedy KV-cached generations.
#[test]
fn llama_logits_loss_and_generation_on_wgpu_match_cpu() {
    use matryoshka_lora::data::{SftBatcher, SftExample};
    use matryoshka_lora::models::BaseDtype;
    use matryoshka_lora::models::llama::{Generation, LlamaForCausalLm};
    use matryoshka_lora::train::TaskModel;
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/llama3");
    let run = |device: &Device| {
        let (model, config) =
            LlamaForCausalLm::from_pretrained(&dir, None, None, BaseDtype::F32, device).unwrap();
        let ids: Vec<i64> = (0..2 * 9).map(|i| 3 + (i * 37 % 250) as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 9]), device);
        let mask = Tensor::<2, Int>::ones([2, 9], device);
        let logits = to_vec(model.logits(ids, mask));
        let examples = vec![
            SftExample {
                ids: vec![0, 5, 6, 7, 8, 1],
                prompt_len: 3,
                reference: String::new(),
                group: None,
            },
            SftExample {
                ids: vec![0, 9, 10, 1],
                prompt_len: 2,
                reference: String::new(),
                group: None,
            },
        ];
        let batch = SftBatcher { pad_id: 0 }.make(&examples, device);
        let loss = model.forward_batch(&batch).loss.into_scalar::<f32>();
        let settings = Generation {
            max_new_tokens: 6,
            eos_ids: vec![],
            pad_id: config.pad_id(),
        };
        let generated = model.generate(&[vec![0, 5, 6, 7], vec![0, 9]], &settings);
        (logits, loss, generated)
    };
    let cpu = run(&matryoshka_lora::cpu_device());
    let gpu = run(&BackendKind::Wgpu.open().unwrap());
    let d = max_diff(&cpu.0, &gpu.0);
    println!(
        "llama logits: max |cpu - wgpu| = {d:e}; loss {} vs {}",
        cpu.1, gpu.1
    );
    assert!(d < 1e-4, "logits: {d}");
    assert!((cpu.1 - gpu.1).abs() < 1e-4);
    assert_eq!(cpu.2, gpu.2);
}
