//! The P family: the fixed diagonal between `A` and `B` that defines each method.
//!
//! While training, an adapter outputs `x (A diag(P)) B` with `P` a length-`R`
//! vector (METHOD.md):
//!
//! | method | `P_i` |
//! | --- | --- |
//! | LoRA | `s(R)` for all `i` |
//! | DyLoRA | `s(b)` for `i <= b`, else 0; `b` drawn every step |
//! | MatryoshkaLoRA | `sum_{s in S, s >= i} w_s s(s)` (`w_s = 1` by default) |
//! | Custom | user-given |
//!
//! Evaluation at rank `k` drops `P` for every method: `s(k) x A[:, :k] B[:k]`,
//! which is [`rank_p`] with `b = k`.

use super::error::{AdapterError, Result};
use super::rank_set::{RankSet, check_rank};
use super::scaling::Scaling;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which ranks DyLoRA draws from, and whether earlier components learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DyLoraVariant {
    /// The reference code's variant: `b` uniform in `S`, all components `<= b` learn.
    #[default]
    Reference,
    /// The original DyLoRA paper: `b` uniform in `1..=R`, components `< b`
    /// detached so only component `b` learns.
    Original,
}

/// A training method: how `P` is built (and, for DyLoRA, redrawn each step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdapterMethod {
    /// Plain LoRA at rank `R`: `P_i = s(R)`.
    Lora,
    /// DyLoRA: `P_i = s(b)` for `i <= b`, `b` drawn each step.
    DyLora {
        /// Which DyLoRA.
        variant: DyLoraVariant,
    },
    /// MatryoshkaLoRA: `P_i = sum_{s in S, s >= i} w_s s(s)`.
    Matryoshka {
        /// Optional per-rank weights `w_s`, one per rank in `S` (default all 1).
        weights: Option<Vec<f64>>,
        /// The reference's "binary" mode: divide `P` by `|S|` (average instead of sum).
        average: bool,
    },
    /// A user-given `P` of length `R`.
    Custom(Vec<f64>),
}

impl Default for AdapterMethod {
    fn default() -> Self {
        Self::matryoshka()
    }
}

impl AdapterMethod {
    /// MatryoshkaLoRA with unit weights (the paper's default).
    pub fn matryoshka() -> Self {
        Self::Matryoshka {
            weights: None,
            average: false,
        }
    }

    /// DyLoRA, reference variant.
    pub fn dylora() -> Self {
        Self::DyLora {
            variant: DyLoraVariant::Reference,
        }
    }

    /// The short name (as [`TrainMethod`](crate::train::TrainMethod) names
    /// the training method that builds this `P`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lora => "lora",
            Self::DyLora {
                variant: DyLoraVariant::Reference,
            } => "dylora",
            Self::DyLora {
                variant: DyLoraVariant::Original,
            } => "dylora-original",
            Self::Matryoshka { .. } => "matryoshka",
            Self::Custom(_) => "custom",
        }
    }

    /// The `P` an adapter is built with and trains with unless a rank is drawn.
    ///
    /// For DyLoRA this is the rank-`R` vector; the per-step draw replaces it
    /// (see [`RankSampler`]).
    pub fn initial_p(&self, set: &RankSet, scaling: Scaling) -> Result<Vec<f64>> {
        scaling.validate()?;
        let r = set.max_rank();
        match self {
            Self::Lora => Ok(lora_p(r, scaling)),
            Self::DyLora { .. } => rank_p(r, r, scaling),
            Self::Matryoshka { weights, average } => {
                let mut p = matryoshka_p(set, scaling, weights.as_deref())?;
                if *average {
                    let n = set.ranks().len() as f64;
                    p.iter_mut().for_each(|v| *v /= n);
                }
                Ok(p)
            }
            Self::Custom(p) => {
                if p.len() != r {
                    return Err(AdapterError::WrongLength {
                        what: "custom P",
                        got: p.len(),
                        expected: r,
                    });
                }
                if let Some(&bad) = p.iter().find(|v| !v.is_finite()) {
                    return Err(AdapterError::InvalidValue {
                        what: "custom P entry",
                        constraint: "",
                        value: bad,
                    });
                }
                Ok(p.clone())
            }
        }
    }
}

