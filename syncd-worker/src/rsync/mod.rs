//! Everything about calling rsync: planning the argv and stdin of each run from a batch
//! ([`args`]), running the process ([`run`]), classifying how it ended ([`exit`]; ssh's
//! own refusals in [`ssh_refusal`]), probing what the rsync pair supports ([`probe`]) and
//! checking a daemon password file ([`password`]). The planner and the classifiers are
//! pure; only `run`, `probe` and `password` touch processes or files. No shell anywhere:
//! argv and stdin only.
//! This module does not decide when to push or what to retry; the push executor does.

pub mod args;
pub mod exit;
pub mod failures;
pub mod password;
pub mod probe;
pub mod run;
pub mod ssh_refusal;

pub use args::{plan, Caps, Invocation};
pub use exit::{classify, Class, Outcome};
pub use password::check_password_file;
pub use probe::{local_version, probe};
pub use run::{run, RunResult};

#[cfg(test)]
pub(crate) mod tests;
