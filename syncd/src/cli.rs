//! What the user typed: the clap definitions of `syncd`, nothing else. [`crate::settings`]
//! turns this into decisions; nothing below `run` imports clap. Also parses sersync's
//! command line (`syncd -d -r -n 8 -o confxml.xml`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// syncd keeps backup copies of directory trees up to date in real time: it watches them
/// with inotify and pushes every change to rsync targets (rsync daemon modules, ssh
/// targets, local paths) within a fraction of a second.
///
/// This is the controller: the one command operators, init scripts and systemd talk to.
/// It validates the config, holds the pidfile and its lock, tunes the inotify limits,
/// and supervises `syncd-worker`, the process that does the watching and pushing.
///
/// sersync's command line works too: `syncd -d -r -n 8 -o /etc/confxml.xml` starts a
/// daemon (`-d`; without it syncd stays in the foreground) that pushes the whole tree
/// once (`-r`), with 8 parallel rsync runs (`-n`), reading that config (`-o`).
#[derive(Parser, Debug)]
#[command(
    name = "syncd",
    version,
    // The one-line summary: the man page's NAME line and `syncd -h`; `--help` and the
    // man page's DESCRIPTION show the whole comment above.
    about = "Real-time file sync: inotify watch + rsync push",
    after_help = "Exit codes (LSB): 0 success, 1 failure, 2 bad usage, 3 not running (status), 6 invalid configuration, 7 not running (reload, reopen-logs). `status --check` (Nagios/Icinga): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub sersync: SersyncArgs,
}

/// Options every command takes. Paths default to the config's `pid_file`, `log_file`
/// and `state_dir`, then to the built-in defaults.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Config file: syncd TOML, or sersync's confxml.xml (detected by `.xml` or a leading `<`).
    #[arg(short, long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Pidfile holding the controller's pid [default: config `pid_file`, else /run/syncd/syncd.pid].
    /// Its lock file lives beside it (`syncd.pid` → `syncd.lock`).
    #[arg(long, value_name = "FILE", global = true)]
    pub pidfile: Option<PathBuf>,
    /// Where `syncd start` sends the daemon's log [default: config `log_file`, else /var/log/syncd/syncd.log].
    #[arg(long, value_name = "FILE", global = true)]
    pub log_file: Option<PathBuf>,
    /// State directory: fail logs, status files [default: config `state_dir`, else /var/lib/syncd].
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// The syncd-worker binary [default: $SYNCD_WORKER, else beside this syncd, else PATH].
    #[arg(long, value_name = "PATH", global = true)]
    pub worker: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info", global = true)]
    pub log_level: String,
}

