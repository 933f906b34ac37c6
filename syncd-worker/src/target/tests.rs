//! Table tests of one target's state machine, with a fake clock: `at(ms)` is `ms`
//! milliseconds after an arbitrary start. The job's delay is 50 ms, its retry 1 s
//! doubling to 300 s (see `crate::rsync::tests::job`).

use super::*;
use crate::batch::RelPath;
use crate::config::Mode;
use crate::failing::FailedPath;
use crate::rsync::tests::{job, local};

const DMA: Caps = Caps {
    delete_missing_args: true,
};
const FILTER: Caps = Caps {
    delete_missing_args: false,
};
const SEC: u64 = 1000;

struct Clock(Instant);

impl Clock {
    fn at(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

fn p(s: &str) -> RelPath {
    s.as_bytes().to_vec()
}

fn paths(v: &[&str]) -> Batch {
    Batch {
        paths: v.iter().map(|s| p(s)).collect(),
        ..Batch::default()
    }
}

fn outcome(class: Class) -> Outcome {
    Outcome {
        class,
        code: Some(1),
        message: format!("{class:?}"),
    }
}

fn report(class: Class) -> PushReport {
    PushReport {
        outcome: outcome(class),
        runs: 1,
        refused_busy: false,
        elapsed: Duration::from_millis(10),
        source_lost: None,
        failed: None,
    }
}

/// The ticket of the oldest push in flight, as if started with settings `cfg_gen`.
fn oldest(t: &TargetState, cfg_gen: u64) -> Ticket {
    Ticket {
        cfg_gen,
        seq: t.in_flight.first().map_or(u64::MAX, |f| f.seq),
    }
}

fn sync_job(mode: Mode) -> SyncJob {
    let mut j = job("/src", vec![local("/dst")]);
    j.mode = mode;
    j
}

/// A target whose probe found `caps`, at `clock.at(0)`.
fn probed(job: &SyncJob, clock: &Clock, caps: Caps) -> TargetState {
    let mut t = TargetState::new(job, local("/dst"), Batch::default(), clock.at(0));
    assert_eq!(t.next(job, clock.at(0)), Action::Probe);
    t.on_probe(job, 0, Ok(caps), clock.at(0));
    t
}

/// Queue `changed` at `at(ms)` and take the push due `delay` later, stretched by 750 µs
/// a path (see `crate::queue`), in whole milliseconds.
fn push_of(t: &mut TargetState, job: &SyncJob, clock: &Clock, changed: &[&str], ms: u64) -> Push {
    for c in changed {
        t.queue_seen(job, Change::Path(p(c)), clock.at(ms));
    }
    let due = ms + 50 + (changed.len() as u64 * 3).div_ceil(4);
    match t.next(job, clock.at(due)) {
        Action::Push(push) => push,
        other => panic!("expected a push at {due} ms, got {other:?}"),
    }
}

/// A push's report: rsync named `path` as failing alone (exit 23), the rest went.
fn failed_alone(path: &str) -> PushReport {
    PushReport {
        failed: Some(vec![FailedPath {
            path: p(path),
            below_too: false,
            reason: "denied".into(),
        }]),
        ..report(Class::Retry)
    }
}

/// The push with `ticket` ended well at `at`.
fn succeeded(t: &mut TargetState, job: &SyncJob, ticket: Ticket, at: Instant) -> AfterPush {
    t.on_push(
        job,
        ticket,
        report(Class::Success),
        at,
        SystemTime::UNIX_EPOCH,
    )
}

fn pushed_at(t: &TargetState, clock: &Clock, ms: u64) -> TargetStatus {
    t.status(clock.at(ms), SystemTime::UNIX_EPOCH, Live::default())
        .0
}

#[test]
fn probe_results() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    // (probe result, want caps afterwards, want retry wait in ms (None: none), want
    // backoff, want limited, want degraded)
    type Case = (
        Result<Caps, Outcome>,
        Option<Caps>,
        Option<u64>,
        u64,
        bool,
        bool,
    );
    let cases: Vec<Case> = vec![
        (Ok(DMA), Some(DMA), None, 0, false, false),
        (Ok(FILTER), Some(FILTER), None, 0, false, false),
        (
            Err(outcome(Class::Retry)),
            None,
            Some(SEC),
            SEC,
            false,
            true,
        ),
        (
            Err(outcome(Class::ConfigError)),
            None,
            Some(300 * SEC),
            300 * SEC,
            false,
            true,
        ),
        // Busy: tried again soon, the backoff untouched, one run at a time from now on.
        (Err(outcome(Class::Busy)), None, Some(SEC), 0, true, true),
    ];
    for (result, caps, wait, backoff, limited, degraded) in cases {
        let what = format!("{result:?}");
        let mut t = TargetState::new(&job, local("/dst"), Batch::default(), c.at(0));
        assert_eq!(t.next(&job, c.at(0)), Action::Probe, "{what}");
        assert!(t.running(), "{what}");
        // Nothing else starts while the probe runs.
        assert_eq!(t.next(&job, c.at(10)), Action::Idle, "{what}");
        t.on_probe(&job, 0, result, c.at(100));
        assert!(!t.running(), "{what}");
        assert_eq!(t.retry.caps, caps, "{what}");
        assert_eq!(t.retry.at, wait.map(|w| c.at(100 + w)), "{what}");
        assert_eq!(t.retry.backoff, Duration::from_millis(backoff), "{what}");
        assert_eq!(t.retry.limited, limited, "{what}");
        let (st, bad) = t.status(c.at(100), SystemTime::UNIX_EPOCH, Live::default());
        assert_eq!(bad, degraded, "{what}");
        let method = if caps == Some(FILTER) {
            "include-filter"
        } else {
            "delete-missing-args"
        };
        assert_eq!(st.delete_method, method, "{what}");
        match wait {
            // Not probed again before the retry time, at once after it.
            Some(w) => {
                assert_eq!(
                    t.next(&job, c.at(100 + w - 1)),
                    Action::WaitUntil(c.at(100 + w)),
                    "{what}"
                );
                assert_eq!(t.next(&job, c.at(100 + w)), Action::Probe, "{what}");
            }
            None => assert_eq!(t.next(&job, c.at(200)), Action::Idle, "{what}"),
        }
    }
}

#[test]
fn stale_probe_is_ignored() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = TargetState::new(&job, local("/dst"), Batch::default(), c.at(0));
    assert_eq!(t.next(&job, c.at(0)), Action::Probe);
    t.reconfigure(local("/elsewhere"), true, c.at(1));
    t.on_probe(&job, 0, Ok(DMA), c.at(2));
    assert_eq!(t.retry.caps, None);
    // Probed again with the new settings (generation 1), which count.
    assert_eq!(t.next(&job, c.at(3)), Action::Probe);
    t.on_probe(&job, 1, Ok(DMA), c.at(4));
    assert_eq!(t.retry.caps, Some(DMA));
}

