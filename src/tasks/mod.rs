//! The crate's own tasks, each an instance of [`Task`](crate::train::Task)
//! trained and evaluated by the one [`Runner`](crate::train::Runner).

pub mod causal_lm;
pub mod classify;
