//! The worker's main loop: owns one queue per target, starts watcher threads (one per
//! sync), probe threads and push threads, and turns their messages into decisions —
//! when to push, how long to back off, what goes into the fail log, what the status
//! file says. It blocks on a deadline (`recv_timeout`), never on a fixed sleep, and does
//! no I/O of its own beyond the status file, the fail log and re-reading the config file.
//!
//! SIGHUP reloads the config file in place (see [`crate::reload`] for what counts as a
//! change): untouched syncs and targets keep everything, changed ones are adjusted, and
//! an invalid new file leaves the running configuration as it is. Threads report with
//! stable ids (a watcher's, a target's), so a message from a replaced watcher or a
//! removed target is recognised and ignored.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use crate::batch::Batch;
use crate::busy;
use crate::catchup::{self, Restart, Tracker, Watermark};
use crate::config::{Config, Mode, SyncJob, Target};
use crate::deadline::{self, after, wall_after};
use crate::failing::{self, Failing};
use crate::faillog::FailLog;
use crate::hooks::{HookRunner, Pushed};
use crate::progress::{self, SharedProgress};
use crate::push::{execute, shared_waiting, waiting_since, Checks, PushReport, SharedWaiting};
use crate::queue::{Change, Limits, Queue};
use crate::reload::{self, SyncChange, SyncPlan, TargetChange};
use crate::rsync::args::{dest_arg, Caps};
use crate::rsync::exit::{Class, Outcome};
use crate::rsync::probe::probe_target;
use crate::source_id::{self, SourceId};
use crate::status::{unix_secs, State, Status, SyncStatus, TargetStatus};
use crate::watch::WatchStats;
use crate::watch_thread::{self, Expect, Report};

/// Status file: at most this often while things change, at least this often when idle.
const STATUS_MIN_GAP: Duration = Duration::from_millis(200);
const STATUS_IDLE_GAP: Duration = Duration::from_secs(2);
/// How often the running catch-up checkpoint is considered (written only when it moved).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// Identity of one watcher or one target, never reused within a run.
type Id = u64;

/// What the other threads tell the main loop. Watcher messages carry the watcher's id;
/// probe and push results carry the target's id and the generation of its settings
/// they were started with.
enum Msg {
    Changes(Id, Vec<Change>),
    /// Watches in place on this source; `true` when after a `Lost`.
    Ready(Id, WatchStats, SourceId, bool),
    Stats(Id, WatchStats),
    /// The source path no longer names the watched directory: why.
    Lost(Id, String),
    Fatal(Id, String),
    Probed(Id, u64, Result<Caps, Outcome>),
    Pushed(Id, u64, PushReport),
    Signal(i32),
}

