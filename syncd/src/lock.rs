//! The pidfile and its lock. The lock (`flock` on `syncd.lock` beside the pidfile, taken
//! with std's `File::try_lock`) is the truth about "running": the kernel drops it when
//! the controller dies, however it dies, so a zombie or a reused pid can never look
//! alive. The lock file is never unlinked (that would race); the pidfile is written after
//! the lock is taken and removed by the holder on a clean exit, so a pidfile without a
//! held lock means "died" (LSB status 1).
//!
//! Only syncd's user may hold the lock: `flock` works on a read-only descriptor, so a
//! lock file anyone can read is one anyone can hold. The lock file is created 0600 and
//! opened with `O_NOFOLLOW | O_CLOEXEC`; an existing one of ours with a looser mode (an
//! older syncd made it 0644) is narrowed with `fchmod`, one that is a symlink, not a
//! regular file or another user's is refused with what to remove. The directory syncd
//! creates for them is 0755 (so any user's `status` can read the pidfile); one that
//! others could write in (not sticky) or another user owns is refused. And a held lock
//! is not believed blindly: "running" means the pidfile names a live syncd controller
//! of the lock file's owner that holds the lock through one of its descriptors (or, with
//! no pid written yet, that such a process is among the holders `/proc` shows). Anything
//! else is [`Held::Foreign`]: `status` says who holds it and that syncd is not running,
//! `start` refuses to start. A non-root user's `status` cannot open a 0600 lock file of
//! root's and judges by the pidfile and `/proc` alone.
//!
//! Durability: the pidfile is not the locked file here, so it is written like every
//! other state file ([`syncd_worker::durable::replace`], fsynced, once per start): after
//! a power cut it holds the dead controller's whole pid or is absent, never empty or
//! torn, and `status` says 1 ("dead, pidfile exists") as it should. The lock file holds
//! no data and is never replaced: a lock file lost in a power cut is simply created again
//! by the next start, so there is nothing in it to fsync.

use std::fs::{DirBuilder, File, OpenOptions, Permissions, TryLockError};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use serde::Serialize;
use syncd_worker::durable::{self, Flush};

use crate::procs::{self, Proc, Role};

/// The lock file's mode: only its owner may open it, so only its owner can hold it.
const LOCK_MODE: u32 = 0o600;
/// A directory syncd creates for the pidfile and lock: everyone may read the pidfile,
/// only its owner may add or replace files.
const DIR_MODE: u32 = 0o755;
/// How long a held lock with no holder to show (a start handing it over, a process that
/// just exited) is looked at again before it is reported as it is.
const SETTLE: Duration = Duration::from_millis(500);

/// What the lock and pidfile say, without taking anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// A syncd controller of ours holds the lock; the pid is the pidfile's, checked
    /// (None: held by a syncd that has not written its pid yet).
    Held { pid: Option<u32> },
    /// Something that is not a syncd of ours holds the lock (empty: a holder this user
    /// cannot see). `pid` is what a leftover pidfile says.
    Foreign {
        holders: Vec<Holder>,
        pidfile: bool,
        pid: Option<u32>,
    },
    /// Nobody holds the lock. `pid` is what a leftover pidfile says.
    Free { pidfile: bool, pid: Option<u32> },
}

/// A process holding the lock that is not a syncd of ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub pid: u32,
    pub user: String,
    pub comm: String,
}

impl Holder {
    fn of(pid: u32, p: &Proc) -> Holder {
        let comm = match p {
            Proc::Alive { comm, .. } => comm.clone(),
            _ => String::new(),
        };
        Holder {
            pid,
            user: procs::user_name(p.uid()),
            comm,
        }
    }
}

