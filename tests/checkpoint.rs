//! Adapter checkpoints: exactly the adapter state and the task's trainable
//! modules on disk, with metadata; identical outputs after a round trip; a
//! distinct typed error for each way a file can be wrong; run directories
//! tied together by their manifest; old `adapter.bpk` files still load; a
//! merged model gives the adapter's outputs at rank k.

mod common;

use burn::module::Module;
use burn::prelude::*;
use matryoshka_lora::io::checkpoint::state_group;
use matryoshka_lora::io::{
    ADAPTER_FILE, AdapterMeta, CheckpointError, LEGACY_ADAPTER_FILE, REPORT_FILE,
    TASK_MODULES_FILE, checkpoint_names, load_adapter, merge_adapter, read_meta, save_adapter,
};
use matryoshka_lora::models::bert::BertEncoder;
use matryoshka_lora::tasks::classify::{
    ClassLabels, ClassifyConfig, ClassifyTask, SequenceClassifier,
};
use matryoshka_lora::train::{RunError, Runner, Setting, Task, TrainConfig};
use matryoshka_lora::{ActiveRank, AdaptedModule};
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;
use std::collections::HashMap;
use std::path::Path;

fn labels() -> ClassLabels {
    ClassLabels {
        names: vec!["rotten".to_string(), "fresh".to_string()],
        dropped: 0,
        ..ClassLabels::default()
    }
}

/// The RT classifier on the real encoder's first `layers` layers, with `train`'s settings.
fn classifier_layers(
    layers: usize,
    train: TrainConfig,
) -> (Runner<ClassifyTask>, SequenceClassifier) {
    let mut task = ClassifyConfig::rt_protocol(common::assets_dir());
    task.layers = Some(layers);
    task.train_n = Some(32);
    task.test_n = Some(16);
    let runner = Runner::new(ClassifyTask::new(task), train)
        .unwrap()
        .quiet(true);
    let model = runner
        .build_model(&labels(), &runner.device().unwrap())
        .unwrap();
    (runner, model)
}

fn classifier(train: TrainConfig) -> (Runner<ClassifyTask>, SequenceClassifier) {
    classifier_layers(1, train)
}

fn meta(runner: &Runner<ClassifyTask>, model: &SequenceClassifier) -> AdapterMeta {
    runner.adapter_meta(runner.config(), model, runner.task().describe(&labels()))
}

/// A fixed batch of real tokens: ids and mask `[2, 4]`.
fn tokens(device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let ids = Tensor::<2, Int>::from_data(
        TensorData::new(vec![101i64, 2307, 3185, 102, 101, 6659, 102, 0], [2, 4]),
        device,
    );
    let mask = Tensor::<2, Int>::from_data(
        TensorData::new(vec![1i64, 1, 1, 1, 1, 1, 1, 0], [2, 4]),
        device,
    );
    (ids, mask)
}

/// Outputs of `model` at every rank on [`tokens`].
fn outputs(model: &SequenceClassifier) -> Vec<Vec<f32>> {
    let device = matryoshka_lora::cpu_device();
    let (ids, mask) = tokens(&device);
    [1, 2, 4, 8]
        .into_iter()
        .map(|k| {
            let at_k = model.clone().with_active_rank(ActiveRank::Rank(k)).unwrap();
            at_k.forward(ids.clone(), mask.clone())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        })
        .collect()
}

/// Rewrites the safetensors file `path` into `out` with `edit` applied to its
/// tensors (name -> (shape, bytes)), keeping its metadata.
fn rewrite(
    path: &Path,
    out: &Path,
    edit: impl FnOnce(&mut HashMap<String, (Vec<usize>, Vec<u8>)>),
) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, (s, b))| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, metadata, out).unwrap();
}