/// The command-line settings that override the config file, applied again to the
/// file re-read on SIGHUP. (`--initial-sync` is not one: it only means something at start.)
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--state-dir`: replaces `state_dir`, and the status file with it when that was the
    /// default `<state_dir>/status.json`.
    pub state_dir: Option<PathBuf>,
    /// `--threads`: every sync's `threads`.
    pub threads: Option<usize>,
}

impl Overrides {
    pub fn apply(&self, config: &mut Config) {
        if let Some(dir) = &self.state_dir {
            config.status_file = config.status_file_in(dir);
            config.state_dir = dir.clone();
        }
        if let Some(n) = self.threads {
            for job in &mut config.syncs {
                job.threads = n;
            }
        }
    }
}

struct InFlight {
    batch: Batch,
    since: Option<Instant>,
    /// rsync's progress, published by the push thread.
    progress: SharedProgress,
    /// Since when the push has been waiting for a busy daemon, published by the push thread.
    waiting: SharedWaiting,
}

struct TargetState {
    id: Id,
    /// Bumped when a reload changes `cfg`: a probe or push started before is stale.
    cfg_gen: u64,
    cfg: Target,
    dest: String,
    queue: Queue,
    in_flight: Option<InFlight>,
    caps: Option<Caps>,
    probing: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// The daemon limits connections (it refused a run as busy): push one run at a time.
    /// Forgotten when a reload changes the target's settings.
    limited: bool,
    /// Since when the daemon has had no connection free (None: not busy now); the busy
    /// episode is logged once, at its start and its end.
    busy_since: Option<Instant>,
    faillog: FailLog,
    backlog: u64,
    /// Paths that keep failing on their own (exit 23 naming them), each with its backoff.
    failing: Failing,
    last_success: Option<SystemTime>,
    pushes_ok: u64,
    pushes_failed: u64,
    consecutive_failures: u64,
    last_error: Option<String>,
    full_syncs: u64,
    /// `syncd sync --full --force`: the next whole-tree push may delete past the guard.
    force_full: bool,
}

/// The watcher thread of one sync.
struct WatchHandle {
    id: Id,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WatchHandle {
    /// Ask the thread to end (within one poll); returns it, to be joined by whoever needs
    /// its watches gone.
    fn stop(&mut self) -> Option<JoinHandle<()>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take()
    }
}

impl SyncState {
    /// Nothing queued or in flight for any target: every change received is pushed.
    fn idle(&self) -> bool {
        self.targets
            .iter()
            .all(|t| t.queue.is_empty() && t.in_flight.is_none())
    }

    /// Replace the watcher thread by a new one (`id`, watching `job`'s source once it is
    /// what `expect` says); the new thread joins the old one before it adds watches.
    fn rewatch(&mut self, id: Id, job: Arc<SyncJob>, tx: Sender<Msg>, expect: Expect) {
        let prev = self.watch.stop();
        self.watch = spawn_watcher(id, job, tx, prev, self.catchup.watermark(), expect);
        self.ready = false;
    }
}

struct SyncState {
    job: Arc<SyncJob>,
    watch: WatchHandle,
    stats: WatchStats,
    ready: bool,
    /// Push the whole tree to every target when the watcher is ready (the sync was added
    /// or re-watched by a reload: changes may have been missed in between).
    full_on_ready: bool,
    next_full: Option<Instant>,
    hooks: HookRunner,
    targets: Vec<TargetState>,
    catchup: Tracker,
    /// The directory being watched (set when the watches are in place): every push
    /// first checks the source path still names it.
    source: Option<SourceId>,
    /// Why the source is not the watched directory (unmounted, moved away, replaced):
    /// while set, nothing of this sync is pushed.
    lost: Option<String>,
}

struct Engine {
    config: Config,
    syncs: Vec<SyncState>,
    overrides: Overrides,
    tx: Sender<Msg>,
    next_id: Id,
    /// READY=1 was sent (once per run, not again after a reload).
    notified_ready: bool,
    started_at: SystemTime,
    stopping: bool,
    status_dirty: bool,
    last_status: Option<Instant>,
    fatal: Option<String>,
    /// The sources' identities, as last written to `sources.json`.
    sources: source_id::Record,
    /// When the running catch-up checkpoint is next considered.
    next_checkpoint: Instant,
    /// What the last checkpoint written said.
    last_checkpoint: Option<Vec<catchup::MarkerSync>>,
}

/// Run the worker until SIGTERM/SIGINT (exit code 0) or a fatal error. `overrides` are
/// the command-line settings already applied to `config`, applied again on reload.
pub fn run(config: Config, overrides: Overrides) -> anyhow::Result<()> {
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
    // A worker killed mid-write left temp files beside its state files (the fail logs'
    // are removed as each is opened); only this worker writes these, and only from now.
    for file in [
        config.state_dir.join(catchup::MARKER_FILE),
        config.state_dir.join(source_id::RECORD_FILE),
        config.status_file.clone(),
    ] {
        crate::durable::remove_leftover_temps(&file);
    }
    // Before the fail logs and the status file exist: they are signs of a previous run.
    let restart = Restart::begin(&config)?;
    let (tx, rx) = mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGUSR1,
        signal_hook::consts::SIGUSR2,
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
    let mut engine = Engine {
        config,
        syncs: Vec::new(),
        overrides,
        tx,
        next_id: 0,
        notified_ready: false,
        started_at: SystemTime::now(),
        stopping: false,
        status_dirty: true,
        last_status: None,
        fatal: None,
        sources: source_id::Record::default(),
        next_checkpoint: Instant::now(),
        last_checkpoint: None,
    };
    engine.sources = source_id::Record::load(&engine.config.state_dir);
    let now = Instant::now();
    let jobs = engine.config.syncs.clone();
    let mut targets = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let mut ts = Vec::with_capacity(job.targets.len());
        for t in &job.targets {
            ts.push(engine.new_target(job, t, now)?);
        }
        targets.push(ts);
    }
    for (job, ts) in jobs.into_iter().zip(targets) {
        let mut tracker = restart.tracker(&job);
        tracker.note_replayed(ts.iter().map(|t| t.backlog).sum());
        let expect = Expect::known(engine.sources.expected(&job.name, &job.source), false);
        let s = engine.start_sync(job, ts, false, tracker, expect);
        engine.syncs.push(s);
    }
    engine.write_status();
    engine.main_loop(&rx);
    for s in &mut engine.syncs {
        s.watch.stop();
    }
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

fn limits(job: &SyncJob) -> Limits {
    Limits {
        delay: job.delay,
        max_delay: job.max_delay,
        max_queue: job.max_queue,
    }
}

/// How long a new worker waits for a previous one (same state directory) to finish
/// draining before it gives up.
const STATE_LOCK_WAIT: Duration = Duration::from_secs(60);

/// Take `<state_dir>/worker.lock` for the whole run, so two workers never share a fail
/// log or a status file. A previous worker still draining (its controller was killed)
/// is waited for, up to [`STATE_LOCK_WAIT`].
pub(crate) fn lock_state_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
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

/// Start the watcher thread of `job`. When `prev` (the thread of the watcher it
/// replaces) is given, it is joined first, so the old watches are gone before the new
/// ones are added (the two never count twice against `max_user_watches`).
fn spawn_watcher(
    id: Id,
    job: Arc<SyncJob>,
    tx: Sender<Msg>,
    prev: Option<JoinHandle<()>>,
    watermark: Watermark,
    expect: Expect,
) -> WatchHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        if let Some(prev) = prev {
            let _ = prev.join();
        }
        if flag.load(Ordering::Relaxed) {
            return;
        }
        watch_thread::run(&job, expect, &flag, &watermark, |r| {
            tx.send(match r {
                Report::Ready {
                    stats,
                    source,
                    resumed,
                } => Msg::Ready(id, stats, source, resumed),
                Report::Changes(c) => Msg::Changes(id, c),
                Report::Stats(st) => Msg::Stats(id, st),
                Report::Lost(why) => Msg::Lost(id, why),
                Report::Fatal(e) => Msg::Fatal(id, e),
            })
            .is_ok()
        });
    });
    WatchHandle {
        id,
        stop,
        thread: Some(thread),
    }
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
            if !self.stopping && now >= self.next_checkpoint {
                self.checkpoint();
                self.next_checkpoint = after(now, CHECKPOINT_EVERY);
            }
            let wait = self
                .next_deadline(now)
                .map_or(STATUS_IDLE_GAP, |d| d.saturating_duration_since(now));
            match rx.recv_timeout(wait) {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Watermarks first, then empty the channel: see `note_quiet`.
            let marks: Vec<(Id, Option<i64>)> = self
                .syncs
                .iter()
                .map(|s| (s.watch.id, s.catchup.sample()))
                .collect();
            while let Ok(m) = rx.try_recv() {
                self.handle(m);
            }
            self.note_quiet(&marks);
        }
    }

    /// After a drain of the channel that began after `marks` were sampled: a sync with
    /// every watch in place and nothing queued or in flight for any target has pushed
    /// every change from before its mark (the watcher sent them before recording it).
    fn note_quiet(&mut self, marks: &[(Id, Option<i64>)]) {
        for &(wid, mark) in marks {
            let Some(mark) = mark else { continue };
            let Some(s) = self.sync_watched_by(wid) else {
                continue;
            };
            if s.ready && s.stats.unwatched == 0 && s.idle() {
                s.catchup.note_quiet(mark);
            }
        }
    }

    /// Write the running catch-up checkpoint (durably) when it says something new: what a
    /// worker killed from now on can vouch for (see the catchup module).
    fn checkpoint(&mut self) {
        let entries: Vec<catchup::MarkerSync> = self
            .syncs
            .iter()
            .map(|s| {
                catchup::MarkerSync::new(&s.job, s.catchup.checkpoint(s.ready, s.stats.unwatched))
            })
            .collect();
        if self.last_checkpoint.as_ref() == Some(&entries) {
            return;
        }
        match catchup::write_checkpoint(&self.config.state_dir, entries.clone()) {
            Ok(()) => self.last_checkpoint = Some(entries),
            // The previous record stays: older, so still true.
            Err(e) => log::error!("{e:#}; retrying in {CHECKPOINT_EVERY:?}"),
        }
    }

    /// READY=1 once every sync has its watches in place or is waiting for a lost source
    /// (the worker runs and says so in its status; a source that is not mounted at boot
    /// must not fail the start).
    fn maybe_notify_ready(&mut self) {
        if self.notified_ready || !self.syncs.iter().all(|s| s.ready || s.lost.is_some()) {
            return;
        }
        self.notified_ready = true;
        let dirs: u64 = self.syncs.iter().map(|s| s.stats.watched).sum();
        let lost = self.syncs.iter().filter(|s| s.lost.is_some()).count();
        crate::notify::send(&format!(
            "READY=1\nSTATUS=watching {dirs} director{}{}",
            if dirs == 1 { "y" } else { "ies" },
            if lost > 0 {
                format!("; {lost} source(s) missing or replaced, see syncd status")
            } else {
                String::new()
            }
        ));
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
                } else {
                    for q in [t.queue.deadline(), t.failing.deadline()]
                        .into_iter()
                        .flatten()
                    {
                        min(q.max(retry));
                    }
                }
            }
        }
        if self.status_stale() {
            min(self.last_status.map_or(now, |l| after(l, STATUS_MIN_GAP)));
        }
        if !self.stopping {
            min(self.next_checkpoint);
        }
        d
    }

    fn dispatch(&mut self, now: Instant) {
        for s in &mut self.syncs {
            if !s.ready {
                continue;
            }
            if let Some(f) = s.next_full {
                if now >= f {
                    log::info!("{}: periodic full sync due", s.job.name);
                    for t in &mut s.targets {
                        t.queue.push(Change::PeriodicFull, now);
                    }
                    s.next_full = s.job.full_sync.interval.map(|i| after(now, i));
                }
            }
            for t in &mut s.targets {
                if t.in_flight.is_some() || t.probing || t.retry_at.is_some_and(|r| now < r) {
                    continue;
                }
                let Some(caps) = t.caps else {
                    t.probing = true;
                    self.status_dirty = true;
                    let (job, cfg, tx) = (s.job.clone(), t.cfg.clone(), self.tx.clone());
                    let (id, cfg_gen) = (t.id, t.cfg_gen);
                    std::thread::spawn(move || {
                        let r = probe_target(&job, &cfg);
                        let _ = tx.send(Msg::Probed(id, cfg_gen, r));
                    });
                    continue;
                };
                for c in t.failing.due(now) {
                    t.queue.push(c, now);
                }
                if !t.queue.is_due(now) {
                    continue;
                }
                let settled = t.queue.newest().map(|n| now.saturating_duration_since(n));
                let (batch, since) = t.queue.take();
                // Failing paths waiting for their own retry stay out of it.
                let mut batch = t.failing.hold(batch);
                if batch.is_empty() {
                    continue;
                }
                log::debug!(
                    "{} → {}: taking {} (oldest change {:.0} ms ago, newest {:.0} ms ago)",
                    s.job.name,
                    t.cfg.name,
                    describe(&batch),
                    since.map_or(0.0, |o| now.saturating_duration_since(o).as_secs_f64()
                        * 1e3),
                    settled.map_or(0.0, |d| d.as_secs_f64() * 1e3)
                );
                if s.job.mode == Mode::Tree && !batch.full {
                    batch = Batch::full();
                }
                let progress = progress::shared();
                let waiting = shared_waiting();
                t.in_flight = Some(InFlight {
                    batch: batch.clone(),
                    since,
                    progress: progress.clone(),
                    waiting: waiting.clone(),
                });
                self.status_dirty = true;
                let (job, cfg, tx) = (s.job.clone(), t.cfg.clone(), self.tx.clone());
                let (id, cfg_gen) = (t.id, t.cfg_gen);
                let checks = Checks {
                    source: s.source,
                    guard: !t.force_full,
                    one_at_a_time: t.limited,
                };
                std::thread::spawn(move || {
                    let report = execute(
                        &job,
                        &cfg,
                        &batch,
                        caps,
                        checks,
                        Some(&progress),
                        Some(&waiting),
                    );
                    let _ = tx.send(Msg::Pushed(id, cfg_gen, report));
                });
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        self.status_dirty = true;
        let now = Instant::now();
        match msg {
            Msg::Changes(wid, changes) => {
                // None: a replaced watcher's last words; the new one's full push covers them.
                let Some(s) = self.sync_watched_by(wid) else {
                    return;
                };
                s.catchup.note_activity();
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
            Msg::Ready(wid, stats, source, resumed) => {
                let tx = self.tx.clone();
                let Some(s) = self.sync_watched_by(wid) else {
                    return;
                };
                s.ready = true;
                s.stats = stats;
                s.source = Some(source);
                if let Some(why) = s.lost.take() {
                    log::info!(
                        "{}: the source {} is back (it was lost: {why}); catching up",
                        s.job.name,
                        s.job.source.display()
                    );
                }
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
                let initial = s.job.initial_sync && !resumed;
                if s.full_on_ready || initial {
                    log::info!(
                        "{}: {}",
                        s.job.name,
                        if s.full_on_ready {
                            "pushing the whole tree (watches replaced or added by a reload, or a new source accepted)"
                        } else {
                            "initial full sync"
                        }
                    );
                    for t in &mut s.targets {
                        t.queue.push(Change::Full, now);
                    }
                }
                if !s.full_on_ready {
                    let resumed_full = match s.catchup.decision() {
                        catchup::Decision::Full(reason) if resumed => Some(reason.clone()),
                        _ => None,
                    };
                    let wid = s.watch.id;
                    let send = move |c| tx.send(Msg::Changes(wid, c)).is_ok();
                    let change = match resumed_full {
                        Some(reason) => {
                            log::info!("{}: full sync: {reason}", s.job.name);
                            Some(Change::Full)
                        }
                        None => s.catchup.on_ready(&s.job, &s.watch.stop, send),
                    };
                    if let Some(c) = change {
                        for t in &mut s.targets {
                            t.queue.push(c.clone(), now);
                        }
                    }
                }
                s.full_on_ready = false;
                s.next_full = s.job.full_sync.interval.map(|i| after(now, i));
                let (name, path) = (s.job.name.clone(), s.job.source.clone());
                if self.sources.set(&name, &path, source) {
                    if let Err(e) = self.sources.save(&self.config.state_dir) {
                        log::error!("{e:#}");
                    }
                }
                // Write at once: "not starting any more" is what callers wait for.
                self.write_status();
                self.maybe_notify_ready();
            }
            Msg::Lost(wid, why) => {
                let Some(s) = self.sync_watched_by(wid) else {
                    return;
                };
                if s.ready {
                    // What it could vouch for until now is what the catch-up starts from.
                    let idle = s.idle();
                    s.catchup.lost(s.stats.unwatched, idle);
                }
                s.ready = false;
                s.next_full = None;
                s.lost = Some(why);
                self.write_status();
                self.maybe_notify_ready();
            }
            Msg::Stats(wid, stats) => {
                if let Some(s) = self.sync_watched_by(wid) {
                    s.stats = stats;
                }
            }
            Msg::Fatal(wid, e) => {
                let Some(s) = self.sync_watched_by(wid) else {
                    log::debug!("a replaced watcher failed: {e}");
                    return;
                };
                log::error!("{}: {e}", s.job.name);
                self.fatal = Some(e);
                self.stopping = true;
            }
            Msg::Probed(tid, cfg_gen, r) => {
                let Some((si, ti)) = self.target_index(tid) else {
                    return;
                };
                let s = &mut self.syncs[si];
                let t = &mut s.targets[ti];
                t.probing = false;
                if cfg_gen != t.cfg_gen {
                    // Probed with settings a reload replaced: probe again.
                    return;
                }
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
                        end_busy(&s.job, t, now);
                    }
                    Err(outcome) => {
                        if outcome.class == Class::Busy {
                            learn_limited(&s.job, t);
                        }
                        fail(&s.job, t, outcome, now);
                    }
                }
            }
            Msg::Pushed(tid, cfg_gen, report) => {
                let Some((si, ti)) = self.target_index(tid) else {
                    log::debug!("a push to a target removed by a reload ended");
                    return;
                };
                let s = &mut self.syncs[si];
                let t = &mut s.targets[ti];
                let Some(done) = t.in_flight.take() else {
                    return;
                };
                if let Some(why) = report.source_lost {
                    // Nothing ran: the batch waits for the source, no failure counted.
                    t.queue.restore(done.batch, done.since.unwrap_or(now));
                    self.source_lost(si, why);
                    return;
                }
                if report.refused_busy && cfg_gen == t.cfg_gen {
                    learn_limited(&s.job, t);
                }
                let split = report
                    .failed
                    .as_ref()
                    .and_then(|failed| failing::split(&done.batch, failed));
                if report.outcome.class == Class::Success || split.is_some() {
                    end_busy(&s.job, t, now);
                    let runs = format!(
                        "{:.2}s ({} rsync run{})",
                        report.elapsed.as_secs_f64(),
                        report.runs,
                        if report.runs == 1 { "" } else { "s" }
                    );
                    let (batch, failing_changed) = match split {
                        Some(split) => (isolate(&s.job, t, &done.batch, split, &runs, now), true),
                        None => {
                            log::info!(
                                "{} → {}: pushed {} in {runs}",
                                s.job.name,
                                t.cfg.name,
                                describe(&done.batch)
                            );
                            let changed = t.failing.pushed(&done.batch, now);
                            (done.batch, changed)
                        }
                    };
                    // The target works; a push whose every path failed (a failing path
                    // tried alone) pushed nothing, though: no success, no hooks.
                    let went = !batch.is_empty();
                    if went {
                        t.pushes_ok += 1;
                        t.last_success = Some(SystemTime::now());
                    }
                    t.consecutive_failures = 0;
                    t.backoff = Duration::ZERO;
                    t.retry_at = None;
                    t.last_error = None;
                    if batch.full || s.job.mode == Mode::Tree {
                        t.full_syncs += u64::from(batch.full);
                        t.force_full = false;
                    }
                    // The fail log holds the failing paths; rewritten when what it owes
                    // changed (a count that differs from the failing set's: queued
                    // entries saved by an earlier failure were pushed since).
                    if failing_changed || t.backlog != t.failing.len() as u64 {
                        let owed = owed(t);
                        if let Err(e) = t.faillog.save(&owed) {
                            log::error!("{e:#}");
                        }
                        t.backlog = owed.len() as u64;
                    }
                    if went {
                        let mut paths = batch.paths;
                        paths.extend(batch.trees);
                        s.hooks.submit(Pushed {
                            sync: s.job.name.clone(),
                            source: s.job.source.clone(),
                            target: t.cfg.name.clone(),
                            full: batch.full,
                            paths,
                        });
                    }
                } else {
                    t.queue.restore(done.batch, done.since.unwrap_or(now));
                    if report.outcome.class == Class::DeleteMissingArgsUnsupported {
                        if cfg_gen != t.cfg_gen {
                            // Learnt about the target's old settings; it is probed again.
                            return;
                        }
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
                    let snapshot = owed(t);
                    t.backlog = snapshot.len() as u64;
                    if let Err(e) = t.faillog.save(&snapshot) {
                        log::error!("{e:#}");
                    }
                }
            }
            Msg::Signal(sig @ (signal_hook::consts::SIGUSR1 | signal_hook::consts::SIGUSR2)) => {
                let full = sig == signal_hook::consts::SIGUSR2;
                if full && !self.stopping {
                    if crate::force::take(&self.config.state_dir) {
                        log::warn!(
                            "syncd sync --full --force: the next whole-tree push of every target may delete past max_delete"
                        );
                        for t in self.syncs.iter_mut().flat_map(|s| &mut s.targets) {
                            t.force_full = true;
                        }
                    }
                    self.accept_lost_sources();
                }
                self.push_now(full, now);
            }
            Msg::Signal(sig) => {
                if sig == signal_hook::consts::SIGHUP {
                    self.reload();
                    if !self.stopping {
                        self.accept_lost_sources();
                    }
                    return;
                }
                if self.stopping {
                    log::warn!("second stop signal: exiting without waiting for pushes in flight");
                    self.save_pending();
                    std::process::exit(0);
                }
                log::info!(
                    "stop requested: saving what is pending, finishing {} push(es) in flight, then saving again",
                    self.in_flight()
                );
                self.stopping = true;
                // At once: a SIGKILL after a drain that takes too long then loses nothing.
                self.save_pending();
            }
        }
    }

    /// A push found the source path naming another directory than the watched one
    /// (before the watcher noticed, or without an event: a parent moved). Hold the
    /// sync and let a new watcher wait for the watched directory to come back.
    fn source_lost(&mut self, si: usize, why: String) {
        let tx = self.tx.clone();
        let id = self.fresh_id();
        let s = &mut self.syncs[si];
        if s.lost.is_some() {
            return;
        }
        log::warn!(
            "{}: {why}; push not run, holding every push of this sync until the source is back",
            s.job.name
        );
        if s.ready {
            // The batch just put back is not pushed: only the quiet mark vouches.
            s.catchup.lost(s.stats.unwatched, false);
        }
        let expect = Expect::known(s.source, true);
        s.rewatch(id, s.job.clone(), tx, expect);
        s.next_full = None;
        s.lost = Some(why);
        self.status_dirty = true;
    }

    /// An operator accepts whatever directory the lost sources' paths name now (`syncd
    /// reload`, `syncd sync --full`): watch it and push it whole (the deletion guard still
    /// applies to that push).
    fn accept_lost_sources(&mut self) {
        let tx = self.tx.clone();
        for si in 0..self.syncs.len() {
            if self.syncs[si].lost.is_none() {
                continue;
            }
            let id = self.fresh_id();
            let s = &mut self.syncs[si];
            log::info!(
                "{}: accepting whatever {} is now as the source; it is pushed whole once watched",
                s.job.name,
                s.job.source.display()
            );
            let expect = Expect::Any {
                wait_if_missing: true,
            };
            s.rewatch(id, s.job.clone(), tx.clone(), expect);
            s.full_on_ready = true;
            s.catchup.reset_quiet();
        }
    }

    /// SIGUSR1: push everything pending now; SIGUSR2 (`full`): push every tree whole now.
    /// Waiting retries are cut short too: an operator asked for it.
    fn push_now(&mut self, full: bool, now: Instant) {
        if self.stopping {
            return;
        }
        log::info!(
            "{}: {}",
            if full { "SIGUSR2" } else { "SIGUSR1" },
            if full {
                "pushing every tree whole now"
            } else {
                "pushing everything pending now"
            }
        );
        for s in &mut self.syncs {
            for t in &mut s.targets {
                if full {
                    t.queue.push(Change::Full, now);
                }
                t.queue.flush_now();
                t.failing.retry_now(now);
                t.retry_at = None;
            }
        }
    }

    /// A push is in flight: its progress changes without a message, so the status file
    /// is rewritten at the busy pace.
    fn status_stale(&self) -> bool {
        self.status_dirty
            || self
                .syncs
                .iter()
                .flat_map(|s| &s.targets)
                .any(|t| t.in_flight.is_some())
    }

    /// Keep everything not yet pushed in the fail log, for the next start. The queues
    /// are left as they are, so this can run while pushes are still in flight. Returns,
    /// per sync, whether everything it owes was saved.
    fn save_pending(&mut self) -> Vec<bool> {
        let mut saved = Vec::with_capacity(self.syncs.len());
        for s in &mut self.syncs {
            let mut ok = true;
            for t in &mut s.targets {
                // A push still in flight may not finish: keep its batch too.
                let mut q = t.queue.clone();
                if let Some(f) = &t.in_flight {
                    q.restore(f.batch.clone(), f.since.unwrap_or_else(Instant::now));
                }
                q.restore(t.failing.owed(), Instant::now());
                let pending = q.snapshot();
                if pending.is_empty() && t.backlog == 0 {
                    continue;
                }
                let saved = t.faillog.save(&pending);
                if saved.is_ok() {
                    // The file now holds this much: a later save must rewrite it.
                    t.backlog = pending.len() as u64;
                }
                match saved {
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

    fn fresh_id(&mut self) -> Id {
        self.next_id += 1;
        self.next_id
    }

    /// The sync whose current watcher is `wid` (None: a watcher a reload replaced).
    fn sync_watched_by(&mut self, wid: Id) -> Option<&mut SyncState> {
        self.syncs.iter_mut().find(|s| s.watch.id == wid)
    }

    /// Where the target `tid` is (None: removed by a reload).
    fn target_index(&self, tid: Id) -> Option<(usize, usize)> {
        self.syncs.iter().enumerate().find_map(|(si, s)| {
            s.targets
                .iter()
                .position(|t| t.id == tid)
                .map(|ti| (si, ti))
        })
    }

    /// A target's state as at start: its fail log opened and replayed into a new queue.
    fn new_target(
        &mut self,
        job: &SyncJob,
        t: &Target,
        now: Instant,
    ) -> anyhow::Result<TargetState> {
        let faillog = FailLog::open(&self.config.state_dir, &job.name, &t.name)?;
        let mut queue = Queue::new(limits(job));
        let saved = faillog.load();
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
        Ok(TargetState {
            id: self.fresh_id(),
            cfg_gen: 0,
            dest: dest_arg(t).to_string_lossy().into_owned(),
            cfg: t.clone(),
            queue,
            in_flight: None,
            caps: None,
            probing: false,
            retry_at: None,
            backoff: Duration::ZERO,
            limited: false,
            busy_since: None,
            faillog,
            backlog,
            failing: Failing::default(),
            last_success: None,
            pushes_ok: 0,
            pushes_failed: 0,
            consecutive_failures: 0,
            last_error: None,
            full_syncs: 0,
            force_full: false,
        })
    }

    /// A sync with its watcher thread started.
    fn start_sync(
        &mut self,
        job: SyncJob,
        targets: Vec<TargetState>,
        full_on_ready: bool,
        catchup: Tracker,
        expect: Expect,
    ) -> SyncState {
        let job = Arc::new(job);
        let watch = spawn_watcher(
            self.fresh_id(),
            job.clone(),
            self.tx.clone(),
            None,
            catchup.watermark(),
            expect,
        );
        SyncState {
            catchup,
            hooks: HookRunner::spawn(job.hooks.clone()),
            job,
            watch,
            stats: WatchStats::default(),
            ready: false,
            full_on_ready,
            next_full: None,
            targets,
            source: None,
            lost: None,
        }
    }

    /// SIGHUP: re-read the config file and adjust to it (see the module doc). An invalid
    /// file, or a new target whose fail log cannot be read, changes nothing.
    fn reload(&mut self) {
        let path = self.config.path.clone();
        if self.stopping {
            log::info!("SIGHUP while stopping: not reloading {}", path.display());
            return;
        }
        log::info!("SIGHUP: reloading {}", path.display());
        let mut new = match crate::config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                log::error!("cannot reload: {e}; keeping the running configuration");
                return;
            }
        };
        self.overrides.apply(&mut new);
        let plan = reload::diff(&self.config, &new);
        if plan.is_noop() {
            log::info!("{}", plan.summary(&path));
            return;
        }
        // Everything that can fail comes first, so a failure leaves all as it was.
        let now = Instant::now();
        let mut prepared: Vec<Vec<Option<TargetState>>> = Vec::with_capacity(plan.syncs.len());
        for (sp, job) in plan.syncs.iter().zip(&new.syncs) {
            let mut ts = Vec::with_capacity(job.targets.len());
            for (tc, t) in sp.targets.iter().zip(&job.targets) {
                if *tc != TargetChange::Added {
                    ts.push(None);
                    continue;
                }
                match self.new_target(job, t, now) {
                    Ok(t) => ts.push(Some(t)),
                    Err(e) => {
                        log::error!(
                            "cannot reload {}: {e:#}; keeping the running configuration",
                            path.display()
                        );
                        return;
                    }
                }
            }
            prepared.push(ts);
        }
        for w in &new.warnings {
            log::warn!("{w}");
        }
        if plan.state_dir_changed {
            log::warn!(
                "state_dir changed to {} in {}: restart syncd to apply; still using {}",
                new.state_dir.display(),
                path.display(),
                self.config.state_dir.display()
            );
            new.state_dir = self.config.state_dir.clone();
        }
        if plan.status_file_changed {
            log::warn!(
                "status_file changed to {} in {}: restart syncd to apply; still writing {}",
                new.status_file.display(),
                path.display(),
                self.config.status_file.display()
            );
            new.status_file = self.config.status_file.clone();
        }
        let mut old = std::mem::take(&mut self.syncs);
        for name in &plan.removed_syncs {
            if let Some(i) = old.iter().position(|s| &s.job.name == name) {
                let s = old.swap_remove(i);
                self.drop_sync(s);
            }
        }
        for ((sp, job), ts) in plan.syncs.iter().zip(&new.syncs).zip(prepared) {
            if sp.change == SyncChange::Added {
                log::info!(
                    "{}: added by reload; its targets get a whole-tree push once its watches are in place",
                    sp.name
                );
                let s = self.start_sync(
                    job.clone(),
                    ts.into_iter().flatten().collect(),
                    true,
                    Tracker::none(),
                    Expect::Any {
                        wait_if_missing: false,
                    },
                );
                self.syncs.push(s);
                continue;
            }
            let i = old
                .iter()
                .position(|s| s.job.name == sp.name)
                .expect("the running syncs are those of the running config, which has this one");
            let mut s = old.swap_remove(i);
            if sp.change != SyncChange::Unchanged {
                self.update_sync(&mut s, sp, job, ts, now);
            }
            self.syncs.push(s);
        }
        self.config = new;
        self.status_dirty = true;
        log::info!("{}", plan.summary(&path));
    }

    /// Apply one sync's plan (`Updated` or `Rewatched`): new settings, queues kept.
    fn update_sync(
        &mut self,
        s: &mut SyncState,
        sp: &SyncPlan,
        job: &SyncJob,
        mut prepared: Vec<Option<TargetState>>,
        now: Instant,
    ) {
        let job = Arc::new(job.clone());
        // A target added or moved, or a new source, is not pushed yet: the running
        // checkpoint vouches again only after the next quiet moment.
        s.catchup.reset_quiet();
        let mut old = std::mem::take(&mut s.targets);
        for name in &sp.removed_targets {
            if let Some(i) = old.iter().position(|t| &t.cfg.name == name) {
                discard_target(&job.name, old.swap_remove(i));
            }
        }
        for (i, (tc, cfg)) in sp.targets.iter().zip(&job.targets).enumerate() {
            if *tc == TargetChange::Added {
                let Some(mut t) = prepared.get_mut(i).and_then(Option::take) else {
                    continue;
                };
                log::info!(
                    "{} → {}: added by reload; pushing the whole tree",
                    job.name,
                    cfg.name
                );
                t.queue.push(Change::Full, now);
                s.targets.push(t);
                continue;
            }
            let Some(pos) = old.iter().position(|t| t.cfg.name == cfg.name) else {
                continue;
            };
            let mut t = old.swap_remove(pos);
            t.queue.set_limits(limits(&job));
            if *tc != TargetChange::Unchanged {
                t.cfg = cfg.clone();
                t.dest = dest_arg(cfg).to_string_lossy().into_owned();
                t.cfg_gen += 1;
                t.caps = None;
                t.retry_at = None;
                t.backoff = Duration::ZERO;
                t.limited = false;
                t.busy_since = None;
                t.last_error = None;
                if *tc == TargetChange::Moved {
                    log::info!(
                        "{} → {}: destination changed to {}; pushing the whole tree",
                        job.name,
                        cfg.name,
                        t.dest
                    );
                    t.queue.push(Change::Full, now);
                } else {
                    log::info!(
                        "{} → {}: settings changed; checking the target again",
                        job.name,
                        cfg.name
                    );
                }
            }
            s.targets.push(t);
        }
        if sp.hooks_changed {
            let old_hooks = std::mem::replace(&mut s.hooks, HookRunner::spawn(job.hooks.clone()));
            // Dropping waits for queued hooks (bounded): not on the main loop.
            std::thread::spawn(move || drop(old_hooks));
        }
        if job.full_sync.interval != s.job.full_sync.interval && s.ready {
            s.next_full = job.full_sync.interval.map(|i| after(now, i));
        }
        if sp.change == SyncChange::Rewatched {
            log::info!(
                "{}: source, exclude or events changed; replacing its watches, then pushing the whole tree",
                job.name
            );
            // The same source path must still name the same directory; a new path is
            // taken as it is.
            let same_path = job.source == s.job.source;
            let expect = Expect::known(s.source.filter(|_| same_path), false);
            s.rewatch(self.fresh_id(), job.clone(), self.tx.clone(), expect);
            s.full_on_ready = true;
            s.next_full = None;
        }
        s.job = job;
    }

    /// A sync removed by a reload: its watcher stopped, its targets dropped.
    fn drop_sync(&mut self, mut s: SyncState) {
        log::info!(
            "{}: removed by reload; no longer watching {}",
            s.job.name,
            s.job.source.display()
        );
        s.watch.stop();
        for t in std::mem::take(&mut s.targets) {
            discard_target(&s.job.name, t);
        }
        std::thread::spawn(move || drop(s.hooks));
    }

    fn maybe_write_status(&mut self, now: Instant) {
        let due = match self.last_status {
            None => true,
            Some(l) => {
                (self.status_stale() && now >= after(l, STATUS_MIN_GAP))
                    || now >= after(l, STATUS_IDLE_GAP)
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
                degraded |= s.stats.unwatched > 0 || s.lost.is_some();
                SyncStatus {
                    name: s.job.name.clone(),
                    source: s.job.source.display().to_string(),
                    source_problem: s.lost.clone(),
                    watched_dirs: s.stats.watched,
                    unwatched_dirs: s.stats.unwatched,
                    overflows: s.stats.overflows,
                    catchup: Some(s.catchup.outcome()),
                    targets: s
                        .targets
                        .iter()
                        .map(|t| {
                            any_pending |= !t.queue.is_empty() || t.in_flight.is_some();
                            let waiting = t
                                .in_flight
                                .as_ref()
                                .and_then(|f| waiting_since(&f.waiting))
                                .filter(|since| {
                                    now.saturating_duration_since(*since) >= WAITING_SHOWN_AFTER
                                })
                                .map(|since| {
                                    busy_message(now, t.busy_since.unwrap_or(since), BUSY)
                                });
                            degraded |= t.consecutive_failures > 0
                                || !t.failing.is_empty()
                                || waiting.is_some()
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
                                last_success: t.last_success.map(unix_secs),
                                lag_seconds: oldest.map_or(0.0, |o| {
                                    now.saturating_duration_since(o).as_secs_f64()
                                }),
                                pushes_ok: t.pushes_ok,
                                pushes_failed: t.pushes_failed,
                                consecutive_failures: t.consecutive_failures,
                                last_error: waiting.or_else(|| t.last_error.clone()),
                                retry_backlog: t.backlog,
                                next_retry_at: t.retry_at.map(|r| {
                                    unix_secs(wall_after(sys_now, r.saturating_duration_since(now)))
                                }),
                                full_syncs: t.full_syncs,
                                delete_method: match t.caps {
                                    Some(Caps {
                                        delete_missing_args: false,
                                    }) => "include-filter".into(),
                                    _ => "delete-missing-args".into(),
                                },
                                progress: t
                                    .in_flight
                                    .as_ref()
                                    .and_then(|f| progress::snapshot(&f.progress)),
                                failing_paths: t.failing.summary(FAILING_EXAMPLES),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        let state = if self.stopping {
            State::Stopping
        } else if self.syncs.iter().any(|s| !s.ready && s.lost.is_none()) {
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
            started_at: unix_secs(self.started_at),
            updated_at: unix_secs(sys_now),
            state,
            syncs,
        }
    }
}

/// A target removed by a reload: what it still owed is dropped, its fail log removed. A
/// push still in flight ends on its own; its report is then ignored.
fn discard_target(sync: &str, t: TargetState) {
    let pending = t.queue.len() + t.in_flight.as_ref().map_or(0, |f| f.batch.len());
    log::info!(
        "{sync} → {}: removed by reload; discarded {pending} pending entr{}",
        t.cfg.name,
        if pending == 1 { "y" } else { "ies" }
    );
    if let Err(e) = t.faillog.save(&Batch::default()) {
        log::error!("{e:#}");
    }
}

/// Record a failure and schedule the next try. A busy daemon ([`Class::Busy`]) is tried
/// again soon, without touching the backoff, and logged once per episode.
fn fail(job: &SyncJob, t: &mut TargetState, outcome: Outcome, now: Instant) {
    t.consecutive_failures += 1;
    let msg = outcome.message.clone();
    if outcome.class == Class::Busy {
        let wait = busy::retry_after(job.retry.min_interval);
        t.retry_at = Some(now + wait);
        let first = t.busy_since.is_none();
        let since = *t.busy_since.get_or_insert(now);
        if first {
            log::warn!(
                "{} → {}: {msg}; waiting for a free connection, trying again every {:.1?} (changes kept)",
                job.name,
                t.cfg.name,
                wait
            );
        } else {
            log::debug!(
                "{} → {}: still busy after {:.1}s",
                job.name,
                t.cfg.name,
                now.saturating_duration_since(since).as_secs_f64()
            );
        }
        t.last_error = Some(busy_message(now, since, &msg));
        return;
    }
    end_busy(job, t, now);
    t.backoff = match outcome.class {
        Class::ConfigError => job.retry.max_interval,
        _ => deadline::double(t.backoff, job.retry.min_interval, job.retry.max_interval),
    };
    t.retry_at = Some(after(now, t.backoff));
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

/// What the target is owed, for the fail log: its queue and its failing paths.
fn owed(t: &TargetState) -> Batch {
    if t.failing.is_empty() {
        return t.queue.snapshot();
    }
    let mut q = t.queue.clone();
    q.restore(t.failing.owed(), Instant::now());
    q.snapshot()
}

/// A push failed only on paths it names (exit 23): the rest of `batch` counts as pushed
/// and each failing path waits for its own retry ([`crate::failing`]); the target's
/// backoff is left alone. Returns what was pushed.
fn isolate(
    job: &SyncJob,
    t: &mut TargetState,
    batch: &Batch,
    split: failing::Split,
    took: &str,
    now: Instant,
) -> Batch {
    t.failing.pushed(&split.pushed, now);
    let first = split
        .failed
        .first()
        .map(|(p, _, why)| format!("{} ({why})", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    let n = split.failed.len();
    t.failing.record(
        split.failed,
        now,
        job.retry.min_interval,
        job.retry.max_interval,
    );
    log::warn!(
        "{} → {}: pushed {} in {took} except {n} failing path{}: {first}{}; each is retried on its own (from {:.1?}, doubling to {:.0?}), the target's other changes go on",
        job.name,
        t.cfg.name,
        describe(batch),
        if n == 1 { "" } else { "s" },
        if n > 1 { ", …" } else { "" },
        job.retry.min_interval,
        job.retry.max_interval,
    );
    split.pushed
}

/// How many failing paths the status shows with their reasons.
const FAILING_EXAMPLES: usize = 3;

/// What the status says of a target waiting for a busy daemon since `since`.
fn busy_message(now: Instant, since: Instant, why: &str) -> String {
    format!(
        "waiting for a busy daemon (no free connection for {:.0}s): {why}",
        now.saturating_duration_since(since).as_secs_f64()
    )
}

/// A push in flight waiting for a busy daemon shows in the status from this long on (a
/// daemon still reaping the previous run's child refuses the next for a moment).
const WAITING_SHOWN_AFTER: Duration = Duration::from_secs(1);

/// Why a push in flight waits, for the status (its own message comes with its report).
const BUSY: &str = "the daemon is busy (max connections reached)";

/// The daemon refused a run as busy: it limits connections, so from now on push to it
/// one run at a time (said once per target and settings).
fn learn_limited(job: &SyncJob, t: &mut TargetState) {
    if !t.limited {
        t.limited = true;
        log::info!(
            "{} → {}: the daemon limits connections (max connections); pushing to it one rsync run at a time",
            job.name,
            t.cfg.name
        );
    }
}

/// A busy episode is over (a run got through, or the target failed otherwise).
fn end_busy(job: &SyncJob, t: &mut TargetState, now: Instant) {
    if let Some(since) = t.busy_since.take() {
        log::info!(
            "{} → {}: no longer waiting for a busy daemon (waited {:.1}s)",
            job.name,
            t.cfg.name,
            now.saturating_duration_since(since).as_secs_f64()
        );
    }
}

fn describe(b: &Batch) -> String {
    if b.full && !b.periodic {
        return "the whole tree".into();
    }
    let mut parts = Vec::new();
    if b.full {
        parts.push("the whole tree (periodic: full_sync.exclude applies)".to_string());
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DaemonSettings;
    use crate::rsync::tests::{job, local};

    fn config(status_file: &str) -> Config {
        Config {
            path: "/etc/syncd/syncd.toml".into(),
            state_dir: "/var/lib/syncd".into(),
            status_file: status_file.into(),
            syncs: vec![job("/a", vec![local("/b")]), job("/c", vec![local("/d")])],
            daemon: DaemonSettings::default(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn overrides_apply() {
        let both = Overrides {
            state_dir: Some("/tmp/st".into()),
            threads: Some(7),
        };
        // (overrides, status_file in the file, want state_dir, want status_file, want threads)
        let cases = [
            (
                Overrides::default(),
                "/var/lib/syncd/status.json",
                "/var/lib/syncd",
                "/var/lib/syncd/status.json",
                2,
            ),
            (
                both.clone(),
                "/var/lib/syncd/status.json",
                "/tmp/st",
                "/tmp/st/status.json",
                7,
            ),
            // A status file set on purpose stays where it was put.
            (
                both,
                "/run/syncd/status.json",
                "/tmp/st",
                "/run/syncd/status.json",
                7,
            ),
        ];
        for (o, status, state_dir, want_status, threads) in cases {
            let mut c = config(status);
            o.apply(&mut c);
            assert_eq!(c.state_dir, PathBuf::from(state_dir), "{o:?}");
            assert_eq!(c.status_file, PathBuf::from(want_status), "{o:?}");
            assert!(c.syncs.iter().all(|j| j.threads == threads), "{o:?}");
        }
    }
}
