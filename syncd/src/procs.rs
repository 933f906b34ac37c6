//! Who a pid is, from `/proc`: gone, a zombie (dead, not yet reaped: counts as dead), or
//! alive with its command name and executable. `stop` signals only a pid this module
//! says is a syncd process; a pidfile's number alone is never trusted.

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
        Proc::Alive { comm, exe }
    }

    pub fn is_alive(&self) -> bool {
        matches!(self, Proc::Alive { .. })
    }

    /// Alive and a syncd process of `role`: its command name or its executable's file
    /// name is `syncd` / `syncd-worker`.
    pub fn is(&self, role: Role) -> bool {
        match self {
            Proc::Alive { comm, exe } => {
                comm == role.name()
                    || exe
                        .as_deref()
                        .and_then(Path::file_name)
                        .is_some_and(|n| n == role.name())
            }
            _ => false,
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