#[test]
fn backoff_grows_and_resets() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    let mut now = 0;
    // (outcome of the push, want backoff in s, want consecutive failures)
    let cases = [
        (Class::Retry, 1, 1),
        (Class::Retry, 2, 2),
        (Class::Retry, 4, 3),
        // Busy neither grows nor resets it.
        (Class::Busy, 4, 4),
        (Class::Retry, 8, 5),
        (Class::ConfigError, 300, 6),
        (Class::Success, 0, 0),
        (Class::Retry, 1, 1),
    ];
    for (i, (class, backoff, failures)) in cases.into_iter().enumerate() {
        let push = push_of(&mut t, &job, &c, &["a"], now);
        let after = t.on_push(
            &job,
            oldest(&t, 0),
            report(class),
            c.at(now + 60),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(t.retry.backoff, Duration::from_secs(backoff), "case {i}");
        assert_eq!(t.counters.consecutive_failures, failures, "case {i}");
        if class == Class::Success {
            assert_eq!(after.pushed, Some(push.batch), "case {i}");
            assert_eq!(t.retry.at, None, "case {i}");
        } else {
            // The batch is back in the queue, waiting for the retry time.
            let retry_at = t.retry.at.expect("a failure schedules a retry");
            assert!(retry_at > c.at(now + 60), "case {i}");
            assert_eq!(
                t.next(&job, c.at(now + 61)),
                Action::WaitUntil(retry_at),
                "case {i}"
            );
            assert_eq!(pushed_at(&t, &c, now + 61).queue_depth, 1, "case {i}");
        }
        now += 301 * SEC;
    }
}

