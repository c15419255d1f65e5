//! The tokenizer stored in a GGUF file's `tokenizer.ggml.*` metadata, as a
//! Hugging Face [`Tokenizer`], built the way llama.cpp builds its own:
//!
//! - `tokenizer.ggml.model` = `gpt2`: byte-level BPE from `tokens` and
//!   `merges`, split first by the pre-tokenizer `tokenizer.ggml.pre` names
//!   (llama.cpp's regular expressions for it; see [`PRE_TOKENIZERS`]);
//! - `llama`: SentencePiece BPE from `tokens` and `scores` (a merge per pair
//!   of pieces that make a piece, ranked by that piece's score), spaces as
//!   `▁`, a leading `▁` when `add_space_prefix`, unknown bytes as `<0xNN>`
//!   tokens (byte fallback);
//!
//! with `tokenizer.ggml.token_type` control tokens as special tokens and
//! user-defined ones as added tokens, and BOS / EOS added as
//! `add_bos_token` / `add_eos_token` say (llama.cpp's defaults when absent:
//! BOS for `llama`, nothing for `gpt2`). The model's `tokenizer.json` beside
//! the file wins over all this ([`GgufModel::tokenizer`]).

use super::file::GgufModel;
use crate::models::LoadError;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
    Tokenizer,
};

