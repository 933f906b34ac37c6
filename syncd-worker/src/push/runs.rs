//! The rsync runs of one push, as processes: up to `threads` at a time, taking the
//! planned invocations in order; their outcomes come back in no particular order. A
//! daemon that refuses a run as busy (`max connections` reached) turns the push serial:
//! the refused run is tried again after a pause from [`crate::busy::Pauses`] and every
//! later run waits for its turn (runs already under way finish; a run that got through
//! is never run again). A run still refused after the patience stops the push: no more
//! runs start. Owns no state beyond one push; never touches the queue or the status.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::busy::Pauses;
use crate::progress::SharedProgress;
use crate::rsync::args::Invocation;
use crate::rsync::exit::{classify, Class, Outcome};
use crate::rsync::failures::{self, Failure};
use crate::rsync::run::{run_capture, run_observed};

/// Since when the push in flight has been waiting for a busy daemon (None: it is not),
/// kept here for whoever shows the push's state (the engine's status file).
pub type SharedWaiting = Arc<Mutex<Option<Instant>>>;

/// A new [`SharedWaiting`]: not waiting.
pub fn shared_waiting() -> SharedWaiting {
    Arc::new(Mutex::new(None))
}

/// Since when the push has been waiting for a busy daemon, if it is.
pub fn waiting_since(slot: &SharedWaiting) -> Option<Instant> {
    *slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run every invocation, at most `threads` at a time (one at a time when `serial`, or
/// from the first refusal as busy on); see the module doc. Outcomes in no particular
/// order, and whether the daemon refused any run as busy.
pub(super) fn run_all(
    invocations: &[Invocation],
    threads: usize,
    serial: bool,
    patience: Duration,
    progress: Option<&SharedProgress>,
    waiting: Option<&SharedWaiting>,
) -> Runs {
    let runs = Runner {
        invocations,
        progress,
        waiting,
        patience,
        next: AtomicUsize::new(0),
        serial: AtomicBool::new(serial),
        turn: Mutex::new(()),
        gave_up: AtomicBool::new(false),
        refused: AtomicBool::new(false),
        started: AtomicUsize::new(0),
        outcomes: Mutex::new(Vec::with_capacity(invocations.len())),
        named: Mutex::new(Some(Vec::new())),
    };
    let threads = if serial { 1 } else { threads };
    std::thread::scope(|scope| {
        for _ in 0..threads.min(invocations.len()) {
            scope.spawn(|| runs.work());
        }
    });
    runs.set_waiting(None);
    let outcomes = runs
        .outcomes
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut succeeded: Vec<usize> = outcomes
        .iter()
        .filter(|(_, o)| o.class == Class::Success)
        .map(|(i, _)| *i)
        .collect();
    succeeded.sort_unstable();
    Runs {
        outcomes: outcomes.into_iter().map(|(_, o)| o).collect(),
        succeeded,
        refused_busy: runs.refused.into_inner(),
        started: runs.started.into_inner(),
        named: runs
            .named
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    }
}

/// What [`run_all`] came to.
pub(super) struct Runs {
    pub outcomes: Vec<Outcome>,
    /// The invocations (their indexes, ascending) that succeeded.
    pub succeeded: Vec<usize>,
    pub refused_busy: bool,
    pub started: usize,
    /// The failures of the runs that failed, when every one of them was an exit 23 whose
    /// stderr names each failing path ([`failures::parse`]); None otherwise.
    pub named: Option<Vec<Failure>>,
}

/// The runs of one push, shared by its threads.
struct Runner<'a> {
    invocations: &'a [Invocation],
    progress: Option<&'a SharedProgress>,
    waiting: Option<&'a SharedWaiting>,
    patience: Duration,
    /// The next invocation to start.
    next: AtomicUsize,
    /// One run at a time: the target limits connections.
    serial: AtomicBool,
    /// Held for a whole run (its retries included) while `serial`.
    turn: Mutex<()>,
    /// A run stayed refused for the whole patience: start no more runs.
    gave_up: AtomicBool,
    /// The daemon refused a run as busy.
    refused: AtomicBool,
    /// rsync processes started.
    started: AtomicUsize,
    /// Each run's outcome with its invocation's index.
    outcomes: Mutex<Vec<(usize, Outcome)>>,
    /// See [`Runs::named`].
    named: Mutex<Option<Vec<Failure>>>,
}

impl Runner<'_> {
    /// Say the push is waiting for a busy daemon (`Some`: since then, unless it already
    /// was) or not (`None`).
    fn set_waiting(&self, now: Option<Instant>) {
        set_waiting(self.waiting, now);
    }

    /// One thread: take invocations until none is left or the daemon stayed busy.
    fn work(&self) {
        while !self.gave_up.load(Ordering::Relaxed) {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(inv) = self.invocations.get(i) else {
                break;
            };
            let (outcome, named) = self.run_patiently(inv);
            if outcome.class != Class::Success {
                let mut all = self.named.lock().unwrap_or_else(|p| p.into_inner());
                match (all.as_mut(), named) {
                    (Some(all), Some(named)) => all.extend(named),
                    _ => *all = None,
                }
            }
            self.outcomes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push((i, outcome));
        }
    }

    /// Run `inv`; while the daemon refuses it as busy, pause and run it again (one run
    /// at a time from then on), up to the patience. Also returns the failures its stderr
    /// names (see [`run_one`]).
    fn run_patiently(&self, inv: &Invocation) -> (Outcome, Option<Vec<Failure>>) {
        let mut pauses = Pauses::new(self.patience);
        let mut turn = None;
        loop {
            if turn.is_none() && self.serial.load(Ordering::Relaxed) {
                turn = Some(self.turn.lock().unwrap_or_else(|p| p.into_inner()));
            }
            if self.gave_up.load(Ordering::Relaxed) {
                let outcome = Outcome {
                    class: Class::Busy,
                    code: None,
                    message: format!("rsync {} not run: the daemon stayed busy", inv.summary),
                };
                return (outcome, None);
            }
            self.started.fetch_add(1, Ordering::Relaxed);
            let (outcome, named) = run_one(inv, self.progress);
            if outcome.class != Class::Busy {
                self.set_waiting(None);
                return (outcome, named);
            }
            if !self.refused.swap(true, Ordering::Relaxed) {
                log::debug!("the daemon is busy: running the rest of this push one run at a time");
            }
            if turn.is_none() {
                self.serial.store(true, Ordering::Relaxed);
                turn = Some(self.turn.lock().unwrap_or_else(|p| p.into_inner()));
            }
            let now = Instant::now();
            self.set_waiting(Some(now));
            let Some(pause) = pauses.refused(now) else {
                self.gave_up.store(true, Ordering::Relaxed);
                return (outcome, None);
            };
            log::debug!(
                "rsync {}: the daemon is busy; trying again in {} ms",
                inv.summary,
                pause.as_millis()
            );
            // A scheduled pause (busy::Pauses), not a poll: nothing to wait for but time.
            std::thread::sleep(pause);
        }
    }
}