#[test]
fn push_outcomes() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let failed = |path: &str| FailedPath {
        path: p(path),
        below_too: false,
        reason: "open: Permission denied (13)".into(),
    };
    // (name, report, want pushed, want saved, want queue depth after, want failing
    // paths, want pushes ok, want pushes failed, want source lost)
    type Case = (
        &'static str,
        PushReport,
        Option<Batch>,
        Option<Batch>,
        u64,
        u64,
        u64,
        u64,
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            "success",
            report(Class::Success),
            Some(paths(&["a", "b"])),
            None,
            0,
            0,
            1,
            0,
            false,
        ),
        (
            "failure keeps the batch and saves it",
            report(Class::Retry),
            None,
            Some(paths(&["a", "b"])),
            2,
            0,
            0,
            1,
            false,
        ),
        (
            "partial: the failing path waits on its own",
            PushReport {
                failed: Some(vec![failed("b")]),
                ..report(Class::Retry)
            },
            Some(paths(&["a"])),
            Some(paths(&["b"])),
            0,
            1,
            1,
            0,
            false,
        ),
        (
            "a failure outside the batch is a plain failure",
            PushReport {
                failed: Some(vec![failed("zzz")]),
                ..report(Class::Retry)
            },
            None,
            Some(paths(&["a", "b"])),
            2,
            0,
            0,
            1,
            false,
        ),
        (
            "source lost: the batch is back, nothing counted",
            PushReport {
                source_lost: Some("moved away".into()),
                ..report(Class::Success)
            },
            None,
            None,
            2,
            0,
            0,
            0,
            true,
        ),
    ];
    for (name, rep, pushed, saved, depth, failing, ok, failed_n, lost) in cases {
        let mut t = probed(&job, &c, DMA);
        let push = push_of(&mut t, &job, &c, &["a", "b"], 0);
        assert_eq!(push.batch, paths(&["a", "b"]), "{name}");
        assert!(t.pushing(), "{name}");
        let after = t.on_push(&job, oldest(&t, 0), rep, c.at(100), SystemTime::UNIX_EPOCH);
        assert!(!t.pushing(), "{name}");
        assert_eq!(after.pushed, pushed, "{name}");
        assert_eq!(after.save, saved, "{name}");
        assert_eq!(after.source_lost.is_some(), lost, "{name}");
        let st = pushed_at(&t, &c, 100);
        assert_eq!(st.queue_depth, depth, "{name}");
        assert_eq!(st.failing_paths.map_or(0, |f| f.count), failing, "{name}");
        assert_eq!(st.pushes_ok, ok, "{name}");
        assert_eq!(st.pushes_failed, failed_n, "{name}");
        assert_eq!(
            st.last_success.is_some(),
            ok > 0,
            "{name}: last success only after one"
        );
        // What the fail log was told is what the status says it holds.
        let backlog = after.save.as_ref().map_or(0, |b| b.len() as u64);
        assert_eq!(st.retry_backlog, backlog, "{name}");
    }
}

#[test]
fn a_failing_path_is_retried_alone_then_cleared() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    push_of(&mut t, &job, &c, &["a", "b"], 0);
    let rep = failed_alone("b");
    t.on_push(&job, oldest(&t, 0), rep, c.at(100), SystemTime::UNIX_EPOCH);
    // The target's own backoff is untouched; `b` waits its own 1 s.
    assert_eq!(t.retry.at, None);
    assert_eq!(t.next(&job, c.at(200)), Action::WaitUntil(c.at(1100)));
    // A change to `b` meanwhile is held out; `c` goes.
    let push = push_of(&mut t, &job, &c, &["b", "c"], 300);
    assert_eq!(push.batch, paths(&["c"]));
    t.on_push(
        &job,
        oldest(&t, 0),
        report(Class::Success),
        c.at(400),
        SystemTime::UNIX_EPOCH,
    );
    // Due: handed back to the queue at 1100 ms, pushed alone once the queue's delay has
    // passed, and once it goes the fail log is emptied.
    assert_eq!(t.next(&job, c.at(1100)), Action::WaitUntil(c.at(1150)));
    match t.next(&job, c.at(1151)) {
        Action::Push(push) => assert_eq!(push.batch, paths(&["b"])),
        other => panic!("expected b's retry, got {other:?}"),
    }
    let after = t.on_push(
        &job,
        oldest(&t, 0),
        report(Class::Success),
        c.at(1200),
        SystemTime::UNIX_EPOCH,
    );
    assert_eq!(after.save, Some(Batch::default()));
    assert_eq!(pushed_at(&t, &c, 1200).failing_paths, None);
}

#[test]
fn delete_missing_args_unsupported_switches_to_the_filter_form() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    // (settings changed while the push ran, want caps after, want next action)
    let cases = [(false, Some(FILTER)), (true, None)];
    for (stale, caps) in cases {
        let mut t = probed(&job, &c, DMA);
        let push = push_of(&mut t, &job, &c, &["a"], 0);
        assert_eq!(push.caps, DMA);
        if stale {
            t.reconfigure(local("/dst"), false, c.at(60));
        }
        let after = t.on_push(
            &job,
            oldest(&t, 0),
            report(Class::DeleteMissingArgsUnsupported),
            c.at(100),
            SystemTime::UNIX_EPOCH,
        );
        // Not a failure: nothing saved, no backoff, the batch back in the queue.
        assert_eq!(after, AfterPush::default(), "stale {stale}");
        assert_eq!(t.retry.caps, caps, "stale {stale}");
        assert_eq!(t.counters.pushes_failed, 0, "stale {stale}");
        assert_eq!(t.retry.at, None, "stale {stale}");
        match t.next(&job, c.at(100)) {
            Action::Push(again) => {
                assert!(!stale);
                assert_eq!(again.caps, FILTER);
                assert_eq!(again.batch, paths(&["a"]));
            }
            // Stale: what was learnt is about the old settings; probed again.
            Action::Probe => assert!(stale),
            other => panic!("stale {stale}: unexpected {other:?}"),
        }
    }
}

