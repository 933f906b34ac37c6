//! The state directory (`state_dir`, default `/var/lib/syncd`): the one place that names
//! the files in it ([`StateDir`]'s methods, from [`crate::contract`]'s names), creates it
//! and its fail-log directory with their modes, and takes the worker's lock on it
//! ([`StateDir::lock`]).
//!
//! Invariants: the directory is created (when missing) with mode 0750, as the packages
//! install it, and an existing one is never re-moded; the fail-log directory is 0700,
//! enforced on every open (it holds paths of the source tree); one worker per directory,
//! by an advisory lock on `worker.lock` held for the worker's life, never unlinked.
//! Naming a file does no I/O: `syncd status`, `syncd check` and the settings name files
//! without creating anything. Must not: write a state file (each file's owner does that
//! through [`crate::durable`]).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::contract;

/// The state directory's mode when syncd creates it (the packages' `install -d -m 0750`).
pub const MODE: u32 = 0o750;
/// The fail-log directory's mode, enforced.
pub const FAILLOG_MODE: u32 = 0o700;

/// How long a new worker waits for a previous one (same state directory) to finish
/// draining before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// A state directory: its path and the names of the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
}

/// The worker's lock on its state directory, released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl StateDir {
    /// The state directory at `path`; nothing is created or checked.
    pub fn at(path: impl Into<PathBuf>) -> StateDir {
        StateDir { path: path.into() }
    }

    /// The state directory at `path`, created if it is missing: its parents as
    /// `mkdir -p` does, itself with mode [`MODE`]. An existing one is left as it is.
    pub fn create(path: impl Into<PathBuf>) -> anyhow::Result<StateDir> {
        let dir = StateDir::at(path);
        dir.ensure()?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The status file where the config does not set `status_file`.
    pub fn status_file(&self) -> PathBuf {
        self.path.join(contract::STATUS_FILE)
    }

    /// The directory of fail logs.
    pub fn faillog_dir(&self) -> PathBuf {
        self.path.join(contract::FAILLOG_DIR)
    }

    /// The sources' identities of the last run.
    pub fn sources_file(&self) -> PathBuf {
        self.path.join(contract::SOURCES_FILE)
    }

    /// The catch-up record (clean stop or running checkpoint).
    pub fn catchup_file(&self) -> PathBuf {
        self.path.join(contract::CATCHUP_FILE)
    }

    /// `syncd sync --full --force`'s request.
    pub fn force_file(&self) -> PathBuf {
        self.path.join(contract::FORCE_FILE)
    }

    /// The worker's lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.path.join(contract::WORKER_LOCK)
    }

    /// The controller's own state file.
    pub fn controller_file(&self) -> PathBuf {
        self.path.join(contract::CONTROLLER_FILE)
    }

    /// The worker's private copies of the password files (when it runs as `user`).
    pub fn secrets_dir(&self) -> PathBuf {
        self.path.join(contract::SECRETS_DIR)
    }

    /// Create the directory if it is missing (see [`StateDir::create`]).
    pub fn ensure(&self) -> anyhow::Result<()> {
        let dir = &self.path;
        let fix = "create it (mode 0750, owned by the user syncd runs as) or point \
                   state_dir (or --state-dir) at a writable directory";
        match fs::symlink_metadata(dir) {
            Ok(_) => {
                // A directory, or a symlink to one: as mkdir -p would accept it.
                if !dir.is_dir() {
                    bail!(
                        "the state directory {} is not a directory; move it aside or point \
                         state_dir (or --state-dir) elsewhere",
                        dir.display()
                    );
                }
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot inspect the state directory {}; {fix}",
                        dir.display()
                    )
                })
            }
        }
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).with_context(|| {
                format!(
                    "cannot create the state directory {} (its parent {}); {fix}",
                    dir.display(),
                    parent.display()
                )
            })?;
        }
        match fs::DirBuilder::new().mode(MODE).create(dir) {
            Ok(()) => {
                // Exactly MODE: mkdir applied the umask.
                fs::set_permissions(dir, fs::Permissions::from_mode(MODE)).with_context(|| {
                    format!(
                        "cannot set mode 0750 on the state directory {}",
                        dir.display()
                    )
                })
            }
            // Created meanwhile (the controller and its worker both ensure it).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
            Err(e) => Err(e).with_context(|| {
                format!("cannot create the state directory {}; {fix}", dir.display())
            }),
        }
    }

    /// The fail-log directory, created (and the state directory with it) if missing, with
    /// its mode set to exactly [`FAILLOG_MODE`] (umask may have narrowed it, an older
    /// directory may be wider).
    pub fn ensure_faillog_dir(&self) -> anyhow::Result<PathBuf> {
        self.ensure()?;
        let dir = self.faillog_dir();
        match fs::DirBuilder::new().mode(FAILLOG_MODE).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("failed to create fail log directory {}", dir.display())
                })
            }
        }
        let meta = fs::symlink_metadata(&dir)
            .with_context(|| format!("failed to inspect fail log directory {}", dir.display()))?;
        if !meta.is_dir() {
            bail!(
                "{} is not a directory; move it aside so syncd can keep its fail logs there",
                dir.display()
            );
        }
        if meta.permissions().mode() & 0o7777 != FAILLOG_MODE {
            fs::set_permissions(&dir, fs::Permissions::from_mode(FAILLOG_MODE)).with_context(
                || {
                    format!(
                        "failed to set mode 0700 on fail log directory {}",
                        dir.display()
                    )
                },
            )?;
        }
        Ok(dir)
    }

    /// Take `worker.lock` for the whole run, so two workers never share a fail log or a
    /// status file. A previous worker still draining (its controller was killed) is
    /// waited for, up to a minute.
    pub fn lock(&self) -> anyhow::Result<Lock> {
        self.lock_within(LOCK_WAIT)
    }

    fn lock_within(&self, wait: Duration) -> anyhow::Result<Lock> {
        let path = self.lock_file();
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("failed to open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => return Ok(Lock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("failed to lock {}", path.display()))
            }
        }
        log::warn!(
            "another syncd-worker holds {}; waiting up to {}s for it to finish",
            path.display(),
            wait.as_secs()
        );
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let r = file.lock().map(|()| file);
            let _ = tx.send(r);
        });
        match rx.recv_timeout(wait) {
            Ok(Ok(file)) => Ok(Lock { _file: file }),
            Ok(Err(e)) => Err(e).with_context(|| format!("failed to lock {}", path.display())),
            Err(_) => bail!(
                "another syncd-worker is still using the state directory {} (it holds {}); stop it, or give this one its own --state-dir",
                self.path.display(),
                path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn names_every_state_file_under_the_directory() {
        let d = StateDir::at("/var/lib/syncd");
        let cases = [
            (d.status_file(), "/var/lib/syncd/status.json"),
            (d.faillog_dir(), "/var/lib/syncd/faillog"),
            (d.sources_file(), "/var/lib/syncd/sources.json"),
            (d.catchup_file(), "/var/lib/syncd/catchup.json"),
            (d.force_file(), "/var/lib/syncd/force-full"),
            (d.lock_file(), "/var/lib/syncd/worker.lock"),
            (d.controller_file(), "/var/lib/syncd/controller.json"),
        ];
        for (got, want) in cases {
            assert_eq!(got, Path::new(want));
        }
        assert_eq!(d.path(), Path::new("/var/lib/syncd"));
    }

    #[test]
    fn naming_creates_nothing() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = StateDir::at(t.path().join("state"));
        let _ = (d.status_file(), d.faillog_dir(), d.lock_file());
        assert!(!d.path().exists());
    }

    #[test]
    fn created_with_mode_0750_and_parents_and_existing_ones_left_alone() {
        let t = tempfile::tempdir().expect("tempdir");
        let path = t.path().join("a/b/state");
        let d = StateDir::create(&path).expect("create");
        assert_eq!(d.path(), path);
        assert_eq!(mode(&path), MODE);
        // An existing directory keeps its mode; creating it again is fine.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        StateDir::create(&path).expect("again");
        assert_eq!(mode(&path), 0o755);
    }

    #[test]
    fn creation_error_names_the_directory_and_what_to_do() {
        let t = tempfile::tempdir().expect("tempdir");
        let file = t.path().join("file");
        fs::write(&file, "x").expect("write");
        // Its parent is a file: mkdir fails whoever runs it (root included).
        let path = file.join("state");
        let e = format!("{:#}", StateDir::create(&path).expect_err("cannot create"));
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("state_dir (or --state-dir)"), "{e}");
        // The path itself is a file.
        let e = format!("{:#}", StateDir::create(&file).expect_err("a file"));
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn faillog_dir_is_0700_even_when_it_was_wider() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = StateDir::at(t.path().join("state"));
        let dir = d.ensure_faillog_dir().expect("create");
        assert_eq!(dir, d.faillog_dir());
        assert_eq!(mode(&dir), FAILLOG_MODE);
        assert_eq!(mode(d.path()), MODE, "the state directory came with it");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        d.ensure_faillog_dir().expect("again");
        assert_eq!(mode(&dir), FAILLOG_MODE);
    }

    #[test]
    fn a_second_lock_waits_and_then_names_the_directory() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = StateDir::create(t.path()).expect("create");
        let held = d.lock().expect("first");
        let e = format!("{:#}", d.lock_within(Duration::ZERO).expect_err("held"));
        assert!(e.contains(&t.path().display().to_string()), "{e}");
        assert!(e.contains("worker.lock"), "{e}");
        drop(held);
        d.lock().expect("free again");
    }
}
