//! Who a pid is, from `/proc`: gone, a zombie (dead, not yet reaped: counts as dead), or
//! alive with its command name, executable and user; and who holds a `flock` on a file
//! (`/proc/PID/fdinfo` lists the locks held through each descriptor). `stop` signals
//! only a pid this module says is a syncd process; a pidfile's number alone is never
//! trusted, nor a name (anyone can run a program called `syncd`): the user counts too.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// What `/proc/<pid>` says about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proc {
    /// No such process.
    Gone,
    /// Exited, waiting to be reaped: dead for every purpose here.
    Zombie,
    Alive {
        /// `/proc/<pid>/comm` (the kernel's 15-character name).
        comm: String,
        /// `/proc/<pid>/exe`, without a trailing " (deleted)"; None if unreadable.
        exe: Option<PathBuf>,
        /// The effective user id (`Uid:` in `/proc/<pid>/status`); None if unreadable.
        uid: Option<u32>,
    },
}

/// The two kinds of syncd process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Controller,
    Worker,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Controller => "syncd",
            Role::Worker => "syncd-worker",
        }
    }
}

impl Proc {
    /// Inspect `pid` under `/proc`.
    pub fn of(pid: u32) -> Proc {
        Proc::under(Path::new("/proc"), pid)
    }

    fn under(proc_root: &Path, pid: u32) -> Proc {
        if pid == 0 {
            return Proc::Gone;
        }
        let dir = proc_root.join(pid.to_string());
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            return Proc::Gone;
        };
        if is_dead_state(&stat) {
            return Proc::Zombie;
        }
        let comm = std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim_end_matches('\n').to_string())
            .unwrap_or_default();
        let exe = std::fs::read_link(dir.join("exe")).ok().map(|p| {
            let s = p.to_string_lossy();
            match s.strip_suffix(" (deleted)") {
                Some(s) => PathBuf::from(s),
                None => p,
            }
        });
        let uid = std::fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|s| effective_uid(&s));
        Proc::Alive { comm, exe, uid }
    }

    pub fn is_alive(&self) -> bool {
        matches!(self, Proc::Alive { .. })
    }

    /// Alive and a syncd process of `role`: its command name or its executable's file
    /// name is `syncd` / `syncd-worker`.
    pub fn is(&self, role: Role) -> bool {
        match self {
            Proc::Alive { comm, exe, .. } => {
                comm == role.name()
                    || exe
                        .as_deref()
                        .and_then(Path::file_name)
                        .is_some_and(|n| n == role.name())
            }
            _ => false,
        }
    }

    /// A syncd process of `role` running as user `uid`.
    pub fn is_of(&self, role: Role, uid: u32) -> bool {
        self.is(role) && matches!(self, Proc::Alive { uid: Some(u), .. } if *u == uid)
    }

    /// The effective user id, if alive and known.
    pub fn uid(&self) -> Option<u32> {
        match self {
            Proc::Alive { uid, .. } => *uid,
            _ => None,
        }
    }

    /// For messages: "pid 42 (sleep)".
    pub fn describe(&self, pid: u32) -> String {
        match self {
            Proc::Gone => format!("pid {pid} (not running)"),
            Proc::Zombie => format!("pid {pid} (exited, not yet reaped)"),
            Proc::Alive { comm, .. } => format!("pid {pid} ({comm})"),
        }
    }
}

/// `/proc/<pid>/stat` is `pid (comm) S ...`; comm may contain spaces and parentheses, so
/// the state is the first field after the last `)`. Z = zombie, X = dead.
fn is_dead_state(stat: &str) -> bool {
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, Some("Z") | Some("X") | Some("x"))
}

/// The effective uid from `/proc/<pid>/status` text (`Uid:\treal\teffective\t...`).
fn effective_uid(status: &str) -> Option<u32> {
    status_id(status, "Uid:", 1)
}

/// The real uid and gid of a running process (`/proc/PID/status`); None once it is gone.
pub fn real_ids(pid: u32) -> Option<(u32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    real_ids_in(&status)
}

