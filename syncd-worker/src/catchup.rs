//! Cheap restart: changes made while no worker was watching reach the target without a
//! whole-tree rsync, when it is safe to say so; a whole-tree push when it is not.
//!
//! Owns `<state_dir>/catchup.json` (the clean-stop record), the decision made per sync at
//! start, the watcher's "caught up" watermark, and the local catch-up walk. It never runs
//! rsync and never touches the queue: it hands [`Change`]s to the engine, whose normal
//! batching pushes them.
//!
//! # The clean-stop record
//!
//! At a clean stop (SIGTERM/SIGINT, no fatal error) the engine writes, per sync: the
//! source, the exclude patterns, the target names and `since` = T. T means: *every change
//! whose ctime is before T was seen by the watcher and is either pushed or saved in the
//! fail log.* T is the sync's watermark minus [`SLACK`]. The watermark is not "when the
//! stop began": the watcher can lag behind the kernel (it walks a big new directory while
//! events queue up), and the engine stops reading its channel before the watcher thread
//! stops. So the watcher thread itself records, after each poll whose output it has sent,
//! the wall time at which the kernel queue was empty and no half of a move was held back
//! ([`Watermark::advance_if`]). The engine reads the watermarks, *then* drains its channel
//! once more, *then* saves the queues: everything before the watermark is queued or saved.
//! The slack covers a syscall that set its ctime just before the watermark but queued its
//! event just after, the coarse clock the kernel uses for timestamps, and file systems
//! whose timestamps have 1-second granularity (ext3 with small inodes).
//!
//! No record is written after a fatal error or a second stop signal (exit without
//! waiting): the last running checkpoint stays (below).
//!
//! # Running checkpoints
//!
//! While it runs, the engine rewrites the record as a "running" checkpoint (durably, at
//! most every 5 s, only when it says something new), so a worker killed with SIGKILL, by
//! the OOM killer or a power cut is caught up by a walk too. Its T must vouch for the same
//! thing as the clean stop's, but the queues are not saved, so the live watermark will not
//! do: a change queued (or in flight) may have a ctime long before it (the watcher lags a
//! big new directory) and ctimes are not known at queue time. Instead the engine samples
//! each watcher's watermark ([`Tracker::sample`]) *before* emptying its channel; if after
//! that drain every target of the sync has nothing queued or in flight, the sync is
//! *quiet* at that mark ([`Tracker::note_quiet`]): every change before it was sent
//! before the mark was taken, so it was handled and pushed (a failed push goes back into
//! the queue, so a failing target is never quiet). The checkpoint's T is the last quiet
//! mark minus [`SLACK`], through the same [`vouch`] rules (carried T while a catch-up walk
//! runs — no sample is taken until it finished —, none with unwatched directories or
//! before the sync is ready). The mark moves only until it is SLACK past the last
//! changes received: an idle worker does not rewrite the record. A reload that changes a
//! sync (new target, moved target, new source or excludes) forgets its mark until the next
//! quiet moment, after the whole-tree push it queued.
//!
//! The record written at start lists no syncs, and the first checkpoint (at once) lists
//! every sync with its carried T or none. So after a crash: a sync with a T in the last
//! checkpoint → the walk; a sync without one, or not named → whole-tree push.
//!
//! A sync gets no T (`since: null`, so the next start pushes it whole) when its watches
//! were incomplete (unwatched directories), its fail log could not be saved, or it never
//! became ready and had no earlier T to carry. A catch-up walk that did not finish keeps
//! the T it started from: what it had not queued yet is found again next time.
//!
//! # At start
//!
//! [`Restart::begin`] reads the record and at once replaces it with a "running" record,
//! so a worker that dies later never leaves a valid clean-stop record behind, and the next
//! start knows a previous worker existed. A record that cannot be parsed (torn or empty
//! after a power cut) is moved aside to `catchup.json.corrupt-<unix time>` with a warning
//! and counts as an unclean stop. Per sync ([`decide`]):
//! * `initial_sync` → whole-tree push (the operator asked; the engine does it);
//! * a clean record naming this sync, with the same source, the same excludes, no new
//!   target, and a clock that did not go back → [`Decision::CtimeSince`];
//! * a clean record without this sync → nothing (the sync is new in the config: the same
//!   as a first start); an entry with `since: null` → whole-tree push;
//! * a running checkpoint: the same checks with its T; a sync it does not name or gives
//!   no T → whole-tree push (the worker was killed, crashed, or lost power before it
//!   could vouch for it);
//! * no record, but a previous worker ran here (an unreadable record, or — for state
//!   directories from before this record existed — a status file or a fail-log
//!   directory) → whole-tree push;
//! * no record and no trace of a previous worker (first start ever) → nothing.
//!
//! Clock checks: T in the future means the clock went back → whole-tree push. Within the
//! same boot (same `/proc/sys/kernel/random/boot_id`), the wall time elapsed since the
//! record was written is compared with `CLOCK_BOOTTIME`: a wall clock that advanced less
//! than the boot clock (by more than the slack) was set back while stopped → whole-tree push.
//!
//! # The catch-up walk
//!
//! Runs after the sync's watches are in place (so nothing falls between the walk and the
//! watches), on its own thread, with `lstat` only, not following symlinks, skipping
//! excluded paths as the watcher does. With T:
//! * a non-directory with ctime ≥ T → [`Change::Path`] (written, chmod'ed, created, or
//!   renamed: Linux file systems update the ctime of a renamed inode);
//! * a directory with ctime ≥ T → [`Change::Tree`], not descended: an entry created,
//!   removed or renamed in it changed its ctime, and a tree push (`-r --delete` scoped to
//!   it) propagates removals and covers a directory moved in with old contents;
//! * the top directory itself with ctime ≥ T → [`Change::Full`]: the root can only be
//!   reconciled by a whole-tree push (a removal there is otherwise invisible);
//! * a directory that cannot be read → pushed whole (rsync then reports what it can).
//!
//! Users cannot set ctime (`touch -d` sets mtime and bumps ctime to now), which is why it,
//! not mtime, is the clock here. Event toggles (`create_file = false`, …) are not applied
//! to what the walk finds: it pushes the tree's current state, like a full sync does.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use nix::time::{clock_gettime, ClockId};

use crate::batch::RelPath;
use crate::config::{Config, SyncJob};
use crate::durable::{self, Flush};
use crate::exclude::ExcludeSet;
use crate::queue::Change;
use crate::state_dir::StateDir;
use crate::status::{CatchUp, CatchUpDecision, WalkOutcome, WalkState};
use crate::walk::{abs, child, vanished};

