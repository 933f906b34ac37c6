//! Post-push hooks: after a push to a target succeeds, run the configured program with the
//! pushed paths and/or POST them as JSON to an `http://` URL (sersync's `command` and
//! `http` plugins).
//!
//! Hooks run on one background thread fed by a bounded queue ([`HookRunner`]), so a slow
//! or hung hook never delays a push; when the queue is full the hook run is skipped with a
//! warning. Hook failures are "report and continue": logged, never retried, never fatal.
//! This module never runs a shell and never changes the synced trees; it owns the hook
//! processes it starts and kills them (with their process group and all they started,
//! through [`guard`]) on timeout and when the worker ends, however it ends.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use log::warn;

use crate::batch::RelPath;
use crate::config::{CommandHook, Hooks, HttpHook};
use crate::exclude::ExcludeSet;
use crate::process::{Cancel, Drain, Group, How, Input, Output, Spawn, Tail};

pub mod guard;

use nix::sys::signal::Signal;

/// At most this many paths are appended to one run of a command hook...
const MAX_PATHS_PER_RUN: usize = 1000;
/// ...and at most about this many bytes of path arguments (well under `ARG_MAX`).
const MAX_ARG_BYTES_PER_RUN: usize = 128 * 1024;
/// How much of a hook's stderr is kept for the error message, and how many lines shown.
const STDERR_KEEP_BYTES: usize = 8 * 1024;
const STDERR_SHOWN_LINES: usize = 5;
/// After a hook exits, how long to wait for its stderr to reach end of file (a child it
/// left running may hold the pipe open).
const STDERR_DRAIN_WAIT: Duration = Duration::from_millis(500);
/// Pushes whose hooks may wait in the queue before new ones are skipped.
const QUEUE_CAPACITY: usize = 1024;
/// How long dropping a [`HookRunner`] waits for queued hooks to finish.
const DRAIN_BOUND: Duration = Duration::from_secs(10);
/// How long [`HookRunner::kill`] waits for the killed hook to be reaped: its guard's
/// grace, and a little more.
const KILL_WAIT: Duration = Duration::from_secs(3);

/// After a hook's timeout, how long its guard has to kill what the hook started before
/// SIGKILL reaches the whole group (the guard needs a few milliseconds).
const GUARD_GRACE: Duration = Duration::from_secs(2);

/// One successful push, as the hooks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub sync: String,
    /// The sync's source root; hook commands get paths joined to it.
    pub source: PathBuf,
    pub target: String,
    /// A whole-tree push: `paths` is then empty.
    pub full: bool,
    /// Pushed paths, relative to `source` (files, directories pushed whole, deletions).
    pub paths: Vec<RelPath>,
}

/// Run the command hook for one push: no shell, killed after `hook.timeout`. Returns an
/// error naming the program, its exit code and the end of its stderr when a run fails.
pub fn run_command(hook: &CommandHook, p: &Pushed) -> anyhow::Result<()> {
    run_cancellable(hook, p, &Cancel::new())
}

