//! Adapter checkpoints: round trip, exactly the adapter state and the task's
//! trainable modules on disk, and typed errors for missing, corrupt and
//! mismatched files.

mod common;

use burn::module::Param;
use burn::prelude::*;
use matryoshka_lora::io::{CheckpointError, checkpoint_names, load_adapter, save_adapter};
use matryoshka_lora::tasks::classify::{ClassifyConfig, ClassifyTask, SequenceClassifier};
use matryoshka_lora::train::{Runner, Task, TrainConfig};
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
    save_adapter(trained.clone(), &path, &[]).unwrap();
    // no temp file left behind
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(leftovers.len(), 1);
    assert_eq!(
        checkpoint_names(&path).unwrap(),
        [
            "adapter.lora_a",
            "adapter.lora_b",
            "adapter.p_train",
            "adapter.rank_scale"
        ]
    );

    // same architecture, other seed: the adapter comes back, the base stays the target's
    let target = layer(4, 2);
    let base_before = target.base.weight.val().into_data();
    let loaded = load_adapter(target, &path, &[]).unwrap();
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
    let err = load_adapter(layer(8, 1), &path, &[]).unwrap_err();
    assert!(matches!(err, CheckpointError::Mismatch { .. }), "{err}");

    let err = load_adapter(layer(4, 1), &dir.join("missing.bpk"), &[]).unwrap_err();
    assert!(matches!(err, CheckpointError::Missing(_)), "{err}");

    let corrupt = dir.join("corrupt.bpk");
    std::fs::write(&corrupt, b"definitely not burnpack").unwrap();
    let err = load_adapter(layer(4, 1), &corrupt, &[]).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");

    // a truncated file
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.join("truncated.bpk");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_adapter(layer(4, 1), &truncated, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::Corrupt { .. } | CheckpointError::Mismatch { .. }
        ),
        "{err}"
    );
}

/// The RT classifier on the real encoder's first `layers` layers, with `train`'s settings.
fn classifier_layers(
    layers: usize,
    train: TrainConfig,
) -> (Runner<ClassifyTask>, SequenceClassifier) {
    let mut task = ClassifyConfig::rt_protocol(common::assets_dir());
    task.layers = Some(layers);
    let runner = Runner::new(ClassifyTask::new(task), train).unwrap();
    let labels = vec!["rotten".to_string(), "fresh".to_string()];
    let model = runner
        .build_model(&labels, &runner.device().unwrap())
        .unwrap();
    (runner, model)
}

fn classifier(train: TrainConfig) -> (Runner<ClassifyTask>, SequenceClassifier) {
    classifier_layers(1, train)
}

#[test]
fn classifier_checkpoint_holds_adapters_and_head_only() {
    let dir = common::temp_dir("ckpt-classifier");
    let config = TrainConfig::default().with_max_rank(8).unwrap();
    let (runner, model) = classifier(config.clone());
    let modules = runner.task().trainable_modules();
    let path = dir.join("adapter.bpk");
    save_adapter(model.clone(), &path, &modules).unwrap();

    let names = checkpoint_names(&path).unwrap();
    let mut expected = vec!["head.bias".to_string(), "head.weight".to_string()];
    for linear in [
        "attention.query",
        "attention.key",
        "attention.value",
        "attention.output",
        "intermediate",
        "output",
    ] {
        for state in ["lora_a", "lora_b", "p_train", "rank_scale"] {
            expected.push(format!("encoder.layers.0.{linear}.Adapted.adapter.{state}"));
        }
    }
    expected.sort();
    assert_eq!(names, expected);

    // loads back onto a model with the same settings
    let (_, fresh) = classifier(config.clone());
    let loaded = load_adapter(fresh, &path, &modules).unwrap();
    assert_eq!(
        loaded.head.weight.val().into_data(),
        model.head.weight.val().into_data()
    );

    // other ranks, other targets, more layers: typed errors
    let other_rank = classifier(TrainConfig::default().with_max_rank(4).unwrap()).1;
    let other_targets = classifier(TrainConfig {
        targets: Some(vec!["query".into()]),
        ..config.clone()
    })
    .1;
    for (what, target) in [("rank", other_rank), ("targets", other_targets)] {
        let err = load_adapter(target, &path, &modules).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Mismatch { .. }),
            "{what}: {err}"
        );
    }
    let two_layers = classifier_layers(2, config).1;
    let err = load_adapter(two_layers, &path, &modules).unwrap_err();
    match err {
        CheckpointError::Mismatch { reason, .. } => {
            assert!(reason.contains("layers.1"), "{reason}")
        }
        other => panic!("{other}"),
    }
}
