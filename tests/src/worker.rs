//! `Worker`: a running `syncd-worker` (the binary under test) with its config file and its
//! stderr in a tempdir. `start` returns once the status file says the watches are in place
//! (state is no longer "starting"); `stop` sends SIGTERM and waits for the exit; Drop kills
//! whatever is left. `WorkerConfig` renders the TOML a test needs.
//!
//! Every worker holds a shared guard on the inotify sysctls for its whole life (see
//! `SharedHold`). Must not: start a worker without one, or wait without a deadline.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::RwLockWriteGuard;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use syncd_worker::status::{State, Status};

use crate::daemon::{signal, terminate, RsyncDaemon};
use crate::sshd::Sshd;
use crate::{diagnostics, tail, wait, Diagnose, Fixtures, SharedHold};

/// How long a worker may take to put its watches in place.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a worker may take to exit after SIGTERM (it finishes the push in flight).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `syncd-worker` binary: `$SYNCD_WORKER_BIN`, or beside the test executable
/// (`target/debug/deps/e2e-…` → `target/debug/syncd-worker`).
pub fn worker_bin() -> PathBuf {
    built_bin("syncd-worker", "SYNCD_WORKER_BIN")
}

/// `sd-notify-send` (this package's `src/bin/sd-notify-send.rs`): a stranger's sd_notify
/// datagram.
pub fn notify_send_bin() -> PathBuf {
    built_bin("sd-notify-send", "SYNCD_NOTIFY_SEND_BIN")
}

/// A binary of the workspace: `$env` if set, else `name` beside the test executable's
/// directory. Fails loudly when it is missing: `cargo test` does not build other
/// packages' binaries.
pub fn built_bin(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{env}={} is not a file; build the workspace first: cargo build --workspace",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .expect("the test executable lives in target/<profile>/deps");
    assert!(
        bin.is_file(),
        "{} not found; build the workspace first: cargo build --workspace",
        bin.display()
    );
    bin
}

enum TargetSpec {
    Daemon {
        dest: String,
        port: u16,
        password_file: PathBuf,
        name: Option<String>,
    },
    Local {
        path: PathBuf,
        name: Option<String>,
    },
    Ssh {
        dest: String,
        port: u16,
        ssh_args: Vec<String>,
    },
}

/// A native TOML config with one `[[sync]]` block. Defaults chosen for tests: `delay =
/// "20ms"`, retries from 200ms up to 1s (so a target that comes back is caught up fast).
pub struct WorkerConfig {
    state_dir: PathBuf,
    source: PathBuf,
    name: Option<String>,
    delay: Option<String>,
    mode: Option<String>,
    initial_sync: Option<bool>,
    exclude: Vec<String>,
    retry: Option<(String, String)>,
    targets: Vec<TargetSpec>,
    /// Raw TOML tables of the sync (e.g. `[sync.full_sync]`), appended as written.
    raw: Vec<String>,
    /// Raw `key = value` lines of the `[[sync]]` table itself (e.g. `max_batch = 50`).
    keys: Vec<String>,
    /// Raw `key = value` lines at the top of the file (e.g. `user = "nobody"`).
    top: Vec<String>,
    /// `watcher = ...` of the sync: the test's own choice, else [`WATCHER_ENV`]'s, else
    /// none (the worker's default, `auto`).
    watcher: Option<String>,
}

/// What `/proc/PID/fd` shows for an inotify instance and a fanotify group.
pub const INOTIFY_FD: &str = "anon_inode:inotify";
pub const FANOTIFY_FD: &str = "anon_inode:[fanotify]";

/// The environment variable that runs the suite with another watcher: `inotify`,
/// `fanotify` or `auto` written into every config whose test did not choose one
/// (`scripts/test` runs the engine's groups once more with `inotify`).
pub const WATCHER_ENV: &str = "SYNCD_TEST_WATCHER";