#[test]
fn fallback_caps_table() {
    // (caps used, outcome, want)
    let cases = [
        (DMA, Class::DeleteMissingArgsUnsupported, Some(FILTER)),
        (FILTER, Class::DeleteMissingArgsUnsupported, None),
        (DMA, Class::Retry, None),
        (DMA, Class::Success, None),
    ];
    for (used, class, want) in cases {
        assert_eq!(
            fallback_caps(used, &outcome(class)),
            want,
            "{used:?} {class:?}"
        );
    }
}

#[test]
fn force_full_lasts_until_a_whole_tree_push() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    t.force_full();
    // (queue a full push?, outcome, want guard on that push, want guard on the next)
    let cases = [
        (false, Class::Success, false, false),
        (true, Class::Retry, false, false),
        (true, Class::Success, false, true),
    ];
    let mut now = 0;
    for (i, (full, class, guard, guard_next)) in cases.into_iter().enumerate() {
        if full {
            t.push_now(true, c.at(now));
        } else {
            t.queue(Change::Path(p("a")), c.at(now));
        }
        let push = match t.next(&job, c.at(now + 51)) {
            Action::Push(push) => push,
            other => panic!("case {i}: {other:?}"),
        };
        assert_eq!(push.batch.full, full, "case {i}");
        assert_eq!(push.guard, guard, "case {i}");
        t.on_push(
            &job,
            oldest(&t, 0),
            report(class),
            c.at(now + 60),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(!t.force_full, guard_next, "case {i}");
        now += 400 * SEC;
    }
    assert_eq!(pushed_at(&t, &c, now).full_syncs, 1);
}

#[test]
fn limited_is_learnt_from_a_busy_refusal() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    // (settings changed while the push ran, want one run at a time next)
    for (stale, want) in [(false, true), (true, false)] {
        let mut t = probed(&job, &c, DMA);
        let push = push_of(&mut t, &job, &c, &["a"], 0);
        assert!(!push.one_at_a_time);
        if stale {
            t.reconfigure(local("/dst"), false, c.at(60));
            t.next(&job, c.at(60));
            t.on_probe(&job, 1, Ok(DMA), c.at(60));
        }
        let rep = PushReport {
            refused_busy: true,
            ..report(Class::Success)
        };
        t.on_push(&job, oldest(&t, 0), rep, c.at(100), SystemTime::UNIX_EPOCH);
        let next = push_of(&mut t, &job, &c, &["b"], 200);
        assert_eq!(next.one_at_a_time, want, "stale {stale}");
    }
}

