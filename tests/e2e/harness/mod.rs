//! The end-to-end harness: real fixtures (an `rsync --daemon` on 127.0.0.1, a running
//! `syncd-worker`, source trees in tempdirs) that clean up on `Drop`, and checks that
//! wait for a condition with a deadline and explain themselves when it is not met.
//!
//! Owns: the global inotify-sysctl lock, the wait loop, the `Diagnose` trait that lets a
//! failure message show every fixture's log. Must not: sleep in place of a condition, talk
//! to anything but 127.0.0.1, or leave a process or a tempdir behind.

pub mod daemon;
pub mod sysctl;
pub mod tree;
pub mod worker;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

pub use daemon::RsyncDaemon;
pub use sysctl::SysctlOverride;
pub use tree::{assert_in_sync, SyncCheck, TreeWriter};
pub use worker::{Worker, WorkerConfig};

/// How often wait loops look at their condition.
pub const POLL: Duration = Duration::from_millis(50);

/// Guards the machine-wide inotify sysctls (`/proc/sys/fs/inotify/*`). Every running worker
/// holds a read guard; a test that changes a sysctl holds the write guard, so no other
/// worker calls `inotify_init` while the value is changed.
static INOTIFY_SYSCTLS: RwLock<()> = RwLock::new(());

/// Shared hold on the inotify sysctls (taken by every `Worker`).
pub fn sysctl_shared() -> RwLockReadGuard<'static, ()> {
    // A test that panicked while holding a guard poisons the lock; the sysctl itself is
    // restored by `SysctlOverride`'s Drop, so the poison carries no meaning here.
    INOTIFY_SYSCTLS.read().unwrap_or_else(|e| e.into_inner())
}

/// Exclusive hold on the inotify sysctls (taken by a test that changes them).
pub fn sysctl_exclusive() -> RwLockWriteGuard<'static, ()> {
    INOTIFY_SYSCTLS.write().unwrap_or_else(|e| e.into_inner())
}

/// Something that can explain itself in a failure message (its log, its state).
pub trait Diagnose {
    fn diagnose(&self) -> String;
}

/// Join the diagnostics of several fixtures into one block for a panic message.
pub fn diagnostics(fixtures: &[&dyn Diagnose]) -> String {
    fixtures
        .iter()
        .map(|f| f.diagnose())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Poll `check` every [`POLL`] until it returns `Some`, or panic after `timeout` with
/// `what` and the fixtures' diagnostics. `check` is called at least once.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    fixtures: &[&dyn Diagnose],
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                diagnostics(fixtures)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// The last `n` lines of `text`, with a marker when lines were left out.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= n {
        return text.to_string();
    }
    format!(
        "[... {} earlier lines ...]\n{}",
        lines.len() - n,
        lines[lines.len() - n..].join("\n")
    )
}

/// True when the tests run as root (needed for `uid = root` in the daemon and for sysctls).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
