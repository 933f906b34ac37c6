//! `Controller`: the `syncd` controller under test, driven through its command line as an
//! operator would (`syncd start|stop|status|reload|run`), with every path it uses — config,
//! pidfile (and its `.lock`), log file — in its own tempdir and the state dir of the test's
//! `Site`. Commands run with a deadline; waits poll a condition with a deadline.
//!
//! Drop runs `syncd stop`, then SIGKILLs every pid the fixture has seen (controllers and
//! workers) that `/proc/PID/comm` still names a syncd process, so no process outlives a
//! test. Every controller holds a shared guard on the inotify sysctls (its worker calls
//! `inotify_init`), except one made with `new_exclusive` by a test that holds the write
//! guard; only that one may change the machine's inotify sysctls (the others run with
//! `SYNCD_NO_SYSCTL=1`). Must not: signal a pid that is not a syncd process, or wait
//! without a deadline.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::RwLockWriteGuard;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::worker::worker_bin;
use crate::{tail, wait, Diagnose, Fixtures, SharedHold, WorkerConfig};

/// How long one `syncd` command may run (`start` waits for the watches, `stop` for the
/// drain) before the harness kills it and fails the test.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(40);
/// `syncd stop --timeout` used by `stop()` and Drop.
const STOP_TIMEOUT: &str = "20s";

/// The `syncd` binary: `$SYNCD_BIN`, or beside the test executable
/// (`target/debug/deps/e2e-…` → `target/debug/syncd`).
pub fn syncd_bin() -> PathBuf {
    crate::worker::built_bin("syncd", "SYNCD_BIN")
}

pub struct Controller {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    config_text: String,
    state_dir: PathBuf,
    /// Every controller and worker pid seen, for Drop's last resort.
    seen: RefCell<BTreeSet<u32>>,
    /// May the daemon change the machine's inotify sysctls? Only for a test that holds
    /// the exclusive sysctl guard; every other one runs with `SYNCD_NO_SYSCTL=1`.
    may_tune: bool,
    /// `--worker`: the real syncd-worker unless a test wraps it.
    worker: PathBuf,
    _shared: Option<SharedHold>,
}

impl Controller {
    /// A controller for `cfg` (written as `syncd.toml`); the state dir is the config's.
    /// Nothing is started.
    pub fn new(cfg: &WorkerConfig) -> Controller {
        Controller::with_config(&cfg.to_toml(), "syncd.toml", cfg.state_dir())
    }

    /// A controller reading `config_text` from a file called `file_name` (e.g.
    /// `confxml.xml`), with `state_dir` passed as `--state-dir`.
    pub fn with_config(config_text: &str, file_name: &str, state_dir: &Path) -> Controller {
        let mut c = Controller::unguarded(config_text, file_name, state_dir);
        c._shared = Some(SharedHold::take());
        c.may_tune = false;
        c
    }

    /// A controller for a test that holds the exclusive sysctl guard (it changes an
    /// inotify sysctl through the controller): it takes no shared guard of its own, and
    /// its daemon may raise the inotify sysctls.
    pub fn new_exclusive(cfg: &WorkerConfig, _guard: &RwLockWriteGuard<'static, ()>) -> Controller {
        Controller::unguarded(&cfg.to_toml(), "syncd.toml", cfg.state_dir())
    }

    fn unguarded(config_text: &str, file_name: &str, state_dir: &Path) -> Controller {
        let dir = tempfile::Builder::new()
            .prefix("syncd-e2e-ctl.")
            .tempdir()
            .expect("create the controller's tempdir");
        let config_path = dir.path().join(file_name);
        fs::write(&config_path, config_text).expect("write the controller's config");
        Controller {
            dir,
            config_path,
            config_text: config_text.to_string(),
            state_dir: state_dir.to_path_buf(),
            seen: RefCell::new(BTreeSet::new()),
            may_tune: true,
            worker: worker_bin(),
            _shared: None,
        }
    }