impl fmt::Display for AdapterMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Plain LoRA's `P`: `s(R)` repeated `R` times.
pub fn lora_p(max_rank: usize, scaling: Scaling) -> Vec<f64> {
    vec![scaling.factor(max_rank); max_rank]
}

/// The truncation `P` at rank `k` (evaluation, merging, DyLoRA with `b = k`):
/// `P_i = s(k)` for `i <= k`, else 0. Length `R`.
pub fn rank_p(max_rank: usize, k: usize, scaling: Scaling) -> Result<Vec<f64>> {
    check_rank(k, max_rank)?;
    let s = scaling.factor(k);
    Ok((1..=max_rank)
        .map(|i| if i <= k { s } else { 0.0 })
        .collect())
}

/// MatryoshkaLoRA's `P`: `P_i = sum_{s in S, s >= i} w_s s(s)`; 0 above `max(S)`.
///
/// `weights`, when given, has one finite non-negative entry per rank in `S`.
pub fn matryoshka_p(set: &RankSet, scaling: Scaling, weights: Option<&[f64]>) -> Result<Vec<f64>> {
    let ranks = set.ranks();
    if let Some(w) = weights {
        if w.len() != ranks.len() {
            return Err(AdapterError::WrongLength {
                what: "Matryoshka rank weights w_s",
                got: w.len(),
                expected: ranks.len(),
            });
        }
        if let Some(&bad) = w.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return Err(AdapterError::InvalidValue {
                what: "Matryoshka rank weight",
                constraint: " >= 0",
                value: bad,
            });
        }
    }
    let weight = |j: usize| weights.map_or(1.0, |w| w[j]);
    Ok((1..=set.max_rank())
        .map(|i| {
            ranks
                .iter()
                .enumerate()
                .filter(|&(_, &s)| s >= i)
                .map(|(j, &s)| weight(j) * scaling.factor(s))
                .sum()
        })
        .collect())
}

/// Draws DyLoRA's rank `b` for each training step from a seeded RNG.
///
/// The reference variant draws uniformly from `S`, the original variant from
/// `1..=R`. For methods that draw nothing, [`RankSampler::draw`] returns `None`.
#[derive(Debug)]
pub struct RankSampler {
    choices: Vec<usize>,
    rng: StdRng,
}

