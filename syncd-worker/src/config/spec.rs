//! The loaders' common middle. Each loader (`native` for TOML, `sersync` for confxml.xml)
//! turns its file into a [`FileSpec`]: what the file said, with defaults filled in and with
//! the place each value was written. [`build`] then checks every value the same way for
//! both formats and makes the validated [`Config`]. The only I/O here is looking at the
//! source directories and local target paths (exists, is a directory, where it really is).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::dest::{has_password, host_key_checks_off, parse_dest, redacted};
use super::diag::{At, Diags, Pos};
use super::model::*;
use super::params::check_params;
use super::watcher::WatcherChoice;
use crate::exclude::ExcludeSet;
use crate::guard::DeleteGuard;
use crate::state_dir::StateDir;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/syncd";
pub(super) const DEFAULT_DELAY: Duration = Duration::from_millis(50);
pub(super) const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(1);
pub(super) const DEFAULT_MAX_BATCH: i64 = 20_000;
pub(super) const DEFAULT_MAX_QUEUE: i64 = 500_000;
pub(super) const DEFAULT_THREADS: i64 = 2;
pub(super) const DEFAULT_MAX_IN_FLIGHT: i64 = crate::pipeline::DEFAULT_MAX_IN_FLIGHT as i64;
pub(super) const DEFAULT_RSYNC_TIMEOUT: Duration = Duration::from_secs(5 * 60);
pub(super) const DEFAULT_RETRY_MIN: Duration = Duration::from_secs(1);
pub(super) const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(5 * 60);
pub(super) const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
pub(super) const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `[sync.full_sync] interval` (sersync: `<crontab schedule>`): a year (365.25
/// days, humantime's "1year").
pub(super) const MAX_FULL_INTERVAL: Duration = Duration::from_secs(31_557_600);
/// Shortest `[sync.verify] interval`.
pub(super) const MIN_VERIFY_INTERVAL: Duration = Duration::from_secs(10);
/// Longest value of every other duration key — `delay`, `max_delay`, rsync and hook
/// timeouts, retry intervals (sersync: `<timeout time>`, `<failLog timeToExecute>`): a
/// day. Longer waits are mistakes, and unbounded ones overflow `Instant` arithmetic.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(86_400);
const MAX_THREADS: i64 = 64;
const MAX_IN_FLIGHT: i64 = 8;
/// `fs.inotify.max_queued_events` is a C `int` in the kernel (`proc_dointvec_minmax`).
const MAX_QUEUED_EVENTS_LIMIT: i64 = i32::MAX as i64;

/// Which file format a spec came from: decides how keys are named in warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Toml,
    Sersync,
}

/// A whole file, before checking.
#[derive(Debug)]
pub(super) struct FileSpec {
    pub state_dir: Option<At<String>>,
    pub status_file: Option<At<String>>,
    pub metrics_file: Option<At<String>>,
    pub syncs: Vec<SyncSpec>,
    /// Where to point when there is no sync at all.
    pub syncs_at: Pos,
    /// The controller's keys (sersync's confxml.xml has none: all default).
    pub daemon: DaemonSpec,
}

/// `pid_file`, `log_file`, `user`, `group` and `[inotify]`, before checking.
#[derive(Debug, Default)]
pub(super) struct DaemonSpec {
    pub pid_file: Option<At<String>>,
    pub log_file: Option<At<String>>,
    pub user: Option<At<String>>,
    pub group: Option<At<String>>,
    pub max_user_watches: Option<At<i64>>,
    pub max_queued_events: Option<At<i64>>,
    pub persist: bool,
}

