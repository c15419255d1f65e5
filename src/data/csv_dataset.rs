//! Text-classification datasets from CSV files (plain or `.bz2`).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a dataset could not be built.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("cannot read data file {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A column is not in the header.
    #[error("{role} column `{column}` is not in {path}; columns are: {available:?}")]
    MissingColumn {
        /// The column asked for.
        column: String,
        /// Which column it is.
        role: Column,
        /// The file.
        path: PathBuf,
        /// The header's columns.
        available: Vec<String>,
    },
    /// The label set is empty (given empty, or no rows).
    #[error("the label set is empty: list the labels, or use a file whose label column has values")]
    EmptyLabels,
    /// The label set lists a label twice, or has fewer than two labels.
    #[error("invalid label set {labels:?}: {reason}")]
    BadLabels {
        /// The labels as given.
        labels: Vec<String>,
        /// What is wrong.
        reason: &'static str,
    },
    /// No row carries one of the requested labels.
    #[error("no row of {path} has a label in {labels:?} (column `{column}`)")]
    NoRows {
        /// The file.
        path: PathBuf,
        /// The label column.
        column: String,
        /// The labels asked for.
        labels: Vec<String>,
    },
    /// Fewer rows than asked for.
    #[error(
        "the {split} split has {available} rows but {asked} were asked for: ask for fewer or use a bigger file"
    )]
    TooFewRows {
        /// `train` or `test`.
        split: &'static str,
        /// Rows asked for.
        asked: usize,
        /// Rows available.
        available: usize,
    },
    /// The split rule `i % N == 0` needs `N >= 2`.
    #[error("the test split rule needs N >= 2 (row i is test if i % N == 0), got {0}")]
    BadSplit(usize),
    /// A listed label has no row in the data.
    #[error(
        "label `{label}` has no row in {path} (column `{column}`): remove it from the label set, or check its spelling"
    )]
    LabelWithoutRows {
        /// The label.
        label: String,
        /// The file.
        path: PathBuf,
        /// The label column.
        column: String,
    },
    /// A split has no rows.
    #[error("the {split} split of {path} is empty")]
    EmptySplit {
        /// `train` or `test`.
        split: &'static str,
        /// The data file.
        path: PathBuf,
    },
}

/// A column of the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// The text column.
    Text,
    /// The label column.
    Label,
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Label => "label",
        })
    }
}

/// Which columns hold the text and the label, and which labels to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvSpec {
    /// Text column name.
    pub text_col: String,
    /// Label column name.
    pub label_col: String,
    /// The label set, label id = position; rows with other labels are dropped.
    /// `None`: the sorted distinct values of the label column.
    pub labels: Option<Vec<String>>,
}

impl Default for CsvSpec {
    fn default() -> Self {
        Self {
            text_col: "text".into(),
            label_col: "category".into(),
            labels: None,
        }
    }
}

/// How rows are split into train and test.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitRule {
    /// Row `i` (0-based, after label filtering) is test if `i % N == 0`.
    Every(usize),
    /// A separate test file (same columns).
    TestFile(PathBuf),
}

/// One labelled text.
#[derive(Debug, Clone, PartialEq)]
pub struct TextExample {
    /// The text.
    pub text: String,
    /// Class id (index into the label set).
    pub label: usize,
}

/// A train/test split with its label set.
#[derive(Debug, Clone)]
pub struct TextClassificationData {
    /// Training examples, in file order.
    pub train: Vec<TextExample>,
    /// Test examples, in file order.
    pub test: Vec<TextExample>,
    /// The label names; a label id is its position.
    pub labels: Vec<String>,
    /// Rows dropped because their label is not in the label set.
    pub dropped: usize,
}

