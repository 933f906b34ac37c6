//! The engine's status file: when it is written and what it says, from each sync's
//! watcher and each target's [`crate::target::TargetState::status`]. Written at most every
//! [`STATUS_MIN_GAP`] while things change (a message arrived, a push is in flight) — but
//! at once when a push ends, before its "pushed" log line, so a reader who saw the
//! change arrive never finds the push still in flight or uncounted —; every
//! [`STATUS_LIVE_GAP`] while its content moves with the clock alone (work pending: its
//! lag grows; a catch-up walk running); and not at all while nothing in it changes, so an
//! idle worker does not wake for it. Readers tell a live worker by its pid, not by
//! `updated_at`. The metrics file (`metrics_file`) is rendered from each status written
//! and written when its text changed, at most once a second (`crate::metrics::file`).

use std::time::{Duration, Instant, SystemTime};

use crate::deadline::after;
use crate::status::{unix_secs, State, Status, SyncStatus};

use super::sync::SyncState;
use super::Engine;

/// Status file: at most this often while things change.
pub(super) const STATUS_MIN_GAP: Duration = Duration::from_millis(200);
/// While work is pending (the lag it shows grows) or a catch-up walk runs: this often.
pub(super) const STATUS_LIVE_GAP: Duration = Duration::from_secs(2);

impl Engine {
    pub(super) fn maybe_write_status(&mut self, now: Instant) {
        if self.status_due().is_some_and(|due| now >= due) {
            self.write_status();
        }
        if let Some(m) = &mut self.metrics {
            m.write_if_due(now);
        }
    }

    /// When the status file is next to be written; None: nothing in it changes.
    pub(super) fn status_due(&self) -> Option<Instant> {
        let Some(last) = self.last_status else {
            return Some(Instant::now());
        };
        if self.status_stale() {
            Some(after(last, STATUS_MIN_GAP))
        } else if self.status_live() {
            Some(after(last, STATUS_LIVE_GAP))
        } else {
            None
        }
    }

    /// What the status shows moves with the clock: work pending (its lag), a catch-up
    /// walk running (its counts).
    fn status_live(&self) -> bool {
        self.syncs.iter().any(|s| !s.idle() || s.catchup.walking())
    }

    pub(super) fn write_status(&mut self) {
        let now = Instant::now();
        let status = self.status(now, SystemTime::now());
        if let Err(e) = status.write(&self.config.status_file) {
            log::error!("{e:#}");
        }
        if let Some(m) = &mut self.metrics {
            m.offer(crate::metrics::render(&status), now);
        }
        self.last_status = Some(now);
        self.status_dirty = false;
    }

    /// A push is in flight: its progress changes without a message, so the status file
    /// is rewritten at the busy pace.
    pub(super) fn status_stale(&self) -> bool {
        self.status_dirty
            || self
                .syncs
                .iter()
                .flat_map(|s| &s.targets)
                .any(|t| t.state.pushing())
    }

    fn status(&self, now: Instant, wall: SystemTime) -> Status {
        let mut any_pending = false;
        let mut degraded = false;
        let syncs = self
            .syncs
            .iter()
            .map(|s| {
                let (st, pending, bad) = sync_status(s, now, wall);
                any_pending |= pending;
                degraded |= bad;
                st
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
            updated_at: unix_secs(wall),
            state,
            syncs,
        }
    }
}

/// One sync's status, whether any of its targets has work pending, and whether it is
/// degraded (unwatched directories, a lost source, a degraded target).
fn sync_status(s: &SyncState, now: Instant, wall: SystemTime) -> (SyncStatus, bool, bool) {
    let mut pending = false;
    let mut degraded = s.stats.unwatched > 0 || s.lost.is_some();
    let targets = s
        .targets
        .iter()
        .map(|t| {
            pending |= !t.state.idle();
            let (mut st, bad) = t.state.status(now, wall, t.live());
            degraded |= bad;
            st.verify = t.verify.clone();
            st
        })
        .collect();
    let status = SyncStatus {
        name: s.job.name.clone(),
        source: s.job.source_path().display().to_string(),
        source_resolved: s
            .job
            .source_link
            .as_ref()
            .map(|_| s.job.source.display().to_string()),
        source_problem: s.lost.clone(),
        watcher: s.watcher.as_ref().map(|w| w.kind.as_str().to_string()),
        watcher_reason: s.watcher.as_ref().map(|w| w.reason.clone()),
        watched_dirs: s.stats.watched,
        unwatched_dirs: s.stats.unwatched,
        overflows: s.stats.overflows,
        watches_asked: s.stats.asked,
        catchup: Some(s.catchup.outcome()),
        targets,
    };
    (status, pending, degraded)
}
