//! One push: the rsync runs that carry one batch to one target. Runs on its own thread
//! (the engine keeps at most one push in flight per target), plans the runs, finds the
//! concrete excluded paths under whatever rsync will recurse into, runs up to `threads`
//! rsync processes at once, and reduces their exit codes to one [`Outcome`]. It never
//! touches the queue, the fail log or the status: it reports, the engine decides.
//!
//! Progress: given a [`SharedProgress`], a push that may take a while (a whole-tree push,
//! directories pushed whole, or [`PROGRESS_MIN_PATHS`] paths and more) asks rsync for
//! `--info=progress2` and keeps the latest record of its runs there (runs of one split
//! batch take turns in it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::config::{Mode, SyncJob, Target};
use crate::guard::{stats_counts, DeleteGuard};
use crate::progress::SharedProgress;
use crate::rsync::args::{plan, Caps, Invocation};
use crate::rsync::exit::{classify, Class, Outcome};
use crate::rsync::run::{run_capture, run_observed};
use crate::source_id::SourceId;
use crate::walk::excluded_paths;

/// What a push came to.
#[derive(Debug)]
pub struct PushReport {
    pub outcome: Outcome,
    /// rsync processes started.
    pub runs: usize,
    pub elapsed: Duration,
    /// Nothing was run: the source path no longer names the watched directory (why).
    pub source_lost: Option<String>,
}

/// A paths-only batch this large reports progress too.
pub const PROGRESS_MIN_PATHS: usize = 1000;

/// Push `batch` to `target` now, blocking until every run has ended. With `progress`,
/// a large push publishes rsync's progress there as it goes.
pub fn execute(
    job: &SyncJob,
    target: &Target,
    batch: &Batch,
    caps: Caps,
    source: Option<SourceId>,
    guard: bool,
    progress: Option<&SharedProgress>,
) -> PushReport {
    let started = Instant::now();
    // Safety rule: never push (above all, never delete) from a directory that is not the
    // one watched — an unmounted file system's empty mount point, a swapped-in directory.
    if let Some(Err(why)) = source.map(|id| id.check(&job.source)) {
        return PushReport {
            outcome: Outcome {
                class: Class::Retry,
                code: None,
                message: why.clone(),
            },
            runs: 0,
            elapsed: started.elapsed(),
            source_lost: Some(why),
        };
    }
    let excluded = match excluded_for(job, batch) {
        Ok(x) => x,
        Err(e) => {
            return PushReport {
                outcome: Outcome {
                    class: Class::Retry,
                    code: None,
                    message: format!(
                        "cannot walk {} to find excluded paths: {e}",
                        job.source.display()
                    ),
                },
                runs: 0,
                elapsed: started.elapsed(),
                source_lost: None,
            }
        }
    };
    let mut invocations = plan(job, target, batch, caps, &excluded);
    let progress = progress.filter(|_| wants_progress(job, batch));
    if progress.is_some() {
        invocations = invocations
            .into_iter()
            .map(Invocation::with_progress)
            .collect();
    }
    let guarded = guard && job.max_delete != DeleteGuard::Off && pushes_whole_tree(job, batch);
    let outcomes = if guarded {
        invocations
            .iter()
            .map(|inv| run_guarded(job, inv, progress))
            .collect()
    } else {
        run_all(&invocations, job.threads.max(1), progress)
    };
    PushReport {
        runs: invocations.len(),
        outcome: worst(outcomes),
        elapsed: started.elapsed(),
        source_lost: None,
    }
}

/// A whole-tree push: `-r --delete` from the top, the one kind the deletion guard checks.
fn pushes_whole_tree(job: &SyncJob, batch: &Batch) -> bool {
    batch.full || job.mode == Mode::Tree
}