/// The real uid and gid from `/proc/<pid>/status` text.
fn real_ids_in(status: &str) -> Option<(u32, u32)> {
    Some((status_id(status, "Uid:", 0)?, status_id(status, "Gid:", 0)?))
}

/// The `nth` id of the `key` line (`Uid:`, `Gid:`: real, effective, saved, file system).
fn status_id(status: &str, key: &str, nth: usize) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .nth(nth)?
        .parse()
        .ok()
}

/// A user for messages: its name, else "uid N".
pub fn user_name(uid: Option<u32>) -> String {
    let Some(uid) = uid else {
        return "unknown user".to_string();
    };
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => format!("uid {uid}"),
    }
}

/// Does `pid` hold a `flock` on the file `(dev, ino)` through one of its descriptors?
/// None: its descriptors cannot be read (another user's process, as non-root).
pub fn holds_flock(pid: u32, dev: u64, ino: u64) -> Option<bool> {
    holds_flock_under(Path::new("/proc"), pid, dev, ino)
}

fn holds_flock_under(proc_root: &Path, pid: u32, dev: u64, ino: u64) -> Option<bool> {
    let dir = proc_root.join(pid.to_string());
    let fds = match std::fs::read_dir(dir.join("fd")) {
        Ok(fds) => fds,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return None,
        Err(_) => return Some(false),
    };
    let held = fds.flatten().any(|fd| {
        // The magic link leads to the open file itself, wherever its name is now.
        let same = std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino);
        same && std::fs::read_to_string(dir.join("fdinfo").join(fd.file_name()))
            .is_ok_and(|info| fdinfo_has_flock(&info))
    });
    Some(held)
}

/// `/proc/PID/fdinfo/N` lists each lock held through that open file as
/// `lock:\t1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF`.
fn fdinfo_has_flock(info: &str) -> bool {
    info.lines().any(|l| {
        l.strip_prefix("lock:")
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("FLOCK"))
    })
}

/// Every live process holding a `flock` on the file `(dev, ino)`: a walk of `/proc`, for
/// the rare case where the pidfile does not name the holder. Processes whose descriptors
/// this user may not read are not seen.
pub fn flock_holders(dev: u64, ino: u64) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| holds_flock(pid, dev, ino) == Some(true))
        .filter(|&pid| Proc::of(pid).is_alive())
        .collect();
    pids.sort_unstable();
    pids
}

