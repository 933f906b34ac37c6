//! One target's state machine: its queue, whether its capabilities are known, its push in
//! flight, its backoff, the busy daemon, its failing paths and its counters. Pure — no
//! threads, channels, files or clocks: every call that needs the time takes `now` (and
//! `wall`, the wall-clock time, where the status shows one), and what the engine must do
//! with the outside world (start a probe, start a push, save the fail log, run the hooks,
//! hold the sync whose source is lost) comes back as a value. It logs what the engine
//! logged at these decisions before.
//!
//! The cycle: [`TargetState::next`] says what to start (probe the target when its
//! capabilities are unknown, push a due batch, or wait); the engine starts it on a thread
//! and hands the result back to [`TargetState::on_probe`] / [`TargetState::on_push`],
//! with the settings generation it started with: a result of settings a reload replaced
//! (`cfg_gen`) teaches nothing about the new ones.
//!
//! Pipelining ([`crate::pipeline`]): beside a push that has been running longer than the
//! batching window, `next` may start another one (up to `max_in_flight`) carrying only
//! what touches no path of a push in flight; the rest stays queued and waits. A push
//! started beside another gives up at once when the daemon refuses it as busy: its batch
//! goes back to the queue (no failure counted) and the target pushes one batch at a time
//! for [`pipeline::SERIAL_FOR`]. Each push is known by its [`Ticket`].
//!
//! Invariants: a probe never runs beside a push; pushes in flight never touch the same
//! path, or a path and its ancestor; a whole-tree push runs alone; a batch taken from the queue is either pushed (then it leaves the
//! queue and the failing paths), split (its failing paths wait on their own, see
//! [`crate::failing`]) or put back into the queue with its age — nothing taken is lost;
//! `backoff` grows only on failures that are not a busy daemon and is reset by any
//! success; `retry_at` in the future holds the target back except for an operator's
//! push-now; the fail log is told exactly what the target owes (queue + failing paths)
//! whenever that differs from what it last held.

use std::time::{Duration, Instant, SystemTime};

use crate::batch::{always_whole, Batch};
use crate::busy;
use crate::config::{SyncJob, Target};
use crate::deadline::{self, after, wall_after};
use crate::failing::{self, Failing};
use crate::pipeline::{self, Flight, Gate, Rule};
use crate::progress::Progress;
use crate::push::PushReport;
use crate::queue::{Change, Limits, Queue};
use crate::rsync::args::Caps;
use crate::rsync::exit::{Class, Outcome};
use crate::status::{unix_secs, TargetStatus};

/// How many failing paths the status shows with their reasons.
const FAILING_EXAMPLES: usize = 3;

/// A push in flight waiting for a busy daemon shows in the status from this long on (a
/// daemon still reaping the previous run's child refuses the next for a moment).
const WAITING_SHOWN_AFTER: Duration = Duration::from_secs(1);

/// Why a push in flight waits, for the status (its own message comes with its report).
const BUSY: &str = "the daemon is busy (max connections reached)";

/// The capabilities to run again with after a run failed with `outcome` using `used`:
/// the include-filter form when rsync rejected `--delete-missing-args` with
/// `--files-from` (rsync 3.4.3); None when the outcome is anything else. The one place
/// this fallback is decided, for the engine and for `--once`.
pub fn fallback_caps(used: Caps, outcome: &Outcome) -> Option<Caps> {
    (outcome.class == Class::DeleteMissingArgsUnsupported && used.delete_missing_args).then_some(
        Caps {
            delete_missing_args: false,
        },
    )
}

/// What the engine starts for a target now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Find the target's capabilities ([`crate::rsync::probe::probe_target`]), then report to
    /// [`TargetState::on_probe`].
    Probe,
    /// Run this push, then report to [`TargetState::on_push`].
    Push(Push),
    /// Nothing now; something is due at this instant.
    WaitUntil(Instant),
    /// Nothing now and nothing scheduled (a probe or push in flight, or nothing queued).
    Idle,
}

/// Which push a report is about: the settings generation it started with and its
/// number (never reused within a target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub cfg_gen: u64,
    pub seq: u64,
}

