//! What the watcher threads report, and what the engine keeps about each sync's source:
//! changes queued for its targets, the watches in place (queue the whole tree or the
//! catch-up's findings, record the source's identity in `sources.json`, READY=1 once every
//! sync is watched or waiting), the source lost (hold the sync, watch for it to come
//! back), an operator accepting a new source, and the running catch-up checkpoint (what a
//! worker killed from now on can vouch for).

use std::sync::mpsc::Sender;
use std::time::Instant;

use crate::catchup;
use crate::queue::Change;
use crate::source_id::SourceId;
use crate::watch::choose::{Chosen, Kind};
use crate::watch::WatchStats;
use crate::watch_thread::Expect;

use super::sync::SyncState;
use super::{Engine, Id, Msg, CHECKPOINT_EVERY};
use crate::deadline::after;

impl Engine {
    /// After a drain of the channel that began after `marks` were sampled: a sync with
    /// every watch in place and nothing queued or in flight for any target has pushed
    /// every change from before its mark (the watcher sent them before recording it).
    pub(super) fn note_quiet(&mut self, marks: &[(Id, Option<i64>)]) {
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

    /// What the running checkpoint would say now.
    fn checkpoint_entries(&self) -> Vec<catchup::MarkerSync> {
        self.syncs
            .iter()
            .map(|s| {
                catchup::MarkerSync::new(&s.job, s.catchup.checkpoint(s.ready, s.stats.unwatched))
            })
            .collect()
    }

    /// The running checkpoint would say something other than what was last written.
    pub(super) fn checkpoint_changed(&self) -> bool {
        self.last_checkpoint.as_ref() != Some(&self.checkpoint_entries())
    }

    /// A watched, idle sync's quiet mark still has to move (see `note_quiet`).
    pub(super) fn settling(&self) -> bool {
        self.syncs
            .iter()
            .any(|s| s.ready && s.stats.unwatched == 0 && s.idle() && s.catchup.settling())
    }

    /// Write the running catch-up checkpoint (durably) when it says something new: what a
    /// worker killed from now on can vouch for (see the catchup module).
    pub(super) fn checkpoint(&mut self) {
        let entries = self.checkpoint_entries();
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
    pub(super) fn maybe_notify_ready(&mut self) {
        if self.notified_ready || !self.syncs.iter().all(|s| s.ready || s.lost.is_some()) {
            return;
        }
        self.notified_ready = true;
        let dirs: u64 = self.syncs.iter().map(|s| s.stats.watched).sum();
        let lost = self.syncs.iter().filter(|s| s.lost.is_some()).count();
        let marked = self
            .syncs
            .iter()
            .filter(|s| s.watcher.as_ref().is_some_and(|w| w.kind == Kind::Fanotify))
            .count();
        let inotify = format!("{dirs} director{}", if dirs == 1 { "y" } else { "ies" });
        let watching = match (dirs, marked) {
            (_, 0) => inotify,
            (0, _) => format!("{marked} source(s) whole with fanotify"),
            _ => format!("{inotify} with inotify and {marked} source(s) whole with fanotify"),
        };
        crate::notify::send(&format!(
            "READY=1\nSTATUS=watching {watching}{}",
            if lost > 0 {
                format!("; {lost} source(s) missing or replaced, see syncd status")
            } else {
                String::new()
            }
        ));
    }

    pub(super) fn on_changes(&mut self, wid: Id, changes: Vec<Change>) {
        let now = Instant::now();
        // None: a replaced watcher's last words; the new one's full push covers them.
        let Some(s) = self.sync_watched_by(wid) else {
            return;
        };
        s.catchup.note_activity();
        for c in changes {
            s.queue_seen(c, now);
        }
    }

    /// A watcher has its watches in place: queue what the sync owes since (the whole tree
    /// or the catch-up's findings), record the source's identity, say so.
    pub(super) fn on_ready(
        &mut self,
        wid: Id,
        stats: WatchStats,
        source: SourceId,
        resumed: bool,
        watcher: Chosen,
    ) {
        let now = Instant::now();
        let tx = self.tx.clone();
        let Some(s) = self.sync_watched_by(wid) else {
            return;
        };
        s.ready = true;
        s.stats = stats;
        s.watcher = Some(watcher.clone());
        s.source = Some(source);
        if let Some(why) = s.lost.take() {
            log::info!(
                "{}: the source {} is back (it was lost: {why}); catching up",
                s.job.name,
                s.job.source.display()
            );
        }
        let what = match watcher.kind {
            Kind::Inotify => format!("{} directories under", stats.watched),
            Kind::Fanotify => "every directory under".to_string(),
        };
        log::info!(
            "{}: watching {what} {} with {} ({}){}{}",
            s.job.name,
            s.job.source.display(),
            watcher.kind.as_str(),
            watcher.reason,
            match &s.job.source_link {
                Some(link) => format!(
                    " (source {} is a symlink; resolved at start or reload: repointed, it holds this sync until `syncd reload`)",
                    link.display()
                ),
                None => String::new(),
            },
            if stats.unwatched > 0 {
                format!(" ({} could not be watched)", stats.unwatched)
            } else {
                String::new()
            }
        );
        queue_on_ready(s, resumed, tx, now);
        s.full_on_ready = false;
        s.next_full = s.job.full_sync.interval.map(|i| after(now, i));
        s.next_verify = s.job.verify.interval.map(|i| after(now, i));
        let (name, path) = (s.job.name.clone(), s.job.source_path().to_path_buf());
        if self.sources.set(&name, &path, source) {
            if let Err(e) = self.sources.save(&self.config.state_dir) {
                log::error!("{e:#}");
            }
        }
        // Write at once: "not starting any more" is what callers wait for.
        self.write_status();
        self.maybe_notify_ready();
    }

    pub(super) fn on_lost(&mut self, wid: Id, why: String) {
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

    pub(super) fn on_fatal(&mut self, wid: Id, e: String) {
        let Some(s) = self.sync_watched_by(wid) else {
            log::debug!("a replaced watcher failed: {e}");
            return;
        };
        log::error!("{}: {e}", s.job.name);
        self.fatal = Some(e);
        self.stopping = true;
    }

    /// A push found the source path naming another directory than the watched one
    /// (before the watcher noticed, or by a change no event reports: an ancestor made
    /// unreadable, see `path_watch`). Hold the sync and let a new watcher wait for the
    /// watched directory to come back.
    pub(super) fn source_lost(&mut self, si: usize, why: String) {
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
    pub(super) fn accept_lost_sources(&mut self) {
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
}

/// What a sync whose watches are now in place owes its targets: the whole tree (added or
/// re-watched by a reload, a new source accepted, the initial sync, a resumed source the
/// catch-up cannot vouch for), or what the catch-up walk finds (sent as changes by `tx`).
fn queue_on_ready(s: &mut SyncState, resumed: bool, tx: Sender<Msg>, now: Instant) {
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
        s.queue(Change::Full, now);
    }
    if s.full_on_ready {
        return;
    }
    if !resumed && !s.job.initial_sync && *s.catchup.decision() == catchup::Decision::Nothing {
        // Said in the log too (not only by `syncd start`): `syncd run` under systemd.
        log::info!(
            "{}: what is already in {} was not pushed (initial_sync is off, and no earlier run of this sync is recorded in the state directory); only changes from now on are. To make the target complete once: syncd sync --full",
            s.job.name,
            s.job.source.display()
        );
    }
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
        s.queue(c, now);
    }
}
