//! `WorkerGate`: a worker held back before it starts, for tests that must act while the
//! controller waits for its worker's READY (nothing else holds READY back
//! deterministically: the watches of a test tree are in place in milliseconds). The
//! controller is given a wrapper script as its worker (`Controller::with_worker`) that
//! blocks reading a FIFO, then execs the real `syncd-worker` with its arguments — same
//! pid, so to the controller it is its worker all along. [`WorkerGate::open`] lets it
//! go. Must not: wait without a deadline. On Drop a wrapper still waiting (a failed
//! test) gets the FIFO's end of file and exits 1 without starting the worker; the
//! tempdir (wrapper and FIFO) goes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::worker::worker_bin;
use crate::{wait, Diagnose};

pub struct WorkerGate {
    dir: tempfile::TempDir,
}

impl WorkerGate {
    pub fn new() -> WorkerGate {
        let dir = tempfile::Builder::new()
            .prefix("syncd-e2e-gate.")
            .tempdir()
            .expect("create the gate's tempdir");
        let fifo = dir.path().join("gate");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let script = dir.path().join("gated-worker.sh");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\nread _ < '{}' || exit 1\nexec '{}' \"$@\"\n",
                fifo.display(),
                worker_bin().display()
            ),
        )
        .expect("write the gated worker");
        crate::tree::chmod(&script, 0o755);
        WorkerGate { dir }
    }

    /// The wrapper to pass to `Controller::with_worker`.
    pub fn worker(&self) -> PathBuf {
        self.dir.path().join("gated-worker.sh")
    }

    fn fifo(&self) -> PathBuf {
        self.dir.path().join("gate")
    }

    /// Let the worker waiting at the gate go (the wrapper must reach it within
    /// `timeout`: a writer can open the FIFO only while a reader has it open).
    pub fn open(&self, timeout: Duration, fixtures: &[&dyn Diagnose]) {
        let fifo = self.fifo();
        let mut w = wait::must(
            "the gated worker waiting at its gate",
            timeout,
            fixtures,
            || open_writer(&fifo).ok(),
        );
        w.write_all(b"go\n").expect("open the gate");
    }
}

impl Drop for WorkerGate {
    fn drop(&mut self) {
        // Opened and closed at once: a waiting wrapper reads end of file and exits.
        drop(open_writer(&self.fifo()));
    }
}

impl Default for WorkerGate {
    fn default() -> Self {
        WorkerGate::new()
    }
}

/// The FIFO's write end, without blocking: ENXIO while no reader has it open.
fn open_writer(fifo: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(fifo)
}