#[test]
fn tree_mode_pushes_the_whole_tree() {
    let job = sync_job(Mode::Tree);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    t.queue_seen(&job, Change::Path(p("a")), c.at(0));
    assert!(pushed_at(&t, &c, 0).full_pending);
    match t.next(&job, c.at(50)) {
        Action::Push(push) => assert_eq!(push.batch, Batch::full()),
        other => panic!("{other:?}"),
    }
    // The periodic push stays periodic (queued as it is).
    t.on_push(
        &job,
        oldest(&t, 0),
        report(Class::Success),
        c.at(60),
        SystemTime::UNIX_EPOCH,
    );
    t.queue(Change::PeriodicFull, c.at(100));
    match t.next(&job, c.at(150)) {
        Action::Push(push) => assert_eq!(push.batch, Batch::periodic()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deadlines() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = TargetState::new(&job, local("/dst"), paths(&["a"]), c.at(0));
    // Caps unknown: due at once when the sync is ready; nothing is due for a sync that
    // is not (nothing of it starts: the engine would spin on a past deadline).
    assert_eq!(t.deadline(c.at(0), true), Some(c.at(0)));
    assert_eq!(t.deadline(c.at(100), false), None);
    assert_eq!(t.next(&job, c.at(0)), Action::Probe);
    assert_eq!(t.deadline(c.at(0), true), None);
    t.on_probe(&job, 0, Err(outcome(Class::Retry)), c.at(10));
    // The retry time holds the queue back.
    assert_eq!(t.deadline(c.at(20), true), Some(c.at(1010)));
    t.push_now(false, c.at(20));
    assert_eq!(t.deadline(c.at(20), true), Some(c.at(20)));
}

#[test]
fn saving_keeps_the_push_in_flight() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    // Nothing owed, nothing in the fail log: nothing to write.
    assert_eq!(t.to_save(c.at(0)), None);
    push_of(&mut t, &job, &c, &["a"], 0);
    t.queue_seen(&job, Change::Path(p("b")), c.at(60));
    assert_eq!(t.to_save(c.at(70)), Some(paths(&["a", "b"])));
    assert_eq!(t.pending(), 2);
    t.saved(&paths(&["a", "b"]));
    t.on_push(
        &job,
        oldest(&t, 0),
        report(Class::Success),
        c.at(80),
        SystemTime::UNIX_EPOCH,
    );
    // The fail log still holds 2: it must be rewritten, with `b` alone.
    assert_eq!(t.to_save(c.at(90)), Some(paths(&["b"])));
}

#[test]
fn status_fields() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    let mut t = probed(&job, &c, DMA);
    push_of(&mut t, &job, &c, &["a", "b"], 0);
    t.queue_seen(&job, Change::Path(p("c")), c.at(100));
    let live = Live {
        waiting: Some(c.at(500)),
        progress: None,
    };
    let (st, degraded) = t.status(c.at(2000), wall, live);
    assert_eq!(st.name, "local");
    assert_eq!(st.dest, "/dst/");
    assert_eq!(st.queue_depth, 1);
    assert_eq!(st.in_flight, 2);
    assert_eq!(
        st.lag_seconds, 2.0,
        "the oldest change is the one in flight"
    );
    assert!(degraded, "waiting for a busy daemon for over a second");
    assert_eq!(
        st.last_error.as_deref(),
        Some("waiting for a busy daemon (no free connection for 2s): the daemon is busy (max connections reached)")
    );
    t.on_push(&job, oldest(&t, 0), report(Class::Retry), c.at(2000), wall);
    let (st, degraded) = t.status(c.at(2000), wall, Live::default());
    assert!(degraded);
    assert_eq!(st.consecutive_failures, 1);
    assert_eq!(st.last_error.as_deref(), Some("Retry"));
    assert_eq!(st.next_retry_at, Some(1001.0));
    assert_eq!(st.retry_backlog, 3);
}

#[test]
fn reconfigure_forgets_what_was_learnt() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    // (destination moved, want a full push queued)
    for moved in [false, true] {
        let mut t = probed(&job, &c, DMA);
        push_of(&mut t, &job, &c, &["a"], 0);
        let rep = PushReport {
            refused_busy: true,
            ..report(Class::Retry)
        };
        t.on_push(&job, oldest(&t, 0), rep, c.at(100), SystemTime::UNIX_EPOCH);
        assert!(t.retry.limited && t.retry.at.is_some() && t.retry.last_error.is_some());
        t.reconfigure(local("/new"), moved, c.at(200));
        assert_eq!(t.cfg_gen(), 1, "moved {moved}");
        assert_eq!(t.dest(), "/new/", "moved {moved}");
        assert_eq!(t.retry.caps, None, "moved {moved}");
        assert_eq!(t.retry.backoff, Duration::ZERO, "moved {moved}");
        assert!(!t.retry.limited, "moved {moved}");
        assert_eq!(t.retry.at, None, "moved {moved}");
        let st = pushed_at(&t, &c, 200);
        // The queue is kept (the failed `a`), a full push added when moved.
        assert_eq!(st.full_pending, moved, "moved {moved}");
        assert_eq!(st.queue_depth, 1, "moved {moved}");
        assert_eq!(st.last_error, None, "moved {moved}");
        // The counters are the target's history: kept.
        assert_eq!(st.pushes_failed, 1, "moved {moved}");
        assert_eq!(t.next(&job, c.at(200)), Action::Probe, "moved {moved}");
    }
}

#[test]
fn a_busy_episode_ends_with_a_success() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    push_of(&mut t, &job, &c, &["a"], 0);
    t.on_push(
        &job,
        oldest(&t, 0),
        report(Class::Busy),
        c.at(100),
        SystemTime::UNIX_EPOCH,
    );
    assert_eq!(t.retry.busy_since, Some(c.at(100)));
    // Still busy a second later: the episode keeps its start.
    let push = match t.next(&job, c.at(1100)) {
        Action::Push(push) => push,
        other => panic!("{other:?}"),
    };
    assert_eq!(push.batch, paths(&["a"]));
    t.on_push(
        &job,
        oldest(&t, 0),
        report(Class::Busy),
        c.at(3100),
        SystemTime::UNIX_EPOCH,
    );
    assert_eq!(t.retry.busy_since, Some(c.at(100)));
    assert_eq!(
        pushed_at(&t, &c, 3100).last_error.as_deref(),
        Some("waiting for a busy daemon (no free connection for 3s): Busy")
    );
    assert_eq!(
        t.retry.backoff,
        Duration::ZERO,
        "busy never grows the backoff"
    );
    match t.next(&job, c.at(4100)) {
        Action::Push(_) => {}
        other => panic!("{other:?}"),
    }
    t.on_push(
        &job,
        oldest(&t, 0),
        report(Class::Success),
        c.at(4200),
        SystemTime::UNIX_EPOCH,
    );
    assert_eq!(t.retry.busy_since, None);
    let (st, degraded) = t.status(c.at(4200), SystemTime::UNIX_EPOCH, Live::default());
    assert!(!degraded);
    assert_eq!(st.consecutive_failures, 0);
}

