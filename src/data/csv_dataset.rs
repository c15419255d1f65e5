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
    #[error("column `{column}` (--{flag}) is not in {path}; columns are: {available:?}")]
    MissingColumn {
        /// The column asked for.
        column: String,
        /// The CLI flag that names it.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The header's columns.
        available: Vec<String>,
    },
    /// The label set is empty (given empty, or no rows).
    #[error(
        "the label set is empty: pass --labels a,b,... or a file whose label column has values"
    )]
    EmptyLabels,
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
        "{split} split has {available} rows but {asked} were asked for (--{flag}): lower it or use a bigger file"
    )]
    TooFewRows {
        /// `train` or `test`.
        split: &'static str,
        /// The CLI flag.
        flag: &'static str,
        /// Rows asked for.
        asked: usize,
        /// Rows available.
        available: usize,
    },
    /// The split rule divides by zero.
    #[error("--test-every must be at least 2 (row i is test if i % N == 0), got {0}")]
    BadSplit(usize),
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
        if spec.labels.as_ref().is_some_and(|l| l.is_empty()) {
            return Err(DataError::EmptyLabels);
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
        let kept = keep(rows);
        if kept.is_empty() {
            return Err(DataError::NoRows {
                path: path.to_path_buf(),
                column: spec.label_col.clone(),
                labels,
            });
        }
        let (train, test) = match split {
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
        Ok(Self {
            train,
            test,
            labels,
        })
    }

    /// Keeps the first `train_n` train and `test_n` test examples; errors if
    /// either split is smaller than asked.
    pub fn truncate(
        mut self,
        train_n: Option<usize>,
        test_n: Option<usize>,
    ) -> Result<Self, DataError> {
        for (split, flag, rows, n) in [
            ("train", "train-n", &mut self.train, train_n),
            ("test", "test-n", &mut self.test, test_n),
        ] {
            if let Some(n) = n {
                if n > rows.len() {
                    return Err(DataError::TooFewRows {
                        split,
                        flag,
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
    let column = |name: &str, flag: &'static str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DataError::MissingColumn {
                column: name.to_string(),
                flag,
                path: path.to_path_buf(),
                available: headers.clone(),
            })
    };
    let text_i = column(&spec.text_col, "text-col")?;
    let label_i = column(&spec.label_col, "label-col")?;
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
        assert!(matches!(err, DataError::MissingColumn { .. }), "{err}");
        assert!(err.to_string().contains("--label-col"));
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
        let missing = TextClassificationData::from_csv(
            Path::new("/nonexistent/x.csv"),
            &spec,
            &SplitRule::Every(5),
        );
        assert!(matches!(missing, Err(DataError::Io { .. })));
    }
}
