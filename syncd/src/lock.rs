//! The pidfile and its lock. The lock (`flock` on `syncd.lock` beside the pidfile, taken
//! with std's `File::try_lock`) is the truth about "running": the kernel drops it when
//! the controller dies, however it dies, so a zombie or a reused pid can never look
//! alive. The lock file is never unlinked (that would race); the pidfile is written after
//! the lock is taken and removed by the holder on a clean exit, so a pidfile without a
//! held lock means "died" (LSB status 1).
//!
//! Durability: the pidfile is not the locked file here, so it is written like every
//! other state file ([`syncd_worker::durable::replace`], fsynced, once per start): after
//! a power cut it holds the dead controller's whole pid or is absent, never empty or
//! torn, and `status` says 1 ("dead, pidfile exists") as it should. The lock file holds
//! no data and is never replaced: a lock file lost in a power cut is simply created again
//! by the next start, so there is nothing in it to fsync.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use syncd_worker::durable::{self, Flush};

/// What the lock and pidfile say, without taking anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// Someone holds the lock; the pid is the pidfile's (None if missing or unreadable).
    Held { pid: Option<u32> },
    /// Nobody holds the lock. `pid` is what a leftover pidfile says.
    Free { pidfile: bool, pid: Option<u32> },
}

/// Look at the lock without keeping it.
pub fn probe(pidfile: &Path, lockfile: &Path) -> anyhow::Result<LockState> {
    let pid = read_pid(pidfile);
    let file = match File::open(lockfile) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LockState::Free {
                pidfile: pidfile.exists(),
                pid,
            })
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("failed to open lock file {}", lockfile.display()))
        }
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(LockState::Free {
            pidfile: pidfile.exists(),
            pid,
        }),
        Err(TryLockError::WouldBlock) => Ok(LockState::Held {
            // The holder writes the pid right after locking: read again now.
            pid: read_pid(pidfile),
        }),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("failed to test the lock on {}", lockfile.display()))
        }
    }
}

/// The pid in a pidfile, if it holds one.
pub fn read_pid(pidfile: &Path) -> Option<u32> {
    std::fs::read_to_string(pidfile)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&p| p > 0)
}

/// The lock, held. Dropping it (or the process dying) releases it.
#[derive(Debug)]
pub struct PidLock {
    file: File,
    pidfile: PathBuf,
}

/// The lock is held by another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub pid: Option<u32>,
}

impl PidLock {
    /// Take the lock (creating the directory and lock file as needed) without waiting for
    /// a holder. A `status` probing at this very moment holds a shared lock for a few
    /// microseconds: a held lock without a pid in the pidfile is tried again briefly.
    pub fn acquire(pidfile: &Path, lockfile: &Path) -> anyhow::Result<Result<PidLock, Held>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        loop {
            match PidLock::try_acquire(pidfile, lockfile)? {
                Err(Held { pid: None }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => return Ok(r),
            }
        }
    }