/// One push to start: the batch (in tree mode the whole tree), and how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub ticket: Ticket,
    pub batch: Batch,
    pub caps: Caps,
    /// Whole-tree runs go through the deletion guard (false after `sync --full --force`).
    pub guard: bool,
    /// The daemon limits connections: the push's runs do not overlap.
    pub one_at_a_time: bool,
    /// Started beside another push in flight: a busy daemon ends it at once (its batch
    /// waits in the queue) instead of being waited for.
    pub beside: bool,
}

/// What the engine must do after a push's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AfterPush {
    /// Nothing ran: the source path names another directory (why). The batch is back in
    /// the queue; the engine holds the whole sync.
    pub source_lost: Option<String>,
    /// Write this to the target's fail log: what it owes now.
    pub save: Option<Batch>,
    /// What reached the target, for the hooks (never empty).
    pub pushed: Option<Batch>,
    /// The log line that says the push went: the engine writes it once the status file
    /// shows the push's end, so the log never runs ahead of `syncd status`.
    pub said: Option<String>,
}

/// What the push thread publishes while a push runs, read by the engine for the status.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Since when the push has been waiting for a busy daemon.
    pub waiting: Option<Instant>,
    pub progress: Option<Progress>,
}

#[derive(Debug, Clone)]
struct InFlight {
    seq: u64,
    batch: Batch,
    /// When the oldest change in it arrived.
    since: Option<Instant>,
    caps: Caps,
    started: Instant,
    beside: bool,
}

/// What happened to the target so far, for the status.
#[derive(Debug, Clone, Default)]
struct Counters {
    last_success: Option<SystemTime>,
    pushes_ok: u64,
    pushes_failed: u64,
    paths_pushed: u64,
    consecutive_failures: u64,
    full_syncs: u64,
}

/// When to try the target again, and what it is known to need.
#[derive(Debug, Clone, Default)]
struct Retry {
    /// None until a probe found them; forgotten when a reload changes the target.
    caps: Option<Caps>,
    at: Option<Instant>,
    backoff: Duration,
    /// The daemon limits connections (it refused a run as busy): push one run at a time.
    /// Forgotten when a reload changes the target's settings.
    limited: bool,
    /// Until when no push starts beside another (the daemon refused a connection).
    serial_until: Option<Instant>,
    /// Since when the daemon has had no connection free (None: not busy now); the busy
    /// episode is logged once, at its start and its end.
    busy_since: Option<Instant>,
    last_error: Option<String>,
}

/// One target of one sync (see the module doc).
#[derive(Debug, Clone)]
pub struct TargetState {
    /// Bumped when a reload changes `cfg`: a probe or push started before is stale.
    cfg_gen: u64,
    cfg: Target,
    dest: String,
    queue: Queue,
    /// Pushes in flight, oldest first.
    in_flight: Vec<InFlight>,
    /// The number of the next push.
    next_seq: u64,
    /// What is queued all waits for a push in flight (nothing can start beside it until
    /// the queue or the pushes in flight change).
    held: bool,
    max_in_flight: usize,
    /// See [`pipeline::after`].
    pipeline_after: Duration,
    probing: bool,
    retry: Retry,
    /// How many entries the fail log holds.
    backlog: u64,
    /// Paths that keep failing on their own (exit 23 naming them), each with its backoff.
    failing: Failing,
    counters: Counters,
    /// `syncd sync --full --force`: the next whole-tree push may delete past the guard.
    force_full: bool,
}

fn limits(job: &SyncJob) -> Limits {
    Limits {
        delay: job.delay,
        max_delay: job.max_delay,
        max_queue: job.max_queue,
    }
}

impl TargetState {
    /// A target as at start, owing `saved` (its fail log's content, replayed at `now`).
    pub fn new(job: &SyncJob, cfg: Target, saved: Batch, now: Instant) -> TargetState {
        let mut queue = Queue::new(limits(job));
        let backlog = saved.len() as u64;
        if !saved.is_empty() {
            queue.restore(saved, now);
        }
        TargetState {
            cfg_gen: 0,
            dest: cfg.kind.dest_arg().to_string_lossy().into_owned(),
            cfg,
            queue,
            in_flight: Vec::new(),
            next_seq: 0,
            held: false,
            max_in_flight: job.max_in_flight.max(1),
            pipeline_after: pipeline::after(job.delay),
            probing: false,
            retry: Retry::default(),
            backlog,
            failing: Failing::default(),
            counters: Counters::default(),
            force_full: false,
        }
    }

