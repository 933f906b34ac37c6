//! Child processes: the one way syncd starts, bounds and reaps a program (rsync, a
//! command hook, `check`'s `rsync --list-only`, the supervised worker), and the words
//! for how one ended.
//!
//! * [`Spawn`] (`runner.rs`): a builder over argv, env, cwd, stdin, outputs, process
//!   group or session, parent-death signal, deadline and cancel handle; `run` waits and
//!   says how the child ended ([`Ended`]), `spawn` hands back a [`Running`] child for a
//!   long-lived process; `as_user` runs it as another account ([`Credentials`],
//!   `credentials.rs`: resolved before the fork, applied between fork and exec).
//! * `tail.rs`: the bounded end of an output stream (pure).
//! * `describe.rs`: "exited with code 1", "was killed by signal 9 (SIGKILL)" (pure).
//!
//! Every caller states its choices at the call site; this module has no defaults that
//! differ by caller and keeps no state between runs.

mod credentials;
mod describe;
mod runner;
mod tail;

pub use credentials::Credentials;
pub use describe::describe_exit;
pub use runner::{Cancel, Drain, Ended, Group, How, Input, OnChunk, Output, Running, Spawn};
pub use tail::Tail;
