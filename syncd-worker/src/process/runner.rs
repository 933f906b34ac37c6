//! Start one child process and see it to its end. No shell: the argv as given. Owns the
//! feeding of the child's stdin and the draining of its outputs (so neither a large stdin
//! nor a chatty stderr can deadlock against the other), the wait for its exit, and the
//! kill sequence at a deadline or on cancel: SIGTERM, then SIGKILL after the grace (at
//! once when the grace is zero), to the whole process group when the child leads one.
//!
//! Stdin bytes ([`Input::Bytes`]) are handed over as a memory file (`memfd_create`,
//! private to this process and the child, like a pipe): the child reads the same bytes
//! and then end of file, and no thread has to feed it. A run with nothing to time or
//! cancel and at most one output to read reads it on the calling thread; otherwise each
//! output gets a thread (and so does stdin, through a pipe, where the kernel has no
//! memory files). Measured: a push's rsync run cost the worker ~0.5 ms of CPU with a
//! stdin and a stderr thread, ~0.25 ms without (2 cores, 4 threads of the worker).
//!
//! Invariants:
//! * The child is reaped only after the decision to signal it is made, so a signal
//!   never reaches a reused pid: the exit is observed with `waitid(WNOWAIT)` and the
//!   reap comes last.
//! * `PR_SET_PDEATHSIG` follows the thread that forks, so [`Spawn::run`] forks on the
//!   calling thread and blocks it until the child is reaped; [`Spawn::spawn`]'s caller
//!   must keep the spawning thread alive as long as the child should live.
//! * A run always ends: after the child exits its outputs are drained to their end or
//!   within the [`Drain`] bound; after a kill, within [`AFTER_KILL_DRAIN`] at most (a
//!   grandchild outside the group may hold the pipes forever). A reader left behind
//!   ends by itself when the pipe closes.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use super::credentials::Credentials;
use super::tail::{Tail, TailBuf};
use crate::deadline::after;

/// After a kill, how long the outputs may stay open before the run stops waiting for
/// them (a child outside the killed group may hold them).
pub const AFTER_KILL_DRAIN: Duration = Duration::from_secs(1);

/// What the child reads on stdin.
#[derive(Debug)]
pub enum Input {
    /// `/dev/null`.
    Null,
    /// The parent's own stdin (a command run in the foreground for the user).
    Inherit,
    /// These bytes, then end of file (a memory file; a pipe fed by a thread where the
    /// kernel has none).
    Bytes(Vec<u8>),
    /// This open file.
    File(File),
}

/// A callback for each chunk a child writes (see [`Output::Each`]).
pub type OnChunk = Box<dyn FnMut(&[u8]) + Send>;

/// Where one of the child's outputs goes.
pub enum Output {
    /// `/dev/null`.
    Null,
    /// The parent's own descriptor (e.g. the log the daemon writes to).
    Inherit,
    /// Read on a thread; the last this many bytes are kept in [`Ended`].
    Tail(usize),
    /// Read on a thread; each chunk as it arrives is handed to the callback (on that
    /// thread). Chunks do not respect line boundaries: the callback splits them.
    Each(OnChunk),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Null => f.write_str("Null"),
            Output::Inherit => f.write_str("Inherit"),
            Output::Tail(n) => write!(f, "Tail({n})"),
            Output::Each(_) => f.write_str("Each(..)"),
        }
    }
}

/// Whether the child gets a process group (or a whole session) of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Stays in the parent's group: signals reach the child alone.
    Inherit,
    /// Leads a new process group: a kill reaches whatever it started too, and a
    /// terminal's Ctrl-C does not reach it.
    New,
    /// Leads a new session (`setsid`): a new group with no controlling terminal, so
    /// nothing it runs (ssh) can stop to ask for a password.
    Session,
}

/// How long to wait, after the child exits, for its outputs to close (something it
/// started may hold them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Until they close; a deadline, if any, bounds the exit and the outputs together.
    ToEnd,
    /// At most this long after the exit; what arrived by then is kept. A deadline, if
    /// any, bounds the exit only.
    Within(Duration),
}

/// A stop flag shared by any number of runs: once cancelled, each running child gets
/// the kill sequence, and runs started later are killed as soon as they start.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    inner: Arc<Mutex<CancelState>>,
}

