//! `SysctlOverride`: set one `/proc/sys/fs/inotify/*` value for a test and put the old value
//! back on Drop (or earlier with `restore`). Only used while holding the exclusive guard from
//! `sysctl_exclusive()`, so no other worker calls `inotify_init` meanwhile.
//!
//! Must not: leave a changed value behind, even when the test panics.

use std::fs;
use std::path::PathBuf;
use std::sync::RwLockWriteGuard;

pub struct SysctlOverride {
    path: PathBuf,
    old: Option<String>,
}

impl SysctlOverride {
    /// Set `/proc/sys/fs/inotify/<name>` to `value`. The guard proves the caller holds the
    /// exclusive sysctl lock.
    pub fn set(_guard: &RwLockWriteGuard<'static, ()>, name: &str, value: u64) -> Self {
        assert!(
            crate::is_root(),
            "changing /proc/sys/fs/inotify/{name} needs root: run the e2e tests as root"
        );
        let path = PathBuf::from("/proc/sys/fs/inotify").join(name);
        let old = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_string();
        fs::write(&path, format!("{value}\n"))
            .unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
        SysctlOverride {
            path,
            old: Some(old),
        }
    }

    /// Put the old value back now.
    pub fn restore(&mut self) {
        if let Some(old) = self.old.take() {
            if let Err(e) = fs::write(&self.path, format!("{old}\n")) {
                // Panicking in Drop during unwinding would abort; report loudly instead.
                eprintln!(
                    "FAILED to restore {} to {old}: {e}; restore it by hand",
                    self.path.display()
                );
            }
        }
    }
}

impl Drop for SysctlOverride {
    fn drop(&mut self) {
        self.restore();
    }
}
