//! GGUF models in, llama.cpp adapters out: the real SmolLM2-135M-Instruct
//! (Q4_1, fetched by scripts/fetch-llm.sh) against transformers running a
//! Hugging Face directory converted from the same file (fixture by
//! scripts/make_gguf_fixtures.py), its tokenizer against the original
//! SmolLM2 rule, three tiny layouts against their directories, and bad
//! files (training and llama.cpp export: tests/gguf_adapter.rs).

mod common;

use common::{fixture, run_mlora as run, smollm2};

use burn::prelude::*;
use matryoshka_lora::data::{InstructRow, SftBatcher, SftTokenizer};
use matryoshka_lora::models::gguf::{GgufModel, rows_from_gguf};
use matryoshka_lora::models::llama::LlamaCheckpoint;
use matryoshka_lora::models::{BaseDtype, TensorSource};
use matryoshka_lora::train::TaskModel;
use std::path::Path;

#[derive(serde::Deserialize)]
struct Logits {
    prompt: String,
    ids: Vec<u32>,
    cols: Vec<usize>,
    values: Vec<Vec<f32>>,
    argmax: Vec<usize>,
    logsumexp: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct Parity {
    logits: Vec<Logits>,
    sft_rows: Vec<serde_json::Map<String, serde_json::Value>>,
    max_len: usize,
    sft_ids: Vec<Vec<u32>>,
    prompt_lens: Vec<usize>,
    sft_loss: f64,
    token_strings: Vec<String>,
    token_ids: Vec<Vec<u32>>,
}

fn parity() -> Parity {
    serde_json::from_str(&std::fs::read_to_string(fixture("gguf/smollm2_parity.json")).unwrap())
        .unwrap()
}

#[test]
fn real_model_logits_and_sft_loss_match_transformers() {
    let parity = parity();
    let path = smollm2();
    let device = matryoshka_lora::cpu_device();
    let checkpoint = LlamaCheckpoint::open(&path).unwrap();
    let config = checkpoint.config().unwrap();
    assert_eq!(
        (
            config.num_hidden_layers,
            config.hidden_size,
            config.vocab_size
        ),
        (30, 576, 49_152)
    );
    assert_eq!((config.num_attention_heads, config.kv_heads()), (9, 3));
    assert!(config.tie_word_embeddings);
    assert_eq!((config.rope_theta, config.rms_norm_eps), (100_000.0, 1e-5));
    assert_eq!(config.eos_ids(), [2]);
    let tokenizer = checkpoint.tokenizer().unwrap();
    let (model, _) = checkpoint
        .load(None, None, BaseDtype::F32, &device)
        .unwrap();
    let mut worst = 0f32;
    let mut worst_lse = 0f32;
    for case in &parity.logits {
        let ids = tokenizer.encode(case.prompt.as_str(), true).unwrap();
        assert_eq!(ids.get_ids(), case.ids, "{:?}", case.prompt);
        let t = case.ids.len();
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(
                case.ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [1, t],
            ),
            &device,
        );
        let logits = model.logits(input, Tensor::<2, Int>::ones([1, t], &device));
        let v = logits.dims()[2];
        let all = logits.into_data().try_to_vec::<f32>().unwrap();
        for (pos, row) in all.chunks(v).enumerate() {
            for (&col, want) in case.cols.iter().zip(&case.values[pos]) {
                worst = worst.max((row[col] - want).abs());
            }
            let max = row.iter().copied().fold(f32::MIN, f32::max);
            let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
            worst_lse = worst_lse.max((lse - case.logsumexp[pos]).abs());
            let argmax = row
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
                .0;
            assert_eq!(argmax, case.argmax[pos], "{:?} position {pos}", case.prompt);
        }
    }
    // the crate's SFT rule on GSM-style rows, and transformers' masked loss
    let rows: Vec<InstructRow> = parity
        .sft_rows
        .iter()
        .map(|r| InstructRow {
            prompt: r["prompt"].as_str().unwrap().into(),
            response: r["response"].as_str().unwrap().into(),
            group: None,
        })
        .collect();
    let sft = SftTokenizer::new(tokenizer, config.eos_ids()[0], parity.max_len).unwrap();
    let (examples, _) = sft.encode(&rows).unwrap();
    let ids: Vec<Vec<u32>> = examples.iter().map(|e| e.ids.clone()).collect();
    assert_eq!(ids, parity.sft_ids);
    let lens: Vec<usize> = examples.iter().map(|e| e.prompt_len).collect();
    assert_eq!(lens, parity.prompt_lens);
    let batch = SftBatcher { pad_id: 0 }.make(&examples, &device);
    let loss = model.forward_batch(&batch).loss.into_scalar::<f64>();
    let loss_diff = (loss - parity.sft_loss).abs();
    println!(
        "SmolLM2 Q4_1 vs transformers: max |logit diff| {worst:.2e}, max |logsumexp diff| {worst_lse:.2e}, SFT loss {loss:.6} vs {:.6} (|diff| {loss_diff:.2e})",
        parity.sft_loss
    );
    assert!(worst < 1e-3, "logits differ by {worst}");
    assert!(worst_lse < 1e-3, "logsumexp differs by {worst_lse}");
    assert!(loss_diff < 1e-3, "SFT loss differs by {loss_diff}");
}

