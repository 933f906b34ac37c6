//! The worker's main loop: owns one queue per target, starts watcher threads (one per
//! sync), probe threads and push threads, and turns their messages into decisions —
//! when to push, how long to back off, what goes into the fail log, what the status
//! file says. It blocks on a deadline (`recv_timeout`), never on a fixed sleep, and does
//! no I/O of its own beyond the status file and the fail log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::batch::Batch;
use crate::catchup::{self, Restart, Tracker, Watermark};
use crate::config::{Config, Mode, SyncJob, Target, TargetKind};
use crate::faillog::FailLog;
use crate::hooks::{HookRunner, Pushed};
use crate::push::{execute, PushReport};
use crate::queue::{Change, Limits, Queue};
use crate::rsync::args::{dest_arg, Caps};
use crate::rsync::exit::{Class, Outcome};
use crate::rsync::password::check_password_file;
use crate::rsync::probe::probe;
use crate::status::{State, Status, SyncStatus, TargetStatus};
use crate::watch::{WatchStats, Watcher};

/// While directories are unwatched (watch shortage), how often the watcher retries the
/// missing watches and asks for a whole-tree push.
const UNWATCHED_RESCAN: Duration = Duration::from_secs(60);
/// Status file: at most this often while things change, at least this often when idle.
const STATUS_MIN_GAP: Duration = Duration::from_millis(200);
const STATUS_IDLE_GAP: Duration = Duration::from_secs(2);

enum Msg {
    Changes(usize, Vec<Change>),
    Ready(usize, WatchStats),
    Stats(usize, WatchStats),
    Fatal(usize, String),
    Probed(usize, usize, Result<Caps, Outcome>),
    Pushed(usize, usize, PushReport),
    Signal(i32),
}

struct InFlight {
    batch: Batch,
    since: Option<Instant>,
}

struct TargetState {
    cfg: Target,
    dest: String,
    queue: Queue,
    in_flight: Option<InFlight>,
    caps: Option<Caps>,
    probing: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    faillog: FailLog,
    backlog: u64,
    last_success: Option<SystemTime>,
    pushes_ok: u64,
    pushes_failed: u64,
    consecutive_failures: u64,
    last_error: Option<String>,
    full_syncs: u64,
}

struct SyncState {
    job: Arc<SyncJob>,
    stats: WatchStats,
    ready: bool,
    next_full: Option<Instant>,
    hooks: HookRunner,
    targets: Vec<TargetState>,
    catchup: Tracker,
}

struct Engine {
    config: Config,
    syncs: Vec<SyncState>,
    tx: Sender<Msg>,
    stop_watchers: Arc<AtomicBool>,
    started_at: SystemTime,
    stopping: bool,
    status_dirty: bool,
    last_status: Option<Instant>,
    fatal: Option<String>,
}

