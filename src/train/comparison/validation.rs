//! The validation split a comparison chooses learning rates on: carved from
//! the end of the training examples, whole groups at a time when the task
//! names groups ([`Task::group`](crate::train::Task::group)).
//!
//! Rows of one group (a template's instances, one document's questions) are
//! near-duplicates: a validation row whose group also trains scores recall of
//! that group, and a choice made on such rows favours the learning rates that
//! memorise groups, not those that generalise to the unseen groups a
//! group-disjoint test holds.

use crate::train::error::{RunError, Setting};
use crate::train::runner::Runner;
use crate::train::task::{Task, TaskData};
use std::collections::{HashMap, HashSet};

impl<T: Task> Runner<T> {
    /// The data learning rates are chosen on: `data`'s training examples
    /// split by [`validation_split`] into training and validation
    /// (`test`) examples; the split is printed unless quiet. An error names
    /// `val_n` when no training example would be left.
    pub(super) fn selection_data(
        &self,
        data: &TaskData<T::Item, T::Meta>,
        val_n: usize,
    ) -> Result<TaskData<T::Item, T::Meta>, RunError> {
        let n = data.train.len();
        let groups: Vec<Option<&str>> = data.train.iter().map(|i| self.task().group(i)).collect();
        let grouped = groups.iter().any(Option::is_some);
        let (train, valid) = validation_split(&groups, val_n);
        if val_n == 0 || train.is_empty() {
            let whole = if grouped {
                format!(
                    " (whole groups: the groups of the last {val_n} rows hold all {n}; lower --val-n or name finer groups)"
                )
            } else {
                String::new()
            };
            return Err(RunError::invalid(
                Setting::Task("val_n"),
                format!(
                    "the validation split must leave training examples: 1..{n}, got {val_n}{whole}"
                ),
            ));
        }
        if !self.is_quiet() {
            let distinct = |idx: &[usize]| -> usize {
                idx.iter()
                    .filter_map(|&i| groups[i])
                    .collect::<HashSet<&str>>()
                    .len()
            };
            let whole = if grouped {
                let validating = distinct(&valid);
                format!(
                    ", whole groups: {validating} of {}, none of them trains",
                    validating + distinct(&train)
                )
            } else {
                String::new()
            };
            eprintln!(
                "learning rates chosen on {} of the {n} training rows{whole}",
                valid.len()
            );
        }
        let rows = |idx: Vec<usize>| -> Vec<T::Item> {
            idx.into_iter().map(|i| data.train[i].clone()).collect()
        };
        Ok(TaskData {
            train: rows(train),
            test: rows(valid),
            meta: data.meta.clone(),
        })
    }
}

/// Which training examples validate and which train, as indices in data
/// order: `(train, valid)`.
///
/// Without groups (every entry `None`) the last `val_n` examples validate.
/// With groups, walking back from the last example, each example's whole
/// group validates, until at least `val_n` examples do (an example without a
/// group is a group of its own): the split holds `val_n` or a few more rows
/// and no group on both sides. Groups `[a, b, a, c]` with `val_n` 2 give
/// `([1], [0, 2, 3])`: c's row, then a's two.
pub(crate) fn validation_split(groups: &[Option<&str>], val_n: usize) -> (Vec<usize>, Vec<usize>) {
    let n = groups.len();
    if groups.iter().all(Option::is_none) {
        let cut = n.saturating_sub(val_n);
        return ((0..cut).collect(), (cut..n).collect());
    }
    let mut size = HashMap::<&str, usize>::new();
    for g in groups.iter().flatten() {
        *size.entry(*g).or_default() += 1;
    }
    let mut valid = vec![false; n];
    let mut chosen = HashSet::<&str>::new();
    let mut count = 0;
    for i in (0..n).rev() {
        if count >= val_n {
            break;
        }
        match groups[i] {
            None => {
                valid[i] = true;
                count += 1;
            }
            Some(g) if chosen.insert(g) => count += size[g],
            Some(_) => {}
        }
    }
    for (i, g) in groups.iter().enumerate() {
        if let Some(g) = g {
            valid[i] = chosen.contains(g);
        }
    }
    (0..n).partition(|&i| !valid[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_groups_the_last_rows_validate() {
        let groups = [None; 5];
        assert_eq!(validation_split(&groups, 2), (vec![0, 1, 2], vec![3, 4]));
    }

    #[test]
    fn groups_stay_whole_and_never_on_both_sides() {
        let groups = [Some("a"), Some("b"), Some("a"), Some("c")];
        // the last row is c's (1 row), then a's (2 rows): 3 >= 2
        assert_eq!(validation_split(&groups, 2), (vec![1], vec![0, 2, 3]));
        // one row asked for: c alone
        assert_eq!(validation_split(&groups, 1), (vec![0, 1, 2], vec![3]));
        // rows without a group are groups of their own
        let mixed = [Some("a"), None, Some("a"), None];
        assert_eq!(validation_split(&mixed, 1), (vec![0, 1, 2], vec![3]));
        assert_eq!(validation_split(&mixed, 2), (vec![1], vec![0, 2, 3]));
        // a larger case: 40 rows of 10 groups in a shuffled order, 9 asked for
        let groups: Vec<String> = (0..40).map(|i| format!("t{}", (i * 7) % 10)).collect();
        let groups: Vec<Option<&str>> = groups.iter().map(|g| Some(g.as_str())).collect();
        let (train, valid) = validation_split(&groups, 9);
        assert_eq!(train.len() + valid.len(), 40);
        assert!(valid.len() >= 9 && valid.len() < 9 + 4, "{}", valid.len());
        let of =
            |idx: &[usize]| -> HashSet<&str> { idx.iter().filter_map(|&i| groups[i]).collect() };
        assert!(of(&train).is_disjoint(&of(&valid)));
        assert!(train.windows(2).all(|w| w[0] < w[1]) && valid.windows(2).all(|w| w[0] < w[1]));
    }
}
