//! Statistics over repeated runs (seeds): mean, sample standard deviation, and
//! paired differences between two methods run on the same seeds, with a 95 %
//! confidence interval from the t-distribution over the seeds.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// The mean of `xs` (NaN when empty).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The sample standard deviation of `xs` (divisor `n - 1`; 0 for fewer than
/// two values).
pub fn std_dev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (xs.len() - 1) as f64).sqrt()
}

/// The two-sided 95 % quantile of Student's t with `df` degrees of freedom
/// (`t` such that P(|T| <= t) = 0.95).
pub fn t_95(df: usize) -> Option<f64> {
    if df == 0 {
        return None;
    }
    StudentsT::new(0.0, 1.0, df as f64)
        .ok()
        .map(|t| t.inverse_cdf(0.975))
}

/// The differences `a_i - b_i` of two methods over the same seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    /// Seeds compared.
    pub n: usize,
    /// Mean difference.
    pub mean: f64,
    /// Sample standard deviation of the differences.
    pub std: f64,
    /// 95 % confidence interval of the mean difference (t-distribution with
    /// `n - 1` degrees of freedom); `None` for fewer than two seeds.
    pub ci95: Option<(f64, f64)>,
    /// Seeds where `a` was higher.
    pub a_higher: usize,
    /// Seeds where `b` was higher.
    pub b_higher: usize,
}

impl PairedDifference {
    /// The paired differences of `a` and `b` (same length, same seed order).
    pub fn new(a: &[f64], b: &[f64]) -> Self {
        let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        let (m, s) = (mean(&d), std_dev(&d));
        let ci95 = t_95(d.len().saturating_sub(1)).map(|t| {
            let half = t * s / (d.len() as f64).sqrt();
            (m - half, m + half)
        });
        Self {
            n: d.len(),
            mean: m,
            std: s,
            ci95,
            a_higher: d.iter().filter(|&&x| x > 0.0).count(),
            b_higher: d.iter().filter(|&&x| x < 0.0).count(),
        }
    }

    /// A plain sentence: the difference, its interval, and who was better
    /// where, e.g. `matryoshka vs dylora: -2.10 ± 1.30 AURAC (95 % t-interval
    /// over 3 seeds [-3.40, -0.80]): dylora better, at every seed`.
    pub fn verdict(&self, a: &str, b: &str, what: &str) -> String {
        let seeds = |k: usize| match (k, self.n) {
            (k, n) if k == n && n > 1 => "at every seed".to_string(),
            (1, 1) => "at the one seed".to_string(),
            (k, n) => format!("at {k} of {n} seeds"),
        };
        let (winner, wins) = if self.mean >= 0.0 {
            (a, self.a_higher)
        } else {
            (b, self.b_higher)
        };
        match self.ci95 {
            Some((lo, hi)) => {
                let half = (hi - lo) / 2.0;
                let head = format!(
                    "{a} vs {b}: {:+.2} ± {half:.2} {what} (95 % t-interval over {} seeds [{lo:.2}, {hi:.2}])",
                    self.mean, self.n
                );
                if lo > 0.0 || hi < 0.0 {
                    format!("{head}: {winner} better, {}", seeds(wins))
                } else {
                    format!(
                        "{head}: no clear difference ({winner} higher {})",
                        seeds(wins)
                    )
                }
            }
            None => format!(
                "{a} vs {b}: {:+.2} {what} over {} seed (no interval from one seed): {winner} higher",
                self.mean, self.n
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_table() {
        // AURAC of two methods over four seeds.
        let a = [70.0, 72.0, 71.0, 75.0];
        let b = [74.0, 73.5, 76.0, 77.5];
        assert_eq!(mean(&a), 72.0);
        // deviations -2, 0, -1, 3: sum of squares 14, / 3
        assert!((std_dev(&a) - (14.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(std_dev(&[5.0]), 0.0);
        assert!(mean(&[]).is_nan());
        // differences -4, -1.5, -5, -2.5: mean -3.25, ss = 0.5625 + 3.0625
        // + 3.0625 + 0.5625 = 7.25, s = sqrt(7.25 / 3)
        let d = PairedDifference::new(&a, &b);
        assert_eq!(d.n, 4);
        assert!((d.mean + 3.25).abs() < 1e-12);
        let s = (7.25f64 / 3.0).sqrt();
        assert!((d.std - s).abs() < 1e-12);
        // t(0.975, 3) = 3.182446305284263
        let t = t_95(3).unwrap();
        assert!((t - 3.182_446_305_284_263).abs() < 1e-9, "{t}");
        let (lo, hi) = d.ci95.unwrap();
        let half = t * s / 2.0;
        assert!((lo - (-3.25 - half)).abs() < 1e-9 && (hi - (-3.25 + half)).abs() < 1e-9);
        assert_eq!((d.a_higher, d.b_higher), (0, 4));
        let v = d.verdict("matryoshka", "dylora", "AURAC");
        assert!(v.contains("dylora better, at every seed"), "{v}");
        assert!(v.contains("-3.25"), "{v}");
        // an interval covering 0
        let mixed = PairedDifference::new(&[1.0, -1.0, 2.0], &[0.0, 0.0, 0.0]);
        let v = mixed.verdict("x", "y", "AURAC");
        assert!(
            v.contains("no clear difference") && v.contains("2 of 3 seeds"),
            "{v}"
        );
        assert!((t_95(1).unwrap() - 12.706_204_736_174_7).abs() < 1e-6);
        assert!(t_95(0).is_none());
        assert!(PairedDifference::new(&[1.0], &[0.0]).ci95.is_none());
    }
}
