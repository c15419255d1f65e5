//! llama.cpp adapters out of a GGUF base: the real SmolLM2-135M-Instruct
//! (Q4_1, fetched by scripts/fetch-llm.sh) trained through the CLI and its
//! rank-k adapter exported for llama.cpp, and the exporter's file against
//! the Python `gguf` package's reading of it (scripts/make_gguf_fixtures.py).

mod common;

use common::{fixture, run_mlora as run, smollm2};

use matryoshka_lora::models::gguf::{GgufModel, rows_from_gguf};
use matryoshka_lora::models::llama::LlamaCheckpoint;

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
