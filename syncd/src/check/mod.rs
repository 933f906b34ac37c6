//! `syncd check`: looks at everything a start depends on and prints one line per check,
//! `ok`, `warning` or `problem` (plus `hint` lines), each problem with what to do. Each
//! check returns [`Finding`]s; [`render`] prints them and [`exit_code`] decides (1 when
//! any problem). The classifications (`rsync --version`, an `rsync --list-only` result,
//! the inotify plan) are pure and table-tested; the rest runs rsync and looks at files.
//!
//! Must not: change anything (no sysctl written, no directory created, no file pushed:
//! targets are only listed with `--list-only`); talk to any host but the configured
//! targets; print a password.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use nix::fcntl::{AtFlags, AT_FDCWD};
use nix::unistd::{faccessat, AccessFlags};
use syncd_worker::config::{Config, ConnectTimeouts, SyncJob, Target, TargetKind};
use syncd_worker::process::{Drain, Group, How, Input, Output, Spawn};
use syncd_worker::rsync::probe::parse_version;
use syncd_worker::rsync::{check_password_file, classify};

use crate::settings::Settings;

pub mod as_user;
mod list_only;
mod watcher;
use crate::sysctl::{self, Knob, Plan, SysctlFs, Wants};
use list_only::*;
use watcher::watcher_finding;

/// Connect and I/O timeout of each `rsync --list-only`.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time before a `--list-only` that ignores its own timeouts is killed.
const REACH_GRACE: Duration = Duration::from_secs(5);

/// How a check came out. Ordered: worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    /// Advice that applies whatever the state (not a result).
    Hint,
    /// Worth knowing; the start works.
    Warning,
    /// The start fails or syncd cannot do its job until this is fixed.
    Problem,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Hint => "hint",
            Status::Warning => "warning",
            Status::Problem => "problem",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub status: Status,
    /// What was checked: "rsync", "target backup", "state directory /var/lib/syncd".
    pub subject: String,
    pub message: String,
    /// What to do; every problem has one.
    pub fix: Option<String>,
}

impl Finding {
    fn new(status: Status, subject: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            status,
            subject: subject.into(),
            message: message.into(),
            fix: None,
        }
    }

    fn ok(subject: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding::new(Status::Ok, subject, message)
    }

    fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// What the checks read besides the config: where the sysctls and the persisted file
/// are, and how long a target may take to answer.
#[derive(Debug, Clone)]
pub struct Env {
    pub sysctl: SysctlFs,
    pub persist_path: PathBuf,
    pub reach_timeout: Duration,
}

impl Default for Env {
    fn default() -> Self {
        Env {
            sysctl: SysctlFs::default(),
            persist_path: PathBuf::from(sysctl::PERSIST_FILE),
            reach_timeout: REACH_TIMEOUT,
        }
    }
}

/// Check everything and print what to fix. Exit 0 when all is well (warnings allowed),
/// 1 when there is a problem.
pub fn run(settings: &Settings, config: &Config) -> anyhow::Result<ExitCode> {
    let findings = gather(settings, config, &Env::default());
    let mut out = io::stdout().lock();
    for f in &findings {
        writeln!(out, "{}", render(f))?;
    }
    writeln!(out, "{}", summary(&findings))?;
    Ok(exit_code(&findings))
}