/// Taken off the watermark: covers a ctime set just before it whose event was queued just
/// after, the kernel's coarse timestamp clock, and small clock adjustments.
pub const SLACK: Duration = Duration::from_secs(2);
/// Changes per message to the engine during the walk.
const CHUNK: usize = 1000;
const VERSION: u32 = 1;
/// The record's `state`: written at a clean stop.
const STOPPED: &str = "stopped";
/// The record's `state`: written at start (no syncs) and by the running checkpoints.
const RUNNING: &str = "running";
/// Why a sync is pushed whole after a worker that did not stop cleanly.
const UNCLEAN: &str =
    "no clean-stop record from the previous worker (it was killed, crashed, or the machine lost power)";
const NS: i64 = 1_000_000_000;

/// The clean-stop record, or the "running" record that replaces it while a worker runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub version: u32,
    /// "stopped" (written at a clean stop) or "running" (written at start).
    pub state: String,
    pub pid: u32,
    /// Wall time the record was written, Unix nanoseconds.
    pub written_ns: i64,
    /// `CLOCK_BOOTTIME` when it was written, nanoseconds.
    pub boottime_ns: Option<i64>,
    /// The kernel's boot id when it was written.
    pub boot_id: Option<String>,
    pub syncs: Vec<MarkerSync>,
}

/// One sync in the clean-stop record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkerSync {
    pub name: String,
    pub source: String,
    pub exclude: Vec<String>,
    pub targets: Vec<String>,
    /// T, Unix nanoseconds; None = this sync cannot vouch for anything (push it whole).
    pub since_ns: Option<i64>,
}

impl MarkerSync {
    pub fn new(job: &SyncJob, since_ns: Option<i64>) -> MarkerSync {
        MarkerSync {
            name: job.name.clone(),
            source: job.source.to_string_lossy().into_owned(),
            exclude: job.exclude.patterns().map(str::to_string).collect(),
            targets: job.targets.iter().map(|t| t.name.clone()).collect(),
            since_ns,
        }
    }
}

/// "Now" as the decision needs it: wall time plus, where known, the boot clock and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    pub wall_ns: i64,
    pub boottime_ns: Option<i64>,
    pub boot_id: Option<String>,
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            wall_ns: wall_ns(SystemTime::now()),
            boottime_ns: boottime_ns(),
            boot_id: fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_string()),
        }
    }
}

/// What a sync does about the time no worker watched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Walk the tree and push what has a ctime at or after this (Unix nanoseconds).
    CtimeSince(i64),
    /// Push the whole tree, for this reason.
    Full(String),
    /// Nothing to catch up (first start).
    Nothing,
}

/// What the start found in the state directory.
#[derive(Debug, Clone, Default)]
pub struct Restart {
    /// The clean-stop record, if the previous worker wrote one.
    pub marker: Option<Marker>,
    /// A previous worker ran with this state directory.
    pub previous_run: bool,
    pub now: Option<Clock>,
}

impl Restart {
    /// Read the record, then replace it at once with a "running" record (so a later crash
    /// leaves no valid clean-stop record). Must run before the fail logs are opened and the
    /// status file is first written (their presence is a sign of a previous run).
    pub fn begin(config: &Config) -> anyhow::Result<Restart> {
        let path = config.state().catchup_file();
        let mut previous_run = false;
        let marker = match fs::read(&path) {
            Ok(data) => {
                previous_run = true;
                match serde_json::from_slice::<Marker>(&data) {
                    Ok(m) if m.version == VERSION && (m.state == STOPPED || m.state == RUNNING) => {
                        Some(m)
                    }
                    Ok(_) => None,
                    Err(e) => {
                        set_aside_damaged(&path, &e.to_string());
                        None
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                log::warn!(
                    "cannot read {} ({e}); treating the previous stop as unclean",
                    path.display()
                );
                previous_run = true;
                None
            }
        };
        previous_run |= config.status_file.exists() || config.state().faillog_dir().exists();
        let now = Clock::now();
        let running = Marker {
            version: VERSION,
            state: RUNNING.into(),
            pid: std::process::id(),
            written_ns: now.wall_ns,
            boottime_ns: now.boottime_ns,
            boot_id: now.boot_id.clone(),
            syncs: Vec::new(),
        };
        durable::replace_json(&path, &running, 0o644, Flush::Durable).with_context(|| {
            format!(
                "cannot replace the clean-stop record {}: make the state directory writable",
                path.display()
            )
        })?;
        Ok(Restart {
            marker,
            previous_run,
            now: Some(now),
        })
    }

    /// The tracker of one sync, with its decision.
    pub fn tracker(&self, job: &SyncJob) -> Tracker {
        let now = self.now.clone().unwrap_or_else(Clock::now);
        Tracker {
            decision: decide(job, self.marker.as_ref(), self.previous_run, &now),
            walk_done: Arc::new(AtomicBool::new(false)),
            walked: Arc::default(),
            replayed: 0,
            watermark: Watermark::default(),
            quiet: None,
            activity: None,
        }
    }
}

/// A record that is not JSON of the expected shape (torn or emptied by a power cut):
/// move it aside for the operator and say what syncd does about it.
fn set_aside_damaged(path: &Path, why: &str) {
    let moved = match durable::set_aside(path) {
        Ok(aside) => format!("moved it to {}", aside.display()),
        Err(e) => format!("could not move it aside ({e})"),
    };
    log::warn!(
        "the clean-stop record {} is damaged ({why}); {moved}. syncd treats the previous \
         stop as unclean: every sync gets a whole-tree push",
        path.display()
    );
}

/// The decision for one sync. Pure.
pub fn decide(job: &SyncJob, marker: Option<&Marker>, previous_run: bool, now: &Clock) -> Decision {
    if job.initial_sync {
        return Decision::Full("initial_sync is set".into());
    }
    let Some(m) = marker else {
        return if previous_run {
            Decision::Full(UNCLEAN.into())
        } else {
            Decision::Nothing
        };
    };
    let running = m.state != STOPPED;
    let Some(entry) = m.syncs.iter().find(|s| s.name == job.name) else {
        // After a clean stop: the sync is new in the config. After a crash: unknown.
        return if running {
            Decision::Full(format!("{UNCLEAN}, and no checkpoint names this sync"))
        } else {
            Decision::Nothing
        };
    };
    let Some(since) = entry.since_ns else {
        return Decision::Full(if running {
            format!("{UNCLEAN}, and its last checkpoint could not vouch for this sync yet")
        } else {
            "the previous worker could not vouch for this sync when it stopped (directories unwatched, fail log not saved, or watches never complete)"
                .into()
        });
    };
    let mine = MarkerSync::new(job, None);
    if entry.source != mine.source {
        return Decision::Full(format!(
            "the source changed from {} to {}",
            entry.source, mine.source
        ));
    }
    if entry.exclude != mine.exclude {
        return Decision::Full("the exclude patterns changed".into());
    }
    if let Some(t) = mine.targets.iter().find(|t| !entry.targets.contains(t)) {
        return Decision::Full(format!("target {t} is new"));
    }
    if since > now.wall_ns || m.written_ns > now.wall_ns {
        return Decision::Full(
            "the system clock is behind the catch-up record (it was set back)".into(),
        );
    }
    if let (Some(b0), Some(b1), Some(id0), Some(id1)) =
        (m.boottime_ns, now.boottime_ns, &m.boot_id, &now.boot_id)
    {
        let slack = SLACK.as_nanos() as i64;
        if id0 == id1 && (now.wall_ns - m.written_ns) < (b1 - b0) - slack {
            return Decision::Full("the system clock was set back while syncd was stopped".into());
        }
    }
    Decision::CtimeSince(since)
}

/// What the walk does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Unchanged file: nothing. Unchanged directory: look inside.
    Unchanged,
    /// Push this path as it is.
    Path,
    /// Push this directory whole; do not look inside.
    Tree,
}

/// Classify an entry by its ctime (Unix nanoseconds) against T. Pure.
pub fn classify(since_ns: i64, ctime_ns: i64, is_dir: bool) -> Found {
    match (ctime_ns >= since_ns, is_dir) {
        (false, _) => Found::Unchanged,
        (true, false) => Found::Path,
        (true, true) => Found::Tree,
    }
}

/// The last time the watcher had delivered everything the kernel queued (Unix
/// nanoseconds), shared between the watcher thread and the engine.
#[derive(Debug, Clone)]
pub struct Watermark(Arc<AtomicI64>);

impl Default for Watermark {
    fn default() -> Self {
        Watermark(Arc::new(AtomicI64::new(i64::MIN)))
    }
}

impl Watermark {
    /// Record "now" if `caught_up` (asked after the time is taken) says the watcher has
    /// delivered everything the kernel queued. Call after sending the watcher's changes.
    pub fn advance_if(&self, caught_up: impl FnOnce() -> bool) {
        let now = wall_ns(SystemTime::now());
        if caught_up() {
            self.set(now);
        }
    }