/// sersync's flags, used without a subcommand.
#[derive(Args, Debug, Clone, Default)]
pub struct SersyncArgs {
    /// sersync: run as a daemon (`syncd start`); without it, stay in the foreground (`syncd run`).
    #[arg(short = 'd', hide_short_help = true)]
    pub sersync_daemon: bool,
    /// sersync: push every tree whole once the watches are in place.
    #[arg(short = 'r', hide_short_help = true)]
    pub sersync_initial_sync: bool,
    /// sersync: parallel rsync runs per target.
    #[arg(short = 'n', value_name = "N", hide_short_help = true,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub sersync_threads: Option<u16>,
    /// sersync: the config file (same as --config).
    #[arg(short = 'o', value_name = "FILE", hide_short_help = true)]
    pub sersync_config: Option<PathBuf>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Start the daemon in the background
    ///
    /// Returns once the watches are in place. Validates the config (a bad one exits 6 and
    /// starts nothing), takes the lock, clears a stale pidfile, raises the inotify limits
    /// if needed, detaches, starts syncd-worker and waits until it reports that every tree
    /// is watched. Already running: says so and exits 0.
    Start(StartArgs),
    /// Stop the daemon, finishing the push in flight
    ///
    /// The worker finishes the push in flight and saves what is pending for the next
    /// start; after --timeout, whatever is left is killed. Not running: exit 0.
    Stop(StopArgs),
    /// Stop the daemon, then start it
    Restart(RestartArgs),
    /// Re-read the config without losing queued changes
    ///
    /// An invalid new config is refused (exit 6) and the daemon keeps running on the old
    /// one.
    Reload,
    /// Reopen the log file, after logrotate moved it away
    ///
    /// The running daemon opens `log_file` again (creating it with the old file's owner
    /// and mode if logrotate's `create` did not) and writes on in the new file, and so
    /// does its worker (which gets the file from the daemon: it works with `user` set).
    /// No line is lost: each goes to the old file or the new one. This is what the shipped
    /// logrotate file's `postrotate` runs (instead of `copytruncate`, which loses the
    /// lines written while it copies). Under systemd the logs go to the journal and
    /// there is nothing to reopen (said, exit 0). The request is SIGWINCH to the daemon.
    /// Exit 0 when asked, 7 when syncd is not running, 1 on failure; the log says what was
    /// done.
    #[command(name = "reopen-logs")]
    ReopenLogs,
    /// Say whether the daemon is running
    ///
    /// Exit 0 running, 1 dead but the pidfile exists, 3 not running.
    ///
    /// With --check, a Nagios/Icinga plugin: one line `SYNCD OK - … | perfdata` and exit
    /// 0 OK, 1 WARNING (a lag at --warn-lag or more, failing pushes, paths waiting for a
    /// retry), 2 CRITICAL (not running, the worker restarting, a source lost, directories
    /// not watched, a lag at --crit-lag or more), 3 UNKNOWN (the status cannot be read).
    /// Perfdata per target: lag_T (seconds, with the limits), queue_T, backlog_T, failed_T.
    ///
    /// For Prometheus, set `metrics_file` in the config: the worker writes its metrics
    /// there for node_exporter's textfile collector.
    Status(StatusArgs),
    /// Run in the foreground, supervised as the daemon is
    ///
    /// For systemd (`Type=notify`), containers and debugging: the same supervision as
    /// the daemon; sends READY=1 to $NOTIFY_SOCKET once watching.
    ///
    /// Logs go to stderr, timestamped; when stderr is systemd's journal ($JOURNAL_STREAM
    /// names it) each line instead starts with its priority (`<3>` error, `<4>` warning,
    /// `<6>` info, `<7>` debug) and journald adds the time: `journalctl -u syncd -p warning`.
    Run(WorkerArgs),
    /// Check the setup and say what to fix
    ///
    /// Checks the config, rsync, password files, each target (`rsync --list-only`), the
    /// inotify limits against the trees' size.
    Check,
    /// Push now, in the foreground, with progress
    ///
    /// Pushes what is pending, or every tree whole with --full. Goes through the daemon
    /// when it is running.
    Sync(SyncArgs),
    /// Prove that every target equals its source, changing nothing
    ///
    /// Exit 0 equal, 1 drift, 2 a target could not be checked.
    ///
    /// For each sync and target, one rsync dry run of the whole tree (`-n --delete
    /// --itemize-changes`, with the sync's excludes, its rsync params and the target's
    /// connection settings, exactly as a whole-tree push would run) reports the drift:
    /// entries missing on the target, different there, and extra there (in the target,
    /// not in the source), with the first paths of each and the time it took. Files are
    /// compared by size and modification time; --deep compares their contents
    /// (`--checksum`: reads every file on both sides, much slower), which also finds a
    /// file changed on the target with its size and mtime kept. A directory that differs
    /// only in its modification time is not drift.
    ///
    /// Safe while syncd runs: it only reads. Changes still being pushed are not drift:
    /// when the dry run finds differences while the daemon runs, verify waits the sync's
    /// `delay` plus 2 s and checks those paths again; what was pushed meanwhile is
    /// dropped, and what changed in the source since verify began is listed as
    /// "changing", not as drift.
    ///
    /// --fix pushes exactly the drift (those paths, not the whole tree, through the
    /// normal push: source check first; an extra entry is deleted only as a push of a path
    /// deleted in the source would; the deletion guard `max_delete` applies), then
    /// verifies again; the exit code is the second verify's. --fix needs syncd stopped
    /// (with it running, --fix changes nothing and exits 2).
    ///
    /// Periodically: `[sync.verify] interval = "6h"` in the config makes the daemon run
    /// the same check; `syncd status` shows the last result of each target, and
    /// status.json has it as `verify` (finished_at, outcome, missing, different, extra,
    /// seconds, error).
    Verify(VerifyArgs),
    /// Packaging: write the man pages and shell completions into DIR.
    #[command(hide = true)]
    GenAssets(GenAssetsArgs),
    /// Internal, for `check` with `user` set: run as that user, read a JSON request on
    /// stdin, say on stdout what it cannot read or write.
    #[command(hide = true, name = "probe-access")]
    ProbeAccess,
}

/// Options of the worker that `start`, `restart` and `run` launch.
#[derive(Args, Debug, Clone, Default)]
pub struct WorkerArgs {
    /// Push every tree whole once the watches are in place (sersync's -r).
    #[arg(short = 'r', long)]
    pub initial_sync: bool,
    /// Parallel rsync runs per target, 1 to 64 (sersync's -n).
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: Option<u16>,
    /// Internal: set by `syncd start` for the detached daemon (lock fd inherited).
    #[arg(long, hide = true, value_name = "FD")]
    pub lock_fd: Option<i32>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct StartArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// How long to wait for the watches to be in place before giving up.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub wait: std::time::Duration,
}