/// "lock /run/syncd/syncd.lock is held by another process (pid 7, user nobody,
/// flock), not a syncd" — and what to do about it.
pub fn foreign_holder_message(lockfile: &Path, holders: &[Holder]) -> String {
    let who: Vec<String> = holders
        .iter()
        .map(|h| format!("pid {}, user {}, {}", h.pid, h.user, h.comm))
        .collect();
    let pids: Vec<String> = holders.iter().map(|h| h.pid.to_string()).collect();
    match holders.len() {
        0 => format!(
            "lock {} is held by a process this user cannot see (run as root to find it: fuser -v {}), not by a syncd of its owner",
            lockfile.display(),
            lockfile.display()
        ),
        1 => format!(
            "lock {} is held by another process ({}), not a syncd; stop it (kill {}) if it should not hold syncd's lock",
            lockfile.display(),
            who[0],
            pids[0]
        ),
        _ => format!(
            "lock {} is held by other processes ({}), none of them a syncd; stop them (kill {}) if they should not hold syncd's lock",
            lockfile.display(),
            who.join("; "),
            pids.join(" ")
        ),
    }
}

/// Look at the lock without keeping it.
pub fn probe(pidfile: &Path, lockfile: &Path) -> anyhow::Result<LockState> {
    let deadline = Instant::now() + SETTLE;
    loop {
        match probe_once(pidfile, lockfile)? {
            LockState::Foreign { holders, .. }
                if holders.is_empty() && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            state => return Ok(state),
        }
    }
}

fn probe_once(pidfile: &Path, lockfile: &Path) -> anyhow::Result<LockState> {
    let pid = read_pid(pidfile);
    let file = match open_existing(lockfile) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LockState::Free {
                pidfile: pidfile.exists(),
                pid,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Ok(by_pidfile_alone(pidfile, lockfile))
        }
        Err(e) => return Err(open_error(e, lockfile)),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(LockState::Free {
            pidfile: pidfile.exists(),
            pid,
        }),
        Err(TryLockError::WouldBlock) => Ok(match who_holds(&file, pidfile)? {
            Held::Syncd { pid } => LockState::Held { pid },
            Held::Foreign(holders) => LockState::Foreign {
                holders,
                pidfile: pidfile.exists(),
                pid: read_pid(pidfile),
            },
        }),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("failed to test the lock on {}", lockfile.display()))
        }
    }
}

/// This user may not open the lock file (0600, root's): running means the pidfile names
/// a live syncd controller of the lock file's owner.
fn by_pidfile_alone(pidfile: &Path, lockfile: &Path) -> LockState {
    let owner = std::fs::symlink_metadata(lockfile)
        .ok()
        .and_then(|m| trusted_owner(m.uid()));
    match read_pid(pidfile) {
        Some(pid) if owner.is_some_and(|o| Proc::of(pid).is_of(Role::Controller, o)) => {
            LockState::Held { pid: Some(pid) }
        }
        pid => LockState::Free {
            pidfile: pidfile.exists(),
            pid,
        },
    }
}

/// The lock is held by someone else than this open file: a syncd of ours, or not?
fn who_holds(file: &File, pidfile: &Path) -> anyhow::Result<Held> {
    let meta = file.metadata().context("failed to stat the lock file")?;
    let (dev, ino) = (meta.dev(), meta.ino());
    let owner = trusted_owner(meta.uid());
    if let (Some(uid), Some(pid)) = (owner, read_pid(pidfile)) {
        if Proc::of(pid).is_of(Role::Controller, uid)
            && procs::holds_flock(pid, dev, ino) != Some(false)
        {
            return Ok(Held::Syncd { pid: Some(pid) });
        }
    }
    let holders: Vec<(u32, Proc)> = procs::flock_holders(dev, ino)
        .into_iter()
        .map(|pid| (pid, Proc::of(pid)))
        .collect();
    Ok(judge(owner, &holders))
}

/// Pure: with the pidfile naming no syncd that holds the lock, the holders `/proc`
/// shows decide. A syncd controller of `owner` among them is one starting (its pid not
/// written yet, or a `syncd start` handing the lock over); else they are strangers.
/// `owner`: the lock file's owner when it is this user or root (None: another user's
/// lock file, held by no syncd of ours whatever its holders are called).
fn judge(owner: Option<u32>, holders: &[(u32, Proc)]) -> Held {
    if owner.is_some_and(|uid| holders.iter().any(|(_, p)| p.is_of(Role::Controller, uid))) {
        return Held::Syncd { pid: None };
    }
    Held::Foreign(
        holders
            .iter()
            .filter(|(_, p)| p.is_alive())
            .map(|(pid, p)| Holder::of(*pid, p))
            .collect(),
    )
}

