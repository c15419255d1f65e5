//! Padded batches of token ids for burn's data loader.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;

/// One tokenized example.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedExample {
    /// Token ids (`[CLS] ... [SEP]`).
    pub ids: Vec<u32>,
    /// Class id.
    pub label: usize,
}

/// A padded batch.
#[derive(Debug, Clone)]
pub struct TextBatch {
    /// `[B, T]` token ids, 0 (`[PAD]`) past each example's end.
    pub ids: Tensor<2, Int>,
    /// `[B, T]`: 1 for tokens, 0 for padding.
    pub mask: Tensor<2, Int>,
    /// `[B]` class ids.
    pub labels: Tensor<1, Int>,
}

/// Pads each batch to its longest example.
#[derive(Debug, Clone, Default)]
pub struct TextBatcher {
    /// The padding id (`[PAD]` = 0 in BERT vocabularies).
    pub pad_id: u32,
}

impl TextBatcher {
    /// Builds the batch tensors on `device`.
    pub fn make(&self, items: &[TokenizedExample], device: &Device) -> TextBatch {
        let b = items.len();
        let t = items.iter().map(|i| i.ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![self.pad_id as i64; b * t];
        let mut mask = vec![0i64; b * t];
        for (row, item) in items.iter().enumerate() {
            for (col, &id) in item.ids.iter().enumerate() {
                ids[row * t + col] = id as i64;
                mask[row * t + col] = 1;
            }
        }
        let labels: Vec<i64> = items.iter().map(|i| i.label as i64).collect();
        TextBatch {
            ids: Tensor::from_data(TensorData::new(ids, [b, t]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, t]), device),
            labels: Tensor::from_data(TensorData::new(labels, [b]), device),
        }
    }
}

impl Batcher<TokenizedExample, TextBatch> for TextBatcher {
    fn batch(&self, items: Vec<TokenizedExample>, device: &Device) -> TextBatch {
        self.make(&items, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_to_longest_with_mask() {
        let device = crate::cpu_device();
        let items = vec![
            TokenizedExample {
                ids: vec![101, 7, 102],
                label: 1,
            },
            TokenizedExample {
                ids: vec![101, 102],
                label: 0,
            },
        ];
        let batch = TextBatcher::default().make(&items, &device);
        assert_eq!(batch.ids.dims(), [2, 3]);
        let ids: Vec<i64> = batch.ids.into_data().try_to_vec_as::<i64>().unwrap();
        assert_eq!(ids, vec![101, 7, 102, 101, 102, 0]);
        let mask: Vec<i64> = batch.mask.into_data().try_to_vec_as::<i64>().unwrap();
        assert_eq!(mask, vec![1, 1, 1, 1, 1, 0]);
        let labels: Vec<i64> = batch.labels.into_data().try_to_vec_as::<i64>().unwrap();
        assert_eq!(labels, vec![1, 0]);
    }
}
