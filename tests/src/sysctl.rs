//! `SysctlOverride`: set one `/proc/sys/fs/inotify/*` (or `fanotify/*`) value for a test and put the old value
//! back on Drop (or earlier with `restore`). Only used while holding the exclusive guard from
//! `sysctl_exclusive()`, so no other worker calls `inotify_init` meanwhile.
//!
//! Also what a test needs to pick a value: [`read`] one of them, [`watches_in_use`].
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
    pub fn set(guard: &RwLockWriteGuard<'static, ()>, name: &str, value: u64) -> Self {
        SysctlOverride::set_in(guard, "inotify", name, value)
    }

    /// Set `/proc/sys/fs/fanotify/<name>` (read when a fanotify group is made) the same way.
    pub fn set_fanotify(guard: &RwLockWriteGuard<'static, ()>, name: &str, value: u64) -> Self {
        SysctlOverride::set_in(guard, "fanotify", name, value)
    }

    fn set_in(_guard: &RwLockWriteGuard<'static, ()>, api: &str, name: &str, value: u64) -> Self {
        assert!(
            crate::is_root(),
            "changing /proc/sys/fs/{api}/{name} needs root: run the e2e tests as root"
        );
        let path = PathBuf::from("/proc/sys/fs").join(api).join(name);
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

/// `/proc/sys/fs/inotify/<name>` now.
pub fn read(name: &str) -> u64 {
    let path = format!("/proc/sys/fs/inotify/{name}");
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path} is not a number: {e}"))
}

/// Watches in use on the machine now (every process is root's here), from fdinfo.
pub fn watches_in_use() -> u64 {
    let mut n = 0;
    for proc_dir in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(fds) = fs::read_dir(proc_dir.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(text) = fs::read_to_string(fd.path()) {
                n += text
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count() as u64;
            }
        }
    }
    n
}