/// One sync (a `[[sync]]` block or a sersync `<localpath>`), before checking.
#[derive(Debug)]
pub(super) struct SyncSpec {
    pub format: Format,
    /// Where the block starts: used for whatever the block lacks.
    pub at: Pos,
    pub name: Option<At<String>>,
    pub source: Option<At<String>>,
    pub mode: Mode,
    /// `watcher`; where it was written (the block's start when left out).
    pub watcher: At<WatcherChoice>,
    pub delay: At<Duration>,
    pub max_delay: At<Duration>,
    pub max_batch: At<i64>,
    pub max_queue: At<i64>,
    pub threads: At<i64>,
    pub max_in_flight: At<i64>,
    pub initial_sync: bool,
    /// `max_delete` as written (a number is turned into its digits).
    pub max_delete: Option<At<String>>,
    pub exclude: Vec<At<String>>,
    pub events: EventSet,
    pub events_at: Pos,
    pub rsync_binary: At<String>,
    pub params: Vec<At<String>>,
    pub rsync_timeout: Option<Duration>,
    pub extra: Vec<At<String>>,
    pub retry_min: At<Duration>,
    pub retry_max: At<Duration>,
    pub full_interval: Option<Duration>,
    pub full_exclude: Option<Vec<At<String>>>,
    /// `[sync.verify] interval` (None: off) and `deep`.
    pub verify_interval: Option<At<Duration>>,
    pub verify_deep: bool,
    pub targets: Vec<TargetSpec>,
    pub command_hook: Option<CommandSpec>,
    pub http_hook: Option<HttpSpec>,
}

impl SyncSpec {
    /// A sync starting at `at` with every native default.
    pub fn new(format: Format, at: Pos) -> SyncSpec {
        SyncSpec {
            format,
            at,
            name: None,
            source: None,
            mode: Mode::Files,
            watcher: At::new(WatcherChoice::Auto, at),
            delay: At::new(DEFAULT_DELAY, at),
            max_delay: At::new(DEFAULT_MAX_DELAY, at),
            max_batch: At::new(DEFAULT_MAX_BATCH, at),
            max_queue: At::new(DEFAULT_MAX_QUEUE, at),
            threads: At::new(DEFAULT_THREADS, at),
            max_in_flight: At::new(DEFAULT_MAX_IN_FLIGHT, at),
            initial_sync: false,
            max_delete: None,
            exclude: Vec::new(),
            events: EventSet::default(),
            events_at: at,
            rsync_binary: At::new("rsync".to_string(), at),
            params: vec![At::new("-a".to_string(), at)],
            rsync_timeout: Some(DEFAULT_RSYNC_TIMEOUT),
            extra: Vec::new(),
            retry_min: At::new(DEFAULT_RETRY_MIN, at),
            retry_max: At::new(DEFAULT_RETRY_MAX, at),
            full_interval: None,
            full_exclude: None,
            verify_interval: None,
            verify_deep: false,
            targets: Vec::new(),
            command_hook: None,
            http_hook: None,
        }
    }
}

/// One target, before checking.
#[derive(Debug, Clone)]
pub(super) struct TargetSpec {
    pub at: Pos,
    pub dest: Option<At<String>>,
    pub password_file: Option<At<String>>,
    pub port: Option<At<i64>>,
    pub name: Option<At<String>>,
    pub ssh_args: Option<At<Vec<String>>>,
}

