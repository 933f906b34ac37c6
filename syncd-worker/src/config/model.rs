//! The validated configuration: what the worker will do, after every default is applied
//! and every value checked. Both loaders (`native` for TOML, `sersync` for confxml.xml)
//! produce this; nothing below the loaders sees a raw file. Pure data, no I/O.

use std::path::PathBuf;
use std::time::Duration;

use super::watcher::WatcherChoice;
use crate::exclude::ExcludeSet;
use crate::state_dir::StateDir;

/// Everything one worker runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from (for messages).
    pub path: PathBuf,
    /// Where the fail log and other state live. Default `/var/lib/syncd`.
    pub state_dir: PathBuf,
    /// The JSON status file. Default `<state_dir>/status.json`.
    pub status_file: PathBuf,
    /// `metrics_file`: where the worker writes its metrics in Prometheus text format
    /// (node_exporter's textfile collector). None (the default): no metrics file.
    pub metrics_file: Option<PathBuf>,
    /// One entry per `[[sync]]` block (or sersync `<localpath>`).
    pub syncs: Vec<SyncJob>,
    /// What the `syncd` controller uses (pidfile, log file, inotify limits); the worker
    /// ignores it.
    pub daemon: DaemonSettings,
    /// Things the operator should know that do not stop the start: a toggle that will
    /// lose changes, a sersync element that has no meaning here. Logged at start.
    pub warnings: Vec<String>,
}

impl Config {
    /// Where the status file is when the state directory becomes `dir` (`--state-dir`): one
    /// left at its default (`<state_dir>/status.json`) follows the directory; one the config
    /// sets explicitly stays where it is. The worker and the controller both use this.
    pub fn status_file_in(&self, dir: &std::path::Path) -> PathBuf {
        if self.status_file == self.state().status_file() {
            StateDir::at(dir).status_file()
        } else {
            self.status_file.clone()
        }
    }

    /// The state directory, to name the files in it.
    pub fn state(&self) -> StateDir {
        StateDir::at(&self.state_dir)
    }

    /// Read each daemon target's password file from its private copy in `dir` (written
    /// by the root controller for a run as `user`: `--password-dir`) where there is one.
    pub fn use_password_copies(&mut self, dir: &std::path::Path) {
        for target in self.syncs.iter_mut().flat_map(|j| &mut j.targets) {
            if let TargetKind::Daemon {
                password_file: Some(file),
                ..
            } = &mut target.kind
            {
                let copy = dir.join(crate::contract::password_copy_name(file));
                if copy.symlink_metadata().is_ok() {
                    *file = copy;
                }
            }
        }
    }
}

/// Settings of the `syncd` controller. Command-line flags override them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonSettings {
    /// `pid_file`; None = the controller's default `/run/syncd/syncd.pid`.
    pub pid_file: Option<PathBuf>,
    /// `log_file` (where `syncd start` sends the daemon's output); None = the default
    /// `/var/log/syncd/syncd.log`.
    pub log_file: Option<PathBuf>,
    /// `user` (and `group`): who the worker, and every rsync, ssh and hook it runs, runs
    /// as; None = root, as the controller (the packaged default: backups of whole trees
    /// need to read everything).
    pub run_as: Option<RunAs>,
    pub inotify: InotifyLimits,
}

/// `user` / `group`, resolved to ids when the config was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    /// `group`, or the user's primary group.
    pub group: String,
    pub gid: u32,
    /// The user's home directory (`$HOME` of the worker, its rsync, ssh and hooks).
    pub home: PathBuf,
}

/// `[inotify]`: kernel limits the controller raises at start (never lowers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InotifyLimits {
    /// `fs.inotify.max_user_watches` wanted; None = as many as the sources need, with headroom.
    pub max_user_watches: Option<u64>,
    /// `fs.inotify.max_queued_events` wanted; None = leave the kernel's value unless it is
    /// below syncd's floor.
    pub max_queued_events: Option<u64>,
    /// Also write `/etc/sysctl.d/90-syncd.conf` so the values survive a reboot.
    pub persist: bool,
}

/// One watched source tree and where it goes.
#[derive(Debug, Clone)]
pub struct SyncJob {
    /// Short name for logs and status. Default: the source path.
    pub name: String,
    /// Absolute path of the watched directory (no trailing slash). For a source written
    /// as a symbolic link, the directory it led to when the config was loaded.
    pub source: PathBuf,
    /// The source as written when it is a symbolic link (`/var/www/current`): the path
    /// whose identity every check compares, so that the link repointed is a source
    /// swapped (see [`SyncJob::source_path`]). None for a real directory.
    pub source_link: Option<PathBuf>,
    /// At least one.
    pub targets: Vec<Target>,
    /// Which kinds of change are pushed.
    pub events: EventSet,
    /// Regular expressions on the path relative to `source`: matched paths (and all below
    /// them) are neither watched nor pushed.
    pub exclude: ExcludeSet,
    /// Batching window: paths are due once the oldest change is this old; a batch with a
    /// tree or a full push once no change arrived for this long.
    pub delay: Duration,
    /// Upper bound on how long a change waits.
    pub max_delay: Duration,
    /// Most paths in one rsync run; larger batches are split over several runs.
    pub max_batch: usize,
    /// Most distinct paths held in the queue of one target; past it the queue collapses into
    /// one whole-tree push (bounded memory).
    pub max_queue: usize,
    /// Parallel rsync runs per target when a batch is split (sersync's `-n`).
    pub threads: usize,
    /// Most pushes in flight per target: a second one starts beside a long one, on
    /// disjoint paths (see [`crate::pipeline`]). 1: one push at a time.
    pub max_in_flight: usize,
    pub mode: Mode,
    /// `watcher`: inotify, fanotify, or `auto` (decided when the sync starts).
    pub watcher: WatcherChoice,
    /// Push the whole tree once at start, after the watches are in place (sersync's `-r`).
    pub initial_sync: bool,
    /// How much of the target a whole-tree push may delete before it stops and waits
    /// for `syncd sync --full --force` (`max_delete`, default 50%).
    pub max_delete: crate::guard::DeleteGuard,
    pub rsync: RsyncOptions,
    pub retry: RetryPolicy,
    pub full_sync: FullSync,
    /// Periodic `verify` run by the worker (`[sync.verify]`).
    pub verify: VerifySchedule,
    pub hooks: Hooks,
}

