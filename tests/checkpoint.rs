//! Adapter checkpoints: round trip, and clear errors for missing, corrupt and
//! mismatched files.

mod common;

use burn::module::Param;
use burn::prelude::*;
use matryoshka_lora::checkpoint::{CheckpointError, load_adapter, save_adapter};
use matryoshka_lora::{MatryoshkaConfig, MatryoshkaLinear, MatryoshkaLinearConfig};

fn layer(rank: usize, seed: u64) -> MatryoshkaLinear {
    let device = matryoshka_lora::cpu_device();
    device.seed(seed);
    let mut l = MatryoshkaLinearConfig::new(6, 5)
        .with_adapter(MatryoshkaConfig::new().with_max_rank(rank))
        .init(&device)
        .unwrap();
    l.adapter.lora_b = Param::from_tensor(Tensor::ones([rank, 5], &device));
    l
}

#[test]
fn round_trip_and_errors() {
    let dir = common::temp_dir("ckpt");
    let path = dir.join("adapter.bpk");
    let trained = layer(4, 1);
    save_adapter(trained.clone(), &path).unwrap();
    // no temp file left behind
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(leftovers.len(), 1);

    // same architecture, other seed: the adapter comes back, the base stays the target's
    let target = layer(4, 2);
    let base_before = target.base.weight.val().into_data();
    let loaded = load_adapter(target, &path).unwrap();
    assert_eq!(
        loaded.adapter.lora_a.val().into_data(),
        trained.adapter.lora_a.val().into_data()
    );
    assert_eq!(
        loaded.adapter.lora_b.val().into_data(),
        trained.adapter.lora_b.val().into_data()
    );
    assert_eq!(loaded.base.weight.val().into_data(), base_before);

    // another rank: a mismatch error, not a panic
    let err = load_adapter(layer(8, 1), &path).unwrap_err();
    assert!(matches!(err, CheckpointError::Mismatch { .. }), "{err}");

    let err = load_adapter(layer(4, 1), &dir.join("missing.bpk")).unwrap_err();
    assert!(matches!(err, CheckpointError::Missing(_)), "{err}");

    let corrupt = dir.join("corrupt.bpk");
    std::fs::write(&corrupt, b"definitely not burnpack").unwrap();
    let err = load_adapter(layer(4, 1), &corrupt).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
}