/// The watcher [`WATCHER_ENV`] asks for, if any (an unknown word fails the test).
pub fn watcher_from_env() -> Option<String> {
    let w = std::env::var(WATCHER_ENV).ok().filter(|w| !w.is_empty())?;
    assert!(
        ["auto", "inotify", "fanotify"].contains(&w.as_str()),
        "{WATCHER_ENV}={w}: write auto, inotify or fanotify"
    );
    Some(w)
}

impl WorkerConfig {
    pub fn new(state_dir: &Path, source: &Path) -> WorkerConfig {
        WorkerConfig {
            state_dir: state_dir.to_path_buf(),
            source: source.to_path_buf(),
            name: None,
            delay: Some("20ms".into()),
            mode: None,
            initial_sync: None,
            exclude: Vec::new(),
            retry: Some(("200ms".into(), "1s".into())),
            targets: Vec::new(),
            raw: Vec::new(),
            keys: Vec::new(),
            top: Vec::new(),
            watcher: watcher_from_env(),
        }
    }

    /// Run this test's worker with `watcher` whatever [`WATCHER_ENV`] says: for tests of
    /// one watcher's own behaviour (inotify's watch limit and overflow).
    pub fn watcher(mut self, watcher: &str) -> Self {
        self.watcher = Some(watcher.to_string());
        self
    }

    /// Push to `daemon`'s module (dest, port, password file); `name` left to its default.
    pub fn daemon(self, daemon: &RsyncDaemon) -> Self {
        self.daemon_target(daemon, None)
    }

    pub fn daemon_named(self, daemon: &RsyncDaemon, name: &str) -> Self {
        self.daemon_target(daemon, Some(name.to_string()))
    }

    fn daemon_target(mut self, daemon: &RsyncDaemon, name: Option<String>) -> Self {
        self.targets.push(TargetSpec::Daemon {
            dest: daemon.dest(),
            port: daemon.port(),
            password_file: daemon.password_file(),
            name,
        });
        self
    }

    /// Push to `sshd`'s target directory over ssh (dest, port, `ssh_args`).
    pub fn ssh(self, sshd: &Sshd) -> Self {
        self.ssh_with_args(sshd, &[])
    }

    /// [`WorkerConfig::ssh`] with `extra` appended to the target's `ssh_args`.
    pub fn ssh_with_args(mut self, sshd: &Sshd, extra: &[&str]) -> Self {
        let mut ssh_args = sshd.ssh_args();
        ssh_args.extend(extra.iter().map(|a| a.to_string()));
        self.targets.push(TargetSpec::Ssh {
            dest: sshd.dest(),
            port: sshd.port(),
            ssh_args,
        });
        self
    }

    /// Push to a local directory.
    pub fn local(mut self, path: &Path, name: Option<&str>) -> Self {
        self.targets.push(TargetSpec::Local {
            path: path.to_path_buf(),
            name: name.map(str::to_string),
        });
        self
    }

