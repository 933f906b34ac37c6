//! `Site`: the usual arrangement of one test — a source tree, a state dir and an rsync
//! daemon target, each cleaned up on Drop — and the worker config that connects them.
//!
//! Must not: start the worker itself (tests decide when, and with what config).

use std::path::{Path, PathBuf};

use super::tree::source_dir;
use super::{RsyncDaemon, WorkerConfig};

pub struct Site {
    pub src: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub daemon: RsyncDaemon,
}

impl Site {
    pub fn new() -> Site {
        Site {
            src: source_dir(),
            state: tempfile::Builder::new()
                .prefix("syncd-e2e-state.")
                .tempdir()
                .expect("create a state tempdir"),
            daemon: RsyncDaemon::start(),
        }
    }

    pub fn src(&self) -> &Path {
        self.src.path()
    }

    /// The daemon module's directory (the target tree).
    pub fn dst(&self) -> PathBuf {
        self.daemon.path()
    }

    /// A config watching `src` and pushing to the daemon.
    pub fn config(&self) -> WorkerConfig {
        WorkerConfig::new(self.state.path(), self.src()).daemon(&self.daemon)
    }
}
