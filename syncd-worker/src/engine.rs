//! The worker's main loop, as wiring: it starts the watcher threads (one per sync), the
//! probe and push threads (a probe, or up to `max_in_flight` pushes, per target) and the
//! signal thread, receives
//! their messages on one channel, and hands each to the state it concerns — a sync's
//! (`sync.rs`) or a target's pure state machine ([`crate::target`]), which
//! decides when to probe, push, back off and what the fail log must hold. It blocks on a
//! deadline (`recv_timeout`), never on a fixed sleep, and does no I/O of its own beyond
//! the status file (`status.rs`), the fail logs (`sync.rs`), the catch-up checkpoint and
//! `sources.json` (`sources.rs`) and re-reading the config file (`reload.rs`).
//!
//! SIGHUP reloads the config file in place (see [`crate::reload`] for what counts as a
//! change): untouched syncs and targets keep everything, changed ones are adjusted, and
//! an invalid new file leaves the running configuration as it is. Threads report with
//! stable ids (a watcher's, a target's), so a message from a replaced watcher or a
//! removed target is recognised and ignored.

mod reload;
mod sources;
mod status;
mod sync;

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;

use crate::catchup::{self, Restart, Tracker};
use crate::config::{Config, SyncJob, Target};
use crate::contract;
use crate::deadline::after;
use crate::faillog::FailLog;
use crate::hooks::Pushed;
use crate::metrics::file::MetricsFile;
use crate::push::PushReport;
use crate::queue::Change;
use crate::rsync::args::Caps;
use crate::rsync::exit::Outcome;
use crate::source_id::{self, SourceId};
use crate::target::{Action, TargetState, Ticket};
use crate::watch::choose::Chosen;
use crate::watch::WatchStats;
use crate::watch_thread::Expect;

use sync::{SyncState, TargetSlot};

/// How often the running catch-up checkpoint is considered (written only when it moved).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// While a sync's quiet mark still has to move (see `catchup::Tracker::settling`), how
/// often the loop samples the watermarks without a message.
const SETTLE_LOOK: Duration = Duration::from_secs(1);

/// Identity of one watcher or one target, never reused within a run.
type Id = u64;

/// What the other threads tell the main loop. Watcher messages carry the watcher's id;
/// probe and push results carry the target's id and the generation of its settings
/// they were started with.
enum Msg {
    Changes(Id, Vec<Change>),
    /// Watches in place on this source; `true` when after a `Lost`.
    Ready(Id, WatchStats, SourceId, bool, Chosen),
    Stats(Id, WatchStats),
    /// The source path no longer names the watched directory: why.
    Lost(Id, String),
    Fatal(Id, String),
    Probed(Id, u64, Result<Caps, Outcome>),
    Pushed(Id, Ticket, PushReport),
    /// A periodic verify of a target ended.
    Verified(Id, crate::status::VerifyStatus),
    Signal(Signal),
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
    /// `--password-dir`: each daemon target's `password_file` is read from its private
    /// copy there, when the controller made one.
    pub password_dir: Option<PathBuf>,
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
        if let Some(dir) = &self.password_dir {
            config.use_password_copies(dir);
        }
    }
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
    /// `metrics_file`'s writer (None: off), fed from each status written.
    metrics: Option<MetricsFile>,
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
/// `log_channel`: stdin is the controller's [`crate::log_channel`] (`--log-channel`).
pub fn run(config: Config, overrides: Overrides, log_channel: bool) -> anyhow::Result<()> {
    let state = crate::state_dir::StateDir::create(&config.state_dir)?;
    for w in &config.warnings {
        log::warn!("{w}");
    }
    let _state_lock = state.lock()?;
    // A worker killed mid-write left temp files beside its state files (the fail logs'
    // are removed as each is opened); only this worker writes these, and only from now.
    for file in [
        state.catchup_file(),
        state.sources_file(),
        config.status_file.clone(),
    ] {
        crate::durable::remove_leftover_temps(&file);
    }
    // Before the fail logs and the status file exist: they are signs of a previous run.
    let restart = Restart::begin(&config)?;
    let (tx, rx) = mpsc::channel();
    spawn_signals(tx.clone())?;
    if log_channel {
        crate::log_channel::serve_stdin()?;
    }
    let mut engine = Engine::new(config, overrides, tx);
    engine.start(&restart)?;
    engine.write_status();
    engine.main_loop(&rx);
    engine.finish(&rx)
}

