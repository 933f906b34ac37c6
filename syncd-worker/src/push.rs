//! One push: the rsync runs that carry one batch to one target. Runs on its own thread
//! (a target's pushes in flight never touch the same paths, see [`crate::pipeline`]),
//! checks first that the
//! source path still names the watched directory ([`Checks::source`]), looks at what each
//! directory queued to go whole is now (lstat: one that became a file, a symlink or
//! nothing is pushed as a path, see [`as_it_is_now`]), leaves out what lies below a
//! symlink of the source ([`crate::parents`]: rsync would follow it), seeds renamed directories
//! ([`seed`]), plans the runs, finds the concrete
//! excluded paths under whatever rsync will recurse into, counts what a whole-tree run
//! would delete (the deletion guard, [`crate::guard`]), runs up to `threads` rsync
//! processes at once, and reduces their exit codes to one [`Outcome`]. It never touches
//! the queue, the fail log or the status: it reports, the engine decides.
//!
//! A busy daemon (`max connections` reached, [`Class::Busy`]): the refused run is tried
//! again after a short pause ([`crate::busy::Pauses`]: 100 ms growing to 2 s), and from
//! then on the push runs its remaining invocations one at a time (runs already under
//! way finish; none that succeeded is repeated): see [`runs`]. Only a daemon still busy
//! after the patience makes the push report Busy. A target known to limit connections
//! is pushed one run at a time from the start. A push started beside another
//! ([`Checks::impatient`]) has no patience: the first refusal ends it (Busy), its batch
//! waits in the queue for the push that holds the connection.
//!
//! Renamed directories ([`Batch::seeds`]): after the source check and before any run that
//! can delete a renamed directory's old path on the target, [`seed`] pushes each new path
//! whole from the target's old copy (`--copy-dest`), preceded by one prepare run that
//! makes the new paths real directories there; a seeded tree leaves the batch's trees
//! run, a failed seed does not (the data is sent, nothing lost). Measured against an
//! rsync 3.5.0 daemon on 127.0.0.1, `mv` of a 10 MB directory of 100 files: the daemon
//! received 10,008,338 bytes before, ~1,550 after (`RsyncDaemon::received_after`, e2e
//! `renames`). The relative basis (`../d1`) works into a daemon module with and without
//! `use chroot` (the daemon resolves it inside the module and clamps any `..` past the
//! module's root, so it cannot name anything outside), an ssh path and a local path; a
//! basis that does not exist is only a warning (rsync sends the data, exit 0).
//!
//! Progress: given a [`SharedProgress`], a push that may take a while (a whole-tree push,
//! directories pushed whole, or [`PROGRESS_MIN_PATHS`] paths and more) asks rsync for
//! `--info=progress2` and keeps the latest record of its runs there (runs of one split
//! batch take turns in it).

mod runs;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::batch::{Batch, Move, RelPath};
use crate::busy::patience;
use crate::config::{SyncJob, Target};
use crate::failing::FailedPath;
use crate::guard::{stats_counts, DeleteGuard};
use crate::parents::look::look;
use crate::parents::{describe, screen_batch, Screen};
use crate::progress::SharedProgress;
use crate::rsync::args::{plan, prepare_run, seed_run, seeding_safe, Caps, Invocation};
use crate::rsync::exit::{Class, Outcome};
use crate::rsync::failures::{relative, Failure, Roots};
use crate::source_id::SourceId;
use crate::walk::{abs, excluded_paths};
use runs::{run_all, run_capturing, Runs};
pub use runs::{shared_waiting, waiting_since, SharedWaiting};

/// What a push came to.
#[derive(Debug)]
pub struct PushReport {
    pub outcome: Outcome,
    /// rsync processes started (runs tried again after a refusal count again).
    pub runs: usize,
    /// The daemon refused a run as busy (it limits connections), even if a later try
    /// got through.
    pub refused_busy: bool,
    pub elapsed: Duration,
    /// Nothing was run: the source path no longer names the watched directory (why).
    pub source_lost: Option<String>,
    /// The push failed only because of these paths (every failed run was an exit 23 whose
    /// stderr names each of them, relative to the source root); None when it did not
    /// fail, or failed otherwise. Whether they are part of the batch is the engine's
    /// question ([`crate::failing::split`]).
    pub failed: Option<Vec<FailedPath>>,
}

/// What a push checks before it runs, and how it runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checks {
    /// The watched directory: the source path must still name it (None: not checked).
    pub source: Option<SourceId>,
    /// Whole-tree runs go through the deletion guard (false: `sync --full --force`).
    pub guard: bool,
    /// The target is known to limit connections: its runs do not overlap.
    pub one_at_a_time: bool,
    /// A busy daemon ends the push at once (it runs beside another push, which holds the
    /// connection): no pause, no second try; the push reports [`Class::Busy`].
    pub impatient: bool,
}

/// A paths-only batch this large reports progress too.
pub const PROGRESS_MIN_PATHS: usize = 1000;

/// Push `batch` to `target` now, blocking until every run has ended. With `progress`, a
/// large push publishes rsync's progress there as it goes; with `waiting`, the push says
/// there since when it has been waiting for a busy daemon.
pub fn execute(
    job: &SyncJob,
    target: &Target,
    batch: &Batch,
    caps: Caps,
    checks: Checks,
    progress: Option<&SharedProgress>,
    waiting: Option<&SharedWaiting>,
) -> PushReport {
    let started = Instant::now();
    // Safety rule: never push (above all, never delete) from a directory that is not the
    // one watched — an unmounted file system's empty mount point, a swapped-in directory.
    if let Some(Err(why)) = checks.source.map(|id| id.check_job(job)) {
        return PushReport::nothing_run(retry(why.clone()), Some(why), started);
    }
    let batch = &as_it_is_now(&job.source, batch);
    // Just before the runs: nothing listed below a symlink (rsync would follow it).
    let batch = &beneath_real_dirs(job, batch);
    let progress = progress.filter(|_| wants_progress(job, batch));
    let patience = if checks.impatient {
        Duration::ZERO
    } else {
        patience(job.rsync.timeout)
    };
    // Before any run that can delete a renamed directory's old path on the target.
    let seeded = seed(job, target, batch, checks, patience, progress, waiting);
    if let Some(busy) = seeded.busy {
        return PushReport {
            runs: seeded.runs,
            refused_busy: true,
            ..PushReport::nothing_run(busy, None, started)
        };
    }
    let batch = &without_trees(batch, &seeded.trees);
    let mut planned = match plan_runs(job, target, batch, caps, checks.guard) {
        Ok(planned) => planned,
        Err(outcome) => return PushReport::nothing_run(outcome, None, started),
    };
    if progress.is_some() {
        planned = planned.into_iter().map(Planned::with_progress).collect();
    }
    let mut cleared = clear_with_guard(job, planned, patience, waiting);
    cleared.before_runs += seeded.runs;
    cleared.refused_busy |= seeded.refused_busy;
    let runs = run_all(
        &cleared.runs,
        job.threads.max(1),
        checks.one_at_a_time || cleared.refused_busy,
        patience,
        progress,
        waiting,
    );
    report(job, target, cleared, runs, started)
}