impl SyncJob {
    /// The source path as written: what the identity checks look at (the link for a
    /// symlinked source, else [`SyncJob::source`] itself).
    pub fn source_path(&self) -> &std::path::Path {
        self.source_link.as_deref().unwrap_or(&self.source)
    }
}

/// `files`: one rsync per batch listing the changed paths. `tree`: `rsync -a --delete SRC/
/// DEST` per batch, at most one in flight and one pending (the seed script's way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Files,
    Tree,
}

/// sersync's `<inotify>` toggles. The native default is every toggle on except `modify`
/// (which fires mid-write): the set that loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSet {
    pub delete: bool,
    pub create_folder: bool,
    pub create_file: bool,
    pub close_write: bool,
    pub move_from: bool,
    pub move_to: bool,
    pub attrib: bool,
    pub modify: bool,
}

impl Default for EventSet {
    fn default() -> Self {
        EventSet {
            delete: true,
            create_folder: true,
            create_file: true,
            close_write: true,
            move_from: true,
            move_to: true,
            attrib: true,
            modify: false,
        }
    }
}

/// Where a sync pushes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Short name for logs, status and the fail log's file name. Default: `dest` as written.
    pub name: String,
    pub kind: TargetKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// An rsync daemon module: `[user@]host::module[/path]` or `rsync://[user@]host[:port]/module[/path]`.
    Daemon {
        user: Option<String>,
        host: String,
        /// Module name plus an optional path below it, no leading or trailing slash.
        module: String,
        port: Option<u16>,
        /// rsync's `--password-file`: its mode and owner are checked before use.
        password_file: Option<PathBuf>,
    },
    /// `[user@]host:/path` over ssh.
    Ssh {
        user: Option<String>,
        host: String,
        path: String,
        port: Option<u16>,
        /// Extra words for the ssh command (`-i key`, `-o ...`), passed through `-e`.
        ssh_args: Vec<String>,
    },
    /// A local directory.
    Local { path: PathBuf },
}

/// How rsync is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsyncOptions {
    /// The rsync binary. Default `rsync` (found on PATH).
    pub binary: PathBuf,
    /// Base parameters, default `["-a"]` (sersync's `commonParams`).
    pub params: Vec<String>,
    /// rsync's `--timeout` (I/O), and `--contimeout` for daemon targets. None = rsync's default.
    pub timeout: Option<Duration>,
    /// Extra arguments appended after the base parameters.
    pub extra: Vec<String>,
}

/// What happens after a failed push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First wait after a failure; doubles up to `max_interval`.
    pub min_interval: Duration,
    /// Longest wait between tries (sersync's `timeToExecute`); also the wait after a
    /// configuration error (bad password, unknown module).
    pub max_interval: Duration,
}

/// Periodic whole-tree push (sersync's `<crontab>`).
#[derive(Debug, Clone)]
pub struct FullSync {
    /// None = off.
    pub interval: Option<Duration>,
    /// More excludes for the periodic full push only, on top of the sync's `exclude`
    /// (which every push uses); None = none more.
    pub exclude: Option<ExcludeSet>,
}

/// Periodic verify (`[sync.verify]`): the worker compares each target with the source
/// every `interval` (see [`crate::verify`]) and keeps the result in the status file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifySchedule {
    /// None = off (the default).
    pub interval: Option<Duration>,
    /// Compare contents (`--checksum`), not only size and mtime.
    pub deep: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub command: Option<CommandHook>,
    pub http: Option<HttpHook>,
}

/// A program run (no shell) after each successful push with the pushed paths.
#[derive(Debug, Clone)]
pub struct CommandHook {
    /// argv. If one word is exactly `{}`, the program is run once per path with `{}`
    /// replaced by the absolute path (sersync's `prefix path suffix`); otherwise the
    /// absolute paths are appended, in chunks.
    pub argv: Vec<String>,
    /// Only paths matching one of these (on the relative path) are passed; None = all.
    pub include: Option<ExcludeSet>,
    /// Kill the hook after this long.
    pub timeout: Duration,
}

/// An HTTP POST of the pushed paths as JSON after each successful push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHook {
    /// `http://host[:port]/path`.
    pub url: String,
    pub timeout: Duration,
}