#[derive(Debug, Default)]
struct CancelState {
    cancelled: bool,
    runs: Vec<Sender<Event>>,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stop every run using this handle.
    pub fn cancel(&self) {
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        s.cancelled = true;
        for run in s.runs.drain(..) {
            let _ = run.send(Event::Cancelled);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancelled
    }

    fn register(&self, tx: &Sender<Event>) {
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if s.cancelled {
            let _ = tx.send(Event::Cancelled);
            return;
        }
        // Drop the senders of runs that have ended (their receiver is gone).
        s.runs.retain(|r| r.send(Event::Ping).is_ok());
        s.runs.push(tx.clone());
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum How {
    /// It ran to its end by itself (any exit code, or a signal nobody here sent).
    Exited(ExitStatus),
    /// Killed because the deadline passed; the status of the killed child.
    TimedOut(ExitStatus),
    /// Killed because the run was cancelled; the status of the killed child.
    Cancelled(ExitStatus),
    /// It could not be started (missing program, no permission, the pre-exec steps
    /// failed).
    FailedToStart(io::Error),
    /// It started but could not be waited for (not expected: someone else reaped it).
    WaitFailed(io::Error),
}

impl How {
    /// The exit status, when the child was reaped.
    pub fn status(&self) -> Option<ExitStatus> {
        match self {
            How::Exited(s) | How::TimedOut(s) | How::Cancelled(s) => Some(*s),
            How::FailedToStart(_) | How::WaitFailed(_) => None,
        }
    }
}

/// How a run ended, and what it left behind.
#[derive(Debug)]
pub struct Ended {
    pub how: How,
    /// The end of stdout with [`Output::Tail`], else empty.
    pub stdout: Tail,
    /// The end of stderr with [`Output::Tail`], else empty.
    pub stderr: Tail,
    /// Writing [`Input::Bytes`] failed (a `BrokenPipe` only means the child did not
    /// read it all).
    pub stdin_error: Option<io::Error>,
    pub elapsed: Duration,
}

impl Ended {
    /// The exit code, when the child exited normally.
    pub fn code(&self) -> Option<i32> {
        self.how.status().and_then(|s| s.code())
    }

    /// The signal that ended the child, if one did.
    pub fn signal(&self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.how.status().and_then(|s| s.signal())
    }
}

/// One child to start: every choice explicit (see the module doc for what each does).
#[derive(Debug)]
pub struct Spawn {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Input,
    stdout: Output,
    stderr: Output,
    group: Group,
    parent_death: Option<Signal>,
    credentials: Option<Credentials>,
    deadline: Option<Duration>,
    grace: Duration,
    drain: Drain,
    cancel: Option<Cancel>,
}

impl Spawn {
    /// `program` with no arguments, stdin and outputs `/dev/null`, in the parent's
    /// group, no parent-death signal, no deadline, outputs drained to their end.
    pub fn new(program: impl Into<PathBuf>) -> Spawn {
        Spawn {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: Input::Null,
            stdout: Output::Null,
            stderr: Output::Null,
            group: Group::Inherit,
            parent_death: None,
            credentials: None,
            deadline: None,
            grace: Duration::ZERO,
            drain: Drain::ToEnd,
            cancel: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Spawn {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Set one variable; the rest of the parent's environment is inherited.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Spawn {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Spawn
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Spawn {
        self.cwd = Some(dir.into());
        self
    }

    pub fn stdin(mut self, input: Input) -> Spawn {
        self.stdin = input;
        self
    }

    pub fn stdout(mut self, output: Output) -> Spawn {
        self.stdout = output;
        self
    }

    pub fn stderr(mut self, output: Output) -> Spawn {
        self.stderr = output;
        self
    }

    pub fn group(mut self, group: Group) -> Spawn {
        self.group = group;
        self
    }

    /// The signal the child gets when the thread that spawned it ends (`None`: none).
    /// The child refuses to start if the parent died before the request took effect.
    pub fn parent_death(mut self, signal: Option<Signal>) -> Spawn {
        self.parent_death = signal;
        self
    }

    /// Run the child as this account, with no capabilities and `no_new_privs` (see
    /// [`Credentials`]); `None`: as the parent. The child does not start if that fails.
    pub fn as_user(mut self, credentials: Option<Credentials>) -> Spawn {
        self.credentials = credentials;
        self
    }

    /// Stop the child (and its group: see [`Spawn::kill_grace`]) when it has not ended
    /// this long after the start: with [`Drain::ToEnd`], ended means exited with its
    /// outputs closed; with [`Drain::Within`], exited. `None`: no deadline.
    pub fn deadline(mut self, limit: Option<Duration>) -> Spawn {
        self.deadline = limit;
        self
    }

    /// Between SIGTERM and SIGKILL when the run is stopped; zero sends SIGKILL at once.
    pub fn kill_grace(mut self, grace: Duration) -> Spawn {
        self.grace = grace;
        self
    }

    pub fn drain(mut self, drain: Drain) -> Spawn {
        self.drain = drain;
        self
    }

    pub fn cancel(mut self, cancel: &Cancel) -> Spawn {
        self.cancel = Some(cancel.clone());
        self
    }

    /// Start the child and wait for its end (see [`How`]). Blocks the calling thread,
    /// which is the one a parent-death signal is tied to.
    pub fn run(mut self) -> Ended {
        let started = Instant::now();
        let mut cmd = self.command();
        let (data, stdout, stderr) = self.take_io();
        // The bytes in a memory file when the kernel has them (no thread to feed a
        // pipe); otherwise the command keeps its pipe and a thread writes them.
        let data = match data.map(|d| (memory_file(&d), d)) {
            Some((Ok(file), _)) => {
                cmd.stdin(Stdio::from(file));
                None
            }
            Some((Err(_), d)) => Some(d),
            None => None,
        };
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => return Ended::without_status(How::FailedToStart(e), started),
        };
        // Nothing to time and outputs read to their end: the exit needs no watching
        // (the reap below waits for it), as if it were already seen.
        let watch_exit =
            self.deadline.is_some() || self.cancel.is_some() || self.drain != Drain::ToEnd;
        if !watch_exit && data.is_none() && piped(&stdout) + piped(&stderr) <= 1 {
            // One pipe at most and nothing else to wait for: read it here, to its end.
            let stdout = drain_here(child.stdout.take(), stdout);
            let stderr = drain_here(child.stderr.take(), stderr);
            let how = reap(&mut child, None);
            return Ended {
                how,
                stdout,
                stderr,
                stdin_error: None,
                elapsed: started.elapsed(),
            };
        }
        let target = Target::of(&child, self.group);
        // `tx` lives until the run ends, so the watch below never sees the channel close.
        let (tx, rx) = mpsc::channel::<Event>();
        let pipes = Pipes::start(&mut child, data, stdout, stderr, &tx);
        if watch_exit {
            if let Err(e) = start_exit_waiter(target.pid, &tx) {
                // Without the waiter there is no deadline to keep: end the child now.
                target.signal(Signal::SIGKILL);
                let _ = child.wait();
                return Ended::without_status(How::WaitFailed(e), started);
            }
        }
        if let Some(c) = &self.cancel {
            c.register(&tx);
        }
        let watch = Watch {
            target,
            grace: self.grace,
            drain: self.drain,
            limit: self.deadline.map(|d| after(started, d)),
            stop: None,
            kill_at: None,
            drain_until: None,
            exited: !watch_exit,
            open: pipes.open,
        };
        let stop = watch.until_done(&rx);
        let how = reap(&mut child, stop);
        pipes.into_ended(how, started)
    }

    /// Take the stdin bytes (if any) and the outputs out of `self` once the command is
    /// built, leaving `/dev/null` (an [`Input::File`] is dropped: the command holds a
    /// duplicate).
    fn take_io(&mut self) -> (Option<Vec<u8>>, Output, Output) {
        let data = match std::mem::replace(&mut self.stdin, Input::Null) {
            Input::Bytes(data) => Some(data),
            Input::File(_) | Input::Null | Input::Inherit => None,
        };
        let stdout = std::mem::replace(&mut self.stdout, Output::Null);
        let stderr = std::mem::replace(&mut self.stderr, Output::Null);
        (data, stdout, stderr)
    }

    /// Start a long-lived child and hand it back. Only `/dev/null`, a file or the
    /// parent's descriptors can be wired to it (no threads feed or drain it), and no
    /// deadline or cancel applies: the caller owns its life.
    pub fn spawn(self) -> io::Result<Running> {
        let piped = |o: &Output| matches!(o, Output::Tail(_) | Output::Each(_));
        if matches!(self.stdin, Input::Bytes(_))
            || piped(&self.stdout)
            || piped(&self.stderr)
            || self.deadline.is_some()
            || self.cancel.is_some()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a spawned child takes no stdin bytes, output capture, deadline or cancel",
            ));
        }
        let child = self.command().spawn()?;
        let target = Target::of(&child, self.group);
        Ok(Running { child, target })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        // The notify socket this process was given is its own: a child (rsync, ssh, a
        // hook) gets one only when the caller passes it on purpose (`env`), as the
        // controller does for the worker.
        cmd.args(&self.args)
            .env_remove(crate::contract::NOTIFY_SOCKET)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let stdin = match &self.stdin {
            Input::Null => Stdio::null(),
            Input::Inherit => Stdio::inherit(),
            Input::Bytes(_) => Stdio::piped(),
            Input::File(f) => match f.try_clone() {
                Ok(f) => Stdio::from(f),
                // A descriptor that cannot be duplicated: the child gets nothing to read.
                Err(e) => {
                    log::warn!("cannot pass a file as stdin to {:?}: {e}", self.program);
                    Stdio::null()
                }
            },
        };
        cmd.stdin(stdin)
            .stdout(stdio(&self.stdout))
            .stderr(stdio(&self.stderr));
        if self.group == Group::New {
            cmd.process_group(0);
        }
        let session = self.group == Group::Session;
        let death = self.parent_death;
        let creds = self.credentials.clone();
        if session || death.is_some() || creds.is_some() {
            let parent = nix::unistd::getpid();
            // SAFETY: the closure runs in the child between fork and exec, where only
            // async-signal-safe calls are allowed: setsid(2), prctl(2), getppid(2) and
            // the id changes of `Credentials::apply` are plain system calls, and it
            // neither allocates nor takes locks (the credentials were built before the
            // fork; an error is an io::Error built from an errno value).
            unsafe {
                cmd.pre_exec(move || before_exec(session, creds.as_ref(), death, parent));
            }
        }
        cmd
    }
}

/// In the child, before exec: a new session when asked, the account to run as, then the
/// parent-death signal (after the id change, which clears it) and a check that the
/// parent did not die before that request took effect.
fn before_exec(
    session: bool,
    creds: Option<&Credentials>,
    death: Option<Signal>,
    parent: Pid,
) -> io::Result<()> {
    if session {
        nix::unistd::setsid()?;
    }
    if let Some(c) = creds {
        c.apply()?;
    }
    if let Some(sig) = death {
        nix::sys::prctl::set_pdeathsig(sig)?;
        if nix::unistd::getppid() != parent {
            // Orphaned between fork and prctl: the signal will never come, do not start.
            return Err(Errno::ESRCH.into());
        }
    }
    Ok(())
}

/// A long-lived child started by [`Spawn::spawn`].
#[derive(Debug)]
pub struct Running {
    child: Child,
    target: Target,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its status if it has exited (then it is reaped), else `None`.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Block until it exits, and reap it.
    pub fn wait(mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }

    /// Send `signal` to the child alone (ESRCH, a child already gone, is not an error).
    /// Not after a successful `try_wait`: the pid may then belong to someone else.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        match kill(self.target.pid, signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// SIGKILL the child, and its group when it leads one.
    pub fn kill(&self) {
        self.target.signal(Signal::SIGKILL);
    }
}

/// What a stop signals: the child, and its group when it leads one.
#[derive(Debug, Clone, Copy)]
struct Target {
    pid: Pid,
    group: bool,
}

impl Target {
    fn of(child: &Child, group: Group) -> Target {
        Target {
            // A pid always fits in pid_t; 0 (never a child's pid) would only make the
            // signals below miss.
            pid: Pid::from_raw(i32::try_from(child.id()).unwrap_or(0)),
            group: group != Group::Inherit,
        }
    }

    /// Send `signal` to the group (if any) and to the child itself (which may have left
    /// the group). The child is not reaped yet, so its pid is still its own; errors
    /// (ESRCH: already gone) change nothing.
    fn signal(&self, signal: Signal) {
        if self.pid.as_raw() <= 0 {
            return;
        }
        if self.group {
            let _ = killpg(self.pid, signal);
        }
        let _ = kill(self.pid, signal);
    }

    /// The first step of the kill sequence; returns when SIGKILL is due, if later.
    fn begin_stop(&self, now: Instant, grace: Duration) -> Option<Instant> {
        if grace.is_zero() {
            self.signal(Signal::SIGKILL);
            None
        } else {
            self.signal(Signal::SIGTERM);
            Some(after(now, grace))
        }
    }
}

/// The threads that feed one child's stdin and drain its outputs, and what they leave.
struct Pipes {
    /// How many threads were started (each reports [`Event::Closed`] once).
    open: usize,
    stdin_error: Arc<Mutex<Option<io::Error>>>,
    stdout: Option<Arc<Mutex<TailBuf>>>,
    stderr: Option<Arc<Mutex<TailBuf>>>,
}

impl Pipes {
    /// Start writing `data` (if any) to the child's stdin and reading its outputs.
    fn start(
        child: &mut Child,
        data: Option<Vec<u8>>,
        stdout: Output,
        stderr: Output,
        tx: &Sender<Event>,
    ) -> Pipes {
        let mut open = 0usize;
        let stdin_error = Arc::new(Mutex::new(None));
        if let (Some(pipe), Some(data)) = (child.stdin.take(), data) {
            let slot = Arc::clone(&stdin_error);
            open += start_thread("child-stdin", tx, move || {
                if let Err(e) = write_all_then_close(pipe, &data) {
                    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                }
            });
        }
        let stdout = read_output(child.stdout.take(), stdout, tx, &mut open);
        let stderr = read_output(child.stderr.take(), stderr, tx, &mut open);
        Pipes {
            open,
            stdin_error,
            stdout,
            stderr,
        }
    }

    /// The run's result: `how` it ended and what the pipes kept by now.
    fn into_ended(self, how: How, started: Instant) -> Ended {
        let stdin_error = self
            .stdin_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Ended {
            how,
            stdout: snapshot(&self.stdout),
            stderr: snapshot(&self.stderr),
            stdin_error,
            elapsed: started.elapsed(),
        }
    }
}

/// Start the thread that reports [`Event::Exited`] when `pid` exits (left unreaped).
fn start_exit_waiter(pid: Pid, tx: &Sender<Event>) -> io::Result<()> {
    let tx = tx.clone();
    std::thread::Builder::new()
        .name("child-wait".into())
        .spawn(move || {
            wait_for_exit(pid);
            let _ = tx.send(Event::Exited);
        })
        .map(drop)
}

/// Reap the child (the last step: see the module doc) and say how the run ended.
fn reap(child: &mut Child, stop: Option<Stop>) -> How {
    match child.wait() {
        Ok(status) => match stop {
            None => How::Exited(status),
            Some(Stop::TimedOut) => How::TimedOut(status),
            Some(Stop::Cancelled) => How::Cancelled(status),
        },
        Err(e) => How::WaitFailed(e),
    }
}

/// The wait for one run's end: the child's exit, its outputs closing, the deadline, a
/// cancel, and the kill sequence these start. Hears [`Event`]s; signals, never reaps.
struct Watch {
    target: Target,
    grace: Duration,
    drain: Drain,
    /// When the deadline passes, if there is one.
    limit: Option<Instant>,
    /// Why the child is being stopped, once it is.
    stop: Option<Stop>,
    /// When SIGKILL is due, after a SIGTERM.
    kill_at: Option<Instant>,
    /// When to stop waiting for the outputs, once the child has exited.
    drain_until: Option<Instant>,
    exited: bool,
    /// Pipe threads that have not reported [`Event::Closed`] yet.
    open: usize,
}

impl Watch {
    /// Wait until the child has exited and its outputs are closed (or the drain is
    /// over); why it was stopped, if it was.
    fn until_done(mut self, rx: &Receiver<Event>) -> Option<Stop> {
        loop {
            let now = Instant::now();
            if self.done(now) {
                break;
            }
            self.on_clock(now);
            let event = match self.next_wake() {
                Some(t) => match rx.recv_timeout(t.saturating_duration_since(now)) {
                    Ok(e) => e,
                    Err(RecvTimeoutError::Timeout) => continue,
                    // Not reached: the run holds a sender.
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(e) => e,
                    Err(_) => break,
                },
            };
            self.on_event(event, Instant::now());
        }
        self.stop
    }

    fn done(&self, now: Instant) -> bool {
        self.exited && (self.open == 0 || self.drain_until.is_some_and(|t| now >= t))
    }

    /// The deadline, while it still applies: not once a stop began, and with a bounded
    /// drain not after the exit (the deadline covers the exit, the drain the outputs).
    fn pending_deadline(&self) -> Option<Instant> {
        let bounded = self.exited && matches!(self.drain, Drain::Within(_));
        self.limit.filter(|_| self.stop.is_none() && !bounded)
    }

    /// Begin the kill sequence once the deadline passed; SIGKILL once the grace is over.
    fn on_clock(&mut self, now: Instant) {
        if self.pending_deadline().is_some_and(|t| now >= t) {
            self.begin_stop(Stop::TimedOut, now);
        }
        if self.kill_at.is_some_and(|t| now >= t) {
            self.target.signal(Signal::SIGKILL);
            self.kill_at = None;
        }
    }

    /// The next moment the clock matters, if any.
    fn next_wake(&self) -> Option<Instant> {
        [
            self.pending_deadline(),
            self.kill_at,
            self.drain_until.filter(|_| self.exited),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Exited => {
                self.exited = true;
                self.drain_until = match (self.drain, self.stop) {
                    (Drain::Within(d), _) => Some(after(now, d)),
                    (Drain::ToEnd, Some(_)) => Some(after(now, AFTER_KILL_DRAIN)),
                    (Drain::ToEnd, None) => None,
                };
            }
            Event::Closed => self.open = self.open.saturating_sub(1),
            Event::Cancelled if self.stop.is_none() => self.begin_stop(Stop::Cancelled, now),
            Event::Cancelled | Event::Ping => {}
        }
    }

    /// Signal the first step of the kill sequence; after an exit, bound the drain.
    fn begin_stop(&mut self, why: Stop, now: Instant) {
        self.stop = Some(why);
        self.kill_at = self.target.begin_stop(now, self.grace);
        if self.exited {
            self.drain_until = Some(after(now, AFTER_KILL_DRAIN));
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    TimedOut,
    Cancelled,
}

/// What the run's loop hears about.
#[derive(Debug)]
enum Event {
    /// The child exited (not yet reaped).
    Exited,
    /// A stdin writer or output reader finished.
    Closed,
    Cancelled,
    /// Sent by [`Cancel`] to find runs that have ended; ignored.
    Ping,
}

fn stdio(output: &Output) -> Stdio {
    match output {
        Output::Null => Stdio::null(),
        Output::Inherit => Stdio::inherit(),
        Output::Tail(_) | Output::Each(_) => Stdio::piped(),
    }
}

/// Block until `pid` has exited, leaving it unreaped (`WNOWAIT`).
fn wait_for_exit(pid: Pid) {
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(Errno::EINTR) => continue,
            // Exited, or nothing left to wait for (the reap will say why).
            _ => return,
        }
    }
}

/// Run `f` on a thread that reports [`Event::Closed`] when it ends; 1 if it started
/// (one more thing to wait for), 0 if not (the pipe it owned is closed with it).
fn start_thread(name: &str, tx: &Sender<Event>, f: impl FnOnce() + Send + 'static) -> usize {
    let tx = tx.clone();
    let started = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            f();
            let _ = tx.send(Event::Closed);
        });
    match started {
        Ok(_) => 1,
        Err(e) => {
            log::warn!("cannot start the {name} thread: {e}");
            0
        }
    }
}

