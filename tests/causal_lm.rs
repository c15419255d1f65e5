//! The causal-LM task: parity of the Llama decoder with transformers on three
//! checkpoint layouts (fixtures by scripts/make_llama_fixtures.py), the SFT
//! token rule, KV-cached generation, and short training runs (the `mlora`
//! commands on it: tests/causal_lm_cli.rs).

mod common;

use burn::prelude::*;
use matryoshka_lora::data::{InstructRow, SftBatcher, SftTokenizer};
use matryoshka_lora::models::BaseDtype;
use matryoshka_lora::models::llama::{Generation, LlamaConfig, LlamaForCausalLm};
use matryoshka_lora::tasks::causal_lm::{CausalLmConfig, CausalLmTask};
use matryoshka_lora::train::{Runner, TaskModel, TrainConfig, TrainMethod};
use std::path::PathBuf;

/// A file of the tiny Llama fixtures (tests/fixtures/llama).
fn fixture(name: &str) -> PathBuf {
    common::fixture("llama").join(name)
}

#[derive(serde::Deserialize)]
struct Parity {
    sequences: Vec<Vec<u32>>,
    logits: Vec<Vec<Vec<f32>>>,
    sft_rows: Vec<serde_json::Map<String, serde_json::Value>>,
    max_len: usize,
    sft_ids: Vec<Vec<u32>>,
    prompt_lens: Vec<usize>,
    sft_loss: f64,
}

fn parity_of(layout: &str) -> (f32, f64) {
    let dir = fixture(layout);
    let parity: Parity =
        serde_json::from_str(&std::fs::read_to_string(dir.join("parity.json")).unwrap()).unwrap();
    let device = matryoshka_lora::cpu_device();
    let (model, config) =
        LlamaForCausalLm::from_pretrained(&dir, None, None, BaseDtype::F32, &device).unwrap();
    let mut worst = 0f32;
    for (seq, expected) in parity.sequences.iter().zip(&parity.logits) {
        let t = seq.len();
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(seq.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, t]),
            &device,
        );
        let mask = Tensor::<2, Int>::ones([1, t], &device);
        let got = model
            .logits(ids, mask)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let want: Vec<f32> = expected.iter().flatten().copied().collect();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            worst = worst.max((a - b).abs());
        }
    }
    // SFT ids by the crate's rule equal Python's
    let rows: Vec<InstructRow> = parity
        .sft_rows
        .iter()
        .map(|r| InstructRow {
            prompt: r["prompt"].as_str().unwrap().into(),
            response: r["response"].as_str().unwrap().into(),
            group: None,
        })
        .collect();
    let tokenizer = SftTokenizer::from_file(
        &dir.join("tokenizer.json"),
        config.eos_ids()[0],
        parity.max_len,
    )
    .unwrap();
    let (examples, counts) = tokenizer.encode(&rows).unwrap();
    assert_eq!(counts.dropped, 0);
    let ids: Vec<Vec<u32>> = examples.iter().map(|e| e.ids.clone()).collect();
    assert_eq!(ids, parity.sft_ids, "{layout}: SFT token ids");
    let lens: Vec<usize> = examples.iter().map(|e| e.prompt_len).collect();
    assert_eq!(lens, parity.prompt_lens, "{layout}: prompt lengths");
    let batch = SftBatcher { pad_id: 0 }.make(&examples, &device);
    let loss = model.forward_batch(&batch).loss.into_scalar::<f64>();
    (worst, (loss - parity.sft_loss).abs())
}

#[test]
fn logits_and_sft_loss_match_transformers_on_three_layouts() {
    for layout in ["llama3", "tinyllama", "smollm2"] {
        let (logits, loss) = parity_of(layout);
        println!("{layout}: max |logit diff| {logits:.2e}, |SFT loss diff| {loss:.2e}");
        assert!(logits < 1e-4, "{layout}: logits differ by {logits}");
        assert!(loss < 1e-5, "{layout}: SFT loss differs by {loss}");
    }
}