    pub fn cfg(&self) -> &Target {
        &self.cfg
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn dest(&self) -> &str {
        &self.dest
    }

    /// The generation of the settings a probe or push is started with.
    pub fn cfg_gen(&self) -> u64 {
        self.cfg_gen
    }

    /// Nothing queued and nothing in flight.
    pub fn idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
    }

    /// A probe or a push is running.
    pub fn running(&self) -> bool {
        !self.in_flight.is_empty() || self.probing
    }

    /// Probes and pushes running.
    pub fn runs(&self) -> usize {
        self.in_flight.len() + usize::from(self.probing)
    }

    /// A push is running.
    pub fn pushing(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Entries queued or in flight (dropped when a reload removes the target).
    /// Entries the fail log holds for this target (what it owes; at start, what the
    /// previous run left to replay).
    pub fn backlog(&self) -> u64 {
        self.backlog
    }

    pub fn pending(&self) -> usize {
        self.queue.len() + self.in_flight_entries()
    }

    fn in_flight_entries(&self) -> usize {
        self.in_flight.iter().map(|f| f.batch.len()).sum()
    }

    /// Queue `change` as it is (a full push, the periodic one, the catch-up's findings).
    pub fn queue(&mut self, change: Change, now: Instant) {
        self.held = false;
        self.queue.push(change, now);
    }

    /// Queue a change the watcher saw. A tree-mode sync pushes the whole tree for any
    /// change ([`always_whole`]), so it queues a full push.
    pub fn queue_seen(&mut self, job: &SyncJob, change: Change, now: Instant) {
        let change = if always_whole(job.mode) {
            Change::Full
        } else {
            change
        };
        self.held = false;
        self.queue.push(change, now);
    }

    /// The pushes in flight, for the pipelining rule.
    fn flights(&self) -> Vec<Flight<'_>> {
        self.in_flight
            .iter()
            .map(|f| Flight {
                batch: &f.batch,
                started: f.started,
            })
            .collect()
    }

    /// May a push start now beside those in flight ([`pipeline::gate`])?
    fn gate(&self, now: Instant) -> Gate {
        let rule = Rule {
            max_in_flight: self.max_in_flight,
            after: self.pipeline_after,
            serial: self.retry.serial_until.is_some_and(|u| now < u),
        };
        pipeline::gate(&self.flights(), rule, self.queue.enough(), now)
    }