#[derive(Debug, Clone)]
pub(super) struct CommandSpec {
    pub at: Pos,
    pub argv: Vec<String>,
    pub include: Option<Vec<At<String>>>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub(super) struct HttpSpec {
    pub at: Pos,
    pub url: Option<At<String>>,
    pub timeout: Duration,
}

/// Check everything in `file` and build the config. Problems go to `d`; the config
/// returned is only meaningful when `d` has no errors.
pub(super) fn build(file: FileSpec, path: &Path, d: &mut Diags) -> Config {
    let state_dir = absolute(file.state_dir.as_ref(), "state_dir", d)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let status_file = absolute(file.status_file.as_ref(), "status_file", d)
        .unwrap_or_else(|| StateDir::at(&state_dir).status_file());
    let metrics_file = metrics_file(file.metrics_file.as_ref(), &status_file, d);
    if file.syncs.is_empty() {
        d.error_with(
            file.syncs_at,
            "no sync configured: there is nothing to watch",
            &["add a [[sync]] block with `source` and at least one [[sync.target]] (sersync: <localpath watch=...> with a <remote>)"],
        );
    }
    let daemon = build_daemon(&file.daemon, d);
    let mut syncs = Vec::new();
    let mut names: HashMap<String, Pos> = HashMap::new();
    for spec in file.syncs {
        fanotify_needs_root(&spec.watcher, &file.daemon, &daemon, d);
        let name_at = spec
            .name
            .as_ref()
            .or(spec.source.as_ref())
            .map_or(spec.at, |n| n.at);
        let job = build_sync(spec, d);
        if let Some(first) = names.get(&job.name) {
            d.error_with(
                name_at,
                format!("a second sync is named {:?} (the first is at line {})", job.name, first.line),
                &["give each [[sync]] block its own `name`: names key the status and the fail log"],
            );
        } else {
            names.insert(job.name.clone(), name_at);
        }
        syncs.push(job);
    }
    Config {
        path: path.to_path_buf(),
        state_dir,
        status_file,
        metrics_file,
        syncs,
        daemon,
        warnings: Vec::new(),
    }
}

/// `watcher = "fanotify"` needs the worker to keep CAP_SYS_ADMIN, which a worker run as
/// `user` gives up: both keys named, at the watcher's line. (`user = "root"` leaves the
/// worker root, and a `user` that did not resolve has its own error.)
fn fanotify_needs_root(
    watcher: &At<WatcherChoice>,
    spec: &DaemonSpec,
    daemon: &DaemonSettings,
    d: &mut Diags,
) {
    let (Some(run_as), Some(user)) = (&daemon.run_as, &spec.user) else {
        return;
    };
    if watcher.value != WatcherChoice::Fanotify {
        return;
    }
    d.error_with(
        watcher.at,
        format!(
            "watcher = \"fanotify\" cannot work with user = {:?} (line {}): fanotify needs \
             CAP_SYS_ADMIN, which the worker gives up when it runs as `user`",
            run_as.user, user.at.line
        ),
        &["write watcher = \"auto\" (it then uses inotify) or \"inotify\", or remove `user` to run the worker as root"],
    );
}

/// The controller's settings: absolute paths, limits above zero.
fn build_daemon(spec: &DaemonSpec, d: &mut Diags) -> DaemonSettings {
    let limit = |v: &Option<At<i64>>, key: &str, max: i64, d: &mut Diags| -> Option<u64> {
        let v = v.as_ref()?;
        if v.value < 1 || v.value > max {
            let range = if max == i64::MAX {
                "at least 1".to_string()
            } else {
                format!("between 1 and {max}")
            };
            d.error_with(
                v.at,
                format!("inotify {key} is {}; it must be {range}", v.value),
                &["leave it out to let syncd size it; syncd only ever raises the kernel's value"],
            );
            return None;
        }
        u64::try_from(v.value).ok()
    };
    DaemonSettings {
        pid_file: absolute(spec.pid_file.as_ref(), "pid_file", d),
        log_file: absolute(spec.log_file.as_ref(), "log_file", d),
        run_as: super::run_as::resolve(spec.user.as_ref(), spec.group.as_ref(), d),
        inotify: InotifyLimits {
            max_user_watches: limit(&spec.max_user_watches, "max_user_watches", i64::MAX, d),
            max_queued_events: limit(
                &spec.max_queued_events,
                "max_queued_events",
                MAX_QUEUED_EVENTS_LIMIT,
                d,
            ),
            persist: spec.persist,
        },
    }
}

/// An optional absolute path setting.
fn absolute(value: Option<&At<String>>, key: &str, d: &mut Diags) -> Option<PathBuf> {
    let value = value?;
    if !Path::new(&value.value).is_absolute() {
        d.error_with(
            value.at,
            format!("{key} {:?} is not an absolute path", value.value),
            &["write the full path, starting with '/'"],
        );
        return None;
    }
    Some(PathBuf::from(&value.value))
}

/// `metrics_file`: absolute, named `*.prom` (node_exporter's textfile collector reads
/// nothing else), and not the status file.
fn metrics_file(value: Option<&At<String>>, status_file: &Path, d: &mut Diags) -> Option<PathBuf> {
    let path = absolute(value, "metrics_file", d)?;
    let at = value?.at;
    if path.extension().is_none_or(|e| e != "prom") {
        d.error_with(
            at,
            format!("metrics_file {:?} does not end in .prom", path.display().to_string()),
            &["node_exporter's textfile collector reads only *.prom files: e.g. metrics_file = \"/var/lib/prometheus/node-exporter/syncd.prom\""],
        );
        return None;
    }
    if path == status_file {
        d.error_with(
            at,
            "metrics_file is the status file",
            &["give the metrics their own file, e.g. in node_exporter's --collector.textfile.directory"],
        );
        return None;
    }
    Some(path)
}

fn build_sync(spec: SyncSpec, d: &mut Diags) -> SyncJob {
    let (source, source_link) = match &spec.source {
        Some(s) => check_source(s, d),
        None => {
            d.error_with(
                spec.at,
                "this sync has no `source`",
                &["add e.g. source = \"/data\": the absolute path of the directory to watch"],
            );
            (PathBuf::new(), None)
        }
    };
    let name = match &spec.name {
        Some(n) if n.value.trim().is_empty() => {
            d.error(n.at, "name is empty; leave it out to use the source path");
            String::new()
        }
        Some(n) => n.value.clone(),
        None => spec
            .source
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default(),
    };

    if spec.delay.value > spec.max_delay.value {
        d.error_with(
            spec.delay.at,
            format!(
                "delay ({}) is longer than max_delay ({})",
                humantime::format_duration(spec.delay.value),
                humantime::format_duration(spec.max_delay.value)
            ),
            &["make delay at most max_delay: max_delay bounds how long any change may wait"],
        );
    }
    let count = |v: &At<i64>, key: &str, lo: i64, hi: i64, d: &mut Diags| -> usize {
        if v.value < lo || v.value > hi {
            let range = if hi == i64::MAX {
                format!("at least {lo}")
            } else {
                format!("between {lo} and {hi}")
            };
            d.error(v.at, format!("{key} is {}; it must be {range}", v.value));
            return lo as usize;
        }
        usize::try_from(v.value).unwrap_or(usize::MAX)
    };
    let max_batch = count(&spec.max_batch, "max_batch", 1, i64::MAX, d);
    let max_queue = count(&spec.max_queue, "max_queue", 1, i64::MAX, d);
    let threads = count(&spec.threads, "threads", 1, MAX_THREADS, d);
    let max_in_flight = count(&spec.max_in_flight, "max_in_flight", 1, MAX_IN_FLIGHT, d);

    let max_delete = match &spec.max_delete {
        None => DeleteGuard::default(),
        Some(v) => DeleteGuard::parse(&v.value).unwrap_or_else(|e| {
            d.error(v.at, e);
            DeleteGuard::default()
        }),
    };
    let exclude = compile(&spec.exclude, "exclude", d);
    let full_exclude = spec
        .full_exclude
        .as_ref()
        .map(|pats| compile(pats, "full_sync exclude", d));

    let strip = spec.mode == Mode::Files;
    let params = rsync_words(&spec.params, "params", strip, d);
    let extra = rsync_words(&spec.extra, "extra", strip, d);
    if spec.rsync_binary.value.trim().is_empty() {
        d.error(
            spec.rsync_binary.at,
            "rsync binary is empty; leave it out to use \"rsync\" from PATH",
        );
    }

    if spec.retry_min.value.is_zero() {
        d.error_with(
            spec.retry_min.at,
            "retry min_interval is 0",
            &["write a wait such as \"1s\": a target that is down would otherwise be retried without pause"],
        );
    }
    if spec.retry_min.value > spec.retry_max.value {
        d.error(
            spec.retry_min.at,
            format!(
                "retry min_interval ({}) is longer than max_interval ({})",
                humantime::format_duration(spec.retry_min.value),
                humantime::format_duration(spec.retry_max.value)
            ),
        );
    }

    if let Some(i) = spec
        .verify_interval
        .as_ref()
        .filter(|i| i.value < MIN_VERIFY_INTERVAL)
    {
        d.error_with(
            i.at,
            format!(
                "verify interval = \"{}\" is too short: at least {}",
                humantime::format_duration(i.value),
                humantime::format_duration(MIN_VERIFY_INTERVAL)
            ),
            &["each verify compares the whole tree with the target (rsync reads every directory on both sides); write \"6h\" or so, or leave the key out for no periodic verify"],
        );
    }

    let mut targets: Vec<Target> = Vec::new();
    let mut target_names: HashMap<String, Pos> = HashMap::new();
    if spec.targets.is_empty() {
        d.error_with(
            spec.at,
            "this sync has no target",
            &["add a [[sync.target]] block with dest = \"user@host::module\" (sersync: <remote ip=... name=...>)"],
        );
    }
    for t in &spec.targets {
        let Some(target) = build_target(t, &source, spec.format, d) else {
            continue;
        };
        let name_at = t.name.as_ref().or(t.dest.as_ref()).map_or(t.at, |n| n.at);
        if let Some(first) = target_names.get(&target.name) {
            d.error_with(
                name_at,
                format!(
                    "two targets of this sync are named {:?} (the first is at line {})",
                    target.name, first.line
                ),
                &["give one of them its own `name`: names key the status and the fail log"],
            );
        } else {
            target_names.insert(target.name.clone(), name_at);
        }
        targets.push(target);
    }

    let hooks = Hooks {
        command: spec.command_hook.as_ref().map(|h| build_command_hook(h, d)),
        http: spec.http_hook.as_ref().and_then(|h| build_http_hook(h, d)),
    };
    for w in event_warnings(&spec.events, spec.format) {
        d.warn(spec.events_at, format!("sync {name:?}: {w}"));
    }

    SyncJob {
        name,
        source,
        source_link,
        targets,
        events: spec.events,
        exclude,
        delay: spec.delay.value,
        max_delay: spec.max_delay.value,
        max_batch,
        max_queue,
        threads,
        max_in_flight,
        mode: spec.mode,
        watcher: spec.watcher.value,
        initial_sync: spec.initial_sync,
        max_delete,
        rsync: RsyncOptions {
            binary: PathBuf::from(&spec.rsync_binary.value),
            params,
            timeout: spec.rsync_timeout,
            extra,
        },
        retry: RetryPolicy {
            min_interval: spec.retry_min.value,
            max_interval: spec.retry_max.value,
        },
        full_sync: FullSync {
            interval: spec.full_interval,
            exclude: full_exclude,
        },
        verify: VerifySchedule {
            interval: spec.verify_interval.map(|i| i.value),
            deep: spec.verify_deep,
        },
        hooks,
    }
}

/// The source must be an absolute path to an existing directory. Returns it without
/// trailing slashes or `.` components, and, when it is a symbolic link (a release link
/// such as `/var/www/current`), the directory the link leads to now with the link: the
/// watches need the real directory (they never follow a symlink), and the link is
/// resolved once, here, and said so (the log at start, `syncd check`). A link repointed
/// later is a swapped source (`source_id`), followed only on `syncd reload`.
fn check_source(src: &At<String>, d: &mut Diags) -> (PathBuf, Option<PathBuf>) {
    let path = lexical(Path::new(&src.value));
    if !path.is_absolute() {
        d.error_with(
            src.at,
            format!("source {:?} is not an absolute path", src.value),
            &["write the full path of the directory to watch, e.g. \"/data\""],
        );
        return (path, None);
    }
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => d.error(
            src.at,
            format!("source {} is not a directory", path.display()),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => d.error_with(
            src.at,
            format!("source directory {} does not exist", path.display()),
            &["create it, or fix the path"],
        ),
        Err(e) => d.error(src.at, format!("cannot use source {}: {e}", path.display())),
    }
    let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return (path, None);
    }
    match path.canonicalize() {
        Ok(real) => {
            d.warn(
                src.at,
                format!(
                    "source {} is a symlink; watching {} (resolved once: if the link is \
                     repointed, this sync holds its pushes until `syncd reload` follows it)",
                    path.display(),
                    real.display()
                ),
            );
            (real, Some(path))
        }
        // A dangling link: the error above said so.
        Err(_) => (path, None),
    }
}