    pub fn set(&self, ns: i64) {
        self.0.store(ns, Ordering::Release);
    }

    pub fn get(&self) -> Option<i64> {
        match self.0.load(Ordering::Acquire) {
            i64::MIN => None,
            v => Some(v),
        }
    }
}

/// One sync's catch-up: its decision, whether its walk finished, its watermark, and the
/// last watermark at which everything before it was pushed (the running checkpoint's).
#[derive(Debug)]
pub struct Tracker {
    decision: Decision,
    walk_done: Arc<AtomicBool>,
    /// What the walk found so far (set when it starts, for the status).
    walked: Arc<Mutex<Option<WalkOutcome>>>,
    /// Entries the sync's fail logs gave back at start.
    replayed: u64,
    watermark: Watermark,
    /// A watermark sampled (by [`Tracker::sample`]) before the engine drained its
    /// channel, after which every target of the sync had nothing queued or in flight.
    quiet: Option<i64>,
    /// Wall time the engine last received changes for the sync.
    activity: Option<i64>,
}

impl Tracker {
    /// A sync that joined at run time (added by a reload): nothing to catch up, its
    /// targets get a whole-tree push anyway.
    pub fn none() -> Tracker {
        Tracker {
            decision: Decision::Nothing,
            walk_done: Arc::new(AtomicBool::new(false)),
            walked: Arc::default(),
            replayed: 0,
            watermark: Watermark::default(),
            quiet: None,
            activity: None,
        }
    }

    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Note how many entries the sync's fail logs gave back at start (for the status).
    pub fn note_replayed(&mut self, entries: u64) {
        self.replayed = entries;
    }

    /// What this catch-up decided and did, for the status file.
    pub fn outcome(&self) -> CatchUp {
        let walked = *self.walked.lock().unwrap_or_else(PoisonError::into_inner);
        outcome(&self.decision, walked, self.replayed)
    }

    /// The handle the watcher thread updates.
    pub fn watermark(&self) -> Watermark {
        self.watermark.clone()
    }

    /// The sync's watches are in place: log the decision and act on it. Returns a change
    /// to queue at once (a whole-tree push); a ctime catch-up runs on a new thread that
    /// hands its changes to `send` in chunks and stops early when `stop` is set or `send`
    /// returns false.
    pub fn on_ready(
        &self,
        job: &Arc<SyncJob>,
        stop: &Arc<AtomicBool>,
        send: impl FnMut(Vec<Change>) -> bool + Send + 'static,
    ) -> Option<Change> {
        match &self.decision {
            Decision::Nothing => None,
            // The engine's own initial sync covers it.
            Decision::Full(_) if job.initial_sync => None,
            Decision::Full(reason) => {
                log::info!("{}: full sync at start: {reason}", job.name);
                Some(Change::Full)
            }
            Decision::CtimeSince(since) => {
                *self.walked.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(WalkOutcome::default());
                let (job, stop, since) = (job.clone(), stop.clone(), *since);
                let (done, walked) = (self.walk_done.clone(), self.walked.clone());
                std::thread::spawn(move || run_walk(&job, since, &stop, (&done, &walked), send));
                None
            }
        }
    }

    /// The source was lost (unmounted, moved away, replaced) while watched: when it
    /// comes back, catch up from what the sync could vouch for until now — a ctime walk,
    /// or a whole-tree push when it cannot vouch for anything. `idle`: every change the
    /// watcher sent is pushed (nothing queued or in flight, and the watcher, stopped, sent
    /// all before saying so), so its final watermark vouches; otherwise the last quiet
    /// mark does (as for the running checkpoint: held changes are not pushed yet, and a
    /// kill while the source is away must not lose them).
    pub fn lost(&mut self, unwatched: u64, idle: bool) {
        let t = if idle {
            self.vouch(true, unwatched)
        } else {
            self.checkpoint(true, unwatched)
        };
        self.decision = match t {
            Some(t) => Decision::CtimeSince(t),
            None => Decision::Full(
                "the source was lost before syncd could vouch for what it had pushed".into(),
            ),
        };
        self.walk_done = Arc::new(AtomicBool::new(false));
        self.walked = Arc::default();
    }

    /// The watermark to offer [`Tracker::note_quiet`], read before the engine drains its
    /// channel: None while a catch-up walk still sends (its changes may have ctimes
    /// before the watermark; once `walk_done` is seen, all of them are in the channel).
    pub fn sample(&self) -> Option<i64> {
        if self.walking() {
            None
        } else {
            self.watermark.get()
        }
    }

