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
use crate::progress::SharedProgress;
use crate::rsync::args::{plan, Caps, Invocation};
use crate::rsync::exit::{classify, Class, Outcome};
use crate::rsync::run::run_observed;
use crate::walk::excluded_paths;

/// What a push came to.
#[derive(Debug)]
pub struct PushReport {
    pub outcome: Outcome,
    /// rsync processes started.
    pub runs: usize,
    pub elapsed: Duration,
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
    progress: Option<&SharedProgress>,
) -> PushReport {
    let started = Instant::now();
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
    let outcomes = run_all(&invocations, job.threads.max(1), progress);
    PushReport {
        runs: invocations.len(),
        outcome: worst(outcomes),
        elapsed: started.elapsed(),
    }
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
        let report = execute(&j, &target, &Batch::full(), DMA, Some(&slot));
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
        let report = execute(&j, &target, &batch, DMA, Some(&slot));
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        assert_eq!(snapshot(&slot), None);
        assert!(dst.path().join("d0/f0").is_file());
        let report = execute(&j, &target, &Batch::full(), DMA, None);
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
