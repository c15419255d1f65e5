//! Training methods and head modes as the CLI and reports name them.

use crate::adapter::{AdapterMethod, DyLoraVariant};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How adapters are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainMethod {
    /// Plain LoRA at rank `R` (evaluated truncated at every rank).
    Lora,
    /// DyLoRA (reference variant): rank `b` drawn from `S` every step.
    Dylora,
    /// DyLoRA (original paper): `b` drawn from `1..=R`, components `< b` detached.
    DyloraOriginal,
    /// MatryoshkaLoRA, the paper's one-pass `P`.
    Matryoshka,
    /// The exact Matryoshka objective: the mean of the nested models' losses
    /// over `S` (`|S|` forward passes per step).
    MatryoshkaExact,
    /// The exact objective estimated each step from `m` ranks drawn from `S`
    /// (`TrainConfig::rank_samples`): the mean of their nested models'
    /// losses, `m` passes per step.
    MatryoshkaSampled,
}

impl TrainMethod {
    /// Every method, in [`TrainMethod::index`] order.
    pub const ALL: [TrainMethod; 6] = [
        Self::Lora,
        Self::Dylora,
        Self::DyloraOriginal,
        Self::Matryoshka,
        Self::MatryoshkaExact,
        Self::MatryoshkaSampled,
    ];

    /// The method's position in [`TrainMethod::ALL`]. An exhaustive match: a
    /// new variant does not compile until it is given a place in `ALL`.
    pub const fn index(self) -> usize {
        match self {
            Self::Lora => 0,
            Self::Dylora => 1,
            Self::DyloraOriginal => 2,
            Self::Matryoshka => 3,
            Self::MatryoshkaExact => 4,
            Self::MatryoshkaSampled => 5,
        }
    }

    /// The adapter method whose `P` the adapters are built with.
    pub fn adapter_method(&self) -> AdapterMethod {
        match self {
            Self::Lora => AdapterMethod::Lora,
            Self::Dylora => AdapterMethod::dylora(),
            Self::DyloraOriginal => AdapterMethod::DyLora {
                variant: DyLoraVariant::Original,
            },
            Self::Matryoshka | Self::MatryoshkaExact | Self::MatryoshkaSampled => {
                AdapterMethod::matryoshka()
            }
        }
    }

    /// The report / CLI name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lora => "lora",
            Self::Dylora => "dylora",
            Self::DyloraOriginal => "dylora-original",
            Self::Matryoshka => "matryoshka",
            Self::MatryoshkaExact => "matryoshka-exact",
            Self::MatryoshkaSampled => "matryoshka-sampled",
        }
    }
}

impl fmt::Display for TrainMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value that is not one of the allowed names.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown {what} `{got}`: use one of {}", allowed.join(", "))]
pub struct ParseError {
    /// What was parsed.
    pub what: &'static str,
    /// The value given.
    pub got: String,
    /// The allowed values.
    pub allowed: Vec<&'static str>,
}

impl FromStr for TrainMethod {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| ParseError {
                what: "method",
                got: s.to_string(),
                allowed: Self::ALL.iter().map(|m| m.name()).collect(),
            })
    }
}

/// How the classification head is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HeadMode {
    /// Head and adapters train together (the PyTorch yardstick's default).
    #[default]
    Joint,
    /// One linear-probe epoch for the head on the frozen encoder, then the head
    /// is frozen and only the adapters train.
    Probe,
}

impl HeadMode {
    /// The report / CLI name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Joint => "joint",
            Self::Probe => "probe",
        }
    }
}

impl fmt::Display for HeadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HeadMode {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "joint" => Ok(Self::Joint),
            "probe" => Ok(Self::Probe),
            _ => Err(ParseError {
                what: "head mode",
                got: s.to_string(),
                allowed: vec!["joint", "probe"],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_listed_and_names_round_trip() {
        for (i, m) in TrainMethod::ALL.into_iter().enumerate() {
            assert_eq!(m.index(), i, "{m} is out of place in ALL");
            assert_eq!(m.name().parse::<TrainMethod>().unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.name()));
        }
        assert_eq!(
            "dylora-original".parse::<TrainMethod>().unwrap(),
            TrainMethod::DyloraOriginal
        );
        assert!(
            "lorax"
                .parse::<TrainMethod>()
                .unwrap_err()
                .to_string()
                .contains("matryoshka-exact")
        );
        assert_eq!("probe".parse::<HeadMode>().unwrap(), HeadMode::Probe);
        assert!("x".parse::<HeadMode>().is_err());
    }
}
