//! GGUF models in, llama.cpp adapters out: the real SmolLM2-135M-Instruct
//! (Q4_1, fetched by scripts/fetch-llm.sh) against transformers running a
//! Hugging Face directory converted from the same file (fixture by
//! scripts/make_gguf_fixtures.py), its tokenizer against the original
//! SmolLM2 rule, training and export through the CLI, and bad files.

mod common;

use common::{fixture, run_mlora as run};

use burn::prelude::*;
use matryoshka_lora::data::{InstructRow, SftBatcher, SftTokenizer};
use matryoshka_lora::models::gguf::{GgufModel, rows_from_gguf};
use matryoshka_lora::models::llama::LlamaCheckpoint;
use matryoshka_lora::models::{BaseDtype, TensorSource};
use matryoshka_lora::train::TaskModel;
use std::path::{Path, PathBuf};

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The real model (`$MLORA_ASSETS` or `assets/`).
fn smollm2() -> PathBuf {
    let path = common::assets_dir().join(SMOLLM2);
    assert!(
        path.is_file(),
        "{} missing: run scripts/fetch-llm.sh first",
        path.display()
    );
    path
}

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

/// Trains 2 layers of the real model from its GGUF file through the CLI,
/// evaluates the base, and exports rank 2 as a llama.cpp adapter: the file
/// holds PEFT's factors (lora_b rows of attn_q/attn_k in llama.cpp's order)
/// with `adapter.lora.alpha / k` = the crate's `s(k)`.
#[test]
fn cli_trains_on_a_gguf_base_and_exports_a_llama_cpp_adapter() {
    let dir = common::temp_dir("gguf-cli");
    let model = smollm2().display().to_string();
    let data = fixture("llama/arith_gsm8k.jsonl").display().to_string();
    let run_dir = dir.join("run");
    let run_s = run_dir.display().to_string();
    let (code, _, stderr) = run(&[
        "train",
        "--task",
        "causal-lm",
        "--model",
        &model,
        "--data",
        &data,
        "--layers",
        "2",
        "--rank",
        "4",
        "--ranks",
        "1,2,4",
        "--batch",
        "4",
        "--test-every",
        "4",
        "--max-len",
        "48",
        "--max-new-tokens",
        "0",
        "--lr",
        "1e-3",
        "--out",
        &run_s,
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
            .unwrap();
    let loss = report["loss"].as_array().unwrap();
    assert_eq!(loss.len(), 3);
    assert!(
        loss.iter().all(|l| l.as_f64().unwrap().is_finite()),
        "{loss:?}"
    );
    // the checkpoint names the GGUF file's header as its base
    let gguf = GgufModel::open(&smollm2()).unwrap();
    let meta = matryoshka_lora::io::read_meta(&run_dir.join("adapter.safetensors")).unwrap();
    assert_eq!(meta.base_model.as_deref(), Some(gguf.fingerprint()));

    let out = dir.join("adapter-r2.gguf");
    let out_s = out.display().to_string();
    let (code, stdout, stderr) = run(&[
        "export",
        "--adapter",
        &run_s,
        "--rank",
        "2",
        "--gguf",
        &out_s,
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["tensors"].as_array().unwrap().len(), 2 * 7 * 2);
    let peft = dir.join("peft");
    let peft_s = peft.display().to_string();
    let (code, _, stderr) = run(&[
        "export",
        "--adapter",
        &run_s,
        "--rank",
        "2",
        "--peft",
        &peft_s,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let peft_config: matryoshka_lora::io::PeftConfig =
        serde_json::from_str(&std::fs::read_to_string(peft.join("adapter_config.json")).unwrap())
            .unwrap();
    let peft_scale = peft_config.scale();
    assert!((peft_scale - meta.scaling.factor(2)).abs() < 1e-12);

    // an adapter file given as a model is refused, saying what it is
    let e = GgufModel::open(&out).unwrap_err().to_string();
    assert!(e.contains("general.type is `adapter`, not a model"), "{e}");
    let file = rlx_gguf::GgufFile::from_path(&out).unwrap();
    let s = |k: &str| file.metadata[k].as_str().unwrap().to_string();
    assert_eq!(s("general.type"), "adapter");
    assert_eq!(s("adapter.type"), "lora");
    assert_eq!(s("general.architecture"), "llama");
    let alpha = match file.metadata["adapter.lora.alpha"] {
        rlx_gguf::MetaValue::F32(a) => a as f64,
        ref other => panic!("alpha {other:?}"),
    };
    assert!(
        (alpha / 2.0 - peft_scale).abs() < 1e-6,
        "{alpha} vs {peft_scale}"
    );
    let weights =
        matryoshka_lora::models::WeightFiles::open(&peft.join("adapter_model.safetensors"))
            .unwrap();
    for layer in 0..2 {
        for (hf, gg, d_out, heads) in [
            ("self_attn.q_proj", "attn_q", 576, Some(9)),
            ("self_attn.k_proj", "attn_k", 192, Some(3)),
            ("mlp.down_proj", "ffn_down", 576, None),
        ] {
            let d_in = if gg == "ffn_down" { 1536 } else { 576 };
            let key = |f: &str| format!("base_model.model.model.layers.{layer}.{hf}.{f}.weight");
            let want_a = weights.read_f32(&key("lora_A"), &[2, d_in]).unwrap();
            let want_b = weights.read_f32(&key("lora_B"), &[d_out, 2]).unwrap();
            let name = format!("blk.{layer}.{gg}.weight");
            let ta = &file.tensors[&format!("{name}.lora_a")];
            let tb = &file.tensors[&format!("{name}.lora_b")];
            assert_eq!(
                (ta.shape.clone(), tb.shape.clone()),
                (vec![d_in, 2], vec![2, d_out])
            );
            let (a, _) = file.dequant_f32(&format!("{name}.lora_a")).unwrap();
            let (b, _) = file.dequant_f32(&format!("{name}.lora_b")).unwrap();
            assert_eq!(a, want_a, "{name}");
            let b = match heads {
                Some(h) => rows_from_gguf(&b, d_out, 2, h),
                None => b,
            };
            assert_eq!(b, want_b, "{name}");
            assert!(b.iter().any(|v| *v != 0.0), "{name}: B never trained");
        }
    }
    // the PEFT export imported on the GGUF base: its rank 2 is the run's rank 2
    let imported = dir.join("imported");
    let imported_s = imported.display().to_string();
    let (code, _, stderr) = run(&[
        "import",
        "--peft",
        &peft_s,
        "--task",
        "causal-lm",
        "--model",
        &model,
        "--data",
        &data,
        "--layers",
        "2",
        "--test-every",
        "4",
        "--max-len",
        "48",
        "--max-new-tokens",
        "0",
        "--out",
        &imported_s,
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(imported.join("report.json")).unwrap())
            .unwrap();
    let again_loss = again["loss"].as_array().unwrap();
    assert_eq!(again["ranks"], serde_json::json!([1, 2]));
    assert!(
        (again_loss[1].as_f64().unwrap() - loss[1].as_f64().unwrap()).abs() < 1e-5,
        "imported rank 2 {again_loss:?} vs trained {loss:?}"
    );
    // merged into the GGUF base at rank 2: a Hugging Face directory whose
    // base loss (first 2 layers, the run's test split) is the run's rank-2 loss
    let merged = dir.join("merged");
    let merged_s = merged.display().to_string();
    let (code, _, stderr) = run(&[
        "merge",
        "--adapter",
        &run_s,
        "--rank",
        "2",
        "--out",
        &merged_s,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = run(&[
        "eval",
        "--task",
        "causal-lm",
        "--model",
        &merged_s,
        "--data",
        &data,
        "--layers",
        "2",
        "--test-every",
        "4",
        "--max-len",
        "48",
        "--max-new-tokens",
        "0",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let base: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let merged_loss = base["base_loss"].as_f64().unwrap();
    let rank2_loss = loss[1].as_f64().unwrap();
    assert!(
        (merged_loss - rank2_loss).abs() < 1e-4,
        "merged {merged_loss} vs rank 2 {rank2_loss}"
    );
    // a rank above R is refused without writing
    let bad = dir.join("bad.gguf");
    let bad_s = bad.display().to_string();
    let (code, _, stderr) = run(&[
        "export",
        "--adapter",
        &run_s,
        "--rank",
        "8",
        "--gguf",
        &bad_s,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--rank"), "{stderr}");
    assert!(!bad.exists());
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

/// The rank-2 llama.cpp adapter of a committed run holds what
/// scripts/make_gguf_fixtures.py computed from the run's A and B with
/// llama.cpp's conventions (and checked against the file as the Python
/// `gguf` package reads it): names, dimensions, f32 values, alpha.
#[test]
fn llama_cpp_adapter_equals_the_gguf_package_fixture() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("gguf/adapter_r2.json")).unwrap())
            .unwrap();
    let dir = common::temp_dir("gguf-adapter-fixture");
    let out = dir.join("adapter-r2.gguf");
    let base = LlamaCheckpoint::open(&fixture("gguf/smollm2.gguf"))
        .unwrap()
        .config()
        .unwrap();
    let export = matryoshka_lora::io::export_gguf_adapter(
        &fixture("gguf/adapter/adapter.safetensors"),
        2,
        &base,
        &out,
    )
    .unwrap();
    let alpha = expected["alpha"].as_f64().unwrap();
    assert!((export.alpha - alpha).abs() < 1e-12);
    let file = rlx_gguf::GgufFile::from_path(&out).unwrap();
    for (k, v) in expected["metadata"].as_object().unwrap() {
        assert_eq!(file.metadata[k].as_str(), v.as_str(), "{k}");
    }
    match file.metadata["adapter.lora.alpha"] {
        rlx_gguf::MetaValue::F32(a) => assert_eq!(a, alpha as f32),
        ref other => panic!("adapter.lora.alpha is {other:?}"),
    }
    let tensors = expected["tensors"].as_object().unwrap();
    assert_eq!(file.tensors.len(), tensors.len());
    for (name, want) in tensors {
        let t = &file.tensors[name];
        let ne: Vec<usize> = want["ne"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape, ne, "{name}");
        assert_eq!(t.dtype, rlx_gguf::GgmlType::F32, "{name}");
        let (values, _) = file.dequant_f32(name).unwrap();
        let want: Vec<f32> = want["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(values, want, "{name}");
    }
}