/// 1 when any finding is a problem, else 0.
pub fn exit_code(findings: &[Finding]) -> ExitCode {
    if findings.iter().any(|f| f.status == Status::Problem) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `problem  target backup: message — fix: what to do`, one line.
pub fn render(f: &Finding) -> String {
    let mut line = format!("{:<8} {}: {}", f.status.label(), f.subject, f.message);
    if let Some(fix) = &f.fix {
        line.push_str(" — fix: ");
        line.push_str(fix);
    }
    line
}

fn summary(findings: &[Finding]) -> String {
    let count = |s| findings.iter().filter(|f| f.status == s).count();
    match (count(Status::Problem), count(Status::Warning)) {
        (0, 0) => "all checks passed".to_string(),
        (0, w) => format!("no problems, {w} warning(s)"),
        (p, w) => format!(
            "{p} problem(s), {w} warning(s): syncd will not work until the problems are fixed"
        ),
    }
}

/// Every check, in the order printed.
pub fn gather(settings: &Settings, config: &Config, env: &Env) -> Vec<Finding> {
    let mut out = config_findings(config);
    if let Some(run_as) = &config.daemon.run_as {
        out.extend(as_user::findings(settings, config, run_as));
    }

    let mut binaries: Vec<&Path> = Vec::new();
    for job in &config.syncs {
        if !binaries.contains(&job.rsync.binary.as_path()) {
            binaries.push(&job.rsync.binary);
        }
    }
    for binary in binaries {
        out.push(version_finding(binary, &rsync_version_line(binary)));
    }

    let mut dirs = 0u64;
    // Read only: `check` never moves the worker's state aside.
    let sources = syncd_worker::source_id::Record::peek(&settings.state_dir);
    for job in &config.syncs {
        let (watcher, fanotify) = watcher_finding(job, config.daemon.run_as.as_ref());
        let (finding, n) = source_finding(job, fanotify);
        out.push(finding);
        out.push(watcher);
        dirs = dirs.saturating_add(n);
        if let Some(f) = source_identity_finding(job, &sources) {
            out.push(f);
        }
    }

    let mut daemon_seen = false;
    for job in &config.syncs {
        for target in &job.targets {
            let subject = target_subject(config, job, target);
            match &target.kind {
                TargetKind::Daemon { password_file, .. } => {
                    daemon_seen = true;
                    if let Some(pw) = password_file {
                        out.push(match check_password_file(pw) {
                            Ok(()) => Finding::ok(
                                &subject,
                                format!(
                                    "password file {} passes rsync's checks (no access for others; owned by root when run as root)",
                                    pw.display()
                                ),
                            ),
                            Err(e) => password_problem(&subject, &e),
                        });
                    }
                    out.push(reach(job, target, &subject, env.reach_timeout));
                }
                TargetKind::Ssh { .. } => {
                    out.push(reach(job, target, &subject, env.reach_timeout));
                }
                TargetKind::Local { path } => out.push(local_target_finding(&subject, path)),
            }
        }
    }
    if daemon_seen {
        out.push(munge_hint());
    }

    let pid_dir = settings.pidfile.parent().unwrap_or(Path::new("/"));
    let log_dir = settings.log_file.parent().unwrap_or(Path::new("/"));
    out.push(writable_dir_finding("state directory", &settings.state_dir));
    out.push(writable_dir_finding("pidfile directory", pid_dir));
    out.push(writable_dir_finding("log directory", log_dir));

    out.extend(inotify_findings(config, dirs, env));
    out
}

/// `check_password_file`'s sentence is "what is wrong; what to do": split it.
fn password_problem(subject: &str, sentence: &str) -> Finding {
    match sentence.rsplit_once("; ") {
        Some((what, fix)) => Finding::new(Status::Problem, subject, what).fix(fix),
        None => Finding::new(Status::Problem, subject, sentence)
            .fix("make it a regular file others cannot read or write (chmod 600), owned by root when syncd runs as root"),
    }
}

fn config_findings(config: &Config) -> Vec<Finding> {
    let targets: usize = config.syncs.iter().map(|s| s.targets.len()).sum();
    let mut out = vec![Finding::ok(
        "config",
        format!(
            "{} loaded: {} sync(s), {} target(s)",
            config.path.display(),
            config.syncs.len(),
            targets
        ),
    )];
    out.extend(
        config
            .warnings
            .iter()
            .map(|w| Finding::new(Status::Warning, "config", w.clone())),
    );
    out
}

/// `target NAME`, with the sync's name when there are several syncs.
fn target_subject(config: &Config, job: &SyncJob, target: &Target) -> String {
    if config.syncs.len() > 1 {
        format!("target {} (sync {})", target.name, job.name)
    } else {
        format!("target {}", target.name)
    }
}

/// Where `binary` is: itself when it holds a `/`, else the first match on `$PATH`.
fn resolve(binary: &Path) -> Option<PathBuf> {
    if binary.as_os_str().as_bytes().contains(&b'/') {
        return Some(binary.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

/// The first line of `rsync --version` (after the binary's full path), or why it could
/// not be run.
fn rsync_version_line(binary: &Path) -> Result<String, String> {
    syncd_worker::rsync::probe::version_line(binary)
        .map(|v| v.line)
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))
}

/// `rsync` for the default binary, else `rsync /its/path`.
fn rsync_subject(binary: &Path) -> String {
    if binary == Path::new("rsync") {
        "rsync".to_string()
    } else {
        format!("rsync {}", binary.display())
    }
}

/// The rsync binary: found, really rsync, and not a version with known trouble.
fn version_finding(binary: &Path, line: &Result<String, String>) -> Finding {
    let subject = rsync_subject(binary);
    let line = match line {
        Ok(line) => line,
        Err(e) => {
            return Finding::new(Status::Problem, subject, e.clone()).fix(
                "install rsync (apt-get install rsync / yum install rsync), or set \
                 rsync.binary to its full path",
            )
        }
    };
    match parse_version(line) {
        None => Finding::new(
            Status::Problem,
            subject,
            format!("--version printed {line:?}, not an rsync version line"),
        )
        .fix("set rsync.binary to the real rsync"),
        Some(v) if v < (3, 1, 0) => Finding::new(
            Status::Warning,
            subject,
            format!(
                "{line}: older than 3.1.0, no --delete-missing-args; every batch uses the \
                 slower filter form"
            ),
        )
        .fix("upgrade rsync (3.2.3 or later)"),
        Some((3, 4, 3)) => Finding::new(
            Status::Warning,
            subject,
            format!(
                "{line}: 3.4.3 rejects --delete-missing-args with --files-from (\"invalid file \
                 mode\", RsyncProject/rsync#910) and breaks some daemon reads (#897); syncd \
                 falls back to the slower filter form"
            ),
        )
        .fix("use a release with the fix for #910 (PR #953), on this host and on the targets"),
        Some(_) => {
            let at = resolve(binary).unwrap_or_else(|| binary.to_path_buf());
            Finding::ok(subject, format!("{}: {line}", at.display()))
        }
    }
}

/// The source is a readable directory; also returns its directory count (the inotify
/// watches it needs: none under `watcher = "fanotify"`).
fn source_finding(job: &SyncJob, fanotify: bool) -> (Finding, u64) {
    let subject = format!("source {}", job.source.display());
    if !job.source.is_dir() {
        let f = Finding::new(Status::Problem, subject, "is not a directory (any more)")
            .fix("create it, or fix `source` in the config");
        return (f, 0);
    }
    if !accessible(&job.source, AccessFlags::R_OK | AccessFlags::X_OK) {
        let f = Finding::new(Status::Problem, subject, "cannot be read by this user")
            .fix("run syncd as a user who can read the whole tree (usually root)");
        return (f, 0);
    }
    if fanotify {
        let f = Finding::ok(
            subject,
            "readable (fanotify: no directory watched one by one)",
        );
        return (f, 0);
    }
    let dirs = syncd_worker::walk::count_dirs(&job.source, &job.exclude);
    let f = Finding::ok(
        subject,
        format!("readable, {dirs} directories to watch (excludes left out)"),
    );
    (f, dirs)
}

/// Is the source still the directory the daemon watched (`sources.json`)? None for a
/// sync that has never been watched (nothing to compare with).
fn source_identity_finding(
    job: &SyncJob,
    sources: &syncd_worker::source_id::Record,
) -> Option<Finding> {
    let expected = sources.expected(&job.name, job.source_path())?;
    let subject = format!("source {}", job.source_path().display());
    Some(match expected.check_job(job) {
        Ok(()) => Finding::ok(
            subject,
            if expected.mount_point {
                "the same mounted file system as syncd watched before"
            } else {
                "the same directory as syncd watched before"
            },
        ),
        Err(why) => Finding::new(
            Status::Problem,
            subject,
            format!("is not the directory syncd watched before: {why}"),
        )
        .fix(
            "mount the source's file system (syncd pushes nothing from another directory and resumes when it is back); if the new directory is right, `syncd sync --full` accepts it",
        ),
    })
}

/// `faccessat(2)` with the effective ids (a path with a NUL byte is not accessible).
fn accessible(path: &Path, mode: AccessFlags) -> bool {
    faccessat(AT_FDCWD, path, mode, AtFlags::AT_EACCESS).is_ok()
}

/// A directory syncd must write to: writable, or creatable under a writable ancestor.
fn writable_dir_finding(what: &str, path: &Path) -> Finding {
    let subject = format!("{what} {}", path.display());
    if path.is_dir() {
        return if accessible(path, AccessFlags::W_OK | AccessFlags::X_OK) {
            Finding::ok(subject, "writable")
        } else {
            Finding::new(Status::Problem, subject, "is not writable by this user")
                .fix("chown it to the user syncd runs as, or choose another path")
        };
    }
    if path.exists() {
        return Finding::new(Status::Problem, subject, "exists but is not a directory")
            .fix("remove it, or choose another path");
    }
    match path.ancestors().skip(1).find(|a| a.exists()) {
        Some(a) if a.is_dir() && accessible(a, AccessFlags::W_OK | AccessFlags::X_OK) => {
            Finding::ok(subject, "does not exist yet; syncd will create it")
        }
        Some(a) => Finding::new(
            Status::Problem,
            subject,
            format!(
                "does not exist and cannot be created ({} is not writable)",
                a.display()
            ),
        )
        .fix(format!(
            "as root: mkdir -p {} and chown it to the user syncd runs as",
            path.display()
        )),
        None => Finding::new(Status::Problem, subject, "no existing parent directory")
            .fix("use an absolute path"),
    }
}

/// A local target: a writable directory, or one rsync can create (its parent exists).
fn local_target_finding(subject: &str, path: &Path) -> Finding {
    if path.is_dir() {
        return if accessible(path, AccessFlags::W_OK | AccessFlags::X_OK) {
            Finding::ok(
                subject,
                format!("{} is a writable directory", path.display()),
            )
        } else {
            Finding::new(
                Status::Problem,
                subject,
                format!("{} is not writable by this user", path.display()),
            )
            .fix("chown it to the user syncd runs as, or run syncd as root")
        };
    }
    if path.exists() {
        return Finding::new(
            Status::Problem,
            subject,
            format!("{} is not a directory", path.display()),
        )
        .fix("point dest at a directory");
    }
    match path.parent() {
        Some(p) if p.is_dir() && accessible(p, AccessFlags::W_OK | AccessFlags::X_OK) => {
            Finding::ok(
                subject,
                format!(
                    "{} does not exist yet; the first push creates it",
                    path.display()
                ),
            )
        }
        Some(p) => Finding::new(
            Status::Problem,
            subject,
            format!(
                "{} does not exist and rsync can only create its last component",
                path.display()
            ),
        )
        .fix(format!("mkdir -p {}", p.display())),
        None => Finding::new(Status::Problem, subject, "not a usable path").fix("fix dest"),
    }
}

fn munge_hint() -> Finding {
    Finding::new(
        Status::Hint,
        "rsync daemon targets",
        "syncd cannot see the daemon's rsyncd.conf: a module with `use chroot = no` rewrites \
         every symlink (munge symlinks defaults to yes there), and as root the daemon writes as \
         nobody unless uid/gid are set",
    )
    .fix(
        "in each module set `munge symlinks = no`, `read only = no`, `uid`/`gid` of the \
         files' owner, `auth users` and a `secrets file` of mode 600",
    )
}

/// `fs.inotify.*` against the directories to watch, and the persisted file.
fn inotify_findings(config: &Config, dirs: u64, env: &Env) -> Vec<Finding> {
    let current = match sysctl::read_current(&env.sysctl) {
        Ok(c) => c,
        Err(e) => {
            return vec![
                Finding::new(Status::Warning, "inotify limits", e.to_string()).fix(
                    "syncd cannot tell whether the watch limit is enough; make /proc/sys readable",
                ),
            ]
        }
    };
    let plan = sysctl::plan(
        current,
        Wants::from_config(&config.daemon.inotify, Some(dirs)),
    );
    let writable = Knob::ALL.map(|k| env.sysctl.writable(k).err().map(|e| e.to_string()));
    let mut out = limit_findings(&plan, &writable);
    if config.daemon.inotify.persist {
        out.push(persist_finding(&env.persist_path, &plan));
    }
    out
}

/// One finding per knob. `denied[i]` is why knob `Knob::ALL[i]` cannot be written (None:
/// it can, so syncd raises it: `max_queued_events` at start, `max_user_watches` when the
/// worker runs out).
fn limit_findings(plan: &Plan, denied: &[Option<String>; 2]) -> Vec<Finding> {
    Knob::ALL
        .iter()
        .zip(denied)
        .map(|(&knob, denied)| {
            let cur = plan.current.get(knob);
            let want = plan.target.get(knob);
            let subject = knob.key();
            let dirs = plan.dirs.unwrap_or(0);
            let need = match knob {
                Knob::MaxUserWatches => format!(" for {dirs} directories"),
                Knob::MaxQueuedEvents => String::new(),
            };
            if want <= cur {
                return Finding::ok(subject, format!("{cur}, enough{need}"));
            }
            let short = knob == Knob::MaxUserWatches && cur < dirs;
            let fix = format!(
                "as root: sysctl -w {subject}={want}, and set persist = true in [inotify] (or \
                 write it to {}) to keep it after a reboot",
                sysctl::PERSIST_FILE
            );
            match denied {
                None => {
                    let when = match knob {
                        Knob::MaxUserWatches => {
                            "syncd raises it when its worker runs out of watches"
                        }
                        Knob::MaxQueuedEvents => "`syncd start` raises it",
                    };
                    let msg = format!("{cur}, below the {want} wanted{need}; {when}");
                    if short {
                        Finding::new(
                            Status::Warning,
                            subject,
                            format!("{msg} (too low to watch them all now)"),
                        )
                        .fix(format!("run `syncd start` as root, or {fix}"))
                    } else {
                        Finding::ok(subject, msg)
                    }
                }
                Some(why) => {
                    let status = if short {
                        Status::Problem
                    } else {
                        Status::Warning
                    };
                    let msg = if short {
                        format!(
                            "{cur} is too low to watch {dirs} directories, and syncd cannot \
                             raise it ({why})"
                        )
                    } else {
                        format!(
                            "{cur}, below the {want} wanted{need}, and syncd cannot raise \
                             it ({why})"
                        )
                    };
                    Finding::new(status, subject, msg).fix(fix)
                }
            }
        })
        .collect()
}

fn persist_finding(path: &Path, plan: &Plan) -> Finding {
    let subject = path.display().to_string();
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Finding::new(Status::Warning, subject, format!("cannot read it: {e}"))
                .fix("check its permissions")
        }
    };
    match sysctl::persist_content(existing.as_deref(), plan.target) {
        Ok(None) => Finding::ok(subject, "holds the wanted values"),
        Ok(Some(_)) => {
            let dir = path.parent().unwrap_or(Path::new("/"));
            let can = match path.exists() {
                true => accessible(path, AccessFlags::W_OK) && accessible(dir, AccessFlags::W_OK),
                false => writable_dir_finding("", dir).status == Status::Ok,
            };
            if can {
                Finding::ok(
                    subject,
                    "persist = true: `syncd start` writes the wanted values",
                )
            } else {
                Finding::new(
                    Status::Warning,
                    subject,
                    "persist = true, but this user cannot write it",
                )
                .fix("run syncd start as root once, or write the values by hand")
            }
        }
        Err(keys) => Finding::new(
            Status::Warning,
            subject,
            format!(
                "holds settings that are not syncd's ({}); syncd will not rewrite it",
                keys.join(", ")
            ),
        )
        .fix("move those settings to another file in /etc/sysctl.d"),
    }
}

#[cfg(test)]
mod tests;