    /// The sync's `name` (default: the source path), e.g. to change its source by reload.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    pub fn exclude(mut self, re: &str) -> Self {
        self.exclude.push(re.to_string());
        self
    }

    pub fn initial_sync(mut self, on: bool) -> Self {
        self.initial_sync = Some(on);
        self
    }

    pub fn mode(mut self, mode: &str) -> Self {
        self.mode = Some(mode.to_string());
        self
    }

    /// `[sync.retry]` `min_interval` and `max_interval`; `None` leaves the table out (the
    /// worker's defaults, 1 s doubling to 5 min, apply).
    pub fn retry(mut self, retry: Option<(&str, &str)>) -> Self {
        self.retry = retry.map(|(min, max)| (min.to_string(), max.to_string()));
        self
    }

    /// `None` leaves the key out (the worker's default applies).
    pub fn delay(mut self, delay: Option<&str>) -> Self {
        self.delay = delay.map(str::to_string);
        self
    }

    /// Append raw TOML tables belonging to the sync, e.g. `[sync.hooks.command]`.
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.to_string());
        self
    }

    /// Set a key of the `[[sync]]` table; `value` is raw TOML (`"50"`, `"\"1s\""`).
    pub fn key(mut self, key: &str, value: &str) -> Self {
        self.keys.push(format!("{key} = {value}"));
        self
    }

    /// Set a top-level key (a controller setting such as `user`); `value` is raw TOML.
    pub fn top_key(mut self, key: &str, value: &str) -> Self {
        self.top.push(format!("{key} = {value}"));
        self
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn to_toml(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "state_dir = {}",
            toml_str(&self.state_dir.to_string_lossy())
        );
        for k in &self.top {
            let _ = writeln!(t, "{k}");
        }
        let _ = writeln!(t, "\n[[sync]]");
        let _ = writeln!(t, "source = {}", toml_str(&self.source.to_string_lossy()));
        if let Some(n) = &self.name {
            let _ = writeln!(t, "name = {}", toml_str(n));
        }
        if let Some(d) = &self.delay {
            let _ = writeln!(t, "delay = {}", toml_str(d));
        }
        if let Some(m) = &self.mode {
            let _ = writeln!(t, "mode = {}", toml_str(m));
        }
        if let Some(w) = &self.watcher {
            let _ = writeln!(t, "watcher = {}", toml_str(w));
        }
        if let Some(i) = self.initial_sync {
            let _ = writeln!(t, "initial_sync = {i}");
        }
        if !self.exclude.is_empty() {
            let list: Vec<String> = self.exclude.iter().map(|e| toml_str(e)).collect();
            let _ = writeln!(t, "exclude = [{}]", list.join(", "));
        }
        for k in &self.keys {
            let _ = writeln!(t, "{k}");
        }
        if let Some((min, max)) = &self.retry {
            let _ = writeln!(t, "\n[sync.retry]");
            let _ = writeln!(t, "min_interval = {}", toml_str(min));
            let _ = writeln!(t, "max_interval = {}", toml_str(max));
        }
        for target in &self.targets {
            let _ = writeln!(t, "\n[[sync.target]]");
            match target {
                TargetSpec::Daemon {
                    dest,
                    port,
                    password_file,
                    name,
                } => {
                    let _ = writeln!(t, "dest = {}", toml_str(dest));
                    let _ = writeln!(t, "port = {port}");
                    let _ = writeln!(
                        t,
                        "password_file = {}",
                        toml_str(&password_file.to_string_lossy())
                    );
                    if let Some(n) = name {
                        let _ = writeln!(t, "name = {}", toml_str(n));
                    }
                }
                TargetSpec::Ssh {
                    dest,
                    port,
                    ssh_args,
                } => {
                    let _ = writeln!(t, "dest = {}", toml_str(dest));
                    let _ = writeln!(t, "port = {port}");
                    let args: Vec<String> = ssh_args.iter().map(|a| toml_str(a)).collect();
                    let _ = writeln!(t, "ssh_args = [{}]", args.join(", "));
                }
                TargetSpec::Local { path, name } => {
                    let _ = writeln!(t, "dest = {}", toml_str(&path.to_string_lossy()));
                    if let Some(n) = name {
                        let _ = writeln!(t, "name = {}", toml_str(n));
                    }
                }
            }
        }
        for r in &self.raw {
            let _ = writeln!(t, "\n{r}");
        }
        t
    }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub struct Worker {
    dir: tempfile::TempDir,
    child: Option<Child>,
    exited: Option<ExitStatus>,
    status_path: PathBuf,
    config_path: PathBuf,
    config_text: String,
    shared: Option<SharedHold>,
}

impl Worker {
    /// Start a worker on `cfg` and wait until its watches are in place.
    pub fn start(cfg: &WorkerConfig) -> Worker {
        Worker::start_with(&cfg.to_toml(), "syncd.toml", cfg.state_dir(), &[])
    }