/// `path` without `.` components, repeated or trailing slashes.
fn lexical(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

/// Where `path` really is: symlinks resolved for the part that exists.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => resolved(parent).join(name),
        _ => path.to_path_buf(),
    }
}

fn build_target(t: &TargetSpec, source: &Path, format: Format, d: &mut Diags) -> Option<Target> {
    let Some(dest) = &t.dest else {
        d.error_with(
            t.at,
            "this target has no `dest`",
            &["add e.g. dest = \"rsync_backup@172.16.1.41::nfsbackup\""],
        );
        return None;
    };
    let mut kind = match parse_dest(&dest.value) {
        Ok(kind) => kind,
        Err(e) if has_password(&dest.value) => {
            let how = match format {
                Format::Toml => {
                    "remove `:password` from dest; put the password alone on the first line of a \
                     file only root can read (e.g. /etc/rsync.password, chmod 600) and set \
                     password_file = \"/etc/rsync.password\" in this [[sync.target]]"
                }
                Format::Sersync => {
                    "remove the password; put it alone on the first line of a file only root \
                     can read (e.g. /etc/rsync.password, chmod 600) and name it in \
                     <auth start=\"true\" users=\"USER\" passwordfile=\"/etc/rsync.password\"/>"
                }
            };
            d.error_with(
                dest.at,
                e,
                &[
                    "a password in the destination would show in `ps`, the log and status.json",
                    how,
                    "ssh targets log in with keys instead; an ssh path with '@' in its first \
                     directory is written host:./dir@x",
                ],
            );
            return None;
        }
        Err(e) => {
            d.error(dest.at, e);
            return None;
        }
    };
    let mut ok = true;
    if let Some(port) = &t.port {
        match (u16::try_from(port.value).ok().filter(|p| *p > 0), &mut kind) {
            (None, _) => {
                d.error(
                    port.at,
                    format!("port {} is not a port number (1-65535)", port.value),
                );
                ok = false;
            }
            (
                Some(p),
                TargetKind::Daemon {
                    port: Some(url), ..
                },
            ) if *url != p => {
                d.error_with(
                    port.at,
                    format!("port {p} disagrees with port {url} in dest"),
                    &["give the port once, in dest or in `port`"],
                );
                ok = false;
            }
            (Some(p), TargetKind::Daemon { port, .. } | TargetKind::Ssh { port, .. }) => {
                *port = Some(p);
            }
            (Some(_), TargetKind::Local { .. }) => {
                d.error(port.at, "port has no meaning for a local target; remove it");
                ok = false;
            }
        }
    }
    if let Some(pw) = &t.password_file {
        match &mut kind {
            TargetKind::Daemon { password_file, .. } if Path::new(&pw.value).is_absolute() => {
                *password_file = Some(PathBuf::from(&pw.value));
            }
            TargetKind::Daemon { .. } => {
                d.error(
                    pw.at,
                    format!("password_file {:?} is not an absolute path", pw.value),
                );
                ok = false;
            }
            _ => {
                let how = match format {
                    Format::Toml => "remove password_file; ssh logs in with keys (see ssh_args)",
                    Format::Sersync => "turn <auth> off; ssh logs in with keys",
                };
                d.error_with(
                    pw.at,
                    "password_file is only for rsync daemon targets (user@host::module)",
                    &[how],
                );
                ok = false;
            }
        }
    }
    if let Some(args) = &t.ssh_args {
        match &mut kind {
            TargetKind::Ssh { ssh_args, .. } => {
                ssh_args.clone_from(&args.value);
                if let Some(warning) = host_key_checks_off(ssh_args) {
                    d.warn(args.at, warning);
                }
            }
            _ => {
                d.error_with(
                    args.at,
                    "ssh_args is only for ssh targets (user@host:/path)",
                    &["remove ssh_args, or make dest an ssh target"],
                );
                ok = false;
            }
        }
    }
    if let TargetKind::Local { path } = &kind {
        ok &= check_local_target(path, source, dest.at, d);
    }
    let name = match &t.name {
        Some(n) if n.value.trim().is_empty() => {
            d.error(n.at, "target name is empty; leave it out to use dest");
            return None;
        }
        Some(n) => n.value.clone(),
        None => dest.value.clone(),
    };
    ok.then_some(Target { name, kind })
}

