//! syncd's sync engine as a library: the config model and loaders, the pure core (queue,
//! rsync planning, exit-code classes) and the adapters around it (inotify, rsync processes,
//! fail log, hooks, status file, the durable file write). The `syncd-worker` binary runs [`engine`]; the `syncd`
//! controller reads [`config`] and [`status`].

pub mod batch;
pub mod busy;
pub mod catchup;
pub mod config;
pub mod contract;
pub mod deadline;
pub mod durable;
pub mod engine;
pub mod exclude;
pub mod failing;
pub mod faillog;
pub mod force;
pub mod guard;
pub mod hooks;
pub mod log_channel;
pub mod logger;
pub mod metrics;
pub mod notify;
pub mod once;
pub mod parents;
pub mod path_watch;
pub mod pipeline;
pub mod process;
pub mod progress;
pub mod push;
pub mod queue;
pub mod reload;
pub mod rsync;
pub mod signals;
pub mod source_id;
pub mod state_dir;
pub mod status;
pub mod target;
pub mod verify;
/// Test code only: the wait loop shared by the unit tests and the end-to-end harness.
#[cfg(any(test, feature = "test-util"))]
pub mod wait;
pub mod walk;
pub mod watch;
pub mod watch_thread;
