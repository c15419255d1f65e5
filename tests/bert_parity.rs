//! The BERT encoder and tokenizer match PyTorch `transformers` (fixture made by
//! scripts/make_bert_fixture.py), and loading errors are clear.

mod common;

use matryoshka_lora::data::{TextBatcher, TextTokenizer, TokenizedExample};
use matryoshka_lora::models::LoadError;
use matryoshka_lora::models::bert::{BertEncoder, mean_pool};
use matryoshka_lora::{AdapterError, Injection, MatryoshkaConfig, Targets};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Deserialize)]
struct Fixture {
    max_len: usize,
    sentences: Vec<String>,
    ids: Vec<Vec<u32>>,
    shape: [usize; 3],
    last_hidden: Vec<f32>,
    mask: Vec<i64>,
    mean_pooled: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_parity.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn tokenizer_and_encoder_match_pytorch() {
    let fx = fixture();
    let assets = common::assets_dir();
    let tok = TextTokenizer::from_file(&assets.join("tokenizer.json"), fx.max_len).unwrap();
    let texts: Vec<&str> = fx.sentences.iter().map(String::as_str).collect();
    let ids = tok.encode_batch(&texts).unwrap();
    assert_eq!(ids, fx.ids, "token ids differ from Python tokenizers");

    let device = matryoshka_lora::cpu_device();
    let (encoder, config) = BertEncoder::from_pretrained(&assets, &device).unwrap();
    assert_eq!(config.num_hidden_layers, 6);
    assert_eq!(config.hidden_size, 384);
    let items: Vec<_> = ids
        .into_iter()
        .map(|ids| TokenizedExample { ids, label: 0 })
        .collect();
    let batch = TextBatcher::default().make(&items, &device);
    assert_eq!(batch.ids.dims(), [fx.shape[0], fx.shape[1]]);
    let hidden = encoder.forward(batch.ids.clone(), batch.mask.clone());
    let pooled = mean_pool(hidden.clone(), batch.mask);
    let hidden: Vec<f32> = hidden.into_data().try_to_vec_as::<f32>().unwrap();
    let pooled: Vec<f32> = pooled.into_data().try_to_vec_as::<f32>().unwrap();

    let d = fx.shape[2];
    let mut max_hidden = 0f32;
    for (pos, &m) in fx.mask.iter().enumerate() {
        if m == 1 {
            for j in 0..d {
                let i = pos * d + j;
                max_hidden = max_hidden.max((hidden[i] - fx.last_hidden[i]).abs());
            }
        }
    }
    let max_pooled = pooled
        .iter()
        .zip(&fx.mean_pooled)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("max |burn - torch|: hidden {max_hidden:e}, mean-pooled {max_pooled:e}");
    assert!(
        max_hidden < 1e-4,
        "last hidden states differ by {max_hidden}"
    );
    assert!(
        max_pooled < 1e-4,
        "mean-pooled embeddings differ by {max_pooled}"
    );
}

/// A tiny BERT checkpoint (d=8, 1 layer) written with the `safetensors` crate.
fn tiny_checkpoint(dir: &Path, drop: Option<&str>, reshape: Option<&str>) {
    let config = r#"{"vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,
        "intermediate_size":16,"max_position_embeddings":16,"type_vocab_size":2,
        "layer_norm_eps":1e-12,"hidden_act":"gelu"}"#;
    std::fs::write(dir.join("config.json"), config).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![10, 8]),
        ("embeddings.position_embeddings.weight".into(), vec![16, 8]),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, 8]),
        ("embeddings.LayerNorm.weight".into(), vec![8]),
        ("embeddings.LayerNorm.bias".into(), vec![8]),
        ("pooler.dense.weight".into(), vec![8, 8]),
    ];
    let p = "encoder.layer.0";
    for (name, o, i) in [
        ("attention.self.query", 8, 8),
        ("attention.self.key", 8, 8),
        ("attention.self.value", 8, 8),
        ("attention.output.dense", 8, 8),
        ("intermediate.dense", 16, 8),
        ("output.dense", 8, 16),
    ] {
        shapes.push((format!("{p}.{name}.weight"), vec![o, i]));
        shapes.push((format!("{p}.{name}.bias"), vec![o]));
    }
    for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
        shapes.push((format!("{p}.{norm}.weight"), vec![8]));
        shapes.push((format!("{p}.{norm}.bias"), vec![8]));
    }
    let mut bytes: HashMap<String, (Vec<usize>, Vec<u8>)> = HashMap::new();
    for (name, mut shape) in shapes {
        if Some(name.as_str()) == drop {
            continue;
        }
        if Some(name.as_str()) == reshape {
            shape[0] += 1;
        }
        let n: usize = shape.iter().product();
        let data: Vec<u8> = (0..n)
            .flat_map(|i| ((i % 7) as f32 * 0.01).to_le_bytes())
            .collect();
        bytes.insert(name, (shape, data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, (shape, data))| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (k.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn loading_errors_are_clear() {
    let device = matryoshka_lora::cpu_device();
    let dir = common::temp_dir("tiny-bert");
    tiny_checkpoint(&dir, None, None);
    let (enc, _) = BertEncoder::from_pretrained(&dir, &device).expect("tiny checkpoint loads");
    assert_eq!(enc.layers.len(), 1);

    let key_bias = "encoder.layer.0.attention.self.key.bias";
    tiny_checkpoint(&dir, Some(key_bias), None);
    let err = BertEncoder::from_pretrained(&dir, &device).unwrap_err();
    assert!(
        matches!(&err, LoadError::MissingTensor { name, .. } if name == key_bias),
        "{err}"
    );
    assert!(err.to_string().contains(key_bias));

    let value_w = "encoder.layer.0.attention.self.value.weight";
    tiny_checkpoint(&dir, None, Some(value_w));
    let err = BertEncoder::from_pretrained(&dir, &device).unwrap_err();
    assert!(
        matches!(&err, LoadError::WrongShape { name, expected, got, .. }
            if name == value_w && expected == &vec![8, 8] && got == &vec![9, 8]),
        "{err}"
    );

    std::fs::write(
        dir.join("model.safetensors"),
        b"this is not a safetensors file",
    )
    .unwrap();
    let err = BertEncoder::from_pretrained(&dir, &device).unwrap_err();
    assert!(matches!(err, LoadError::NotSafetensors { .. }), "{err}");

    let err = BertEncoder::from_pretrained(&dir.join("nope"), &device).unwrap_err();
    assert!(matches!(err, LoadError::MissingDir(_)), "{err}");
    assert!(err.to_string().contains("fetch-assets"));

    std::fs::write(dir.join("config.json"), "{").unwrap();
    let err = BertEncoder::from_pretrained(&dir, &device).unwrap_err();
    assert!(matches!(err, LoadError::Config { .. }), "{err}");

    tiny_checkpoint(&dir, None, None);
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replacen('{', r#"{"model_type":"roberta","#, 1),
    )
    .unwrap();
    let err = BertEncoder::from_pretrained(&dir, &device).unwrap_err();
    assert!(
        matches!(&err, LoadError::Config { reason, .. } if reason.contains("roberta")),
        "{err}"
    );
}

#[test]
fn adapters_attach_by_hugging_face_path_while_loading() {
    let device = matryoshka_lora::cpu_device();
    let dir = common::temp_dir("tiny-bert-inject");
    tiny_checkpoint(&dir, None, None);
    let config = MatryoshkaConfig::new().with_max_rank(4);
    let load = |targets: Targets, layers: Option<usize>| {
        let injection = Injection::new(config.clone(), targets).unwrap();
        BertEncoder::from_pretrained_with(&dir, layers, Some(&injection), &device)
            .map(|(encoder, _)| (encoder, injection.adapted(), injection.seen()))
    };
    let (encoder, adapted, seen) =
        load(Targets::names(["query", "attention.output.dense"]), None).unwrap();
    assert_eq!(
        adapted,
        [
            "encoder.layer.0.attention.self.query",
            "encoder.layer.0.attention.output.dense"
        ]
    );
    assert_eq!(seen.len(), 6);
    assert!(encoder.layers[0].attention.query.is_adapted());
    assert!(!encoder.layers[0].attention.key.is_adapted());
    assert!(encoder.layers[0].attention.output.is_adapted());
    assert!(!encoder.layers[0].output.is_adapted());

    // a misspelt target is an error listing the layers, not fewer adapters
    let err = load(Targets::names(["query", "kee"]), None).unwrap_err();
    assert!(
        matches!(&err, LoadError::Adapter(AdapterError::UnmatchedTargets { names, .. }) if names == &["kee"]),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("encoder.layer.0.attention.self.key")
    );
    // R above a layer's min(d_in, d_out) = 8
    let injection = Injection::new(
        MatryoshkaConfig::new().with_max_rank(16),
        Targets::names(["query"]),
    )
    .unwrap();
    let err = BertEncoder::from_pretrained_with(&dir, None, Some(&injection), &device).unwrap_err();
    assert!(
        matches!(err, LoadError::Adapter(AdapterError::RankAboveLayer { .. })),
        "{err}"
    );
    // more layers than the model has
    let err = load(Targets::names(["query"]), Some(2)).unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::TooManyLayers {
                asked: 2,
                available: 1
            }
        ),
        "{err}"
    );
}
