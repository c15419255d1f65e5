//! PEFT's LoRA format against the real `peft` package's files
//! (tests/fixtures/peft, made by scripts/make_peft_fixture.py): an imported
//! PEFT adapter gives PEFT's outputs; an export gives PEFT's keys, shapes,
//! config and the same update; unsupported adapters are refused.

mod common;

use burn::module::Module;
use matryoshka_lora::data::{TextBatcher, TokenizedExample};
use matryoshka_lora::io::peft::{PEFT_CONFIG, PEFT_WEIGHTS, PeftError};
use matryoshka_lora::io::{ADAPTER_FILE, export_peft, read_peft, save_adapter};
use matryoshka_lora::models::WeightFiles;
use matryoshka_lora::tasks::classify::{ClassLabels, ClassifyConfig, ClassifyTask};
use matryoshka_lora::train::{Runner, Task, TrainConfig};
use matryoshka_lora::{ActiveRank, AdaptedModule, RankSet, Scaling};
use serde::Deserialize;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft")
}

#[derive(Deserialize)]
struct Outputs {
    ids: Vec<Vec<u32>>,
    mask: Vec<i64>,
    shape: [usize; 3],
    last_hidden: Vec<f32>,
    logits: Vec<f32>,
}

fn labels() -> ClassLabels {
    ClassLabels {
        names: vec!["rotten".into(), "fresh".into()],
        dropped: 0,
        ..ClassLabels::default()
    }
}

fn runner(targets: Vec<String>, rank: usize, scaling: Scaling) -> Runner<ClassifyTask> {
    let config = TrainConfig {
        rank,
        ranks: RankSet::powers_of_two(rank).unwrap().ranks().to_vec(),
        targets: Some(targets),
        scaling,
        ..TrainConfig::default()
    };
    Runner::new(
        ClassifyTask::new(ClassifyConfig::rt_protocol(common::assets_dir())),
        config,
    )
    .unwrap()
}

