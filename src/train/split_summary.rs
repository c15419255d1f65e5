//! Data sanity: what a task says about its prepared splits, the checks the
//! [`Runner`](super::Runner) makes of it before training (a degenerate
//! split is an error, not an excellent-looking result), the warnings it
//! gives, and the `data` section of `report.json`.

use super::error::{RunError, Setting};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// What a task knows about its splits ([`Task::split_summary`](super::Task::split_summary));
/// every field is optional, and a task that knows nothing returns the default.
///
/// ```
/// use matryoshka_lora::train::SplitSummary;
/// let summary = SplitSummary::of_labels(
///     &["plot".into(), "rotten".into()],
///     &[64, 0],
///     &[30, 2],
/// );
/// assert_eq!(summary.majority_accuracy, Some(93.75));
/// let e = summary.check().unwrap_err();
/// assert!(e.to_string().contains("no training rows of `rotten`"), "{e}");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    /// Training rows per class label (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_counts: Option<BTreeMap<String, usize>>,
    /// Test rows per class label (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_counts: Option<BTreeMap<String, usize>>,
    /// Test rows whose input (a classifier's text, a causal LM's prompt),
    /// trimmed, also occurs among the training rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_overlap: Option<usize>,
    /// Whether those rows were removed from the test split (`--drop-overlap`);
    /// `test_overlap` then counts the rows removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overlap_dropped: bool,
    /// The accuracy (%) of always answering the test split's most frequent label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub majority_accuracy: Option<f64>,
    /// Settings that shaped the training split beyond the label set (e.g.
    /// `train_n` keeping the file's first rows): named when it is degenerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shaped_by: Vec<String>,
    /// Test responses too long for the generation budget (a causal LM's
    /// `max_new_tokens`): their generations stop before their end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_generation_budget: Option<OverBudget>,
    /// The groups of the training and test rows, when the task names them
    /// ([`Task::group`](super::Task::group)); the runner fills it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<GroupOverlap>,
}

/// How the groups of two splits (a template's instances, one document's
/// questions: [`Task::group`](super::Task::group)) overlap. A test row of a
/// group that also trains is a near-duplicate of training rows: a split that
/// shares groups measures recall of those groups, not generalisation.
///
/// ```
/// use matryoshka_lora::train::GroupOverlap;
/// let train = [Some("t1"), Some("t2"), Some("t1")];
/// let test = [Some("t2"), Some("t3"), Some("t3")];
/// let o = GroupOverlap::of(train.into_iter(), test.into_iter()).unwrap();
/// assert_eq!((o.train, o.test, o.shared, o.test_rows_shared), (2, 2, 1, 1));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupOverlap {
    /// Distinct groups among the training rows.
    pub train: usize,
    /// Distinct groups among the test rows.
    pub test: usize,
    /// Groups with rows in both splits.
    pub shared: usize,
    /// Test rows whose group also has training rows.
    pub test_rows_shared: usize,
}

impl GroupOverlap {
    /// The overlap of the rows' groups (`None` for a row without one: a
    /// group of its own); `None` when no row names a group.
    pub fn of<'a>(
        train: impl Iterator<Item = Option<&'a str>>,
        test: impl Iterator<Item = Option<&'a str>>,
    ) -> Option<Self> {
        let train: HashSet<&str> = train.flatten().collect();
        let test: Vec<&str> = test.flatten().collect();
        if train.is_empty() && test.is_empty() {
            return None;
        }
        let test_groups: HashSet<&str> = test.iter().copied().collect();
        Some(Self {
            train: train.len(),
            test: test_groups.len(),
            shared: test_groups.intersection(&train).count(),
            test_rows_shared: test.iter().filter(|g| train.contains(*g)).count(),
        })
    }
}

/// Test responses longer than the generation budget: greedy generation
/// stops before their end, so their final answers cannot match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverBudget {
    /// How many test responses are longer than `max_new_tokens` tokens
    /// (EOS not counted).
    pub rows: usize,
    /// The budget: at most this many new tokens per generation.
    pub max_new_tokens: usize,
    /// Tokens of the longest test response (EOS not counted).
    pub longest: usize,
}

impl SplitSummary {
    /// The summary of a classifier's splits: `names` in label-id order, rows
    /// per label in each split; `majority_accuracy` from the test counts.
    pub fn of_labels(names: &[String], train: &[usize], test: &[usize]) -> Self {
        let counts = |n: &[usize]| -> BTreeMap<String, usize> {
            names.iter().cloned().zip(n.iter().copied()).collect()
        };
        Self {
            train_counts: Some(counts(train)),
            test_counts: Some(counts(test)),
            majority_accuracy: majority_accuracy(test),
            ..Self::default()
        }
    }

