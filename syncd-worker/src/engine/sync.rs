//! What the engine keeps per sync (its watcher thread, its hooks, its catch-up tracker, the
//! source's identity) and per target (the pure [`TargetState`] beside its open fail log
//! and what its push thread publishes). Starting threads lives here; decisions about a
//! target live in [`crate::target`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use crate::batch::Batch;
use crate::catchup::{Tracker, Watermark};
use crate::config::SyncJob;
use crate::faillog::FailLog;
use crate::hooks::HookRunner;
use crate::progress::{self, SharedProgress};
use crate::push::{execute, shared_waiting, waiting_since, Checks, SharedWaiting};
use crate::queue::Change;
use crate::rsync::probe::probe_target;
use crate::source_id::SourceId;
use crate::status::VerifyStatus;
use crate::target::{Live, Push, TargetState};
use crate::verify;
use crate::watch::choose::Chosen;
use crate::watch::WatchStats;
use crate::watch_thread::{self, Expect, Report};

use super::{Id, Msg};

/// The watcher thread of one sync.
pub(super) struct WatchHandle {
    pub(super) id: Id,
    pub(super) stop: Arc<AtomicBool>,
    wake: Option<Arc<watch_thread::Wake>>,
    thread: Option<JoinHandle<()>>,
}

impl WatchHandle {
    /// Ask the thread to end (woken at once); returns it, to be joined by whoever needs
    /// its watches gone.
    pub(super) fn stop(&mut self) -> Option<JoinHandle<()>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = &self.wake {
            w.wake();
        }
        self.thread.take()
    }
}

/// One target as the engine holds it: the pure state, its open fail log, and what each
/// push in flight publishes (rsync's progress, since when it waits for a busy daemon),
/// by the push's number.
pub(super) struct TargetSlot {
    pub(super) id: Id,
    pub(super) state: TargetState,
    pub(super) faillog: FailLog,
    live: Vec<(u64, SharedProgress, SharedWaiting)>,
    /// The last periodic verify's result, for the status.
    pub(super) verify: Option<VerifyStatus>,
    /// A periodic verify is running (on its own thread).
    pub(super) verifying: bool,
}

impl TargetSlot {
    pub(super) fn new(id: Id, state: TargetState, faillog: FailLog) -> TargetSlot {
        TargetSlot {
            id,
            state,
            faillog,
            live: Vec::new(),
            verify: None,
            verifying: false,
        }
    }

    /// Write `batch` to the fail log; the state learns what the file holds only when it
    /// was written. Returns whether it was.
    pub(super) fn save(&mut self, batch: &Batch) -> bool {
        match self.faillog.save(batch) {
            Ok(()) => {
                self.state.saved(batch);
                true
            }
            Err(e) => {
                log::error!("{e:#}");
                false
            }
        }
    }

    /// What the pushes in flight publish, for the status: the earliest wait for a busy
    /// daemon, and the progress of the oldest push that reports one (the long one).
    pub(super) fn live(&self) -> Live {
        Live {
            waiting: self
                .live
                .iter()
                .filter_map(|(_, _, w)| waiting_since(w))
                .min(),
            progress: self.live.iter().find_map(|(_, p, _)| progress::snapshot(p)),
        }
    }

    /// The push `seq` ended: what it published is done with.
    pub(super) fn landed(&mut self, seq: u64) {
        self.live.retain(|(s, _, _)| *s != seq);
    }

    /// Start a probe of the target on a thread; its result comes back as `Msg::Probed`.
    pub(super) fn spawn_probe(&self, job: &Arc<SyncJob>, tx: &Sender<Msg>) {
        let (job, cfg, tx) = (job.clone(), self.state.cfg().clone(), tx.clone());
        let (id, cfg_gen) = (self.id, self.state.cfg_gen());
        std::thread::spawn(move || {
            let r = probe_target(&job, &cfg);
            let _ = tx.send(Msg::Probed(id, cfg_gen, r));
        });
    }

    /// Start a periodic verify of the target on a thread (none while one runs); its
    /// result comes back as `Msg::Verified`. It only reads (an rsync dry run), so it runs
    /// beside the target's pushes; what they are still carrying is not drift (see
    /// [`crate::verify`]).
    pub(super) fn spawn_verify(
        &mut self,
        job: &Arc<SyncJob>,
        source: Option<SourceId>,
        tx: &Sender<Msg>,
    ) {
        if self.verifying {
            return;
        }
        self.verifying = true;
        let (job, cfg, tx) = (job.clone(), self.state.cfg().clone(), tx.clone());
        let id = self.id;
        std::thread::spawn(move || {
            let started = Instant::now();
            let opts = verify::Options {
                deep: job.verify.deep,
                settle: Some(verify::settle_for(&job)),
            };
            let result = verify::check_target(&job, &cfg, source, opts, None);
            match &result {
                Ok(c) if c.drift.is_empty() => log::info!("{} → {}: verify: equal", job.name, cfg.name),
                Ok(c) => log::warn!(
                    "{} → {}: verify: drift: {} missing, {} different, {} extra on the target (`syncd verify` lists them; `syncd sync --full` repairs)",
                    job.name,
                    cfg.name,
                    c.drift.missing.count,
                    c.drift.different.count,
                    c.drift.extra.count
                ),
                Err(e) => log::warn!("{} → {}: verify failed: {e}", job.name, cfg.name),
            }
            let status = verify::status_of(&result, SystemTime::now(), started.elapsed());
            let _ = tx.send(Msg::Verified(id, status));
        });
    }