/// [`run_command`], killed (with all it started) once `cancel` is cancelled.
fn run_cancellable(hook: &CommandHook, p: &Pushed, cancel: &Cancel) -> anyhow::Result<()> {
    let runs = plan_runs(&hook.argv, hook.include.as_ref(), p)?;
    let total = runs.len();
    let mut failures = Vec::new();
    for args in &runs {
        // A hook that cannot even be started will not start for the next path either.
        if let Err(why) = run_one(args, p, hook.timeout, cancel)? {
            failures.push(why);
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => bail!("{}", failures.remove(0)),
        n => bail!(
            "{n} of {total} runs of the hook failed; the first: {}",
            failures.remove(0)
        ),
    }
}

/// POST the push as JSON to `hook.url` (`http://` only) and expect a 2xx answer.
pub fn post_http(hook: &HttpHook, p: &Pushed) -> anyhow::Result<()> {
    let url = HttpUrl::parse(&hook.url)?;
    let body = serde_json::to_vec(&json_body(p)).context("failed to encode the hook's JSON")?;
    let timeout = hook.timeout.max(Duration::from_millis(1));
    let deadline = crate::deadline::after(Instant::now(), timeout);
    let what = || format!("http hook {}", hook.url);

    let mut stream = connect(&url, deadline).with_context(what)?;
    stream.set_write_timeout(Some(timeout)).with_context(what)?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: syncd/{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(&body);
    stream
        .write_all(&request)
        .with_context(|| format!("{}: failed to send the request", what()))?;

    let line = read_status_line(&mut stream, deadline)
        .with_context(|| format!("{}: no valid answer", what()))?;
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| line.starts_with("HTTP/"));
    match code {
        Some(200..=299) => Ok(()),
        Some(_) => bail!("{} answered {line:?}", what()),
        None => bail!(
            "{} did not answer with an HTTP status line: {line:?}",
            what()
        ),
    }
}

/// Runs the hooks of one sync's pushes on a background thread.
pub struct HookRunner {
    tx: Option<SyncSender<Pushed>>,
    thread: Option<JoinHandle<()>>,
    /// Disconnected when the thread has ended.
    ended: Option<Receiver<()>>,
    abandon: Arc<AtomicBool>,
    /// Kills the hook running now (see [`HookRunner::kill`]).
    cancel: Cancel,
    dropped: AtomicU64,
    capacity: usize,
}

impl HookRunner {
    /// Start the hook thread; with no hook configured, no thread and `submit` does nothing.
    pub fn spawn(hooks: Hooks) -> HookRunner {
        HookRunner::with_capacity(hooks, QUEUE_CAPACITY)
    }

    fn with_capacity(hooks: Hooks, capacity: usize) -> HookRunner {
        let mut runner = HookRunner {
            tx: None,
            thread: None,
            ended: None,
            abandon: Arc::new(AtomicBool::new(false)),
            cancel: Cancel::new(),
            dropped: AtomicU64::new(0),
            capacity,
        };
        if hooks.command.is_none() && hooks.http.is_none() {
            return runner;
        }
        let (tx, rx) = mpsc::sync_channel::<Pushed>(capacity);
        let (ended_tx, ended_rx) = mpsc::channel::<()>();
        let abandon = Arc::clone(&runner.abandon);
        let cancel = runner.cancel.clone();
        let spawned = std::thread::Builder::new()
            .name("hooks".into())
            .spawn(move || {
                let _ended = ended_tx; // dropped when this thread ends, even by panic
                for p in rx {
                    if abandon.load(Ordering::Relaxed) {
                        continue;
                    }
                    run_hooks(&hooks, &p, &cancel);
                }
            });
        match spawned {
            Ok(handle) => {
                runner.tx = Some(tx);
                runner.thread = Some(handle);
                runner.ended = Some(ended_rx);
            }
            Err(e) => {
                log::error!("failed to start the hook thread ({e}); post-push hooks will not run")
            }
        }
        runner
    }

    /// Queue the hooks for one push. Never blocks: when the queue is full the hooks for
    /// this push are skipped with a warning.
    pub fn submit(&self, p: Pushed) {
        let Some(tx) = &self.tx else { return };
        let (p, why) = match tx.try_send(p) {
            Ok(()) => return,
            Err(TrySendError::Full(p)) => (
                p,
                format!("{} pushes are already waiting for hooks", self.capacity),
            ),
            Err(TrySendError::Disconnected(p)) => (p, "the hook thread has stopped".to_string()),
        };
        self.dropped.fetch_add(1, Ordering::Relaxed);
        warn!(
            "skipping post-push hooks for sync {} target {} ({} paths{}): {why}",
            p.sync,
            p.target,
            p.paths.len(),
            if p.full { ", full push" } else { "" }
        );
    }

    /// Pushes whose hooks were skipped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl HookRunner {
    /// Kill the hook running now, with all it started, and run no other; wait (at most
    /// [`KILL_WAIT`]) until it is reaped. For a stop that does not wait (a second stop
    /// signal) and after [`DRAIN_BOUND`]: no hook outlives the worker.
    pub fn kill(&mut self) {
        self.tx.take();
        self.abandon.store(true, Ordering::Relaxed);
        self.cancel.cancel();
        let Some(ended) = self.ended.take() else {
            return;
        };
        match ended.recv_timeout(KILL_WAIT) {
            Err(RecvTimeoutError::Timeout) => warn!(
                "a post-push hook did not end within {} of being killed",
                humantime::format_duration(KILL_WAIT)
            ),
            Ok(()) | Err(RecvTimeoutError::Disconnected) => self.join(),
        }
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("the post-push hook thread panicked");
            }
        }
    }
}

