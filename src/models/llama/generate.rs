//! Batched greedy generation with a KV cache.

use super::attention::LayerCache;
use super::model::{LlamaForCausalLm, positions_from};
use burn::prelude::*;

/// Greedy decoding settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// At most this many new tokens per row.
    pub max_new_tokens: usize,
    /// Any of these ends a row (it is not part of the output).
    pub eos_ids: Vec<u32>,
    /// The id left padding uses (never attended).
    pub pad_id: u32,
}

impl LlamaForCausalLm {
    /// Greedy continuations of `prompts` (token ids, each non-empty), decoded
    /// together: the prompts are left-padded to the longest, run once
    /// through the model filling a KV cache, then each step feeds one token
    /// per row, so `n` new tokens cost `n` single-position steps. A row stops
    /// at an EOS id (not returned) or after `max_new_tokens`; all rows stop
    /// when every row has.
    pub fn generate(&self, prompts: &[Vec<u32>], settings: &Generation) -> Vec<Vec<u32>> {
        let device = self.embed_tokens.weight.device();
        let b = prompts.len();
        let mut out = vec![Vec::new(); b];
        if b == 0 || settings.max_new_tokens == 0 {
            return out;
        }
        let (ids, mask, width) = left_padded(prompts, settings.pad_id);
        let mut key_mask: Vec<i64> = mask.clone();
        let mut next_pos: Vec<i64> = prompts.iter().map(|p| p.len() as i64).collect();
        let positions: Vec<i64> = positions_from(&mask, b, width);
        let mut caches: Vec<Option<LayerCache>> = vec![None; self.layers.len()];
        let int2 = |v: Vec<i64>, cols: usize| {
            Tensor::<2, Int>::from_data(TensorData::new(v, [b, cols]), &device)
        };
        let h = self.hidden(
            int2(ids, width),
            int2(positions, width),
            int2(key_mask.clone(), width),
            Some(&mut caches),
        );
        let mut last = h.narrow(1, width - 1, 1);
        let mut done = vec![false; b];
        let mut t = width;
        for step in 0..settings.max_new_tokens {
            let tokens = argmax_rows(self.project(last.clone()));
            for (row, &token) in tokens.iter().enumerate() {
                if done[row] {
                    continue;
                }
                if settings.eos_ids.contains(&token) {
                    done[row] = true;
                } else {
                    out[row].push(token);
                }
            }
            if done.iter().all(|&d| d) || step + 1 == settings.max_new_tokens {
                break;
            }
            // one more position per row: every row's key mask grows by a 1
            let mut grown = Vec::with_capacity(b * (t + 1));
            for row in 0..b {
                grown.extend_from_slice(&key_mask[row * t..(row + 1) * t]);
                grown.push(1);
            }
            key_mask = grown;
            t += 1;
            let new_ids: Vec<i64> = tokens.iter().map(|&x| x as i64).collect();
            let h = self.hidden(
                int2(new_ids, 1),
                int2(next_pos.clone(), 1),
                int2(key_mask.clone(), t),
                Some(&mut caches),
            );
            for p in next_pos.iter_mut() {
                *p += 1;
            }
            last = h;
        }
        out
    }

    /// [`LlamaForCausalLm::generate`] without a cache: every step runs the
    /// whole sequence again (`O(n²)`; a reference for tests).
    pub fn generate_uncached(&self, prompts: &[Vec<u32>], settings: &Generation) -> Vec<Vec<u32>> {
        let device = self.embed_tokens.weight.device();
        let b = prompts.len();
        let mut out = vec![Vec::new(); b];
        let mut done = vec![false; b];
        let mut seqs: Vec<Vec<u32>> = prompts.to_vec();
        for _ in 0..settings.max_new_tokens {
            if b == 0 {
                break;
            }
            let (ids, mask, width) = left_padded(&seqs, settings.pad_id);
            let int2 =
                |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [b, width]), &device);
            let logits = self.logits(int2(ids), int2(mask));
            let tokens = argmax_rows(logits.narrow(1, width - 1, 1));
            for (row, &token) in tokens.iter().enumerate() {
                if !done[row] {
                    if settings.eos_ids.contains(&token) {
                        done[row] = true;
                    } else {
                        out[row].push(token);
                    }
                }
                seqs[row].push(token);
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        out
    }
}

/// Left-padded ids and mask (row-major `[B, width]`) of `rows`.
fn left_padded(rows: &[Vec<u32>], pad: u32) -> (Vec<i64>, Vec<i64>, usize) {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut ids = vec![pad as i64; rows.len() * width];
    let mut mask = vec![0i64; rows.len() * width];
    for (r, row) in rows.iter().enumerate() {
        let start = r * width + width - row.len();
        for (i, &id) in row.iter().enumerate() {
            ids[start + i] = id as i64;
            mask[start + i] = 1;
        }
    }
    (ids, mask, width)
}

/// The argmax over `V` of logits `[B, 1, V]`, per row (first on ties).
fn argmax_rows(logits: Tensor<3>) -> Vec<u32> {
    let [b, _, _] = logits.dims();
    logits
        .argmax(2)
        .reshape([b])
        .into_data()
        .try_to_vec_as::<i64>()
        .unwrap_or_default()
        .into_iter()
        .map(|x| x as u32)
        .collect()
}