/// The fixture's sentences as a padded batch.
fn fixture_batch(fx: &Outputs, device: &burn::prelude::Device) -> matryoshka_lora::data::TextBatch {
    let items: Vec<TokenizedExample> = fx
        .ids
        .iter()
        .map(|ids| TokenizedExample {
            ids: ids.clone(),
            label: 0,
        })
        .collect();
    TextBatcher::default().make(&items, device)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn an_imported_peft_adapter_gives_pefts_outputs_and_exports_to_its_format() {
    let peft = read_peft(&fixture()).unwrap();
    assert_eq!(peft.config.r, 4);
    assert_eq!(peft.modules.len(), 18);
    assert_eq!(
        peft.saved.keys().collect::<Vec<_>>(),
        ["head.bias", "head.weight"]
    );
    let fx: Outputs =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("outputs.json")).unwrap())
            .unwrap();
    let device = matryoshka_lora::cpu_device();
    let batch = fixture_batch(&fx, &device);
    let d = fx.shape[2];
    let real = |hidden: &[f32]| -> Vec<f32> {
        fx.mask
            .iter()
            .enumerate()
            .filter(|(_, m)| **m == 1)
            .flat_map(|(pos, _)| hidden[pos * d..(pos + 1) * d].to_vec())
            .collect()
    };
    let want_hidden = real(&fx.last_hidden);

    let dir = common::temp_dir("peft");
    for scaling in [Scaling::Sqrt, Scaling::Rank, Scaling::None] {
        let runner = runner(peft.targets(), 4, scaling);
        let model = runner.import_peft(&peft, &labels()).unwrap();
        let at_r = model.clone().with_active_rank(ActiveRank::Rank(4)).unwrap();
        let hidden = at_r.encoder.forward(batch.ids.clone(), batch.mask.clone());
        let logits = at_r.forward(batch.ids.clone(), batch.mask.clone());
        let hidden: Vec<f32> = hidden.into_data().try_to_vec().unwrap();
        let logits: Vec<f32> = logits.into_data().try_to_vec().unwrap();
        let (dh, dl) = (
            max_diff(&real(&hidden), &want_hidden),
            max_diff(&logits, &fx.logits),
        );
        println!("import ({scaling}) vs PEFT: max |diff| hidden {dh:e}, logits {dl:e}");
        assert!(dh < 1e-4 && dl < 1e-4, "{scaling}: {dh} {dl}");

        // Export the imported adapter at rank 4: PEFT's keys, shapes and update.
        let adapter = dir.join(format!("{scaling}-{ADAPTER_FILE}"));
        let meta = runner.adapter_meta(runner.config(), &model, runner.task().describe(&labels()));
        save_adapter(model, &adapter, &meta).unwrap();
        let out = std::env::var_os("MLORA_PEFT_EXPORT")
            .filter(|_| scaling == Scaling::Sqrt)
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join(format!("{scaling}-peft")));
        let export = export_peft(&adapter, 4, &out, None).unwrap();
        let ours = WeightFiles::open(&out.join(PEFT_WEIGHTS)).unwrap();
        let theirs = WeightFiles::open(&fixture().join(PEFT_WEIGHTS)).unwrap();
        assert_eq!(ours.names(), theirs.names());
        assert_eq!(export.keys, theirs.names());
        assert_eq!(export.config.r, 4);
        assert_eq!(
            export.config.modules_to_save,
            Some(vec!["head".to_string()])
        );
        assert_eq!(
            export.config.target_modules.as_array().map(|t| t.len()),
            Some(18)
        );
        let (our_scale, their_scale) = (export.config.scale(), peft.config.scale());
        assert!((our_scale - scaling.factor(4)).abs() < 1e-12);
        for name in theirs.names() {
            let shape = theirs.shape(&name).unwrap();
            assert_eq!(ours.shape(&name).unwrap(), shape, "{name}");
            let (a, b) = (
                ours.read_f32(&name, &shape).unwrap(),
                theirs.read_f32(&name, &shape).unwrap(),
            );
            // lora_B carries the scale: compare the update scale * B.
            let (a, b): (Vec<f32>, Vec<f32>) = if name.ends_with("lora_B.weight") {
                (
                    a.iter().map(|v| v * our_scale as f32).collect(),
                    b.iter().map(|v| v * their_scale as f32).collect(),
                )
            } else {
                (a, b)
            };
            assert!(max_diff(&a, &b) < 1e-6, "{name}: {}", max_diff(&a, &b));
        }
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(PEFT_CONFIG)).unwrap()).unwrap();
        assert_eq!(config["peft_type"], "LORA");
        assert_eq!(config["r"], 4);
    }
}

/// A change to a PEFT adapter_config.json.
type Edit = fn(&mut serde_json::Value);

#[test]
fn unsupported_or_malformed_peft_adapters_are_refused() {
    let dir = common::temp_dir("peft-bad");
    let copy = |name: &str, edit: Edit| -> PathBuf {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(fixture().join(PEFT_WEIGHTS), d.join(PEFT_WEIGHTS)).unwrap();
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture().join(PEFT_CONFIG)).unwrap())
                .unwrap();
        edit(&mut config);
        std::fs::write(d.join(PEFT_CONFIG), config.to_string()).unwrap();
        d
    };
    let cases: [(&str, Edit); 4] = [
        ("dora", |c| c["use_dora"] = true.into()),
        ("pattern", |c| {
            c["rank_pattern"] = serde_json::json!({"query": 8})
        }),
        ("conv1d", |c| c["fan_in_fan_out"] = true.into()),
        ("ia3", |c| c["peft_type"] = "IA3".into()),
    ];
    for (name, edit) in cases {
        let err = read_peft(&copy(name, edit)).unwrap_err();
        assert!(
            matches!(err, PeftError::Unsupported { .. }),
            "{name}: {err}"
        );
    }
    let wrong_r = copy("wrong-r", |c| c["r"] = 8.into());
    assert!(matches!(
        read_peft(&wrong_r),
        Err(PeftError::Invalid { .. })
    ));
    assert!(read_peft(&dir.join("nothing")).is_err());
    // the runner's R must be the adapter's r
    let peft = read_peft(&fixture()).unwrap();
    let err = runner(peft.targets(), 8, Scaling::Sqrt)
        .import_peft(&peft, &labels())
        .unwrap_err();
    assert!(err.to_string().contains("r = 4"), "{err}");
}