/// A lock file's or pidfile's owner that this process may believe: itself or root.
fn trusted_owner(uid: u32) -> Option<u32> {
    let me = nix::unistd::geteuid().as_raw();
    (uid == me || uid == 0).then_some(uid)
}

/// Open an existing lock file to test or wait on it: read-only, never through a symlink.
fn open_existing(lockfile: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(lockfile)
}

/// Open (creating it 0600) the lock file to take the lock; see the module doc for what
/// is refused and what is fixed.
fn open_to_lock(lockfile: &Path) -> anyhow::Result<File> {
    if let Some(dir) = lockfile.parent() {
        ensure_dir(dir)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(LOCK_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(lockfile)
        .map_err(|e| open_error(e, lockfile))?;
    let meta = file
        .metadata()
        .with_context(|| format!("failed to stat lock file {}", lockfile.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.file_type().is_file() {
        anyhow::bail!(
            "lock file {} is not a regular file; remove it (rm -r {}) and start syncd again",
            lockfile.display(),
            lockfile.display()
        );
    }
    if meta.uid() != me {
        anyhow::bail!(
            "lock file {} belongs to {}, not to {} that syncd runs as: another user may have made it to hold syncd's lock. Remove it (rm {}) and start syncd again",
            lockfile.display(),
            procs::user_name(Some(meta.uid())),
            procs::user_name(Some(me)),
            lockfile.display()
        );
    }
    let mode = meta.mode() & 0o7777;
    if mode != LOCK_MODE {
        file.set_permissions(Permissions::from_mode(LOCK_MODE))
            .with_context(|| format!("failed to chmod 600 lock file {}", lockfile.display()))?;
        log::warn!(
            "lock file {} had mode {mode:04o} (a process of another user could hold it); now 0600",
            lockfile.display()
        );
    }
    Ok(file)
}

/// The directory of the pidfile and lock: created 0755 (less if the umask says so), and
/// refused when another user could replace the lock file in it.
fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .with_context(|| format!("failed to create directory {}", dir.display()))?;
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("failed to stat directory {}", dir.display()))?;
    if trusted_owner(meta.uid()).is_none() {
        anyhow::bail!(
            "directory {} (of the pidfile and lock) belongs to {}, who could replace syncd's lock file in it; use a directory of {}'s or root's (--pidfile, or pid_file in the config)",
            dir.display(),
            procs::user_name(Some(meta.uid())),
            procs::user_name(Some(nix::unistd::geteuid().as_raw()))
        );
    }
    let mode = meta.mode();
    let others_write = mode & 0o002 != 0 || (mode & 0o020 != 0 && meta.gid() != 0);
    if others_write && mode & 0o1000 == 0 {
        anyhow::bail!(
            "directory {} (of the pidfile and lock) has mode {:04o}: other users could replace syncd's lock file in it. Fix it with: chmod go-w {}",
            dir.display(),
            mode & 0o7777,
            dir.display()
        );
    }
    Ok(())
}

fn open_error(e: std::io::Error, lockfile: &Path) -> anyhow::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        anyhow::anyhow!(
            "lock file {} is a symbolic link; syncd does not follow it (it would lock, or create, whatever it points to). Remove it (rm {}) and start syncd again",
            lockfile.display(),
            lockfile.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("failed to open lock file {}", lockfile.display()))
    }
}

/// The pid in a pidfile, if it holds one and may be believed (see [`pidfile_trouble`]).
pub fn read_pid(pidfile: &Path) -> Option<u32> {
    read_trusted(pidfile)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&p| p > 0)
}

/// Why an existing pidfile is not believed (a symlink, not a regular file, another
/// user's, writable by others), if it is not.
pub fn pidfile_trouble(pidfile: &Path) -> Option<String> {
    match read_trusted(pidfile) {
        Err(Some(why)) => Some(why),
        _ => None,
    }
}

