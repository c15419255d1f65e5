//! Typed errors for every bad input the crate can be given.

use thiserror::Error;

/// Everything that can go wrong when configuring or using adapters.
///
/// Each message says what was wrong and what is allowed, so it can be shown
/// to a user as it is.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum AdapterError {
    /// The maximum rank `R` was 0.
    #[error("max rank R must be at least 1, got 0")]
    ZeroMaxRank,
    /// A nested rank of 0 was given.
    #[error("rank 0 is not a valid nested rank: ranks must satisfy 1 <= s <= R (R = {max_rank})")]
    ZeroRank {
        /// The adapter's maximum rank.
        max_rank: usize,
    },
    /// The nested rank set was empty.
    #[error("the nested rank set S is empty: give at least one rank in 1..={max_rank}")]
    EmptyRanks {
        /// The adapter's maximum rank.
        max_rank: usize,
    },
    /// The nested ranks were not strictly ascending.
    #[error(
        "nested ranks must be sorted ascending without duplicates, got {ranks:?} (e.g. 1,2,4,8)"
    )]
    UnsortedRanks {
        /// The ranks as given.
        ranks: Vec<usize>,
    },
    /// A nested rank exceeds the maximum rank.
    #[error(
        "nested rank {rank} exceeds the max rank R = {max_rank}: every rank must be in 1..={max_rank}"
    )]
    RankAboveMax {
        /// The offending rank.
        rank: usize,
        /// The adapter's maximum rank.
        max_rank: usize,
    },
    /// A rank used for evaluation, merging or DyLoRA is outside `1..=R`.
    #[error("rank {rank} is not usable: evaluation/merge ranks must be in 1..={max_rank}")]
    UnusableRank {
        /// The offending rank.
        rank: usize,
        /// The adapter's maximum rank.
        max_rank: usize,
    },
    /// A user-given vector (P, weights) has the wrong length.
    #[error("{what} has length {got}, expected {expected}")]
    WrongLength {
        /// What the vector is.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length required.
        expected: usize,
    },
    /// A value that must be finite (and sometimes positive) was not.
    #[error("{what} must be a finite number{constraint}, got {value}")]
    InvalidValue {
        /// What the value is.
        what: &'static str,
        /// Extra constraint, e.g. " > 0".
        constraint: &'static str,
        /// The value given.
        value: f64,
    },
    /// Wrapping a `Linear` whose shape disagrees with the adapter configuration.
    #[error(
        "shape mismatch: {what}: expected {expected:?}, got {got:?} (the adapter's d_input/d_output must match the wrapped Linear's weight [d_input, d_output])"
    )]
    ShapeMismatch {
        /// What was compared.
        what: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A path pattern used to choose layers matched no `Linear` weight.
    #[error("no Linear weight matched the target pattern(s) {patterns:?}; weights seen: {seen:?}")]
    NoTargetMatched {
        /// The patterns given.
        patterns: Vec<String>,
        /// Every 2-D weight path that was seen.
        seen: Vec<String>,
    },
    /// The maximum rank exceeds what a selected layer's shape allows.
    #[error(
        "max rank R = {max_rank} exceeds min(d_in, d_out) = {} of layer `{path}` [{d_input}, {d_output}]: use R <= {}",
        d_input.min(d_output),
        d_input.min(d_output)
    )]
    RankAboveLayer {
        /// Module path of the layer.
        path: String,
        /// The adapter's maximum rank.
        max_rank: usize,
        /// The layer's input features.
        d_input: usize,
        /// The layer's output features.
        d_output: usize,
    },
    /// Some names of a target list matched no module.
    #[error("target module(s) {names:?} matched no Linear layer; the layers are: {seen:?}")]
    UnmatchedTargets {
        /// The names that matched nothing.
        names: Vec<String>,
        /// Every candidate module path.
        seen: Vec<String>,
    },
    /// A bad target specification.
    #[error("invalid adapter targets: {0}")]
    InvalidTargets(String),
    /// A mapper over a module found an adapter it could not switch.
    #[error("cannot set the active rank on adapter `{path}`: {reason}")]
    RankSwitch {
        /// Module path of the adapter.
        path: String,
        /// Why.
        reason: String,
    },
    /// A backend this build does not include.
    #[error(
        "backend `{backend}` is not in this build (compiled: {compiled:?}); rebuild with `--features {feature}`"
    )]
    BackendUnavailable {
        /// The backend asked for.
        backend: String,
        /// The cargo feature that enables it.
        feature: &'static str,
        /// The backends this build has.
        compiled: Vec<String>,
    },
    /// A backend in the build whose device does not work on this machine.
    #[error("backend `{backend}` cannot open a device on this machine: {reason}")]
    BackendUnusable {
        /// The backend.
        backend: String,
        /// What failed.
        reason: String,
    },
    /// An unknown backend name.
    #[error("unknown backend `{0}`: use flex, ndarray, wgpu or cuda")]
    UnknownBackend(String),
    /// A device list (`--devices`) that names no usable set of devices.
    #[error("{0}")]
    InvalidDevice(String),
    /// AURAC input problems.
    #[error("AURAC: {0}")]
    Aurac(String),
}

/// Shorthand result type of the adapter core (not re-exported at the crate root).
pub type Result<T, E = AdapterError> = std::result::Result<T, E>;