/// What `next` says at `ms`, as a push's batch paths ("wait" when it starts nothing).
fn started(t: &mut TargetState, job: &SyncJob, c: &Clock, ms: u64) -> Option<Push> {
    match t.next(job, c.at(ms)) {
        Action::Push(push) => Some(push),
        _ => None,
    }
}

fn strs(b: &Batch) -> Vec<String> {
    b.paths
        .iter()
        .chain(&b.trees)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

#[test]
fn a_disjoint_batch_starts_beside_a_long_push_only() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    // The big push starts at 51 ms; a small file changes at 100 ms (due at 151 ms).
    let big = push_of(&mut t, &job, &c, &["big.iso"], 0);
    assert!(!big.beside);
    t.queue_seen(&job, Change::Path(p("small")), c.at(100));
    // The big push is not yet older than the longest window (50 + 150 ms): wait.
    assert_eq!(t.next(&job, c.at(160)), Action::WaitUntil(c.at(251)));
    assert_eq!(t.deadline(c.at(160), true), Some(c.at(251)));
    let small = started(&mut t, &job, &c, 251).expect("a push beside the big one");
    assert!(small.beside);
    assert_eq!(strs(&small.batch), vec!["small"]);
    assert_ne!(small.ticket, big.ticket);
    let st = pushed_at(&t, &c, 260);
    assert_eq!((st.in_flight, st.queue_depth), (2, 0));
    assert_eq!(t.runs(), 2);
    // The small one lands first: its hooks fire, the big one is still in flight.
    let after = succeeded(&mut t, &job, small.ticket, c.at(300));
    assert_eq!(
        after.pushed.map(|b| strs(&b)),
        Some(vec!["small".to_string()])
    );
    assert!(t.pushing());
    assert_eq!(pushed_at(&t, &c, 300).in_flight, 1);
    let after = succeeded(&mut t, &job, big.ticket, c.at(900));
    assert_eq!(
        after.pushed.map(|b| strs(&b)),
        Some(vec!["big.iso".to_string()])
    );
    assert!(t.idle());
    assert_eq!(pushed_at(&t, &c, 900).pushes_ok, 2);
}

#[test]
fn a_burst_of_written_files_goes_at_once_in_two_pushes_side_by_side() {
    use crate::queue::ENOUGH_PATHS;
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    // A copy: 2 × ENOUGH_PATHS files written within 10 ms.
    let n = 2 * ENOUGH_PATHS;
    let names: Vec<String> = (0..n).map(|i| format!("burst/f{i:04}")).collect();
    for (i, name) in names.iter().enumerate() {
        t.queue_seen(&job, Change::Path(p(name)), c.at(i as u64 * 10 / n as u64));
    }
    // Due at once (no 50 ms window), halved: the second half starts beside the first.
    let first = started(&mut t, &job, &c, 10).expect("the first half at once");
    let second = started(&mut t, &job, &c, 10).expect("the second half beside it");
    assert!(!first.beside && second.beside);
    assert_eq!(strs(&first.batch), names[..ENOUGH_PATHS].to_vec());
    assert_eq!(strs(&second.batch), names[ENOUGH_PATHS..].to_vec());
    // Two in flight: the most; more files wait for one to end.
    t.queue_seen(&job, Change::Path(p("burst/late")), c.at(20));
    assert_eq!(started(&mut t, &job, &c, 300), None);
    succeeded(&mut t, &job, first.ticket, c.at(300));
    let late = started(&mut t, &job, &c, 300).expect("the rest once a push ended");
    assert_eq!(strs(&late.batch), vec!["burst/late"]);
    // An `rm` of as many files: one push, after the stream ended.
    let mut t = probed(&job, &c, DMA);
    for (i, name) in names.iter().enumerate() {
        t.queue_seen(&job, Change::Gone(p(name)), c.at(i as u64 * 10 / n as u64));
    }
    assert_eq!(started(&mut t, &job, &c, 10), None);
    let rm = started(&mut t, &job, &c, 50).expect("the deletions in one push");
    assert_eq!(rm.batch.paths.len(), n);
    assert_eq!(started(&mut t, &job, &c, 50), None);
}