/// Signals become messages, from a thread registered before any other.
fn spawn_signals(tx: Sender<Msg>) -> anyhow::Result<()> {
    crate::signals::forward(&crate::signals::HANDLED, move |sig| {
        tx.send(Msg::Signal(sig)).is_ok()
    })
}

impl Engine {
    fn new(config: Config, overrides: Overrides, tx: Sender<Msg>) -> Engine {
        let sources = source_id::Record::load(&config.state_dir);
        let metrics = config.metrics_file.as_deref().map(MetricsFile::new);
        Engine {
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
            metrics,
            fatal: None,
            sources,
            next_checkpoint: Instant::now(),
            last_checkpoint: None,
        }
    }

    /// Open every target's fail log (any failure ends the start), then start the syncs.
    fn start(&mut self, restart: &Restart) -> anyhow::Result<()> {
        let now = Instant::now();
        let jobs = self.config.syncs.clone();
        let mut targets = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let mut ts = Vec::with_capacity(job.targets.len());
            for t in &job.targets {
                ts.push(self.new_target(job, t, now)?);
            }
            targets.push(ts);
        }
        for (job, ts) in jobs.into_iter().zip(targets) {
            let mut tracker = restart.tracker(&job);
            tracker.note_replayed(ts.iter().map(|t| t.state.backlog()).sum());
            let expect = Expect::known(self.sources.expected(&job.name, job.source_path()), false);
            let s = self.start_sync(job, ts, (false, tracker, expect));
            self.syncs.push(s);
        }
        Ok(())
    }

    /// After the main loop: stop the watchers, save what is owed, write the clean-stop
    /// record.
    fn finish(mut self, rx: &Receiver<Msg>) -> anyhow::Result<()> {
        for s in &mut self.syncs {
            s.watch.stop();
        }
        // Read what each sync can vouch for, then queue what the watchers sent up to that
        // point, then save: see the catchup module's doc.
        let vouched: Vec<Option<i64>> = self
            .syncs
            .iter()
            .map(|s| s.catchup.vouch(s.ready, s.stats.unwatched))
            .collect();
        while let Ok(m) = rx.try_recv() {
            if let Msg::Changes(wid, changes) = m {
                self.on_changes(wid, changes);
            }
        }
        let saved = self.save_pending();
        self.write_status();
        if let Some(m) = &mut self.metrics {
            m.flush(Instant::now());
        }
        if let Some(e) = self.fatal {
            return Err(anyhow::anyhow!(e));
        }
        let entries = self
            .syncs
            .iter()
            .zip(vouched)
            .zip(saved)
            .map(|((s, v), ok)| catchup::MarkerSync::new(&s.job, v.filter(|_| ok)))
            .collect();
        if let Err(e) = catchup::write_marker(&self.config.state_dir, entries) {
            log::error!("{e:#}; the next start pushes every tree whole");
        }
        Ok(())
    }

    fn main_loop(&mut self, rx: &Receiver<Msg>) {
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
            // Nothing due: block until a message (an idle worker does not wake).
            let got = match self.next_deadline(now) {
                Some(d) => rx.recv_timeout(d.saturating_duration_since(now)),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match got {
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

    /// Probes and pushes running.
    fn in_flight(&self) -> usize {
        self.syncs
            .iter()
            .flat_map(|s| &s.targets)
            .map(|t| t.state.runs())
            .sum()
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let syncs = self.syncs.iter().flat_map(|s| {
            let targets = s.targets.iter().map(|t| t.state.deadline(now, s.ready));
            targets.chain([s.next_full, s.next_verify])
        });
        let status = self.status_due();
        let metrics = self.metrics.as_ref().and_then(MetricsFile::due);
        // The quiet mark moves only when the loop samples the watermark: while it still
        // has to, look again shortly; the checkpoint is due only while it may change.
        let settling = self.settling();
        let settle = settling.then(|| after(now, SETTLE_LOOK));
        let checkpoint = (!self.stopping && (settling || self.checkpoint_changed()))
            .then_some(self.next_checkpoint);
        syncs
            .chain([status, metrics, settle, checkpoint])
            .flatten()
            .min()
    }

    /// Start what is due: periodic full pushes, then each target's probe or push (one a
    /// target at a time: a push just started is young, so nothing starts beside it).
    fn dispatch(&mut self, now: Instant) {
        for s in &mut self.syncs {
            if !s.ready {
                continue;
            }
            if s.next_full.is_some_and(|f| now >= f) {
                log::info!("{}: periodic full sync due", s.job.name);
                s.queue(Change::PeriodicFull, now);
                s.next_full = s.job.full_sync.interval.map(|i| after(now, i));
            }
            if s.next_verify.is_some_and(|v| now >= v) {
                s.next_verify = s.job.verify.interval.map(|i| after(now, i));
                if s.lost.is_none() {
                    for t in &mut s.targets {
                        t.spawn_verify(&s.job, s.source, &self.tx);
                    }
                }
            }
            for t in &mut s.targets {
                match t.state.next(&s.job, now) {
                    Action::Probe => t.spawn_probe(&s.job, &self.tx),
                    Action::Push(push) => t.spawn_push(&s.job, push, s.source, &self.tx),
                    Action::WaitUntil(_) | Action::Idle => continue,
                }
                self.status_dirty = true;
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        self.status_dirty = true;
        match msg {
            Msg::Changes(wid, changes) => self.on_changes(wid, changes),
            Msg::Ready(wid, stats, source, resumed, watcher) => {
                self.on_ready(wid, stats, source, resumed, watcher)
            }
            Msg::Lost(wid, why) => self.on_lost(wid, why),
            Msg::Stats(wid, stats) => {
                if let Some(s) = self.sync_watched_by(wid) {
                    s.stats = stats;
                }
            }
            Msg::Fatal(wid, e) => self.on_fatal(wid, e),
            Msg::Probed(tid, cfg_gen, r) => self.on_probed(tid, cfg_gen, r),
            Msg::Pushed(tid, ticket, report) => self.on_pushed(tid, ticket, report),
            Msg::Verified(tid, status) => {
                if let Some((si, ti)) = self.target_index(tid) {
                    let t = &mut self.syncs[si].targets[ti];
                    t.verifying = false;
                    t.verify = Some(status);
                }
            }
            Msg::Signal(sig) => self.on_signal(sig),
        }
    }

    fn on_probed(&mut self, tid: Id, cfg_gen: u64, r: Result<Caps, Outcome>) {
        let Some((si, ti)) = self.target_index(tid) else {
            return;
        };
        let s = &mut self.syncs[si];
        s.targets[ti]
            .state
            .on_probe(&s.job, cfg_gen, r, Instant::now());
    }

    /// A push ended: the target decides; the engine saves its fail log, runs the hooks
    /// for what went, or holds the sync whose source was lost.
    fn on_pushed(&mut self, tid: Id, ticket: Ticket, report: PushReport) {
        let Some((si, ti)) = self.target_index(tid) else {
            log::debug!("a push to a target removed by a reload ended");
            return;
        };
        let s = &mut self.syncs[si];
        let t = &mut s.targets[ti];
        t.landed(ticket.seq);
        let after = t
            .state
            .on_push(&s.job, ticket, report, Instant::now(), SystemTime::now());
        if let Some(why) = after.source_lost {
            self.source_lost(si, why);
            return;
        }
        if let Some(owed) = after.save {
            t.save(&owed);
        }
        if let Some(batch) = after.pushed {
            let mut paths = batch.paths;
            paths.extend(batch.trees);
            s.hooks.submit(Pushed {
                sync: s.job.name.clone(),
                source: s.job.source.clone(),
                target: t.state.name().to_string(),
                full: batch.full,
                paths,
            });
        }
        // At once, not up to STATUS_MIN_GAP later: the end of a push is what a reader
        // acts on (the file it waited for is there; `syncd status` must not still show
        // the push in flight, its progress at 100 % and the pushes before it). Then the
        // log line, so the log never says more than the status.
        self.write_status();
        if let Some(line) = after.said {
            log::info!("{line}");
        }
    }

    fn on_signal(&mut self, sig: Signal) {
        match sig {
            contract::PUSH_PENDING | contract::PUSH_FULL => {
                self.on_sync_signal(sig == contract::PUSH_FULL)
            }
            contract::RELOAD => {
                self.reload();
                if !self.stopping {
                    self.accept_lost_sources();
                }
            }
            _ => self.on_stop_signal(),
        }
    }

    /// SIGUSR1 (`syncd sync`), SIGUSR2 (`full`: `syncd sync --full`, perhaps `--force`).
    fn on_sync_signal(&mut self, full: bool) {
        if full && !self.stopping {
            if crate::force::take(&self.config.state_dir) {
                log::warn!(
                    "syncd sync --full --force: the next whole-tree push of every target may delete past max_delete"
                );
                for t in self.syncs.iter_mut().flat_map(|s| &mut s.targets) {
                    t.state.force_full();
                }
            }
            self.accept_lost_sources();
        }
        self.push_now(full, Instant::now());
    }

    /// SIGTERM/SIGINT: drain (save, finish the pushes in flight, save again); a second
    /// one exits at once.
    fn on_stop_signal(&mut self) {
        if self.stopping {
            log::warn!("second stop signal: exiting without waiting for pushes in flight");
            self.save_pending();
            // No hook outlives the worker (their guards would end them at its exit too).
            for s in &mut self.syncs {
                s.hooks.kill();
            }
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
        for t in self.syncs.iter_mut().flat_map(|s| &mut s.targets) {
            t.state.push_now(full, now);
        }
    }

    /// Keep everything not yet pushed in the fail log, for the next start. The queues
    /// are left as they are, so this can run while pushes are still in flight. Returns,
    /// per sync, whether everything it owes was saved.
    fn save_pending(&mut self) -> Vec<bool> {
        let now = Instant::now();
        let mut saved = Vec::with_capacity(self.syncs.len());
        for s in &mut self.syncs {
            let mut ok = true;
            for t in &mut s.targets {
                let Some(pending) = t.state.to_save(now) else {
                    continue;
                };
                if !t.save(&pending) {
                    ok = false;
                } else if !pending.is_empty() {
                    log::info!(
                        "{} → {}: saved {} pending entries to {}",
                        s.job.name,
                        t.state.name(),
                        pending.len(),
                        t.faillog.path().display()
                    );
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

    /// A target as at start: its fail log opened and replayed into a new queue.
    fn new_target(
        &mut self,
        job: &SyncJob,
        t: &Target,
        now: Instant,
    ) -> anyhow::Result<TargetSlot> {
        let faillog = FailLog::open(&self.config.state_dir, &job.name, &t.name)?;
        let saved = faillog.load();
        if !saved.is_empty() {
            log::info!(
                "{} → {}: replaying {} pending entries from the fail log {}",
                job.name,
                t.name,
                saved.len(),
                faillog.path().display()
            );
        }
        let state = TargetState::new(job, t.clone(), saved, now);
        Ok(TargetSlot::new(self.fresh_id(), state, faillog))
    }

    /// A sync with its watcher thread started: `full_on_ready`, its catch-up tracker,
    /// what its source must be.
    fn start_sync(
        &mut self,
        job: SyncJob,
        targets: Vec<TargetSlot>,
        how: (bool, Tracker, Expect),
    ) -> SyncState {
        SyncState::start(self.fresh_id(), job, targets, how, self.tx.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DaemonSettings, TargetKind};
    use crate::rsync::tests::{job, local};
    use std::path::Path;

    fn config(status_file: &str) -> Config {
        Config {
            path: "/etc/syncd/syncd.toml".into(),
            state_dir: "/var/lib/syncd".into(),
            status_file: status_file.into(),
            metrics_file: None,
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
            password_dir: None,
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

    #[test]
    fn a_password_file_is_read_from_its_private_copy_when_there_is_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let daemon = |pw: &str| Target {
            name: pw.to_string(),
            kind: TargetKind::Daemon {
                user: None,
                host: "h".into(),
                module: "m".into(),
                port: None,
                password_file: Some(pw.into()),
            },
        };
        let mut c = config("/var/lib/syncd/status.json");
        c.syncs[0].targets = vec![daemon("/etc/copied.pw"), daemon("/etc/not-copied.pw")];
        let copy = dir
            .path()
            .join(contract::password_copy_name(Path::new("/etc/copied.pw")));
        std::fs::write(&copy, "pw\n").expect("write the copy");
        let o = Overrides {
            password_dir: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };
        o.apply(&mut c);
        let files: Vec<Option<PathBuf>> = c.syncs[0]
            .targets
            .iter()
            .map(|t| match &t.kind {
                TargetKind::Daemon { password_file, .. } => password_file.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(files, [Some(copy), Some("/etc/not-copied.pw".into())]);
    }
}
