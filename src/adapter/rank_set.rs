//! The validated pair (R, S): maximum rank and nested train ranks.

use super::error::{AdapterError, Result};
use serde::{Deserialize, Serialize};

/// The maximum rank `R` and the nested ranks `S` (sorted, `1 <= s <= R`).
///
/// ```
/// use matryoshka_lora::RankSet;
/// let set = RankSet::powers_of_two(32).unwrap();
/// assert_eq!(set.ranks(), &[1, 2, 4, 8, 16, 32]);
/// assert!(RankSet::new(8, vec![2, 4, 16]).is_err()); // 16 > R
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankSet {
    max_rank: usize,
    ranks: Vec<usize>,
}

impl RankSet {
    /// A custom nested rank set. Errors on `R = 0`, an empty set, unsorted or
    /// duplicate ranks, a rank 0, or a rank above `R`.
    pub fn new(max_rank: usize, ranks: Vec<usize>) -> Result<Self> {
        if max_rank == 0 {
            return Err(AdapterError::ZeroMaxRank);
        }
        if ranks.is_empty() {
            return Err(AdapterError::EmptyRanks { max_rank });
        }
        if ranks.contains(&0) {
            return Err(AdapterError::ZeroRank { max_rank });
        }
        if ranks.windows(2).any(|w| w[0] >= w[1]) {
            return Err(AdapterError::UnsortedRanks { ranks });
        }
        if let Some(&rank) = ranks.iter().find(|&&r| r > max_rank) {
            return Err(AdapterError::RankAboveMax { rank, max_rank });
        }
        Ok(Self { max_rank, ranks })
    }

    /// The reference rank set: every power of two up to `R` (and `R` itself
    /// when it is not a power of two), e.g. `R = 32 -> {1, 2, 4, 8, 16, 32}`.
    pub fn powers_of_two(max_rank: usize) -> Result<Self> {
        if max_rank == 0 {
            return Err(AdapterError::ZeroMaxRank);
        }
        let mut ranks: Vec<usize> = (0..usize::BITS)
            .map(|p| 1usize << p)
            .take_while(|&r| r <= max_rank)
            .collect();
        if ranks.last() != Some(&max_rank) {
            ranks.push(max_rank);
        }
        Self::new(max_rank, ranks)
    }

    /// A single-rank set `{R}` (plain LoRA at rank `R`).
    pub fn single(max_rank: usize) -> Result<Self> {
        Self::new(max_rank, vec![max_rank])
    }

    /// The maximum rank `R`.
    pub fn max_rank(&self) -> usize {
        self.max_rank
    }

    /// The nested ranks `S`, ascending.
    pub fn ranks(&self) -> &[usize] {
        &self.ranks
    }

    /// Checks that `k` is usable for evaluation or merging (`1 <= k <= R`).
    pub fn check_rank(&self, k: usize) -> Result<()> {
        check_rank(k, self.max_rank)
    }
}

/// Checks `1 <= k <= max_rank`.
pub(crate) fn check_rank(k: usize, max_rank: usize) -> Result<()> {
    if k == 0 || k > max_rank {
        Err(AdapterError::UnusableRank { rank: k, max_rank })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_sets() {
        assert_eq!(RankSet::powers_of_two(1).unwrap().ranks(), &[1]);
        assert_eq!(
            RankSet::powers_of_two(256).unwrap().ranks(),
            &[1, 2, 4, 8, 16, 32, 64, 128, 256]
        );
        assert_eq!(
            RankSet::powers_of_two(24).unwrap().ranks(),
            &[1, 2, 4, 8, 16, 24]
        );
    }

    #[test]
    fn bad_sets_are_errors() {
        assert_eq!(RankSet::new(0, vec![1]), Err(AdapterError::ZeroMaxRank));
        assert_eq!(
            RankSet::new(8, vec![]),
            Err(AdapterError::EmptyRanks { max_rank: 8 })
        );
        assert_eq!(
            RankSet::new(8, vec![0, 2]),
            Err(AdapterError::ZeroRank { max_rank: 8 })
        );
        assert!(matches!(
            RankSet::new(8, vec![4, 2]),
            Err(AdapterError::UnsortedRanks { .. })
        ));
        assert!(matches!(
            RankSet::new(8, vec![2, 2]),
            Err(AdapterError::UnsortedRanks { .. })
        ));
        assert_eq!(
            RankSet::new(8, vec![2, 16]),
            Err(AdapterError::RankAboveMax {
                rank: 16,
                max_rank: 8
            })
        );
        let set = RankSet::powers_of_two(8).unwrap();
        assert!(set.check_rank(0).is_err());
        assert!(set.check_rank(9).is_err());
        assert!(set.check_rank(3).is_ok());
    }
}