#[test]
fn classifier_checkpoint_holds_adapters_and_head_with_metadata_and_round_trips() {
    let dir = common::temp_dir("ckpt-classifier");
    let config = TrainConfig::default().with_max_rank(8).unwrap();
    let (runner, model) = classifier(config.clone());
    // B starts at 0: give the adapters and the head values worth checking.
    let model = model.map(&mut common::Perturb::default());
    let path = dir.join(ADAPTER_FILE);
    save_adapter(model.clone(), &path, &meta(&runner, &model)).unwrap();

    // exactly the adapter state of the six linears and the head
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

    // the metadata names each adapter's Hugging Face module and the labels
    let saved = read_meta(&path).unwrap();
    assert_eq!(saved.task, "classify");
    assert_eq!((saved.max_rank, saved.ranks.clone()), (8, vec![1, 2, 4, 8]));
    assert_eq!(
        saved.modules["encoder.layers.0.attention.query.Adapted.adapter"],
        "encoder.layer.0.attention.self.query"
    );
    assert_eq!(
        saved.modules["encoder.layers.0.output.Adapted.adapter"],
        "encoder.layer.0.output.dense"
    );
    assert_eq!(
        saved.task_info["labels"],
        serde_json::json!(["rotten", "fresh"])
    );
    assert_eq!(saved.base_model.as_ref().map(|h| h.len()), Some(64));

    // loads back onto a freshly built model: identical outputs at every rank
    let (_, fresh) = classifier(config.clone());
    assert_ne!(outputs(&fresh), outputs(&model));
    let loaded = load_adapter(fresh, &path, &meta(&runner, &model)).unwrap();
    assert_eq!(outputs(&loaded), outputs(&model));

    // another rank, other targets, more layers, other labels: the field named
    let other_rank = classifier(TrainConfig::default().with_max_rank(4).unwrap());
    let other_targets = classifier(TrainConfig {
        targets: Some(vec!["query".into()]),
        ..config.clone()
    });
    let two_layers = classifier_layers(2, config.clone());
    for ((runner, target), field) in [
        (other_rank, "max rank R"),
        (other_targets, "adapted modules"),
        (two_layers, "adapted modules"),
    ] {
        let expected = meta(&runner, &target);
        match load_adapter(target, &path, &expected) {
            Err(CheckpointError::Field { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {:?}", other.err()),
        }
    }
    let (runner2, target) = classifier(config.clone());
    let mut other_labels = meta(&runner2, &target);
    other_labels.task_info = serde_json::json!({"labels": ["fresh", "rotten"]});
    let err = load_adapter(target, &path, &other_labels).unwrap_err();
    assert!(
        matches!(
            &err,
            CheckpointError::Field {
                field: "task data",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("rotten"), "{err}");

    // a file missing a layer's tensor, a tensor of another shape, a truncated
    // file, a missing file, not a safetensors file: each its own error
    let expected_meta = meta(&runner, &model);
    let load = |file: &Path| load_adapter(classifier(config.clone()).1, file, &expected_meta);
    let no_layer = dir.join("no-layer.safetensors");
    rewrite(&path, &no_layer, |t| {
        t.remove("encoder.layers.0.intermediate.Adapted.adapter.lora_b");
    });
    match load(&no_layer) {
        Err(CheckpointError::MissingTensors { names, .. }) => assert_eq!(
            names,
            ["encoder.layers.0.intermediate.Adapted.adapter.lora_b"]
        ),
        other => panic!("{:?}", other.err()),
    }
    let reshaped = dir.join("reshaped.safetensors");
    rewrite(&path, &reshaped, |t| {
        let (shape, _) = t.get_mut("head.weight").unwrap();
        let old = shape.clone();
        *shape = vec![old[1], old[0]];
    });
    assert!(
        matches!(load(&reshaped), Err(CheckpointError::WrongShapes { .. })),
        "wrong shape"
    );
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    match load(&truncated) {
        Err(CheckpointError::Corrupt { reason, .. }) => assert!(reason.contains("truncated")),
        other => panic!("{:?}", other.err()),
    }
    assert!(matches!(
        load(&dir.join("missing.safetensors")),
        Err(CheckpointError::Missing(_))
    ));
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"definitely not safetensors").unwrap();
    assert!(matches!(
        load(&garbage),
        Err(CheckpointError::Corrupt { .. })
    ));
    // no temporary file left behind by the save
    assert!(
        std::fs::read_dir(&dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.'))
    );
}

#[test]
fn a_saved_run_is_refused_when_its_files_do_not_match_and_legacy_runs_load() {
    let dir = common::temp_dir("ckpt-run");
    let config = TrainConfig {
        batch: 16,
        ..TrainConfig::default().with_max_rank(4).unwrap()
    };
    let (runner, _) = classifier(config);
    let data = runner.prepare().unwrap();
    let outcome = runner.train(&data).unwrap();
    let run = dir.join("run");
    runner
        .save(&run, &outcome.report, Some(&outcome.model))
        .unwrap();
    let (evaluated, _) = runner.evaluate_saved(&run, &data).unwrap();
    assert_eq!(
        evaluated.series("accuracy"),
        outcome.report.series("accuracy")
    );
    assert_eq!(
        evaluated.task_info["labels"],
        serde_json::json!(["rotten", "fresh"])
    );

    // a report replaced after the manifest was written: an incomplete save
    let report = std::fs::read_to_string(run.join(REPORT_FILE)).unwrap();
    std::fs::write(run.join(REPORT_FILE), format!("{report}\n")).unwrap();
    let err = runner.evaluate_saved(&run, &data).unwrap_err();
    assert_eq!(err.setting(), Some(Setting::Task("adapter")), "{err}");
    assert!(err.to_string().contains("not completely written"), "{err}");

    // a directory of an earlier version: adapter.bpk, no manifest
    let legacy = dir.join("legacy");
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::write(legacy.join(REPORT_FILE), report).unwrap();
    let modules = runner.task().trainable_modules();
    outcome
        .model
        .clone()
        .into_record_group(state_group(&modules))
        .save(legacy.join(LEGACY_ADAPTER_FILE))
        .unwrap();
    let (from_legacy, legacy_model) = runner.evaluate_saved(&legacy, &data).unwrap();
    assert_eq!(
        from_legacy.series("accuracy"),
        outcome.report.series("accuracy")
    );
    // re-saved in the current format, it names its modules as the base model does
    let upgraded = dir.join("upgraded");
    runner
        .save(&upgraded, &from_legacy, Some(&legacy_model))
        .unwrap();
    let meta = read_meta(&upgraded.join(ADAPTER_FILE)).unwrap();
    assert!(
        meta.modules
            .values()
            .all(|m| m.starts_with("encoder.layer.0.")),
        "{:?}",
        meta.modules
    );
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err: RunError = runner.evaluate_saved(&empty, &data).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn a_merged_model_gives_the_adapters_outputs_at_rank_k() {
    let dir = common::temp_dir("ckpt-merge");
    let config = TrainConfig::default().with_max_rank(8).unwrap();
    let (runner, model) = classifier(config);
    let model = model.map(&mut common::Perturb::default());
    let adapter = dir.join(ADAPTER_FILE);
    save_adapter(model.clone(), &adapter, &meta(&runner, &model)).unwrap();
    let merged = dir.join("merged");
    let summary = merge_adapter(&common::assets_dir(), &adapter, 4, &merged).unwrap();
    assert_eq!(summary.merged.len(), 6);
    assert!(summary.copied.contains(&"config.json".to_string()));
    assert!(summary.copied.contains(&"tokenizer.json".to_string()));

    // the merged directory loads with the crate's loader, no adapters
    let device = matryoshka_lora::cpu_device();
    let (encoder, _) = BertEncoder::from_pretrained_with(&merged, Some(1), None, &device).unwrap();
    let (ids, mask) = tokens(&device);
    let at_4 = model.with_active_rank(ActiveRank::Rank(4)).unwrap();
    let want = at_4.encoder.forward(ids.clone(), mask.clone());
    let got = encoder.forward(ids, mask);
    let diff = (want - got).abs().max().into_scalar::<f32>();
    println!("merged at rank 4 vs adapter at rank 4: max |diff| of hidden states {diff:e}");
    assert!(diff < 1e-4, "{diff}");
    // and the head is beside it
    let task_modules =
        matryoshka_lora::models::WeightFiles::open(&merged.join(TASK_MODULES_FILE)).unwrap();
    assert_eq!(task_modules.names(), ["head.bias", "head.weight"]);
}