impl TextClassificationData {
    /// Reads `path` (`.bz2` is decompressed), keeps the rows whose label is in the
    /// label set, and splits them.
    pub fn from_csv(path: &Path, spec: &CsvSpec, split: &SplitRule) -> Result<Self, DataError> {
        if let SplitRule::Every(n) = split
            && *n < 2
        {
            return Err(DataError::BadSplit(*n));
        }
        if let Some(labels) = &spec.labels {
            check_labels(labels)?;
        }
        let rows = read_rows(path, spec)?;
        let labels = match &spec.labels {
            Some(labels) => labels.clone(),
            None => {
                let mut set: BTreeSet<String> = rows.iter().map(|(_, l)| l.clone()).collect();
                if let SplitRule::TestFile(test) = split {
                    set.extend(read_rows(test, spec)?.into_iter().map(|(_, l)| l));
                }
                set.into_iter().collect()
            }
        };
        if labels.is_empty() {
            return Err(DataError::EmptyLabels);
        }
        let keep = |rows: Vec<(String, String)>| -> Vec<TextExample> {
            rows.into_iter()
                .filter_map(|(text, l)| {
                    labels
                        .iter()
                        .position(|x| *x == l)
                        .map(|label| TextExample { text, label })
                })
                .collect()
        };
        let total = rows.len();
        let kept = keep(rows);
        let dropped = total - kept.len();
        if kept.is_empty() {
            return Err(DataError::NoRows {
                path: path.to_path_buf(),
                column: spec.label_col.clone(),
                labels,
            });
        }
        if spec.labels.is_some()
            && let Some(label) = (0..labels.len()).find(|&l| !kept.iter().any(|e| e.label == l))
        {
            return Err(DataError::LabelWithoutRows {
                label: labels[label].clone(),
                path: path.to_path_buf(),
                column: spec.label_col.clone(),
            });
        }
        let (train, test): (Vec<TextExample>, Vec<TextExample>) = match split {
            SplitRule::Every(n) => {
                let (mut train, mut test) = (Vec::new(), Vec::new());
                for (i, ex) in kept.into_iter().enumerate() {
                    if i % n == 0 {
                        test.push(ex);
                    } else {
                        train.push(ex);
                    }
                }
                (train, test)
            }
            SplitRule::TestFile(test) => (kept, keep(read_rows(test, spec)?)),
        };
        for (name, rows) in [("train", &train), ("test", &test)] {
            if rows.is_empty() {
                return Err(DataError::EmptySplit {
                    split: name,
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(Self {
            train,
            test,
            labels,
            dropped,
        })
    }

    /// Checks what can be checked of `spec` without reading a file: a listed
    /// label set has two or more distinct, trimmed, non-empty labels.
    pub fn check_spec(spec: &CsvSpec) -> Result<(), DataError> {
        match &spec.labels {
            Some(labels) => check_labels(labels),
            None => Ok(()),
        }
    }

    /// Keeps the first `train_n` train and `test_n` test examples; errors if
    /// either split is smaller than asked.
    pub fn truncate(
        mut self,
        train_n: Option<usize>,
        test_n: Option<usize>,
    ) -> Result<Self, DataError> {
        for (split, rows, n) in [
            ("train", &mut self.train, train_n),
            ("test", &mut self.test, test_n),
        ] {
            if let Some(n) = n {
                if n > rows.len() {
                    return Err(DataError::TooFewRows {
                        split,
                        asked: n,
                        available: rows.len(),
                    });
                }
                rows.truncate(n);
            }
        }
        Ok(self)
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.labels.len()
    }

    /// Rows per label (in label-id order) of `examples`.
    pub fn counts(&self, examples: &[TextExample]) -> Vec<usize> {
        let mut counts = vec![0; self.labels.len()];
        for e in examples {
            counts[e.label] += 1;
        }
        counts
    }
}

/// A listed label set must have two or more distinct labels (trimmed).
fn check_labels(labels: &[String]) -> Result<(), DataError> {
    if labels.is_empty() {
        return Err(DataError::EmptyLabels);
    }
    let bad = |reason| DataError::BadLabels {
        labels: labels.to_vec(),
        reason,
    };
    if labels.iter().any(|l| l.trim() != l || l.is_empty()) {
        return Err(bad(
            "labels must be non-empty and have no surrounding spaces",
        ));
    }
    if labels.len() < 2 {
        return Err(bad("a classifier needs at least two labels"));
    }
    let mut sorted = labels.to_vec();
    sorted.sort();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(bad("a label is listed twice"));
    }
    Ok(())
}

/// `(text, label)` of every row, checking the columns exist.
fn read_rows(path: &Path, spec: &CsvSpec) -> Result<Vec<(String, String)>, DataError> {
    let io = |reason: String| DataError::Io {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| io(e.to_string()))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "bz2") {
        Box::new(bzip2::read::MultiBzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let headers: Vec<String> = csv
        .headers()
        .map_err(|e| io(e.to_string()))?
        .iter()
        .map(String::from)
        .collect();
    let column = |name: &str, role: Column| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DataError::MissingColumn {
                column: name.to_string(),
                role,
                path: path.to_path_buf(),
                available: headers.clone(),
            })
    };
    let text_i = column(&spec.text_col, Column::Text)?;
    let label_i = column(&spec.label_col, Column::Label)?;
    let mut rows = Vec::new();
    for record in csv.records() {
        let record = record.map_err(|e| io(e.to_string()))?;
        let text = record.get(text_i).unwrap_or_default().to_string();
        let label = record.get(label_i).unwrap_or_default().to_string();
        rows.push((text, label));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(name: &str, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mlora-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        path
    }

    #[test]
    fn labels_split_and_errors() {
        let path = write(
            "small.csv",
            "category,text\nfresh,a\nrotten,b\nplot,c\nfresh,\"d, quoted\"\nrotten,e\nfresh,f\n",
        );
        let spec = CsvSpec {
            labels: Some(vec!["rotten".into(), "fresh".into()]),
            ..CsvSpec::default()
        };
        let data = TextClassificationData::from_csv(&path, &spec, &SplitRule::Every(2)).unwrap();
        // kept (plot dropped): a b d e f -> test i%2==0: a d f; train: b e
        let texts = |v: &[TextExample]| v.iter().map(|e| e.text.clone()).collect::<Vec<_>>();
        assert_eq!(texts(&data.test), ["a", "d, quoted", "f"]);
        assert_eq!(texts(&data.train), ["b", "e"]);
        assert_eq!(data.train[0].label, 0);
        assert_eq!(data.test[0].label, 1);
        assert_eq!(data.dropped, 1); // the plot row
        assert_eq!(data.counts(&data.test), [0, 3]);
        let ghost = CsvSpec {
            labels: Some(vec!["rotten".into(), "fresh".into(), "stale".into()]),
            ..CsvSpec::default()
        };
        match TextClassificationData::from_csv(&path, &ghost, &SplitRule::Every(2)) {
            Err(DataError::LabelWithoutRows { label, .. }) => assert_eq!(label, "stale"),
            other => panic!("{other:?}"),
        }
        // inferred labels: sorted distinct values
        let inferred =
            TextClassificationData::from_csv(&path, &CsvSpec::default(), &SplitRule::Every(5))
                .unwrap();
        assert_eq!(inferred.labels, ["fresh", "plot", "rotten"]);
        // errors
        let bad_col = CsvSpec {
            label_col: "label".into(),
            ..CsvSpec::default()
        };
        let err =
            TextClassificationData::from_csv(&path, &bad_col, &SplitRule::Every(5)).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::MissingColumn {
                    role: Column::Label,
                    ..
                }
            ),
            "{err}"
        );
        let empty = CsvSpec {
            labels: Some(vec![]),
            ..CsvSpec::default()
        };
        assert!(matches!(
            TextClassificationData::from_csv(&path, &empty, &SplitRule::Every(5)),
            Err(DataError::EmptyLabels)
        ));
        assert!(matches!(
            TextClassificationData::from_csv(&path, &spec, &SplitRule::Every(1)),
            Err(DataError::BadSplit(1))
        ));
        assert!(matches!(
            data.clone().truncate(Some(10), None),
            Err(DataError::TooFewRows { split: "train", .. })
        ));
        assert_eq!(data.truncate(Some(1), Some(2)).unwrap().test.len(), 2);
        for bad in [
            vec!["fresh"],
            vec!["fresh", "fresh"],
            vec!["rotten", " fresh"],
        ] {
            let spec = CsvSpec {
                labels: Some(bad.iter().map(|l| l.to_string()).collect()),
                ..CsvSpec::default()
            };
            let err = TextClassificationData::from_csv(&path, &spec, &SplitRule::Every(2));
            assert!(matches!(err, Err(DataError::BadLabels { .. })), "{bad:?}");
        }
        // one row: it is test (row 0), so the train split is empty
        let one = write("one.csv", "category,text\nfresh,a\n");
        assert!(matches!(
            TextClassificationData::from_csv(&one, &CsvSpec::default(), &SplitRule::Every(2)),
            Err(DataError::EmptySplit { split: "train", .. })
        ));
        let missing = TextClassificationData::from_csv(
            Path::new("/nonexistent/x.csv"),
            &spec,
            &SplitRule::Every(5),
        );
        assert!(matches!(missing, Err(DataError::Io { .. })));
    }
}