    /// Start a worker on `config_text` (written to a file called `file_name`), with the
    /// given extra arguments; its status file is `<state_dir>/status.json`.
    pub fn start_with(
        config_text: &str,
        file_name: &str,
        state_dir: &Path,
        args: &[&str],
    ) -> Worker {
        Worker::start_wrapped(config_text, file_name, state_dir, args, &[])
    }

    /// [`Worker::start`] with the worker run by `wrapper` (a program and its arguments,
    /// e.g. `setpriv` dropping capabilities), which must exec the worker in place.
    pub fn start_under(cfg: &WorkerConfig, wrapper: &[&str]) -> Worker {
        Worker::start_wrapped(&cfg.to_toml(), "syncd.toml", cfg.state_dir(), &[], wrapper)
    }

    fn start_wrapped(
        config_text: &str,
        file_name: &str,
        state_dir: &Path,
        args: &[&str],
        wrapper: &[&str],
    ) -> Worker {
        let guard = SharedHold::take();
        let mut w = Worker::spawn(config_text, file_name, state_dir, args, wrapper);
        w.shared = Some(guard);
        w.wait_started();
        w
    }

    /// Start a worker while the caller holds the exclusive sysctl guard (a test that lowers
    /// an inotify limit for this worker). `after_inotify_init` runs as soon as the worker
    /// has an inotify instance (seen in `/proc/<pid>/fd`), so the test can put the limit
    /// back at once; then this waits for the watches as `start` does. Call `hold_shared`
    /// once the guard is released.
    pub fn start_exclusive(
        cfg: &WorkerConfig,
        guard: &RwLockWriteGuard<'static, ()>,
        after_inotify_init: impl FnOnce(),
    ) -> Worker {
        Worker::start_exclusive_on(cfg, guard, INOTIFY_FD, after_inotify_init)
    }

    /// [`Worker::start_exclusive`], waiting for the descriptor named `fd_link` in
    /// `/proc/PID/fd` ([`INOTIFY_FD`], [`FANOTIFY_FD`]) instead.
    pub fn start_exclusive_on(
        cfg: &WorkerConfig,
        _guard: &RwLockWriteGuard<'static, ()>,
        fd_link: &str,
        after_init: impl FnOnce(),
    ) -> Worker {
        let mut w = Worker::spawn(&cfg.to_toml(), "syncd.toml", cfg.state_dir(), &[], &[]);
        let got = wait::until_every(
            format!("the worker's {fd_link}"),
            START_TIMEOUT,
            wait::FAST_POLL,
            || match w.poll_exit() {
                Some(st) => Ok(Err(st)),
                None if w.has_fd(fd_link) => Ok(Ok(())),
                None => Err(format!("no {fd_link} in /proc/PID/fd")),
            },
        );
        after_init();
        match got {
            Ok(Ok(())) => {}
            Ok(Err(st)) => panic!(
                "syncd-worker exited ({st}) before creating its {fd_link}\n{}",
                w.diagnose()
            ),
            Err(t) => wait::fail(t, &[&w]),
        }
        w.wait_started();
        w
    }

    /// Does the worker process hold a descriptor named `link` (an inotify instance, a
    /// fanotify group) now?
    fn has_fd(&self, link: &str) -> bool {
        let Some(child) = &self.child else {
            return false;
        };
        let Ok(fds) = fs::read_dir(format!("/proc/{}/fd", child.id())) else {
            return false;
        };
        fds.flatten().any(|fd| {
            fs::read_link(fd.path())
                .map(|t| t.as_os_str() == link)
                .unwrap_or(false)
        })
    }

    /// Take the shared sysctl guard for the rest of this worker's life.
    pub fn hold_shared(&mut self) {
        if self.shared.is_none() {
            self.shared = Some(SharedHold::take());
        }
    }