/// A renamed directory holding less file data than this is sent again rather than
/// seeded: a seed costs two more rsync runs (prepare and seed, ~0.1 s each to a daemon
/// on 127.0.0.1), more than sending this much on any LAN.
pub const SEED_MIN_BYTES: u64 = 1 << 20;

/// Entries looked at, at most, to decide whether a renamed directory is worth seeding:
/// one this large is (its file list alone is worth not sending twice), and the look
/// stays cheap.
const SEED_LOOK_MAX: usize = 10_000;

/// What the seed runs came to.
#[derive(Debug, Default)]
struct Seeded {
    /// Trees the seed runs pushed whole: the batch's own runs leave them out.
    trees: Vec<RelPath>,
    /// rsync processes started.
    runs: usize,
    refused_busy: bool,
    /// The daemon stayed busy past the patience: nothing else is run.
    busy: Option<Outcome>,
}

/// Seed each renamed directory of `batch` that is worth it ([`Batch::seeds`],
/// [`worth_seeding`]) from the target's copy of its old path, before any run can delete
/// that copy: one prepare run, then the seed runs (up to `threads` at once; they write
/// disjoint trees and read none of them). A seed that fails (the old copy missing is not
/// a failure: rsync then sends the data) leaves its tree to the batch's trees run; so
/// does a failed prepare, for all of them. Nothing here deletes outside a seeded tree.
///
/// Why `--copy-dest` and not `--link-dest`: measured on 127.0.0.1 (a 10 MB directory of
/// 100 files), both receive ~1.5 KB instead of 10 MB; `--link-dest` takes ~0.1 s,
/// `--copy-dest` ~0.2 s (the receiver copies the data locally). But a hard link would
/// outlive the push whenever the old path is not deleted by it (made again in the
/// source, `cp -a d2 d1` after `mv d1 d2`; a failing delete): the target would then hold
/// two names for one inode where the source has two files, and a later attribute change
/// pushed to one (rsync's chmod/chown/utime act in place) would silently change the
/// other. A copy shares nothing.
fn seed(
    job: &SyncJob,
    target: &Target,
    batch: &Batch,
    checks: Checks,
    patience: Duration,
    progress: Option<&SharedProgress>,
    waiting: Option<&SharedWaiting>,
) -> Seeded {
    if !seeding_safe(job) {
        return Seeded::default();
    }
    let moves: Vec<Move> = batch
        .seeds()
        .into_iter()
        .filter(|m| worth_seeding(&abs(&job.source, &m.to)))
        .collect();
    if moves.is_empty() {
        return Seeded::default();
    }
    let tos: Vec<RelPath> = moves.iter().map(|m| m.to.clone()).collect();
    let excluded = match excluded_paths(&job.source, &tos, &job.exclude) {
        Ok(found) => found,
        Err(e) => {
            log::info!(
                "{}: not seeding renamed directories (cannot walk them: {e}); sending them again",
                job.name
            );
            return Seeded::default();
        }
    };
    let mut seeded = Seeded::default();
    let prepare = [prepare_run(job, target, &moves)];
    let prepared = run_all(&prepare, 1, checks.one_at_a_time, patience, None, waiting);
    seeded.runs += prepared.started;
    seeded.refused_busy |= prepared.refused_busy;
    if prepared.succeeded.is_empty() {
        seeded.note_failures(job, prepared.outcomes);
        return seeded;
    }
    let invs: Vec<Invocation> = moves
        .iter()
        .map(|m| {
            let inv = seed_run(job, target, m, &excluded);
            if progress.is_some() {
                inv.with_progress()
            } else {
                inv
            }
        })
        .collect();
    let runs = run_all(
        &invs,
        job.threads.max(1),
        checks.one_at_a_time || seeded.refused_busy,
        patience,
        progress,
        waiting,
    );
    seeded.runs += runs.started;
    seeded.refused_busy |= runs.refused_busy;
    seeded.trees = runs.succeeded.iter().map(|i| tos[*i].clone()).collect();
    log::debug!(
        "{} → {}: seeded {} of {} renamed director{} from the target's old copies",
        job.name,
        target.name,
        seeded.trees.len(),
        moves.len(),
        if moves.len() == 1 { "y" } else { "ies" }
    );
    seeded.note_failures(job, runs.outcomes);
    seeded
}

impl Seeded {
    /// Log what did not work (the trees are sent by the batch's runs instead); a daemon
    /// that stayed busy ends the push.
    fn note_failures(&mut self, job: &SyncJob, outcomes: Vec<Outcome>) {
        for o in outcomes.into_iter().filter(|o| o.class != Class::Success) {
            if o.class == Class::Busy {
                self.busy = Some(o);
            } else {
                log::info!(
                    "{}: seeding a renamed directory failed ({}); it is sent whole instead",
                    job.name,
                    o.message
                );
            }
        }
    }
}

/// Does the directory at `dir` hold at least [`SEED_MIN_BYTES`] of file data (or more
/// than [`SEED_LOOK_MAX`] entries)? Stops as soon as it knows; an unreadable part
/// counts as nothing.
fn worth_seeding(dir: &Path) -> bool {
    let (mut bytes, mut seen) = (0u64, 0usize);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            // DirEntry::metadata does not follow a symlink.
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => bytes += m.len(),
                _ => {}
            }
            if bytes >= SEED_MIN_BYTES || seen > SEED_LOOK_MAX {
                return true;
            }
        }
    }
    false
}