/// GPT-2's split: contractions, letters, digits, other symbols, spaces.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's split: digits in groups of at most three.
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: every digit alone.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's `default` (a `gpt2` model whose file names no pre-tokenizer).
const DEFAULT: [&str; 4] = [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"];

/// The `tokenizer.ggml.pre` values understood, and what they split by.
pub const PRE_TOKENIZERS: [(&str, &str); 6] = [
    ("smollm", "each digit alone, then GPT-2's split"),
    ("llama-bpe", "Llama 3's split (also `llama3`, `llama-v3`)"),
    ("qwen2", "Qwen2's split"),
    ("gpt-2", "GPT-2's split"),
    ("default", "llama.cpp's default regular expressions"),
    ("(absent)", "as `default`"),
];

/// `tokenizer.ggml.token_type` values.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;
const UNKNOWN: i64 = 2;
const BYTE: i64 = 6;

impl GgufModel {
    /// The model's tokenizer: a Hugging Face tokenizer file beside the GGUF
    /// file when there is one for it (`{stem}.tokenizer.json`, else
    /// `tokenizer.json` of the same vocabulary size as the file's own: a
    /// directory may hold other models' files), else the one in the file's
    /// metadata.
    pub fn tokenizer(&self) -> Result<Tokenizer, LoadError> {
        let own_size = self
            .meta("tokenizer.ggml.tokens")
            .and_then(|t| t.as_array())
            .map(<[_]>::len);
        let dir = self.path().parent().unwrap_or(std::path::Path::new("."));
        let stem = self
            .path()
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let named = dir.join(format!("{stem}.tokenizer.json"));
        let plain = dir.join("tokenizer.json");
        for (path, check_size) in [(named, false), (plain, true)] {
            if !path.is_file() {
                continue;
            }
            let tokenizer = Tokenizer::from_file(&path).map_err(|e| LoadError::Tokenizer {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            if !check_size || own_size.is_none_or(|n| n == tokenizer.get_vocab_size(true)) {
                return Ok(tokenizer);
            }
        }
        self.embedded_tokenizer()
    }

    /// The tokenizer in the file's metadata (ignoring any `tokenizer.json`).
    pub fn embedded_tokenizer(&self) -> Result<Tokenizer, LoadError> {
        let bad = |reason: String| LoadError::Tokenizer {
            path: self.path().to_path_buf(),
            reason,
        };
        let tokens = self.meta_strings("tokenizer.ggml.tokens").ok_or_else(|| {
            bad("tokenizer.ggml.tokens is missing (no tokenizer in the file)".into())
        })?;
        let types: Vec<i64> = match self.meta_numbers("tokenizer.ggml.token_type") {
            Some(t) if t.len() == tokens.len() => t.into_iter().map(|v| v as i64).collect(),
            Some(t) => {
                return Err(bad(format!(
                    "tokenizer.ggml.token_type has {} entries for {} tokens",
                    t.len(),
                    tokens.len()
                )));
            }
            None => vec![1; tokens.len()],
        };
        let model = self.meta_str("tokenizer.ggml.model").unwrap_or("");
        let mut tokenizer = match model {
            "gpt2" => self.byte_level_bpe(&tokens).map_err(bad)?,
            "llama" => self.sentencepiece(&tokens, &types).map_err(bad)?,
            other => {
                return Err(bad(format!(
                    "tokenizer.ggml.model `{other}` is not supported (gpt2 or llama); put the model's tokenizer.json beside the file"
                )));
            }
        };
        let added = |kind: i64, special: bool| -> Vec<AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|(_, t)| **t == kind)
                .map(|(s, _)| AddedToken::from(s.to_string(), special).normalized(false))
                .collect()
        };
        tokenizer.add_special_tokens(&added(CONTROL, true));
        tokenizer.add_tokens(&added(USER_DEFINED, false));
        let spm = model == "llama";
        let add_bos = self
            .meta_bool("tokenizer.ggml.add_bos_token")
            .unwrap_or(spm);
        let add_eos = self
            .meta_bool("tokenizer.ggml.add_eos_token")
            .unwrap_or(false);
        if add_bos || add_eos {
            let special = |key: &str| -> Result<(String, u32), String> {
                let id = self
                    .meta_usize(&format!("tokenizer.ggml.{key}_token_id"))
                    .ok_or_else(|| {
                        format!("add_{key}_token is set but {key}_token_id is missing")
                    })?;
                let token = tokens
                    .get(id)
                    .ok_or_else(|| format!("{key}_token_id {id} is not a token"))?;
                Ok((token.to_string(), id as u32))
            };
            let mut specials = Vec::new();
            let (mut single, mut pair) = ("$A".to_string(), "$A $B:1".to_string());
            if add_bos {
                let (bos, id) = special("bos").map_err(bad)?;
                single = format!("{bos} {single}");
                pair = format!("{bos} $A {bos}:1 $B:1");
                specials.push((bos, id));
            }
            if add_eos {
                let (eos, id) = special("eos").map_err(bad)?;
                single = format!("{single} {eos}");
                pair = if add_bos {
                    let bos = &specials[0].0;
                    format!("{bos} $A {eos} {bos}:1 $B:1 {eos}:1")
                } else {
                    format!("$A {eos} $B:1 {eos}:1")
                };
                specials.push((eos, id));
            }
            let template = TemplateProcessing::builder()
                .try_single(single.as_str())
                .and_then(|b| b.try_pair(pair.as_str()))
                .map_err(|e| bad(e.to_string()))?
                .special_tokens(specials)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            tokenizer.with_post_processor(Some(template));
        }
        Ok(tokenizer)
    }

    /// `gpt2`: byte-level BPE with the pre-tokenizer `tokenizer.ggml.pre` names.
    fn byte_level_bpe(&self, tokens: &[&str]) -> Result<Tokenizer, String> {
        let merges = self
            .meta_strings("tokenizer.ggml.merges")
            .ok_or("tokenizer.ggml.merges is missing (a gpt2 tokenizer needs its merges)")?;
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| format!("merge `{m}` is not two tokens"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pre = self.meta_str("tokenizer.ggml.pre").unwrap_or("default");
        let byte_level = |regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, regex));
        let split = |pattern: &str| -> Result<PreTokenizerWrapper, String> {
            Split::new(
                SplitPattern::Regex(pattern.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map(PreTokenizerWrapper::Split)
            .map_err(|e| e.to_string())
        };
        let (steps, ignore_merges) = match pre {
            "smollm" => (
                vec![
                    PreTokenizerWrapper::Digits(Digits::new(true)),
                    byte_level(true),
                ],
                false,
            ),
            "llama-bpe" | "llama3" | "llama-v3" => (vec![split(LLAMA3)?, byte_level(false)], true),
            "qwen2" => (vec![split(QWEN2)?, byte_level(false)], false),
            "gpt-2" | "gpt2" => (vec![byte_level(true)], false),
            "default" => {
                let mut steps = DEFAULT
                    .iter()
                    .map(|p| split(p))
                    .collect::<Result<Vec<_>, _>>()?;
                steps.push(byte_level(false));
                (steps, false)
            }
            other => {
                let known: Vec<&str> = PRE_TOKENIZERS[..5].iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "tokenizer.ggml.pre `{other}` is not supported (known: {}); put the model's tokenizer.json beside the file",
                    known.join(", ")
                ));
            }
        };
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| e.to_string())?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(PreSequence::new(steps))));
        tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevelDecoder::default())));
        Ok(tokenizer)
    }

    /// `llama`: SentencePiece BPE from pieces and scores, with byte fallback.
    fn sentencepiece(&self, tokens: &[&str], types: &[i64]) -> Result<Tokenizer, String> {
        let scores = self
            .meta_numbers("tokenizer.ggml.scores")
            .filter(|s| s.len() == tokens.len())
            .ok_or("tokenizer.ggml.scores is missing or of the wrong length (a llama tokenizer needs them)")?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        // As transformers' SentencePieceExtractor: every split of a piece into
        // two pieces is a merge, ranked by the merged piece's score.
        let mut merges: Vec<(u32, u32, f64)> = Vec::new();
        for (i, piece) in tokens.iter().enumerate() {
            if matches!(types[i], CONTROL | USER_DEFINED | UNKNOWN | BYTE) {
                continue;
            }
            let mut local: Vec<(u32, u32, f64)> = piece
                .char_indices()
                .skip(1)
                .filter_map(|(at, _)| {
                    let (l, r) = piece.split_at(at);
                    Some((*vocab.get(l)?, *vocab.get(r)?, scores[i]))
                })
                .collect();
            local.sort_by_key(|&(l, r, _)| (l, r));
            merges.extend(local);
        }
        merges.sort_by(|a, b| b.2.total_cmp(&a.2));
        let merges = merges
            .into_iter()
            .map(|(l, r, _)| {
                (
                    tokens[l as usize].to_string(),
                    tokens[r as usize].to_string(),
                )
            })
            .collect();
        let unk = types
            .iter()
            .position(|&t| t == UNKNOWN)
            .or_else(|| self.meta_usize("tokenizer.ggml.unknown_token_id"))
            .and_then(|id| tokens.get(id))
            .map(|t| t.to_string());
        let mut builder = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .byte_fallback(true)
            .fuse_unk(true);
        if let Some(unk) = unk {
            builder = builder.unk_token(unk);
        }
        let bpe = builder.build().map_err(|e| e.to_string())?;
        let prefix = self
            .meta_bool("tokenizer.ggml.add_space_prefix")
            .unwrap_or(true);
        let replace = |from: &str, to: &str| Replace::new(from, to).map_err(|e| e.to_string());
        let mut normalizers = Vec::new();
        if prefix {
            normalizers.push(NormalizerWrapper::Prepend(Prepend::new("▁".into())));
        }
        normalizers.push(NormalizerWrapper::Replace(replace(" ", "▁")?));
        let mut decoders = vec![
            DecoderWrapper::Replace(replace("▁", " ")?),
            DecoderWrapper::ByteFallback(ByteFallback::new()),
            DecoderWrapper::Fuse(Fuse::new()),
        ];
        if prefix {
            decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
        }
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_normalizer(Some(NormalizerWrapper::Sequence(NormalizerSequence::new(
            normalizers,
        ))));
        tokenizer.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(
            decoders,
        ))));
        Ok(tokenizer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlx_gguf::{GgufWriter, MetaValue};
    use std::path::Path;

    /// A `gpt2` tokenizer with the pre-tokenizer `pre` (two byte tokens, one merge).
    fn with_pre(pre: &str) -> Result<Tokenizer, LoadError> {
        let path =
            std::env::temp_dir().join(format!("mlora-pre-{pre}-{}.gguf", std::process::id()));
        let mut w = GgufWriter::new();
        w.set_arch("llama");
        let strings = |v: &[&str]| {
            MetaValue::Array(v.iter().map(|s| MetaValue::String(s.to_string())).collect())
        };
        w.set_meta("tokenizer.ggml.model", MetaValue::String("gpt2".into()));
        w.set_meta("tokenizer.ggml.pre", MetaValue::String(pre.into()));
        w.set_meta("tokenizer.ggml.tokens", strings(&["a", "b", "ab"]));
        w.set_meta("tokenizer.ggml.merges", strings(&["a b"]));
        w.write_to_path(&path).unwrap();
        let tokenizer = GgufModel::open(&path).unwrap().embedded_tokenizer();
        let _ = std::fs::remove_file(&path);
        tokenizer
    }

    /// The pre-tokenizer splits of `text` for a `gpt2` tokenizer with `pre`.
    fn splits(pre: &str, text: &str) -> Vec<String> {
        let tokenizer = with_pre(pre).unwrap();
        let mut pieces = tokenizers::PreTokenizedString::from(text);
        tokenizers::PreTokenizer::pre_tokenize(tokenizer.get_pre_tokenizer().unwrap(), &mut pieces)
            .unwrap();
        pieces
            .get_splits(
                tokenizers::OffsetReferential::Original,
                tokenizers::OffsetType::Byte,
            )
            .into_iter()
            .map(|(piece, _, _)| piece.to_string())
            .collect()
    }

    /// Each `tokenizer.ggml.pre` splits as llama.cpp's regular expressions do.
    #[test]
    fn pre_tokenizers_split_as_llama_cpp_chooses() {
        let text = "\n\n1. hello 12345";
        let want = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            splits("smollm", text),
            want(&["ĊĊ", "1", ".", "Ġhello", "Ġ", "1", "2", "3", "4", "5"])
        );
        assert_eq!(
            splits("llama-bpe", text),
            want(&["ĊĊ", "1", ".", "Ġhello", "Ġ", "123", "45"])
        );
        assert_eq!(
            splits("qwen2", text),
            want(&["ĊĊ", "1", ".", "Ġhello", "Ġ", "1", "2", "3", "4", "5"])
        );
        assert_eq!(
            splits("gpt-2", text),
            want(&["Ċ", "Ċ", "1", ".", "Ġhello", "Ġ12345"])
        );
        let e = with_pre("tekken").unwrap_err().to_string();
        assert!(
            e.contains("tokenizer.ggml.pre `tekken` is not supported"),
            "{e}"
        );
    }

    /// A SentencePiece BPE model trained by scripts/make_gguf_fixtures.py and
    /// stored as llama.cpp stores one: ids equal to sentencepiece's own.
    #[test]
    fn sentencepiece_gguf_tokenizes_as_sentencepiece() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf");
        let gguf = GgufModel::open(&dir.join("spm.gguf")).unwrap();
        let tokenizer = gguf.embedded_tokenizer().unwrap();
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("spm_ids.json")).unwrap())
                .unwrap();
        let strings = fixture["strings"].as_array().unwrap();
        for (i, s) in strings.iter().enumerate() {
            let s = s.as_str().unwrap();
            let want: Vec<u32> = fixture["ids"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let got = tokenizer.encode(s, true).unwrap().get_ids().to_vec();
            assert_eq!(got, want, "{s:?}");
            let decoded = tokenizer.decode(&got, true).unwrap();
            assert_eq!(decoded, fixture["decoded"][i].as_str().unwrap(), "{s:?}");
        }
    }
}