impl Drop for HookRunner {
    /// Close the queue and let queued hooks finish, waiting at most `DRAIN_BOUND`; after
    /// that the hook running is killed and no other starts.
    fn drop(&mut self) {
        self.tx.take();
        let Some(ended) = self.ended.take() else {
            return;
        };
        match ended.recv_timeout(DRAIN_BOUND) {
            Err(RecvTimeoutError::Timeout) => {
                warn!(
                    "post-push hooks still running after {}; killing them",
                    humantime::format_duration(DRAIN_BOUND)
                );
                self.ended = Some(ended);
                self.kill();
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => self.join(),
        }
    }
}

fn run_hooks(hooks: &Hooks, p: &Pushed, cancel: &Cancel) {
    if let Some(hook) = &hooks.command {
        if let Err(e) = run_cancellable(hook, p, cancel) {
            warn!(
                "post-push command hook for sync {} target {}: {e:#}",
                p.sync, p.target
            );
        }
    }
    if let Some(hook) = &hooks.http {
        if let Err(e) = post_http(hook, p) {
            warn!(
                "post-push http hook for sync {} target {}: {e:#}",
                p.sync, p.target
            );
        }
    }
}

/// The argv of every run one push needs (pure). Empty when nothing is to be run.
fn plan_runs(
    argv: &[String],
    include: Option<&ExcludeSet>,
    p: &Pushed,
) -> anyhow::Result<Vec<Vec<OsString>>> {
    if argv.is_empty() {
        bail!("the command hook has an empty argv; name the program to run");
    }
    let base: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let placeholder = argv.iter().position(|w| w == "{}");
    if p.full {
        // No paths to put in place of `{}`; otherwise one run saying SYNCD_FULL=1.
        return Ok(match placeholder {
            Some(_) => Vec::new(),
            None => vec![base],
        });
    }
    let include = include.filter(|set| !set.is_empty());
    let paths = p
        .paths
        .iter()
        .filter(|rel| include.is_none_or(|set| set.matches_self(rel)))
        .map(|rel| p.source.join(OsStr::from_bytes(rel)).into_os_string());

    if let Some(i) = placeholder {
        return Ok(paths
            .map(|path| {
                let mut args = base.clone();
                args[i] = path;
                args
            })
            .collect());
    }
    let mut runs = Vec::new();
    let mut current = base.clone();
    let mut count = 0usize;
    let mut bytes = 0usize;
    for path in paths {
        let len = path.len() + 1;
        if count > 0 && (count == MAX_PATHS_PER_RUN || bytes + len > MAX_ARG_BYTES_PER_RUN) {
            runs.push(std::mem::replace(&mut current, base.clone()));
            count = 0;
            bytes = 0;
        }
        current.push(path);
        count += 1;
        bytes += len;
    }
    if count > 0 {
        runs.push(current);
    }
    Ok(runs)
}

/// Run one hook process. Outer error: it could not be started or waited for (stop);
/// inner error: it ran and failed or timed out (report, go on with the next run).
fn run_one(
    args: &[OsString],
    p: &Pushed,
    timeout: Duration,
    cancel: &Cancel,
) -> anyhow::Result<Result<(), String>> {
    let program = args[0].to_string_lossy().into_owned();
    let guarded = guard::enabled();
    let (run, run_args) = guard::wrap(args);
    let ended = Spawn::new(&run)
        .args(&run_args)
        .env("SYNCD_SYNC", &p.sync)
        .env("SYNCD_TARGET", &p.target)
        .env("SYNCD_SOURCE", &p.source)
        .env("SYNCD_FULL", if p.full { "1" } else { "0" })
        .stdin(Input::Null)
        .stdout(Output::Null)
        .stderr(Output::Tail(STDERR_KEEP_BYTES))
        // Its own process group, so a timeout kills whatever it started too; the guard
        // leads it and also kills what left the group, at the worker's end too.
        .group(Group::New)
        .parent_death(Some(if guarded {
            Signal::SIGTERM
        } else {
            Signal::SIGKILL
        }))
        .deadline(Some(timeout))
        .cancel(cancel)
        // SIGTERM lets the guard kill everything the hook started; SIGKILL follows.
        .kill_grace(if guarded { GUARD_GRACE } else { Duration::ZERO })
        .drain(Drain::Within(STDERR_DRAIN_WAIT))
        .run();
    let shown = last_lines(&ended.stderr);
    let stderr_note = if shown.is_empty() {
        String::new()
    } else {
        format!("; stderr: {shown}")
    };
    Ok(match ended.how {
        How::FailedToStart(e) => {
            return Err(e).with_context(|| {
                format!("failed to start hook program {program}; check the hook's argv")
            })
        }
        How::WaitFailed(e) => {
            return Err(e).with_context(|| format!("failed to wait for hook {program}"))
        }
        How::Exited(status) if status.success() => Ok(()),
        How::Exited(status) if guarded && guard::could_not_start(status, &ended.stderr.lossy()) => {
            bail!("{shown}; check the hook's argv")
        }
        How::Exited(status) | How::Cancelled(status) => Err(format!(
            "hook {program} {}{stderr_note}",
            crate::process::describe_exit(status)
        )),
        How::TimedOut(_) => Err(format!(
            "hook {program} did not finish within {} and was killed{stderr_note}",
            humantime::format_duration(timeout)
        )),
    })
}

/// The last lines of a hook's stderr, joined with ` | ` (blank lines left out).
fn last_lines(tail: &Tail) -> String {
    let text = tail.lossy();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(STDERR_SHOWN_LINES)..].join(" | ")
}

