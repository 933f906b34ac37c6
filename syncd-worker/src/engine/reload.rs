//! SIGHUP's plumbing: re-read the config file, ask [`crate::reload::diff`] what changed,
//! and apply its plan — syncs added (watcher started, whole tree pushed once watched),
//! removed (watcher stopped, targets dropped), updated or re-watched, targets added,
//! removed, changed or moved ([`crate::target::TargetState::reconfigure`]). Everything
//! that can fail (loading the file, opening a new target's fail log) comes first, so a
//! failure leaves the running configuration as it was.

use std::sync::Arc;
use std::time::Instant;

use crate::batch::Batch;
use crate::catchup::Tracker;
use crate::config::{Config, SyncJob};
use crate::hooks::HookRunner;
use crate::metrics::file::MetricsFile;
use crate::queue::Change;
use crate::reload::{self, SyncChange, SyncPlan, TargetChange};
use crate::watch_thread::Expect;

use super::sync::{SyncState, TargetSlot};
use super::Engine;

/// Per sync of the new config, per target: the new target's state (fail log opened)
/// when the plan adds it.
type Prepared = Vec<Vec<Option<TargetSlot>>>;

impl Engine {
    /// SIGHUP: re-read the config file and adjust to it (see the module doc).
    pub(super) fn reload(&mut self) {
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
        let now = Instant::now();
        let prepared = match self.prepare(&plan.syncs, &new, now) {
            Ok(p) => p,
            Err(e) => {
                log::error!(
                    "cannot reload {}: {e:#}; keeping the running configuration",
                    path.display()
                );
                return;
            }
        };
        for w in &new.warnings {
            log::warn!("{w}");
        }
        self.keep_paths(&plan, &mut new);
        let mut old = std::mem::take(&mut self.syncs);
        for name in &plan.removed_syncs {
            if let Some(i) = old.iter().position(|s| &s.job.name == name) {
                drop_sync(old.swap_remove(i));
            }
        }
        for ((sp, job), ts) in plan.syncs.iter().zip(&new.syncs).zip(prepared) {
            let s = self.apply(&mut old, sp, job, ts, now);
            self.syncs.push(s);
        }
        if plan.metrics_file_changed {
            self.metrics = new.metrics_file.as_deref().map(MetricsFile::new);
        }
        self.config = new;
        self.status_dirty = true;
        log::info!("{}", plan.summary(&path));
    }

    /// Open the fail log of every target the plan adds.
    fn prepare(
        &mut self,
        plans: &[SyncPlan],
        new: &Config,
        now: Instant,
    ) -> anyhow::Result<Prepared> {
        let mut prepared = Vec::with_capacity(plans.len());
        for (sp, job) in plans.iter().zip(&new.syncs) {
            let mut ts = Vec::with_capacity(job.targets.len());
            for (tc, t) in sp.targets.iter().zip(&job.targets) {
                ts.push(match tc {
                    TargetChange::Added => Some(self.new_target(job, t, now)?),
                    _ => None,
                });
            }
            prepared.push(ts);
        }
        Ok(prepared)
    }

    /// `state_dir` and `status_file` wait for a restart: `new` keeps the running ones.
    fn keep_paths(&self, plan: &reload::Plan, new: &mut Config) {
        let path = &self.config.path;
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
    }

    /// One sync of the new config: started when added, else taken from `old` and adjusted.
    fn apply(
        &mut self,
        old: &mut Vec<SyncState>,
        sp: &SyncPlan,
        job: &SyncJob,
        ts: Vec<Option<TargetSlot>>,
        now: Instant,
    ) -> SyncState {
        if sp.change == SyncChange::Added {
            log::info!(
                "{}: added by reload; its targets get a whole-tree push once its watches are in place",
                sp.name
            );
            let expect = Expect::Any {
                wait_if_missing: false,
            };
            let targets = ts.into_iter().flatten().collect();
            return self.start_sync(job.clone(), targets, (true, Tracker::none(), expect));
        }
        let i = old
            .iter()
            .position(|s| s.job.name == sp.name)
            .expect("the running syncs are those of the running config, which has this one");
        let mut s = old.swap_remove(i);
        if sp.change != SyncChange::Unchanged {
            self.update_sync(&mut s, sp, job, ts, now);
        }
        s
    }

    /// Apply one sync's plan (`Updated` or `Rewatched`): new settings, queues kept.
    fn update_sync(
        &mut self,
        s: &mut SyncState,
        sp: &SyncPlan,
        job: &SyncJob,
        prepared: Vec<Option<TargetSlot>>,
        now: Instant,
    ) {
        let job = Arc::new(job.clone());
        // A target added or moved, or a new source, is not pushed yet: the running
        // checkpoint vouches again only after the next quiet moment.
        s.catchup.reset_quiet();
        s.targets = update_targets(std::mem::take(&mut s.targets), sp, &job, prepared, now);
        if sp.hooks_changed {
            let old_hooks = std::mem::replace(&mut s.hooks, HookRunner::spawn(job.hooks.clone()));
            // Dropping waits for queued hooks (bounded): not on the main loop.
            std::thread::spawn(move || drop(old_hooks));
        }
        if job.verify.interval != s.job.verify.interval && s.ready {
            s.next_verify = job.verify.interval.map(|i| crate::deadline::after(now, i));
        }
        if job.full_sync.interval != s.job.full_sync.interval && s.ready {
            s.next_full = job
                .full_sync
                .interval
                .map(|i| crate::deadline::after(now, i));
        }
        if sp.change == SyncChange::Rewatched {
            log::info!(
                "{}: source, exclude, events or watcher changed; replacing its watcher, then pushing the whole tree",
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
}

/// A sync's targets after its plan: removed ones dropped, added ones (from `prepared`)
/// pushed whole, the others kept in the new order with their new settings.
fn update_targets(
    mut old: Vec<TargetSlot>,
    sp: &SyncPlan,
    job: &SyncJob,
    mut prepared: Vec<Option<TargetSlot>>,
    now: Instant,
) -> Vec<TargetSlot> {
    for name in &sp.removed_targets {
        if let Some(i) = old.iter().position(|t| t.state.name() == name) {
            discard_target(&job.name, old.swap_remove(i));
        }
    }
    let mut out = Vec::with_capacity(job.targets.len());
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
            t.state.queue(Change::Full, now);
            out.push(t);
            continue;
        }
        let Some(pos) = old.iter().position(|t| t.state.name() == cfg.name) else {
            continue;
        };
        let mut t = old.swap_remove(pos);
        t.state.set_limits(job);
        if *tc != TargetChange::Unchanged {
            let moved = *tc == TargetChange::Moved;
            t.state.reconfigure(cfg.clone(), moved, now);
            if moved {
                log::info!(
                    "{} → {}: destination changed to {}; pushing the whole tree",
                    job.name,
                    cfg.name,
                    t.state.dest()
                );
            } else {
                log::info!(
                    "{} → {}: settings changed; checking the target again",
                    job.name,
                    cfg.name
                );
            }
        }
        out.push(t);
    }
    out
}

/// A sync removed by a reload: its watcher stopped, its targets dropped.
fn drop_sync(mut s: SyncState) {
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

/// A target removed by a reload: what it still owed is dropped, its fail log removed. A
/// push still in flight ends on its own; its report is then ignored.
fn discard_target(sync: &str, mut t: TargetSlot) {
    let pending = t.state.pending();
    log::info!(
        "{sync} → {}: removed by reload; discarded {pending} pending entr{}",
        t.state.name(),
        if pending == 1 { "y" } else { "ies" }
    );
    t.save(&Batch::default());
}