/// Start draining `pipe` as `output` says; the tail it fills, if any.
fn read_output(
    pipe: Option<impl Read + Send + 'static>,
    output: Output,
    tx: &Sender<Event>,
    open: &mut usize,
) -> Option<Arc<Mutex<TailBuf>>> {
    let pipe = pipe?;
    match output {
        Output::Tail(keep) => {
            let buf = Arc::new(Mutex::new(TailBuf::new(keep)));
            let shared = Arc::clone(&buf);
            *open += start_thread("child-output", tx, move || {
                read_chunks(pipe, |chunk| {
                    shared
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(chunk)
                })
            });
            Some(buf)
        }
        Output::Each(mut f) => {
            *open += start_thread("child-output", tx, move || read_chunks(pipe, &mut *f));
            None
        }
        Output::Null | Output::Inherit => None,
    }
}

fn snapshot(tail: &Option<Arc<Mutex<TailBuf>>>) -> Tail {
    tail.as_ref()
        .map(|t| t.lock().unwrap_or_else(PoisonError::into_inner).tail())
        .unwrap_or_default()
}

/// Read `r` to its end (or its first error), handing each chunk to `f`.
fn read_chunks(mut r: impl Read, mut f: impl FnMut(&[u8])) {
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => f(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// 1 when `output` is read through a pipe, else 0.
fn piped(output: &Output) -> usize {
    usize::from(matches!(output, Output::Tail(_) | Output::Each(_)))
}

/// Read `pipe` to its end on this thread as `output` says; the tail it kept, if any.
fn drain_here(pipe: Option<impl Read>, output: Output) -> Tail {
    let Some(pipe) = pipe else {
        return Tail::default();
    };
    match output {
        Output::Tail(keep) => {
            let mut buf = TailBuf::new(keep);
            read_chunks(pipe, |chunk| buf.push(chunk));
            buf.tail()
        }
        Output::Each(mut f) => {
            read_chunks(pipe, &mut *f);
            Tail::default()
        }
        Output::Null | Output::Inherit => Tail::default(),
    }
}

/// `data` in a memory file (`memfd_create`, close-on-exec in this process), positioned
/// at its start: a child's stdin that needs no thread to feed it. Through rustix's raw
/// system call: the packages link against glibc 2.17, which has no `memfd_create`
/// wrapper (added in 2.27), so nix's would not link there.
fn memory_file(data: &[u8]) -> io::Result<File> {
    use rustix::fs::{memfd_create, MemfdFlags};
    let fd = memfd_create(c"syncd-stdin", MemfdFlags::CLOEXEC)?;
    let mut file = File::from(fd);
    file.write_all(data)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

fn write_all_then_close(mut stdin: ChildStdin, data: &[u8]) -> io::Result<()> {
    stdin.write_all(data)?;
    stdin.flush()
    // dropping `stdin` closes the pipe: the child sees the end of its input
}

impl Ended {
    fn without_status(how: How, started: Instant) -> Ended {
        Ended {
            how,
            stdout: Tail::default(),
            stderr: Tail::default(),
            stdin_error: None,
            elapsed: started.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use std::os::unix::process::ExitStatusExt;

    fn sh(script: &str) -> Spawn {
        Spawn::new("/bin/sh").args(["-c", script])
    }

    fn status(ended: &Ended) -> (Option<i32>, Option<i32>) {
        (ended.code(), ended.signal())
    }

    #[test]
    fn exit_code_env_and_cwd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ended = sh("echo \"$SYNCD_TEST_VAR $(pwd)\" >&2; exit 23")
            .env("SYNCD_TEST_VAR", "yes")
            .current_dir(dir.path())
            .stderr(Output::Tail(1024))
            .run();
        assert!(matches!(ended.how, How::Exited(_)), "{:?}", ended.how);
        assert_eq!(status(&ended), (Some(23), None));
        let cwd = dir.path().canonicalize().expect("canonical tempdir");
        assert_eq!(ended.stderr.lossy(), format!("yes {}\n", cwd.display()));
        assert!(!ended.stderr.truncated);
    }

    #[test]
    fn a_signal_nobody_here_sent_is_an_exit_by_signal() {
        let ended = sh("kill -KILL $$").run();
        assert!(matches!(ended.how, How::Exited(_)), "{:?}", ended.how);
        assert_eq!(status(&ended), (None, Some(9)));
    }

    #[test]
    fn stderr_tail_is_kept_to_the_limit() {
        let ended =
            sh("i=0; while [ $i -lt 5000 ]; do echo line$i; i=$((i+1)); done >&2; echo LAST >&2")
                .stderr(Output::Tail(1000))
                .run();
        assert_eq!(status(&ended), (Some(0), None));
        assert_eq!(ended.stderr.bytes.len(), 1000);
        assert!(ended.stderr.truncated);
        assert!(ended.stderr.lossy().ends_with("line4999\nLAST\n"));
        assert!(ended.stdout.bytes.is_empty(), "stdout was not captured");
    }

    #[test]
    fn stdin_bytes_are_delivered_while_stderr_fills() {
        // 4 MiB of stdin while the child writes more than a pipe's worth of stderr
        // first: neither side may block the other.
        let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let ended = sh("yes err | head -c 200000 >&2; n=$(wc -c); echo \"got $n\"")
            .stdin(Input::Bytes(data.clone()))
            .stdout(Output::Tail(100))
            .stderr(Output::Tail(10))
            .run();
        assert_eq!(status(&ended), (Some(0), None));
        assert_eq!(ended.stdout.lossy().trim(), format!("got {}", data.len()));
        assert!(ended.stdin_error.is_none(), "{:?}", ended.stdin_error);
    }

    #[test]
    fn stdin_from_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in");
        std::fs::write(&path, "from the file\n").expect("write");
        let file = File::open(&path).expect("open");
        let ended = sh("cat")
            .stdin(Input::File(file))
            .stdout(Output::Tail(100))
            .run();
        assert_eq!(ended.stdout.lossy(), "from the file\n");
    }

    /// Set in the copy of this test binary that [`the_parents_stdin_and_stdout_are_inherited`]
    /// starts: there, [`inherit_helper`] runs its child.
    const INHERIT_HELPER: &str = "SYNCD_TEST_INHERIT_HELPER";

    #[test]
    fn the_parents_stdin_and_stdout_are_inherited() {
        // Our own stdin cannot be changed under the other tests, so a copy of this test
        // binary, its stdin a file we wrote, runs `cat` with both inherited.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in");
        std::fs::write(&path, "through the parent's stdin\n").expect("write");
        let exe = std::env::current_exe().expect("path of the test executable");
        let out = Command::new(exe)
            .args(["--exact", "process::runner::tests::inherit_helper"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env(INHERIT_HELPER, "1")
            .stdin(File::open(&path).expect("open"))
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("1 passed"),
            "the helper did not run: {stdout}"
        );
        assert!(
            stdout.contains("through the parent's stdin\n"),
            "cat's output did not reach the parent's stdout: {stdout}"
        );
    }

    /// Not a test of its own: run by [`the_parents_stdin_and_stdout_are_inherited`].
    #[test]
    #[ignore = "run by the_parents_stdin_and_stdout_are_inherited"]
    fn inherit_helper() {
        if std::env::var_os(INHERIT_HELPER).is_none() {
            return;
        }
        let ended = Spawn::new("cat")
            .stdin(Input::Inherit)
            .stdout(Output::Inherit)
            .run();
        assert_eq!(status(&ended), (Some(0), None));
    }

    #[test]
    fn stdin_bytes_come_from_a_file_and_the_lone_output_is_read_to_its_end() {
        // A regular file (the memory file), not a pipe: nothing has to feed it while the
        // child runs. Its bytes and then end of file, as through a pipe.
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let ended = sh(
            "test -f /dev/stdin || { echo 'stdin is not a file' >&2; exit 9; }; \
                        cat >&2",
        )
        .stdin(Input::Bytes(data.clone()))
        .stderr(Output::Tail(data.len()))
        .run();
        assert_eq!(status(&ended), (Some(0), None), "{}", ended.stderr.lossy());
        assert!(ended.stdin_error.is_none());
        assert_eq!(ended.stderr.bytes, data);
    }

    #[test]
    fn a_child_that_ignores_stdin_gets_a_broken_pipe_only() {
        let ended = sh("exit 5")
            .stdin(Input::Bytes(vec![b'x'; 1024 * 1024]))
            .run();
        assert_eq!(status(&ended), (Some(5), None));
        if let Some(e) = &ended.stdin_error {
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
        }
    }

    #[test]
    fn each_chunk_reaches_the_callback() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&seen);
        let ended = sh("printf 'a\\rb\\n'; echo oops >&2")
            .stdout(Output::Each(Box::new(move |chunk| {
                shared
                    .lock()
                    .expect("not poisoned")
                    .extend_from_slice(chunk)
            })))
            .stderr(Output::Tail(100))
            .run();
        assert_eq!(status(&ended), (Some(0), None));
        assert_eq!(*seen.lock().expect("not poisoned"), b"a\rb\n");
        assert_eq!(ended.stderr.lossy(), "oops\n");
    }

    #[test]
    fn failed_to_start_carries_the_error() {
        let ended = Spawn::new("/nonexistent/bin/x")
            .stderr(Output::Tail(10))
            .run();
        match ended.how {
            How::FailedToStart(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            status(&Spawn::new("/nonexistent/bin/x").run()),
            (None, None)
        );
    }

    /// Become the reaper of orphans, so a killed child's own children can be waited
    /// for by pid here.
    fn reap_orphans() {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    }

    /// The pid a script printed on its first stderr line.
    fn first_pid(tail: &Tail) -> Pid {
        let text = tail.lossy();
        let first = text.lines().next().unwrap_or_default();
        Pid::from_raw(first.trim().parse().expect("a pid on the first line"))
    }

    #[test]
    fn the_deadline_kills_the_whole_group() {
        reap_orphans();
        let started = Instant::now();
        let ended = sh("sleep 30 & echo $! >&2; wait")
            .group(Group::New)
            .stderr(Output::Tail(100))
            .deadline(Some(Duration::from_millis(300)))
            .run();
        assert!(matches!(ended.how, How::TimedOut(_)), "{:?}", ended.how);
        assert_eq!(status(&ended), (None, Some(9)));
        assert!(started.elapsed() < Duration::from_secs(10));
        // The grandchild was in the group: it was killed too (not left to sleep 30 s).
        let grandchild = first_pid(&ended.stderr);
        assert_eq!(
            waitpid(grandchild, None).expect("the orphaned sleep is ours to reap"),
            WaitStatus::Signaled(grandchild, Signal::SIGKILL, false)
        );
    }

    #[test]
    fn a_deadline_with_grace_sends_term_first() {
        // The child traps TERM and says so; only KILL could end it otherwise.
        let ended =
            sh("trap 'echo term >&2; exit 7' TERM; echo ready >&2; while :; do sleep 0.05; done")
                .group(Group::Session)
                .stderr(Output::Tail(100))
                .deadline(Some(Duration::from_millis(300)))
                .kill_grace(Duration::from_secs(20))
                .run();
        assert!(matches!(ended.how, How::TimedOut(_)), "{:?}", ended.how);
        assert_eq!(status(&ended), (Some(7), None));
        // (The shell may also report its TERMed `sleep` in between.)
        let err = ended.stderr.lossy();
        assert!(
            err.starts_with("ready\n") && err.ends_with("term\n"),
            "{err}"
        );
    }

    #[test]
    fn the_deadline_covers_outputs_held_open_after_the_exit() {
        // The child exits at once; the backgrounded sleep keeps stderr open until the
        // deadline kills its group.
        reap_orphans();
        let ended = sh("sleep 30 & echo $! >&2")
            .group(Group::Session)
            .stderr(Output::Tail(100))
            .deadline(Some(Duration::from_millis(300)))
            .run();
        assert!(matches!(ended.how, How::TimedOut(_)), "{:?}", ended.how);
        assert_eq!(status(&ended), (Some(0), None));
        let grandchild = first_pid(&ended.stderr);
        assert_eq!(
            waitpid(grandchild, None).expect("the orphaned sleep is ours to reap"),
            WaitStatus::Signaled(grandchild, Signal::SIGKILL, false)
        );
    }

    #[test]
    fn drain_within_stops_waiting_for_held_outputs() {
        // The child exits at once, its background sleep holds stderr, and the run ends
        // after the drain bound with what arrived, not after 30 s. The deadline, which
        // passes during the drain, bounds the exit only: not a timeout.
        reap_orphans();
        let started = Instant::now();
        let ended = sh("sleep 30 & echo $! >&2; echo bye >&2")
            .group(Group::New)
            .stderr(Output::Tail(100))
            .deadline(Some(Duration::from_secs(2)))
            .drain(Drain::Within(Duration::from_millis(2500)))
            .run();
        assert!(matches!(ended.how, How::Exited(_)), "{:?}", ended.how);
        assert_eq!(status(&ended), (Some(0), None));
        assert!(ended.stderr.lossy().ends_with("bye\n"));
        assert!(started.elapsed() < Duration::from_secs(10));
        let grandchild = first_pid(&ended.stderr);
        let _ = kill(grandchild, Signal::SIGKILL);
        let _ = waitpid(grandchild, None);
    }

    #[test]
    fn cancel_stops_a_running_child_and_one_started_later() {
        let cancel = Cancel::new();
        let remote = cancel.clone();
        // Cancel once the child has said it runs: the callback sees its first output.
        let ended = sh("echo running; exec sleep 30")
            .stdout(Output::Each(Box::new(move |_| remote.cancel())))
            .cancel(&cancel)
            .run();
        assert!(matches!(ended.how, How::Cancelled(_)), "{:?}", ended.how);
        assert_eq!(status(&ended), (None, Some(9)));
        assert!(cancel.is_cancelled());

        let ended = sh("exec sleep 30").cancel(&cancel).run();
        assert!(matches!(ended.how, How::Cancelled(_)), "{:?}", ended.how);
    }

    #[test]
    fn a_new_session_is_led_by_the_child() {
        let ended = sh("ps -o sid= -p $$ | tr -d ' '; echo $$")
            .group(Group::Session)
            .stdout(Output::Tail(100))
            .run();
        assert_eq!(status(&ended), (Some(0), None));
        let out = ended.stdout.lossy();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0], lines[1], "session id = the child's pid");
    }

    #[test]
    fn parent_death_signal_follows_the_spawning_thread() {
        // The thread that spawned the child ends: the child gets SIGTERM then, not
        // after its 30 s.
        let running = std::thread::spawn(|| {
            sh("exec sleep 30")
                .parent_death(Some(Signal::SIGTERM))
                .spawn()
                .expect("spawns")
        })
        .join()
        .expect("spawning thread");
        let status = running.wait().expect("wait");
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
    }

    #[test]
    fn spawn_hands_back_a_running_child() {
        let mut running = sh("exec sleep 30")
            .group(Group::New)
            .parent_death(Some(Signal::SIGTERM))
            .spawn()
            .expect("spawns");
        assert!(running.pid() > 0);
        assert!(running.try_wait().expect("try_wait").is_none());
        running.signal(Signal::SIGTERM).expect("signal");
        let status = running.wait().expect("wait");
        assert_eq!(status.signal(), Some(15));

        let refused = sh("true").stderr(Output::Tail(10)).spawn();
        assert_eq!(
            refused.expect_err("no capture for spawned children").kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