/// A local target must not overlap its own source: inside it every push would be seen as
/// a change and pushed again; around it a push would copy the tree into itself.
fn check_local_target(target: &Path, source: &Path, at: Pos, d: &mut Diags) -> bool {
    if source.as_os_str().is_empty() || !source.is_absolute() {
        return true; // already reported
    }
    let pairs = [
        (lexical(target), lexical(source)),
        (resolved(target), resolved(source)),
    ];
    for (t, s) in pairs {
        if t.starts_with(&s) {
            d.error_with(
                at,
                format!("local target {} is inside its own source {}", target.display(), source.display()),
                &["every push would change the source and cause another push (a loop); choose a directory outside the source"],
            );
            return false;
        }
        if s.starts_with(&t) {
            d.error_with(
                at,
                format!("local target {} contains the source {}", target.display(), source.display()),
                &["a push would copy the tree into itself (and delete around it); choose a directory outside the source"],
            );
            return false;
        }
    }
    true
}

/// Check a list of rsync words; returns the words to use.
fn rsync_words(words: &[At<String>], key: &str, strip: bool, d: &mut Diags) -> Vec<String> {
    let plain: Vec<String> = words.iter().map(|w| w.value.clone()).collect();
    let checked = check_params(&plain, strip);
    for (i, w) in checked.warnings {
        d.warn(words[i].at, format!("rsync {key}: {w}"));
    }
    for (i, msg, hint) in checked.errors {
        d.error_with(words[i].at, format!("rsync {key}: {msg}"), &[hint]);
    }
    checked.kept
}

