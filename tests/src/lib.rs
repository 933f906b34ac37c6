//! syncd's test harness (`syncd_tests`), used by every end-to-end test in `e2e/` and by
//! the controller's `check` tests: real fixtures (an `rsync --daemon` on 127.0.0.1, a real
//! `sshd` on 127.0.0.1 for ssh targets, a running `syncd-worker` or `syncd`, source trees
//! in tempdirs) that clean up on `Drop`, and checks that wait for a condition with a
//! deadline and explain themselves when it is not met.
//!
//! Owns: the global inotify-sysctl lock, the waits that fail with every fixture's log
//! ([`wait`], around `syncd_worker::wait`, the one wait loop), the `Diagnose` trait that
//! lets a failure message show every fixture's log. Must not: depend on the
//! `syncd` crate (its tests use this one), sleep in place of a condition, talk to
//! anything but 127.0.0.1, or leave a process or a tempdir behind.

pub mod controller;
pub mod daemon;
pub mod gate;
pub mod mount;
pub mod proc_tree;
pub mod site;
pub mod sshd;
pub mod sysctl;
pub mod tree;
pub mod wait;
pub mod worker;

use std::cell::RefCell;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use controller::Controller;
pub use daemon::RsyncDaemon;
pub use gate::WorkerGate;
pub use site::Site;
pub use sshd::Sshd;
pub use sysctl::SysctlOverride;
pub use tree::{assert_in_sync, SyncCheck, TreeWriter};
pub use worker::{toml_str, Worker, WorkerConfig, FANOTIFY_FD, INOTIFY_FD, WATCHER_ENV};

/// Guards the machine-wide inotify sysctls (`/proc/sys/fs/inotify/*`). Every running worker
/// holds a shared hold; a test that changes a sysctl holds the write guard, so no other
/// worker calls `inotify_init` while the value is changed.
static INOTIFY_SYSCTLS: RwLock<()> = RwLock::new(());

thread_local! {
    /// This thread's read guard and how many `SharedHold`s use it. std's RwLock lets a
    /// waiting writer block new readers, so a thread must never take a second read guard
    /// while it holds one: holds on one thread share a single guard.
    static HELD: RefCell<(usize, Option<RwLockReadGuard<'static, ()>>)> =
        const { RefCell::new((0, None)) };
}

/// Shared hold on the inotify sysctls (one per running worker).
pub struct SharedHold(());

impl SharedHold {
    pub fn take() -> SharedHold {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if h.0 == 0 {
                // A test that panicked while holding a guard poisons the lock; the sysctl
                // itself is restored by `SysctlOverride`'s Drop, so poison means nothing.
                h.1 = Some(INOTIFY_SYSCTLS.read().unwrap_or_else(|e| e.into_inner()));
            }
            h.0 += 1;
        });
        SharedHold(())
    }
}

impl Drop for SharedHold {
    fn drop(&mut self) {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            h.0 -= 1;
            if h.0 == 0 {
                h.1 = None;
            }
        });
    }
}

/// Exclusive hold on the inotify sysctls (taken by a test that changes them). Panics if
/// this thread runs a worker (it would wait for itself forever).
pub fn sysctl_exclusive() -> RwLockWriteGuard<'static, ()> {
    let held = HELD.with(|h| h.borrow().0);
    assert_eq!(
        held, 0,
        "sysctl_exclusive() while this thread runs a worker"
    );
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

/// Several fixtures as one, for a failure message that names a fixture and its company.
pub struct Fixtures<'a, 'b>(pub &'a [&'b dyn Diagnose]);

impl Diagnose for Fixtures<'_, '_> {
    fn diagnose(&self) -> String {
        diagnostics(self.0)
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
    nix::unistd::geteuid().is_root()
}