/// Send `sig` (a [`Signal`], or its number as signal_hook's constants give it) to `pid`;
/// a process that is already gone (ESRCH) is not an error.
pub fn signal<S: TryInto<Signal>>(pid: u32, sig: S) -> std::io::Result<()> {
    let sig = sig.try_into().map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a signal number")
    })?;
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return Ok(());
    };
    if p <= 0 {
        return Ok(());
    }
    match kill(Pid::from_raw(p), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_field_after_the_last_parenthesis() {
        for (stat, dead) in [
            ("42 (sleep) S 1 42 42", false),
            ("42 (syncd) Z 1 42 42", true),
            ("42 (a) b) Z 1", true),
            ("42 (we ird) R 1", false),
            ("42 (x) X 1", true),
            ("garbage", false),
        ] {
            assert_eq!(is_dead_state(stat), dead, "{stat}");
        }
    }

    #[test]
    fn fake_proc_tree_table() {
        let root = tempfile::tempdir().expect("tempdir");
        let mk = |pid: &str, stat: &str, comm: &str| {
            let d = root.path().join(pid);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("stat"), stat).expect("stat");
            std::fs::write(d.join("comm"), format!("{comm}\n")).expect("comm");
        };
        mk("10", "10 (syncd) S 1", "syncd");
        mk("11", "11 (syncd) Z 1", "syncd");
        mk("12", "12 (sleep) S 1", "sleep");
        mk("13", "13 (syncd-worker) S 1", "syncd-worker");
        let p = |pid| Proc::under(root.path(), pid);
        assert!(p(10).is(Role::Controller) && !p(10).is(Role::Worker));
        assert_eq!(p(11), Proc::Zombie);
        assert!(!p(11).is(Role::Controller));
        assert!(p(12).is_alive() && !p(12).is(Role::Controller));
        assert!(p(13).is(Role::Worker));
        assert_eq!(p(14), Proc::Gone);
        assert_eq!(p(0), Proc::Gone);
    }

    #[test]
    fn this_process_is_alive_and_not_syncd() {
        let me = Proc::of(std::process::id());
        assert!(me.is_alive());
        assert!(!me.is(Role::Controller));
        assert_eq!(me.uid(), Some(nix::unistd::geteuid().as_raw()));
    }

    #[test]
    fn a_syncd_of_a_user_is_named_syncd_and_runs_as_that_user() {
        let alive = |comm: &str, uid| Proc::Alive {
            comm: comm.into(),
            exe: None,
            uid,
        };
        assert!(alive("syncd", Some(0)).is_of(Role::Controller, 0));
        assert!(
            !alive("syncd", Some(65534)).is_of(Role::Controller, 0),
            "anyone can call a program syncd"
        );
        assert!(!alive("syncd", None).is_of(Role::Controller, 0));
        assert!(!alive("flock", Some(0)).is_of(Role::Controller, 0));
        assert!(!Proc::Zombie.is_of(Role::Controller, 0));
    }

    #[test]
    fn uid_and_flock_lines_table() {
        for (status, uid) in [
            ("Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\n", Some(0)),
            ("Uid:\t65534\t65534\t65534\t65534\n", Some(65534)),
            ("Name:\tx\n", None),
            ("Uid:\t5\n", None),
        ] {
            assert_eq!(effective_uid(status), uid, "{status:?}");
        }
        let status = "Name:\tsyncd-worker\nUid:\t990\t990\t990\t990\nGid:\t991\t991\t991\t991\n";
        assert_eq!(real_ids_in(status), Some((990, 991)));
        assert_eq!(real_ids_in("Name:\tx\nUid:\t1\t1\t1\t1\n"), None);
        for (info, held) in [
            ("pos:\t0\nflags:\t0100000\nlock:\t1: FLOCK  ADVISORY  WRITE 19233 fe:00:10010693 0 EOF\n", true),
            ("lock:\t1: FLOCK  ADVISORY  READ 7 fe:00:1 0 EOF\n", true),
            ("lock:\t1: POSIX  ADVISORY  WRITE 7 fe:00:1 0 EOF\n", false),
            ("pos:\t0\nflags:\t0100000\n", false),
        ] {
            assert_eq!(fdinfo_has_flock(info), held, "{info:?}");
        }
    }

    #[test]
    fn the_holder_of_a_flock_is_found_through_proc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l");
        let file = std::fs::File::create(&path).expect("create");
        let m = file.metadata().expect("stat");
        let me = std::process::id();
        assert_eq!(
            holds_flock(me, m.dev(), m.ino()),
            Some(false),
            "open, not locked"
        );
        file.try_lock().expect("lock");
        assert_eq!(holds_flock(me, m.dev(), m.ino()), Some(true));
        assert_eq!(flock_holders(m.dev(), m.ino()), vec![me]);
        file.unlock().expect("unlock");
        assert_eq!(holds_flock(me, m.dev(), m.ino()), Some(false));
    }

    #[test]
    fn signalling_a_gone_pid_is_fine() {
        // pid_max is at most 2^22, so this pid cannot exist (SIGCONT: harmless if it did).
        assert!(signal(9_999_999, Signal::SIGCONT).is_ok());
        assert!(signal(9_999_999, libc::SIGCONT).is_ok(), "a raw number too");
        assert_eq!(
            signal(9_999_999, 0).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::InvalidInput),
            "0 is not a signal to send"
        );
    }
}