impl RankSampler {
    /// A sampler for `method` over `set`, seeded with `seed`.
    pub fn new(method: &AdapterMethod, set: &RankSet, seed: u64) -> Self {
        let choices = match method {
            AdapterMethod::DyLora {
                variant: DyLoraVariant::Reference,
            } => set.ranks().to_vec(),
            AdapterMethod::DyLora {
                variant: DyLoraVariant::Original,
            } => (1..=set.max_rank()).collect(),
            _ => Vec::new(),
        };
        Self {
            choices,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The rank for the next step, or `None` when the method draws no rank.
    pub fn draw(&mut self) -> Option<usize> {
        if self.choices.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.choices.len());
        Some(self.choices[i])
    }
}

/// Draws, every step, `m` distinct ranks of `S` (ascending), seeded: all `m`
/// uniformly without replacement, or `R` and `m - 1` of the others.
#[derive(Debug)]
pub struct RankSubsetSampler {
    ranks: Vec<usize>,
    m: usize,
    always_max: bool,
    rng: StdRng,
}

impl RankSubsetSampler {
    /// `m` ranks of `set` per draw (clamped to `1..=|S|`), seeded with `seed`.
    pub fn new(set: &RankSet, m: usize, always_max: bool, seed: u64) -> Self {
        Self {
            ranks: set.ranks().to_vec(),
            m: m.clamp(1, set.ranks().len()),
            always_max,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The ranks of the next step, ascending.
    pub fn draw(&mut self) -> Vec<usize> {
        let mut pool = self.ranks.clone();
        let mut chosen = Vec::with_capacity(self.m);
        if self.always_max
            && let Some(max) = pool.pop()
        {
            chosen.push(max);
        }
        // Partial Fisher-Yates: the first draws of a shuffled pool.
        while chosen.len() < self.m && !pool.is_empty() {
            let i = self.rng.random_range(0..pool.len());
            chosen.push(pool.swap_remove(i));
        }
        chosen.sort_unstable();
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_sampler_draws_distinct_ranks_uniformly_or_with_r() {
        let set = RankSet::powers_of_two(32).unwrap();
        let mut s = RankSubsetSampler::new(&set, 2, false, 7);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..6000 {
            let d = s.draw();
            assert_eq!(d.len(), 2);
            assert!(d[0] < d[1] && d.iter().all(|r| set.ranks().contains(r)));
            for r in d {
                *counts.entry(r).or_insert(0) += 1;
            }
        }
        // each rank is in a draw with probability m / |S| = 1/3: 2000 of 6000
        for (&r, &c) in &counts {
            assert!((1800..2200).contains(&c), "rank {r}: {c}");
        }
        let mut with_r = RankSubsetSampler::new(&set, 3, true, 7);
        for _ in 0..100 {
            let d = with_r.draw();
            assert_eq!(d.len(), 3);
            assert_eq!(*d.last().unwrap(), 32);
        }
        let mut all = RankSubsetSampler::new(&set, 9, false, 1);
        assert_eq!(all.draw(), set.ranks());
        let again = |seed| RankSubsetSampler::new(&set, 2, false, seed).draw();
        assert_eq!(again(3), again(3));
    }

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
    }

    #[test]
    fn matryoshka_p_matches_method_md_example() {
        // METHOD.md: R=32, S=powers of two, sqrt:
        // 2.987 (i=1), 1.987 (i=2), 1.280 (3-4), 0.780 (5-8), 0.427 (9-16), 0.177 (17-32).
        let set = RankSet::powers_of_two(32).unwrap();
        let p = AdapterMethod::matryoshka()
            .initial_p(&set, Scaling::Sqrt)
            .unwrap();
        let expect = |i: usize| match i {
            1 => 2.987,
            2 => 1.987,
            3..=4 => 1.280,
            5..=8 => 0.780,
            9..=16 => 0.427,
            _ => 0.177,
        };
        for (i, v) in p.iter().enumerate() {
            assert!((v - expect(i + 1)).abs() < 5e-4, "P_{} = {v}", i + 1);
        }
        // exact: P_1 = sum_s 1/sqrt(s)
        let exact: f64 = [1.0f64, 2., 4., 8., 16., 32.]
            .iter()
            .map(|s| 1.0 / s.sqrt())
            .sum();
        assert!((p[0] - exact).abs() < 1e-12);
    }

    #[test]
    fn matryoshka_p_irregular_set_weights_and_average() {
        let set = RankSet::new(6, vec![1, 3, 4]).unwrap();
        let p = matryoshka_p(&set, Scaling::Rank, None).unwrap();
        let (a, b, c) = (1.0, 1.0 / 3.0, 0.25);
        assert!(close(&p, &[a + b + c, b + c, b + c, c, 0.0, 0.0], 1e-12));
        let w = [2.0, 0.0, 1.0];
        let pw = matryoshka_p(&set, Scaling::Rank, Some(&w)).unwrap();
        assert!(close(&pw, &[2.0 * a + c, c, c, c, 0.0, 0.0], 1e-12));
        let avg = AdapterMethod::Matryoshka {
            weights: None,
            average: true,
        }
        .initial_p(&set, Scaling::Rank)
        .unwrap();
        assert!(close(
            &avg,
            &p.iter().map(|v| v / 3.0).collect::<Vec<_>>(),
            1e-12
        ));
        assert!(matches!(
            matryoshka_p(&set, Scaling::Rank, Some(&[1.0])),
            Err(AdapterError::WrongLength { .. })
        ));
        assert!(matches!(
            matryoshka_p(&set, Scaling::Rank, Some(&[1.0, -1.0, 1.0])),
            Err(AdapterError::InvalidValue { .. })
        ));
    }

    #[test]
    fn lora_and_dylora_p() {
        let set = RankSet::powers_of_two(8).unwrap();
        let lora = AdapterMethod::Lora.initial_p(&set, Scaling::Sqrt).unwrap();
        assert!(close(&lora, &[1.0 / 8f64.sqrt(); 8], 1e-12));
        let alpha = AdapterMethod::Lora
            .initial_p(&set, Scaling::Alpha(16.0))
            .unwrap();
        assert!(close(&alpha, &[2.0; 8], 1e-12));
        let p4 = rank_p(8, 4, Scaling::Sqrt).unwrap();
        assert!(close(&p4, &[0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0], 1e-12));
        assert_eq!(
            rank_p(8, 9, Scaling::Sqrt),
            Err(AdapterError::UnusableRank {
                rank: 9,
                max_rank: 8
            })
        );
        assert!(rank_p(8, 0, Scaling::Sqrt).is_err());
        let dy = AdapterMethod::dylora()
            .initial_p(&set, Scaling::Sqrt)
            .unwrap();
        assert!(close(&dy, &lora, 1e-12));
    }

    #[test]
    fn custom_p_is_validated() {
        let set = RankSet::powers_of_two(4).unwrap();
        let ok = AdapterMethod::Custom(vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            ok.initial_p(&set, Scaling::None).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(
            AdapterMethod::Custom(vec![1.0]).initial_p(&set, Scaling::None),
            Err(AdapterError::WrongLength {
                what: "custom P",
                got: 1,
                expected: 4
            })
        );
        assert!(
            AdapterMethod::Custom(vec![1.0, f64::NAN, 0.0, 0.0])
                .initial_p(&set, Scaling::None)
                .is_err()
        );
    }

    #[test]
    fn sampler_is_seeded_and_draws_from_the_right_set() {
        let set = RankSet::powers_of_two(32).unwrap();
        let draws = |seed| {
            let mut s = RankSampler::new(&AdapterMethod::dylora(), &set, seed);
            (0..200).map(|_| s.draw().unwrap()).collect::<Vec<_>>()
        };
        let a = draws(42);
        assert_eq!(a, draws(42));
        assert_ne!(a, draws(7));
        for r in set.ranks() {
            assert!(a.contains(r), "rank {r} never drawn in 200 steps");
        }
        assert!(a.iter().all(|r| set.ranks().contains(r)));
        let mut orig = RankSampler::new(
            &AdapterMethod::DyLora {
                variant: DyLoraVariant::Original,
            },
            &set,
            1,
        );
        let o: Vec<usize> = (0..500).map(|_| orig.draw().unwrap()).collect();
        assert!(o.iter().all(|&r| (1..=32).contains(&r)));
        assert!(o.contains(&3), "original variant draws any rank in 1..=R");
        assert_eq!(RankSampler::new(&AdapterMethod::Lora, &set, 1).draw(), None);
    }

    #[test]
    fn names_tell_the_variants_apart() {
        assert_eq!(AdapterMethod::Lora.name(), "lora");
        assert_eq!(AdapterMethod::dylora().name(), "dylora");
        let original = AdapterMethod::DyLora {
            variant: DyLoraVariant::Original,
        };
        assert_eq!(original.to_string(), "dylora-original");
        assert_eq!(AdapterMethod::matryoshka().name(), "matryoshka");
    }
}
