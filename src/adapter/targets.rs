//! Which `Linear` layers get an adapter, chosen by module path as in PEFT's
//! `target_modules`: the one matching rule every injection mechanism uses
//! (loading a model with adapters, [`adapt_linears`](super::adapt_linears)).

use super::error::{AdapterError, Result};
use regex::Regex;

/// Which `Linear` layers get an adapter, by module path (the weight's path
/// without its trailing `.weight`).
#[derive(Debug, Clone)]
pub enum Targets {
    /// PEFT's `target_modules` list: a layer matches when its path equals a
    /// name or ends with `.name` (e.g. `query` matches `encoder.layer.0.attention.self.query`;
    /// `attention.output.dense` matches only that dense).
    Names(Vec<String>),
    /// A regular expression that must match the whole path.
    Regex(Regex),
    /// Every 2-D weight named `weight`.
    All,
}

impl Targets {
    /// A [`Targets::Names`] list.
    pub fn names<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self::Names(names.into_iter().map(Into::into).collect())
    }

    /// A [`Targets::Regex`]; errors on an invalid expression.
    pub fn regex(pattern: &str) -> Result<Self> {
        Regex::new(&format!("^(?:{pattern})$"))
            .map(Self::Regex)
            .map_err(|e| AdapterError::InvalidTargets(format!("regex `{pattern}`: {e}")))
    }

    /// Whether the layer at `module_path` is a target.
    pub fn matches(&self, module_path: &str) -> bool {
        match self {
            Self::Names(names) => names.iter().any(|n| {
                module_path == n
                    || module_path
                        .strip_suffix(n.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            }),
            Self::Regex(re) => re.is_match(module_path),
            Self::All => true,
        }
    }

    /// Checks the outcome of an injection: `adapted` are the module paths that
    /// received an adapter, `seen` every candidate path. Errors when nothing
    /// matched, or when a name of a [`Targets::Names`] list matched no module
    /// (a misspelt target would otherwise adapt fewer layers without a word).
    pub fn check_matched(&self, adapted: &[String], seen: &[String]) -> Result<()> {
        if adapted.is_empty() {
            return Err(AdapterError::NoTargetMatched {
                patterns: self.describe(),
                seen: seen.to_vec(),
            });
        }
        if let Self::Names(names) = self {
            let unmatched: Vec<String> = names
                .iter()
                .filter(|n| {
                    !adapted
                        .iter()
                        .any(|p| Self::Names(vec![(*n).clone()]).matches(p))
                })
                .cloned()
                .collect();
            if !unmatched.is_empty() {
                return Err(AdapterError::UnmatchedTargets {
                    names: unmatched,
                    seen: seen.to_vec(),
                });
            }
        }
        Ok(())
    }

    /// The patterns, for error messages.
    pub fn describe(&self) -> Vec<String> {
        match self {
            Self::Names(n) => n.clone(),
            Self::Regex(r) => vec![r.as_str().to_string()],
            Self::All => vec!["*".into()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_targets_match_at_dot_boundaries() {
        let t = Targets::names(["query", "attention.output.dense"]);
        assert!(t.matches("encoder.layer.0.attention.self.query"));
        assert!(t.matches("query"));
        assert!(!t.matches("encoder.layer.0.attention.self.subquery"));
        assert!(t.matches("encoder.layer.3.attention.output.dense"));
        assert!(!t.matches("encoder.layer.3.output.dense"));
        let r = Targets::regex(r"layers\.[01]\.fc\d").unwrap();
        assert!(r.matches("layers.1.fc2"));
        assert!(!r.matches("layers.2.fc2"));
        assert!(!r.matches("x.layers.1.fc2"));
        assert!(Targets::regex("(").is_err());
    }

    #[test]
    fn injection_outcome_is_checked() {
        let seen: Vec<String> = ["l.0.query", "l.0.key", "l.1.query"]
            .map(String::from)
            .to_vec();
        let t = Targets::names(["query", "key"]);
        assert!(t.check_matched(&seen, &seen).is_ok());
        let only_queries = vec![seen[0].clone(), seen[2].clone()];
        assert!(
            Targets::names(["query"])
                .check_matched(&only_queries, &seen)
                .is_ok()
        );
        let typo = Targets::names(["query", "kye"]);
        match typo.check_matched(&only_queries, &seen) {
            Err(AdapterError::UnmatchedTargets { names, .. }) => assert_eq!(names, ["kye"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Targets::names(["nope"]).check_matched(&[], &seen),
            Err(AdapterError::NoTargetMatched { .. })
        ));
    }
}
