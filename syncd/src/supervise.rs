//! `syncd run` (and the daemon `syncd start` detaches): hold the lock for life, write the
//! pidfile, tune the inotify limits, start `syncd-worker` and keep it alive.
//!
//! The inotify limits: at start and reload the config's values only (nothing is counted,
//! the worker is spawned at once); when the worker runs out of watches it asks on the
//! notify socket (`X_SYNCD_WATCHES`, [`contract::WATCHES_REQUEST`]): the request is
//! honoured only from the worker's own pid (the kernel names the sender; an abstract
//! socket has no permissions), [`crate::sysctl::raise_for_worker`] applies the policy to
//! its count, and the answer (the limit now, [`contract::WATCHES_LIMIT`]) goes back to
//! the address it was sent from. Neither is passed on to systemd. No other datagram is
//! taken from anyone but the current worker either ([`notify::SenderGate`]): a stranger's
//! READY=1 or STATUS= is dropped, never forwarded to systemd or `syncd start`, and logged
//! once per sender.
//!
//! One loop owns everything; signals (signal-hook thread), worker exits (a waiter thread
//! per worker) and the worker's sd_notify messages (a listener thread) arrive as
//! messages on one channel, and the loop blocks on the nearest deadline (restart due,
//! drain limit, systemd timeout extension), or with none due (a ready worker running)
//! until a message: an idle controller does not wake. Each of those threads blocks in
//! the kernel without a timeout (`waitid`, the signal pipe, the socket's `recv`). Decisions about restarts come from the pure
//! [`crate::policy`]. The worker runs in its own process group (a terminal's Ctrl-C
//! reaches only the controller, which then drains the worker properly) with
//! PR_SET_PDEATHSIG, so it never outlives a controller killed with SIGKILL.

use std::process::{ExitCode, ExitStatus};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use nix::sys::signal::Signal;
use syncd_worker::config::Config;
use syncd_worker::contract::{self, WorkerCommandLine};
use syncd_worker::deadline::{after, wall_after};
use syncd_worker::log_channel;
use syncd_worker::notify;
use syncd_worker::process::{describe_exit, Group, Input, Output, Spawn};
use syncd_worker::state_dir::StateDir;
use syncd_worker::status::unix_secs;

use crate::cli::WorkerArgs;
use crate::lock::{Held, PidLock};
use crate::log_file::{LogFile, Reopened};
use crate::policy::{Decision, RestartPolicy, Restarts};
use crate::procs;
use crate::settings::Settings;
use crate::state::{ControllerState, Phase};

/// How long a stopping worker may drain before it is killed (a second SIGTERM, e.g. from
/// `syncd stop --timeout`, kills it at once).
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// While the first worker sets up its watches, systemd's start timeout is pushed back by
/// this much, this often (EXTEND_TIMEOUT_USEC, systemd ≥ 236).
const EXTEND_EVERY: Duration = Duration::from_secs(10);
const EXTEND_BY: Duration = Duration::from_secs(30);

enum Msg {
    Signal(Signal),
    Exited(u32, ExitStatus),
    Notify(notify::Message),
}

struct Worker {
    pid: u32,
    started: Instant,
    ready: bool,
}

