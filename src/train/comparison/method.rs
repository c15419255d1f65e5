//! What a comparison trains: a training method, or the rank grid search.

use crate::train::objective::{ParseError, TrainMethod};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One entry of [`ComparePlan::methods`](super::ComparePlan): a training
/// method (one run of max rank `R` evaluated at every rank of `S`), or the
/// grid search over ranks that one nested adapter promises to replace.
///
/// `lora-grid` trains, for every `k` in `S`, a plain LoRA of max rank `k`
/// (`R = k`, `S = {k}`) with the comparison's other settings (its learning
/// rate chosen per `k` like every other method's), and evaluates each at its
/// own rank: `|S|` runs whose own-rank figures make one curve.
///
/// ```
/// use matryoshka_lora::train::{CompareMethod, TrainMethod};
/// let grid: CompareMethod = "lora-grid".parse().unwrap();
/// assert!(grid.is_grid());
/// assert_eq!(grid.train_method(), TrainMethod::Lora);
/// let m: CompareMethod = "matryoshka".parse().unwrap();
/// assert_eq!(m, CompareMethod::Train(TrainMethod::Matryoshka));
/// assert_eq!(m.to_string(), "matryoshka");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CompareMethod {
    /// One run of this method.
    Train(TrainMethod),
    /// One plain LoRA run per rank `k` of `S`, at max rank `k`.
    LoraGrid,
}

impl CompareMethod {
    /// The grid's name.
    pub const GRID: &'static str = "lora-grid";

    /// Whether this is the rank grid.
    pub fn is_grid(&self) -> bool {
        matches!(self, Self::LoraGrid)
    }

    /// The method each of its runs trains with (`lora` for the grid).
    pub fn train_method(&self) -> TrainMethod {
        match self {
            Self::Train(m) => *m,
            Self::LoraGrid => TrainMethod::Lora,
        }
    }

    /// The report / CLI name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Train(m) => m.name(),
            Self::LoraGrid => Self::GRID,
        }
    }
}

impl From<TrainMethod> for CompareMethod {
    fn from(method: TrainMethod) -> Self {
        Self::Train(method)
    }
}

impl fmt::Display for CompareMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CompareMethod {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.trim().eq_ignore_ascii_case(Self::GRID) {
            return Ok(Self::LoraGrid);
        }
        TrainMethod::from_str(s).map(Self::Train).map_err(|mut e| {
            e.allowed.push(Self::GRID);
            e
        })
    }
}

impl TryFrom<String> for CompareMethod {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, ParseError> {
        s.parse()
    }
}

impl From<CompareMethod> for String {
    fn from(method: CompareMethod) -> Self {
        method.name().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_json_as_the_train_methods_do() {
        for m in TrainMethod::ALL {
            let c = CompareMethod::from(m);
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                serde_json::to_string(&m).unwrap()
            );
            assert_eq!(c.name().parse::<CompareMethod>().unwrap(), c);
        }
        let grid = serde_json::to_string(&CompareMethod::LoraGrid).unwrap();
        assert_eq!(grid, "\"lora-grid\"");
        assert_eq!(
            serde_json::from_str::<CompareMethod>(&grid).unwrap(),
            CompareMethod::LoraGrid
        );
        let err = "lora-grd".parse::<CompareMethod>().unwrap_err().to_string();
        assert!(err.contains("lora-grid"), "{err}");
    }
}
