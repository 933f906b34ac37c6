//! `syncd check`: looks at everything a start depends on and prints one line per check,
//! `ok`, `warning` or `problem` (plus `hint` lines), each problem with what to do. Each
//! check returns [`Finding`]s; [`render`] prints them and [`exit_code`] decides (1 when
//! any problem). The classifications (`rsync --version`, an `rsync --list-only` result,
//! the inotify plan) are pure and table-tested; the rest runs rsync and looks at files.
//!
//! Must not: change anything (no sysctl written, no directory created, no file pushed:
//! targets are only listed with `--list-only`); talk to any host but the configured
//! targets; print a password.

use std::ffi::{CString, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use syncd_worker::config::{Config, SyncJob, Target, TargetKind};
use syncd_worker::rsync::args::quote_rsh_word;
use syncd_worker::rsync::probe::parse_version;
use syncd_worker::rsync::{check_password_file, classify, dest_arg};

use crate::settings::Settings;
use crate::sysctl::{self, Knob, Plan, SysctlFs, Wants};

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
    for job in &config.syncs {
        let (finding, n) = source_finding(job);
        out.push(finding);
        dirs = dirs.saturating_add(n);
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
                                    "password file {} is private and owned by this user",
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
            .fix("make it a regular file of mode 600, owned by the user syncd runs as"),
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
    let out = Command::new(binary)
        .arg("--version")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
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

/// The source is a readable directory; also returns its directory count.
fn source_finding(job: &SyncJob) -> (Finding, u64) {
    let subject = format!("source {}", job.source.display());
    if !job.source.is_dir() {
        let f = Finding::new(Status::Problem, subject, "is not a directory (any more)")
            .fix("create it, or fix `source` in the config");
        return (f, 0);
    }
    if !accessible(&job.source, libc::R_OK | libc::X_OK) {
        let f = Finding::new(Status::Problem, subject, "cannot be read by this user")
            .fix("run syncd as a user who can read the whole tree (usually root)");
        return (f, 0);
    }
    let dirs = syncd_worker::walk::count_dirs(&job.source, &job.exclude);
    let f = Finding::ok(
        subject,
        format!("readable, {dirs} directories to watch (excludes left out)"),
    );
    (f, dirs)
}

/// `faccessat(2)` with the effective ids.
fn accessible(path: &Path, mode: libc::c_int) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; faccessat only
    // reads it.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

/// A directory syncd must write to: writable, or creatable under a writable ancestor.
fn writable_dir_finding(what: &str, path: &Path) -> Finding {
    let subject = format!("{what} {}", path.display());
    if path.is_dir() {
        return if accessible(path, libc::W_OK | libc::X_OK) {
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
        Some(a) if a.is_dir() && accessible(a, libc::W_OK | libc::X_OK) => {
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
        return if accessible(path, libc::W_OK | libc::X_OK) {
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
        Some(p) if p.is_dir() && accessible(p, libc::W_OK | libc::X_OK) => Finding::ok(
            subject,
            format!(
                "{} does not exist yet; the first push creates it",
                path.display()
            ),
        ),
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

/// The argv of the `rsync --list-only` that tests a daemon or ssh target.
fn list_only_args(target: &Target, timeout: Duration) -> Vec<OsString> {
    let secs = timeout.as_secs().max(1);
    let mut args: Vec<OsString> = vec!["--list-only".into(), format!("--timeout={secs}").into()];
    match &target.kind {
        TargetKind::Daemon {
            port,
            password_file,
            ..
        } => {
            args.push(format!("--contimeout={secs}").into());
            if let Some(p) = port {
                args.push(format!("--port={p}").into());
            }
            if let Some(pw) = password_file {
                let mut a = OsString::from("--password-file=");
                a.push(pw);
                args.push(a);
            }
        }
        TargetKind::Ssh { port, ssh_args, .. } => {
            let mut words = vec!["ssh".to_string()];
            if let Some(p) = port {
                words.extend(["-p".to_string(), p.to_string()]);
            }
            words.extend([
                "-o".to_string(),
                "BatchMode=yes".to_string(),
                "-o".to_string(),
                format!("ConnectTimeout={secs}"),
            ]);
            words.extend(ssh_args.iter().cloned());
            let rsh: Vec<String> = words.iter().map(|w| quote_rsh_word(w)).collect();
            args.push("-e".into());
            args.push(rsh.join(" ").into());
        }
        TargetKind::Local { .. } => {}
    }
    args.push(dest_arg(target));
    args
}

/// How a `--list-only` run ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ran {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stderr: String,
    /// Killed after the deadline.
    pub timed_out: bool,
}

fn reach(job: &SyncJob, target: &Target, subject: &str, timeout: Duration) -> Finding {
    let mut cmd = Command::new(&job.rsync.binary);
    cmd.args(list_only_args(target, timeout)).env("LC_ALL", "C");
    match run_bounded(cmd, timeout + REACH_GRACE) {
        Ok(ran) => reach_finding(subject, target, &ran, timeout),
        Err(e) => Finding::new(
            Status::Problem,
            subject,
            format!("cannot run {}: {e}", job.rsync.binary.display()),
        )
        .fix("install rsync, or set rsync.binary to its full path"),
    }
}

/// Run `cmd` in a session of its own (no terminal: rsync and ssh cannot stop to ask for
/// a password), stdout discarded, stderr kept; kill its process group after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> io::Result<Ran> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent; it is
    // the only thing run between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let (tx, rx) = mpsc::channel::<()>();
    let mut stdout = child.stdout.take().expect("stdout was piped");
    let tx_out = tx.clone();
    let out_thread = std::thread::spawn(move || {
        let _ = io::copy(&mut stdout, &mut io::sink());
        let _ = tx_out.send(());
    });
    let mut stderr = child.stderr.take().expect("stderr was piped");
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.by_ref().take(64 * 1024).read_to_end(&mut buf);
        let _ = io::copy(&mut stderr, &mut io::sink());
        let _ = tx.send(());
        buf
    });
    // Both pipes close when rsync (and its ssh) are gone.
    let deadline = Instant::now() + limit;
    let mut closed = 0;
    let mut timed_out = false;
    while closed < 2 {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(()) => closed += 1,
            Err(_) => {
                timed_out = true;
                break;
            }
        }
    }
    if timed_out {
        let pid = libc::pid_t::try_from(child.id()).unwrap_or(0);
        if pid > 0 {
            // SAFETY: `pid` is our child, not yet reaped, and the leader of its own
            // session and process group (setsid above), so the group is ours to signal.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    let status = child.wait()?;
    let _ = out_thread.join();
    let stderr = err_thread.join().unwrap_or_default();
    Ok(Ran {
        code: status.code(),
        signal: status.signal(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        timed_out,
    })
}

/// What a `--list-only` result means for this target, and what to do about it.
fn reach_finding(subject: &str, target: &Target, ran: &Ran, timeout: Duration) -> Finding {
    let (host, port) = match &target.kind {
        TargetKind::Daemon { host, port, .. } => (host.as_str(), port.unwrap_or(873)),
        TargetKind::Ssh { host, port, .. } => (host.as_str(), port.unwrap_or(22)),
        TargetKind::Local { .. } => ("localhost", 0),
    };
    if ran.timed_out {
        return Finding::new(
            Status::Problem,
            subject,
            format!(
                "no answer from {host}:{port} within {}s",
                timeout.as_secs() + REACH_GRACE.as_secs()
            ),
        )
        .fix(format!(
            "check that {host} is up and that a firewall lets port {port} through"
        ));
    }
    if ran.code == Some(0) && ran.signal.is_none() {
        let how = match target.kind {
            TargetKind::Ssh { .. } => "reachable over ssh (rsync --list-only works)",
            _ => "reachable, login and module ok (rsync --list-only works)",
        };
        return Finding::ok(subject, how);
    }
    let outcome = classify(ran.code, ran.signal, &ran.stderr);
    let err = &ran.stderr;
    let (status, fix) = if err.contains("auth failed") {
        let fix = match &target.kind {
            TargetKind::Daemon {
                user,
                password_file: Some(pw),
                ..
            } => format!(
                "the first line of {} must be the password of {} in the daemon's secrets file, \
                 and that user must be in the module's `auth users`",
                pw.display(),
                user.as_deref().unwrap_or("the user")
            ),
            _ => "the module wants a password: set password_file".to_string(),
        };
        (Status::Problem, fix)
    } else if err.contains("Unknown module") {
        let module = match &target.kind {
            TargetKind::Daemon { module, .. } => module.split('/').next().unwrap_or(module),
            _ => "",
        };
        (
            Status::Problem,
            format!(
                "the daemon on {host}:{port} has no module {module:?}; `rsync --port={port} \
                 {host}::` lists the modules it offers"
            ),
        )
    } else if err.contains("max connections") {
        (
            Status::Warning,
            "the daemon is busy; syncd retries, but raise `max connections` (0 = unlimited) \
             if it stays busy"
                .to_string(),
        )
    } else if err.contains("Connection refused") {
        (
            Status::Problem,
            match target.kind {
                TargetKind::Ssh { .. } => {
                    format!("nothing listens on {host}:{port}: start sshd, or fix the host or port")
                }
                _ => format!(
                    "no rsync daemon listens on {host}:{port}: start it (`systemctl start rsync` \
                     or `rsync --daemon`), or fix the host or port"
                ),
            },
        )
    } else if err.contains("Permission denied (publickey")
        || err.contains("Host key verification failed")
    {
        (
            Status::Problem,
            format!(
                "ssh cannot log in without a prompt: as the user syncd runs as, `ssh -o \
                 BatchMode=yes {host} true` must work (key in authorized_keys, host key in \
                 known_hosts)"
            ),
        )
    } else if err.contains("Name or service not known")
        || err.contains("Could not resolve")
        || err.contains("failed to resolve")
        || err.contains("Temporary failure in name resolution")
    {
        (
            Status::Problem,
            format!("the host name {host} does not resolve: fix it or use an IP address"),
        )
    } else if matches!(ran.code, Some(30 | 35)) || err.contains("timed out") {
        (
            Status::Problem,
            format!("check that {host} is up and that a firewall lets port {port} through"),
        )
    } else if err.contains("No such file or directory") || err.contains("chdir failed") {
        (
            Status::Problem,
            "the directory on the target does not exist: create it, or fix dest".to_string(),
        )
    } else {
        (
            Status::Problem,
            "run the same rsync --list-only by hand to see more".to_string(),
        )
    };
    Finding::new(status, subject, outcome.message).fix(fix)
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
    let plan = sysctl::plan(current, Wants::from_config(&config.daemon.inotify, dirs));
    let writable = Knob::ALL.map(|k| env.sysctl.writable(k).err().map(|e| e.to_string()));
    let mut out = limit_findings(&plan, &writable);
    if config.daemon.inotify.persist {
        out.push(persist_finding(&env.persist_path, &plan));
    }
    out
}

/// One finding per knob. `denied[i]` is why knob `Knob::ALL[i]` cannot be written (None:
/// it can, so `syncd start` raises it).
fn limit_findings(plan: &Plan, denied: &[Option<String>; 2]) -> Vec<Finding> {
    Knob::ALL
        .iter()
        .zip(denied)
        .map(|(&knob, denied)| {
            let cur = plan.current.get(knob);
            let want = plan.target.get(knob);
            let subject = knob.key();
            let need = match knob {
                Knob::MaxUserWatches => format!(" for {} directories", plan.dirs),
                Knob::MaxQueuedEvents => String::new(),
            };
            if want <= cur {
                return Finding::ok(subject, format!("{cur}, enough{need}"));
            }
            let short = knob == Knob::MaxUserWatches && cur < plan.dirs;
            let fix = format!(
                "as root: sysctl -w {subject}={want}, and set persist = true in [inotify] (or \
                 write it to {}) to keep it after a reboot",
                sysctl::PERSIST_FILE
            );
            match denied {
                None => {
                    let msg =
                        format!("{cur}, below the {want} wanted{need}; `syncd start` raises it");
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
                            "{cur} is too low to watch {} directories, and syncd cannot \
                             raise it ({why})",
                            plan.dirs
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
                true => accessible(path, libc::W_OK) && accessible(dir, libc::W_OK),
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
mod tests {
    use super::*;
    use std::fs;
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
    use std::os::unix::fs::PermissionsExt;
    use std::process::Child;

    use crate::sysctl::Limits;

    const USER: &str = "checkuser";
    const PASSWORD: &str = "check-secret-pw";
    const MODULE: &str = "mod";

    fn write_private(path: &Path, text: &str) {
        fs::write(path, text).expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    }

    fn free_port() -> u16 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        l.local_addr().expect("addr").port()
    }

    fn accepts(port: u16) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    }

    /// A real `rsync --daemon --no-detach` on 127.0.0.1 with one module needing a
    /// password. Killed (by its pid) and its tempdir removed on drop.
    struct Daemon {
        dir: tempfile::TempDir,
        port: u16,
        child: Child,
    }

    impl Daemon {
        fn start() -> Daemon {
            let dir = tempfile::tempdir().expect("tempdir");
            let d = dir.path();
            fs::create_dir(d.join("module")).expect("mkdir");
            write_private(&d.join("secrets"), &format!("{USER}:{PASSWORD}\n"));
            write_private(&d.join("good.pw"), &format!("{PASSWORD}\n"));
            write_private(&d.join("bad.pw"), "wrong-password\n");
            let uid = if is_root() {
                "uid = root\ngid = root\n"
            } else {
                ""
            };
            fs::write(
                d.join("rsyncd.conf"),
                format!(
                    "pid file = {d}/rsyncd.pid\nlog file = {d}/rsyncd.log\nuse chroot = no\n\
                     reverse lookup = no\n{uid}[{MODULE}]\npath = {d}/module\nread only = no\n\
                     munge symlinks = no\nauth users = {USER}\nsecrets file = {d}/secrets\n",
                    d = d.display()
                ),
            )
            .expect("write rsyncd.conf");
            let mut last = String::new();
            // The free port may be taken before rsync binds it: try a few.
            for _ in 0..5 {
                let port = free_port();
                let _ = fs::remove_file(d.join("rsyncd.pid"));
                let mut child = Command::new("rsync")
                    .arg("--daemon")
                    .arg("--no-detach")
                    .arg(format!("--config={}", d.join("rsyncd.conf").display()))
                    .arg("--address=127.0.0.1")
                    .arg(format!("--port={port}"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("run rsync --daemon (rsync must be installed)");
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    if let Ok(Some(st)) = child.try_wait() {
                        last = format!("rsync --daemon exited: {st}");
                        break;
                    }
                    if accepts(port) {
                        return Daemon { dir, port, child };
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        last = format!("port {port} not accepting after 10s");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            panic!("rsync daemon did not start: {last}");
        }

        fn target(&self, name: &str, module: &str, pw: &str) -> Target {
            Target {
                name: name.into(),
                kind: TargetKind::Daemon {
                    user: Some(USER.into()),
                    host: "127.0.0.1".into(),
                    module: module.into(),
                    port: Some(self.port),
                    password_file: Some(self.dir.path().join(pw)),
                },
            }
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn is_root() -> bool {
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        unsafe { libc::geteuid() == 0 }
    }

    /// A loaded config whose one sync has `targets` (the source is a fresh tempdir).
    fn config_with(targets: Vec<Target>) -> (tempfile::TempDir, Config) {
        let src = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(src.path().join("a/b")).expect("mkdir");
        let text = format!(
            "[[sync]]\nsource = \"{}\"\n[[sync.target]]\ndest = \"/nonexistent-check-target\"\n",
            src.path().display()
        );
        let mut config =
            syncd_worker::config::parse(text.as_bytes(), Path::new("/etc/syncd/t.toml"))
                .expect("config");
        config.syncs[0].targets = targets;
        (src, config)
    }

    fn job_of(config: &Config) -> &SyncJob {
        &config.syncs[0]
    }

    #[test]
    fn real_daemon_ok_wrong_password_wrong_module_and_nothing_listening() {
        let daemon = Daemon::start();
        let closed = free_port();
        let nobody = Target {
            name: "nobody-home".into(),
            kind: TargetKind::Daemon {
                user: Some(USER.into()),
                host: "127.0.0.1".into(),
                module: MODULE.into(),
                port: Some(closed),
                password_file: Some(daemon.dir.path().join("good.pw")),
            },
        };
        let (_src, config) = config_with(vec![
            daemon.target("good", MODULE, "good.pw"),
            daemon.target("badpw", MODULE, "bad.pw"),
            daemon.target("badmod", "nosuchmodule", "good.pw"),
            nobody,
        ]);
        let job = job_of(&config);
        let t = Duration::from_secs(5);
        let got: Vec<Finding> = job
            .targets
            .iter()
            .map(|target| reach(job, target, &format!("target {}", target.name), t))
            .collect();
        let lines: Vec<String> = got.iter().map(render).collect();
        let show = lines.join("\n");
        assert_eq!(got[0].status, Status::Ok, "{show}");
        assert!(
            lines[0].starts_with("ok       target good: reachable"),
            "{show}"
        );
        assert_eq!(got[1].status, Status::Problem, "{show}");
        assert!(
            lines[1].starts_with("problem  target badpw: ")
                && lines[1].contains("auth failed on module mod")
                && lines[1].contains("bad.pw must be the password of checkuser"),
            "{show}"
        );
        assert_eq!(got[2].status, Status::Problem, "{show}");
        assert!(
            lines[2].starts_with("problem  target badmod: ")
                && lines[2].contains("Unknown module 'nosuchmodule'")
                && lines[2].contains("has no module \"nosuchmodule\""),
            "{show}"
        );
        assert_eq!(got[3].status, Status::Problem, "{show}");
        assert!(
            lines[3].starts_with("problem  target nobody-home: ")
                && lines[3].contains("Connection refused")
                && lines[3].contains(&format!("no rsync daemon listens on 127.0.0.1:{closed}")),
            "{show}"
        );
        // No password file for a module that wants one: rsync has no terminal to ask on
        // (its own session), so it fails at once instead of hanging.
        let mut nopw = daemon.target("nopw", MODULE, "good.pw");
        if let TargetKind::Daemon { password_file, .. } = &mut nopw.kind {
            *password_file = None;
        }
        let started = Instant::now();
        let f = reach(job, &nopw, "target nopw", t);
        assert!(
            started.elapsed() < t,
            "{:?}: {}",
            started.elapsed(),
            render(&f)
        );
        assert_eq!(f.status, Status::Problem, "{}", render(&f));
        assert!(
            render(&f).contains("auth failed") && render(&f).contains("set password_file"),
            "{}",
            render(&f)
        );
        // Nothing was written to the module.
        let entries = fs::read_dir(daemon.dir.path().join("module"))
            .expect("readdir")
            .count();
        assert_eq!(entries, 0);
    }

    #[test]
    fn gather_over_a_whole_config_and_the_exit_code() {
        let daemon = Daemon::start();
        let out = tempfile::tempdir().expect("tempdir");
        let proc = out.path().join("proc");
        fs::create_dir_all(proc.join("fs/inotify")).expect("mkdir");
        fs::write(proc.join("fs/inotify/max_user_watches"), "8192\n").expect("write");
        fs::write(proc.join("fs/inotify/max_queued_events"), "16384\n").expect("write");
        let env = Env {
            sysctl: SysctlFs::new(&proc),
            persist_path: out.path().join("sysctl.d/90-syncd.conf"),
            reach_timeout: Duration::from_secs(5),
        };
        let local = Target {
            name: "local".into(),
            kind: TargetKind::Local {
                path: out.path().join("backup"),
            },
        };
        let settings = Settings {
            config: "/etc/syncd/t.toml".into(),
            pidfile: out.path().join("run/syncd.pid"),
            lockfile: out.path().join("run/syncd.lock"),
            log_file: out.path().join("log/syncd.log"),
            state_dir: out.path().join("state"),
            state_dir_flag: true,
            status_file: out.path().join("state/status.json"),
            controller_file: out.path().join("state/controller.json"),
            worker_bin: "syncd-worker".into(),
            log_level: "info".into(),
        };

        let (_src, mut config) = config_with(vec![daemon.target("good", MODULE, "good.pw"), local]);
        config.daemon.inotify.persist = true;
        let found = gather(&settings, &config, &env);
        let show: Vec<String> = found.iter().map(render).collect();
        let show = show.join("\n");
        assert!(found.iter().all(|f| f.status <= Status::Hint), "{show}");
        assert_eq!(exit_code(&found), ExitCode::SUCCESS);
        for needle in [
            "ok       config: /etc/syncd/t.toml loaded: 1 sync(s), 2 target(s)",
            "ok       rsync: /",
            ": rsync  version 3",
            "readable, 3 directories to watch",
            "ok       target good: password file",
            "ok       target good: reachable",
            "hint     rsync daemon targets: ",
            "munge symlinks = no",
            "backup does not exist yet; the first push creates it",
            "run: does not exist yet; syncd will create it",
            "ok       fs.inotify.max_user_watches: 8192, below the 16384 wanted for 3 \
             directories; `syncd start` raises it",
            "ok       fs.inotify.max_queued_events: 16384, enough",
            "90-syncd.conf: persist = true: `syncd start` writes the wanted values",
        ] {
            assert!(show.contains(needle), "{needle:?} missing in\n{show}");
        }
        assert_eq!(
            show.lines().filter(|l| l.starts_with("hint ")).count(),
            1,
            "one hint line: {show}"
        );
        // check changes nothing.
        assert_eq!(
            fs::read_to_string(proc.join("fs/inotify/max_user_watches")).expect("read"),
            "8192\n"
        );
        assert!(!env.persist_path.exists() && !settings.state_dir.exists());

        // A wrong password and a missing rsync turn it into exit 1.
        let (_src2, mut config) = config_with(vec![daemon.target("badpw", MODULE, "bad.pw")]);
        config.syncs[0].rsync.binary = "/nonexistent/rsync".into();
        let found = gather(&settings, &config, &env);
        let show: Vec<String> = found.iter().map(render).collect();
        let show = show.join("\n");
        assert_eq!(exit_code(&found), ExitCode::from(1), "{show}");
        assert!(
            show.contains("problem  rsync /nonexistent/rsync: cannot run"),
            "{show}"
        );
        assert!(
            show.contains("problem  target badpw: cannot run /nonexistent/rsync"),
            "{show}"
        );
    }

    #[test]
    fn a_listener_that_never_answers_times_out() {
        // The kernel completes the connection (backlog) but nobody speaks rsync.
        let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let target = Target {
            name: "silent".into(),
            kind: TargetKind::Daemon {
                user: None,
                host: "127.0.0.1".into(),
                module: "m".into(),
                port: Some(port),
                password_file: None,
            },
        };
        let (_src, config) = config_with(vec![target]);
        let job = job_of(&config);
        let started = Instant::now();
        let f = reach(
            job,
            &job.targets[0],
            "target silent",
            Duration::from_secs(1),
        );
        assert!(started.elapsed() < Duration::from_secs(1) + REACH_GRACE);
        assert_eq!(f.status, Status::Problem, "{}", render(&f));
        assert!(render(&f).contains("timeout"), "{}", render(&f));
        assert!(
            render(&f).contains(&format!("lets port {port} through")),
            "{}",
            render(&f)
        );
    }

    #[test]
    fn run_bounded_kills_the_whole_group_at_the_deadline() {
        // A child that outlives its parent's pipes: the background sleep holds them too.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo started >&2; sleep 30 & sleep 30"]);
        let started = Instant::now();
        let ran = run_bounded(cmd, Duration::from_millis(300)).expect("sh runs");
        assert!(ran.timed_out);
        assert_eq!(ran.signal, Some(libc::SIGKILL));
        assert_eq!(ran.stderr, "started\n");
        // Returning at all means the background sleep died too: it held the pipes.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );

        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let ran = run_bounded(cmd, Duration::from_secs(10)).expect("sh runs");
        assert_eq!(
            ran,
            Ran {
                code: Some(3),
                signal: None,
                stderr: "err\n".into(),
                timed_out: false
            }
        );
    }

    #[test]
    fn password_file_problems_name_the_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pw");
        fs::write(&pw, "x\n").expect("write");
        fs::set_permissions(&pw, fs::Permissions::from_mode(0o644)).expect("chmod");
        let target = Target {
            name: "t1".into(),
            kind: TargetKind::Daemon {
                user: None,
                host: "127.0.0.1".into(),
                module: "m".into(),
                // Nothing listens on port 1 of 127.0.0.1.
                port: Some(1),
                password_file: Some(pw.clone()),
            },
        };
        let (_src, config) = config_with(vec![target]);
        let out = tempfile::tempdir().expect("tempdir");
        let settings = Settings {
            config: "/c".into(),
            pidfile: out.path().join("p.pid"),
            lockfile: out.path().join("p.lock"),
            log_file: out.path().join("l.log"),
            state_dir: out.path().to_path_buf(),
            state_dir_flag: false,
            status_file: out.path().join("s.json"),
            controller_file: out.path().join("c.json"),
            worker_bin: "w".into(),
            log_level: "info".into(),
        };
        let env = Env {
            sysctl: SysctlFs::new("/nonexistent-check-proc"),
            persist_path: out.path().join("p.conf"),
            reach_timeout: Duration::from_secs(5),
        };
        let found = gather(&settings, &config, &env);
        let lines: Vec<String> = found.iter().map(render).collect();
        let show = lines.join("\n");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("problem  target t1: password file")
                    && l.contains("mode 0644")
                    && l.contains("chmod 600")),
            "{show}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l
                    .starts_with("warning  inotify limits: cannot read /nonexistent-check-proc")),
            "{show}"
        );
    }

    #[test]
    fn ssh_target_with_nothing_listening_is_a_problem() {
        let port = free_port();
        let target = Target {
            name: "sshbox".into(),
            kind: TargetKind::Ssh {
                user: Some("nobody".into()),
                host: "127.0.0.1".into(),
                path: "/srv/backup".into(),
                port: Some(port),
                ssh_args: vec!["-o".into(), "StrictHostKeyChecking=yes".into()],
            },
        };
        let (_src, config) = config_with(vec![target]);
        let job = job_of(&config);
        let f = reach(
            job,
            &job.targets[0],
            "target sshbox",
            Duration::from_secs(5),
        );
        assert_eq!(f.status, Status::Problem, "{}", render(&f));
        assert!(f.message.contains("code 255"), "{}", render(&f));
        assert!(
            f.fix
                .as_deref()
                .is_some_and(|x| x.contains(&format!("nothing listens on 127.0.0.1:{port}"))),
            "{}",
            render(&f)
        );
    }

    #[test]
    fn list_only_argv() {
        let t = |kind| Target {
            name: "n".into(),
            kind,
        };
        let cases: Vec<(Target, Vec<&str>)> = vec![
            (
                t(TargetKind::Daemon {
                    user: Some("u".into()),
                    host: "h".into(),
                    module: "m/sub".into(),
                    port: Some(8873),
                    password_file: Some("/etc/p".into()),
                }),
                vec![
                    "--list-only",
                    "--timeout=7",
                    "--contimeout=7",
                    "--port=8873",
                    "--password-file=/etc/p",
                    "u@h::m/sub/",
                ],
            ),
            (
                t(TargetKind::Daemon {
                    user: None,
                    host: "fe80::1".into(),
                    module: "m".into(),
                    port: None,
                    password_file: None,
                }),
                vec![
                    "--list-only",
                    "--timeout=7",
                    "--contimeout=7",
                    "[fe80::1]::m/",
                ],
            ),
            (
                t(TargetKind::Ssh {
                    user: Some("b".into()),
                    host: "h".into(),
                    path: "/srv/x".into(),
                    port: Some(2222),
                    ssh_args: vec!["-i".into(), "/root/my key".into()],
                }),
                vec![
                    "--list-only",
                    "--timeout=7",
                    "-e",
                    "ssh -p 2222 -o BatchMode=yes -o ConnectTimeout=7 -i '/root/my key'",
                    "b@h:/srv/x/",
                ],
            ),
        ];
        for (target, want) in cases {
            let got = list_only_args(&target, Duration::from_secs(7));
            let got: Vec<String> = got
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn version_classification() {
        let bin = Path::new("rsync");
        let cases: Vec<(Result<String, String>, Status, &str)> = vec![
            (
                Ok("rsync  version 3.5.0  protocol version 32".into()),
                Status::Ok,
                "3.5.0",
            ),
            (
                Ok("rsync  version 3.1.0  protocol version 31".into()),
                Status::Ok,
                "3.1.0",
            ),
            (
                Ok("rsync  version 3.2.7-1ubuntu1.4  protocol version 31".into()),
                Status::Ok,
                "3.2.7",
            ),
            (
                Ok("rsync  version 3.0.9  protocol version 30".into()),
                Status::Warning,
                "older than 3.1.0",
            ),
            (
                Ok("rsync  version 3.4.3  protocol version 32".into()),
                Status::Warning,
                "#910",
            ),
            (
                Ok("openrsync: protocol version 29".into()),
                Status::Problem,
                "not an rsync version line",
            ),
            (
                Ok(String::new()),
                Status::Problem,
                "not an rsync version line",
            ),
            (
                Err("cannot run rsync: No such file".into()),
                Status::Problem,
                "No such file",
            ),
        ];
        for (line, status, needle) in cases {
            let f = version_finding(bin, &line);
            assert_eq!(f.status, status, "{line:?}: {}", render(&f));
            assert!(render(&f).contains(needle), "{line:?}: {}", render(&f));
            assert!(
                f.status != Status::Problem || f.fix.is_some(),
                "problems say what to do"
            );
        }
    }

    #[test]
    fn reach_classification() {
        let daemon = Target {
            name: "d".into(),
            kind: TargetKind::Daemon {
                user: Some("u".into()),
                host: "h".into(),
                module: "m/sub".into(),
                port: None,
                password_file: Some("/etc/p".into()),
            },
        };
        let ssh = Target {
            name: "s".into(),
            kind: TargetKind::Ssh {
                user: None,
                host: "h".into(),
                path: "/x".into(),
                port: None,
                ssh_args: vec![],
            },
        };
        let ran = |code, stderr: &str| Ran {
            code: Some(code),
            signal: None,
            stderr: stderr.into(),
            timed_out: false,
        };
        // (target, result, status, text in the message, text in the fix)
        let cases: Vec<(&Target, Ran, Status, &str, &str)> = vec![
            (&daemon, ran(0, ""), Status::Ok, "reachable", ""),
            (&ssh, ran(0, ""), Status::Ok, "over ssh", ""),
            (
                &daemon,
                ran(5, "@ERROR: auth failed on module m\n"),
                Status::Problem,
                "auth failed",
                "first line of /etc/p",
            ),
            (
                &daemon,
                ran(5, "@ERROR: Unknown module 'm'\n"),
                Status::Problem,
                "Unknown module",
                "no module \"m\"",
            ),
            (
                &daemon,
                ran(
                    5,
                    "@ERROR: max connections (1) reached -- try again later\n",
                ),
                Status::Warning,
                "busy",
                "max connections",
            ),
            (
                &daemon,
                ran(
                    10,
                    "rsync: failed to connect to h (1.2.3.4): Connection refused (111)\n",
                ),
                Status::Problem,
                "socket I/O",
                "no rsync daemon listens on h:873",
            ),
            (
                &daemon,
                ran(10, "rsync: getaddrinfo: h 873: Name or service not known\n"),
                Status::Problem,
                "Name or service",
                "does not resolve",
            ),
            (
                &daemon,
                ran(35, ""),
                Status::Problem,
                "code 35",
                "firewall lets port 873",
            ),
            (
                &ssh,
                ran(255, "ssh: connect to host h port 22: Connection refused\n"),
                Status::Problem,
                "code 255",
                "nothing listens on h:22",
            ),
            (
                &ssh,
                ran(255, "u@h: Permission denied (publickey,password).\n"),
                Status::Problem,
                "Permission denied",
                "BatchMode=yes h true",
            ),
            (
                &ssh,
                ran(
                    23,
                    "rsync: [sender] change_dir \"/x\" failed: No such file or directory (2)\n",
                ),
                Status::Problem,
                "code 23",
                "does not exist",
            ),
            (
                &daemon,
                ran(12, "weird\n"),
                Status::Problem,
                "code 12",
                "by hand",
            ),
            (
                &daemon,
                Ran {
                    code: None,
                    signal: Some(9),
                    stderr: String::new(),
                    timed_out: true,
                },
                Status::Problem,
                "no answer from h:873 within 15s",
                "firewall",
            ),
        ];
        for (target, ran, status, in_msg, in_fix) in cases {
            let f = reach_finding("target x", target, &ran, Duration::from_secs(10));
            let shown = render(&f);
            assert_eq!(f.status, status, "{shown}");
            assert!(f.message.contains(in_msg), "{in_msg:?} not in {shown}");
            assert!(
                f.fix.as_deref().unwrap_or("").contains(in_fix),
                "{in_fix:?} not in {shown}"
            );
            assert!(f.status == Status::Ok || f.fix.is_some(), "{shown}");
        }
    }

    #[test]
    fn limit_classification() {
        let plan = |w: u64, q: u64, dirs: u64| {
            sysctl::plan(
                Limits {
                    max_user_watches: w,
                    max_queued_events: q,
                },
                Wants {
                    max_user_watches: None,
                    max_queued_events: None,
                    dirs,
                },
            )
        };
        let no = || None;
        let denied = || Some("Permission denied".to_string());
        // (plan, denied per knob, statuses, text in the watches line)
        type Case = (Plan, [Option<String>; 2], [Status; 2], &'static str);
        let cases: Vec<Case> = vec![
            (
                plan(192_536, 16384, 100),
                [no(), no()],
                [Status::Ok, Status::Ok],
                "192536, enough for 100 directories",
            ),
            (
                plan(192_536, 16384, 100),
                [denied(), denied()],
                [Status::Ok, Status::Ok],
                "enough",
            ),
            (
                plan(8192, 16384, 100),
                [no(), no()],
                [Status::Ok, Status::Ok],
                "`syncd start` raises it",
            ),
            (
                plan(8192, 16384, 100),
                [denied(), no()],
                [Status::Warning, Status::Ok],
                "cannot raise it (Permission denied)",
            ),
            (
                plan(8192, 16384, 10_000),
                [no(), no()],
                [Status::Warning, Status::Ok],
                "too low to watch them all now",
            ),
            (
                plan(8192, 16384, 10_000),
                [denied(), no()],
                [Status::Problem, Status::Ok],
                "too low to watch 10000 directories",
            ),
            (
                plan(192_536, 1000, 1),
                [no(), denied()],
                [Status::Ok, Status::Warning],
                "enough",
            ),
        ];
        for (plan, denied, statuses, needle) in cases {
            let got = limit_findings(&plan, &denied);
            let shown: Vec<String> = got.iter().map(render).collect();
            assert_eq!([got[0].status, got[1].status], statuses, "{shown:#?}");
            assert!(shown[0].contains(needle), "{needle:?} not in {shown:#?}");
            for f in &got {
                if f.status >= Status::Warning {
                    let fix = f.fix.as_deref().unwrap_or("");
                    assert!(
                        fix.contains(&format!("sysctl -w {}=", f.subject)),
                        "{shown:#?}"
                    );
                }
            }
        }
    }

    #[test]
    fn exit_code_and_rendering() {
        let ok = Finding::ok("a", "fine");
        let warn = Finding::new(Status::Warning, "b", "hmm");
        let hint = Finding::new(Status::Hint, "c", "psst").fix("do x");
        let bad = Finding::new(Status::Problem, "d", "broken").fix("repair it");
        assert_eq!(exit_code(&[]), ExitCode::SUCCESS);
        assert_eq!(
            exit_code(&[ok.clone(), warn.clone(), hint.clone()]),
            ExitCode::SUCCESS
        );
        assert_eq!(exit_code(&[ok.clone(), bad.clone()]), ExitCode::from(1));
        assert_eq!(render(&ok), "ok       a: fine");
        assert_eq!(render(&warn), "warning  b: hmm");
        assert_eq!(render(&hint), "hint     c: psst — fix: do x");
        assert_eq!(render(&bad), "problem  d: broken — fix: repair it");
        assert_eq!(summary(std::slice::from_ref(&ok)), "all checks passed");
        assert_eq!(summary(&[ok, warn.clone()]), "no problems, 1 warning(s)");
        assert!(summary(&[bad, warn]).starts_with("1 problem(s), 1 warning(s)"));
    }

    #[test]
    fn writable_dirs_and_local_targets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::write(d.join("file"), "").expect("write");
        let cases: Vec<(PathBuf, Status, &str)> = vec![
            (d.to_path_buf(), Status::Ok, "writable"),
            (d.join("new/deeper"), Status::Ok, "will create it"),
            (d.join("file"), Status::Problem, "not a directory"),
            (d.join("file/below"), Status::Problem, "cannot be created"),
        ];
        for (path, status, needle) in cases {
            let f = writable_dir_finding("state directory", &path);
            assert_eq!(f.status, status, "{}", render(&f));
            assert!(render(&f).contains(needle), "{}", render(&f));
        }
        let cases: Vec<(PathBuf, Status, &str)> = vec![
            (d.to_path_buf(), Status::Ok, "writable directory"),
            (d.join("new"), Status::Ok, "first push creates it"),
            (d.join("new/deeper"), Status::Problem, "mkdir -p"),
            (d.join("file"), Status::Problem, "not a directory"),
        ];
        for (path, status, needle) in cases {
            let f = local_target_finding("target t", &path);
            assert_eq!(f.status, status, "{}", render(&f));
            assert!(render(&f).contains(needle), "{}", render(&f));
        }
    }
}
