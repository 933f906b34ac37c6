//! syncd's controller as a library: the command line, the decisions taken from it, and
//! one module per thing the controller owns (lock, processes, supervision, sysctls…).
//! `main.rs` only dispatches to [`run`].

pub mod check;
pub mod cli;
pub mod lock;
pub mod procs;
pub mod settings;
pub mod state;
pub mod sync;
pub mod sysctl;
