//! Instruction data for causal-LM fine-tuning: JSONL rows of a prompt and a
//! response, tokenized so that only the response (and EOS) is learned, and
//! right-padded batches that say which positions are scored.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use std::path::{Path, PathBuf};
use thiserror::Error;
use tokenizers::Tokenizer;

/// The GSM8K prompt template for rows with `question` and `answer` fields.
pub const GSM8K_TEMPLATE: &str = "Question: {question}\nAnswer: ";

/// Why instruction data could not be read or tokenized.
#[derive(Debug, Error)]
pub enum InstructError {
    /// The file could not be read.
    #[error("cannot read data file {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A line is not a JSON object.
    #[error("{path} line {line}: not a JSON object ({reason})")]
    BadJson {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's message.
        reason: String,
    },
    /// A row lacks the prompt or response field (and is not a GSM8K row).
    #[error(
        "{path} line {line}: no string field `{field}` ({flag}); rows need `{prompt}` and `{response}`, or GSM8K's `question` and `answer`"
    )]
    MissingField {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field.
        field: String,
        /// The flag that names it.
        flag: &'static str,
        /// The prompt field's name.
        prompt: String,
        /// The response field's name.
        response: String,
    },
    /// A row lacks the group field (`--group-field`), or holds neither a
    /// string nor a number there.
    #[error(
        "{path} line {line}: no string or number field `{field}` (--group-field): with a group field every row names its group (a template, a document, ...)"
    )]
    MissingGroup {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The group field's name.
        field: String,
    },
    /// A prompt is longer than the truncation length.
    #[error(
        "row {row} has a prompt of {prompt_tokens} tokens, longer than --max-len {max_len}: raise --max-len (the prompt is never truncated)"
    )]
    PromptTooLong {
        /// 0-based row of its split.
        row: usize,
        /// Prompt tokens (special tokens included).
        prompt_tokens: usize,
        /// The truncation length.
        max_len: usize,
    },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// Which JSONL fields hold the prompt, the response and (optionally) the
/// row's group.
#[derive(Debug, Clone, PartialEq)]
pub struct InstructFields {
    /// The prompt field (`prompt`).
    pub prompt: String,
    /// The response field (`response`).
    pub response: String,
    /// The field naming each row's group (`None`: rows are not grouped):
    /// rows of one group (a template's instances, one document's questions)
    /// are near-duplicates, so validation splits keep groups whole.
    pub group: Option<String>,
}

impl Default for InstructFields {
    fn default() -> Self {
        Self {
            prompt: "prompt".into(),
            response: "response".into(),
            group: None,
        }
    }
}

/// One instruction row, as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstructRow {
    /// The prompt (for a GSM8K row: the template filled with the question).
    pub prompt: String,
    /// The response (for a GSM8K row: the answer, `#### N` included).
    pub response: String,
    /// The row's group ([`InstructFields::group`]; a number as its decimal text).
    pub group: Option<String>,
}

/// Reads `path`: one JSON object per non-empty line, with the `fields`
/// strings, or GSM8K's `question`/`answer` when the prompt field is absent;
/// with a group field, each row's group (a string, or a number).
pub fn read_jsonl(path: &Path, fields: &InstructFields) -> Result<Vec<InstructRow>, InstructError> {
    let text = std::fs::read_to_string(path).map_err(|e| InstructError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| InstructError::BadJson {
                path: path.to_path_buf(),
                line: i + 1,
                reason: e.to_string(),
            })?;
        let Some(object) = value.as_object() else {
            return Err(InstructError::BadJson {
                path: path.to_path_buf(),
                line: i + 1,
                reason: "a JSON value that is not an object".into(),
            });
        };
        let field = |name: &str| object.get(name).and_then(|v| v.as_str());
        let missing = |field: &str, flag: &'static str| InstructError::MissingField {
            path: path.to_path_buf(),
            line: i + 1,
            field: field.to_string(),
            flag,
            prompt: fields.prompt.clone(),
            response: fields.response.clone(),
        };
        let group = match &fields.group {
            None => None,
            Some(name) => Some(match object.get(name) {
                Some(serde_json::Value::String(g)) => g.clone(),
                Some(serde_json::Value::Number(g)) => g.to_string(),
                _ => {
                    return Err(InstructError::MissingGroup {
                        path: path.to_path_buf(),
                        line: i + 1,
                        field: name.clone(),
                    });
                }
            }),
        };
        let row = match (field(&fields.prompt), field("question"), field("answer")) {
            (Some(prompt), _, _) => InstructRow {
                prompt: prompt.to_string(),
                response: field(&fields.response)
                    .ok_or_else(|| missing(&fields.response, "--response-field"))?
                    .to_string(),
                group,
            },
            (None, Some(question), Some(answer)) => InstructRow {
                prompt: GSM8K_TEMPLATE.replace("{question}", question),
                response: answer.to_string(),
                group,
            },
            (None, _, _) => return Err(missing(&fields.prompt, "--prompt-field")),
        };
        rows.push(row);
    }
    Ok(rows)
}