/// Compile patterns, reporting each bad one where it was written.
fn compile(patterns: &[At<String>], key: &str, d: &mut Diags) -> ExcludeSet {
    let mut good = true;
    for p in patterns {
        if let Err(e) = regex::bytes::Regex::new(&p.value) {
            good = false;
            let mut detail: Vec<String> = e.to_string().lines().map(String::from).collect();
            detail.push("write a regular expression matched against the path relative to the source, e.g. '\\.swp$' or '^cache/'".to_string());
            let detail: Vec<&str> = detail.iter().map(String::as_str).collect();
            d.error_with(
                p.at,
                format!("{key}: invalid regular expression {:?}", p.value),
                &detail,
            );
        }
    }
    if !good {
        return ExcludeSet::default();
    }
    let values: Vec<&str> = patterns.iter().map(|p| p.value.as_str()).collect();
    ExcludeSet::new(&values).unwrap_or_default()
}

fn build_command_hook(h: &CommandSpec, d: &mut Diags) -> CommandHook {
    if h.argv.first().is_none_or(|p| p.trim().is_empty()) {
        d.error_with(
            h.at,
            "the command hook has no program (argv is empty)",
            &["write e.g. argv = [\"/usr/local/bin/on-pushed\"], or remove [sync.hooks.command]"],
        );
    }
    if h.timeout.is_zero() {
        d.error(
            h.at,
            "the command hook's timeout is 0; write a limit such as \"60s\"",
        );
    }
    CommandHook {
        argv: h.argv.clone(),
        include: h
            .include
            .as_ref()
            .map(|pats| compile(pats, "command hook include", d)),
        timeout: h.timeout,
    }
}