#[test]
fn short_runs_never_pipeline() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    let first = push_of(&mut t, &job, &c, &["a"], 0);
    t.queue_seen(&job, Change::Path(p("b")), c.at(60));
    // Due at 111 ms, but the push in flight is young until 251 ms.
    assert_eq!(started(&mut t, &job, &c, 111), None);
    succeeded(&mut t, &job, first.ticket, c.at(140));
    let next = started(&mut t, &job, &c, 140).expect("the next batch once the run ended");
    assert!(!next.beside);
    assert_eq!(strs(&next.batch), vec!["b"]);
}

#[test]
fn a_path_queued_again_during_its_run_waits_for_it() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    let big = push_of(&mut t, &job, &c, &["d/big.iso"], 0);
    // Written again during its own push; beside it, a file elsewhere and the parent.
    for path in ["d/big.iso", "d", "e/x"] {
        t.queue_seen(&job, Change::Path(p(path)), c.at(300));
    }
    let beside = started(&mut t, &job, &c, 360).expect("the disjoint part");
    assert_eq!(strs(&beside.batch), vec!["e/x"]);
    // What waits wakes nothing until a push ends.
    assert_eq!(t.next(&job, c.at(5000)), Action::Idle);
    assert_eq!(t.deadline(c.at(5000), true), None);
    assert_eq!(pushed_at(&t, &c, 5000).queue_depth, 2);
    // Saved at a stop: both pushes in flight and the waiting paths.
    let saved = t.to_save(c.at(5000)).expect("owed");
    assert_eq!(strs(&saved), vec!["d", "d/big.iso", "e/x"]);
    succeeded(&mut t, &job, beside.ticket, c.at(5100));
    assert_eq!(started(&mut t, &job, &c, 5100), None, "still the big one");
    succeeded(&mut t, &job, big.ticket, c.at(9000));
    let again = started(&mut t, &job, &c, 9000).expect("pushed again after its run");
    assert!(!again.beside);
    assert_eq!(strs(&again.batch), vec!["d", "d/big.iso"]);
}

#[test]
fn a_whole_tree_push_runs_alone() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    // A full push in flight: nothing beside it.
    let mut t = probed(&job, &c, DMA);
    t.queue(Change::Full, c.at(0));
    let full = started(&mut t, &job, &c, 50).expect("the full push");
    t.queue_seen(&job, Change::Path(p("a")), c.at(100));
    assert_eq!(t.next(&job, c.at(10_000)), Action::Idle);
    assert_eq!(t.deadline(c.at(10_000), true), None);
    t.on_push(
        &job,
        full.ticket,
        report(Class::Success),
        c.at(20_000),
        SystemTime::UNIX_EPOCH,
    );
    assert!(started(&mut t, &job, &c, 20_000).is_some());
    // A full push queued beside a long paths push waits for it, and keeps what came
    // with it.
    let mut t = probed(&job, &c, DMA);
    let paths = push_of(&mut t, &job, &c, &["a"], 0);
    t.queue(Change::Full, c.at(300));
    assert_eq!(t.next(&job, c.at(10_000)), Action::Idle);
    assert!(pushed_at(&t, &c, 10_000).full_pending);
    t.on_push(
        &job,
        paths.ticket,
        report(Class::Success),
        c.at(20_000),
        SystemTime::UNIX_EPOCH,
    );
    let full = started(&mut t, &job, &c, 20_000).expect("the full push, alone");
    assert_eq!(full.batch, Batch::full());
    // Tree mode: every push is whole, so never two.
    let job = sync_job(Mode::Tree);
    let mut t = probed(&job, &c, DMA);
    t.queue_seen(&job, Change::Path(p("a")), c.at(0));
    assert!(started(&mut t, &job, &c, 50).is_some());
    t.queue_seen(&job, Change::Path(p("b")), c.at(100));
    assert_eq!(t.next(&job, c.at(10_000)), Action::Idle);
}

#[test]
fn at_most_max_in_flight_pushes() {
    for max in [1, 2, 3] {
        let mut job = sync_job(Mode::Files);
        job.max_in_flight = max;
        let c = Clock(Instant::now());
        let mut t = probed(&job, &c, DMA);
        push_of(&mut t, &job, &c, &["f0"], 0);
        let mut ms = 1000;
        for i in 1..5 {
            t.queue_seen(&job, Change::Path(p(&format!("f{i}"))), c.at(ms));
            ms += 1000;
            started(&mut t, &job, &c, ms);
        }
        assert_eq!(t.runs(), max, "max_in_flight {max}");
        assert_eq!(pushed_at(&t, &c, ms).in_flight, max as u64);
    }
}