    /// Run the daemon with `SYNCD_NO_SYSCTL=1` (its hands off the sysctls), also when
    /// made by `new_exclusive` (a test that lowers a limit and wants it left alone).
    pub fn hands_off(mut self) -> Controller {
        self.may_tune = false;
        self
    }

    /// Start workers through `path` (e.g. a wrapper script around the real worker).
    pub fn with_worker(mut self, path: &Path) -> Controller {
        self.worker = path.to_path_buf();
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pidfile(&self) -> PathBuf {
        self.dir.path().join("syncd.pid")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("syncd.log")
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The path flags every command gets (all but `--config`).
    pub fn path_flags(&self) -> Vec<String> {
        vec![
            "--pidfile".into(),
            self.pidfile().to_string_lossy().into_owned(),
            "--log-file".into(),
            self.log_path().to_string_lossy().into_owned(),
            "--state-dir".into(),
            self.state_dir.to_string_lossy().into_owned(),
            "--worker".into(),
            self.worker.to_string_lossy().into_owned(),
            "--log-level".into(),
            "debug".into(),
        ]
    }

    /// Run `syncd --config FILE <path flags> <args>` to its exit (at most
    /// `COMMAND_TIMEOUT`).
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.cmd_as(&[], args)
    }

    /// [`Controller::cmd`] through `wrapper` (e.g. [`AS_NOBODY`]), which execs syncd.
    pub fn cmd_as(&self, wrapper: &[&str], args: &[&str]) -> Output {
        self.spawn_as(wrapper, args).finish(self)
    }

    /// Start `syncd --config FILE <path flags> <args>` and return at once (e.g. a
    /// `syncd start` to look at while it waits); [`PendingCmd::finish`] waits for it.
    pub fn spawn_cmd(&self, args: &[&str]) -> PendingCmd {
        self.spawn_as(&[], args)
    }

    fn spawn_as(&self, wrapper: &[&str], args: &[&str]) -> PendingCmd {
        let mut all = vec![
            "--config".to_string(),
            self.config_path.to_string_lossy().into_owned(),
        ];
        all.extend(self.path_flags());
        all.extend(args.iter().map(|a| a.to_string()));
        self.spawn(wrapper, all)
    }

    /// Run `syncd <args> --config FILE <path flags>`: the global flags after the command.
    pub fn cmd_flags_after(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.push("--config".into());
        all.push(self.config_path.to_string_lossy().into_owned());
        all.extend(self.path_flags());
        self.spawn(&[], all).finish(self)
    }

    /// Run `syncd --config FILE <args>`: no path flags, so syncd takes its pidfile, log
    /// and state paths from the config file (or the defaults).
    pub fn cmd_config_only(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "--config".to_string(),
            self.config_path.to_string_lossy().into_owned(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        self.spawn(&[], all).finish(self)
    }

    /// Run `syncd <path flags> <args>` (no `--config`: sersync's `-o` names it).
    pub fn cmd_without_config(&self, args: &[&str]) -> Output {
        let mut all = self.path_flags();
        all.extend(args.iter().map(|a| a.to_string()));
        self.spawn(&[], all).finish(self)
    }

    /// Spawn `[wrapper...] syncd <args>` with stdout and stderr in files of the tempdir.
    fn spawn(&self, wrapper: &[&str], args: Vec<String>) -> PendingCmd {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let out_path = self.dir.path().join(format!("cmd{n}.out"));
        let err_path = self.dir.path().join(format!("cmd{n}.err"));
        let bin = syncd_bin();
        let mut command = wrapped(wrapper, &bin);
        self.sysctl_env(&mut command);
        let child = command
            .args(&args)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).expect("create a command's stdout file"))
            .stderr(fs::File::create(&err_path).expect("create a command's stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        PendingCmd {
            child,
            shown: [wrapper.join(" "), "syncd".into(), args.join(" ")].join(" "),
            out_path,
            err_path,
        }
    }

    /// `syncd start <args>`: must exit 0 saying "started". Returns the controller's pid.
    pub fn start_with(&self, args: &[&str]) -> u32 {
        let mut all = vec!["start"];
        all.extend_from_slice(args);
        let out = self.cmd(&all);
        self.expect_started(&out, &format!("syncd {}", all.join(" ")))
    }

    pub fn start(&self) -> u32 {
        self.start_with(&[])
    }

    /// Check that `out` is a successful start; return the pid in the pidfile.
    pub fn expect_started(&self, out: &Output, what: &str) -> u32 {
        assert!(
            out.status.success() && text(&out.stdout).contains("started"),
            "`{what}`: expected exit 0 and \"started\", got {}\n{}\n{}",
            out.status,
            show(out),
            self.diagnose()
        );
        self.controller_pid().unwrap_or_else(|| {
            panic!(
                "`{what}` succeeded but the pidfile {} holds no pid\n{}",
                self.pidfile().display(),
                self.diagnose()
            )
        })
    }

    /// `syncd stop`: must exit 0, and afterwards the controller and worker that ran are
    /// gone and the pidfile is removed.
    pub fn stop(&self) {
        let before = (self.controller_pid(), self.worker_pid());
        let out = self.cmd(&["stop", "--timeout", STOP_TIMEOUT]);
        assert!(
            out.status.success(),
            "`syncd stop` failed ({})\n{}\n{}",
            out.status,
            show(&out),
            self.diagnose()
        );
        for pid in [before.0, before.1].into_iter().flatten() {
            wait_gone(
                pid,
                Duration::from_secs(10),
                "a syncd process after `syncd stop`",
                &[self],
            );
        }
        assert!(
            !self.pidfile().exists(),
            "pidfile {} still exists after `syncd stop`\n{}",
            self.pidfile().display(),
            self.diagnose()
        );
    }

    /// `syncd status --json`: the exit code and the document (which must agree).
    pub fn status_json(&self) -> (Option<i32>, serde_json::Value) {
        let out = self.cmd(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "`syncd status --json` printed no JSON object ({e})\n{}\n{}",
                show(&out),
                self.diagnose()
            )
        });
        let code = out.status.code();
        assert_eq!(
            v["code"].as_i64(),
            code.map(i64::from),
            "`syncd status --json`: \"code\" differs from the exit code\n{v:#}"
        );
        (code, v)
    }

    /// Poll `syncd status --json` until `pred` holds; panic after `timeout` naming `what`.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        others: &[&dyn Diagnose],
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait::until(format!("`syncd status`: {what}"), timeout, || {
            let (_, v) = self.status_json();
            if pred(&v) {
                Ok(v)
            } else {
                Err(format!("\n{v:#}"))
            }
        })
        .unwrap_or_else(|t| wait::fail(t, &[self as &dyn Diagnose, &Fixtures(others)]))
    }

    /// Wait until the controller runs a new worker in place of `old` (killed), after at
    /// least one restart, and `also` holds; returns that status.
    pub fn wait_restarted(
        &self,
        old: u32,
        timeout: Duration,
        others: &[&dyn Diagnose],
        also: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.wait_status(
            "a new worker running after kill -9 of the old one",
            timeout,
            others,
            |v| {
                v["phase"] == "running"
                    && v["restarts"].as_u64().is_some_and(|r| r >= 1)
                    && v["worker_pid"]
                        .as_u64()
                        .is_some_and(|w| w != u64::from(old))
                    && also(v)
            },
        )
    }

    /// The pid in the pidfile, if any.
    pub fn controller_pid(&self) -> Option<u32> {
        let pid = fs::read_to_string(self.pidfile())
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if let Some(p) = pid {
            self.remember(p);
        }
        pid
    }

    /// The worker pid from `<state_dir>/controller.json`, if any.
    pub fn worker_pid(&self) -> Option<u32> {
        let pid = self.controller_state()?["worker_pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok());
        if let Some(p) = pid {
            self.remember(p);
        }
        pid
    }

    /// `<state_dir>/controller.json`, if it can be read.
    pub fn controller_state(&self) -> Option<serde_json::Value> {
        let text = fs::read_to_string(self.state_dir.join("controller.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Note a pid to clean up on Drop (if it is still a syncd process then).
    pub fn remember(&self, pid: u32) {
        self.seen.borrow_mut().insert(pid);
    }

    fn remember_pids(&self) {
        // Reads record what they find.
        let _ = self.controller_pid();
        let _ = self.worker_pid();
    }

    /// Everything the daemon (controller and worker) logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Wait until the log holds a line containing every one of `needles`; return it.
    pub fn wait_log(&self, needles: &[&str], timeout: Duration) -> String {
        wait::must(
            format_args!("a line with {needles:?} in the log"),
            timeout,
            &[self],
            || {
                self.log()
                    .lines()
                    .find(|l| needles.iter().all(|n| l.contains(n)))
                    .map(str::to_string)
            },
        )
    }

    /// Replace the config file (atomically, as editors do) for a following reload/start.
    pub fn rewrite_config(&mut self, config_text: &str) {
        let tmp = self.config_path.with_extension("new");
        fs::write(&tmp, config_text).expect("write the new config");
        fs::rename(&tmp, &self.config_path).expect("replace the config");
        self.config_text = config_text.to_string();
    }

    /// Spawn `syncd --config FILE <path flags> run <args>` in the foreground, with
    /// `$NOTIFY_SOCKET` set to `notify_socket`; its output goes to the log file. The
    /// caller owns (and must end) the child; its pid is remembered for Drop.
    pub fn spawn_run(&self, args: &[&str], notify_socket: &Path) -> Child {
        self.spawn_run_env(args, notify_socket, &[])
    }

    /// [`Controller::spawn_run`] with these environment variables too (e.g.
    /// `JOURNAL_STREAM`).
    pub fn spawn_run_env(
        &self,
        args: &[&str],
        notify_socket: &Path,
        env: &[(&str, &str)],
    ) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the log file");
        let log_err = log.try_clone().expect("dup the log file");
        self.spawn_run_to(args, notify_socket, env, log.into(), log_err.into())
    }

    /// `syncd run` as [`Controller::spawn_run_env`], its stdout and stderr sent to
    /// `out` and `err` (e.g. `/dev/null`: a daemon that does not log to a file).
    pub fn spawn_run_to(
        &self,
        args: &[&str],
        notify_socket: &Path,
        env: &[(&str, &str)],
        out: Stdio,
        err: Stdio,
    ) -> Child {
        let bin = syncd_bin();
        let mut command = Command::new(&bin);
        self.sysctl_env(&mut command);
        let child = command
            .arg("--config")
            .arg(&self.config_path)
            .args(self.path_flags())
            .arg("run")
            .args(args)
            .env("NOTIFY_SOCKET", notify_socket)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        self.remember(child.id());
        child
    }

    /// SIGTERM to a `syncd run` child of [`Controller::spawn_run`], which must exit 0
    /// within 30 s.
    pub fn stop_run(&self, child: &mut Child) {
        kill(child.id(), Signal::SIGTERM);
        let st = wait_child(child, Duration::from_secs(30));
        assert!(
            st.is_some_and(|s| s.success()),
            "`syncd run` after SIGTERM: expected exit 0, got {st:?}\n{}",
            self.diagnose()
        );
    }

    fn sysctl_env(&self, command: &mut Command) {
        if self.may_tune {
            command.env_remove("SYNCD_NO_SYSCTL");
        } else {
            command.env("SYNCD_NO_SYSCTL", "1");
        }
    }

    /// Pids of live processes whose command line mentions this fixture's tempdir (its
    /// controller and worker, whatever state they are in).
    pub fn processes(&self) -> Vec<u32> {
        processes_mentioning(self.dir.path())
    }

    /// Wait until no live process mentions this fixture's tempdir.
    pub fn wait_no_processes(&self, timeout: Duration) {
        wait::must("no process of this syncd alive", timeout, &[self], || {
            let left = self.processes();
            if left.is_empty() {
                Ok(())
            } else {
                let who: Vec<String> = left.iter().map(|&p| describe(p)).collect();
                Err(format!("{who:?}"))
            }
        })
    }
}

/// `syncd` run as `nobody` (for `Controller::cmd_as` and other commands): no root, no
/// groups.
pub const AS_NOBODY: &[&str] = &[
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
];

/// A `syncd` command started by [`Controller::spawn_cmd`], not yet waited for.
pub struct PendingCmd {
    child: Child,
    /// The command line, for messages.
    shown: String,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl PendingCmd {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// What it printed so far: stdout, then stderr.
    pub fn output_so_far(&self) -> String {
        format!(
            "{}{}",
            fs::read_to_string(&self.out_path).unwrap_or_default(),
            fs::read_to_string(&self.err_path).unwrap_or_default()
        )
    }

    /// Wait for its exit (at most `COMMAND_TIMEOUT`, then fail the test with `c`'s
    /// diagnosis); its output.
    pub fn finish(mut self, c: &Controller) -> Output {
        let status = wait_child(&mut self.child, COMMAND_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "`{}` did not exit within {COMMAND_TIMEOUT:?}\n{}\n{}",
                self.shown,
                self.output_so_far(),
                c.diagnose()
            )
        });
        let out = Output {
            status,
            stdout: fs::read(&self.out_path).unwrap_or_default(),
            stderr: fs::read(&self.err_path).unwrap_or_default(),
        };
        let _ = fs::remove_file(&self.out_path);
        let _ = fs::remove_file(&self.err_path);
        c.remember_pids();
        out
    }
}

impl Drop for PendingCmd {
    fn drop(&mut self) {
        // Not finished (a failing test): do not leave it running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The abstract notify socket `@syncd-<purpose>-<pid>-…` that process `pid` bound
/// (`worker`: a controller's socket for its worker; `start`: `syncd start`'s), from
/// `/proc/net/unix`.
pub fn notify_socket_of(purpose: &str, pid: u32) -> Option<String> {
    let prefix = format!("@syncd-{purpose}-{pid}-");
    fs::read_to_string("/proc/net/unix")
        .ok()?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(7))
        .find(|name| name.starts_with(&prefix))
        .map(str::to_string)
}

/// `bin` run through `wrapper` (a command that execs its arguments), or alone.
fn wrapped(wrapper: &[&str], bin: &Path) -> Command {
    match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

/// Send the sd_notify datagram `msg` to `socket` from a process of its own, run through
/// `wrapper` (e.g. [`AS_NOBODY`], or nothing: another root process); its pid (the
/// sender the kernel names), or why it could not send (e.g. nobody listens any more).
pub fn notify_as(wrapper: &[&str], socket: &str, msg: &str) -> Result<u32, String> {
    let bin = crate::worker::notify_send_bin();
    let mut child = wrapped(wrapper, &bin)
        .arg(socket)
        .arg(msg)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let pid = child.id();
    match wait_child(&mut child, COMMAND_TIMEOUT) {
        Some(s) if s.success() => Ok(pid),
        status => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            Err(format!(
                "`{} {} {socket} {msg:?}` failed ({status:?}): {}",
                wrapper.join(" "),
                bin.display(),
                err.trim_end()
            ))
        }
    }
}

impl Diagnose for Controller {
    fn diagnose(&self) -> String {
        let ctl = fs::read_to_string(self.state_dir.join("controller.json"))
            .unwrap_or_else(|e| format!("(none: {e})"));
        let status = fs::read_to_string(self.state_dir.join("status.json"))
            .unwrap_or_else(|e| format!("(none: {e})"));
        let pidfile = fs::read_to_string(self.pidfile()).unwrap_or_else(|e| format!("(none: {e})"));
        let procs: Vec<String> = self.processes().iter().map(|&p| describe(p)).collect();
        format!(
            "--- syncd controller in {} ---\nconfig:\n{}\npidfile: {}\nprocesses: {procs:?}\n\
             --- controller.json ---\n{}\n--- status.json ---\n{}\n--- log tail ---\n{}",
            self.dir.path().display(),
            self.config_text.trim_end(),
            pidfile.trim(),
            ctl.trim_end(),
            tail(status.trim_end(), 40),
            tail(&self.log(), 80)
        )
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let mut pids: BTreeSet<u32> = self.seen.borrow().clone();
        let running = pids.iter().any(|&p| is_syncd(p)) || !self.processes().is_empty();
        if running {
            // Not `cmd`: that panics on a timeout, and Drop may run during a panic.
            let mut args = vec![
                "--config".to_string(),
                self.config_path.to_string_lossy().into_owned(),
            ];
            args.extend(self.path_flags());
            args.extend(["stop".into(), "--timeout".into(), "5s".into()]);
            if let Ok(mut child) = Command::new(syncd_bin())
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                if wait_child(&mut child, Duration::from_secs(30)).is_none() {
                    eprintln!("syncd stop did not finish in Drop; killing what is left");
                }
            }
        }
        pids.extend(self.processes());
        for pid in pids {
            if is_syncd(pid) {
                eprintln!("Controller drop: SIGKILL to {}", describe(pid));
                kill(pid, Signal::SIGKILL);
            }
        }
    }
}

/// Wait for `child` up to `timeout`; on timeout kill it, reap it and return None.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let exited = wait::until_every("the child's exit", timeout, wait::SHORT_POLL, || {
        child.try_wait().ok().flatten()
    });
    if exited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    exited.ok()
}

