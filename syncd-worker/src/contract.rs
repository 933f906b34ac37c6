//! What `syncd` (the controller) and `syncd-worker` agree on, written once: the worker's
//! command line ([`WorkerCommandLine`]), its exit codes and what each means to the controller,
//! the signals one sends the other,
//! the environment variable the readiness socket travels in, and the names of the files
//! in the state directory (built into paths by [`crate::state_dir::StateDir`]).
//!
//! Both binaries use these names; a literal for any of them elsewhere in `src/` is a bug
//! waiting for the day one side changes. Pure data and one mapping; no I/O.

use std::ffi::OsString;
use std::path::PathBuf;

use nix::sys::signal::Signal;

/// The `syncd-worker` command line the controller runs (the daemon's worker, or
/// `--once` for `syncd sync` without a daemon). The worker's own flag parser is tested
/// against [`WorkerCommandLine::to_args`], so the two cannot drift apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerCommandLine {
    pub config: PathBuf,
    pub log_level: String,
    /// `--state-dir`, passed on only when the operator gave it (else the config's).
    pub state_dir: Option<PathBuf>,
    pub initial_sync: bool,
    pub threads: Option<u16>,
    /// `--once`: push and exit, instead of running as a daemon's worker.
    pub once: Option<Once>,
    /// `--password-dir`: where the controller put the worker's private copies of the
    /// password files (named by [`password_copy_name`]), when the worker runs as `user`.
    pub password_dir: Option<PathBuf>,
    /// `--log-channel`: the worker's stdin is the controller's end of a
    /// [`crate::log_channel`] (the daemon logs to a file it may reopen).
    pub log_channel: bool,
}

/// `--once`'s options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Once {
    /// `--full`: every tree whole.
    pub full: bool,
    /// `--force` (needs `full`): past the deletion guard, from the source as it is.
    pub force: bool,
}

impl WorkerCommandLine {
    /// The arguments, without the program name.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--config".into(),
            self.config.clone().into(),
            "--log-level".into(),
            self.log_level.clone().into(),
        ];
        if let Some(dir) = &self.state_dir {
            args.extend(["--state-dir".into(), dir.clone().into()]);
        }
        if self.initial_sync {
            args.push("--initial-sync".into());
        }
        if let Some(n) = self.threads {
            args.extend(["--threads".into(), n.to_string().into()]);
        }
        if let Some(dir) = &self.password_dir {
            args.extend(["--password-dir".into(), dir.clone().into()]);
        }
        if self.log_channel {
            args.push("--log-channel".into());
        }
        if let Some(once) = self.once {
            args.push("--once".into());
            if once.full {
                args.push("--full".into());
            }
            if once.force {
                args.push("--force".into());
            }
        }
        args
    }
}

/// How `syncd-worker` ends (its exit code), and what the controller does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// 0: a clean stop (SIGTERM/SIGINT; what was pending is in the fail log).
    /// `--once`: everything was pushed.
    Clean,
    /// 1: a runtime failure; the controller restarts the worker (with backoff).
    /// `--once`: something was not pushed (it stays in the fail log).
    Failed,
    /// 2: the configuration or a flag is invalid. A restart cannot help: the controller
    /// gives up and says to fix the config.
    BadConfig,
}

impl WorkerExit {
    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            WorkerExit::Clean => 0,
            WorkerExit::Failed => 1,
            WorkerExit::BadConfig => 2,
        }
    }

    /// The exit as the controller sees it: `code` is `ExitStatus::code()` (None when the
    /// worker was killed by a signal). None for a signal or a code the worker never uses
    /// (a panic's 101, say): both are crashes to the controller.
    pub fn of(code: Option<i32>) -> Option<WorkerExit> {
        [WorkerExit::Clean, WorkerExit::Failed, WorkerExit::BadConfig]
            .into_iter()
            .find(|e| code == Some(i32::from(e.code())))
    }

    /// Whether starting the worker again can help (not for a bad config).
    pub fn restart_helps(self) -> bool {
        self != WorkerExit::BadConfig
    }
}

