//! The controller's state file (`<state_dir>/controller.json`): what `status` cannot
//! learn from the worker's own status file — the worker's pid, how often it was
//! restarted, why it last exited, and whether supervision gave up. Written durably
//! ([`syncd_worker::durable`]) by the controller on every change; read by `status`, `stop` and `sync`.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use syncd_worker::durable::{self, Flush};

/// Supervision phase.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Worker started, watches not in place yet.
    Starting,
    /// Worker reported READY.
    Running,
    /// Worker died; a new one is due at `restart_at`.
    Restarting,
    /// Stop requested: the worker drains.
    Stopping,
    /// Too many fast crashes: the controller gave up and exited.
    GaveUp,
    /// The controller exited cleanly.
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ControllerState {
    pub pid: u32,
    /// Unix seconds.
    pub started_at: f64,
    pub phase: Phase,
    pub worker_pid: Option<u32>,
    pub worker_started_at: Option<f64>,
    /// Workers started after the first one.
    pub restarts: u64,
    /// How the last worker ended, e.g. "killed by signal 9".
    pub last_exit: Option<String>,
    /// Unix seconds of the next restart when `phase` is `restarting`.
    pub restart_at: Option<f64>,
    /// Why supervision gave up or the start failed.
    pub error: Option<String>,
}

impl ControllerState {
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        durable::replace_json(path, self, 0o644, Flush::Durable)
            .with_context(|| format!("failed to write controller state {}", path.display()))
    }

    /// Read it; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> anyhow::Result<Option<ControllerState>> {
        match std::fs::read(path) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .with_context(|| format!("{} is not valid JSON", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("controller.json");
        assert_eq!(ControllerState::read(&p).expect("read"), None);
        let s = ControllerState {
            pid: 1,
            started_at: 2.5,
            phase: Phase::GaveUp,
            worker_pid: Some(3),
            worker_started_at: None,
            restarts: 4,
            last_exit: Some("exit code 1".into()),
            restart_at: None,
            error: Some("gave up".into()),
        };
        s.write(&p).expect("write");
        assert_eq!(ControllerState::read(&p).expect("read"), Some(s));
        let text = std::fs::read_to_string(&p).expect("text");
        assert!(text.contains("\"gave-up\""), "{text}");
    }
}