/// One whole-tree run under the deletion guard ([`crate::guard`]): a dry run with
/// `--stats` counts what the push would delete; only if the guard allows that many does
/// the push run (with `--max-delete` at what the guard allows, should the source change
/// in between). The dry run is one more file-list exchange per whole-tree push.
fn run_guarded(job: &SyncJob, inv: &Invocation, progress: Option<&SharedProgress>) -> Outcome {
    let dry = inv.clone().with_dry_run_stats();
    log::debug!("rsync {} ({})", dry.summary, describe_args(&dry));
    let (r, stdout) = match run_capture(&dry) {
        Ok(x) => x,
        Err(e) => {
            return Outcome {
                class: Class::Retry,
                code: None,
                message: format!("{e:#}"),
            }
        }
    };
    let checked = classify(r.code, r.signal, &r.stderr);
    if checked.class != Class::Success {
        return checked;
    }
    let Some((source_entries, deletions)) = stats_counts(&stdout) else {
        return Outcome {
            class: Class::ConfigError,
            code: r.code,
            message: "deletion guard: rsync's --stats did not say how many entries the push would delete (rsync before 3.1?); nothing pushed. Upgrade rsync, or set max_delete = \"off\" for this sync".into(),
        };
    };
    if let Some(why) = job.max_delete.verdict(deletions, source_entries) {
        return Outcome {
            class: Class::ConfigError,
            code: None,
            message: format!(
                "deletion guard: {why}; nothing was pushed. Check the source {} (mounted? emptied or restored by mistake?); if the deletions are right, run `syncd sync --full --force` (or raise max_delete)",
                job.source.display()
            ),
        };
    }
    if deletions > 0 {
        log::info!(
            "{}: whole-tree push: deleting {deletions} entr{} on the target (max_delete = {}, {source_entries} entries in the source)",
            job.name,
            if deletions == 1 { "y" } else { "ies" },
            job.max_delete
        );
    }
    let allowed = job.max_delete.allowed(source_entries).unwrap_or(deletions);
    run_one(&inv.clone().with_max_delete(allowed), progress)
}

/// Is this push big enough to be worth a progress display?
fn wants_progress(job: &SyncJob, batch: &Batch) -> bool {
    batch.full
        || job.mode == Mode::Tree
        || !batch.trees.is_empty()
        || batch.paths.len() >= PROGRESS_MIN_PATHS
}

/// Concrete excluded paths under what the runs will recurse into: the trees, or the
/// whole source for a full push (which uses the full-sync excludes when set).
fn excluded_for(job: &SyncJob, batch: &Batch) -> std::io::Result<Vec<Vec<u8>>> {
    if batch.full {
        let set = job.full_sync.exclude.as_ref().unwrap_or(&job.exclude);
        excluded_paths(&job.source, &[], set)
    } else if !batch.trees.is_empty() {
        excluded_paths(&job.source, &batch.trees, &job.exclude)
    } else {
        Ok(Vec::new())
    }
}

/// Run every invocation, at most `threads` at a time; outcomes in no particular order.
fn run_all(
    invocations: &[Invocation],
    threads: usize,
    progress: Option<&SharedProgress>,
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::with_capacity(invocations.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads.min(invocations.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(inv) = invocations.get(i) else {
                    break;
                };
                let outcome = run_one(inv, progress);
                outcomes
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(outcome);
            });
        }
    });
    outcomes
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn run_one(inv: &Invocation, progress: Option<&SharedProgress>) -> Outcome {
    log::debug!("rsync {} ({})", inv.summary, describe_args(inv));
    match run_observed(inv, progress) {
        Ok(r) => {
            let outcome = classify(r.code, r.signal, &r.stderr);
            log::debug!(
                "rsync {} ended after {:.2}s: {:?} {}",
                inv.summary,
                r.elapsed.as_secs_f64(),
                outcome.class,
                outcome.message
            );
            outcome
        }
        Err(e) => Outcome {
            class: Class::Retry,
            code: None,
            message: format!("{e:#}"),
        },
    }
}

/// The argv for debug logs (no secret is ever on it: passwords travel in files).
fn describe_args(inv: &Invocation) -> String {
    inv.args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The outcome that matters most: a needed fallback, then a configuration error, then a
/// retry; success only when every run succeeded.
fn worst(outcomes: Vec<Outcome>) -> Outcome {
    let rank = |c: &Class| match c {
        Class::Success => 0,
        Class::Retry => 1,
        Class::ConfigError => 2,
        Class::DeleteMissingArgsUnsupported => 3,
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
    use crate::progress::{shared, snapshot};
    use crate::rsync::tests::{job, local};

    const DMA: Caps = Caps {
        delete_missing_args: true,
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
        let report = execute(&j, &target, &Batch::full(), DMA, None, true, Some(&slot));
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
        let report = execute(&j, &target, &batch, DMA, None, true, Some(&slot));
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        assert_eq!(snapshot(&slot), None);
        assert!(dst.path().join("d0/f0").is_file());
        let report = execute(&j, &target, &Batch::full(), DMA, None, true, None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        assert!(dst.path().join("d2/f2").is_file());
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
}
