//! AURAC: the area under the rank-accuracy curve, normalised to a mean accuracy.

use super::error::{AdapterError, Result};
use serde::{Deserialize, Serialize};

/// The rank axis AURAC integrates over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RankAxis {
    /// `log2 r` (the paper's v2).
    Log2,
    /// `r` (v1).
    Linear,
}

/// AURAC of accuracies `a_i` (%) at sorted ranks `r_i`, by the trapezoid rule,
/// divided by the axis width (so the result is a mean accuracy in %):
///
/// `sum_i (x_{i+1} - x_i) (a_i + a_{i+1}) / 2 / (x_n - x_1)`, `x = log2 r` or `r`.
///
/// One rank gives that rank's accuracy. Errors on empty input, mismatched
/// lengths, a rank 0, unsorted or duplicate ranks, and non-finite accuracies.
///
/// ```
/// use matryoshka_lora::{aurac, RankAxis};
/// let a = aurac(&[1, 2, 4], &[50.0, 60.0, 80.0], RankAxis::Log2).unwrap();
/// assert!((a - 62.5).abs() < 1e-12); // (55 + 70) / 2
/// ```
pub fn aurac(ranks: &[usize], accuracies: &[f64], axis: RankAxis) -> Result<f64> {
    if ranks.is_empty() {
        return Err(AdapterError::Aurac("no ranks given".into()));
    }
    if ranks.len() != accuracies.len() {
        return Err(AdapterError::Aurac(format!(
            "{} ranks but {} accuracies: give one accuracy per rank",
            ranks.len(),
            accuracies.len()
        )));
    }
    if ranks.contains(&0) {
        return Err(AdapterError::Aurac(
            "rank 0 is not allowed (ranks are >= 1)".into(),
        ));
    }
    if ranks.windows(2).any(|w| w[0] >= w[1]) {
        return Err(AdapterError::Aurac(format!(
            "ranks must be sorted ascending without duplicates, got {ranks:?}"
        )));
    }
    if let Some(bad) = accuracies.iter().find(|a| !a.is_finite()) {
        return Err(AdapterError::Aurac(format!("accuracy {bad} is not finite")));
    }
    if ranks.len() == 1 {
        return Ok(accuracies[0]);
    }
    let x: Vec<f64> = ranks
        .iter()
        .map(|&r| match axis {
            RankAxis::Log2 => (r as f64).log2(),
            RankAxis::Linear => r as f64,
        })
        .collect();
    let area: f64 = (0..x.len() - 1)
        .map(|i| (x[i + 1] - x[i]) * (accuracies[i] + accuracies[i + 1]) / 2.0)
        .sum();
    Ok(area / (x[x.len() - 1] - x[0]))
}

/// Both AURACs, `(log2, linear)`.
pub fn aurac_both(ranks: &[usize], accuracies: &[f64]) -> Result<(f64, f64)> {
    Ok((
        aurac(ranks, accuracies, RankAxis::Log2)?,
        aurac(ranks, accuracies, RankAxis::Linear)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        // Powers of two: log2 axis is evenly spaced, so AURAC_log2 is the
        // trapezoid mean: (a1/2 + a2 + ... + a_{n-1} + an/2) / (n-1).
        let r = [1, 2, 4, 8, 16, 32];
        let a = [60.0, 65.0, 70.0, 72.0, 74.0, 75.0];
        let log2 = aurac(&r, &a, RankAxis::Log2).unwrap();
        let expect = (30.0 + 65.0 + 70.0 + 72.0 + 74.0 + 37.5) / 5.0;
        assert!((log2 - expect).abs() < 1e-12);
        // Linear: widths 1,2,4,8,16 over 31.
        let lin = aurac(&r, &a, RankAxis::Linear).unwrap();
        let area = 62.5 + 2.0 * 67.5 + 4.0 * 71.0 + 8.0 * 73.0 + 16.0 * 74.5;
        assert!((lin - area / 31.0).abs() < 1e-12);
        let (l2, li) = aurac_both(&r, &a).unwrap();
        assert_eq!((l2, li), (log2, lin));
    }

    #[test]
    fn irregular_ranks_and_single_rank() {
        // ranks 1, 3, 4: log2 x = 0, 1.585, 2.
        let r = [1, 3, 4];
        let a = [40.0, 70.0, 90.0];
        let x1 = 3f64.log2();
        let expect = (x1 * 55.0 + (2.0 - x1) * 80.0) / 2.0;
        assert!((aurac(&r, &a, RankAxis::Log2).unwrap() - expect).abs() < 1e-12);
        let lin = (2.0 * 55.0 + 1.0 * 80.0) / 3.0;
        assert!((aurac(&r, &a, RankAxis::Linear).unwrap() - lin).abs() < 1e-12);
        assert_eq!(aurac(&[8], &[77.5], RankAxis::Log2).unwrap(), 77.5);
        assert_eq!(aurac(&[8], &[77.5], RankAxis::Linear).unwrap(), 77.5);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(aurac(&[], &[], RankAxis::Log2).is_err());
        assert!(aurac(&[1, 2], &[1.0], RankAxis::Log2).is_err());
        assert!(aurac(&[2, 1], &[1.0, 2.0], RankAxis::Log2).is_err());
        assert!(aurac(&[2, 2], &[1.0, 2.0], RankAxis::Linear).is_err());
        assert!(aurac(&[0, 2], &[1.0, 2.0], RankAxis::Linear).is_err());
        assert!(aurac(&[1, 2], &[1.0, f64::NAN], RankAxis::Linear).is_err());
    }
}