/// The text of a pidfile this process may believe. `Err(None)`: missing or unreadable;
/// `Err(Some(why))`: there, but not to be believed.
fn read_trusted(pidfile: &Path) -> Result<String, Option<String>> {
    let mut file = match open_existing(pidfile) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Some("it is a symbolic link".into()))
        }
        Err(_) => return Err(None),
    };
    let meta = file.metadata().map_err(|_| None)?;
    if !meta.file_type().is_file() {
        return Err(Some("it is not a regular file".into()));
    }
    if trusted_owner(meta.uid()).is_none() {
        return Err(Some(format!(
            "it belongs to {}",
            procs::user_name(Some(meta.uid()))
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Some(format!(
            "others may write it (mode {:04o})",
            meta.mode() & 0o7777
        )));
    }
    let mut text = String::new();
    // A pid is a few bytes; a huge file is not a pidfile.
    (&mut file)
        .take(64)
        .read_to_string(&mut text)
        .map_err(|_| None)?;
    Ok(text)
}

/// The lock, held. Dropping it (or the process dying) releases it.
#[derive(Debug)]
pub struct PidLock {
    file: File,
    pidfile: PathBuf,
}

/// The lock is held by another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// A syncd controller of ours: the pidfile's pid, checked (None: one starting).
    Syncd { pid: Option<u32> },
    /// Not a syncd of ours (empty: a holder this user cannot see).
    Foreign(Vec<Holder>),
}

impl Held {
    /// Worth looking again shortly: a syncd starting, or a holder that was not seen.
    fn unsettled(&self) -> bool {
        match self {
            Held::Syncd { pid } => pid.is_none(),
            Held::Foreign(holders) => holders.is_empty(),
        }
    }
}

impl PidLock {
    /// Take the lock (creating the directory and lock file as needed) without waiting for
    /// a holder. A `status` probing at this very moment holds a shared lock for a few
    /// microseconds, a starting syncd has not written its pid yet: a holder that is not
    /// settled ([`Held::unsettled`]) is looked at again for a moment.
    pub fn acquire(pidfile: &Path, lockfile: &Path) -> anyhow::Result<Result<PidLock, Held>> {
        let deadline = Instant::now() + SETTLE;
        loop {
            match PidLock::try_acquire(pidfile, lockfile)? {
                Err(held) if held.unsettled() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => return Ok(r),
            }
        }
    }