fn build_http_hook(h: &HttpSpec, d: &mut Diags) -> Option<HttpHook> {
    let Some(url) = &h.url else {
        d.error_with(
            h.at,
            "the http hook has no `url`",
            &["write e.g. url = \"http://127.0.0.1:8080/pushed\", or remove [sync.hooks.http]"],
        );
        return None;
    };
    if let Err((msg, hint)) = check_http_url(&url.value) {
        d.error_with(url.at, msg, &[hint]);
        return None;
    }
    if h.timeout.is_zero() {
        d.error(
            h.at,
            "the http hook's timeout is 0; write a limit such as \"10s\"",
        );
        return None;
    }
    Some(HttpHook {
        url: url.value.clone(),
        timeout: h.timeout,
    })
}

/// `http://host[:port]/path`, nothing else. A message never repeats what could be a
/// password in the url.
fn check_http_url(url: &str) -> Result<(), (String, &'static str)> {
    check_http_url_raw(url).map_err(|(message, hint)| {
        let message = message.replace(&format!("{url:?}"), &format!("{:?}", redacted(url)));
        (message, hint)
    })
}

fn check_http_url_raw(url: &str) -> Result<(), (String, &'static str)> {
    const FORM: &str = "write it as http://host[:port]/path";
    if url.starts_with("https://") {
        return Err((
            format!("the http hook cannot use https ({url:?})"),
            "use [sync.hooks.command] to run curl instead, e.g. argv = [\"curl\", \"-fsS\", \
             \"--data-urlencode\", \"path={}\", \"https://cdn.example/refresh\"]",
        ));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err((
            format!("hook url {url:?} does not start with http://"),
            FORM,
        ));
    };
    if url.contains(char::is_whitespace) {
        return Err((format!("hook url {url:?} contains spaces"), FORM));
    }
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err((
            // Not repeated, not even redacted: a lone token before '@' is a secret too.
            "hook url holds a user name or password (before '@')".to_string(),
            "remove it: secrets in a url end up in logs; put a token in the path, or use the command hook",
        ));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, rest)) => (h, Some(rest.strip_prefix(':').unwrap_or(rest))),
            None => ("", None),
        },
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err((format!("hook url {url:?} has no host"), FORM));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err((
                format!("hook url {url:?}: {p:?} is not a port number"),
                FORM,
            ));
        }
    }
    Ok(())
}