    /// Start `push` on a thread (checking first that the source path still names
    /// `source`); its report comes back as `Msg::Pushed`.
    pub(super) fn spawn_push(
        &mut self,
        job: &Arc<SyncJob>,
        push: Push,
        source: Option<SourceId>,
        tx: &Sender<Msg>,
    ) {
        let progress = progress::shared();
        let waiting = shared_waiting();
        let ticket = push.ticket;
        self.live
            .push((ticket.seq, progress.clone(), waiting.clone()));
        let (job, cfg, tx) = (job.clone(), self.state.cfg().clone(), tx.clone());
        let id = self.id;
        let checks = Checks {
            source,
            guard: push.guard,
            one_at_a_time: push.one_at_a_time,
            impatient: push.beside,
        };
        std::thread::spawn(move || {
            let report = execute(
                &job,
                &cfg,
                &push.batch,
                push.caps,
                checks,
                Some(&progress),
                Some(&waiting),
            );
            let _ = tx.send(Msg::Pushed(id, ticket, report));
        });
    }
}

pub(super) struct SyncState {
    pub(super) job: Arc<SyncJob>,
    pub(super) watch: WatchHandle,
    pub(super) stats: WatchStats,
    pub(super) ready: bool,
    /// Push the whole tree to every target when the watcher is ready (the sync was added
    /// or re-watched by a reload: changes may have been missed in between).
    pub(super) full_on_ready: bool,
    pub(super) next_full: Option<Instant>,
    /// When the next periodic verify is due (`[sync.verify] interval`).
    pub(super) next_verify: Option<Instant>,
    pub(super) hooks: HookRunner,
    pub(super) targets: Vec<TargetSlot>,
    pub(super) catchup: Tracker,
    /// The directory being watched (set when the watches are in place): every push
    /// first checks the source path still names it.
    pub(super) source: Option<SourceId>,
    /// Why the source is not the watched directory (unmounted, moved away, replaced):
    /// while set, nothing of this sync is pushed.
    pub(super) lost: Option<String>,
    /// Which watcher delivers the changes, and why (from the last ready report; None
    /// while the watcher thread is being replaced).
    pub(super) watcher: Option<Chosen>,
}

impl SyncState {
    /// A sync with its watcher thread (`id`) started.
    pub(super) fn start(
        id: Id,
        job: SyncJob,
        targets: Vec<TargetSlot>,
        (full_on_ready, catchup, expect): (bool, Tracker, Expect),
        tx: Sender<Msg>,
    ) -> SyncState {
        let job = Arc::new(job);
        let watch = spawn_watcher(id, job.clone(), tx, None, catchup.watermark(), expect);
        SyncState {
            catchup,
            hooks: HookRunner::spawn(job.hooks.clone()),
            job,
            watch,
            stats: WatchStats::default(),
            ready: false,
            full_on_ready,
            next_full: None,
            next_verify: None,
            targets,
            source: None,
            lost: None,
            watcher: None,
        }
    }

    /// Nothing queued or in flight for any target: every change received is pushed.
    pub(super) fn idle(&self) -> bool {
        self.targets.iter().all(|t| t.state.idle())
    }

    /// Queue `change` as it is for every target.
    pub(super) fn queue(&mut self, change: Change, now: Instant) {
        for t in &mut self.targets {
            t.state.queue(change.clone(), now);
        }
    }

    /// Queue a change the watcher saw for every target.
    pub(super) fn queue_seen(&mut self, change: Change, now: Instant) {
        for t in &mut self.targets {
            t.state.queue_seen(&self.job, change.clone(), now);
        }
    }

    /// Replace the watcher thread by a new one (`id`, watching `job`'s source once it is
    /// what `expect` says); the new thread joins the old one before it adds watches.
    pub(super) fn rewatch(&mut self, id: Id, job: Arc<SyncJob>, tx: Sender<Msg>, expect: Expect) {
        let prev = self.watch.stop();
        self.watch = spawn_watcher(id, job, tx, prev, self.catchup.watermark(), expect);
        self.ready = false;
        self.watcher = None;
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
    let wake = watch_thread::Wake::new().map(Arc::new);
    let woken = wake.clone();
    let thread = std::thread::spawn(move || {
        if let Some(prev) = prev {
            let _ = prev.join();
        }
        if flag.load(Ordering::Relaxed) {
            return;
        }
        watch_thread::run(&job, expect, &flag, woken.as_deref(), &watermark, |r| {
            tx.send(match r {
                Report::Ready {
                    stats,
                    source,
                    resumed,
                    watcher,
                } => Msg::Ready(id, stats, source, resumed, watcher),
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
        wake,
        thread: Some(thread),
    }
}