    fn try_acquire(pidfile: &Path, lockfile: &Path) -> anyhow::Result<Result<PidLock, Held>> {
        if let Some(dir) = lockfile.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create directory {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lockfile)
            .with_context(|| format!("failed to open lock file {}", lockfile.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Ok(PidLock {
                file,
                pidfile: pidfile.to_path_buf(),
            })),
            Err(TryLockError::WouldBlock) => Ok(Err(Held {
                pid: read_pid(pidfile),
            })),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("failed to lock {}", lockfile.display()))
            }
        }
    }

    /// Wait up to `timeout` for the lock (e.g. while a stopping daemon drains).
    pub fn acquire_within(
        pidfile: &Path,
        lockfile: &Path,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Result<PidLock, Held>> {
        if let Ok(l) = PidLock::acquire(pidfile, lockfile)? {
            return Ok(Ok(l));
        }
        let file = File::open(lockfile)
            .with_context(|| format!("failed to open lock file {}", lockfile.display()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        // The blocking flock runs on a thread; if it outlives the timeout it takes the
        // lock later and drops it at once when its send fails.
        std::thread::spawn(move || {
            let r = file.lock().map(|()| file);
            let _ = tx.send(r);
        });
        match rx.recv_timeout(timeout) {
            Ok(Ok(file)) => Ok(Ok(PidLock {
                file,
                pidfile: pidfile.to_path_buf(),
            })),
            Ok(Err(e)) => Err(e).with_context(|| format!("failed to lock {}", lockfile.display())),
            Err(_) => Ok(Err(Held {
                pid: read_pid(pidfile),
            })),
        }
    }

    /// Adopt a lock inherited from `syncd start` on file descriptor `fd`. The descriptor
    /// is marked close-on-exec so the worker does not inherit it.
    pub fn from_inherited_fd(fd: RawFd, pidfile: &Path) -> anyhow::Result<PidLock> {
        // The kernel lists each open descriptor of ours there.
        if fd < 0 || std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
            anyhow::bail!("--lock-fd {fd} is not an open file descriptor");
        }
        // SAFETY: fd is open (checked above) and handed to us by `syncd start` for us to
        // own; nothing else in this process uses it. No safe way exists to adopt a
        // descriptor by number.
        let file = unsafe { File::from_raw_fd(fd) };
        fcntl(&file, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .context("failed to mark the lock descriptor close-on-exec")?;
        // Make sure it really is locked (by our open file description).
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                anyhow::bail!("the inherited lock on fd {fd} is not ours; another syncd runs")
            }
            Err(TryLockError::Error(e)) => return Err(e).context("failed to check the lock"),
        }
        Ok(PidLock {
            file,
            pidfile: pidfile.to_path_buf(),
        })
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Write `pid` to the pidfile (durably, mode 644: see the module doc).
    pub fn write_pid(&self, pid: u32) -> anyhow::Result<()> {
        durable::replace(
            &self.pidfile,
            format!("{pid}\n").as_bytes(),
            0o644,
            Flush::Durable,
        )
        .with_context(|| format!("failed to write pidfile {}", self.pidfile.display()))
    }

    /// Remove the pidfile (a clean exit, or a stale one found at start). Missing is fine.
    pub fn remove_pidfile(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(&self.pidfile) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                Err(e).with_context(|| format!("failed to remove {}", self.pidfile.display()))
            }
        }
    }

    pub fn pidfile(&self) -> &Path {
        &self.pidfile
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = self.file.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join("run/syncd.pid"), dir.join("run/syncd.lock"))
    }

    #[test]
    fn nothing_there_is_free_without_pidfile() {
        let d = tempfile::tempdir().expect("tempdir");
        let (p, l) = paths(d.path());
        assert_eq!(
            probe(&p, &l).expect("probe"),
            LockState::Free {
                pidfile: false,
                pid: None
            }
        );
    }

    #[test]
    fn held_lock_is_seen_and_released_on_drop() {
        let d = tempfile::tempdir().expect("tempdir");
        let (p, l) = paths(d.path());
        let lock = PidLock::acquire(&p, &l).expect("io").expect("free");
        lock.write_pid(4242).expect("write");
        assert_eq!(
            probe(&p, &l).expect("probe"),
            LockState::Held { pid: Some(4242) }
        );
        // A second acquire (another open file description) fails while held.
        assert_eq!(
            PidLock::acquire(&p, &l).expect("io").expect_err("held"),
            Held { pid: Some(4242) }
        );
        drop(lock);
        assert_eq!(
            probe(&p, &l).expect("probe"),
            LockState::Free {
                pidfile: true,
                pid: Some(4242)
            }
        );
    }

    #[test]
    fn clean_exit_removes_the_pidfile_but_not_the_lock_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let (p, l) = paths(d.path());
        let lock = PidLock::acquire(&p, &l).expect("io").expect("free");
        lock.write_pid(7).expect("write");
        lock.remove_pidfile().expect("remove");
        lock.remove_pidfile().expect("removing twice is fine");
        drop(lock);
        assert!(l.exists());
        assert_eq!(
            probe(&p, &l).expect("probe"),
            LockState::Free {
                pidfile: false,
                pid: None
            }
        );
    }

    #[test]
    fn acquire_within_waits_for_the_holder() {
        let d = tempfile::tempdir().expect("tempdir");
        let (p, l) = paths(d.path());
        let lock = PidLock::acquire(&p, &l).expect("io").expect("free");
        let short =
            PidLock::acquire_within(&p, &l, std::time::Duration::from_millis(50)).expect("io");
        assert!(short.is_err());
        let t = std::thread::spawn(move || {
            PidLock::acquire_within(&p, &l, std::time::Duration::from_secs(10))
                .expect("io")
                .is_ok()
        });
        drop(lock);
        assert!(t.join().expect("thread"));
    }

    #[test]
    fn inherited_lock_is_adopted_and_closed_on_exec() {
        use std::os::fd::IntoRawFd;
        let dir = tempfile::tempdir().expect("tempdir");
        let (pidfile, lockfile) = paths(dir.path());
        std::fs::create_dir(dir.path().join("run")).expect("mkdir");
        let file = File::create(&lockfile).expect("create");
        file.try_lock().expect("lock");
        // As `syncd start` hands it over: inherited across exec, so not close-on-exec.
        fcntl(&file, FcntlArg::F_SETFD(FdFlag::empty())).expect("F_SETFD");
        let fd = file.into_raw_fd();
        let lock = PidLock::from_inherited_fd(fd, &pidfile).expect("adopt");
        let flags = fcntl(&lock.file, FcntlArg::F_GETFD).expect("F_GETFD");
        assert!(FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC));
        assert_eq!(
            probe(&pidfile, &lockfile).expect("probe"),
            LockState::Held { pid: None }
        );
        drop(lock);
        // A number that names no open descriptor is refused before it is adopted.
        for bad in [-1, 1 << 20] {
            let e = PidLock::from_inherited_fd(bad, &pidfile).expect_err("not open");
            assert!(e.to_string().contains("not an open file descriptor"), "{e}");
        }
    }

    #[test]
    fn garbage_pidfile_reads_as_none() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.pid");
        for text in ["", "abc", "0", "-5", "12 13"] {
            std::fs::write(&p, text).expect("write");
            assert_eq!(read_pid(&p), None, "{text:?}");
        }
        std::fs::write(&p, "123\n").expect("write");
        assert_eq!(read_pid(&p), Some(123));
    }
}