fn json_body(p: &Pushed) -> serde_json::Value {
    let paths: Vec<String> = p
        .paths
        .iter()
        .map(|rel| String::from_utf8_lossy(rel).into_owned())
        .collect();
    serde_json::json!({
        "sync": p.sync,
        "source": p.source.to_string_lossy(),
        "target": p.target,
        "full": p.full,
        "paths": paths,
    })
}

/// An `http://host[:port]/path` URL, split for the request.
#[derive(Debug, PartialEq, Eq)]
struct HttpUrl {
    /// `host[:port]` as written, for the Host header.
    authority: String,
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    path: String,
}

impl HttpUrl {
    fn parse(url: &str) -> anyhow::Result<HttpUrl> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") {
            bail!(
                "http hook URL {url:?}: https is not supported; use the command hook with \
                 curl instead, e.g. argv = [\"curl\", \"-fsS\", \"--data-binary\", \"@-\", ...]"
            );
        }
        if !lower.starts_with("http://") {
            bail!("http hook URL {url:?} does not start with http://");
        }
        let rest = &url["http://".len()..];
        let rest = rest.split('#').next().unwrap_or("");
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            bail!("http hook URL {url:?}: the path holds spaces or control characters; percent-encode them");
        }
        if authority.contains('@') {
            bail!("http hook URL {url:?}: user names and passwords in the URL are not supported");
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .with_context(|| format!("http hook URL {url:?}: unclosed '[' in the host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            bail!("http hook URL {url:?} has no host");
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .with_context(|| format!("http hook URL {url:?}: bad port {p:?}"))?,
        };
        Ok(HttpUrl {
            authority: authority.to_string(),
            host: host.to_string(),
            port,
            path,
        })
    }
}

