//! syncd's controller as a library: the command line, the decisions taken from it, and
//! one module per thing the controller owns (lock, processes, supervision, sysctls…).
//! `main.rs` only hands the parsed command line to [`dispatch::run`].

pub mod assets;
pub mod check;
pub mod cli;
pub mod conf_man;
pub mod dispatch;
pub mod lock;
pub mod log_file;
pub mod plugin;
pub mod policy;
pub mod privdrop;
pub mod procs;
pub mod report;
pub mod settings;
pub mod start;
pub mod state;
pub mod stop;
pub mod supervise;
pub mod sync;
pub mod sysctl;
pub mod verify;