/// `batch` without the trees in `done` (sorted).
fn without_trees(batch: &Batch, done: &[RelPath]) -> Batch {
    if done.is_empty() {
        return batch.clone();
    }
    Batch {
        trees: batch
            .trees
            .iter()
            .filter(|t| done.binary_search(t).is_err())
            .cloned()
            .collect(),
        ..batch.clone()
    }
}

impl PushReport {
    /// A push stopped before any rsync run.
    fn nothing_run(outcome: Outcome, source_lost: Option<String>, started: Instant) -> Self {
        PushReport {
            outcome,
            runs: 0,
            refused_busy: false,
            elapsed: started.elapsed(),
            source_lost,
            failed: None,
        }
    }
}

/// A failure to try again later, with no exit code (nothing ran).
fn retry(message: String) -> Outcome {
    Outcome {
        class: Class::Retry,
        code: None,
        message,
    }
}

/// One rsync run to make, and whether the deletion guard checks it first.
struct Planned {
    inv: Invocation,
    guarded: bool,
}

impl Planned {
    /// The run asking rsync for `--info=progress2` (its dry run too).
    fn with_progress(self) -> Planned {
        Planned {
            inv: self.inv.with_progress(),
            ..self
        }
    }
}

/// The runs that carry `batch`, part by part ([`parts`]), each with the concrete excluded
/// paths under what it recurses into. With `guard`, whole-tree runs are marked for the
/// deletion guard (unless `max_delete` is off). Err: the tree could not be walked.
fn plan_runs(
    job: &SyncJob,
    target: &Target,
    batch: &Batch,
    caps: Caps,
    guard: bool,
) -> Result<Vec<Planned>, Outcome> {
    let mut planned = Vec::new();
    for part in parts(job, batch) {
        let excluded = excluded_for(job, &part).map_err(|e| {
            retry(format!(
                "cannot walk {} to find excluded paths: {e}",
                job.source.display()
            ))
        })?;
        let guarded = guard && job.max_delete != DeleteGuard::Off && pushes_whole_tree(job, &part);
        planned.extend(
            plan(job, target, &part, caps, &excluded)
                .into_iter()
                .map(|inv| Planned { inv, guarded }),
        );
    }
    Ok(planned)
}

/// What the deletion guard let through.
struct Cleared {
    /// The runs to make; a guarded one with the `--max-delete` the guard allows.
    runs: Vec<Invocation>,
    /// Why the guard stopped runs (they are not made).
    stopped: Vec<Outcome>,
    /// rsync processes started before the push's own runs: the guard's dry runs and
    /// the seed runs.
    before_runs: usize,
    /// The daemon refused a dry run as busy.
    refused_busy: bool,
}

/// Put each guarded run through the deletion guard's dry run ([`check_guard`]); the
/// others pass as they are.
fn clear_with_guard(
    job: &SyncJob,
    planned: Vec<Planned>,
    patience: Duration,
    waiting: Option<&SharedWaiting>,
) -> Cleared {
    let mut cleared = Cleared {
        runs: Vec::with_capacity(planned.len()),
        stopped: Vec::new(),
        before_runs: 0,
        refused_busy: false,
    };
    for Planned { inv, guarded } in planned {
        if !guarded {
            cleared.runs.push(inv);
            continue;
        }
        let (verdict, runs, refused) = check_guard(job, &inv, patience, waiting);
        cleared.before_runs += runs;
        cleared.refused_busy |= refused;
        match verdict {
            Ok(allowed) => cleared.runs.push(inv.with_max_delete(allowed)),
            Err(outcome) => cleared.stopped.push(outcome),
        }
    }
    cleared
}

/// The push's report from the guard's verdicts and the runs' outcomes: the worst
/// outcome, and the failing paths when the push failed only because of named paths.
fn report(
    job: &SyncJob,
    target: &Target,
    cleared: Cleared,
    runs: Runs,
    started: Instant,
) -> PushReport {
    let guard_failed = !cleared.stopped.is_empty();
    let mut outcomes = cleared.stopped;
    outcomes.extend(runs.outcomes);
    let outcome = worst(outcomes);
    let failed = match runs.named {
        Some(named) if outcome.class == Class::Retry && !guard_failed && !named.is_empty() => {
            name_failures(&named, &roots(job, target))
        }
        _ => None,
    };
    PushReport {
        runs: runs.started + cleared.before_runs,
        refused_busy: runs.refused_busy || cleared.refused_busy,
        outcome,
        elapsed: started.elapsed(),
        source_lost: None,
        failed,
    }
}

/// Where rsync's messages about `job` → `target` are rooted: the source directory, and
/// the destination directory when the receiver prints absolute paths (see
/// [`crate::config::TargetKind::receiver_root`]).
fn roots(job: &SyncJob, target: &Target) -> Roots {
    use std::os::unix::ffi::OsStrExt;
    Roots {
        source: job.source.as_os_str().as_bytes().to_vec(),
        dest: target.kind.receiver_root(),
    }
}

/// rsync's failures as paths relative to the source root with their reasons, or None
/// when one cannot be placed.
fn name_failures(named: &[Failure], roots: &Roots) -> Option<Vec<FailedPath>> {
    named
        .iter()
        .map(|f| {
            Some(FailedPath {
                path: relative(f, roots)?,
                below_too: f.below_too,
                reason: format!("{}: {}", f.what, f.error),
            })
        })
        .collect()
}

/// A whole-tree push: `-r --delete` from the top, the one kind the deletion guard checks.
fn pushes_whole_tree(job: &SyncJob, batch: &Batch) -> bool {
    batch.whole_tree(job.mode)
}