/// Run the worker until SIGTERM/SIGINT (exit code 0) or a fatal error.
pub fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir).with_context(|| {
        format!(
            "failed to create state directory {}",
            config.state_dir.display()
        )
    })?;
    for w in &config.warnings {
        log::warn!("{w}");
    }
    let _state_lock = lock_state_dir(&config.state_dir)?;
    // Before the fail logs and the status file exist: they are signs of a previous run.
    let restart = Restart::begin(&config)?;
    let (tx, rx) = mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .context("failed to install signal handlers")?;
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for s in signals.forever() {
                if tx.send(Msg::Signal(s)).is_err() {
                    break;
                }
            }
        });
    }
    let now = Instant::now();
    let mut syncs = Vec::new();
    for job in &config.syncs {
        let mut targets = Vec::new();
        for t in &job.targets {
            let faillog = FailLog::open(&config.state_dir, &job.name, &t.name)?;
            let mut queue = Queue::new(Limits {
                delay: job.delay,
                max_delay: job.max_delay,
                max_queue: job.max_queue,
            });
            let saved = faillog.load()?;
            let backlog = saved.len() as u64;
            if !saved.is_empty() {
                log::info!(
                    "{} → {}: replaying {} pending entries from the fail log {}",
                    job.name,
                    t.name,
                    backlog,
                    faillog.path().display()
                );
                queue.restore(saved, now);
            }
            targets.push(TargetState {
                dest: dest_arg(t).to_string_lossy().into_owned(),
                cfg: t.clone(),
                queue,
                in_flight: None,
                caps: None,
                probing: false,
                retry_at: None,
                backoff: Duration::ZERO,
                faillog,
                backlog,
                last_success: None,
                pushes_ok: 0,
                pushes_failed: 0,
                consecutive_failures: 0,
                last_error: None,
                full_syncs: 0,
            });
        }
        syncs.push(SyncState {
            job: Arc::new(job.clone()),
            stats: WatchStats::default(),
            ready: false,
            next_full: None,
            hooks: HookRunner::spawn(job.hooks.clone()),
            targets,
            catchup: restart.tracker(job),
        });
    }
    let mut engine = Engine {
        config,
        syncs,
        tx,
        stop_watchers: Arc::new(AtomicBool::new(false)),
        started_at: SystemTime::now(),
        stopping: false,
        status_dirty: true,
        last_status: None,
        fatal: None,
    };
    for (i, s) in engine.syncs.iter().enumerate() {
        spawn_watcher(
            i,
            s.job.clone(),
            engine.tx.clone(),
            engine.stop_watchers.clone(),
            s.catchup.watermark(),
        );
    }
    engine.write_status();
    engine.main_loop(&rx);
    engine.stop_watchers.store(true, Ordering::Relaxed);
    // Read what each sync can vouch for, then queue what the watchers sent up to that
    // point, then save: see the catchup module's doc.
    let vouched: Vec<Option<i64>> = engine
        .syncs
        .iter()
        .map(|s| s.catchup.vouch(s.ready, s.stats.unwatched))
        .collect();
    while let Ok(m) = rx.try_recv() {
        if matches!(m, Msg::Changes(..)) {
            engine.handle(m);
        }
    }
    let saved = engine.save_pending();
    engine.write_status();
    if engine.fatal.is_none() {
        let entries = engine
            .syncs
            .iter()
            .zip(vouched)
            .zip(saved)
            .map(|((s, v), ok)| catchup::MarkerSync::new(&s.job, v.filter(|_| ok)))
            .collect();
        if let Err(e) = catchup::write_marker(&engine.config.state_dir, entries) {
            log::error!("{e:#}; the next start pushes every tree whole");
        }
    }
    match engine.fatal {
        Some(e) => Err(anyhow::anyhow!(e)),
        None => Ok(()),
    }
}

/// How long a new worker waits for a previous one (same state directory) to finish
/// draining before it gives up.
const STATE_LOCK_WAIT: Duration = Duration::from_secs(60);

/// Take `<state_dir>/worker.lock` for the whole run, so two workers never share a fail
/// log or a status file. A previous worker still draining (its controller was killed)
/// is waited for, up to [`STATE_LOCK_WAIT`].
fn lock_state_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("worker.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("failed to lock {}", path.display()))
        }
    }
    log::warn!(
        "another syncd-worker holds {}; waiting up to {}s for it to finish",
        path.display(),
        STATE_LOCK_WAIT.as_secs()
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = file.lock().map(|()| file);
        let _ = tx.send(r);
    });
    match rx.recv_timeout(STATE_LOCK_WAIT) {
        Ok(Ok(file)) => Ok(file),
        Ok(Err(e)) => Err(e).with_context(|| format!("failed to lock {}", path.display())),
        Err(_) => anyhow::bail!(
            "another syncd-worker is still using the state directory {} (it holds {}); stop it, or give this one its own --state-dir",
            dir.display(),
            path.display()
        ),
    }
}