/// Alive: exists and is neither a zombie nor dead (init may take a while to reap).
pub fn is_alive(pid: u32) -> bool {
    matches!(crate::proc_tree::state_of(pid), Some(s) if s != 'Z' && s != 'X' && s != 'x')
}

/// `/proc/PID/comm`, if the process exists.
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

/// Alive and named `syncd` or `syncd-worker`.
pub fn is_syncd(pid: u32) -> bool {
    is_alive(pid) && matches!(comm(pid).as_deref(), Some("syncd" | "syncd-worker"))
}

fn describe(pid: u32) -> String {
    match (crate::proc_tree::state_of(pid), comm(pid)) {
        (Some(s), Some(c)) => format!("pid {pid} ({c}, state {s})"),
        _ => format!("pid {pid} (gone)"),
    }
}

/// Wait until `pid` is gone (a zombie counts as gone); panic after `timeout`.
pub fn wait_gone(pid: u32, timeout: Duration, what: &str, fixtures: &[&dyn Diagnose]) {
    wait::must(
        format_args!("{what} (pid {pid}) gone"),
        timeout,
        fixtures,
        || {
            if is_alive(pid) {
                Err(describe(pid))
            } else {
                Ok(())
            }
        },
    );
}

/// Send `sig` to `pid`.
pub fn kill(pid: u32, sig: Signal) {
    let pid = i32::try_from(pid).expect("pid fits pid_t");
    // The process may be gone already; that is what the caller wanted.
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
}

/// Live processes whose command line contains `needle` (a path).
pub fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.as_os_str().as_encoded_bytes();
    let me = std::process::id();
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && is_alive(pid))
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Bytes as text (lossy).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A command's exit, stdout and stderr for a failure message.
pub fn show(out: &Output) -> String {
    let how = match (out.status.code(), out.status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("{}", out.status),
    };
    format!(
        "[{how}]\n--- stdout ---\n{}\n--- stderr ---\n{}",
        text(&out.stdout).trim_end(),
        text(&out.stderr).trim_end()
    )
}

/// Does `out`'s stdout or stderr contain `needle`?
pub fn says(out: &Output, needle: &str) -> bool {
    text(&out.stdout).contains(needle) || text(&out.stderr).contains(needle)
}
