//! `syncd verify`: proves that a target equals its source without changing anything, and
//! with `--fix` pushes exactly the drift it found. Used by the controller's `verify`
//! command (in the caller's process, as the caller's user) and by the worker's periodic
//! verify (`[sync.verify] interval`, on a thread of its own, as the worker's user; the
//! result goes to the status file, [`status_of`]).
//!
//! How one target is checked ([`check_target`]):
//! 1. The source path must still name the directory the daemon watched
//!    ([`SourceId::check_job`], from `sources.json`, read without writing it): a verify of
//!    an unmounted source's empty mount point would call the whole backup extra.
//! 2. One dry run of the whole tree: the whole-tree push's own run
//!    ([`crate::rsync::args::verify_run`]: the same argv builder, so the target's
//!    transport — daemon password file, `--sockopts=TCP_NODELAY`, ssh args — the sync's
//!    `params`/`extra`, its excludes as concrete paths and hide rules, `-r --delete`),
//!    with `--dry-run --out-format=%i %n --stats`, and `--checksum` for `deep`. rsync's
//!    itemized lines are read as they come ([`itemize`]) into counts of entries
//!    missing, different and extra on the target. `--dry-run` is the safety: nothing on
//!    the target or the source changes, whatever the sync's options (ours come last, so
//!    they win). A daemon refusing as busy is tried again with a push's pauses and
//!    patience ([`crate::busy`]); a run whose `--stats` count changes it did not itemize
//!    (an option silenced the output) is a failure, never "equal".
//! 3. Not racing live pushes ([`Options::settle`], set when the daemon runs): a change
//!    made just before or during the dry run may not have been pushed yet, and is not
//!    drift. When the first run found drift, verify waits `settle` (the sync's `delay`
//!    plus a margin: long enough for the daemon to push what was queued), then dry-runs
//!    only the drifting paths again (the paths push's own run, [`crate::rsync::plan`],
//!    as a dry run). What no longer differs was in flight and is dropped. What still
//!    differs is drift — unless its source entry changed after the verify began (its
//!    ctime, or its parent directory's for an entry gone from the source): those are
//!    reported apart as *changing* (a file written continuously, a directory being
//!    filled), never as drift. What changed before the verify began had at least
//!    `settle` to arrive; still differing, it is drift (a file that failed to push, a
//!    file deleted or changed on the target) — also when one push of it takes longer
//!    than `settle`. Without the daemon there are no live pushes: no second run.
//!
//! `--fix` ([`fix_target`]): the drifting paths (not the whole tree) go through the
//! normal push ([`crate::push::execute`]) as one paths batch: the source-identity check
//! first, `--delete-missing-args` deleting on the target only listed paths that are
//! missing in the source at push time — exactly what a push of those paths after an
//! inotify event would do (with `deep`, the push compares by checksum too, or a file
//! differing only in content would be skipped again). An extra directory is listed once
//! (its deletion covers what is below it). The deletion guard (`max_delete`) applies to
//! the extra entries against the source's entry count from the dry run's `--stats`, as it
//! does to a whole-tree push: a fix never deletes what a whole-tree push would refuse
//! to. In `mode = "tree"` every push is a whole-tree push, and so is the fix (guarded as
//! such). The caller then verifies again.
//!
//! Must not: write anything to the target outside `--fix`'s push, write the state
//! directory, or check a source that is not the one recorded as watched.

pub mod itemize;
pub mod settle;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::batch::{is_within, Batch, RelPath};
use crate::busy::{patience, Pauses};
use crate::config::{SyncJob, Target};
use crate::guard::stats_counts;
use crate::push::{execute, Checks};
use crate::rsync::args::{plan, verify_run, Caps, Invocation};
use crate::rsync::exit::{classify, Class};
use crate::rsync::probe::probe_target;
use crate::rsync::run::run_each;
use crate::source_id::SourceId;
use crate::target::fallback_caps;
use crate::walk::{abs, excluded_paths};
pub use itemize::{Drift, Found, Kind};

/// How to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Compare file contents (`--checksum`), not only size and modification time.
    pub deep: bool,
    /// The daemon is running: re-check drifting paths after this long and count only
    /// what persists and did not change meanwhile (see the module doc).
    pub settle: Option<Duration>,
}