    /// Refuses a degenerate training split: a label with no training rows,
    /// or a single class. The error names `--labels` (and any setting in
    /// `shaped_by`) with the counts of both splits.
    pub fn check(&self) -> Result<(), RunError> {
        let Some(train) = &self.train_counts else {
            return Ok(());
        };
        let missing: Vec<&String> = train
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(l, _)| l)
            .collect();
        let why = if train.len() < 2 {
            format!("only one label ({})", list(train.keys()))
        } else if let Some(&label) = missing.first().filter(|_| missing.len() == 1) {
            format!("no training rows of `{label}`")
        } else if !missing.is_empty() {
            format!("no training rows of {}", list(missing.iter().copied()))
        } else {
            return Ok(());
        };
        let counts = |c: &Option<BTreeMap<String, usize>>| match c {
            Some(c) => c
                .iter()
                .map(|(l, n)| format!("{l} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            None => "?".into(),
        };
        let shaped: Vec<String> = self
            .shaped_by
            .iter()
            .map(|s| format!("--{}", s.replace('_', "-")))
            .collect();
        let hint = match shaped.as_slice() {
            [] => String::new(),
            flags => format!(
                " ({} chose these rows: change it, or shuffle the file)",
                flags.join(" and ")
            ),
        };
        Err(RunError::invalid(
            Setting::Task("labels"),
            format!(
                "the training split is degenerate, {why}: train [{}], test [{}]{hint}; every label of --labels needs training rows",
                counts(&self.train_counts),
                counts(&self.test_counts),
            ),
        ))
    }

    /// One line per thing a reader of the results should know: labels with
    /// no test rows (their accuracy cannot be measured), test rows that also
    /// occur in training, test responses longer than the generation budget.
    ///
    /// ```
    /// use matryoshka_lora::train::{OverBudget, SplitSummary};
    /// let summary = SplitSummary {
    ///     over_generation_budget: Some(OverBudget { rows: 16, max_new_tokens: 16, longest: 19 }),
    ///     ..SplitSummary::default()
    /// };
    /// let lines = summary.warnings(100);
    /// assert!(lines[0].contains("16 of 100 test responses are longer than --max-new-tokens 16"));
    /// ```
    pub fn warnings(&self, test_rows: usize) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(test) = &self.test_counts {
            for (label, _) in test.iter().filter(|(_, n)| **n == 0) {
                out.push(format!(
                    "warning: label `{label}` has no test rows: its accuracy cannot be measured"
                ));
            }
        }
        match self.test_overlap {
            Some(n) if n > 0 && self.overlap_dropped => out.push(format!(
                "warning: {n} test rows also occur in training and were dropped (--drop-overlap); {test_rows} test rows remain"
            )),
            Some(n) if n > 0 => out.push(format!(
                "warning: {n} of {test_rows} test rows also occur in training (--drop-overlap removes them)"
            )),
            _ => {}
        }
        if let Some(g) = self.groups.as_ref().filter(|g| g.shared > 0) {
            out.push(format!(
                "warning: {} of {test_rows} test rows belong to groups that also train ({} of their {} groups): \
                 those rows are near-duplicates of training rows, so the test measures recall of \
                 those groups more than generalisation",
                g.test_rows_shared, g.shared, g.test
            ));
        }
        if let Some(over) = &self.over_generation_budget {
            out.push(format!(
                "warning: {} of {test_rows} test responses are longer than --max-new-tokens {} \
                 (the longest: {} tokens): generation stops before their end, so exact match \
                 counts them wrong; --max-new-tokens {} lets every answer finish",
                over.rows, over.max_new_tokens, over.longest, over.longest
            ));
        }
        out
    }
}