/// Digits one by one, then byte-level BPE (the original SmolLM2
/// tokenizer.json), on 300 strings with digits, blank lines before digits,
/// unicode, code and chat markup.
#[test]
fn real_model_tokenizer_equals_the_original_smollm2_rule() {
    let parity = parity();
    let gguf = GgufModel::open(&smollm2()).unwrap();
    let tokenizer = gguf.embedded_tokenizer().unwrap();
    assert_eq!(parity.token_strings.len(), 300);
    let mut differ = Vec::new();
    for (s, want) in parity.token_strings.iter().zip(&parity.token_ids) {
        let got = tokenizer
            .encode(s.as_str(), true)
            .unwrap()
            .get_ids()
            .to_vec();
        if &got != want {
            differ.push(format!("{s:?}: {got:?} != {want:?}"));
        }
        // decoding gives the text back (byte-level BPE loses nothing)
        assert_eq!(tokenizer.decode(&got, false).unwrap(), *s);
    }
    assert!(
        differ.is_empty(),
        "{} strings differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
    let blank = tokenizer.encode("\n\n1.", true).unwrap();
    assert_eq!(blank.get_ids(), [1116, 33, 30]);
}

/// q/k rows come back in Hugging Face order: the GGUF reader's rows equal a
/// hand un-permutation of the raw rows, and other tensors are untouched.
#[test]
fn real_model_query_rows_are_unpermuted() {
    let gguf = GgufModel::open(&smollm2()).unwrap();
    let (raw, shape) = gguf.read_gguf("blk.3.attn_k.weight").unwrap();
    assert_eq!(shape, [192, 576]);
    let hf = gguf
        .read_f32("model.layers.3.self_attn.k_proj.weight", &[192, 576])
        .unwrap();
    assert_eq!(hf, rows_from_gguf(&raw, 192, 576, 3));
    assert_ne!(hf, raw);
    // row 1 of head 0 in HF order is GGUF row 2 (pairs interleaved)
    assert_eq!(hf[576..2 * 576], raw[2 * 576..3 * 576]);
    let (v, _) = gguf.read_gguf("blk.3.attn_v.weight").unwrap();
    assert_eq!(
        gguf.read_f32("model.layers.3.self_attn.v_proj.weight", &[192, 576])
            .unwrap(),
        v
    );
}

/// A GGUF header with `arch` and one tensor of `ty` (raw bytes).
fn write_gguf(path: &Path, arch: &str, ty: rlx_gguf::GgmlType, bytes: usize) {
    let mut w = rlx_gguf::GgufWriter::new();
    w.set_arch(arch);
    w.set_meta(format!("{arch}.block_count"), rlx_gguf::MetaValue::U32(1));
    w.add_tensor_bytes("token_embd.weight", vec![256, 1], ty, vec![1u8; bytes])
        .unwrap();
    w.write_to_path(path).unwrap();
}

#[test]
fn bad_gguf_files_are_one_line_errors_naming_the_file_exit_2_nothing_written() {
    let dir = common::temp_dir("gguf-bad");
    let data = dir.join("rows.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"1+1=\", \"response\": \"2\"}\n".repeat(8),
    )
    .unwrap();
    let truncated = dir.join("truncated.gguf");
    let bytes = std::fs::read(fixture("gguf/quants.gguf")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let gemma = dir.join("gemma3.gguf");
    write_gguf(&gemma, "gemma3", rlx_gguf::GgmlType::F32, 1024);
    let iq = dir.join("iq2.gguf");
    write_gguf(&iq, "llama", rlx_gguf::GgmlType::IQ4NL, 2 * (2 + 16) * 4);
    let cases = [
        (&truncated, "truncated"),
        (&gemma, "general.architecture `gemma3` is not supported"),
        (&iq, "has type IQ4_NL, which is not supported"),
    ];
    for (model, says) in cases {
        for command in ["train", "eval"] {
            let out = dir.join(format!("out-{command}"));
            let model_s = model.display().to_string();
            let mut args = vec![
                command,
                "--task",
                "causal-lm",
                "--model",
                &model_s,
                "--data",
            ];
            let data_s = data.display().to_string();
            args.push(&data_s);
            let out_s = out.display().to_string();
            if command == "train" {
                args.extend(["--out", &out_s]);
            }
            let (code, _, stderr) = run(&args);
            assert_eq!(code, 2, "{command} {model_s}: {stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
            assert!(stderr.contains("--model"), "{stderr}");
            assert!(stderr.contains(&model_s), "{stderr}");
            assert!(stderr.contains(says), "{says}: {stderr}");
            assert!(!out.exists(), "{command} wrote {}", out.display());
        }
    }
}

/// The three tiny Hugging Face layouts (Llama 3 with rope scaling and BOS,
/// TinyLlama untied in f16, SmolLM2 tied) written as llama.cpp writes them
/// (scripts/make_gguf_fixtures.py): each GGUF file loads as its directory:
/// same config, same token ids, the same logits.
#[test]
fn gguf_files_of_three_layouts_load_as_their_directories() {
    let device = matryoshka_lora::cpu_device();
    let rows: Vec<String> = std::fs::read_to_string(fixture("llama/arith.jsonl"))
        .unwrap()
        .lines()
        .take(20)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{}{}",
                v["prompt"].as_str().unwrap(),
                v["response"].as_str().unwrap()
            )
        })
        .collect();
    for layout in ["llama3", "tinyllama", "smollm2"] {
        let dir = LlamaCheckpoint::open(&fixture(&format!("llama/{layout}"))).unwrap();
        let gguf = LlamaCheckpoint::open(&fixture(&format!("gguf/{layout}.gguf"))).unwrap();
        let (want, got) = (dir.config().unwrap(), gguf.config().unwrap());
        assert_eq!(got.rope_scaling, want.rope_scaling, "{layout}");
        assert_eq!(
            got.tie_word_embeddings, want.tie_word_embeddings,
            "{layout}"
        );
        assert_eq!(
            (
                got.num_attention_heads,
                got.kv_heads(),
                got.head_size(),
                got.rope_theta
            ),
            (
                want.num_attention_heads,
                want.kv_heads(),
                want.head_size(),
                want.rope_theta
            ),
            "{layout}"
        );
        assert_eq!(got.eos_ids()[0], want.eos_ids()[0], "{layout}");
        let (tw, tg) = (dir.tokenizer().unwrap(), gguf.tokenizer().unwrap());
        for row in &rows {
            let a = tw.encode(row.as_str(), true).unwrap();
            let b = tg.encode(row.as_str(), true).unwrap();
            assert_eq!(a.get_ids(), b.get_ids(), "{layout}: {row:?}");
        }
        let (mw, _) = dir.load(None, None, BaseDtype::F32, &device).unwrap();
        let (mg, _) = gguf.load(None, None, BaseDtype::F32, &device).unwrap();
        let ids = tw
            .encode(rows[0].as_str(), true)
            .unwrap()
            .get_ids()
            .to_vec();
        let t = ids.len();
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, t]),
            &device,
        );
        let mask = Tensor::<2, Int>::ones([1, t], &device);
        let a = mw
            .logits(input.clone(), mask.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b = mg
            .logits(input, mask)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{layout}: logits differ by {worst}");
    }
}