#[test]
fn a_busy_refusal_beside_a_push_serialises_the_target_for_a_while() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    let big = push_of(&mut t, &job, &c, &["big.iso"], 0);
    t.queue_seen(&job, Change::Path(p("small")), c.at(300));
    let small = started(&mut t, &job, &c, 351).expect("beside");
    // max connections = 1: the daemon refuses the second connection.
    let refused = PushReport {
        refused_busy: true,
        ..report(Class::Busy)
    };
    let after = t.on_push(
        &job,
        small.ticket,
        refused,
        c.at(360),
        SystemTime::UNIX_EPOCH,
    );
    assert_eq!(after, AfterPush::default());
    let st = pushed_at(&t, &c, 360);
    // Not lost, not a failure: the batch waits in the queue for the big push.
    assert_eq!((st.queue_depth, st.in_flight), (1, 1));
    assert_eq!((st.consecutive_failures, st.pushes_failed), (0, 0));
    assert_eq!((t.retry.at, st.last_error), (None, None));
    assert!(t.retry.limited);
    assert_eq!(started(&mut t, &job, &c, 5000), None, "one push at a time");
    assert_eq!(t.deadline(c.at(5000), true), None);
    succeeded(&mut t, &job, big.ticket, c.at(9000));
    let retried = started(&mut t, &job, &c, 9000).expect("retried after the big push");
    assert_eq!(strs(&retried.batch), vec!["small"]);
    assert!(!retried.beside && retried.one_at_a_time);
    // Still serial a while later; pipelining again once SERIAL_FOR has passed.
    t.queue_seen(&job, Change::Path(p("other")), c.at(9100));
    assert_eq!(started(&mut t, &job, &c, 60_000), None);
    let again = 360 + crate::pipeline::SERIAL_FOR.as_millis() as u64;
    let beside = started(&mut t, &job, &c, again).expect("pipelining again");
    assert!(beside.beside);
}

#[test]
fn a_failure_beside_a_push_keeps_its_batch() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    let big = push_of(&mut t, &job, &c, &["big.iso"], 0);
    t.queue_seen(&job, Change::Path(p("small")), c.at(300));
    let small = started(&mut t, &job, &c, 351).expect("beside");
    let after = t.on_push(
        &job,
        small.ticket,
        report(Class::Retry),
        c.at(400),
        SystemTime::UNIX_EPOCH,
    );
    // The fail log holds what the target owes besides the push in flight.
    assert_eq!(
        after.save.map(|b| strs(&b)),
        Some(vec!["small".to_string()])
    );
    assert_eq!(pushed_at(&t, &c, 400).consecutive_failures, 1);
    // A stale ticket (the push already reported) changes nothing.
    let again = succeeded(&mut t, &job, small.ticket, c.at(410));
    assert_eq!(again, AfterPush::default());
    assert_eq!(pushed_at(&t, &c, 410).in_flight, 1);
    // It waits its backoff (1 s after the failure)...
    assert_eq!(t.next(&job, c.at(500)), Action::WaitUntil(c.at(1400)));
    succeeded(&mut t, &job, big.ticket, c.at(900));
    // The big push's success says the target works again (any success resets the
    // backoff): it goes at once.
    let retried = started(&mut t, &job, &c, 900).expect("retried");
    assert_eq!(strs(&retried.batch), vec!["small"]);
}

#[test]
fn a_failing_path_is_retried_while_the_queue_waits_for_a_push_in_flight() {
    let job = sync_job(Mode::Files);
    let c = Clock(Instant::now());
    let mut t = probed(&job, &c, DMA);
    // `x` fails alone and waits its 1 s (due at 1100 ms).
    push_of(&mut t, &job, &c, &["x"], 0);
    let rep = failed_alone("x");
    t.on_push(&job, oldest(&t, 0), rep, c.at(100), SystemTime::UNIX_EPOCH);
    // A long push of `d/big`; `d` changes meanwhile and waits for it.
    let big = push_of(&mut t, &job, &c, &["d/big"], 200);
    t.queue_seen(&job, Change::Path(p("d")), c.at(500));
    assert_eq!(started(&mut t, &job, &c, 600), None);
    // The queue is held, the failing path's retry still wakes the engine, and goes.
    assert_eq!(t.deadline(c.at(600), true), Some(c.at(1100)));
    // (The queue is overdue since `d` came: it goes at once, without `d`.)
    let retry = started(&mut t, &job, &c, 1100).expect("the failing path beside");
    assert_eq!(strs(&retry.batch), vec!["x"]);
    assert!(retry.beside);
    assert_eq!(pushed_at(&t, &c, 1100).queue_depth, 1, "d still waits");
    assert_ne!(retry.ticket, big.ticket);
}