    fn try_acquire(pidfile: &Path, lockfile: &Path) -> anyhow::Result<Result<PidLock, Held>> {
        let file = open_to_lock(lockfile)?;
        match file.try_lock() {
            Ok(()) => Ok(Ok(PidLock {
                file,
                pidfile: pidfile.to_path_buf(),
            })),
            Err(TryLockError::WouldBlock) => Ok(Err(who_holds(&file, pidfile)?)),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("failed to lock {}", lockfile.display()))
            }
        }
    }

    /// Wait up to `timeout` for the lock (e.g. while a stopping daemon drains); None if
    /// it is still held then.
    pub fn acquire_within(
        pidfile: &Path,
        lockfile: &Path,
        timeout: Duration,
    ) -> anyhow::Result<Option<PidLock>> {
        if let Ok(l) = PidLock::acquire(pidfile, lockfile)? {
            return Ok(Some(l));
        }
        let file = open_existing(lockfile).map_err(|e| open_error(e, lockfile))?;
        let (tx, rx) = std::sync::mpsc::channel();
        // The blocking flock runs on a thread; if it outlives the timeout it takes the
        // lock later and drops it at once when its send fails.
        std::thread::spawn(move || {
            let r = file.lock().map(|()| file);
            let _ = tx.send(r);
        });
        match rx.recv_timeout(timeout) {
            Ok(Ok(file)) => Ok(Some(PidLock {
                file,
                pidfile: pidfile.to_path_buf(),
            })),
            Ok(Err(e)) => Err(e).with_context(|| format!("failed to lock {}", lockfile.display())),
            Err(_) => Ok(None),
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

    /// The pids of a foreign holders' list.
    fn pids(holders: &[Holder]) -> Vec<u32> {
        holders.iter().map(|h| h.pid).collect()
    }

    #[test]
    fn a_lock_held_by_what_is_not_a_syncd_is_seen_as_foreign_and_released_on_drop() {
        // The holder is this test process: not called syncd, so not a syncd, whatever
        // the pidfile says.
        let d = tempfile::tempdir().expect("tempdir");
        let (p, l) = paths(d.path());
        let me = std::process::id();
        let lock = PidLock::acquire(&p, &l).expect("io").expect("free");
        lock.write_pid(me).expect("write");
        match probe(&p, &l).expect("probe") {
            LockState::Foreign {
                holders,
                pidfile: true,
                pid: Some(pid),
            } if pid == me => assert_eq!(pids(&holders), vec![me]),
            other => panic!("{other:?}"),
        }
        // A second acquire (another open file description) fails while held.
        match PidLock::acquire(&p, &l).expect("io").expect_err("held") {
            Held::Foreign(holders) => assert_eq!(pids(&holders), vec![me]),
            other => panic!("{other:?}"),
        }
        drop(lock);
        assert_eq!(
            probe(&p, &l).expect("probe"),
            LockState::Free {
                pidfile: true,
                pid: Some(me)
            }
        );
    }

    #[test]
    fn judge_table() {
        let alive = |pid: u32, comm: &str, uid: u32| {
            (
                pid,
                Proc::Alive {
                    comm: comm.into(),
                    exe: None,
                    uid: Some(uid),
                },
            )
        };
        let syncd_root = alive(10, "syncd", 0);
        let syncd_nobody = alive(11, "syncd", 65534);
        let flock_root = alive(12, "flock", 0);
        // The lock file's trusted owner, the holders, the verdict (None: a syncd starting,
        // `Held::Syncd { pid: None }`; Some: the foreign pids) and why.
        type Row = (
            Option<u32>,
            Vec<(u32, Proc)>,
            Option<Vec<u32>>,
            &'static str,
        );
        let table: Vec<Row> = vec![
            (
                Some(0),
                vec![syncd_root.clone()],
                None,
                "a syncd of root's, pid not written yet",
            ),
            (
                Some(0),
                vec![flock_root.clone(), syncd_root.clone()],
                None,
                "a start handing the lock over, beside a child that inherited it",
            ),
            (
                Some(0),
                vec![syncd_nobody.clone()],
                Some(vec![11]),
                "called syncd, run by nobody",
            ),
            (
                Some(0),
                vec![flock_root.clone()],
                Some(vec![12]),
                "not a syncd",
            ),
            (
                None,
                vec![syncd_root],
                Some(vec![10]),
                "another user's lock file",
            ),
            (
                Some(65534),
                vec![syncd_nobody],
                None,
                "a syncd of the lock file's owner (root's status on a user's own syncd)",
            ),
            (
                Some(0),
                vec![(13, Proc::Zombie)],
                Some(vec![]),
                "a zombie is no holder to name",
            ),
            (Some(0), vec![], Some(vec![]), "nobody to be seen"),
        ];
        for (owner, holders, want, why) in table {
            let got = match judge(owner, &holders) {
                Held::Syncd { pid: None } => None,
                Held::Foreign(h) => Some(pids(&h)),
                other => panic!("{why}: {other:?}"),
            };
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn the_message_names_the_holder_and_what_to_do() {
        let l = Path::new("/run/syncd/syncd.lock");
        let h = |pid| Holder {
            pid,
            user: "nobody".into(),
            comm: "flock".into(),
        };
        let one = foreign_holder_message(l, &[h(7)]);
        assert!(
            one.contains("held by another process (pid 7, user nobody, flock), not a syncd")
                && one.contains("kill 7"),
            "{one}"
        );
        let two = foreign_holder_message(l, &[h(7), h(8)]);
        assert!(
            two.contains("none of them a syncd") && two.contains("kill 7 8"),
            "{two}"
        );
        let none = foreign_holder_message(l, &[]);
        assert!(
            none.contains("cannot see") && none.contains("fuser -v"),
            "{none}"
        );
    }

    #[test]
    fn the_lock_file_is_made_0600_and_a_looser_one_of_ours_narrowed() {
        let d = tempfile::tempdir().expect("tempdir");
        let (p, l) = paths(d.path());
        let lock = PidLock::acquire(&p, &l).expect("io").expect("free");
        let mode = |path: &Path| std::fs::metadata(path).expect("stat").mode() & 0o7777;
        assert_eq!(mode(&l), 0o600);
        assert_eq!(mode(l.parent().expect("dir")), 0o755 & !current_umask());
        drop(lock);
        // An older syncd made it 0644: anyone could open it and hold the lock.
        std::fs::set_permissions(&l, Permissions::from_mode(0o644)).expect("chmod");
        let lock = PidLock::acquire(&p, &l).expect("io").expect("free");
        assert_eq!(mode(&l), 0o600);
        drop(lock);
    }

    fn current_umask() -> u32 {
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        nix::sys::stat::umask(old);
        old.bits()
    }

    #[test]
    fn a_symlinked_lock_file_is_refused_and_its_target_left_alone() {
        let d = tempfile::tempdir().expect("tempdir");
        let (p, l) = paths(d.path());
        std::fs::create_dir(l.parent().expect("dir")).expect("mkdir");
        let target = d.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, &l).expect("symlink");
        let e = PidLock::acquire(&p, &l).expect_err("refused");
        assert!(
            format!("{e:#}").contains("is a symbolic link") && format!("{e:#}").contains("rm "),
            "{e:#}"
        );
        assert!(!target.exists(), "created through the link");
        let e = probe(&p, &l).expect_err("status refuses it too");
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        // A symlinked pidfile is not believed either.
        std::fs::write(&target, "1\n").expect("write");
        std::os::unix::fs::symlink(&target, &p).expect("symlink");
        assert_eq!(read_pid(&p), None);
        assert_eq!(
            pidfile_trouble(&p).as_deref(),
            Some("it is a symbolic link")
        );
    }

    #[test]
    fn a_pidfile_others_may_write_is_not_believed() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.pid");
        std::fs::write(&p, "123\n").expect("write");
        std::fs::set_permissions(&p, Permissions::from_mode(0o666)).expect("chmod");
        assert_eq!(read_pid(&p), None);
        assert!(
            pidfile_trouble(&p).is_some_and(|t| t.contains("0666")),
            "{:?}",
            pidfile_trouble(&p)
        );
        std::fs::set_permissions(&p, Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(read_pid(&p), Some(123));
        assert_eq!(pidfile_trouble(&p), None);
    }

    #[test]
    fn a_directory_others_may_write_in_is_refused_unless_sticky() {
        let d = tempfile::tempdir().expect("tempdir");
        let (p, l) = paths(d.path());
        let dir = l.parent().expect("dir");
        std::fs::create_dir(dir).expect("mkdir");
        std::fs::set_permissions(dir, Permissions::from_mode(0o777)).expect("chmod");
        let e = PidLock::acquire(&p, &l).expect_err("refused");
        assert!(format!("{e:#}").contains("chmod go-w"), "{e:#}");
        assert!(!l.exists());
        // Sticky like /tmp: others cannot replace our file.
        std::fs::set_permissions(dir, Permissions::from_mode(0o1777)).expect("chmod");
        let lock = PidLock::acquire(&p, &l).expect("io").expect("free");
        drop(lock);
    }

    #[test]
    fn another_users_lock_file_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            return; // only root can give a file away; the e2e tests run as root
        }
        let d = tempfile::tempdir().expect("tempdir");
        let (p, l) = paths(d.path());
        std::fs::create_dir(l.parent().expect("dir")).expect("mkdir");
        std::fs::write(&l, "").expect("create");
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(&l, Some(nobody), None).expect("chown");
        let e = PidLock::acquire(&p, &l).expect_err("refused");
        let text = format!("{e:#}");
        assert!(
            text.contains("belongs to") && text.contains("rm "),
            "{text}"
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
        let short = PidLock::acquire_within(&p, &l, Duration::from_millis(50)).expect("io");
        assert!(short.is_none());
        let t = std::thread::spawn(move || {
            PidLock::acquire_within(&p, &l, Duration::from_secs(10))
                .expect("io")
                .is_some()
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
        // Held (by this test process, which is no syncd).
        assert!(
            matches!(
                probe(&pidfile, &lockfile).expect("probe"),
                LockState::Foreign { .. }
            ),
            "held"
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