/// How long to wait before the re-check when the daemon runs: the sync's `delay` plus
/// this (the push itself, its start-up).
pub const SETTLE_MARGIN: Duration = Duration::from_secs(2);

/// The settle time for `job` while its daemon runs.
pub fn settle_for(job: &SyncJob) -> Duration {
    job.delay + SETTLE_MARGIN
}

/// What checking one target found.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// Drift: every path of each kind, in rsync's order.
    pub drift: Drift,
    /// Differences whose source entry changed while verify ran (not drift).
    pub changing: Found,
    /// Entries in the source, from the dry run's `--stats` (the deletion guard's base).
    pub source_entries: Option<u64>,
    pub elapsed: Duration,
}

/// Progress of a check in flight: itemized entries seen so far.
pub type Seen = Arc<AtomicU64>;

/// Check `target` of `job` (see the module doc). Err: why it could not be checked.
pub fn check_target(
    job: &SyncJob,
    target: &Target,
    source: Option<SourceId>,
    opts: Options,
    seen: Option<&Seen>,
) -> Result<Checked, String> {
    let started = Instant::now();
    let began = SystemTime::now();
    if let Some(Err(why)) = source.map(|id| id.check_job(job)) {
        return Err(format!("not checked: {why}"));
    }
    let excluded = excluded_paths(&job.source, &[], &job.exclude).map_err(|e| {
        format!(
            "cannot walk {} to find excluded paths: {e}",
            job.source.display()
        )
    })?;
    let inv = verify_run(job, target, &excluded, opts.deep);
    let (drift, other, items) = dry_run(&inv, job, target, seen)?;
    let stats = other.join("\n");
    if let Some(why) = silenced(items, &stats) {
        return Err(why);
    }
    let source_entries = stats_counts(&stats).map(|(files, _)| files);
    let mut checked = Checked {
        drift,
        changing: Found::default(),
        source_entries,
        elapsed: Duration::ZERO,
    };
    if let Some(wait) = opts.settle.filter(|_| !checked.drift.is_empty()) {
        // One bounded pause for the daemon's queue to drain (the module doc says why);
        // nothing here loops on a sleep.
        std::thread::sleep(wait);
        let again = recheck(job, target, &checked.drift, opts.deep)?;
        let persisting = settle::persisting(&checked.drift, &again);
        let (drift, changing) = settle::split_changing(persisting, |p| changed_at(job, p), began);
        checked.drift = drift;
        checked.changing = changing;
    }
    checked.elapsed = started.elapsed();
    Ok(checked)
}

/// rsync's `--stats` count changes the itemized lines do not show: an option of the sync
/// silenced them (an `--info=`/`--out-format` of its own); never call that "equal".
fn silenced(items: u64, stats: &str) -> Option<String> {
    let number = |label: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|rest| {
                rest.trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == ',')
                    .filter(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|d| d.parse().ok())
            .unwrap_or(0)
    };
    let (created, deleted) = (
        number("Number of created files:"),
        number("Number of deleted files:"),
    );
    (items == 0 && created + deleted > 0).then(|| {
        format!(
            "rsync's statistics count {created} entries to create and {deleted} to delete, but it listed none of them: an option in the sync's rsync params or extra silences its itemized output; remove it"
        )
    })
}

/// Dry-run only `drift`'s paths again (the paths push's runs, as dry runs).
fn recheck(job: &SyncJob, target: &Target, drift: &Drift, deep: bool) -> Result<Drift, String> {
    let batch = Batch {
        paths: sorted(drift.all_paths().cloned()),
        ..Batch::default()
    };
    let mut caps = Caps {
        delete_missing_args: true,
    };
    loop {
        let mut total = Drift::default();
        let mut fallback = None;
        for inv in plan(job, target, &batch, caps, &[]) {
            match dry_run_classified(&inv.into_verify(deep), job, target, None) {
                Ok((d, _, _)) => merge(&mut total, d),
                Err(e) => {
                    fallback = Some(e);
                    break;
                }
            }
        }
        match fallback {
            None => return Ok(total),
            Some((Some(class), _))
                if caps.delete_missing_args && class == Class::DeleteMissingArgsUnsupported =>
            {
                caps.delete_missing_args = false;
            }
            Some((_, e)) => return Err(e),
        }
    }
}