#[test]
fn a_matryoshka_adapter_exports_at_a_lower_rank() {
    // A MatryoshkaLoRA adapter of R = 8 on every encoder linear, with values.
    let config = TrainConfig::default().with_max_rank(8).unwrap();
    let runner = Runner::new(
        ClassifyTask::new(ClassifyConfig::rt_protocol(common::assets_dir())),
        config,
    )
    .unwrap();
    let device = matryoshka_lora::cpu_device();
    let model = runner
        .build_model(&labels(), &device)
        .unwrap()
        .map(&mut common::Perturb::default());
    let dir = common::temp_dir("peft-rank2");
    let adapter = dir.join(ADAPTER_FILE);
    let meta = runner.adapter_meta(runner.config(), &model, runner.task().describe(&labels()));
    save_adapter(model.clone(), &adapter, &meta).unwrap();
    let keep = std::env::var_os("MLORA_PEFT_EXPORT_K").map(PathBuf::from);
    let out = keep.clone().unwrap_or_else(|| dir.join("peft"));
    let export = export_peft(&adapter, 2, &out, None).unwrap();
    assert_eq!(export.config.r, 2);
    assert!((export.config.scale() - Scaling::Sqrt.factor(2)).abs() < 1e-12);
    assert_eq!(export.keys.len(), 36 * 2 + 2);
    let ours = WeightFiles::open(&out.join(PEFT_WEIGHTS)).unwrap();
    let q = "base_model.model.encoder.layer.0.attention.self.query";
    assert_eq!(
        ours.shape(&format!("{q}.lora_A.weight")),
        Some(vec![2, 384])
    );
    assert_eq!(
        ours.shape(&format!("{q}.lora_B.weight")),
        Some(vec![384, 2])
    );
    let inter = "base_model.model.encoder.layer.3.intermediate.dense";
    assert_eq!(
        ours.shape(&format!("{inter}.lora_B.weight")),
        Some(vec![1536, 2])
    );
    assert_eq!(
        ours.shape("base_model.model.head.weight"),
        Some(vec![2, 384])
    );

    // Our outputs at rank 2, for checking the export with PEFT itself
    // (scripts/make_peft_fixture.py check-ours DIR).
    if let Some(out) = keep {
        let fx: Outputs =
            serde_json::from_str(&std::fs::read_to_string(fixture().join("outputs.json")).unwrap())
                .unwrap();
        let batch = fixture_batch(&fx, &device);
        let at_2 = model.with_active_rank(ActiveRank::Rank(2)).unwrap();
        let hidden: Vec<f32> = at_2
            .encoder
            .forward(batch.ids.clone(), batch.mask.clone())
            .into_data()
            .try_to_vec()
            .unwrap();
        let logits: Vec<f32> = at_2
            .forward(batch.ids, batch.mask)
            .into_data()
            .try_to_vec()
            .unwrap();
        let json = serde_json::json!({"last_hidden": hidden, "logits": logits, "mask": fx.mask});
        std::fs::write(out.join("ours.json"), json.to_string()).unwrap();
        // and the same adapter merged at rank 2, for transformers to load
        matryoshka_lora::io::merge_adapter(&common::assets_dir(), &adapter, 2, &out.join("merged"))
            .unwrap();
    }
}