/// The deletion guard for one whole-tree run ([`crate::guard`]): a dry run with
/// `--stats` counts what it would delete. Ok(the `--max-delete` to run it with: what the
/// guard allows, a cap should the source change in between) or Err(why not: nothing is
/// run). Also returns the rsync processes started and whether the daemon refused one as
/// busy. The dry run is one more file-list exchange per whole-tree push.
fn check_guard(
    job: &SyncJob,
    inv: &Invocation,
    patience: Duration,
    waiting: Option<&SharedWaiting>,
) -> (Result<u64, Outcome>, usize, bool) {
    let dry = inv.clone().with_dry_run_stats();
    let (outcome, stdout, runs, refused) = run_capturing(&dry, patience, waiting);
    if outcome.class != Class::Success {
        return (Err(outcome), runs, refused);
    }
    let verdict = match stats_counts(&stdout) {
        None => Err(Outcome {
            class: Class::ConfigError,
            code: None,
            message: "deletion guard: rsync's --stats did not say how many entries the push would delete (rsync before 3.1?); nothing pushed. Upgrade rsync, or set max_delete = \"off\" for this sync".into(),
        }),
        Some((source_entries, deletions)) => match job.max_delete.verdict(deletions, source_entries) {
            Some(why) => Err(Outcome {
                class: Class::ConfigError,
                code: None,
                message: format!(
                    "deletion guard: {why}; nothing was pushed. Check the source {} (mounted? emptied or restored by mistake?); if the deletions are right, run `syncd sync --full --force` (or raise max_delete)",
                    job.source.display()
                ),
            }),
            None => {
                if deletions > 0 {
                    log::info!(
                        "{}: whole-tree push: deleting {deletions} entr{} on the target (max_delete = {}, {source_entries} entries in the source)",
                        job.name,
                        if deletions == 1 { "y" } else { "ies" },
                        job.max_delete
                    );
                }
                Ok(job.max_delete.allowed(source_entries).unwrap_or(deletions))
            }
        },
    };
    (verdict, runs, refused)
}