impl From<WorkerExit> for std::process::ExitCode {
    fn from(e: WorkerExit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// Stop: finish the push in flight, save what is pending, exit 0. `syncd stop` sends it
/// to the controller, the controller to its worker (SIGINT means the same).
pub const STOP: Signal = Signal::SIGTERM;
/// Re-read the config file and adjust (an invalid one is logged and the running one
/// kept). `syncd reload` sends it to the controller, which passes it to its worker.
pub const RELOAD: Signal = Signal::SIGHUP;
/// Push everything pending now. `syncd sync` sends it to the controller, which passes it
/// to its worker.
pub const PUSH_PENDING: Signal = Signal::SIGUSR1;
/// Push every tree whole now (`syncd sync --full`; with `--force` the request file
/// [`FORCE_FILE`] is left first). Passed on like [`PUSH_PENDING`].
pub const PUSH_FULL: Signal = Signal::SIGUSR2;

/// Reopen the log file (`syncd reopen-logs`, after logrotate moved it away): the
/// controller only; it hands the new file to its worker over the worker's
/// `--log-channel` ([`crate::log_channel`]), as the worker may not be allowed to open
/// it. HUP, USR1 and USR2 are taken; WINCH is ignored by default, so an older
/// controller that does not know it is not killed by it (nor is anything else it hits).
/// A terminal sends it to `syncd run`'s foreground group on a resize: with stderr not
/// the log file that is a no-op.
pub const REOPEN_LOGS: Signal = Signal::SIGWINCH;

/// The environment variable naming the sd_notify socket: systemd's (or `syncd start`'s)
/// for the controller, the controller's for its worker ([`crate::notify`]).
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// On that socket, the worker out of inotify watches asks its controller for more (only
/// the controller may write sysctls): `X_SYNCD_WATCHES=<n>`, sent from a bound socket of
/// its own, `n` the watches the user needs (see [`crate::watch::limit::watches_needed`]).
/// The controller applies its sysctl policy to `n` and answers to the sender's address
/// with [`WATCHES_LIMIT`]. Not forwarded to systemd.
pub const WATCHES_REQUEST: &str = "X_SYNCD_WATCHES";
/// The controller's answer: `X_SYNCD_MAX_USER_WATCHES=<value now>` (unchanged when it
/// could not or would not raise it).
pub const WATCHES_LIMIT: &str = "X_SYNCD_MAX_USER_WATCHES";

/// The worker's status report, by default in the state directory (`status_file`
/// overrides it); read by `syncd status` and `syncd sync`.
pub const STATUS_FILE: &str = "status.json";
/// The directory of fail logs, one file per (sync, target).
pub const FAILLOG_DIR: &str = "faillog";
/// The sources' identities of the last run ([`crate::source_id`]).
pub const SOURCES_FILE: &str = "sources.json";
/// The clean-stop record and running checkpoint ([`crate::catchup`]).
pub const CATCHUP_FILE: &str = "catchup.json";
/// `syncd sync --full --force`'s request to the worker ([`crate::force`]).
pub const FORCE_FILE: &str = "force-full";
/// Locked by the worker for its whole run (and by `--once`): one worker per state
/// directory.
pub const WORKER_LOCK: &str = "worker.lock";
/// The controller's own state (worker pid, restarts, phase).
pub const CONTROLLER_FILE: &str = "controller.json";
/// When the worker runs as `user`: the directory (mode 0700, the user's) of its private
/// copies of the password files, which may be readable by root only; written by the
/// controller at each start and reload, removed when it stops.
pub const SECRETS_DIR: &str = "secrets";

/// The name of the private copy of the password file `path` in [`SECRETS_DIR`]: its
/// file name (bytes other than letters, digits, `.`, `-`, `_` as `_`, at most 40) and a
/// hash of the whole path, so two files of the same name get two copies. Pure.
pub fn password_copy_name(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // FNV-1a, 64 bits: stable across builds and versions (std's hasher is not).
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let base: String = path
        .file_name()
        .map(|n| n.as_bytes())
        .unwrap_or_default()
        .iter()
        .take(40)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
                char::from(b)
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.{hash:016x}", base.trim_start_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_args_in_order_with_only_what_is_set() {
        let base = WorkerCommandLine {
            config: "/etc/syncd/syncd.toml".into(),
            log_level: "info".into(),
            ..WorkerCommandLine::default()
        };
        let cases = [
            (
                base.clone(),
                "--config /etc/syncd/syncd.toml --log-level info",
            ),
            (
                WorkerCommandLine {
                    state_dir: Some("/tmp/st".into()),
                    initial_sync: true,
                    threads: Some(4),
                    ..base.clone()
                },
                "--config /etc/syncd/syncd.toml --log-level info --state-dir /tmp/st \
                 --initial-sync --threads 4",
            ),
            (
                WorkerCommandLine {
                    once: Some(Once::default()),
                    ..base.clone()
                },
                "--config /etc/syncd/syncd.toml --log-level info --once",
            ),
            (
                WorkerCommandLine {
                    once: Some(Once {
                        full: true,
                        force: true,
                    }),
                    ..base.clone()
                },
                "--config /etc/syncd/syncd.toml --log-level info --once --full --force",
            ),
            (
                WorkerCommandLine {
                    password_dir: Some("/var/lib/syncd/secrets".into()),
                    ..base.clone()
                },
                "--config /etc/syncd/syncd.toml --log-level info --password-dir \
                 /var/lib/syncd/secrets",
            ),
            (
                WorkerCommandLine {
                    log_channel: true,
                    ..base.clone()
                },
                "--config /etc/syncd/syncd.toml --log-level info --log-channel",
            ),
        ];
        for (args, want) in cases {
            let got: Vec<String> = args
                .to_args()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            assert_eq!(got.join(" "), want, "{args:?}");
        }
    }

    #[test]
    fn password_copies_get_plain_distinct_names() {
        let cases = [
            ("/etc/rsync.password", "rsync.password."),
            ("/srv/a/rsync.password", "rsync.password."),
            ("/etc/.hidden pw", "hidden_pw."),
            ("/", "."),
        ];
        let mut seen = Vec::new();
        for (path, prefix) in cases {
            let name = password_copy_name(std::path::Path::new(path));
            assert!(name.starts_with(prefix), "{path}: {name}");
            assert_eq!(name.len(), prefix.len() + 16, "{path}: {name}");
            assert!(
                !name.contains('/') && !name.starts_with('.') || path == "/",
                "{name}"
            );
            assert!(!seen.contains(&name), "{name} twice");
            assert_eq!(
                name,
                password_copy_name(std::path::Path::new(path)),
                "stable"
            );
            seen.push(name);
        }
    }

    #[test]
    fn exit_codes_map_both_ways() {
        let cases = [
            (Some(0), Some(WorkerExit::Clean), true),
            (Some(1), Some(WorkerExit::Failed), true),
            (Some(2), Some(WorkerExit::BadConfig), false),
            (Some(101), None, true), // a panic: a crash
            (Some(-1), None, true),
            (None, None, true), // killed by a signal
        ];
        for (code, want, helps) in cases {
            let got = WorkerExit::of(code);
            assert_eq!(got, want, "{code:?}");
            if let Some(e) = got {
                assert_eq!(code, Some(i32::from(e.code())), "round trip {e:?}");
                assert_eq!(e.restart_helps(), helps, "{e:?}");
            }
        }
    }

    #[test]
    fn state_file_names_are_plain_distinct_names() {
        let names = [
            STATUS_FILE,
            FAILLOG_DIR,
            SOURCES_FILE,
            CATCHUP_FILE,
            FORCE_FILE,
            WORKER_LOCK,
            CONTROLLER_FILE,
            SECRETS_DIR,
        ];
        for (i, n) in names.iter().enumerate() {
            assert!(
                !n.is_empty() && !n.contains('/') && !n.starts_with('.'),
                "{n}"
            );
            assert!(!names[i + 1..].contains(n), "{n} named twice");
        }
    }
}