    /// What to start now (see [`Action`]); starting it is the caller's promise: a probe
    /// or push returned here counts as in flight until its result comes back.
    pub fn next(&mut self, job: &SyncJob, now: Instant) -> Action {
        if self.probing || self.retry.at.is_some_and(|r| now < r) {
            return self.wait(now, true);
        }
        let Some(caps) = self.retry.caps else {
            if self.pushing() {
                return self.wait(now, true);
            }
            self.probing = true;
            return Action::Probe;
        };
        if self.gate(now) != Gate::Open {
            return self.wait(now, true);
        }
        for c in self.failing.due(now) {
            self.held = false;
            self.queue.push(c, now);
        }
        if self.held || !self.queue.is_due(now) {
            return self.wait(now, true);
        }
        let settled = self
            .queue
            .newest()
            .map(|n| now.saturating_duration_since(n));
        let written = self.queue.enough();
        let (batch, since) = self.queue.take();
        // Failing paths waiting for their own retry stay out of it.
        let batch = self.failing.hold(batch).in_mode(job.mode);
        // Beside pushes in flight: only what touches none of their paths.
        let (batch, waits) = pipeline::split(batch, &self.flights());
        // A large backlog of written paths in two pushes, when two may run.
        let (batch, later) = pipeline::share(batch, self.max_in_flight, written);
        for rest in [waits, later] {
            if !rest.is_empty() {
                self.queue.restore(rest, since.unwrap_or(now));
            }
        }
        if batch.is_empty() {
            self.held = self.pushing();
            return self.wait(now, true);
        }
        log::debug!(
            "{} → {}: taking {} (oldest change {:.0} ms ago, newest {:.0} ms ago)",
            job.name,
            self.cfg.name,
            describe(&batch),
            since.map_or(0.0, |o| now.saturating_duration_since(o).as_secs_f64()
                * 1e3),
            settled.map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
        let beside = self.pushing();
        if beside {
            log::debug!(
                "{} → {}: starting it beside {} push(es) in flight",
                job.name,
                self.cfg.name,
                self.in_flight.len()
            );
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push(InFlight {
            seq,
            batch: batch.clone(),
            since,
            caps,
            started: now,
            beside,
        });
        Action::Push(Push {
            ticket: Ticket {
                cfg_gen: self.cfg_gen,
                seq,
            },
            batch,
            caps,
            guard: !self.force_full,
            one_at_a_time: self.retry.limited,
            beside,
        })
    }

    fn wait(&self, now: Instant, ready: bool) -> Action {
        self.deadline(now, ready)
            .map_or(Action::Idle, Action::WaitUntil)
    }

    /// When this target next needs the engine (None: not before a message). `ready`: its
    /// sync has its watches in place; until then nothing of it is started, so nothing is
    /// due (its `Ready` message wakes the engine) — a past queue deadline here would make
    /// the engine's loop spin while a source is lost with changes pending.
    pub fn deadline(&self, now: Instant, ready: bool) -> Option<Instant> {
        if self.probing || !ready {
            return None;
        }
        let retry = self.retry.at.unwrap_or(now);
        if self.retry.caps.is_none() {
            return (!self.pushing()).then_some(retry);
        }
        // Beside pushes in flight: not before the pipelining rule allows one; a queue
        // whose every entry waits for them is not due before one ends.
        let open = match self.gate(now) {
            Gate::Closed => return None,
            Gate::OpenAt(at) => at.max(retry),
            Gate::Open => retry,
        };
        let queue = if self.held {
            None
        } else {
            self.queue.deadline()
        };
        [queue, self.failing.deadline()]
            .into_iter()
            .flatten()
            .map(|q| q.max(open))
            .min()
    }

    /// The probe started with settings `cfg_gen` ended.
    pub fn on_probe(
        &mut self,
        job: &SyncJob,
        cfg_gen: u64,
        result: Result<Caps, Outcome>,
        now: Instant,
    ) {
        self.probing = false;
        if cfg_gen != self.cfg_gen {
            // Probed with settings a reload replaced: probe again.
            return;
        }
        match result {
            Ok(caps) => {
                if !caps.delete_missing_args {
                    log::warn!(
                        "{} → {}: rsync cannot combine --delete-missing-args with --files-from here (rsync 3.4.3 bug or an old rsync); using the include-filter form for deletions",
                        job.name, self.cfg.name
                    );
                }
                self.retry.caps = Some(caps);
                self.retry.at = None;
                self.retry.last_error = None;
                self.end_busy(job, now);
            }
            Err(outcome) => {
                if outcome.class == Class::Busy {
                    self.learn_limited(job, now);
                }
                self.fail(job, outcome, now);
            }
        }
    }

    /// The push started with settings `cfg_gen` ended with `report`; `wall` is the
    /// wall-clock time for the last success.
    pub fn on_push(
        &mut self,
        job: &SyncJob,
        ticket: Ticket,
        report: PushReport,
        now: Instant,
        wall: SystemTime,
    ) -> AfterPush {
        let Some(i) = self.in_flight.iter().position(|f| f.seq == ticket.seq) else {
            return AfterPush::default();
        };
        let done = self.in_flight.remove(i);
        let cfg_gen = ticket.cfg_gen;
        self.held = false;
        if let Some(why) = report.source_lost {
            // Nothing ran: the batch waits for the source, no failure counted.
            self.queue.restore(done.batch, done.since.unwrap_or(now));
            return AfterPush {
                source_lost: Some(why),
                ..AfterPush::default()
            };
        }
        if report.refused_busy && cfg_gen == self.cfg_gen {
            self.learn_limited(job, now);
        }
        if done.beside && report.outcome.class == Class::Busy {
            // Refused beside another push (it holds the connection): the batch waits in
            // the queue for its turn, one push at a time from now on. Not a failure.
            if cfg_gen == self.cfg_gen {
                self.learn_limited(job, now);
            }
            self.queue.restore(done.batch, done.since.unwrap_or(now));
            return AfterPush::default();
        }
        let split = report
            .failed
            .as_ref()
            .and_then(|failed| failing::split(&done.batch, failed));
        if report.outcome.class == Class::Success || split.is_some() {
            return self.pushed(job, done.batch, split, &report, (now, wall));
        }
        self.queue.restore(done.batch, done.since.unwrap_or(now));
        if let Some(caps) = fallback_caps(done.caps, &report.outcome) {
            if cfg_gen != self.cfg_gen {
                // Learnt about the target's old settings; it is probed again.
                return AfterPush::default();
            }
            log::warn!(
                "{} → {}: {}; switching to the include-filter form and retrying",
                job.name,
                self.cfg.name,
                report.outcome.message
            );
            self.retry.caps = Some(caps);
            return AfterPush::default();
        }
        self.counters.pushes_failed += 1;
        self.fail(job, report.outcome, now);
        let owed = self.owed(now);
        self.backlog = owed.len() as u64;
        AfterPush {
            save: Some(owed),
            ..AfterPush::default()
        }
    }

    /// A push went (all of `batch`, or all but the failing paths of `split`).
    fn pushed(
        &mut self,
        job: &SyncJob,
        batch: Batch,
        split: Option<failing::Split>,
        report: &PushReport,
        (now, wall): (Instant, SystemTime),
    ) -> AfterPush {
        self.end_busy(job, now);
        self.queue.note_push_time(report.elapsed);
        let runs = format!(
            "{:.2}s ({} rsync run{})",
            report.elapsed.as_secs_f64(),
            report.runs,
            if report.runs == 1 { "" } else { "s" }
        );
        let mut said = None;
        let (went, failing_changed) = match split {
            Some(split) => (self.isolate(job, &batch, split, &runs, now), true),
            None => {
                said = Some(format!(
                    "{} → {}: pushed {} in {runs}",
                    job.name,
                    self.cfg.name,
                    describe(&batch)
                ));
                let changed = self.failing.pushed(&batch, now);
                (batch, changed)
            }
        };
        // The target works; a push whose every path failed (a failing path tried alone)
        // pushed nothing, though: no success, no hooks.
        if !went.is_empty() {
            self.counters.pushes_ok += 1;
            self.counters.paths_pushed += went.len() as u64;
            self.counters.last_success = Some(wall);
        }
        self.counters.consecutive_failures = 0;
        self.retry.backoff = Duration::ZERO;
        self.retry.at = None;
        self.retry.last_error = None;
        if went.whole_tree(job.mode) {
            self.counters.full_syncs += u64::from(went.full);
            self.force_full = false;
        }
        // The fail log holds the failing paths; rewritten when what it owes changed (a
        // count that differs from the failing set's: queued entries saved by an earlier
        // failure were pushed since).
        let save = (failing_changed || self.backlog != self.failing.len() as u64).then(|| {
            let owed = self.owed(now);
            self.backlog = owed.len() as u64;
            owed
        });
        AfterPush {
            source_lost: None,
            save,
            pushed: (!went.is_empty()).then_some(went),
            said,
        }
    }

    /// A push failed only on paths it names (exit 23): the rest of `batch` counts as
    /// pushed and each failing path waits for its own retry ([`crate::failing`]); the
    /// target's backoff is left alone. Returns what was pushed.
    fn isolate(
        &mut self,
        job: &SyncJob,
        batch: &Batch,
        split: failing::Split,
        took: &str,
        now: Instant,
    ) -> Batch {
        self.failing.pushed(&split.pushed, now);
        let first = split
            .failed
            .first()
            .map(|(p, _, why)| format!("{} ({why})", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        let n = split.failed.len();
        self.failing.record(
            split.failed,
            now,
            job.retry.min_interval,
            job.retry.max_interval,
        );
        log::warn!(
            "{} → {}: pushed {} in {took} except {n} failing path{}: {first}{}; each is retried on its own (from {:.1?}, doubling to {:.0?}), the target's other changes go on",
            job.name,
            self.cfg.name,
            describe(batch),
            if n == 1 { "" } else { "s" },
            if n > 1 { ", …" } else { "" },
            job.retry.min_interval,
            job.retry.max_interval,
        );
        split.pushed
    }

    /// Record a failure and schedule the next try. A busy daemon ([`Class::Busy`]) is
    /// tried again soon, without touching the backoff, and logged once per episode.
    fn fail(&mut self, job: &SyncJob, outcome: Outcome, now: Instant) {
        self.counters.consecutive_failures += 1;
        let msg = outcome.message_for(&self.cfg.kind);
        if outcome.class == Class::Busy {
            let wait = busy::retry_after(job.retry.min_interval);
            self.retry.at = Some(now + wait);
            let first = self.retry.busy_since.is_none();
            let since = *self.retry.busy_since.get_or_insert(now);
            if first {
                log::warn!(
                    "{} → {}: {msg}; waiting for a free connection, trying again every {:.1?} (changes kept)",
                    job.name,
                    self.cfg.name,
                    wait
                );
            } else {
                log::debug!(
                    "{} → {}: still busy after {:.1}s",
                    job.name,
                    self.cfg.name,
                    now.saturating_duration_since(since).as_secs_f64()
                );
            }
            self.retry.last_error = Some(busy_message(now, since, &msg));
            return;
        }
        self.end_busy(job, now);
        let r = &mut self.retry;
        r.backoff = match outcome.class {
            Class::ConfigError => job.retry.max_interval,
            _ => deadline::double(r.backoff, job.retry.min_interval, job.retry.max_interval),
        };
        r.at = Some(after(now, r.backoff));
        if outcome.class == Class::ConfigError {
            log::error!(
                "{} → {}: {msg} — fix the configuration or the target; retrying in {:.0?}",
                job.name,
                self.cfg.name,
                r.backoff
            );
        } else {
            log::warn!(
                "{} → {}: {msg}; retrying in {:.1?} (failure {} in a row, changes kept)",
                job.name,
                self.cfg.name,
                r.backoff,
                self.counters.consecutive_failures
            );
        }
        r.last_error = Some(msg);
    }

    /// The daemon refused a run as busy: it limits connections, so from now on push to it
    /// one run at a time (said once per target and settings), and no push beside another
    /// for [`pipeline::SERIAL_FOR`] (said once per episode).
    fn learn_limited(&mut self, job: &SyncJob, now: Instant) {
        let new_episode = self.retry.serial_until.is_none_or(|u| now >= u);
        self.retry.serial_until = Some(after(now, pipeline::SERIAL_FOR));
        if !self.retry.limited {
            self.retry.limited = true;
            log::info!(
                "{} → {}: the daemon limits connections (max connections); pushing to it one rsync run at a time{}",
                job.name,
                self.cfg.name,
                if self.max_in_flight > 1 {
                    format!(", one push at a time for {:.0?}", pipeline::SERIAL_FOR)
                } else {
                    String::new()
                }
            );
        } else if new_episode && self.max_in_flight > 1 {
            log::info!(
                "{} → {}: the daemon refused a connection (max connections); one push at a time for {:.0?}",
                job.name,
                self.cfg.name,
                pipeline::SERIAL_FOR
            );
        }
    }

    /// A busy episode is over (a run got through, or the target failed otherwise).
    fn end_busy(&mut self, job: &SyncJob, now: Instant) {
        if let Some(since) = self.retry.busy_since.take() {
            log::info!(
                "{} → {}: no longer waiting for a busy daemon (waited {:.1}s)",
                job.name,
                self.cfg.name,
                now.saturating_duration_since(since).as_secs_f64()
            );
        }
    }

    /// What the target is owed, for the fail log: its queue and its failing paths.
    fn owed(&self, now: Instant) -> Batch {
        if self.failing.is_empty() {
            return self.queue.snapshot();
        }
        let mut q = self.queue.clone();
        q.restore(self.failing.owed(), now);
        q.snapshot()
    }

    /// What to keep in the fail log for the next start, the push in flight included (it
    /// may not finish); None when there is nothing to write (nothing owed and the fail
    /// log already empty). The queue is left as it is. Call [`TargetState::saved`] once
    /// written.
    pub fn to_save(&self, now: Instant) -> Option<Batch> {
        let mut q = self.queue.clone();
        for f in &self.in_flight {
            q.restore(f.batch.clone(), f.since.unwrap_or(now));
        }
        q.restore(self.failing.owed(), now);
        let pending = q.snapshot();
        (!pending.is_empty() || self.backlog != 0).then_some(pending)
    }

    /// The fail log now holds `batch`.
    pub fn saved(&mut self, batch: &Batch) {
        self.backlog = batch.len() as u64;
    }

    /// A reload kept the target: the sync's queue limits may have changed.
    pub fn set_limits(&mut self, job: &SyncJob) {
        self.queue.set_limits(limits(job));
        self.max_in_flight = job.max_in_flight.max(1);
        self.pipeline_after = pipeline::after(job.delay);
        self.held = false;
    }

    /// A reload changed the target's settings to `cfg`: what was learnt about the old ones
    /// is forgotten (it is probed again), a probe or push still running becomes stale.
    /// `moved` (a new destination): the whole tree is pushed there.
    pub fn reconfigure(&mut self, cfg: Target, moved: bool, now: Instant) {
        self.dest = cfg.kind.dest_arg().to_string_lossy().into_owned();
        self.cfg = cfg;
        self.cfg_gen += 1;
        self.retry = Retry::default();
        self.held = false;
        if moved {
            self.queue.push(Change::Full, now);
        }
    }

    /// `syncd sync --full --force`: the next whole-tree push may delete past the guard.
    pub fn force_full(&mut self) {
        self.force_full = true;
    }

    /// An operator asked to push now (with `full`, the whole tree): the queue's delay,
    /// the failing paths' and the target's retry waits are cut short.
    pub fn push_now(&mut self, full: bool, now: Instant) {
        if full {
            self.queue.push(Change::Full, now);
        }
        self.held = false;
        self.queue.flush_now();
        self.failing.retry_now(now);
        self.retry.at = None;
    }

    /// The status of this target, and whether it is degraded (failing, failing paths,
    /// waiting for a busy daemon, or never reached).
    pub fn status(&self, now: Instant, wall: SystemTime, live: Live) -> (TargetStatus, bool) {
        let waiting = live
            .waiting
            .filter(|since| now.saturating_duration_since(*since) >= WAITING_SHOWN_AFTER)
            .map(|since| busy_message(now, self.retry.busy_since.unwrap_or(since), BUSY));
        let c = &self.counters;
        let degraded = c.consecutive_failures > 0
            || !self.failing.is_empty()
            || waiting.is_some()
            || (self.retry.caps.is_none() && self.retry.last_error.is_some());
        let oldest = self
            .in_flight
            .iter()
            .filter_map(|f| f.since)
            .chain(self.queue.oldest())
            .min();
        let status = TargetStatus {
            name: self.cfg.name.clone(),
            dest: self.dest.clone(),
            queue_depth: self.queue.len() as u64,
            full_pending: self.queue.full_pending(),
            in_flight: self.in_flight_entries() as u64,
            last_success: c.last_success.map(unix_secs),
            lag_seconds: oldest.map_or(0.0, |o| now.saturating_duration_since(o).as_secs_f64()),
            pushes_ok: c.pushes_ok,
            pushes_failed: c.pushes_failed,
            paths_pushed: c.paths_pushed,
            degraded,
            consecutive_failures: c.consecutive_failures,
            last_error: waiting.or_else(|| self.retry.last_error.clone()),
            retry_backlog: self.backlog,
            next_retry_at: self
                .retry
                .at
                .map(|r| unix_secs(wall_after(wall, r.saturating_duration_since(now)))),
            full_syncs: c.full_syncs,
            delete_method: match self.retry.caps {
                Some(Caps {
                    delete_missing_args: false,
                }) => "include-filter".into(),
                _ => "delete-missing-args".into(),
            },
            progress: live.progress,
            failing_paths: self.failing.summary(FAILING_EXAMPLES),
            verify: None,
        };
        (status, degraded)
    }
}

/// What the status says of a target waiting for a busy daemon since `since`.
fn busy_message(now: Instant, since: Instant, why: &str) -> String {
    format!(
        "waiting for a busy daemon (no free connection for {:.0}s): {why}",
        now.saturating_duration_since(since).as_secs_f64()
    )
}

/// A batch in words, for the log.
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
mod tests;