/// `batch` with every tree that is no longer a directory moved to the paths. A directory
/// queued to go whole may be a file, a symlink or gone by push time (`mkdir d; ...; rm -r
/// d; echo data > d`: the queue keeps the `Tree`). The trees run's `+ /d/***` rule only
/// matches a directory, so rsync would delete the target's `d`, exit 0, and never send
/// the file; the paths run pushes a path as whatever it is, and deletes a missing one. A
/// tree that cannot be looked at (not "not found") stays a tree: rsync reports the error.
fn as_it_is_now(source: &Path, batch: &Batch) -> Batch {
    if batch.trees.is_empty() {
        return batch.clone();
    }
    let mut out = Batch {
        trees: Vec::with_capacity(batch.trees.len()),
        ..batch.clone()
    };
    let mut moved = false;
    for tree in &batch.trees {
        let now = match std::fs::symlink_metadata(abs(source, tree)) {
            Ok(meta) if meta.is_dir() => None,
            Ok(meta) if meta.is_symlink() => Some("a symlink"),
            Ok(_) => Some("a file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("gone"),
            Err(_) => None,
        };
        match now {
            None => out.trees.push(tree.clone()),
            Some(what) => {
                log::debug!(
                    "{}: queued as a directory, now {what}: pushed as a path",
                    String::from_utf8_lossy(tree)
                );
                out.paths.push(tree.clone());
                moved = true;
            }
        }
    }
    if moved {
        out.paths.sort();
        out.paths.dedup();
    }
    out
}

/// `batch` without what lies below a symlink in the source (see [`crate::parents`]); each
/// symlink found goes as a path itself, and what was left out is logged once, here (it
/// is neither retried nor deleted).
fn beneath_real_dirs(job: &SyncJob, batch: &Batch) -> Batch {
    let mut screen = Screen::new(|rel: &[u8]| look(&job.source, rel));
    let (out, below) = screen_batch(batch, &mut screen);
    for line in describe(&below) {
        log::warn!("{}: {line}", job.name);
    }
    out
}

/// Is this push big enough to be worth a progress display?
fn wants_progress(job: &SyncJob, batch: &Batch) -> bool {
    batch.whole_tree(job.mode) || !batch.trees.is_empty() || batch.paths.len() >= PROGRESS_MIN_PATHS
}

/// The batches to plan separately. A periodic full push is its own part (planned with
/// its own excludes); the changes queued with it that `full_sync.exclude` leaves out of
/// it are a second part, planned with the sync's excludes only. Anything else is one
/// part.
fn parts(job: &SyncJob, batch: &Batch) -> Vec<Batch> {
    if !(batch.full && batch.periodic) {
        return vec![batch.clone()];
    }
    let Some(periodic) = job.full_sync.exclude.as_ref() else {
        return vec![Batch::full()];
    };
    let left_out = |list: &[RelPath]| -> Vec<RelPath> {
        list.iter()
            .filter(|p| periodic.is_excluded(p))
            .cloned()
            .collect()
    };
    let rest = Batch {
        paths: left_out(&batch.paths),
        trees: left_out(&batch.trees),
        ..Batch::default()
    };
    vec![Batch::periodic(), rest]
}

/// Concrete excluded paths under what the runs will recurse into: the trees, or the
/// whole source for a full push. The sync's `exclude` applies to every push; the periodic
/// full push leaves out what `full_sync.exclude` matches too.
fn excluded_for(job: &SyncJob, batch: &Batch) -> std::io::Result<Vec<Vec<u8>>> {
    if batch.full {
        let mut found = excluded_paths(&job.source, &[], &job.exclude)?;
        if let Some(periodic) = job.full_sync.exclude.as_ref().filter(|_| batch.periodic) {
            found.extend(excluded_paths(&job.source, &[], periodic)?);
            found = highest_only(found);
        }
        Ok(found)
    } else if !batch.trees.is_empty() {
        excluded_paths(&job.source, &batch.trees, &job.exclude)
    } else {
        Ok(Vec::new())
    }
}

/// Sorted, without duplicates, and without paths below another one of the list.
fn highest_only(paths: Vec<RelPath>) -> Vec<RelPath> {
    let all: std::collections::BTreeSet<RelPath> = paths.into_iter().collect();
    all.iter()
        .filter(|p| {
            !p.iter()
                .enumerate()
                .any(|(i, b)| *b == b'/' && all.contains(&p[..i]))
        })
        .cloned()
        .collect()
}

/// The outcome that matters most: a needed fallback, then a configuration error, then a
/// retry, then a daemon that stayed busy (the only trouble: try again soon); success
/// only when every run succeeded.
fn worst(outcomes: Vec<Outcome>) -> Outcome {
    let rank = |c: &Class| match c {
        Class::Success => 0,
        Class::Busy => 1,
        Class::Retry => 2,
        Class::ConfigError => 3,
        Class::DeleteMissingArgsUnsupported => 4,
    };
    outcomes
        .into_iter()
        .max_by_key(|o| rank(&o.class))
        .unwrap_or(Outcome {
            class: Class::Success,
            code: Some(0),
            message: "nothing to do".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, TargetKind};
    use crate::progress::{shared, snapshot};
    use crate::rsync::tests::{job, local};

    const DMA: Caps = Caps {
        delete_missing_args: true,
    };
    const GUARDED: Checks = Checks {
        source: None,
        guard: true,
        one_at_a_time: false,
        impatient: false,
    };

    fn tree(files: usize, size: usize) -> tempfile::TempDir {
        let src = tempfile::tempdir().expect("tempdir");
        for i in 0..files {
            let dir = src.path().join(format!("d{}", i % 7));
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join(format!("f{i}")), vec![b'x'; size]).expect("write");
        }
        src
    }

    #[test]
    fn whole_tree_push_with_real_rsync_reports_progress() {
        let src = tree(120, 20_000);
        let dst = tempfile::tempdir().expect("tempdir");
        let target = local(dst.path());
        let j = job(src.path(), vec![target.clone()]);
        let slot = shared();
        let report = execute(&j, &target, &Batch::full(), DMA, GUARDED, Some(&slot), None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        let p = snapshot(&slot).expect("a whole-tree push reports progress");
        assert_eq!(p.bytes, 120 * 20_000, "{p:?}");
        assert_eq!(p.percent, 100, "{p:?}");
        // 120 files, 7 directories and the top directory.
        assert_eq!((p.files_done, p.files_total), (128, Some(128)), "{p:?}");
        assert_eq!(p.eta_secs, Some(0));
        assert!(dst.path().join("d3/f3").is_file());
    }

    #[test]
    fn small_paths_push_reports_no_progress_and_none_without_a_slot() {
        let src = tree(3, 10);
        let dst = tempfile::tempdir().expect("tempdir");
        let target = local(dst.path());
        let j = job(src.path(), vec![target.clone()]);
        let slot = shared();
        let batch = Batch {
            paths: vec![b"d0".to_vec(), b"d0/f0".to_vec()],
            ..Batch::default()
        };
        let report = execute(&j, &target, &batch, DMA, GUARDED, Some(&slot), None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        assert_eq!(snapshot(&slot), None);
        assert!(dst.path().join("d0/f0").is_file());
        let report = execute(&j, &target, &Batch::full(), DMA, GUARDED, None, None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        assert!(dst.path().join("d2/f2").is_file());
    }

    #[test]
    fn a_queued_tree_is_pushed_as_what_it_is_now() {
        // The target holds each name as a directory with contents; at push time the
        // source has a file, a symlink or nothing there, and a path queued as a file is
        // now a directory (the reverse).
        let (src, dst) = (tempdir(), tempdir());
        let (s, d) = (src.path(), dst.path());
        for name in ["now-file", "now-link", "now-gone", "still-dir"] {
            std::fs::create_dir_all(d.join(name).join("sub")).expect("mkdir");
            std::fs::write(d.join(name).join("sub/f"), b"old").expect("write");
        }
        std::fs::write(d.join("was-file"), b"a file on the target").expect("write");
        std::fs::write(s.join("now-file"), b"data").expect("write");
        std::os::unix::fs::symlink("now-file", s.join("now-link")).expect("symlink");
        std::fs::create_dir(s.join("still-dir")).expect("mkdir");
        std::fs::write(s.join("still-dir/new"), b"new").expect("write");
        std::fs::create_dir(s.join("was-file")).expect("mkdir");
        let target = local(d);
        let j = job(s, vec![target.clone()]);
        let batch = Batch {
            paths: vec![b"was-file".to_vec()],
            trees: ["now-file", "now-gone", "now-link", "still-dir"]
                .iter()
                .map(|t| t.as_bytes().to_vec())
                .collect(),
            ..Batch::default()
        };
        for caps in [
            DMA,
            Caps {
                delete_missing_args: false,
            },
        ] {
            let report = execute(&j, &target, &batch, caps, GUARDED, None, None);
            assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
            assert_eq!(
                std::fs::read(d.join("now-file")).ok(),
                Some(b"data".to_vec())
            );
            assert_eq!(
                std::fs::read_link(d.join("now-link")).ok(),
                Some(std::path::PathBuf::from("now-file"))
            );
            assert!(d.join("now-gone").symlink_metadata().is_err());
            assert!(d.join("still-dir/new").is_file() && !d.join("still-dir/sub").exists());
            assert!(d.join("was-file").is_dir());
        }
    }

    #[test]
    fn as_it_is_now_moves_only_non_directories_and_keeps_paths_sorted() {
        let src = tempfile::tempdir().expect("tempdir");
        let s = src.path();
        std::fs::create_dir(s.join("dir")).expect("mkdir");
        std::fs::write(s.join("b-file"), b"x").expect("write");
        let batch = Batch {
            paths: vec![b"a".to_vec(), b"c".to_vec()],
            trees: vec![b"b-file".to_vec(), b"dir".to_vec(), b"d-gone".to_vec()],
            ..Batch::default()
        };
        let now = as_it_is_now(s, &batch);
        assert_eq!(now.trees, vec![b"dir".to_vec()]);
        assert_eq!(
            now.paths,
            vec![
                b"a".to_vec(),
                b"b-file".to_vec(),
                b"c".to_vec(),
                b"d-gone".to_vec()
            ]
        );
        assert_eq!(as_it_is_now(s, &Batch::full()), Batch::full());
    }

    fn excludes(patterns: &[&str]) -> crate::exclude::ExcludeSet {
        crate::exclude::ExcludeSet::new(patterns).expect("valid patterns")
    }

    #[test]
    fn exclude_applies_to_every_full_push_and_full_sync_exclude_to_the_periodic_one() {
        let src = tree(0, 0);
        let s = src.path();
        for f in ["cache/x", "big/y", "plain"] {
            std::fs::create_dir_all(s.join(f).parent().expect("parent")).expect("mkdir");
            std::fs::write(s.join(f), f).expect("write");
        }
        let push = |batch: &Batch| {
            let dst = tempfile::tempdir().expect("tempdir");
            let target = local(dst.path());
            let mut j = job(s, vec![target.clone()]);
            j.exclude = excludes(&["^cache$"]);
            // Narrower than `exclude`, and different.
            j.full_sync.exclude = Some(excludes(&["^big$"]));
            let report = execute(&j, &target, batch, DMA, GUARDED, None, None);
            assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
            let has = |f: &str| dst.path().join(f).exists();
            (has("plain"), has("cache/x"), has("big/y"))
        };
        assert_eq!(
            push(&Batch::full()),
            (true, false, true),
            "ordinary full push"
        );
        assert_eq!(
            push(&Batch::periodic()),
            (true, false, false),
            "periodic push"
        );
        // A change queued with the periodic push that the periodic excludes leave out
        // still goes (beside it), with the sync's own excludes.
        let with_change = Batch {
            paths: vec![b"big/y".to_vec(), b"plain".to_vec()],
            ..Batch::periodic()
        };
        assert_eq!(
            push(&with_change),
            (true, false, true),
            "periodic + changes"
        );
    }

    #[test]
    fn parts_of_a_periodic_push_with_changes() {
        let src = tempfile::tempdir().expect("tempdir");
        let mut j = job(src.path(), vec![]);
        let batch = Batch {
            paths: vec![b"a".to_vec(), b"big/f".to_vec()],
            trees: vec![b"big".to_vec(), b"d".to_vec()],
            ..Batch::periodic()
        };
        assert_eq!(
            parts(&j, &batch),
            vec![Batch::full()],
            "no full_sync.exclude"
        );
        j.full_sync.exclude = Some(excludes(&["^big$"]));
        let rest = Batch {
            paths: vec![b"big/f".to_vec()],
            trees: vec![b"big".to_vec()],
            ..Batch::default()
        };
        assert_eq!(parts(&j, &batch), vec![Batch::periodic(), rest]);
        assert_eq!(parts(&j, &Batch::full()), vec![Batch::full()]);
    }

    #[test]
    fn highest_only_keeps_the_outermost_paths() {
        let v = |l: &[&str]| -> Vec<RelPath> { l.iter().map(|s| s.as_bytes().to_vec()).collect() };
        assert_eq!(
            highest_only(v(&["a/b", "a b", "a", "c/d/e", "c/d", "a/b/c", "c/d"])),
            v(&["a", "a b", "c/d"])
        );
    }

    #[test]
    fn a_target_only_path_matching_an_exclude_is_not_protected_by_a_full_push() {
        // Documented limit (init/syncd.toml, `exclude`): excludes are regular expressions,
        // rsync filters are globs, so syncd hands rsync the excluded paths it finds in the
        // source. One that exists only on the target is extraneous to rsync and deleted
        // by a push that deletes (full push, or a tree it is inside); one that also exists
        // in the source is left alone on the target.
        let src = tree(0, 0);
        let dst = tempfile::tempdir().expect("tempdir");
        let (s, d) = (src.path(), dst.path());
        std::fs::create_dir_all(s.join("logs")).expect("mkdir");
        std::fs::write(s.join("logs/debug.log"), b"source copy").expect("write");
        std::fs::write(d.join("x.swp"), b"target only").expect("write");
        std::fs::create_dir_all(d.join("logs")).expect("mkdir");
        std::fs::write(d.join("logs/debug.log"), b"target copy").expect("write");
        let target = local(d);
        let mut j = job(s, vec![target.clone()]);
        j.exclude = excludes(&["\\.swp$", "^logs/debug\\.log$"]);
        let report = execute(&j, &target, &Batch::full(), DMA, GUARDED, None, None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        assert!(
            !d.join("x.swp").exists(),
            "target-only excluded file deleted"
        );
        assert_eq!(
            std::fs::read(d.join("logs/debug.log")).ok(),
            Some(b"target copy".to_vec()),
            "excluded in the source too: protected"
        );
    }

    #[test]
    fn worst_ranks_busy_below_every_real_failure() {
        let o = |class| Outcome {
            class,
            code: None,
            message: String::new(),
        };
        let cases = [
            (vec![Class::Success, Class::Busy], Class::Busy),
            (vec![Class::Busy, Class::Retry], Class::Retry),
            (vec![Class::ConfigError, Class::Busy], Class::ConfigError),
            (vec![Class::Success], Class::Success),
            (vec![], Class::Success),
        ];
        for (classes, want) in cases {
            let got = worst(classes.iter().map(|c| o(*c)).collect()).class;
            assert_eq!(got, want, "{classes:?}");
        }
    }

    #[test]
    fn which_pushes_want_progress() {
        let src = tempfile::tempdir().expect("tempdir");
        let mut j = job(src.path(), vec![]);
        let many: Vec<Vec<u8>> = (0..PROGRESS_MIN_PATHS)
            .map(|i| format!("f{i}").into_bytes())
            .collect();
        let cases: Vec<(Batch, bool)> = vec![
            (Batch::full(), true),
            (
                Batch {
                    trees: vec![b"d".to_vec()],
                    ..Batch::default()
                },
                true,
            ),
            (
                Batch {
                    paths: many[..PROGRESS_MIN_PATHS - 1].to_vec(),
                    ..Batch::default()
                },
                false,
            ),
            (
                Batch {
                    paths: many.clone(),
                    ..Batch::default()
                },
                true,
            ),
        ];
        for (batch, want) in &cases {
            assert_eq!(wants_progress(&j, batch), *want, "{batch:?}");
        }
        j.mode = Mode::Tree;
        assert!(wants_progress(&j, &cases[2].0));
    }

    /// A stand-in rsync that prints `stderr` (the real lines of rsync 3.5.0, `SRC` and
    /// `DST` replaced by the source and destination) and exits with `code`.
    fn saying(dir: &Path, src: &Path, dst: &Path, stderr: &str, code: i32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let text = stderr
            .replace("SRC", &src.display().to_string())
            .replace("DST", &dst.display().to_string());
        std::fs::write(dir.join("stderr"), text).expect("write stderr");
        let script = dir.join("rsync-says");
        let body = format!(
            "#!/bin/sh\ncat >/dev/null\ncat \"{}\" >&2\nexit {code}\n",
            dir.join("stderr").display()
        );
        std::fs::write(&script, body).expect("write the stand-in");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the stand-in");
        script
    }

    #[test]
    fn an_exit_23_names_its_failing_paths_relative_to_the_source() {
        let (bin, src, dst) = (tempdir(), tempdir(), tempdir());
        let summary = "rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1394) [sender=3.5.0]\n";
        let batch = Batch {
            paths: vec![b"#hash".to_vec(), b"a/b.txt".to_vec(), b"a/ok.txt".to_vec()],
            ..Batch::default()
        };
        // (stderr, exit code, want the failing paths named)
        let rows: Vec<(String, i32, Option<Vec<&str>>)> = vec![
            (
                format!("rsync: [sender] send_files failed to open \"SRC/a/b.txt\": Permission denied (13)\nrsync: [receiver] mkstemp \"DST/.#hash.AbCdEf\" failed: Permission denied (13)\n{summary}"),
                23,
                Some(vec!["a/b.txt", "#hash"]),
            ),
            (
                format!("rsync: [sender] opendir \"SRC/a\" failed: Permission denied (13)\n{summary}"),
                23,
                None,
            ),
            (
                format!("rsync: [sender] send_files failed to open \"/elsewhere/a/b.txt\": Permission denied (13)\n{summary}"),
                23,
                None,
            ),
            ("rsync: [receiver] write failed on \"DST/a\": No space left on device (28)\n".into(), 11, None),
        ];
        let daemon_sub = Target {
            name: "daemon".into(),
            kind: TargetKind::Daemon {
                user: None,
                host: "127.0.0.1".into(),
                module: "mod/sub/dir".into(),
                port: None,
                password_file: None,
            },
        };
        // Measured against a daemon with the destination below the module (`mod/sub`):
        // full names start with `/sub`, a rename's target and a delete are bare.
        let sub_rows: Vec<(String, i32, Option<Vec<&str>>)> = vec![(
            format!("rsync: [receiver] mkstemp \"/sub/dir/.#hash.AbCdEf\" (in mod) failed: Operation not permitted (1)\n\
                     rsync: [receiver] rename \"/sub/dir/a/.ok.txt.Hhvh5n\" (in mod) -> \"a/ok.txt\": Operation not permitted (1)\n\
                     rsync: [generator] delete_file: unlink(a/b.txt) failed: Operation not permitted (1)\n{summary}"),
            23,
            Some(vec!["#hash", "a/ok.txt", "a/b.txt"]),
        )];
        let rows = rows
            .into_iter()
            .map(|r| (local(dst.path()), r))
            .chain(sub_rows.into_iter().map(|r| (daemon_sub.clone(), r)));
        for (target, (stderr, code, want)) in rows {
            let mut j = job(src.path(), vec![target.clone()]);
            j.rsync.binary = saying(bin.path(), src.path(), dst.path(), &stderr, code);
            let report = execute(&j, &target, &batch, DMA, GUARDED, None, None);
            assert_eq!(report.outcome.class, Class::Retry, "{stderr}");
            let got: Option<Vec<String>> = report.failed.map(|f| {
                f.iter()
                    .map(|f| String::from_utf8_lossy(&f.path).into_owned())
                    .collect()
            });
            let want: Option<Vec<String>> = want.map(|w| w.iter().map(|s| s.to_string()).collect());
            assert_eq!(got, want, "{stderr}");
        }
    }

    /// A stand-in rsync that notes its argv in `dir/argv` and runs the real one, except
    /// that a seed run (`--copy-dest`) exits 12 while `dir/fail-seeds` exists, and is
    /// refused as busy while `dir/busy-seeds` exists.
    fn noting_rsync(dir: &Path) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("rsync-noting");
        let body = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{d}/argv'\ncase \"$*\" in *--copy-dest=*) [ -e '{d}/fail-seeds' ] && exit 12; [ -e '{d}/busy-seeds' ] && echo '@ERROR: max connections (1) reached -- try again later' >&2 && exit 5;; esac\nexec rsync \"$@\"\n",
            d = dir.display()
        );
        std::fs::write(&script, body).expect("write the stand-in");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the stand-in");
        script
    }

    /// A source with `ren/d1` (2 MiB in 4 files), pushed whole to a local target; then
    /// `ren/d1` renamed `ren/d2` in the source. The batch the watcher's move queues.
    fn renamed(s: &Path, d: &Path) -> (SyncJob, Target, Batch) {
        for i in 0..4u8 {
            let dir = s.join("ren/d1");
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join(format!("f{i}")), vec![i; 512 * 1024]).expect("write");
        }
        let target = local(d);
        let j = job(s, vec![target.clone()]);
        let report = execute(&j, &target, &Batch::full(), DMA, GUARDED, None, None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        std::fs::rename(s.join("ren/d1"), s.join("ren/d2")).expect("rename");
        let batch = Batch {
            paths: vec![b"ren/d1".to_vec()],
            trees: vec![b"ren/d2".to_vec()],
            moves: vec![Move {
                from: b"ren/d1".to_vec(),
                to: b"ren/d2".to_vec(),
            }],
            ..Batch::default()
        };
        (j, target, batch)
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn argv_lines(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("argv"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_renamed_directory_is_seeded_before_its_old_path_is_deleted() {
        let (bin, src, dst) = (tempdir(), tempdir(), tempdir());
        let (s, d) = (src.path(), dst.path());
        let (mut j, target, batch) = renamed(s, d);
        j.rsync.binary = noting_rsync(bin.path());
        let report = execute(&j, &target, &batch, DMA, GUARDED, None, None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        assert!(!d.join("ren/d1").exists());
        assert_eq!(
            std::fs::read(d.join("ren/d2/f3")).ok(),
            Some(vec![3; 512 * 1024])
        );
        let runs = argv_lines(bin.path());
        // Prepare, seed, then the batch's one run (deleting d1; d2 is not sent again).
        assert_eq!(runs.len(), 3, "{runs:#?}");
        assert_eq!(report.runs, 3);
        assert!(runs[0].contains("--files-from=-") && !runs[0].contains("--delete"));
        assert!(
            runs[1].ends_with(&format!(
                "--copy-dest=../d1 {}/ren/d2/ {}/ren/d2/",
                s.display(),
                d.display()
            )),
            "{}",
            runs[1]
        );
        assert!(runs[2].contains("--delete-missing-args") && !runs[2].contains(" -r "));
    }

    #[test]
    fn a_failing_seed_leaves_its_tree_to_the_batch_runs() {
        let (bin, src, dst) = (tempdir(), tempdir(), tempdir());
        let (s, d) = (src.path(), dst.path());
        let (mut j, target, batch) = renamed(s, d);
        j.rsync.binary = noting_rsync(bin.path());
        std::fs::write(bin.path().join("fail-seeds"), b"").expect("write");
        let report = execute(&j, &target, &batch, DMA, GUARDED, None, None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        assert!(!d.join("ren/d1").exists());
        assert_eq!(
            std::fs::read(d.join("ren/d2/f2")).ok(),
            Some(vec![2; 512 * 1024])
        );
        // Prepare, the failed seed, then the paths run and the trees run.
        assert_eq!(argv_lines(bin.path()).len(), 4);
    }

    #[test]
    fn a_daemon_busy_for_the_seeds_makes_the_push_busy_and_deletes_nothing() {
        let (bin, src, dst) = (tempdir(), tempdir(), tempdir());
        let (s, d) = (src.path(), dst.path());
        let (mut j, target, batch) = renamed(s, d);
        j.rsync.binary = noting_rsync(bin.path());
        j.rsync.timeout = Some(Duration::from_millis(300));
        std::fs::write(bin.path().join("busy-seeds"), b"").expect("write");
        let report = execute(&j, &target, &batch, DMA, GUARDED, None, None);
        assert_eq!(report.outcome.class, Class::Busy, "{:?}", report.outcome);
        assert!(report.refused_busy);
        // The old copy is still there: the engine puts the batch back, nothing lost.
        assert_eq!(
            std::fs::read(d.join("ren/d1/f0")).ok(),
            Some(vec![0; 512 * 1024])
        );
        let runs = argv_lines(bin.path());
        assert!(
            runs.iter().skip(1).all(|r| r.contains("--copy-dest")),
            "{runs:#?}"
        );
        assert_eq!(report.runs, runs.len());
    }

    #[test]
    fn a_seed_never_writes_through_a_symlink_the_target_holds() {
        // The target still holds symlinks where the source now has directories: at the
        // new path itself and at an ancestor of another one. A seed entering
        // `DEST/to/` would follow them and write (and delete) in what they point to.
        let (src, dst) = (tempdir(), tempdir());
        let (s, d) = (src.path(), dst.path());
        for dir in ["victim", "victim2", "a/d3"] {
            std::fs::create_dir_all(s.join(dir)).expect("mkdir");
        }
        for f in ["victim/keep", "victim2/keep"] {
            std::fs::write(s.join(f), b"keep").expect("write");
        }
        std::fs::write(s.join("a/d3/big"), vec![7u8; 2 << 20]).expect("write");
        let (j, target, mut batch) = renamed(s, d);
        std::os::unix::fs::symlink("../victim", d.join("ren/d2")).expect("symlink");
        std::os::unix::fs::symlink("victim2", d.join("lnk")).expect("symlink");
        std::fs::create_dir(s.join("lnk")).expect("mkdir");
        std::fs::rename(s.join("a/d3"), s.join("lnk/d4")).expect("rename");
        batch.paths = vec![b"a/d3".to_vec(), b"lnk".to_vec(), b"ren/d1".to_vec()];
        batch.trees = vec![b"lnk/d4".to_vec(), b"ren/d2".to_vec()];
        batch.moves.insert(
            0,
            Move {
                from: b"a/d3".to_vec(),
                to: b"lnk/d4".to_vec(),
            },
        );
        assert_eq!(batch.seeds().len(), 2);
        let report = execute(&j, &target, &batch, DMA, GUARDED, None, None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        for v in ["victim", "victim2"] {
            let names: Vec<_> = std::fs::read_dir(d.join(v))
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            assert_eq!(names, ["keep"], "{v} untouched");
        }
        for dir in ["ren/d2", "lnk", "lnk/d4"] {
            let meta = d.join(dir).symlink_metadata().expect("lstat");
            assert!(meta.is_dir(), "{dir} is a real directory now");
        }
        assert_eq!(
            std::fs::read(d.join("lnk/d4/big")).ok(),
            Some(vec![7u8; 2 << 20])
        );
        assert_eq!(
            std::fs::read(d.join("ren/d2/f1")).ok(),
            Some(vec![1; 512 * 1024])
        );
        assert!(!d.join("a/d3").exists() && !d.join("ren/d1").exists());
    }

    #[test]
    fn nothing_below_a_symlinked_parent_is_read_and_the_symlink_is_pushed() {
        // `d` was a directory, pushed; then swapped for a symlink out of the source
        // while `d/f` and a tree under it waited to be pushed.
        let (src, dst, secret) = (tempdir(), tempdir(), tempdir());
        let (s, d) = (src.path(), dst.path());
        std::fs::create_dir_all(s.join("d/t")).expect("mkdir");
        std::fs::write(s.join("d/f"), b"public").expect("write");
        std::fs::write(s.join("d/t/g"), b"public").expect("write");
        let target = local(d);
        let j = job(s, vec![target.clone()]);
        let report = execute(&j, &target, &Batch::full(), DMA, GUARDED, None, None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        std::fs::create_dir(secret.path().join("t")).expect("mkdir");
        std::fs::write(secret.path().join("f"), b"SECRET").expect("write");
        std::fs::write(secret.path().join("t/g"), b"SECRET").expect("write");
        std::fs::remove_dir_all(s.join("d")).expect("rm -r d");
        std::os::unix::fs::symlink(secret.path(), s.join("d")).expect("symlink");
        let batch = Batch {
            paths: vec![b"d/f".to_vec()],
            trees: vec![b"d/t".to_vec()],
            ..Batch::default()
        };
        let report = execute(&j, &target, &batch, DMA, GUARDED, None, None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        assert!(report.failed.is_none(), "a path left out is no failure");
        let meta = d
            .join("d")
            .symlink_metadata()
            .expect("lstat the target's d");
        assert!(meta.is_symlink(), "the symlink is pushed as one");
        assert_eq!(
            std::fs::read_link(d.join("d")).ok(),
            Some(secret.path().to_path_buf())
        );
        assert_eq!(
            std::fs::read(secret.path().join("f")).ok(),
            Some(b"SECRET".to_vec()),
            "the secret is untouched"
        );
    }

    #[test]
    fn only_a_directory_with_enough_data_is_worth_seeding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::create_dir_all(p.join("a/b")).expect("mkdir");
        std::fs::write(p.join("a/b/f"), vec![0u8; (SEED_MIN_BYTES - 1) as usize]).expect("write");
        std::os::unix::fs::symlink("/dev/zero", p.join("a/zero")).expect("symlink");
        assert!(
            !worth_seeding(p),
            "one byte short (a symlink is not its target)"
        );
        std::fs::write(p.join("a/g"), b"x").expect("write");
        assert!(worth_seeding(p));
        assert!(!worth_seeding(&p.join("missing")));
    }
}