/// One line per event toggle that is off and loses changes.
fn event_warnings(ev: &EventSet, format: Format) -> Vec<String> {
    let key = |toml: &str, xml: &str| match format {
        Format::Toml => format!("events.{toml}"),
        Format::Sersync => format!("<inotify><{xml}>"),
    };
    let mut out = Vec::new();
    if !ev.delete {
        out.push(format!(
            "{} is off: files deleted at the source stay on the target",
            key("delete", "delete")
        ));
    }
    if !ev.create_folder {
        out.push(format!(
            "{} is off: new directories are not pushed; only what other toggles catch inside them reaches the target",
            key("create_folder", "createFolder")
        ));
    }
    if !ev.create_file {
        out.push(format!(
            "{} is off: new symlinks, hard links and empty files are not pushed (they raise only IN_CREATE)",
            key("create_file", "createFile")
        ));
    }
    if !ev.close_write && !ev.modify {
        out.push(format!(
            "{} and {} are off: changes to file contents are not pushed",
            key("close_write", "closeWrite"),
            key("modify", "modify")
        ));
    }
    if !ev.move_from {
        out.push(format!(
            "{} is off: files moved or renamed away stay under their old name on the target",
            key("move_from", "moveFrom")
        ));
    }
    if !ev.move_to {
        out.push(format!(
            "{} is off: files moved into the tree or renamed are not pushed under their new name",
            key("move_to", "moveTo")
        ));
    }
    if !ev.attrib {
        out.push(format!(
            "{} is off: chmod/chown (mode, owner and other attribute changes) are not pushed",
            key("attrib", "attrib")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls() {
        let cases = [
            ("http://127.0.0.1:8080/pushed", None),
            ("http://cdn.internal/refresh", None),
            ("http://host", None),
            ("http://[::1]:8080/x", None),
            ("http://[::1]/x", None),
            ("https://cdn.example/refresh", Some("hooks.command")),
            ("ftp://x/y", Some("http://host")),
            ("http://:80/x", Some("http://host")),
            ("http://h:http/x", Some("http://host")),
            ("http://u:pw@h/x", Some("secrets")),
        ];
        for (url, want) in cases {
            match (check_http_url(url), want) {
                (Ok(()), None) => {}
                (Err((_, hint)), Some(w)) => assert!(hint.contains(w), "{url}: {hint}"),
                (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_hook_url_error_never_repeats_a_password() {
        for url in [
            "http://u:S3cr3t@h/x",
            "http://S3cr3t@h/x",
            "http://u:S3cr3t@h x/y",
            "ftp://u:S3cr3t@h/x",
            "https://u:S3cr3t@h/x",
        ] {
            let (message, hint) = check_http_url(url).expect_err(url);
            assert!(!message.contains("S3cr3t"), "{url}: {message}");
            assert!(!hint.contains("S3cr3t"), "{url}: {hint}");
        }
    }

    #[test]
    fn every_losing_toggle_is_named() {
        assert!(event_warnings(&EventSet::default(), Format::Toml).is_empty());
        let all_off = EventSet {
            delete: false,
            create_folder: false,
            create_file: false,
            close_write: false,
            move_from: false,
            move_to: false,
            attrib: false,
            modify: false,
        };
        let got = event_warnings(&all_off, Format::Toml).join("\n");
        for key in [
            "delete",
            "create_folder",
            "create_file",
            "close_write",
            "move_from",
            "move_to",
            "attrib",
        ] {
            assert!(
                got.contains(&format!("events.{key}")),
                "{key} missing in\n{got}"
            );
        }
        // close_write off is fine while modify still pushes content.
        let modify_only = EventSet {
            close_write: false,
            modify: true,
            ..EventSet::default()
        };
        assert!(event_warnings(&modify_only, Format::Toml).is_empty());
        let sersync_stock = EventSet {
            create_file: false,
            attrib: false,
            ..EventSet::default()
        };
        let got = event_warnings(&sersync_stock, Format::Sersync);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].contains("<createFile>")
                && got[0].contains("symlinks, hard links and empty files")
        );
        assert!(got[1].contains("<attrib>") && got[1].contains("chmod/chown"));
    }
}