fn merge(into: &mut Drift, from: Drift) {
    for kind in itemize::KINDS {
        let f = from.get(kind);
        let to = into.of(kind);
        to.count += f.count;
        to.paths.extend(f.paths.iter().cloned());
    }
}

fn sorted(paths: impl Iterator<Item = RelPath>) -> Vec<RelPath> {
    paths.collect::<BTreeSet<_>>().into_iter().collect()
}

/// What one dry run printed: the drift, rsync's other lines, the itemized entries.
type Listed = (Drift, Vec<String>, u64);

/// Run one itemizing dry run; the drift (every path), rsync's other stdout lines and how
/// many itemized entries it printed.
fn dry_run(
    inv: &Invocation,
    job: &SyncJob,
    target: &Target,
    seen: Option<&Seen>,
) -> Result<Listed, String> {
    dry_run_classified(inv, job, target, seen).map_err(|(_, e)| e)
}

/// [`dry_run`], its error with the class of rsync's failure (None: rsync did not run). A
/// daemon with no connection free (a live push holds it, `max connections`) is tried
/// again after the push's own pauses ([`Pauses`]), for as long as a push would wait.
fn dry_run_classified(
    inv: &Invocation,
    job: &SyncJob,
    target: &Target,
    seen: Option<&Seen>,
) -> Result<Listed, (Option<Class>, String)> {
    let mut pauses = Pauses::new(patience(job.rsync.timeout));
    loop {
        match dry_run_once(inv, target, seen) {
            Err((Some(Class::Busy), e)) => match pauses.refused(Instant::now()) {
                // A scheduled pause (busy::Pauses), not a poll: nothing to wait for but time.
                Some(pause) => std::thread::sleep(pause),
                None => return Err((Some(Class::Busy), e)),
            },
            other => return other,
        }
    }
}

fn dry_run_once(
    inv: &Invocation,
    target: &Target,
    seen: Option<&Seen>,
) -> Result<Listed, (Option<Class>, String)> {
    let parser = Arc::new(Mutex::new(itemize::Itemizer::new(usize::MAX)));
    let feed = parser.clone();
    let seen = seen.cloned();
    let result = run_each(
        inv,
        Box::new(move |chunk| {
            let mut p = feed.lock().unwrap_or_else(|e| e.into_inner());
            p.feed(chunk);
            if let Some(s) = &seen {
                s.store(p.seen, Ordering::Relaxed);
            }
        }),
    )
    .map_err(|e| (None, format!("{e:#}")))?;
    let outcome = classify(result.code, result.signal, &result.stderr);
    if outcome.class != Class::Success {
        return Err((Some(outcome.class), outcome.message_for(&target.kind)));
    }
    let parser = match Arc::try_unwrap(parser) {
        Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
        // The stdout reader has ended with rsync; a clone still held would be a bug.
        Err(shared) => std::mem::replace(
            &mut *shared.lock().unwrap_or_else(|e| e.into_inner()),
            itemize::Itemizer::new(0),
        ),
    };
    Ok(parser.finish_counted())
}

/// The status file's record of a check that ended at `finished` after `took`.
pub fn status_of(
    result: &Result<Checked, String>,
    finished: SystemTime,
    took: Duration,
) -> crate::status::VerifyStatus {
    let (outcome, drift, error) = match result {
        Ok(c) if c.drift.is_empty() => ("equal", &c.drift, None),
        Ok(c) => ("drift", &c.drift, None),
        Err(e) => ("failed", &Drift::default(), Some(e.clone())),
    };
    crate::status::VerifyStatus {
        finished_at: crate::status::unix_secs(finished),
        outcome: outcome.into(),
        missing: drift.missing.count,
        different: drift.different.count,
        extra: drift.extra.count,
        seconds: took.as_secs_f64(),
        error,
    }
}

/// What `--fix` did for one target.
#[derive(Debug, Clone)]
pub struct Fixed {
    /// Paths listed in the push.
    pub paths: usize,
    pub elapsed: Duration,
}