    /// The engine drained its channel after [`Tracker::sample`] gave `mark`, and every
    /// target of the sync has nothing queued or in flight: every change before `mark` is
    /// pushed.
    ///
    /// The mark only moves while it is needed: until it is more than [`SLACK`] past the
    /// last changes received, so that T (mark − slack) passes them. An idle sync keeps its
    /// T, and the checkpoint is not rewritten for nothing.
    pub fn note_quiet(&mut self, mark: i64) {
        if self.settling() {
            self.quiet = Some(self.quiet.map_or(mark, |q| q.max(mark)));
        }
    }

    /// The quiet mark still has to move: none yet, or not yet [`SLACK`] past the last
    /// changes received (see [`Tracker::note_quiet`]). While it is, the engine samples
    /// the watermark again shortly; afterwards nothing is left to vouch for anew and an
    /// idle engine has no reason to wake.
    pub fn settling(&self) -> bool {
        let slack = SLACK.as_nanos() as i64;
        match (self.quiet, self.activity) {
            (None, _) => true,
            (Some(q), Some(a)) => q <= a.saturating_add(slack),
            (Some(_), None) => false,
        }
    }

    /// The catch-up walk is running: its outcome in the status changes without a message.
    pub fn walking(&self) -> bool {
        matches!(self.decision, Decision::CtimeSince(_)) && !self.walk_done.load(Ordering::Acquire)
    }

    /// The engine received changes for the sync (now).
    pub fn note_activity(&mut self) {
        self.activity = Some(wall_ns(SystemTime::now()));
    }

    /// Forget the quiet mark (the watches were replaced: the new source is not pushed yet).
    pub fn reset_quiet(&mut self) {
        self.quiet = None;
    }

    /// T for a running checkpoint: like [`Tracker::vouch`], from the last quiet mark
    /// instead of the live watermark (changes before the live one may still be queued).
    pub fn checkpoint(&self, ready: bool, unwatched: u64) -> Option<i64> {
        vouch(
            &self.decision,
            ready,
            unwatched,
            self.quiet,
            self.walk_done.load(Ordering::Acquire),
        )
    }

    /// T for the clean-stop record, given what the engine knows at the stop (read before
    /// the final drain of the channel). None = push this sync whole next time.
    pub fn vouch(&self, ready: bool, unwatched: u64) -> Option<i64> {
        vouch(
            &self.decision,
            ready,
            unwatched,
            self.watermark.get(),
            self.walk_done.load(Ordering::Acquire),
        )
    }
}

/// T for the clean-stop record. Pure.
pub fn vouch(
    decision: &Decision,
    ready: bool,
    unwatched: u64,
    watermark: Option<i64>,
    walk_done: bool,
) -> Option<i64> {
    if unwatched > 0 {
        return None;
    }
    let carried = match decision {
        Decision::CtimeSince(t) => Some(*t),
        _ => None,
    };
    if !ready || (carried.is_some() && !walk_done) {
        return carried;
    }
    let slack = SLACK.as_nanos() as i64;
    match watermark {
        Some(w) => Some(w.saturating_sub(slack)),
        None => carried,
    }
}

/// Write the clean-stop record (`entries` one per sync).
pub fn write_marker(state_dir: &Path, entries: Vec<MarkerSync>) -> anyhow::Result<()> {
    write_record(state_dir, STOPPED, entries)
        .with_context(|| "failed to write the clean-stop record".to_string())
}

/// Write a running checkpoint (`entries` one per sync): what a worker killed from now on
/// can vouch for.
pub fn write_checkpoint(state_dir: &Path, entries: Vec<MarkerSync>) -> anyhow::Result<()> {
    write_record(state_dir, RUNNING, entries)
        .with_context(|| "failed to write the catch-up checkpoint".to_string())
}

fn write_record(state_dir: &Path, state: &str, entries: Vec<MarkerSync>) -> anyhow::Result<()> {
    let now = Clock::now();
    let m = Marker {
        version: VERSION,
        state: state.into(),
        pid: std::process::id(),
        written_ns: now.wall_ns,
        boottime_ns: now.boottime_ns,
        boot_id: now.boot_id,
        syncs: entries,
    };
    let path = StateDir::at(state_dir).catchup_file();
    durable::replace_json(&path, &m, 0o644, Flush::Durable)
        .with_context(|| format!("failed to write {}", path.display()))
}

/// What a walk found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkSummary {
    /// Entries looked at (the top directory not counted).
    pub entries: u64,
    pub paths: u64,
    pub dirs: u64,
    /// The top directory changed: a whole-tree push was sent instead.
    pub full: bool,
    /// Stopped before the end (stop flag, or the engine went away).
    pub stopped: bool,
}

/// Walk `source` and send, in chunks, what changed at or after `since_ns`.
pub fn walk_changed(
    source: &Path,
    exclude: &ExcludeSet,
    since_ns: i64,
    stop: &AtomicBool,
    mut send: impl FnMut(Vec<Change>) -> bool,
) -> WalkSummary {
    let mut sum = WalkSummary::default();
    let root_changed = match fs::symlink_metadata(source) {
        Ok(m) => classify(since_ns, ctime_ns(&m), true) != Found::Unchanged,
        Err(e) => {
            log::warn!(
                "catch-up: cannot inspect {} ({e}); pushing the whole tree",
                source.display()
            );
            true
        }
    };
    if root_changed {
        sum.full = true;
        sum.stopped = !send(vec![Change::Full]);
        return sum;
    }
    let mut out: Vec<Change> = Vec::new();
    let mut stack: Vec<RelPath> = vec![Vec::new()];
    while let Some(dir) = stack.pop() {
        if stop.load(Ordering::Relaxed) {
            sum.stopped = true;
            return sum;
        }
        let entries = match read_entries(&abs(source, &dir)) {
            Ok(entries) => entries,
            Err(e) => {
                log::warn!(
                    "catch-up: cannot read {} ({e}); pushing it whole",
                    abs(source, &dir).display()
                );
                if dir.is_empty() {
                    sum.full = true;
                    sum.stopped = !send(vec![Change::Full]);
                    return sum;
                }
                sum.dirs += 1;
                out.push(Change::Tree(dir));
                continue;
            }
        };
        for entry in entries {
            let rel = child(&dir, entry.file_name().as_bytes());
            if exclude.matches_self(&rel) {
                continue;
            }
            sum.entries += 1;
            // DirEntry::metadata is an lstat: symlinks are not followed.
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if vanished(&e) => continue,
                Err(_) => {
                    // Cannot tell: push it (rsync sees it as it is).
                    sum.paths += 1;
                    out.push(Change::Path(rel));
                    continue;
                }
            };
            match classify(since_ns, ctime_ns(&meta), meta.is_dir()) {
                Found::Unchanged if meta.is_dir() => stack.push(rel),
                Found::Unchanged => {}
                Found::Path => {
                    sum.paths += 1;
                    out.push(Change::Path(rel));
                }
                Found::Tree => {
                    sum.dirs += 1;
                    out.push(Change::Tree(rel));
                }
            }
        }
        if out.len() >= CHUNK && !send(std::mem::take(&mut out)) {
            sum.stopped = true;
            return sum;
        }
    }
    if !out.is_empty() && !send(out) {
        sum.stopped = true;
    }
    sum
}