/// One tokenized SFT example.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SftExample {
    /// `prompt ids ++ response ids ++ [EOS]`, truncated from the right.
    pub ids: Vec<u32>,
    /// How many leading ids are the prompt (never scored).
    pub prompt_len: usize,
    /// The full response text (the reference of exact match).
    pub reference: String,
    /// The row's group ([`InstructRow::group`]).
    pub group: Option<String>,
}

impl SftExample {
    /// Scored tokens: the response tokens and EOS left after truncation.
    pub fn target_count(&self) -> usize {
        self.ids.len() - self.prompt_len
    }
}

/// What tokenizing a split did besides producing examples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SftCounts {
    /// Rows whose response (and EOS) truncation cut short.
    pub truncated: usize,
    /// Rows whose response truncation removed entirely (prompt exactly
    /// `max_len` tokens): nothing to learn or score, so left out.
    pub dropped: usize,
}

/// Tokenizes rows by the SFT rule: `encode(prompt)` with the tokenizer's
/// special tokens, then `encode(response)` without them, then EOS; the
/// whole truncated to `max_len` from the right.
pub struct SftTokenizer {
    tokenizer: Tokenizer,
    eos: u32,
    max_len: usize,
}

impl SftTokenizer {
    /// Loads `tokenizer.json` (its own truncation and padding are turned off).
    pub fn from_file(path: &Path, eos: u32, max_len: usize) -> Result<Self, InstructError> {
        let tokenizer =
            Tokenizer::from_file(path).map_err(|e| InstructError::Tokenizer(e.to_string()))?;
        Self::new(tokenizer, eos, max_len)
    }

    /// Wraps `tokenizer` (its own truncation and padding are turned off).
    pub fn new(mut tokenizer: Tokenizer, eos: u32, max_len: usize) -> Result<Self, InstructError> {
        tokenizer
            .with_truncation(None)
            .map_err(|e| InstructError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(Self {
            tokenizer,
            eos,
            max_len,
        })
    }

    /// The underlying tokenizer (for decoding).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The examples of `rows` and what truncation did.
    pub fn encode(
        &self,
        rows: &[InstructRow],
    ) -> Result<(Vec<SftExample>, SftCounts), InstructError> {
        let err = |e: tokenizers::Error| InstructError::Tokenizer(e.to_string());
        let prompts: Vec<&str> = rows.iter().map(|r| r.prompt.as_str()).collect();
        let responses: Vec<&str> = rows.iter().map(|r| r.response.as_str()).collect();
        let prompts = self.tokenizer.encode_batch(prompts, true).map_err(err)?;
        let responses = self.tokenizer.encode_batch(responses, false).map_err(err)?;
        let mut counts = SftCounts::default();
        let mut examples = Vec::with_capacity(rows.len());
        for (i, ((p, r), row)) in prompts.iter().zip(&responses).zip(rows).enumerate() {
            let prompt_len = p.get_ids().len();
            if prompt_len > self.max_len {
                return Err(InstructError::PromptTooLong {
                    row: i,
                    prompt_tokens: prompt_len,
                    max_len: self.max_len,
                });
            }
            let mut ids = p.get_ids().to_vec();
            ids.extend_from_slice(r.get_ids());
            ids.push(self.eos);
            if ids.len() > self.max_len {
                ids.truncate(self.max_len);
                counts.truncated += 1;
            }
            if ids.len() == prompt_len {
                counts.dropped += 1;
                continue;
            }
            examples.push(SftExample {
                ids,
                prompt_len,
                reference: row.response.clone(),
                group: row.group.clone(),
            });
        }
        Ok((examples, counts))
    }
}

/// A right-padded batch of SFT examples.
#[derive(Debug, Clone)]
pub struct SftBatch {
    /// `[B, T]` token ids (padding id past each row's end).
    pub ids: Tensor<2, Int>,
    /// `[B, T]`: 1 for tokens, 0 for padding.
    pub mask: Tensor<2, Int>,
    /// `[B, T]`: `0..T` per row.
    pub positions: Tensor<2, Int>,
    /// `[N]`: flat indices `b T + t` of the positions whose next token is
    /// scored (the last prompt token through the last response token).
    pub scored: Tensor<1, Int>,
    /// `[N]`: the token each scored position predicts (response tokens, EOS).
    pub targets: Tensor<1, Int>,
    /// `N`, the scored tokens of the batch.
    pub count: usize,
}

/// Right-pads each batch to its longest example and lists the scored positions.
#[derive(Debug, Clone, Default)]
pub struct SftBatcher {
    /// The padding id (never attended, never scored).
    pub pad_id: u32,
}

impl SftBatcher {
    /// Builds the batch tensors on `device`.
    pub fn make(&self, items: &[SftExample], device: &Device) -> SftBatch {
        let b = items.len();
        let t = items.iter().map(|i| i.ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![self.pad_id as i64; b * t];
        let mut mask = vec![0i64; b * t];
        let mut scored = Vec::new();
        let mut targets = Vec::new();
        for (row, item) in items.iter().enumerate() {
            for (col, &id) in item.ids.iter().enumerate() {
                ids[row * t + col] = id as i64;
                mask[row * t + col] = 1;
                if col >= item.prompt_len {
                    scored.push((row * t + col - 1) as i64);
                    targets.push(id as i64);
                }
            }
        }
        let positions: Vec<i64> = (0..b).flat_map(|_| 0..t as i64).collect();
        let count = targets.len();
        let int1 = |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v, [count]), device);
        let int2 = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [b, t]), device);
        SftBatch {
            ids: int2(ids),
            mask: int2(mask),
            positions: int2(positions),
            scored: int1(scored),
            targets: int1(targets),
            count,
        }
    }
}