    fn spawn(
        config_text: &str,
        file_name: &str,
        state_dir: &Path,
        args: &[&str],
        wrapper: &[&str],
    ) -> Worker {
        let dir = tempfile::Builder::new()
            .prefix("syncd-e2e-worker.")
            .tempdir()
            .expect("create the worker's tempdir");
        let config = dir.path().join(file_name);
        fs::write(&config, config_text).expect("write the worker config");
        let stderr = fs::File::create(dir.path().join("stderr.log")).expect("create stderr.log");
        let stdout = fs::File::create(dir.path().join("stdout.log")).expect("create stdout.log");
        let bin = worker_bin();
        let mut cmd = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = Command::new(program);
                c.args(wrapper_args).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let child = cmd
            .arg("--config")
            .arg(&config)
            .args(["--log-level", "debug"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        Worker {
            dir,
            child: Some(child),
            exited: None,
            status_path: state_dir.join("status.json"),
            config_path: config,
            config_text: config_text.to_string(),
            shared: None,
        }
    }

    fn wait_started(&mut self) {
        let what = format!(
            "syncd-worker past state \"starting\" (status file {})",
            self.status_path.display()
        );
        let started = wait::until(what, START_TIMEOUT, || {
            if let Some(st) = self.poll_exit() {
                panic!(
                    "syncd-worker exited ({st}) before its watches were in place\n{}",
                    self.diagnose()
                );
            }
            match self.status() {
                Some(s) if s.state != State::Starting => Ok(()),
                Some(s) => Err(format!("state {:?}", s.state)),
                None => Err("no status file".to_string()),
            }
        });
        if let Err(t) = started {
            wait::fail(t, &[self]);
        }
    }

    /// The worker's process id (the wrapper's, which execs the worker in place).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has exited (reaping it).
    pub fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            if let Some(child) = &mut self.child {
                if let Ok(Some(st)) = child.try_wait() {
                    self.exited = Some(st);
                }
            }
        }
        self.exited
    }

    /// The current status document, if one can be read.
    pub fn status(&self) -> Option<Status> {
        Status::read(&self.status_path).ok()
    }

    /// Poll the status until `pred` holds; panic after `timeout` (or if the worker exits)
    /// naming `what`, with the last status and logs of the worker and `others`.
    pub fn wait_status(
        &mut self,
        what: &str,
        timeout: Duration,
        others: &[&dyn Diagnose],
        pred: impl Fn(&Status) -> bool,
    ) -> Status {
        let got = wait::until(format_args!("status: {what}"), timeout, || {
            match self.status() {
                Some(s) if pred(&s) => return Ok(s),
                _ => {}
            }
            if let Some(st) = self.poll_exit() {
                panic!(
                    "syncd-worker exited ({st}) while waiting for {what}\n{}\n{}",
                    self.diagnose(),
                    diagnostics(others)
                );
            }
            // The whole document is in the diagnostics below.
            Err("the status above")
        });
        got.unwrap_or_else(|t| wait::fail(t, &[self as &dyn Diagnose, &Fixtures(others)]))
    }

    /// Send SIGTERM and wait (up to `STOP_TIMEOUT`) for the exit; panic if it does not
    /// exit in time or exits non-zero.
    pub fn stop(&mut self) {
        if let Some(st) = self.poll_exit() {
            panic!(
                "syncd-worker had already exited ({st}) before stop()\n{}",
                self.diagnose()
            );
        }
        let child = self.child.as_mut().expect("a spawned worker has a child");
        signal(child, Signal::SIGTERM);
        let exited = wait::until_every(
            "syncd-worker's exit after SIGTERM",
            STOP_TIMEOUT,
            wait::SHORT_POLL,
            || self.poll_exit(),
        );
        let st = exited.unwrap_or_else(|t| wait::fail(t, &[self]));
        assert!(
            st.success(),
            "syncd-worker exited with {st} after SIGTERM (expected 0)\n{}",
            self.diagnose()
        );
        self.shared = None;
    }

    /// Replace the worker's config file (atomically: a rename, as editors do), for a
    /// following `reload`.
    pub fn rewrite_config(&mut self, config_text: &str) {
        let tmp = self.config_path.with_extension("new");
        fs::write(&tmp, config_text).expect("write the new worker config");
        fs::rename(&tmp, &self.config_path).expect("replace the worker config");
        self.config_text = config_text.to_string();
    }