/// The entries of `dir`, read to the end; one that vanished while being read (or the
/// directory itself) is simply not there. Any other error: the directory cannot be
/// looked into, and is pushed whole by the caller.
fn read_entries(dir: &Path) -> std::io::Result<Vec<fs::DirEntry>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if vanished(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    for entry in rd {
        match entry {
            Ok(e) => entries.push(e),
            Err(e) if vanished(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(entries)
}

/// The status's account of a catch-up. Pure.
pub fn outcome(decision: &Decision, walked: Option<WalkOutcome>, replayed: u64) -> CatchUp {
    let (decision, reason, walk) = match decision {
        Decision::Nothing => (CatchUpDecision::None, String::new(), None),
        Decision::Full(reason) => (CatchUpDecision::Full, reason.clone(), None),
        Decision::CtimeSince(since) => (
            CatchUpDecision::Walk,
            format!(
                "changed since {}",
                humantime::format_rfc3339_seconds(from_ns(*since))
            ),
            walked,
        ),
    };
    CatchUp {
        decision,
        reason,
        walk,
        replayed,
    }
}

impl From<WalkSummary> for WalkOutcome {
    fn from(sum: WalkSummary) -> WalkOutcome {
        WalkOutcome {
            state: if sum.stopped {
                WalkState::Interrupted
            } else {
                WalkState::Done
            },
            entries: sum.entries,
            paths: sum.paths,
            dirs: sum.dirs,
            whole_tree: sum.full,
        }
    }
}

/// The walk's thread: walk, publish what it found (`walked`, for the status), log it,
/// and say it is done (`done`).
fn run_walk(
    job: &SyncJob,
    since: i64,
    stop: &AtomicBool,
    (done, walked): (&AtomicBool, &Mutex<Option<WalkOutcome>>),
    send: impl FnMut(Vec<Change>) -> bool,
) {
    let started = Instant::now();
    let sum = walk_changed(&job.source, &job.exclude, since, stop, send);
    *walked.lock().unwrap_or_else(PoisonError::into_inner) = Some(sum.into());
    let when = humantime::format_rfc3339_seconds(from_ns(since));
    if sum.stopped {
        log::info!(
            "{}: catch-up walk interrupted after {} entries; the next start walks again",
            job.name,
            sum.entries
        );
        return;
    }
    if sum.full {
        log::info!(
            "{}: catch-up: the top directory changed since {when}; full sync (only a whole-tree push can reconcile it)",
            job.name
        );
    } else {
        log::info!(
            "{}: catch-up: {} changed path{} and {} director{} since {when} (walked {} entries in {:.2}s)",
            job.name,
            sum.paths,
            if sum.paths == 1 { "" } else { "s" },
            sum.dirs,
            if sum.dirs == 1 { "y" } else { "ies" },
            sum.entries,
            started.elapsed().as_secs_f64()
        );
    }
    done.store(true, Ordering::Release);
}

fn ctime_ns(m: &fs::Metadata) -> i64 {
    m.ctime().saturating_mul(NS).saturating_add(m.ctime_nsec())
}

/// Unix nanoseconds of `t` (negative before 1970).
pub fn wall_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn from_ns(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn boottime_ns() -> Option<i64> {
    let ts = clock_gettime(ClockId::CLOCK_BOOTTIME).ok()?;
    Some(ts.tv_sec().saturating_mul(NS).saturating_add(ts.tv_nsec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;
    use crate::rsync::tests::{job, local};
    use crate::wait;

    /// How long the watcher gets to deliver what the kernel queued.
    const WATCHER: Duration = Duration::from_secs(5);

    const S: i64 = NS;

    #[test]
    fn the_status_outcome_of_each_decision() {
        let done = WalkOutcome {
            state: WalkState::Done,
            entries: 132,
            paths: 3,
            dirs: 0,
            whole_tree: false,
        };
        let stopped = WalkSummary {
            entries: 7,
            paths: 1,
            dirs: 2,
            full: false,
            stopped: true,
        };
        type Case = (&'static str, Decision, Option<WalkOutcome>, u64, CatchUp);
        let cases: Vec<Case> = vec![
            (
                "first start",
                Decision::Nothing,
                None,
                0,
                CatchUp {
                    decision: CatchUpDecision::None,
                    reason: String::new(),
                    walk: None,
                    replayed: 0,
                },
            ),
            (
                "whole tree, with the fail log's entries",
                Decision::Full(UNCLEAN.into()),
                None,
                4,
                CatchUp {
                    decision: CatchUpDecision::Full,
                    reason: UNCLEAN.into(),
                    walk: None,
                    replayed: 4,
                },
            ),
            (
                "a walk not started yet",
                Decision::CtimeSince(0),
                None,
                0,
                CatchUp {
                    decision: CatchUpDecision::Walk,
                    reason: "changed since 1970-01-01T00:00:00Z".into(),
                    walk: None,
                    replayed: 0,
                },
            ),
            (
                "a walk done",
                Decision::CtimeSince(1000 * S),
                Some(done),
                2,
                CatchUp {
                    decision: CatchUpDecision::Walk,
                    reason: "changed since 1970-01-01T00:16:40Z".into(),
                    walk: Some(done),
                    replayed: 2,
                },
            ),
            (
                "a walk interrupted",
                Decision::CtimeSince(0),
                Some(stopped.into()),
                0,
                CatchUp {
                    decision: CatchUpDecision::Walk,
                    reason: "changed since 1970-01-01T00:00:00Z".into(),
                    walk: Some(WalkOutcome {
                        state: WalkState::Interrupted,
                        entries: 7,
                        paths: 1,
                        dirs: 2,
                        whole_tree: false,
                    }),
                    replayed: 0,
                },
            ),
        ];
        for (what, decision, walked, replayed, want) in cases {
            assert_eq!(outcome(&decision, walked, replayed), want, "{what}");
        }
    }

    #[test]
    fn the_status_outcome_reads_as_json() {
        let c = outcome(
            &Decision::Full("the exclude patterns changed".into()),
            None,
            1,
        );
        assert_eq!(
            serde_json::to_value(&c).expect("encode"),
            serde_json::json!({
                "decision": "full",
                "reason": "the exclude patterns changed",
                "replayed": 1
            })
        );
    }

    fn target(name: &str) -> Target {
        Target {
            name: name.into(),
            ..local("/backup")
        }
    }

    fn the_job() -> SyncJob {
        let mut j = job("/data", vec![target("b1")]);
        j.name = "web".into();
        j.exclude = ExcludeSet::new(&[r"\.tmp$"]).unwrap();
        j
    }

    /// A clean record for `the_job()` with T = 1000 s, written at 1001 s, boot clock 50 s.
    fn marker() -> Marker {
        Marker {
            version: VERSION,
            state: "stopped".into(),
            pid: 1,
            written_ns: 1001 * S,
            boottime_ns: Some(50 * S),
            boot_id: Some("boot-a".into()),
            syncs: vec![MarkerSync::new(&the_job(), Some(1000 * S))],
        }
    }

    fn clock(wall: i64, boot: i64, id: &str) -> Clock {
        Clock {
            wall_ns: wall * S,
            boottime_ns: Some(boot * S),
            boot_id: Some(id.into()),
        }
    }

    #[test]
    fn decisions() {
        let later = clock(2001, 1050, "boot-a"); // 1000 s of wall and boot time: consistent
        let full = |s: &str| Decision::Full(s.into());
        type Case = (&'static str, SyncJob, Option<Marker>, bool, Clock, Decision);
        let mut cases: Vec<Case> = vec![
            (
                "clean record, same config",
                the_job(),
                Some(marker()),
                true,
                later.clone(),
                Decision::CtimeSince(1000 * S),
            ),
            (
                "first start ever",
                the_job(),
                None,
                false,
                later.clone(),
                Decision::Nothing,
            ),
            (
                "previous worker did not stop cleanly",
                the_job(),
                None,
                true,
                later.clone(),
                full("no clean-stop record from the previous worker (it was killed, crashed, or the machine lost power)"),
            ),
            (
                "other boot: only the future check applies",
                the_job(),
                Some(marker()),
                true,
                clock(1500, 3, "boot-b"),
                Decision::CtimeSince(1000 * S),
            ),
            (
                "clock behind T",
                the_job(),
                Some(marker()),
                true,
                clock(999, 3, "boot-b"),
                full("the system clock is behind the catch-up record (it was set back)"),
            ),
            (
                "same boot, wall clock set back while stopped",
                the_job(),
                Some(marker()),
                true,
                clock(1101, 1050, "boot-a"), // 100 s of wall time, 1000 s of boot time
                full("the system clock was set back while syncd was stopped"),
            ),
            (
                "same boot, within the slack",
                the_job(),
                Some(marker()),
                true,
                clock(2000, 1050, "boot-a"),
                Decision::CtimeSince(1000 * S),
            ),
        ];
        let mut j = the_job();
        j.initial_sync = true;
        cases.push((
            "initial_sync wins",
            j,
            Some(marker()),
            true,
            later.clone(),
            full("initial_sync is set"),
        ));
        let mut j = the_job();
        j.name = "new".into();
        cases.push((
            "sync not in the record: new in the config",
            j,
            Some(marker()),
            true,
            later.clone(),
            Decision::Nothing,
        ));
        let mut m = marker();
        m.syncs[0].since_ns = None;
        cases.push((
            "record without T for this sync",
            the_job(),
            Some(m),
            true,
            later.clone(),
            full("the previous worker could not vouch for this sync when it stopped (directories unwatched, fail log not saved, or watches never complete)"),
        ));
        let mut j = the_job();
        j.source = "/data2".into();
        cases.push((
            "source changed",
            j,
            Some(marker()),
            true,
            later.clone(),
            full("the source changed from /data to /data2"),
        ));
        let mut j = the_job();
        j.exclude = ExcludeSet::default();
        cases.push((
            "excludes changed",
            j,
            Some(marker()),
            true,
            later.clone(),
            full("the exclude patterns changed"),
        ));
        let mut j = the_job();
        j.targets.push(target("b2"));
        cases.push((
            "a target was added",
            j,
            Some(marker()),
            true,
            later.clone(),
            full("target b2 is new"),
        ));
        let mut m = marker();
        m.syncs[0].targets.push("gone".into());
        cases.push((
            "a target was removed: still cheap",
            the_job(),
            Some(m),
            true,
            later.clone(),
            Decision::CtimeSince(1000 * S),
        ));
        // Running checkpoints (the previous worker was killed after writing one).
        let mut m = marker();
        m.state = RUNNING.into();
        cases.push((
            "checkpoint with T: walk from it",
            the_job(),
            Some(m.clone()),
            true,
            later.clone(),
            Decision::CtimeSince(1000 * S),
        ));
        cases.push((
            "checkpoint, clock behind it",
            the_job(),
            Some(m.clone()),
            true,
            clock(999, 3, "boot-b"),
            full("the system clock is behind the catch-up record (it was set back)"),
        ));
        let mut j = the_job();
        j.name = "new".into();
        cases.push((
            "checkpoint without this sync: full, not nothing",
            j,
            Some(m.clone()),
            true,
            later.clone(),
            full(&format!("{UNCLEAN}, and no checkpoint names this sync")),
        ));
        m.syncs[0].since_ns = None;
        cases.push((
            "checkpoint that could not vouch yet",
            the_job(),
            Some(m.clone()),
            true,
            later.clone(),
            full(&format!(
                "{UNCLEAN}, and its last checkpoint could not vouch for this sync yet"
            )),
        ));
        m.syncs.clear();
        cases.push((
            "the start record (no syncs) of a killed worker",
            the_job(),
            Some(m),
            true,
            later.clone(),
            full(&format!("{UNCLEAN}, and no checkpoint names this sync")),
        ));
        for (name, job, marker, previous, now, want) in cases {
            assert_eq!(
                decide(&job, marker.as_ref(), previous, &now),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn classification() {
        let cases = [
            (10, 9, false, Found::Unchanged),
            (10, 9, true, Found::Unchanged),
            (10, 10, false, Found::Path),
            (10, 10, true, Found::Tree),
            (10, 11, false, Found::Path),
            (10, 11, true, Found::Tree),
        ];
        for (since, ctime, dir, want) in cases {
            assert_eq!(classify(since, ctime, dir), want, "{since} {ctime} {dir}");
        }
    }

    #[test]
    fn running_checkpoint_follows_quiet_marks_only() {
        let slack = SLACK.as_nanos() as i64;
        let mut t = Tracker::none();
        // Ready, never quiet: nothing to vouch for (Decision::Nothing carries no T).
        t.watermark.set(100 * S);
        assert_eq!(t.checkpoint(true, 0), None);
        // The first quiet mark is taken.
        t.note_quiet(100 * S);
        assert_eq!(t.checkpoint(true, 0), Some(100 * S - slack));
        assert_eq!(t.checkpoint(false, 0), None, "not ready: no T");
        assert_eq!(t.checkpoint(true, 1), None, "unwatched dirs: no T");
        // Idle (no changes received since): the mark stays, nothing to rewrite.
        t.note_quiet(200 * S);
        assert_eq!(t.checkpoint(true, 0), Some(100 * S - slack));
        // Changes received now: the mark moves until it is SLACK past them.
        t.note_activity();
        let a = t.activity.expect("noted");
        assert!(t.settling(), "the mark has to pass the changes");
        t.note_quiet(a);
        assert_eq!(t.quiet, Some(a));
        t.note_quiet(a + slack);
        assert_eq!(t.quiet, Some(a + slack));
        assert!(t.settling(), "not yet past the slack");
        t.note_quiet(a + slack + 1);
        assert_eq!(
            t.quiet,
            Some(a + slack + 1),
            "T = mark - slack now passes them"
        );
        assert!(!t.settling(), "settled: an idle engine need not look again");
        t.note_quiet(a + 10 * slack);
        assert_eq!(t.quiet, Some(a + slack + 1), "then it stays");
        // Never backwards.
        t.quiet = Some(a);
        t.note_quiet(a - S);
        assert_eq!(t.quiet, Some(a));
        // Watches replaced: vouch for nothing until the next quiet moment.
        t.reset_quiet();
        assert_eq!(t.checkpoint(true, 0), None);

        // A catch-up walk in progress: no sample, and T stays the one it started from.
        let mut w = Tracker {
            decision: Decision::CtimeSince(50 * S),
            walk_done: Arc::new(AtomicBool::new(false)),
            walked: Arc::default(),
            replayed: 0,
            watermark: Watermark::default(),
            quiet: None,
            activity: None,
        };
        w.watermark.set(300 * S);
        assert!(w.walking());
        assert!(w.settling(), "no quiet mark yet");
        assert_eq!(w.sample(), None);
        assert_eq!(w.checkpoint(true, 0), Some(50 * S));
        w.walk_done.store(true, Ordering::Release);
        assert!(!w.walking());
        assert_eq!(w.sample(), Some(300 * S));
        assert_eq!(w.checkpoint(true, 0), Some(50 * S), "no quiet mark yet");
        w.note_quiet(300 * S);
        assert_eq!(w.checkpoint(true, 0), Some(300 * S - slack));
    }

    #[test]
    fn what_a_stop_vouches_for() {
        let slack = SLACK.as_nanos() as i64;
        let t = Decision::CtimeSince(100 * S);
        let full = Decision::Full("x".into());
        let cases = [
            (
                "clean, watermark set",
                &full,
                true,
                0,
                Some(500 * S),
                false,
                Some(500 * S - slack),
            ),
            (
                "nothing decided, watermark set",
                &Decision::Nothing,
                true,
                0,
                Some(500 * S),
                false,
                Some(500 * S - slack),
            ),
            (
                "walk done",
                &t,
                true,
                0,
                Some(500 * S),
                true,
                Some(500 * S - slack),
            ),
            (
                "walk not done: keep T",
                &t,
                true,
                0,
                Some(500 * S),
                false,
                Some(100 * S),
            ),
            (
                "never ready: keep T",
                &t,
                false,
                0,
                None,
                false,
                Some(100 * S),
            ),
            (
                "never ready, full not queued",
                &full,
                false,
                0,
                None,
                false,
                None,
            ),
            (
                "never caught up, full queued",
                &full,
                true,
                0,
                None,
                false,
                None,
            ),
            ("unwatched dirs", &t, true, 3, Some(500 * S), true, None),
        ];
        for (name, d, ready, unwatched, mark, done, want) in cases {
            assert_eq!(vouch(d, ready, unwatched, mark, done), want, "{name}");
        }
    }

    #[test]
    fn marker_round_trip_and_begin_replaces_it() {
        let state = tempfile::tempdir().unwrap();
        let text = format!(
            "state_dir = {p:?}\n[[sync]]\nsource = {p:?}\n[[sync.target]]\ndest = \"/backup\"\n",
            p = state.path().display().to_string()
        );
        let mut config =
            crate::config::parse(text.as_bytes(), Path::new("test.toml")).expect("valid config");
        // First start: nothing there.
        let r = Restart::begin(&config).unwrap();
        assert!(r.marker.is_none() && !r.previous_run);
        // A running record is a previous run without a clean stop: read, not trusted
        // further than the checkpoints it holds (none here).
        let r = Restart::begin(&config).unwrap();
        let m = r.marker.clone().expect("the running record");
        assert!(m.state == RUNNING && m.syncs.is_empty() && r.previous_run);
        assert!(matches!(
            r.tracker(&the_job()).decision(),
            Decision::Full(_)
        ));
        config.syncs = vec![the_job()];
        write_marker(state.path(), vec![MarkerSync::new(&the_job(), Some(7 * S))]).unwrap();
        let r = Restart::begin(&config).unwrap();
        let m = r.marker.clone().expect("the clean record");
        assert_eq!(m.syncs, vec![MarkerSync::new(&the_job(), Some(7 * S))]);
        assert_eq!(
            r.tracker(&the_job()).decision(),
            &Decision::CtimeSince(7 * S)
        );
        // Read once: the file now says "running".
        let again: Marker =
            serde_json::from_slice(&fs::read(StateDir::at(state.path()).catchup_file()).unwrap())
                .unwrap();
        assert_eq!(again.state, "running");
        assert!(again.syncs.is_empty());
    }

    #[test]
    fn damaged_record_is_set_aside_and_means_a_full_push() {
        for damaged in [&b""[..], b"{\"version\": 1, \"sta", b"\0\0\0\0", b"[]"] {
            let state = tempfile::tempdir().unwrap();
            let text = format!(
                "state_dir = {p:?}\n[[sync]]\nsource = {p:?}\n[[sync.target]]\ndest = \"/b\"\n",
                p = state.path().display().to_string()
            );
            let config = crate::config::parse(text.as_bytes(), Path::new("t.toml")).unwrap();
            let path = StateDir::at(state.path()).catchup_file();
            fs::write(&path, damaged).unwrap();
            let r = Restart::begin(&config).expect("a damaged record never stops a start");
            assert!(r.marker.is_none() && r.previous_run, "{damaged:?}");
            assert!(
                matches!(r.tracker(&the_job()).decision(), Decision::Full(_)),
                "{damaged:?}"
            );
            let aside: Vec<_> = fs::read_dir(state.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("catchup.json.corrupt-"))
                .collect();
            assert_eq!(aside.len(), 1, "{damaged:?}: {aside:?}");
            assert_eq!(fs::read(state.path().join(&aside[0])).unwrap(), damaged);
            let now: Marker = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            assert_eq!(now.state, "running");
        }
    }

    fn ctime_of(p: &Path) -> i64 {
        ctime_ns(&fs::symlink_metadata(p).unwrap())
    }

    /// Rewrite `probe` until its ctime is past `t` (the kernel's timestamp clock ticks
    /// every few ms): from then on, every change gets a ctime after `t`.
    fn wait_ctime_past(probe: &Path, t: i64) {
        wait::until_every(
            format_args!("the ctime to advance past {t}"),
            Duration::from_secs(2),
            wait::FAST_POLL,
            || {
                fs::write(probe, "tick").unwrap();
                let ctime = ctime_of(probe);
                if ctime > t {
                    Ok(())
                } else {
                    Err(format!("ctime {ctime}"))
                }
            },
        )
        .unwrap_or_else(|timeout| panic!("{timeout}"));
    }

    fn walk_all(src: &Path, ex: &ExcludeSet, since: i64) -> (WalkSummary, Vec<Change>) {
        let mut got = Vec::new();
        let stop = AtomicBool::new(false);
        let sum = walk_changed(src, ex, since, &stop, |c| {
            got.extend(c);
            true
        });
        got.sort_by_key(|c| format!("{c:?}"));
        (sum, got)
    }

    #[test]
    fn walk_queues_what_changed_after_t_only() {
        let t = tempfile::tempdir().unwrap();
        let (src, aside) = (t.path().join("src"), t.path().join("probe"));
        for d in ["a", "b", "c/deep", "cache", "e/deep"] {
            fs::create_dir_all(src.join(d)).unwrap();
        }
        for f in [
            "a/old", "b/old", "c/deep/f", "cache/f", "e/deep/f", "e/deep/g",
        ] {
            fs::write(src.join(f), "old").unwrap();
        }
        std::os::unix::fs::symlink("/nowhere", src.join("c/link")).unwrap();
        let ex = ExcludeSet::new(&["^cache$"]).unwrap();
        // T: just after the newest ctime in the tree as it was.
        let mut newest = i64::MIN;
        let mut stack = vec![src.clone()];
        while let Some(d) = stack.pop() {
            newest = newest.max(ctime_of(&d));
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                newest = newest.max(ctime_of(&p));
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    stack.push(p);
                }
            }
        }
        let since = newest + 1;
        let (sum, got) = walk_all(&src, &ex, since);
        assert_eq!(got, vec![], "nothing changed yet");
        assert_eq!((sum.paths, sum.dirs, sum.full), (0, 0, false));
        assert_eq!(
            sum.entries, 12,
            "every entry but the excluded dir's contents"
        );

        wait_ctime_past(&aside, newest);
        fs::write(src.join("a/old"), "new content").unwrap(); // modified in place
        fs::write(src.join("b/new"), "n").unwrap(); // created: b changed
        fs::remove_file(src.join("b/old")).unwrap(); // deleted: b changed
        fs::set_permissions(
            src.join("e/deep/f"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap(); // chmod deep down: found by descending
        fs::write(src.join("cache/f"), "excluded").unwrap();
        let (sum, got) = walk_all(&src, &ex, since);
        let want = vec![
            Change::Path(b"a/old".to_vec()),
            Change::Path(b"e/deep/f".to_vec()),
            Change::Tree(b"b".to_vec()),
        ];
        let mut want_sorted = want.clone();
        want_sorted.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(got, want_sorted);
        assert_eq!((sum.paths, sum.dirs, sum.full), (2, 1, false));

        // A rename at the top changes the top directory: only a full push reconciles it.
        fs::rename(src.join("c"), src.join("c2")).unwrap();
        let (sum, got) = walk_all(&src, &ex, since);
        assert_eq!(got, vec![Change::Full]);
        assert!(sum.full);

        // A stop request ends the walk early.
        let stop = AtomicBool::new(true);
        let sum = walk_changed(&src, &ex, i64::MAX, &stop, |_| true);
        assert!(sum.stopped);
    }

    #[test]
    fn watermark_advances_only_when_the_watcher_has_delivered_everything() {
        let t = tempfile::tempdir().unwrap();
        let mut w = crate::watch::Watcher::new(&job(t.path(), vec![])).unwrap();
        let mark = Watermark::default();
        assert_eq!(mark.get(), None);
        mark.advance_if(|| w.caught_up());
        let first = mark.get().expect("nothing queued yet: caught up");

        fs::write(t.path().join("f"), "x").unwrap();
        // The event is queued in the kernel by the time write(2) returns: not caught up.
        mark.advance_if(|| w.caught_up());
        assert_eq!(mark.get(), Some(first));
        let mut out = Vec::new();
        let f = Change::Path(b"f".to_vec());
        wait::until_every("an event for f", WATCHER, wait::SPIN, || {
            if out.contains(&f) {
                return Ok(());
            }
            w.poll(Duration::from_millis(50), &mut out).unwrap();
            Err(format!("{out:?}"))
        })
        .unwrap_or_else(|timeout| panic!("{timeout}"));
        // Drain what else the write produced (CREATE, then CLOSE_WRITE).
        wait::until_every("the watcher to catch up", WATCHER, wait::SPIN, || {
            if w.caught_up() {
                return Ok(());
            }
            w.poll(Duration::from_millis(50), &mut out).unwrap();
            Err(format!("{out:?}"))
        })
        .unwrap_or_else(|timeout| panic!("{timeout}"));
        mark.advance_if(|| w.caught_up());
        assert!(mark.get().expect("set") > first);

        // A move out of the tree: until its MOVED_FROM comes out as `Gone` (unread, then
        // held back ~20 ms waiting for a MOVED_TO), the watcher is not caught up.
        let outside = tempfile::tempdir().unwrap();
        fs::rename(t.path().join("f"), outside.path().join("f")).unwrap();
        let gone = Change::Gone(b"f".to_vec());
        wait::until_every("the move to be delivered", WATCHER, wait::SPIN, || {
            if out.contains(&gone) {
                return Ok(());
            }
            assert!(!w.caught_up(), "caught up with a move not yet delivered");
            w.poll(Duration::from_millis(5), &mut out).unwrap();
            Err(format!("{out:?}"))
        })
        .unwrap_or_else(|timeout| panic!("{timeout}"));
        assert!(w.caught_up());
    }
}