impl Batcher<SftExample, SftBatch> for SftBatcher {
    fn batch(&self, items: Vec<SftExample>, device: &Device) -> SftBatch {
        self.make(&items, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prompt_response_and_gsm8k_rows_and_names_missing_fields() {
        let dir = std::env::temp_dir().join(format!("mlora-instruct-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.jsonl");
        std::fs::write(
            &path,
            "{\"prompt\":\"p\",\"response\":\"r\"}\n\n{\"question\":\"2+2?\",\"answer\":\"#### 4\"}\n",
        )
        .unwrap();
        let rows = read_jsonl(&path, &InstructFields::default()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].prompt, "Question: 2+2?\nAnswer: ");
        assert_eq!(rows[1].response, "#### 4");
        std::fs::write(&path, "{\"prompt\":\"p\"}\n").unwrap();
        let e = read_jsonl(&path, &InstructFields::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("line 1: no string field `response` (--response-field)"),
            "{e}"
        );
        std::fs::write(&path, "{\"text\":\"p\"}\n").unwrap();
        let e = read_jsonl(&path, &InstructFields::default()).unwrap_err();
        assert!(e.to_string().contains("`prompt` (--prompt-field)"), "{e}");
        std::fs::write(&path, "[1]\n").unwrap();
        assert!(matches!(
            read_jsonl(&path, &InstructFields::default()),
            Err(InstructError::BadJson { line: 1, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_group_field_names_each_rows_group_or_the_row_is_refused() {
        let dir = std::env::temp_dir().join(format!("mlora-groups-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.jsonl");
        std::fs::write(
            &path,
            "{\"question\":\"q\",\"answer\":\"a\",\"template\":91}\n\
             {\"question\":\"q\",\"answer\":\"a\",\"template\":\"t-7\"}\n",
        )
        .unwrap();
        let fields = InstructFields {
            group: Some("template".into()),
            ..InstructFields::default()
        };
        let rows = read_jsonl(&path, &fields).unwrap();
        let groups: Vec<Option<&str>> = rows.iter().map(|r| r.group.as_deref()).collect();
        assert_eq!(groups, [Some("91"), Some("t-7")]);
        // without the field set, rows have no group
        let rows = read_jsonl(&path, &InstructFields::default()).unwrap();
        assert!(rows.iter().all(|r| r.group.is_none()));
        for bad in ["", ",\"template\":null", ",\"template\":[1]"] {
            std::fs::write(
                &path,
                format!(
                    "{{\"question\":\"q\",\"answer\":\"a\",\"template\":1}}\n\
                     {{\"question\":\"q\",\"answer\":\"a\"{bad}}}\n"
                ),
            )
            .unwrap();
            let e = read_jsonl(&path, &fields).unwrap_err();
            assert!(
                e.to_string()
                    .contains("line 2: no string or number field `template` (--group-field)"),
                "{e}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn batches_score_only_response_tokens_and_eos() {
        let device = crate::cpu_device();
        let items = vec![
            SftExample {
                ids: vec![1, 10, 11, 20, 2],
                prompt_len: 3,
                reference: String::new(),
                group: None,
            },
            SftExample {
                ids: vec![1, 12, 21],
                prompt_len: 2,
                reference: String::new(),
                group: None,
            },
        ];
        let batch = SftBatcher { pad_id: 0 }.make(&items, &device);
        assert_eq!(batch.count, 3);
        let v = |t: Tensor<1, Int>| t.into_data().try_to_vec_as::<i64>().unwrap();
        // row 0 scores positions 2, 3 (-> 20, 2); row 1 position 1 (-> 21), flat 5 + 1
        assert_eq!(v(batch.scored), vec![2, 3, 6]);
        assert_eq!(v(batch.targets), vec![20, 2, 21]);
        let mask = batch.mask.into_data().try_to_vec_as::<i64>().unwrap();
        assert_eq!(mask, vec![1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    }
}
