//! The scaling rule `s(r)` applied to a rank-`r` adapter.

use super::error::{AdapterError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The scaling rule `s(r)` of a rank-`r` adapter output.
///
/// | rule | `s(r)` |
/// | --- | --- |
/// | `None` | 1 |
/// | `Rank` | 1/r |
/// | `Sqrt` | 1/sqrt(r) (the reference default; rsLoRA without alpha) |
/// | `Alpha(a)` | a/r (PEFT's `lora_alpha / r`) |
///
/// ```
/// use matryoshka_lora::Scaling;
/// assert_eq!(Scaling::Sqrt.factor(4), 0.5);
/// assert_eq!("alpha:16".parse::<Scaling>().unwrap().factor(8), 2.0);
/// ```
/// Serialised as its name (`"sqrt"`, `"alpha:16"`), as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(into = "String", try_from = "String")]
pub enum Scaling {
    /// `s(r) = 1`.
    None,
    /// `s(r) = 1 / r`.
    Rank,
    /// `s(r) = 1 / sqrt(r)`.
    #[default]
    Sqrt,
    /// `s(r) = alpha / r`, PEFT-style.
    Alpha(f64),
}

impl Scaling {
    /// The factor `s(r)` for rank `r >= 1`.
    pub fn factor(&self, r: usize) -> f64 {
        let r = r as f64;
        match self {
            Scaling::None => 1.0,
            Scaling::Rank => 1.0 / r,
            Scaling::Sqrt => 1.0 / r.sqrt(),
            Scaling::Alpha(alpha) => alpha / r,
        }
    }

    /// Checks that an `Alpha` value is finite and positive.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Scaling::Alpha(alpha) if !(alpha.is_finite() && alpha > 0.0) => {
                Err(AdapterError::InvalidValue {
                    what: "scaling alpha",
                    constraint: " > 0",
                    value: alpha,
                })
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Scaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scaling::None => write!(f, "none"),
            Scaling::Rank => write!(f, "rank"),
            Scaling::Sqrt => write!(f, "sqrt"),
            Scaling::Alpha(a) => write!(f, "alpha:{a}"),
        }
    }
}

impl From<Scaling> for String {
    fn from(scaling: Scaling) -> Self {
        scaling.to_string()
    }
}

impl TryFrom<String> for Scaling {
    type Error = ParseScalingError;

    fn try_from(name: String) -> std::result::Result<Self, Self::Error> {
        name.parse()
    }
}

/// Parse error for [`Scaling`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown scaling `{0}`: use none, rank, sqrt or alpha:A (A > 0, e.g. alpha:16)")]
pub struct ParseScalingError(pub String);

impl FromStr for Scaling {
    type Err = ParseScalingError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let err = || ParseScalingError(s.to_string());
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Scaling::None),
            "rank" => Ok(Scaling::Rank),
            "sqrt" => Ok(Scaling::Sqrt),
            other => {
                let alpha = other.strip_prefix("alpha:").ok_or_else(err)?;
                let alpha: f64 = alpha.parse().map_err(|_| err())?;
                let scaling = Scaling::Alpha(alpha);
                scaling.validate().map_err(|_| err())?;
                Ok(scaling)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors() {
        assert_eq!(Scaling::None.factor(7), 1.0);
        assert_eq!(Scaling::Rank.factor(4), 0.25);
        assert!((Scaling::Sqrt.factor(2) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-15);
        assert_eq!(Scaling::Alpha(16.0).factor(8), 2.0);
    }

    #[test]
    fn parse_and_display_round_trip() {
        for s in ["none", "rank", "sqrt", "alpha:16"] {
            assert_eq!(s.parse::<Scaling>().unwrap().to_string(), s);
        }
        assert!("alpha:-1".parse::<Scaling>().is_err());
        assert!("alpha:x".parse::<Scaling>().is_err());
        assert!("cube".parse::<Scaling>().is_err());
        assert!(Scaling::Alpha(f64::NAN).validate().is_err());
        let json = serde_json::to_string(&Scaling::Alpha(16.0)).unwrap();
        assert_eq!(json, r#""alpha:16""#);
        assert_eq!(
            serde_json::from_str::<Scaling>(&json).unwrap(),
            Scaling::Alpha(16.0)
        );
        assert!(serde_json::from_str::<Scaling>(r#""cube""#).is_err());
    }
}
