//! One push: the rsync runs that carry one batch to one target. Runs on its own thread
//! (the engine keeps at most one push in flight per target), plans the runs, finds the
//! concrete excluded paths under whatever rsync will recurse into, runs up to `threads`
//! rsync processes at once, and reduces their exit codes to one [`Outcome`]. It never
//! touches the queue, the fail log or the status: it reports, the engine decides.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::config::{SyncJob, Target};
use crate::rsync::args::{plan, Caps, Invocation};
use crate::rsync::exit::{classify, Class, Outcome};
use crate::rsync::run::run;
use crate::walk::excluded_paths;

/// What a push came to.
#[derive(Debug)]
pub struct PushReport {
    pub outcome: Outcome,
    /// rsync processes started.
    pub runs: usize,
    pub elapsed: Duration,
}

/// Push `batch` to `target` now, blocking until every run has ended.
pub fn execute(job: &SyncJob, target: &Target, batch: &Batch, caps: Caps) -> PushReport {
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
    let invocations = plan(job, target, batch, caps, &excluded);
    let outcomes = run_all(&invocations, job.threads.max(1));
    PushReport {
        runs: invocations.len(),
        outcome: worst(outcomes),
        elapsed: started.elapsed(),
    }
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
fn run_all(invocations: &[Invocation], threads: usize) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::with_capacity(invocations.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads.min(invocations.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(inv) = invocations.get(i) else {
                    break;
                };
                let outcome = run_one(inv);
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

fn run_one(inv: &Invocation) -> Outcome {
    log::debug!("rsync {} ({})", inv.summary, describe_args(inv));
    match run(inv) {
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