fn connect(url: &HttpUrl, deadline: Instant) -> anyhow::Result<TcpStream> {
    let addrs = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .with_context(|| format!("failed to resolve {}", url.host))?;
    let mut last = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                last = Some(anyhow::Error::new(e).context(format!("failed to connect to {addr}")))
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("could not connect to {} in time", url.authority)))
}

/// Read up to the end of the status line (bounded in size and by `deadline`).
fn read_status_line(stream: &mut TcpStream, deadline: Instant) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            return Ok(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
        if buf.len() > 8 * 1024 {
            bail!("the status line is longer than 8 KiB");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("timed out waiting for the answer");
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream
            .read(&mut chunk)
            .context("failed to read the answer")?;
        if n == 0 {
            if buf.is_empty() {
                bail!("the server closed the connection without answering");
            }
            return Ok(String::from_utf8_lossy(&buf).trim_end().to_string());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::net::TcpListener;
    use std::path::Path;

    use crate::wait;

    fn pushed(paths: &[&str]) -> Pushed {
        Pushed {
            sync: "web".into(),
            source: PathBuf::from("/data/src"),
            target: "backup".into(),
            full: false,
            paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
        }
    }

    fn strings(runs: &[Vec<OsString>]) -> Vec<Vec<String>> {
        runs.iter()
            .map(|r| r.iter().map(|a| a.to_string_lossy().into_owned()).collect())
            .collect()
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn plan_appends_substitutes_filters_and_handles_full() {
        let php = ExcludeSet::new(&[r"\.php$"]).unwrap();
        let none = ExcludeSet::default();
        let two = pushed(&["a.php", "b/c.txt"]);
        let mut full = pushed(&[]);
        full.full = true;
        #[allow(clippy::type_complexity)]
        let table: &[(&[&str], Option<&ExcludeSet>, &Pushed, &[&[&str]])] = &[
            (
                &["/bin/h", "-x"],
                None,
                &two,
                &[&["/bin/h", "-x", "/data/src/a.php", "/data/src/b/c.txt"]],
            ),
            (
                &["/bin/h", "pre", "{}", "post"],
                None,
                &two,
                &[
                    &["/bin/h", "pre", "/data/src/a.php", "post"],
                    &["/bin/h", "pre", "/data/src/b/c.txt", "post"],
                ],
            ),
            (
                &["/bin/h"],
                Some(&php),
                &two,
                &[&["/bin/h", "/data/src/a.php"]],
            ),
            (&["/bin/h", "{}"], Some(&php), &pushed(&["x.txt"]), &[]),
            (
                &["/bin/h"],
                Some(&none),
                &two,
                &[&["/bin/h", "/data/src/a.php", "/data/src/b/c.txt"]],
            ),
            (&["/bin/h", "-x"], None, &full, &[&["/bin/h", "-x"]]),
            (&["/bin/h", "{}"], None, &full, &[]),
            (&["/bin/h"], None, &pushed(&[]), &[]),
        ];
        for (words, include, p, want) in table {
            let got = strings(&plan_runs(&argv(words), *include, p).unwrap());
            let want: Vec<Vec<String>> = want.iter().map(|r| argv(r)).collect();
            assert_eq!(got, want, "{words:?} {include:?}");
        }
        assert!(plan_runs(&[], None, &two).is_err());
    }

    #[test]
    fn plan_chunks_by_count_and_bytes() {
        let names: Vec<String> = (0..2500).map(|i| format!("f{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let runs = plan_runs(&argv(&["/bin/h"]), None, &pushed(&refs)).unwrap();
        let sizes: Vec<usize> = runs.iter().map(|r| r.len() - 1).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        assert_eq!(runs[2].last().unwrap(), "/data/src/f2499");

        // 600 paths of ~300 bytes: the byte bound splits them before the count does.
        let long: Vec<String> = (0..600).map(|i| format!("{i:0>300}")).collect();
        let refs: Vec<&str> = long.iter().map(String::as_str).collect();
        let runs = plan_runs(&argv(&["/bin/h"]), None, &pushed(&refs)).unwrap();
        assert!(runs.len() > 1);
        for run in &runs {
            let bytes: usize = run[1..].iter().map(|a| a.len() + 1).sum();
            assert!(bytes <= MAX_ARG_BYTES_PER_RUN, "{bytes}");
        }
        assert_eq!(runs.iter().map(|r| r.len() - 1).sum::<usize>(), 600);
    }

    #[test]
    fn url_parsing() {
        let ok = [
            (
                "http://127.0.0.1:8080/pushed",
                "127.0.0.1:8080",
                "127.0.0.1",
                8080,
                "/pushed",
            ),
            (
                "http://example.invalid",
                "example.invalid",
                "example.invalid",
                80,
                "/",
            ),
            ("HTTP://h/a/b?x=1#frag", "h", "h", 80, "/a/b?x=1"),
            ("http://h?x=1", "h", "h", 80, "/?x=1"),
            ("http://[::1]:81/p", "[::1]:81", "::1", 81, "/p"),
        ];
        for (url, authority, host, port, path) in ok {
            let want = HttpUrl {
                authority: authority.into(),
                host: host.into(),
                port,
                path: path.into(),
            };
            assert_eq!(HttpUrl::parse(url).unwrap(), want, "{url}");
        }
        let bad = [
            ("https://h/p", "curl"),
            ("ftp://h/p", "http://"),
            ("http:///p", "no host"),
            ("http://h:99999/", "bad port"),
            ("http://h:x/", "bad port"),
            ("http://u:pw@h/", "passwords"),
            ("http://h/a b", "percent-encode"),
        ];
        for (url, want) in bad {
            let err = format!("{:#}", HttpUrl::parse(url).unwrap_err());
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    /// A hook program: `/bin/sh <script>` with `body` after a prologue that records argv
    /// and env to `<dir>/out`, one `run` line per run.
    fn script_hook(dir: &Path, body: &str, extra: &[&str], timeout: Duration) -> CommandHook {
        let out = dir.join("out");
        let script = dir.join("hook.sh");
        let text = format!(
            "{{\n echo run\n echo \"env $SYNCD_SYNC|$SYNCD_TARGET|$SYNCD_SOURCE|$SYNCD_FULL\"\n \
             for a in \"$@\"; do echo \"arg $a\"; done\n}} >> '{}'\n{body}\n",
            out.display()
        );
        fs::write(&script, text).unwrap();
        let mut argv = vec!["/bin/sh".to_string(), script.display().to_string()];
        argv.extend(extra.iter().map(|s| s.to_string()));
        CommandHook {
            argv,
            include: None,
            timeout,
        }
    }

    /// The recorded runs: for each, its `env` line and its arguments.
    fn runs(dir: &Path) -> Vec<(String, Vec<String>)> {
        let text = fs::read_to_string(dir.join("out")).unwrap_or_default();
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for line in text.lines() {
            if line == "run" {
                out.push((String::new(), Vec::new()));
            } else if let Some(env) = line.strip_prefix("env ") {
                out.last_mut().unwrap().0 = env.to_string();
            } else if let Some(arg) = line.strip_prefix("arg ") {
                out.last_mut().unwrap().1.push(arg.to_string());
            }
        }
        out
    }

    const SECS: Duration = Duration::from_secs(20);

    #[test]
    fn command_appends_paths_with_env() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script_hook(dir.path(), "", &["--flag"], SECS);
        run_command(&hook, &pushed(&["a.txt", "b/c d.txt"])).unwrap();
        assert_eq!(
            runs(dir.path()),
            vec![(
                "web|backup|/data/src|0".to_string(),
                argv(&["--flag", "/data/src/a.txt", "/data/src/b/c d.txt"])
            )]
        );
    }

    #[test]
    fn command_placeholder_runs_once_per_path() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script_hook(dir.path(), "", &["pre", "{}", "post"], SECS);
        run_command(&hook, &pushed(&["a", "b"])).unwrap();
        let got = runs(dir.path());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, argv(&["pre", "/data/src/a", "post"]));
        assert_eq!(got[1].1, argv(&["pre", "/data/src/b", "post"]));
    }

    #[test]
    fn command_include_filter_and_nothing_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut hook = script_hook(dir.path(), "", &[], SECS);
        hook.include = Some(ExcludeSet::new(&[r"\.php$"]).unwrap());
        run_command(&hook, &pushed(&["x.txt", "y/z.css"])).unwrap();
        assert!(!dir.path().join("out").exists(), "no path left: not run");
        run_command(&hook, &pushed(&["a.php", "b.txt", "c/d.php"])).unwrap();
        assert_eq!(
            runs(dir.path())[0].1,
            argv(&["/data/src/a.php", "/data/src/c/d.php"])
        );
    }

    #[test]
    fn command_full_push_runs_once_without_paths() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script_hook(dir.path(), "", &[], SECS);
        let mut p = pushed(&[]);
        p.full = true;
        run_command(&hook, &p).unwrap();
        assert_eq!(
            runs(dir.path()),
            vec![("web|backup|/data/src|1".to_string(), Vec::new())]
        );
    }

    #[test]
    fn command_chunks_2500_paths_into_3_runs() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script_hook(dir.path(), "", &[], SECS);
        let names: Vec<String> = (0..2500).map(|i| format!("d/f{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        run_command(&hook, &pushed(&refs)).unwrap();
        let got = runs(dir.path());
        let sizes: Vec<usize> = got.iter().map(|r| r.1.len()).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        assert_eq!(got[0].1[0], "/data/src/d/f0");
        assert_eq!(got[2].1[499], "/data/src/d/f2499");
    }

    #[test]
    fn command_failure_names_program_code_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script_hook(
            dir.path(),
            "echo first >&2; echo 'second line' >&2; exit 3",
            &[],
            SECS,
        );
        let err = format!("{:#}", run_command(&hook, &pushed(&["a"])).unwrap_err());
        assert!(err.contains("/bin/sh"), "{err}");
        assert!(err.contains("exited with code 3"), "{err}");
        assert!(err.contains("first | second line"), "{err}");

        // Once per path: every path is tried, the error counts the failures.
        let hook = script_hook(dir.path(), "exit 1", &["{}"], SECS);
        let err = format!(
            "{:#}",
            run_command(&hook, &pushed(&["a", "b"])).unwrap_err()
        );
        assert!(err.contains("2 of 2 runs"), "{err}");

        let missing = CommandHook {
            argv: argv(&["/nonexistent/hook"]),
            include: None,
            timeout: SECS,
        };
        let err = format!("{:#}", run_command(&missing, &pushed(&["a"])).unwrap_err());
        assert!(
            err.contains("failed to start hook program /nonexistent/hook"),
            "{err}"
        );
    }

    #[test]
    fn command_timeout_kills_hook_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("sleep.pid");
        let body = format!(
            "sleep 30 & echo $! > '{}'; echo started >&2; wait",
            pidfile.display()
        );
        let hook = script_hook(dir.path(), &body, &[], Duration::from_millis(500));
        let start = Instant::now();
        let err = format!("{:#}", run_command(&hook, &pushed(&["a"])).unwrap_err());
        let took = start.elapsed();
        assert!(err.contains("did not finish within 500ms"), "{err}");
        assert!(err.contains("started"), "{err}");
        assert!(took < Duration::from_secs(5), "took {took:?}");

        // The grandchild `sleep` was in the hook's process group: gone or a zombie soon.
        let pid = fs::read_to_string(&pidfile).unwrap().trim().to_string();
        let stat = format!("/proc/{pid}/stat");
        wait::until_every(
            format_args!("sleep {pid} to be gone or a zombie"),
            Duration::from_secs(5),
            wait::SHORT_POLL,
            || match fs::read_to_string(&stat) {
                Err(_) => Ok(()),
                Ok(s) => {
                    let state = s.rsplit(')').next().unwrap_or("").trim_start();
                    if state.starts_with('Z') {
                        Ok(())
                    } else {
                        Err(format!("alive, state {state:.1}"))
                    }
                }
            },
        )
        .unwrap_or_else(|timeout| panic!("{timeout}"));
    }

    /// Accept one connection, read the request (headers and Content-Length body), answer
    /// with `status`, hand back the request.
    fn one_shot_server(status: &'static str) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/pushed", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut req = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
                let n = conn.read(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&chunk[..n]);
            }
            let answer =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            conn.write_all(answer.as_bytes()).unwrap();
            req
        });
        (url, handle)
    }

    #[test]
    fn http_posts_json_and_accepts_2xx() {
        let (url, server) = one_shot_server("200 OK");
        let hook = HttpHook {
            url: url.clone(),
            timeout: Duration::from_secs(10),
        };
        let mut p = pushed(&["a/b.txt", "bad-\u{e9}"]);
        p.paths.push(b"raw-\xff".to_vec());
        post_http(&hook, &p).unwrap();
        let req = server.join().unwrap();
        let end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(req[..end].to_vec()).unwrap();
        let body = &req[end + 4..];
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("POST /hooks/pushed HTTP/1.1"));
        let headers: Vec<&str> = lines.collect();
        let authority = url.trim_start_matches("http://").split('/').next().unwrap();
        assert!(
            headers.contains(&format!("Host: {authority}").as_str()),
            "{head}"
        );
        assert!(
            headers.contains(&"Content-Type: application/json"),
            "{head}"
        );
        assert!(headers.contains(&"Connection: close"), "{head}");
        assert!(
            headers.contains(&format!("Content-Length: {}", body.len()).as_str()),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "sync": "web",
                "source": "/data/src",
                "target": "backup",
                "full": false,
                "paths": ["a/b.txt", "bad-\u{e9}", "raw-\u{fffd}"],
            })
        );
    }

    #[test]
    fn http_non_2xx_is_an_error_with_the_status_line() {
        let (url, server) = one_shot_server("500 Internal Server Error");
        let hook = HttpHook {
            url,
            timeout: Duration::from_secs(10),
        };
        let err = format!("{:#}", post_http(&hook, &pushed(&["a"])).unwrap_err());
        server.join().unwrap();
        assert!(err.contains("HTTP/1.1 500 Internal Server Error"), "{err}");
    }

    #[test]
    fn http_rejects_https_and_reports_refused_connections() {
        let hook = HttpHook {
            url: "https://127.0.0.1/x".into(),
            timeout: Duration::from_secs(1),
        };
        let err = format!("{:#}", post_http(&hook, &pushed(&["a"])).unwrap_err());
        assert!(err.contains("command hook with curl"), "{err}");

        // A port nobody listens on (bound, then released).
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hook = HttpHook {
            url: format!("http://127.0.0.1:{port}/x"),
            timeout: Duration::from_secs(2),
        };
        let err = format!("{:#}", post_http(&hook, &pushed(&["a"])).unwrap_err());
        assert!(err.contains("failed to connect"), "{err}");
    }

    #[test]
    fn runner_drains_on_drop_and_never_blocks_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        // Waits (bounded) until the test creates `go`.
        let body = format!(
            "i=0; while [ ! -e '{}' ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done",
            go.display()
        );
        let hooks = Hooks {
            command: Some(script_hook(dir.path(), &body, &[], SECS)),
            http: None,
        };
        let runner = HookRunner::with_capacity(hooks, 1);
        let start = Instant::now();
        for name in ["a", "b", "c"] {
            runner.submit(pushed(&[name]));
        }
        assert!(start.elapsed() < Duration::from_secs(2), "submit blocked");
        // At most one job running and one queued: the third at least was skipped.
        let dropped = runner.dropped();
        assert!((1..=2).contains(&dropped), "{dropped}");
        fs::write(&go, "").unwrap();
        drop(runner); // waits for the accepted jobs
        assert_eq!(runs(dir.path()).len() as u64, 3 - dropped);
    }

    #[test]
    fn runner_without_hooks_does_nothing() {
        let runner = HookRunner::spawn(Hooks::default());
        runner.submit(pushed(&["a"]));
        assert_eq!(runner.dropped(), 0);
    }
}