/// Run the supervisor until a stop signal (exit 0), a failed first start or giving up (1).
pub fn run(settings: &Settings, config: Config, args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let lock = match args.lock_fd {
        Some(fd) => PidLock::from_inherited_fd(fd, &settings.pidfile)?,
        None => match PidLock::acquire(&settings.pidfile, &settings.lockfile)? {
            Ok(lock) => {
                crate::start::clear_stale_pidfile(&lock, &settings.pidfile)?;
                lock
            }
            Err(Held::Syncd { pid }) => {
                eprintln!(
                    "syncd: already running{} (lock {} is held)",
                    pid.map(|p| format!(" as pid {p}")).unwrap_or_default(),
                    settings.lockfile.display()
                );
                return Ok(ExitCode::FAILURE);
            }
            Err(Held::Foreign(holders)) => {
                eprintln!(
                    "syncd: cannot run: {}",
                    crate::lock::foreign_holder_message(&settings.lockfile, &holders)
                );
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    // Holding the lock, this controller is the one writer of its pidfile and state file:
    // remove the temp files a controller killed mid-write left beside them.
    for file in [&settings.pidfile, &settings.controller_file] {
        syncd_worker::durable::remove_leftover_temps(file);
    }
    lock.write_pid(std::process::id())?;
    let mut sup = Supervisor::new(settings, config, args.clone());
    let result = sup.run();
    if let Some(u) = &sup.unpriv {
        u.remove_copies();
    }
    match &result {
        // A crash loop leaves the pidfile: `status` says "dead" (1) and shows why.
        Ok(Outcome::GaveUp) => {}
        _ => {
            if let Err(e) = lock.remove_pidfile() {
                log::error!("{e:#}");
            }
        }
    }
    drop(lock);
    match result {
        Ok(Outcome::Stopped) => Ok(ExitCode::SUCCESS),
        Ok(Outcome::GaveUp) | Ok(Outcome::FailedStart) => Ok(ExitCode::FAILURE),
        Err(e) => {
            sup.state.phase = Phase::Stopped;
            sup.state.error = Some(format!("{e:#}"));
            sup.save_state();
            Err(e)
        }
    }
}

enum Outcome {
    Stopped,
    GaveUp,
    FailedStart,
}

struct Supervisor<'a> {
    settings: &'a Settings,
    config: Config,
    args: WorkerArgs,
    state: ControllerState,
    restarts: Restarts,
    worker: Option<Worker>,
    restart_at: Option<Instant>,
    stopping: Option<Instant>,
    ever_ready: bool,
    next_extend: Instant,
    /// Takes the notify socket's datagrams from the current worker only.
    senders: notify::SenderGate,
    /// `user` is set: the worker runs as that account ([`crate::privdrop`]).
    unpriv: Option<crate::privdrop::Unprivileged>,
    /// The log file stderr is (a daemon of `syncd start`), reopened on
    /// [`contract::REOPEN_LOGS`]; None under systemd, in a terminal, into a pipe.
    log_file: Option<LogFile>,
    /// The current worker's `--log-channel`, when there is a log file to reopen.
    log_channel: Option<log_channel::Sender>,
}

impl<'a> Supervisor<'a> {
    fn new(settings: &'a Settings, config: Config, args: WorkerArgs) -> Self {
        Supervisor {
            settings,
            config,
            args,
            state: ControllerState {
                pid: std::process::id(),
                started_at: unix_secs(SystemTime::now()),
                phase: Phase::Starting,
                worker_pid: None,
                worker_started_at: None,
                restarts: 0,
                last_exit: None,
                restart_at: None,
                error: None,
            },
            restarts: Restarts::new(RestartPolicy::default()),
            worker: None,
            restart_at: None,
            stopping: None,
            ever_ready: false,
            next_extend: Instant::now(),
            senders: notify::SenderGate::new(None),
            unpriv: None,
            log_file: LogFile::of_stderr(&settings.log_file),
            log_channel: None,
        }
    }

    fn run(&mut self) -> anyhow::Result<Outcome> {
        StateDir::create(&self.settings.state_dir)?;
        self.unpriv = crate::privdrop::prepare(&self.config, &self.settings.state_dir)?;
        let (tx, rx) = mpsc::channel();
        // Signals first, before any other thread exists.
        spawn_signals(tx.clone())?;
        let listener = notify::Listener::bind("worker")
            .context("failed to bind the worker's notification socket")?;
        let socket = listener.name().to_string();
        spawn_listener(listener, tx.clone());
        log::info!(
            "syncd {} controller pid {} starting (config {})",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            self.settings.config.display()
        );
        crate::sysctl::tune(&self.config);
        self.spawn(&socket, &tx, false)?;
        loop {
            let now = Instant::now();
            if let Some(outcome) = self.on_deadlines(now, &socket, &tx)? {
                return Ok(outcome);
            }
            // Nothing due (the worker runs and is ready): block until a message.
            let msg = match self.next_deadline() {
                Some(d) => rx.recv_timeout(d.saturating_duration_since(now)),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let msg = match msg {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => anyhow::bail!("internal channel closed"),
            };
            if let Some(outcome) = self.handle(msg)? {
                return Ok(outcome);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d = [
            self.restart_at,
            self.stopping.map(|s| after(s, DRAIN_LIMIT)),
        ]
        .into_iter()
        .flatten()
        .min();
        if !self.ever_ready && self.worker.is_some() {
            d = Some(d.map_or(self.next_extend, |x| x.min(self.next_extend)));
        }
        d
    }

    fn on_deadlines(
        &mut self,
        now: Instant,
        socket: &str,
        tx: &Sender<Msg>,
    ) -> anyhow::Result<Option<Outcome>> {
        if !self.ever_ready && self.worker.is_some() && now >= self.next_extend {
            notify::send(&format!("EXTEND_TIMEOUT_USEC={}", EXTEND_BY.as_micros()));
            self.next_extend = after(now, EXTEND_EVERY);
        }
        if let Some(s) = self.stopping {
            if now >= after(s, DRAIN_LIMIT) {
                if let Some(w) = &self.worker {
                    log::error!(
                        "worker pid {} did not finish draining within {}s; killing it",
                        w.pid,
                        DRAIN_LIMIT.as_secs()
                    );
                    let _ = procs::signal(w.pid, Signal::SIGKILL);
                }
                self.stopping = Some(now);
            }
        }
        if let Some(at) = self.restart_at {
            if now >= at && self.stopping.is_none() {
                self.restart_at = None;
                self.state.restarts += 1;
                self.state.restart_at = None;
                if let Err(e) = self.spawn(socket, tx, true) {
                    log::error!("{e:#}");
                    return Ok(self.worker_ended(now, Duration::ZERO, None));
                }
            }
        }
        Ok(None)
    }

    fn spawn(&mut self, socket: &str, tx: &Sender<Msg>, catch_up: bool) -> anyhow::Result<()> {
        // A restarted worker catches up by itself: its predecessor's running checkpoint
        // (catchup.json) gives the ctime walk its start, and without one (it died before
        // its first quiet moment) the worker pushes every tree whole.
        let args = WorkerCommandLine {
            config: self.settings.config.clone(),
            log_level: self.settings.log_level.clone(),
            state_dir: self
                .settings
                .state_dir_flag
                .then(|| self.settings.state_dir.clone()),
            initial_sync: self.args.initial_sync && !catch_up,
            threads: self.args.threads,
            once: None,
            password_dir: self.unpriv.as_ref().map(|u| u.password_dir()),
            log_channel: self.log_file.is_some(),
        };
        // With a log file to reopen, the worker's stdin is its end of the log channel.
        let (channel, stdin) = match self.log_file {
            Some(_) => {
                let (ours, theirs) = log_channel::pair()
                    .context("failed to make the worker's log channel (a socket pair)")?;
                (Some(ours), Input::File(theirs))
            }
            None => (None, Input::Null),
        };
        let worker = crate::privdrop::as_user(
            Spawn::new(&self.settings.worker_bin).args(args.to_args()),
            self.unpriv.as_ref(),
        );
        // Spawned from the main thread, which lives as long as the controller: the
        // parent-death signal follows the spawning thread. Its log lines go to ours.
        let child = worker
            .env(notify::ENV, socket)
            .stdin(stdin)
            .stdout(Output::Inherit)
            .stderr(Output::Inherit)
            .group(Group::New)
            .parent_death(Some(Signal::SIGTERM))
            .spawn()
            .with_context(|| {
                crate::privdrop::start_failure(&self.settings.worker_bin, self.unpriv.as_ref())
            })?;
        let pid = child.pid();
        self.log_channel = channel;
        log::info!(
            "worker pid {pid} started{}",
            if catch_up {
                " (replays the fail log, then catches up from its predecessor's checkpoint)"
            } else {
                ""
            }
        );
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(Msg::Exited(pid, status));
            }
        });
        self.worker = Some(Worker {
            pid,
            started: Instant::now(),
            ready: false,
        });
        self.state.phase = Phase::Starting;
        self.state.worker_pid = Some(pid);
        self.state.worker_started_at = Some(unix_secs(SystemTime::now()));
        self.save_state();
        Ok(())
    }

    fn handle(&mut self, msg: Msg) -> anyhow::Result<Option<Outcome>> {
        let now = Instant::now();
        match msg {
            Msg::Notify(m) => {
                if !self.sent_by_the_worker(&m) {
                    return Ok(None);
                }
                if let Some(n) = m.get(contract::WATCHES_REQUEST) {
                    self.on_watches_request(&m, n);
                    return Ok(None);
                }
                let Some(w) = self.worker.as_mut() else {
                    return Ok(None);
                };
                if m.is_ready() && !w.ready {
                    w.ready = true;
                    let status = m.get("STATUS").unwrap_or("watching").to_string();
                    log::info!("worker pid {} ready: {status}", w.pid);
                    if self.stopping.is_none() {
                        self.state.phase = Phase::Running;
                    }
                    self.save_state();
                    if !self.ever_ready {
                        self.ever_ready = true;
                        notify::send(&format!(
                            "READY=1\nSTATUS={status}\nMAINPID={}",
                            std::process::id()
                        ));
                    } else {
                        notify::send(&format!("STATUS={status}"));
                    }
                } else if let Some(s) = m.get("STATUS") {
                    notify::send(&format!("STATUS={s}"));
                }
            }
            Msg::Exited(pid, status) => {
                let Some(w) = self.worker.take_if(|w| w.pid == pid) else {
                    return Ok(None);
                };
                let how = describe_exit(status);
                self.state.last_exit = Some(how.clone());
                self.state.worker_pid = None;
                if self.stopping.is_some() {
                    if status.success() {
                        log::info!("worker pid {pid} finished draining");
                    } else {
                        log::warn!("worker pid {pid} {how}");
                    }
                    self.state.phase = Phase::Stopped;
                    self.save_state();
                    log::info!("syncd stopped");
                    return Ok(Some(Outcome::Stopped));
                }
                log::error!("worker pid {pid} {how}");
                let ran_for = now.saturating_duration_since(w.started);
                if !w.ready && !self.ever_ready {
                    // The first worker never got its watches in place: `start` is waiting
                    // for an answer, and restarting will not fix a missing source.
                    let why = format!(
                        "the worker {how} before its watches were in place; see the log above"
                    );
                    log::error!("{why}");
                    self.state.phase = Phase::Stopped;
                    self.state.error = Some(why);
                    self.save_state();
                    return Ok(Some(Outcome::FailedStart));
                }
                return Ok(self.worker_ended(now, ran_for, status.code()));
            }
            Msg::Signal(sig) => return Ok(self.on_signal(sig)),
        }
        Ok(None)
    }

    /// The worker is gone (or could not be spawned): schedule a restart or give up.
    fn worker_ended(
        &mut self,
        now: Instant,
        ran_for: Duration,
        code: Option<i32>,
    ) -> Option<Outcome> {
        match self.restarts.on_exit(now, ran_for, code) {
            Decision::RestartAt(at) => {
                let wait = at.saturating_duration_since(now);
                log::warn!("restarting the worker in {:.1}s", wait.as_secs_f64());
                self.restart_at = Some(at);
                self.state.phase = Phase::Restarting;
                self.state.restart_at = Some(unix_secs(wall_after(SystemTime::now(), wait)));
                self.save_state();
                None
            }
            Decision::GiveUp(why) => {
                log::error!("{why}");
                self.state.phase = Phase::GaveUp;
                self.state.error = Some(why.clone());
                self.state.restart_at = None;
                self.save_state();
                notify::send(&format!("STATUS=gave up: {why}"));
                Some(Outcome::GaveUp)
            }
        }
    }

    fn on_signal(&mut self, sig: Signal) -> Option<Outcome> {
        match sig {
            contract::STOP | Signal::SIGINT => {
                if self.stopping.is_some() {
                    if let Some(w) = &self.worker {
                        log::warn!("second stop signal: killing worker pid {}", w.pid);
                        let _ = procs::signal(w.pid, Signal::SIGKILL);
                    }
                    return None;
                }
                notify::send("STOPPING=1");
                self.stopping = Some(Instant::now());
                self.restart_at = None;
                self.state.phase = Phase::Stopping;
                self.state.restart_at = None;
                self.save_state();
                match &self.worker {
                    Some(w) => {
                        log::info!(
                            "stop requested: worker pid {} finishes its push and saves its queue",
                            w.pid
                        );
                        let _ = procs::signal(w.pid, contract::STOP);
                    }
                    None => {
                        self.state.phase = Phase::Stopped;
                        self.save_state();
                        log::info!("syncd stopped");
                        return Some(Outcome::Stopped);
                    }
                }
            }
            contract::RELOAD => self.reload(),
            contract::REOPEN_LOGS => self.reopen_logs(),
            contract::PUSH_PENDING | contract::PUSH_FULL => {
                if let Some(w) = &self.worker {
                    log::info!(
                        "{}: passing it to worker pid {}",
                        if sig == contract::PUSH_PENDING {
                            "push pending changes now"
                        } else {
                            "full sync requested"
                        },
                        w.pid
                    );
                    let _ = procs::signal(w.pid, sig);
                } else {
                    log::warn!("no worker running to pass the request to");
                }
            }
            _ => {}
        }
        None
    }

    /// Whether `m` comes from the current worker (the kernel names the sender); anyone
    /// else's datagram is dropped, and logged once per sender.
    fn sent_by_the_worker(&mut self, m: &notify::Message) -> bool {
        let worker = self.worker.as_ref().map(|w| w.pid);
        self.senders.expect(worker);
        let more = match self.senders.admit(m.pid) {
            notify::Admission::Take => return true,
            notify::Admission::Drop => return false,
            notify::Admission::DropAndLog => "",
            notify::Admission::DropAndLogLast => "; later senders are not named",
        };
        let what = match m.get(contract::WATCHES_REQUEST) {
            Some(_) => "a request for inotify watches".to_string(),
            None => format!("a notification ({})", m.keys()),
        };
        let why = worker.map_or_else(
            || "no worker runs now".to_string(),
            |w| format!("not the worker (pid {w})"),
        );
        log::warn!("ignored {what} from {}: {why}{more}", m.sender());
        false
    }

    /// The worker is out of inotify watches and asks for `n` (in use and missing): raise
    /// the limit by the sysctl policy and answer with its value now. Only the current
    /// worker's requests get here ([`Supervisor::sent_by_the_worker`]).
    fn on_watches_request(&self, m: &notify::Message, n: &str) {
        let Some(w) = self.worker.as_ref() else {
            return;
        };
        let Ok(needed) = n.trim().parse::<u64>() else {
            log::warn!(
                "worker pid {} asked for {n:?} inotify watches: not a number",
                w.pid
            );
            return;
        };
        log::info!(
            "worker pid {} is out of inotify watches: it asks for {needed} (in use and missing)",
            w.pid
        );
        let limit = crate::sysctl::raise_for_worker(&self.config, needed);
        let shown = limit.map_or_else(|| "unknown".to_string(), |l| l.to_string());
        match &m.from {
            Some(to) => {
                let answer = format!("{}={shown}", contract::WATCHES_LIMIT);
                if let Err(e) = notify::send_to(std::ffi::OsStr::new(to), &answer) {
                    log::warn!("cannot answer worker pid {}: {e}", w.pid);
                }
            }
            None => log::warn!(
                "worker pid {} asked for inotify watches from an unbound socket: no answer",
                w.pid
            ),
        }
        log::info!(
            "answered worker pid {}: fs.inotify.max_user_watches = {shown}",
            w.pid
        );
    }

    /// `syncd reopen-logs`: after logrotate moved the log file away, write to a new one at
    /// its path, and have the worker do the same.
    fn reopen_logs(&self) {
        // Debug only: a terminal sends the same signal to `syncd run` on each resize, and
        // `syncd reopen-logs` says so itself before signalling.
        let Some(log_file) = &self.log_file else {
            log::debug!(
                "reopen-logs: this syncd does not write to {} (stderr is the journal, a terminal or a pipe): nothing to reopen",
                self.settings.log_file.display()
            );
            return;
        };
        let path = log_file.path().display();
        log::info!("reopen-logs: reopening {path}");
        let (file, created) = match log_file.reopen() {
            Ok(Reopened::Unchanged) => {
                log::info!("reopen-logs: {path} was not moved; still writing to it");
                return;
            }
            Ok(Reopened::New { file, created }) => (file, created),
            Err(e) => {
                log::error!("reopen-logs: {e:#}");
                return;
            }
        };
        log::info!(
            "log file {path} reopened{}",
            if created {
                " (created with the old one's owner and mode)"
            } else {
                ""
            }
        );
        match (&self.worker, &self.log_channel) {
            (Some(w), Some(channel)) => match channel.send(&file) {
                Ok(()) => log::info!("reopen-logs: passed the new log file to worker pid {}", w.pid),
                Err(e) => log::error!(
                    "reopen-logs: cannot pass the new log file to worker pid {}: {e}; it keeps writing to the old one until it restarts (syncd restart)",
                    w.pid
                ),
            },
            _ => log::info!("reopen-logs: no worker runs now; the next one writes to the new file"),
        }
    }

    /// SIGHUP: validate the config again; a bad one changes nothing.
    fn reload(&mut self) {
        let path = &self.settings.config;
        let new = match syncd_worker::config::load(path) {
            Ok(c) => c,
            Err(e) => {
                log::error!(
                    "reload refused, keeping the running configuration: {} is invalid:\n{e}",
                    path.display()
                );
                return;
            }
        };
        if new.daemon.pid_file != self.config.daemon.pid_file
            || new.daemon.log_file != self.config.daemon.log_file
            || new.state_dir != self.config.state_dir
        {
            log::warn!("pid_file, log_file and state_dir changes take effect at the next restart");
        }
        if let Some(why) = crate::privdrop::reload_refusal(&self.config, &new) {
            log::error!("reload refused, keeping the running configuration and worker: {why}");
            return;
        }
        if let Some(u) = &self.unpriv {
            if let Err(e) = u.write_copies(&new) {
                log::error!("reload refused, keeping the running configuration: {e:#}");
                return;
            }
        }
        crate::sysctl::tune(&new);
        self.config = new;
        match &self.worker {
            Some(w) => {
                log::info!(
                    "reloading {}: passing SIGHUP to worker pid {}",
                    path.display(),
                    w.pid
                );
                let _ = procs::signal(w.pid, contract::RELOAD);
            }
            None => log::info!("reloaded {}; the next worker uses it", path.display()),
        }
    }

    fn save_state(&self) {
        if let Err(e) = self.state.write(&self.settings.controller_file) {
            log::error!("{e:#}");
        }
    }
}

fn spawn_signals(tx: Sender<Msg>) -> anyhow::Result<()> {
    let mut handled = syncd_worker::signals::HANDLED.to_vec();
    handled.push(contract::REOPEN_LOGS);
    syncd_worker::signals::forward(&handled, move |sig| tx.send(Msg::Signal(sig)).is_ok())
}

fn spawn_listener(listener: notify::Listener, tx: Sender<Msg>) {
    std::thread::spawn(move || loop {
        match listener.recv(None) {
            Ok(Some(m)) => {
                if tx.send(Msg::Notify(m)).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                log::error!("worker notification socket: {e}");
                return;
            }
        }
    });
}