fn spawn_watcher(
    idx: usize,
    job: Arc<SyncJob>,
    tx: Sender<Msg>,
    stop: Arc<AtomicBool>,
    watermark: Watermark,
) {
    std::thread::spawn(move || {
        let mut w = match Watcher::new(&job) {
            Ok(w) => w,
            Err(e) => {
                let _ = tx.send(Msg::Fatal(idx, format!("{e:#}")));
                return;
            }
        };
        let mut last = w.stats();
        if tx.send(Msg::Ready(idx, last)).is_err() {
            return;
        }
        let mut next_rescan = Instant::now() + UNWATCHED_RESCAN;
        while !stop.load(Ordering::Relaxed) {
            let mut out = Vec::new();
            if let Err(e) = w.poll(Duration::from_millis(200), &mut out) {
                let _ = tx.send(Msg::Fatal(idx, format!("{e:#}")));
                return;
            }
            if w.root_gone() {
                let _ = tx.send(Msg::Fatal(
                    idx,
                    format!(
                        "source directory {} was deleted or moved away; nothing left to watch",
                        job.source.display()
                    ),
                ));
                return;
            }
            let st = w.stats();
            if st.unwatched > 0 && Instant::now() >= next_rescan {
                next_rescan = Instant::now() + UNWATCHED_RESCAN;
                let left = w.rewatch_all();
                log::warn!(
                    "{}: {left} directories still unwatched; pushing the whole tree",
                    job.name
                );
                out.push(Change::Full);
            }
            if !out.is_empty() && tx.send(Msg::Changes(idx, out)).is_err() {
                return;
            }
            watermark.advance_if(|| w.caught_up());
            let st = w.stats();
            if st != last {
                last = st;
                if tx.send(Msg::Stats(idx, st)).is_err() {
                    return;
                }
            }
        }
    });
}