/// Run `inv` alone, keeping the end of its stdout (a dry run's `--stats`); while the
/// daemon refuses it as busy, pause and run it again, up to the patience. Returns the
/// outcome, the stdout, the rsync processes started, and whether it was refused.
pub(super) fn run_capturing(
    inv: &Invocation,
    patience: Duration,
    waiting: Option<&SharedWaiting>,
) -> (Outcome, String, usize, bool) {
    let mut pauses = Pauses::new(patience);
    let (mut started, mut refused) = (0, false);
    loop {
        log::debug!("rsync {} ({})", inv.summary, describe_args(inv));
        started += 1;
        let (outcome, stdout) = match run_capture(inv) {
            Ok((r, out)) => (classify(r.code, r.signal, &r.stderr), out),
            Err(e) => (not_run(&e), String::new()),
        };
        if outcome.class != Class::Busy {
            set_waiting(waiting, None);
            return (outcome, stdout, started, refused);
        }
        refused = true;
        let now = Instant::now();
        set_waiting(waiting, Some(now));
        let Some(pause) = pauses.refused(now) else {
            return (outcome, stdout, started, refused);
        };
        // A scheduled pause (busy::Pauses), not a poll: nothing to wait for but time.
        std::thread::sleep(pause);
    }
}

/// Run `inv` once: its outcome and, for an exit 23, the failing paths its stderr names
/// (None when it names none or not all of them).
fn run_one(inv: &Invocation, progress: Option<&SharedProgress>) -> (Outcome, Option<Vec<Failure>>) {
    log::debug!("rsync {} ({})", inv.summary, describe_args(inv));
    match run_observed(inv, progress) {
        Ok(r) => {
            // A stderr whose start was dropped may have named more failures.
            let named = (r.code == Some(23) && !r.stderr_truncated)
                .then(|| failures::parse(&r.stderr))
                .flatten();
            let outcome = classify(r.code, r.signal, &r.stderr);
            log::debug!(
                "rsync {} ended after {:.2}s: {:?} {}",
                inv.summary,
                r.elapsed.as_secs_f64(),
                outcome.class,
                outcome.message
            );
            (outcome, named)
        }
        Err(e) => (not_run(&e), None),
    }
}

/// rsync could not be started or waited for: retried like any transient failure.
fn not_run(e: &anyhow::Error) -> Outcome {
    Outcome {
        class: Class::Retry,
        code: None,
        message: format!("{e:#}"),
    }
}