/// Push exactly `checked`'s drift to `target` through the normal push (see the module
/// doc). Err: why nothing (or not everything) was pushed.
pub fn fix_target(
    job: &SyncJob,
    target: &Target,
    source: Option<SourceId>,
    checked: &Checked,
    deep: bool,
) -> Result<Fixed, String> {
    let extra = checked.drift.extra.count;
    if extra > 0 {
        let Some(entries) = checked.source_entries else {
            return Err("not fixed: rsync's --stats did not say how many entries the source holds, so the deletion guard cannot be applied (rsync before 3.1?)".into());
        };
        if let Some(why) = job.max_delete.verdict(extra, entries) {
            return Err(format!(
                "not fixed: deletion guard: {why}. Check the source {} (mounted? emptied by mistake?); if the deletions are right, run `syncd sync --full --force`",
                job.source.display()
            ));
        }
    }
    let batch = Batch {
        paths: fix_paths(&checked.drift),
        ..Batch::default()
    };
    if batch.paths.is_empty() {
        return Ok(Fixed {
            paths: 0,
            elapsed: Duration::ZERO,
        });
    }
    // A difference only --checksum sees (same size and mtime) is sent only by a push
    // that compares the same way.
    let deep_job;
    let job = if deep {
        let mut j = job.clone();
        j.rsync.extra.push("--checksum".into());
        deep_job = j;
        &deep_job
    } else {
        job
    };
    let mut caps = probe_target(job, target).map_err(|o| o.message_for(&target.kind))?;
    let checks = Checks {
        source,
        guard: true,
        one_at_a_time: false,
        impatient: false,
    };
    loop {
        let report = execute(job, target, &batch, caps, checks, None, None);
        if let Some(fallback) = fallback_caps(caps, &report.outcome) {
            caps = fallback;
            continue;
        }
        if report.outcome.class != Class::Success {
            return Err(format!(
                "the push of {} path{} failed: {}",
                batch.paths.len(),
                if batch.paths.len() == 1 { "" } else { "s" },
                report.outcome.message_for(&target.kind)
            ));
        }
        return Ok(Fixed {
            paths: batch.paths.len(),
            elapsed: report.elapsed,
        });
    }
}

/// The paths `--fix` pushes: every drifting path, sorted, without paths below an extra
/// directory (listing the directory deletes it whole, `--force`).
pub fn fix_paths(drift: &Drift) -> Vec<RelPath> {
    let all = sorted(drift.all_paths().cloned());
    let extra: BTreeSet<&RelPath> = drift.extra.paths.iter().collect();
    all.iter()
        .filter(|p| !extra.iter().any(|e| *e != *p && is_within(p, e)))
        .cloned()
        .collect()
}

/// When the source entry at `rel` last changed (ctime, not following a symlink); for an
/// entry gone from the source, when its nearest existing parent directory changed (a
/// deletion changes it). None when nothing on the way can be looked at.
fn changed_at(job: &SyncJob, rel: &[u8]) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let mut at: &[u8] = rel;
    loop {
        if let Ok(meta) = std::fs::symlink_metadata(abs(&job.source, at)) {
            let secs = u64::try_from(meta.ctime()).ok()?;
            let nanos = u32::try_from(meta.ctime_nsec()).unwrap_or(0);
            return SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos));
        }
        if at.is_empty() {
            return None;
        }
        at = match at.iter().rposition(|b| *b == b'/') {
            Some(i) => &at[..i],
            None => b"",
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itemized_output_silenced_by_an_option_is_a_failure_not_equal() {
        let stats = "Number of files: 13 (reg: 8, dir: 4, link: 1)\nNumber of created files: 8 (reg: 5, dir: 2, link: 1)\nNumber of deleted files: 4 (reg: 2, dir: 2)\n";
        assert!(silenced(0, stats).is_some());
        assert_eq!(silenced(12, stats), None);
        let none = "Number of files: 3\nNumber of created files: 0\nNumber of deleted files: 0\n";
        assert_eq!(silenced(0, none), None);
    }

    #[test]
    fn fix_lists_an_extra_directory_once_and_everything_else_as_found() {
        let drift = Drift {
            missing: Found::listing(&["new", "newdir", "newdir/f"]),
            different: Found::listing(&["changed"]),
            extra: Found::listing(&["gone/deep/x", "gone/deep", "gone", "extra"]),
        };
        let got: Vec<String> = fix_paths(&drift)
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        assert_eq!(
            got,
            ["changed", "extra", "gone", "new", "newdir", "newdir/f"]
        );
    }
}