#[test]
fn configs_of_other_architectures_and_bad_weights_are_named() {
    let device = matryoshka_lora::cpu_device();
    let bert = common::temp_dir("llama-bert");
    std::fs::write(
        bert.join("config.json"),
        r#"{"model_type": "bert", "hidden_size": 8}"#,
    )
    .unwrap();
    let e =
        LlamaForCausalLm::from_pretrained(&bert, None, None, BaseDtype::F32, &device).unwrap_err();
    assert!(e.to_string().contains("model_type `bert`"), "{e}");
    // a mis-shaped config: the tensor is named
    let dir = common::temp_dir("llama-shape");
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("llama3").join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("llama3/config.json")).unwrap())
            .unwrap();
    config["intermediate_size"] = 100.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let e =
        LlamaForCausalLm::from_pretrained(&dir, None, None, BaseDtype::F32, &device).unwrap_err();
    assert!(
        e.to_string()
            .contains("model.layers.0.mlp.gate_proj.weight"),
        "{e}"
    );
    // untied config on tied weights: lm_head is missing
    config["intermediate_size"] = 160.into();
    config["tie_word_embeddings"] = false.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let e =
        LlamaForCausalLm::from_pretrained(&dir, None, None, BaseDtype::F32, &device).unwrap_err();
    assert!(e.to_string().contains("`lm_head.weight` is missing"), "{e}");
    assert!(LlamaConfig::from_file(&fixture("smollm2/config.json")).is_ok());
}

#[test]
fn kv_cached_generation_equals_recomputing_for_rows_of_different_lengths() {
    let device = matryoshka_lora::cpu_device();
    for layout in ["llama3", "smollm2"] {
        let (model, config) = LlamaForCausalLm::from_pretrained(
            &fixture(layout),
            None,
            None,
            BaseDtype::F32,
            &device,
        )
        .unwrap();
        let prompts = vec![
            vec![5u32, 9, 17, 33, 4, 80, 120],
            vec![7u32, 3],
            vec![44u32, 45, 46, 47],
        ];
        // no EOS stop, so every row runs the full length
        let settings = Generation {
            max_new_tokens: 12,
            eos_ids: vec![],
            pad_id: config.pad_id(),
        };
        let cached = model.generate(&prompts, &settings);
        let uncached = model.generate_uncached(&prompts, &settings);
        assert_eq!(cached, uncached, "{layout}");
        assert!(cached.iter().all(|r| r.len() == 12));
        // left padding changes nothing: each row alone gives the same tokens
        for (prompt, together) in prompts.iter().zip(&cached) {
            let alone = model.generate(std::slice::from_ref(prompt), &settings);
            assert_eq!(&alone[0], together, "{layout}");
        }
        // an EOS id ends a row (and is not returned)
        let stop_token = cached[1][3];
        let before = cached[1].iter().position(|&t| t == stop_token).unwrap();
        let stop = Generation {
            eos_ids: vec![stop_token],
            ..settings.clone()
        };
        let stopped = model.generate(&prompts[1..2], &stop);
        assert_eq!(stopped[0], cached[1][..before].to_vec());
    }
}

fn task(n_train: usize, max_new: usize) -> CausalLmTask {
    let mut c = CausalLmConfig::new(fixture("tinyllama"), fixture("arith.jsonl"));
    c.train_n = Some(n_train);
    c.test_n = Some(16);
    c.max_len = 40;
    c.max_new_tokens = max_new;
    CausalLmTask::new(c)
}

#[test]
fn short_training_lowers_held_out_response_loss_for_each_method() {
    let train = TrainConfig {
        batch: 8,
        eval_batch: 16,
        lr: 1e-2,
        epochs: 3,
        ..TrainConfig::default()
    }
    .with_max_rank(8)
    .unwrap();
    let runner = Runner::new(task(192, 6), train.clone())
        .unwrap()
        .quiet(true);
    let data = runner.prepare().unwrap();
    let base = runner.evaluate_base(&data).unwrap();
    let base_loss = base.base["base_loss"];
    assert!(base.ranks.is_empty());
    assert!(base.base.contains_key("base_exact_match"));
    for method in [
        TrainMethod::Lora,
        TrainMethod::Dylora,
        TrainMethod::Matryoshka,
    ] {
        let outcome = runner
            .train_with(train.clone().with_method(method), &data)
            .unwrap();
        let r = &outcome.report;
        assert_eq!(r.task, "causal-lm");
        assert_eq!(r.ranks, vec![1, 2, 4, 8]);
        for key in ["loss", "exact_match", "token_accuracy", "perplexity"] {
            assert_eq!(r.per_rank[key].len(), 4, "{method}: {key}");
            assert!(
                r.per_rank[key].iter().all(|v| v.is_finite()),
                "{method}: {key}"
            );
        }
        assert_eq!(r.aurac_metric, "exact_match");
        let (log2, linear) = r.recomputed_aurac().unwrap();
        assert!((log2 - r.aurac_log2).abs() < 1e-9 && (linear - r.aurac_linear).abs() < 1e-9);
        let at_r = *r.per_rank["loss"].last().unwrap();
        println!(
            "{method}: base loss {base_loss:.4}, rank-8 loss {at_r:.4}, per rank {:?}",
            r.per_rank["loss"]
        );
        assert!(
            at_r < base_loss - 0.25,
            "{method}: {at_r} vs base {base_loss}"
        );
    }
}