fn list<'a>(labels: impl Iterator<Item = &'a String>) -> String {
    labels
        .map(|l| format!("`{l}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The accuracy (%) of always answering the most frequent label of `counts`
/// (`None` for an empty split).
pub fn majority_accuracy(counts: &[usize]) -> Option<f64> {
    let total: usize = counts.iter().sum();
    let most = counts.iter().copied().max()?;
    (total > 0).then(|| 100.0 * most as f64 / total as f64)
}

/// Which of `test` (keys, e.g. texts) also occur in `train`, after trimming.
pub fn overlapping<'a>(
    train: impl IntoIterator<Item = &'a str>,
    test: impl IntoIterator<Item = &'a str>,
) -> Vec<bool> {
    let seen: HashSet<&str> = train.into_iter().map(str::trim).collect();
    test.into_iter().map(|t| seen.contains(t.trim())).collect()
}

/// How many rows of `test` also occur in `train` (by `key`, trimmed).
pub fn count_overlapping<T>(train: &[T], test: &[T], key: fn(&T) -> &str) -> usize {
    overlapping(train.iter().map(key), test.iter().map(key))
        .into_iter()
        .filter(|&seen| seen)
        .count()
}

/// Removes from `test` the rows that also occur in `train` (by `key`,
/// trimmed); returns how many.
pub fn remove_overlapping<T>(train: &[T], test: &mut Vec<T>, key: fn(&T) -> &str) -> usize {
    let seen = overlapping(train.iter().map(key), test.iter().map(key));
    let mut keep = seen.iter().map(|&s| !s);
    test.retain(|_| keep.next().unwrap_or(true));
    seen.into_iter().filter(|&s| s).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_accuracy_is_the_most_frequent_labels_share() {
        // 7 fresh, 2 rotten, 1 plot: always "fresh" is right 7 times in 10
        assert_eq!(majority_accuracy(&[2, 7, 1]), Some(70.0));
        assert_eq!(majority_accuracy(&[32]), Some(100.0));
        assert_eq!(majority_accuracy(&[0, 0]), None);
        assert_eq!(majority_accuracy(&[]), None);
    }

    #[test]
    fn degenerate_training_splits_are_errors_naming_the_flags() {
        let names = ["fresh".to_string(), "plot".into(), "rotten".into()];
        let mut s = SplitSummary::of_labels(&names, &[0, 64, 0], &[0, 32, 0]);
        s.shaped_by = vec!["train_n".into()];
        let e = s.check().unwrap_err();
        assert_eq!(e.setting(), Some(Setting::Task("labels")));
        let m = e.to_string();
        assert!(m.contains("no training rows of `fresh`, `rotten`"), "{m}");
        assert!(m.contains("train [fresh 0, plot 64, rotten 0]"), "{m}");
        assert!(m.contains("test [fresh 0, plot 32, rotten 0]"), "{m}");
        assert!(m.contains("--train-n chose these rows"), "{m}");
        let one = SplitSummary::of_labels(&names[1..2], &[64], &[32]);
        assert!(
            one.check()
                .unwrap_err()
                .to_string()
                .contains("only one label (`plot`)")
        );
        let fine = SplitSummary::of_labels(&names, &[3, 4, 5], &[0, 2, 2]);
        fine.check().unwrap();
        assert_eq!(
            fine.warnings(4),
            ["warning: label `fresh` has no test rows: its accuracy cannot be measured"]
        );
        assert!(SplitSummary::default().check().is_ok());
    }

    #[test]
    fn overlap_is_counted_after_trimming() {
        let train = ["a b", " c ", "d"];
        let test = ["c", "e", "a b  ", "A b"];
        assert_eq!(overlapping(train, test), [true, false, true, false]);
        let key: for<'a> fn(&'a &'a str) -> &'a str = |s| s;
        assert_eq!(count_overlapping(&train, &test, key), 2);
        let mut kept = test.to_vec();
        assert_eq!(remove_overlapping(&train, &mut kept, key), 2);
        assert_eq!(kept, ["e", "A b"]);
    }

    #[test]
    fn groups_shared_by_the_splits_are_counted_and_warned_of() {
        let train = [Some("a"), Some("b"), None, Some("a")];
        let test = [Some("b"), Some("b"), Some("c"), None];
        let o = GroupOverlap::of(train.into_iter(), test.into_iter()).unwrap();
        assert_eq!(
            o,
            GroupOverlap {
                train: 2,
                test: 2,
                shared: 1,
                test_rows_shared: 2
            }
        );
        let summary = SplitSummary {
            groups: Some(o),
            ..SplitSummary::default()
        };
        let lines = summary.warnings(4);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with(
                "warning: 2 of 4 test rows belong to groups that also train (1 of their 2 groups)"
            ),
            "{}",
            lines[0]
        );
        // disjoint groups: nothing to warn of; no groups at all: no overlap
        let disjoint = GroupOverlap::of([Some("a")].into_iter(), [Some("c")].into_iter());
        assert_eq!(disjoint.as_ref().map(|o| o.shared), Some(0));
        let quiet = SplitSummary {
            groups: disjoint,
            ..SplitSummary::default()
        };
        assert!(quiet.warnings(1).is_empty());
        assert_eq!(
            GroupOverlap::of([None].into_iter(), [None].into_iter()),
            None
        );
    }
}