/// Say in `slot` that the push is waiting for a busy daemon (`Some`: since then, unless
/// it already was) or not (`None`).
fn set_waiting(slot: Option<&SharedWaiting>, now: Option<Instant>) {
    if let Some(slot) = slot {
        let mut since = slot.lock().unwrap_or_else(|p| p.into_inner());
        *since = now.map(|n| since.unwrap_or(n));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use crate::wait;

    /// Stand-in for rsync against a daemon with `max connections = 1`: `mkdir slot` is
    /// the connection slot. A run that cannot take it is refused as busy (exit 5); one
    /// that can appends its name to `done`, holds the slot for 100 ms and frees it.
    fn one_slot_rsync(dir: &Path) -> Invocation {
        let script = dir.join("rsync-one-slot");
        let body = r#"#!/bin/sh
cd "$(dirname "$0")" || exit 99
if ! mkdir slot 2>/dev/null; then
  echo '@ERROR: max connections (1) reached -- try again later' >&2
  echo 'rsync error: error starting client-server protocol (code 5) at main.c(1863) [sender=3.5.0]' >&2
  exit 5
fi
echo "$1" >> done
sleep 0.1
rmdir slot
exit 0
"#;
        std::fs::write(&script, body).expect("write the stand-in");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the stand-in");
        Invocation {
            program: script,
            args: Vec::new(),
            env: Vec::new(),
            stdin: Vec::new(),
            entries: 1,
            summary: "stand-in".into(),
            listed: None,
        }
    }

    fn named(inv: &Invocation, name: &str) -> Invocation {
        Invocation {
            args: vec![name.into()],
            summary: name.into(),
            ..inv.clone()
        }
    }

    fn done(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_to_string(dir.join("done"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn parallel_runs_against_a_one_slot_daemon_all_get_through_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = one_slot_rsync(dir.path());
        let invs: Vec<Invocation> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| named(&base, n))
            .collect();
        let runs = run_all(&invs, 4, false, Duration::from_secs(20), None, None);
        assert!(runs.refused_busy, "four runs at once on one slot");
        assert_eq!(runs.outcomes.len(), 4);
        assert!(
            runs.outcomes.iter().all(|o| o.class == Class::Success),
            "{:?}",
            runs.outcomes
        );
        assert!(runs.started > 4, "refused runs are tried again");
        assert_eq!(runs.succeeded, [0, 1, 2, 3]);
        // Every run succeeded exactly once: none was repeated after it got through.
        assert_eq!(done(dir.path()), ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_push_says_it_is_waiting_while_the_slot_is_held_and_not_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = one_slot_rsync(dir.path());
        let slot = dir.path().join("slot");
        std::fs::create_dir(&slot).expect("take the slot");
        let invs = vec![named(&base, "a")];
        let waiting = shared_waiting();
        std::thread::scope(|scope| {
            let push = scope.spawn(|| {
                run_all(
                    &invs,
                    2,
                    false,
                    Duration::from_secs(20),
                    None,
                    Some(&waiting),
                )
            });
            wait::until_every(
                "the push to say it is waiting",
                Duration::from_secs(10),
                wait::SHORT_POLL,
                || waiting_since(&waiting),
            )
            .unwrap_or_else(|timeout| panic!("{timeout}"));
            std::fs::remove_dir(&slot).expect("free the slot");
            let runs = push.join().expect("the push thread");
            assert_eq!(runs.outcomes.len(), 1);
            assert_eq!(
                runs.outcomes[0].class,
                Class::Success,
                "{:?}",
                runs.outcomes
            );
        });
        assert_eq!(waiting_since(&waiting), None);
        assert_eq!(done(dir.path()), ["a"]);
    }

    #[test]
    fn known_limited_target_runs_one_at_a_time_from_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = one_slot_rsync(dir.path());
        let invs: Vec<Invocation> = ["a", "b", "c"].iter().map(|n| named(&base, n)).collect();
        let runs = run_all(&invs, 4, true, Duration::from_secs(20), None, None);
        assert!(!runs.refused_busy, "{:?}", runs.outcomes);
        assert_eq!(runs.started, 3);
        assert_eq!(done(dir.path()), ["a", "b", "c"]);
    }

    #[test]
    fn a_daemon_busy_past_the_patience_makes_the_push_busy_and_starts_no_more_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = one_slot_rsync(dir.path());
        // Someone else holds the only slot for the whole test.
        std::fs::create_dir(dir.path().join("slot")).expect("take the slot");
        let invs: Vec<Invocation> = ["a", "b", "c"].iter().map(|n| named(&base, n)).collect();
        let started = Instant::now();
        let runs = run_all(&invs, 2, false, Duration::from_millis(500), None, None);
        let took = started.elapsed();
        assert!(runs.refused_busy);
        assert!(
            runs.outcomes.iter().all(|o| o.class == Class::Busy),
            "{:?}",
            runs.outcomes
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(runs.succeeded.is_empty());
        assert!(
            runs.started < 12,
            "{} runs: one patience, not one per run",
            runs.started
        );
        assert_eq!(done(dir.path()), Vec::<String>::new());
    }
}