impl Engine {
    fn main_loop(&mut self, rx: &mpsc::Receiver<Msg>) {
        loop {
            let now = Instant::now();
            if !self.stopping {
                self.dispatch(now);
            }
            if self.stopping && self.in_flight() == 0 {
                return;
            }
            self.maybe_write_status(now);
            let wait = self
                .next_deadline(now)
                .map_or(STATUS_IDLE_GAP, |d| d.saturating_duration_since(now));
            match rx.recv_timeout(wait) {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(m) = rx.try_recv() {
                self.handle(m);
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.syncs
            .iter()
            .flat_map(|s| &s.targets)
            .filter(|t| t.in_flight.is_some() || t.probing)
            .count()
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut min = |x: Instant| d = Some(d.map_or(x, |y| y.min(x)));
        for s in &self.syncs {
            if let Some(f) = s.next_full {
                min(f);
            }
            for t in &s.targets {
                if t.in_flight.is_some() || t.probing {
                    continue;
                }
                let retry = t.retry_at.unwrap_or(now);
                if t.caps.is_none() && s.ready {
                    min(retry);
                } else if let Some(q) = t.queue.deadline() {
                    min(q.max(retry));
                }
            }
        }
        if self.status_dirty {
            min(self.last_status.map_or(now, |l| l + STATUS_MIN_GAP));
        }
        d
    }

    fn dispatch(&mut self, now: Instant) {
        for (si, s) in self.syncs.iter_mut().enumerate() {
            if !s.ready {
                continue;
            }
            if let Some(f) = s.next_full {
                if now >= f {
                    log::info!("{}: periodic full sync due", s.job.name);
                    for t in &mut s.targets {
                        t.queue.push(Change::Full, now);
                    }
                    s.next_full = s.job.full_sync.interval.map(|i| now + i);
                }
            }
            for (ti, t) in s.targets.iter_mut().enumerate() {
                if t.in_flight.is_some() || t.probing || t.retry_at.is_some_and(|r| now < r) {
                    continue;
                }
                let Some(caps) = t.caps else {
                    t.probing = true;
                    self.status_dirty = true;
                    let (job, cfg, tx) = (s.job.clone(), t.cfg.clone(), self.tx.clone());
                    std::thread::spawn(move || {
                        let r = probe_target(&job, &cfg);
                        let _ = tx.send(Msg::Probed(si, ti, r));
                    });
                    continue;
                };
                if !t.queue.is_due(now) {
                    continue;
                }
                let (mut batch, since) = t.queue.take();
                if s.job.mode == Mode::Tree {
                    batch = Batch::full();
                }
                t.in_flight = Some(InFlight {
                    batch: batch.clone(),
                    since,
                });
                self.status_dirty = true;
                let (job, cfg, tx) = (s.job.clone(), t.cfg.clone(), self.tx.clone());
                std::thread::spawn(move || {
                    let report = execute(&job, &cfg, &batch, caps);
                    let _ = tx.send(Msg::Pushed(si, ti, report));
                });
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        self.status_dirty = true;
        let now = Instant::now();
        match msg {
            Msg::Changes(si, changes) => {
                let s = &mut self.syncs[si];
                for c in changes {
                    let c = if s.job.mode == Mode::Tree {
                        Change::Full
                    } else {
                        c
                    };
                    for t in &mut s.targets {
                        t.queue.push(c.clone(), now);
                    }
                }
            }
            Msg::Ready(si, stats) => {
                let s = &mut self.syncs[si];
                s.ready = true;
                s.stats = stats;
                log::info!(
                    "{}: watching {} directories under {}{}",
                    s.job.name,
                    stats.watched,
                    s.job.source.display(),
                    if stats.unwatched > 0 {
                        format!(" ({} could not be watched)", stats.unwatched)
                    } else {
                        String::new()
                    }
                );
                if s.job.initial_sync {
                    log::info!("{}: initial full sync", s.job.name);
                    for t in &mut s.targets {
                        t.queue.push(Change::Full, now);
                    }
                }
                let tx = self.tx.clone();
                let send = move |c| tx.send(Msg::Changes(si, c)).is_ok();
                if let Some(c) = s.catchup.on_ready(&s.job, &self.stop_watchers, send) {
                    for t in &mut s.targets {
                        t.queue.push(c.clone(), now);
                    }
                }
                s.next_full = s.job.full_sync.interval.map(|i| now + i);
                // Write at once: "not starting any more" is what callers wait for.
                self.write_status();
                if self.syncs.iter().all(|s| s.ready) {
                    let dirs: u64 = self.syncs.iter().map(|s| s.stats.watched).sum();
                    crate::notify::send(&format!("READY=1\nSTATUS=watching {dirs} directories"));
                }
            }
            Msg::Stats(si, stats) => self.syncs[si].stats = stats,
            Msg::Fatal(si, e) => {
                log::error!("{}: {e}", self.syncs[si].job.name);
                self.fatal = Some(e);
                self.stopping = true;
            }
            Msg::Probed(si, ti, r) => {
                let s = &mut self.syncs[si];
                let t = &mut s.targets[ti];
                t.probing = false;
                match r {
                    Ok(caps) => {
                        if !caps.delete_missing_args {
                            log::warn!(
                                "{} → {}: rsync cannot combine --delete-missing-args with --files-from here (rsync 3.4.3 bug or an old rsync); using the include-filter form for deletions",
                                s.job.name, t.cfg.name
                            );
                        }
                        t.caps = Some(caps);
                        t.retry_at = None;
                        t.last_error = None;
                    }
                    Err(outcome) => fail(&s.job, t, outcome, now),
                }
            }
            Msg::Pushed(si, ti, report) => {
                let s = &mut self.syncs[si];
                let t = &mut s.targets[ti];
                let Some(done) = t.in_flight.take() else {
                    return;
                };
                if report.outcome.class == Class::Success {
                    log::info!(
                        "{} → {}: pushed {} in {:.2}s ({} rsync run{})",
                        s.job.name,
                        t.cfg.name,
                        describe(&done.batch),
                        report.elapsed.as_secs_f64(),
                        report.runs,
                        if report.runs == 1 { "" } else { "s" }
                    );
                    t.pushes_ok += 1;
                    t.consecutive_failures = 0;
                    t.backoff = Duration::ZERO;
                    t.retry_at = None;
                    t.last_error = None;
                    t.last_success = Some(SystemTime::now());
                    if done.batch.full {
                        t.full_syncs += 1;
                    }
                    if t.backlog > 0 {
                        if let Err(e) = t.faillog.save(&t.queue.snapshot()) {
                            log::error!("{e:#}");
                        }
                        t.backlog = t.queue.len() as u64;
                    }
                    let mut paths = done.batch.paths;
                    paths.extend(done.batch.trees);
                    s.hooks.submit(Pushed {
                        sync: s.job.name.clone(),
                        source: s.job.source.clone(),
                        target: t.cfg.name.clone(),
                        full: done.batch.full,
                        paths,
                    });
                } else {
                    t.queue.restore(done.batch, done.since.unwrap_or(now));
                    if report.outcome.class == Class::DeleteMissingArgsUnsupported {
                        log::warn!(
                            "{} → {}: {}; switching to the include-filter form and retrying",
                            s.job.name,
                            t.cfg.name,
                            report.outcome.message
                        );
                        t.caps = Some(Caps {
                            delete_missing_args: false,
                        });
                        return;
                    }
                    t.pushes_failed += 1;
                    fail(&s.job, t, report.outcome, now);
                    let snapshot = t.queue.snapshot();
                    t.backlog = snapshot.len() as u64;
                    if let Err(e) = t.faillog.save(&snapshot) {
                        log::error!("{e:#}");
                    }
                }
            }
            Msg::Signal(sig) => {
                if sig == signal_hook::consts::SIGHUP {
                    log::warn!("SIGHUP: syncd-worker does not reload its config; restart it to apply changes");
                    return;
                }
                if self.stopping {
                    log::warn!("second stop signal: exiting without waiting for pushes in flight");
                    self.save_pending();
                    std::process::exit(0);
                }
                log::info!(
                    "stop requested: finishing {} push(es) in flight, then saving what is pending",
                    self.in_flight()
                );
                self.stopping = true;
            }
        }
    }

    /// Keep everything not yet pushed in the fail log, for the next start. Returns, per
    /// sync, whether everything it owes was saved.
    fn save_pending(&mut self) -> Vec<bool> {
        let mut saved = Vec::with_capacity(self.syncs.len());
        for s in &mut self.syncs {
            let mut ok = true;
            for t in &mut s.targets {
                // A push still in flight may not finish: keep its batch too.
                if let Some(f) = &t.in_flight {
                    t.queue
                        .restore(f.batch.clone(), f.since.unwrap_or_else(Instant::now));
                }
                let pending = t.queue.snapshot();
                if pending.is_empty() && t.backlog == 0 {
                    continue;
                }
                match t.faillog.save(&pending) {
                    Ok(()) if !pending.is_empty() => log::info!(
                        "{} → {}: saved {} pending entries to {}",
                        s.job.name,
                        t.cfg.name,
                        pending.len(),
                        t.faillog.path().display()
                    ),
                    Ok(()) => {}
                    Err(e) => {
                        ok = false;
                        log::error!("{e:#}");
                    }
                }
            }
            saved.push(ok);
        }
        saved
    }

    fn maybe_write_status(&mut self, now: Instant) {
        let due = match self.last_status {
            None => true,
            Some(l) => {
                (self.status_dirty && now >= l + STATUS_MIN_GAP) || now >= l + STATUS_IDLE_GAP
            }
        };
        if due {
            self.write_status();
        }
    }

    fn write_status(&mut self) {
        let now = Instant::now();
        let status = self.status(now);
        if let Err(e) = status.write_atomic(&self.config.status_file) {
            log::error!("{e:#}");
        }
        self.last_status = Some(now);
        self.status_dirty = false;
    }

    fn status(&self, now: Instant) -> Status {
        let sys_now = SystemTime::now();
        let mut any_pending = false;
        let mut degraded = false;
        let syncs = self
            .syncs
            .iter()
            .map(|s| {
                degraded |= s.stats.unwatched > 0;
                SyncStatus {
                    name: s.job.name.clone(),
                    source: s.job.source.display().to_string(),
                    watched_dirs: s.stats.watched,
                    unwatched_dirs: s.stats.unwatched,
                    overflows: s.stats.overflows,
                    targets: s
                        .targets
                        .iter()
                        .map(|t| {
                            any_pending |= !t.queue.is_empty() || t.in_flight.is_some();
                            degraded |= t.consecutive_failures > 0
                                || (t.caps.is_none() && t.last_error.is_some());
                            let oldest =
                                [t.queue.oldest(), t.in_flight.as_ref().and_then(|f| f.since)]
                                    .into_iter()
                                    .flatten()
                                    .min();
                            TargetStatus {
                                name: t.cfg.name.clone(),
                                dest: t.dest.clone(),
                                queue_depth: t.queue.len() as u64,
                                full_pending: t.queue.full_pending(),
                                in_flight: t.in_flight.as_ref().map_or(0, |f| f.batch.len() as u64),
                                last_success: t.last_success.map(unix),
                                lag_seconds: oldest.map_or(0.0, |o| {
                                    now.saturating_duration_since(o).as_secs_f64()
                                }),
                                pushes_ok: t.pushes_ok,
                                pushes_failed: t.pushes_failed,
                                consecutive_failures: t.consecutive_failures,
                                last_error: t.last_error.clone(),
                                retry_backlog: t.backlog,
                                next_retry_at: t
                                    .retry_at
                                    .map(|r| unix(sys_now + r.saturating_duration_since(now))),
                                full_syncs: t.full_syncs,
                                delete_method: match t.caps {
                                    Some(Caps {
                                        delete_missing_args: false,
                                    }) => "include-filter".into(),
                                    _ => "delete-missing-args".into(),
                                },
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        let state = if self.stopping {
            State::Stopping
        } else if self.syncs.iter().any(|s| !s.ready) {
            State::Starting
        } else if degraded {
            State::Degraded
        } else if any_pending {
            State::Syncing
        } else {
            State::Watching
        };
        Status {
            pid: std::process::id(),
            started_at: unix(self.started_at),
            updated_at: unix(sys_now),
            state,
            syncs,
        }
    }
}

/// Check the password file, then probe what the target's rsync supports.
fn probe_target(job: &SyncJob, target: &Target) -> Result<Caps, Outcome> {
    if let TargetKind::Daemon {
        password_file: Some(pw),
        ..
    } = &target.kind
    {
        check_password_file(pw).map_err(|message| Outcome {
            class: Class::ConfigError,
            code: None,
            message,
        })?;
    }
    match probe(job, target) {
        Ok(r) => r,
        Err(e) => Err(Outcome {
            class: Class::Retry,
            code: None,
            message: format!("{e:#}"),
        }),
    }
}

/// Record a failure and schedule the next try.
fn fail(job: &SyncJob, t: &mut TargetState, outcome: Outcome, now: Instant) {
    t.consecutive_failures += 1;
    t.backoff = match outcome.class {
        Class::ConfigError => job.retry.max_interval,
        _ if t.backoff.is_zero() => job.retry.min_interval,
        _ => (t.backoff * 2).min(job.retry.max_interval),
    };
    t.retry_at = Some(now + t.backoff);
    let msg = outcome.message.clone();
    if outcome.class == Class::ConfigError {
        log::error!(
            "{} → {}: {msg} — fix the configuration or the target; retrying in {:.0?}",
            job.name,
            t.cfg.name,
            t.backoff
        );
    } else {
        log::warn!(
            "{} → {}: {msg}; retrying in {:.1?} (failure {} in a row, changes kept)",
            job.name,
            t.cfg.name,
            t.backoff,
            t.consecutive_failures
        );
    }
    t.last_error = Some(msg);
}

fn describe(b: &Batch) -> String {
    if b.full {
        return "the whole tree".into();
    }
    let mut parts = Vec::new();
    if !b.paths.is_empty() {
        parts.push(format!(
            "{} path{}",
            b.paths.len(),
            if b.paths.len() == 1 { "" } else { "s" }
        ));
    }
    if !b.trees.is_empty() {
        parts.push(format!(
            "{} director{} whole",
            b.trees.len(),
            if b.trees.len() == 1 { "y" } else { "ies" }
        ));
    }
    parts.join(" and ")
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