#[derive(Args, Debug, Clone)]
pub struct StopArgs {
    /// How long the worker may take to finish its push and save its queue before it is killed.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Args, Debug, Clone)]
pub struct RestartArgs {
    #[command(flatten)]
    pub start: StartArgs,
    /// How long the old worker may take to stop before it is killed.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
    /// Answer as a Nagios/Icinga plugin: one line with perfdata, exit 0 OK, 1 WARNING,
    /// 2 CRITICAL, 3 UNKNOWN.
    #[arg(long, conflicts_with = "json")]
    pub check: bool,
    /// With --check: WARNING when a target's lag (the age of its oldest change not yet
    /// pushed) reaches this.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub warn_lag: std::time::Duration,
    /// With --check: CRITICAL when a target's lag reaches this.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub crit_lag: std::time::Duration,
}

#[derive(Args, Debug, Clone, Default)]
pub struct SyncArgs {
    /// Push every tree whole (rsync -a --delete of the tree), not just what is pending.
    /// A source that was lost (unmounted, replaced) is accepted as it is now.
    #[arg(long)]
    pub full: bool,
    /// With --full: let the push delete past the deletion guard (`max_delete`), and push
    /// from the source as it is now whatever its identity. Only after checking the source.
    #[arg(long, requires = "full")]
    pub force: bool,
}

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// Compare file contents (rsync --checksum), not only size and modification time.
    #[arg(long)]
    pub deep: bool,
    /// Push the drift found, then verify again (syncd must not be running).
    #[arg(long)]
    pub fix: bool,
    /// Print the result as JSON: per target the outcome ("equal", "drift", "failed"),
    /// counts and first paths of missing, different, extra and changing, seconds,
    /// error, and with --fix what was pushed and the second result.
    #[arg(long)]
    pub json: bool,
    /// How many paths of each kind to show.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub show: usize,
    /// Internal: run as `user` by root's `syncd verify`, reading the password files'
    /// private copies in DIR.
    #[arg(long, value_name = "DIR", hide = true)]
    pub password_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct GenAssetsArgs {
    /// Directory to write syncd.1, syncd-<command>.1, syncd.bash, _syncd and syncd.fish into
    /// (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sersync_flags_parse_without_a_subcommand() {
        let cli = Cli::try_parse_from(["syncd", "-d", "-r", "-n", "8", "-o", "/etc/confxml.xml"])
            .expect("parse");
        assert!(cli.command.is_none());
        assert!(cli.sersync.sersync_daemon && cli.sersync.sersync_initial_sync);
        assert_eq!(cli.sersync.sersync_threads, Some(8));
        assert_eq!(
            cli.sersync.sersync_config,
            Some(PathBuf::from("/etc/confxml.xml"))
        );
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        for argv in [
            &["syncd", "--pidfile", "/tmp/p.pid", "status", "--json"][..],
            &["syncd", "status", "--json", "--pidfile", "/tmp/p.pid"][..],
        ] {
            let cli = Cli::try_parse_from(argv).expect("parse");
            assert_eq!(cli.global.pidfile, Some(PathBuf::from("/tmp/p.pid")));
            assert!(matches!(
                cli.command,
                Some(Command::Status(StatusArgs { json: true, .. }))
            ));
        }
    }

    #[test]
    fn status_check_takes_lag_limits() {
        let cli = Cli::try_parse_from([
            "syncd",
            "status",
            "--check",
            "--warn-lag",
            "500ms",
            "--crit-lag",
            "2m",
        ])
        .expect("parse");
        let Some(Command::Status(a)) = cli.command else {
            panic!("{cli:?}")
        };
        assert!(a.check && !a.json);
        assert_eq!(a.warn_lag, std::time::Duration::from_millis(500));
        assert_eq!(a.crit_lag, std::time::Duration::from_secs(120));
        let Some(Command::Status(d)) = Cli::try_parse_from(["syncd", "status", "--check"])
            .expect("parse")
            .command
        else {
            panic!("status")
        };
        assert_eq!(
            (d.warn_lag, d.crit_lag),
            (
                std::time::Duration::from_secs(10),
                std::time::Duration::from_secs(60)
            )
        );
        assert!(Cli::try_parse_from(["syncd", "status", "--check", "--json"]).is_err());
        assert!(Cli::try_parse_from(["syncd", "status", "--check", "--warn-lag", "10"]).is_err());
    }

    #[test]
    fn bad_thread_count_is_rejected() {
        assert!(Cli::try_parse_from(["syncd", "run", "-n", "0"]).is_err());
        assert!(Cli::try_parse_from(["syncd", "-n", "65"]).is_err());
    }
}