    /// Send SIGHUP (reload the config file).
    pub fn reload(&self) {
        let child = self.child.as_ref().expect("a spawned worker has a child");
        signal(child, Signal::SIGHUP);
    }

    /// Send `sig` to the worker (e.g. SIGTERM without waiting, as `stop` does).
    pub fn signal(&self, sig: Signal) {
        let child = self.child.as_ref().expect("a spawned worker has a child");
        signal(child, sig);
    }

    /// SIGKILL the worker and its child processes (its rsync runs, which would otherwise
    /// go on as orphans), and reap it.
    pub fn kill(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let pid = child.id();
        let mut children = Vec::new();
        if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let list = fs::read_to_string(task.path().join("children")).unwrap_or_default();
                children.extend(
                    list.split_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
        }
        signal(child, Signal::SIGKILL);
        for c in children {
            // These were the worker's children a moment ago (its rsync runs); one may
            // have exited since.
            let _ = nix::sys::signal::kill(Pid::from_raw(c), Signal::SIGKILL);
        }
        self.exited = child.wait().ok();
        self.shared = None;
    }

    /// Wait until the worker's log holds a line containing `needle`; return that line.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        let got = wait::until(
            format_args!("{needle:?} in the worker's log"),
            timeout,
            || {
                if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                    return Some(line.to_string());
                }
                if let Some(st) = self.poll_exit() {
                    panic!(
                        "syncd-worker exited ({st}) while waiting for {needle:?} in its log\n{}",
                        self.diagnose()
                    );
                }
                None
            },
        );
        got.unwrap_or_else(|t| wait::fail(t, &[self]))
    }

    /// Everything the worker wrote to stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Diagnose for Worker {
    fn diagnose(&self) -> String {
        let status = fs::read_to_string(&self.status_path)
            .unwrap_or_else(|e| format!("(no status file {}: {e})", self.status_path.display()));
        let exit = match self.exited {
            Some(st) => format!("exited: {st}"),
            None => "running".to_string(),
        };
        format!(
            "--- syncd-worker ({exit}) config ---\n{}\n--- status.json ---\n{}\n--- stderr tail ---\n{}",
            self.config_text.trim_end(),
            tail(status.trim_end(), 60),
            tail(&self.log(), 60)
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.exited.is_none() {
                terminate(&mut child, Duration::from_secs(5));
            }
        }
    }
}

/// Write `cfg` to a file in `dir` and return the worker's `--config FILE` arguments plus
/// `extra` (for [`run_to_exit`]).
pub fn config_args(dir: &Path, cfg: &WorkerConfig, extra: &[&str]) -> Vec<OsString> {
    let path = dir.join("syncd.toml");
    fs::write(&path, cfg.to_toml()).expect("write the config");
    let mut a: Vec<OsString> = vec!["--config".into(), path.into()];
    a.extend(extra.iter().map(OsString::from));
    a
}

/// Run the worker binary with `args` to its exit (killing it after `timeout` and
/// panicking, since it was expected to exit by itself). Returns (status, stdout, stderr).
pub fn run_to_exit(args: &[OsString], timeout: Duration) -> (ExitStatus, String, String) {
    let _guard = SharedHold::take();
    let dir = tempfile::tempdir().expect("create a tempdir for output");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let bin = worker_bin();
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("create stdout file"))
        .stderr(fs::File::create(&err_path).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let exited = wait::until_every(
        format_args!("syncd-worker {args:?} to exit by itself"),
        timeout,
        wait::SHORT_POLL,
        || child.try_wait().ok().flatten(),
    );
    let status = exited.unwrap_or_else(|t| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{t}; stderr:\n{}",
            tail(&fs::read_to_string(&err_path).unwrap_or_default(), 40)
        )
    });
    let out = fs::read_to_string(&out_path).unwrap_or_default();
    let err = fs::read_to_string(&err_path).unwrap_or_default();
    (status, out, err)
}
