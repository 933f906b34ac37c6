//! One push: the rsync runs that carry one batch to one target. Runs on its own thread
//! (the engine keeps at most one push in flight per target), plans the runs, finds the
//! concrete excluded paths under whatever rsync will recurse into, runs up to `threads`
//! rsync processes at once, and reduces their exit codes to one [`Outcome`]. It never
//! touches the queue, the fail log or the status: it reports, the engine decides.
//!
//! A busy daemon (`max connections` reached, [`Class::Busy`]): the refused run is tried
//! again after a short pause ([`crate::busy::Pauses`]: 100 ms growing to 2 s), and from
//! then on the push runs its remaining invocations one at a time (runs already under
//! way finish; none that succeeded is repeated): see [`runs`]. Only a daemon still busy
//! after the patience makes the push report Busy. A target known to limit connections
//! is pushed one run at a time from the start.
//!
//! Progress: given a [`SharedProgress`], a push that may take a while (a whole-tree push,
//! directories pushed whole, or [`PROGRESS_MIN_PATHS`] paths and more) asks rsync for
//! `--info=progress2` and keeps the latest record of its runs there (runs of one split
//! batch take turns in it).

mod runs;

use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::busy::patience;
use crate::config::{Mode, SyncJob, Target};
use crate::progress::SharedProgress;
use crate::rsync::args::{plan, Caps, Invocation};
use crate::rsync::exit::{Class, Outcome};
use crate::walk::excluded_paths;
use runs::run_all;
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
}

/// A paths-only batch this large reports progress too.
pub const PROGRESS_MIN_PATHS: usize = 1000;

/// Push `batch` to `target` now, blocking until every run has ended. `one_at_a_time`:
/// the target is known to limit connections, so its runs do not overlap. With
/// `progress`, a large push publishes rsync's progress there as it goes; with
/// `waiting`, the push says there since when it has been waiting for a busy daemon.
pub fn execute(
    job: &SyncJob,
    target: &Target,
    batch: &Batch,
    caps: Caps,
    one_at_a_time: bool,
    progress: Option<&SharedProgress>,
    waiting: Option<&SharedWaiting>,
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
                refused_busy: false,
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
    let runs = run_all(
        &invocations,
        job.threads.max(1),
        one_at_a_time,
        patience(job.rsync.timeout),
        progress,
        waiting,
    );
    PushReport {
        runs: runs.started,
        refused_busy: runs.refused_busy,
        outcome: worst(runs.outcomes),
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
        let report = execute(&j, &target, &Batch::full(), DMA, false, Some(&slot), None);
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
        let report = execute(&j, &target, &batch, DMA, false, Some(&slot), None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        assert_eq!(snapshot(&slot), None);
        assert!(dst.path().join("d0/f0").is_file());
        let report = execute(&j, &target, &Batch::full(), DMA, false, None, None);
        assert_eq!(report.outcome.class, Class::Success, "{:?}", report.outcome);
        assert!(dst.path().join("d2/f2").is_file());
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
}
