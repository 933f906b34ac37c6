use super::*;
use crate::report::tests::{running_with, sync_status};
use syncd_worker::status::{FailingPaths, State};

const LIMITS: Limits = Limits {
    warn_lag: Duration::from_secs(10),
    crit_lag: Duration::from_secs(60),
};

fn target(name: &str) -> TargetStatus {
    serde_json::from_value(serde_json::json!({
        "name": name, "dest": "rsync_backup@backup::data", "queue_depth": 0,
        "full_pending": false, "in_flight": 0, "last_success": 1.0, "lag_seconds": 0.0,
        "pushes_ok": 4, "pushes_failed": 0, "consecutive_failures": 0, "last_error": null,
        "retry_backlog": 0, "next_retry_at": null, "full_syncs": 0,
        "delete_method": "delete-missing-args"
    }))
    .expect("a target status")
}

/// A running syncd whose worker is `state` with one sync `s` and `targets`.
fn running(state: State, targets: Vec<TargetStatus>) -> Report {
    let mut r = running_with(sync_status(targets));
    if let Some(w) = &mut r.worker {
        w.state = state;
    }
    r.phase = Some(Phase::Running);
    r
}

fn with<F: FnOnce(&mut TargetStatus)>(name: &str, f: F) -> TargetStatus {
    let mut t = target(name);
    f(&mut t);
    t
}

#[test]
fn verdicts_table() {
    let not_running = Report {
        running: false,
        code: 3,
        message: "syncd is not running".into(),
        worker: None,
        worker_pid: None,
        phase: None,
        ..running(State::Watching, Vec::new())
    };
    let unknown_lock = Report {
        code: 4,
        message: "syncd's status is unknown: its lock is held by pid 7".into(),
        ..not_running_clone(&not_running)
    };
    let restarting = Report {
        phase: Some(Phase::Restarting),
        message: "syncd is running (pid 1), worker restarting (exit 1)".into(),
        ..running(State::Watching, vec![target("backup")])
    };
    let no_status = Report {
        worker: None,
        ..running(State::Watching, Vec::new())
    };
    let mut lost = running(State::Degraded, vec![target("backup")]);
    if let Some(w) = &mut lost.worker {
        w.syncs[0].source_problem = Some("/src is no longer mounted".into());
    }
    let mut unwatched = running(State::Degraded, vec![target("backup")]);
    if let Some(w) = &mut unwatched.worker {
        w.syncs[0].unwatched_dirs = 12;
    }
    let cases: Vec<(&str, Report, Code, &str)> = vec![
        (
            "in step",
            running(State::Watching, vec![with("backup", |t| t.lag_seconds = 0.2)]),
            Code::Ok,
            "SYNCD OK - watching: 1 target of 1 sync, lag at most 0.2s | lag_backup=0.2s;10;60;0 queue_backup=0;;;0 backlog_backup=0;;;0 failed_backup=0c",
        ),
        (
            "starting is not a problem",
            running(State::Starting, vec![target("backup")]),
            Code::Ok,
            "SYNCD OK - starting: 1 target",
        ),
        (
            "not running",
            not_running,
            Code::Critical,
            "SYNCD CRITICAL - syncd is not running",
        ),
        ("lock holder unseen", unknown_lock, Code::Unknown, "SYNCD UNKNOWN - syncd's status is unknown"),
        ("worker restarting", restarting, Code::Critical, "SYNCD CRITICAL - syncd is running (pid 1), worker restarting"),
        ("status unreadable", no_status, Code::Unknown, "SYNCD UNKNOWN - syncd is running, but its status file cannot be read"),
        ("source lost", lost, Code::Critical, "SYNCD CRITICAL - s: source lost (/src is no longer mounted)"),
        ("unwatched", unwatched, Code::Critical, "SYNCD CRITICAL - s: 12 directories not watched"),
        (
            "lag below warn",
            running(State::Syncing, vec![with("backup", |t| t.lag_seconds = 9.9)]),
            Code::Ok,
            "SYNCD OK - syncing",
        ),
        (
            "lag at warn",
            running(State::Syncing, vec![with("backup", |t| t.lag_seconds = 10.0)]),
            Code::Warning,
            "SYNCD WARNING - s → backup: lag 10.0s ≥ 10s | lag_backup=10.0s;10;60;0",
        ),
        (
            "lag at crit",
            running(State::Syncing, vec![with("backup", |t| t.lag_seconds = 60.0)]),
            Code::Critical,
            "SYNCD CRITICAL - s → backup: lag 60.0s ≥ 60s",
        ),
        (
            "failing pushes",
            running(
                State::Degraded,
                vec![with("backup", |t| {
                    t.consecutive_failures = 3;
                    t.pushes_failed = 5;
                    t.last_error = Some("connection refused | retrying\nsoon".into());
                    t.degraded = true;
                })],
            ),
            Code::Warning,
            "SYNCD WARNING - s → backup: 3 failed pushes in a row (connection refused / retrying soon) | lag_backup=0.0s;10;60;0 queue_backup=0;;;0 backlog_backup=0;;;0 failed_backup=5c",
        ),
        (
            "the last verify found drift",
            running(
                State::Watching,
                vec![with("backup", |t| t.verify = Some(verified("drift", None)))],
            ),
            Code::Warning,
            "SYNCD WARNING - s → backup: the last verify found drift (1 missing, 0 different, 2 extra; syncd sync --full repairs)",
        ),
        (
            "the last verify could not check",
            running(
                State::Watching,
                vec![with("backup", |t| {
                    t.verify = Some(verified("failed", Some("connection refused")))
                })],
            ),
            Code::Warning,
            "SYNCD WARNING - s → backup: the last verify could not check the target (connection refused)",
        ),
        (
            "the last verify found them equal",
            running(
                State::Watching,
                vec![with("backup", |t| t.verify = Some(verified("equal", None)))],
            ),
            Code::Ok,
            "SYNCD OK - watching",
        ),
        (
            "retry backlog",
            running(State::Watching, vec![with("backup", |t| t.retry_backlog = 4)]),
            Code::Warning,
            "SYNCD WARNING - s → backup: 4 paths waiting for a retry",
        ),
        (
            "failing paths",
            running(
                State::Degraded,
                vec![with("backup", |t| {
                    t.failing_paths = Some(FailingPaths {
                        count: 2,
                        examples: Vec::new(),
                    })
                })],
            ),
            Code::Warning,
            "SYNCD WARNING - s → backup: 2 paths failing on their own",
        ),
        (
            "busy daemon",
            running(
                State::Degraded,
                vec![with("backup", |t| {
                    t.degraded = true;
                    t.last_error = Some("waiting for a busy daemon".into());
                })],
            ),
            Code::Warning,
            "SYNCD WARNING - s → backup: degraded (waiting for a busy daemon)",
        ),
        (
            "worst first, every target's perfdata, names quoted",
            running(
                State::Degraded,
                vec![
                    with("a b", |t| t.retry_backlog = 1),
                    with("c", |t| t.lag_seconds = 75.0),
                ],
            ),
            Code::Critical,
            "SYNCD CRITICAL - s → c: lag 75.0s ≥ 60s; s → a b: 1 paths waiting for a retry | 'lag_a b'=0.0s;10;60;0 'queue_a b'=0;;;0 'backlog_a b'=1;;;0 'failed_a b'=0c lag_c=75.0s;10;60;0",
        ),
    ];
    let mut wrong = Vec::new();
    for (what, r, code, start) in cases {
        let v = verdict(&r, LIMITS);
        if v.code != code || !v.line.starts_with(start) || v.line.contains('\n') {
            wrong.push(format!(
                "{what}: want {code:?} {start:?}\n  got {:?} {:?}",
                v.code, v.line
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn not_running_clone(r: &Report) -> Report {
    Report {
        code: r.code,
        running: r.running,
        pid: r.pid,
        phase: r.phase,
        worker_pid: r.worker_pid,
        restarts: r.restarts,
        last_exit: r.last_exit.clone(),
        error: r.error.clone(),
        message: r.message.clone(),
        lock_held_by: Vec::new(),
        worker: None,
    }
}

#[test]
fn a_target_name_in_two_syncs_gets_its_sync_in_the_label() {
    let mut r = running(State::Watching, vec![target("backup")]);
    if let Some(w) = &mut r.worker {
        let mut other = w.syncs[0].clone();
        other.name = "logs".into();
        w.syncs.push(other);
        w.syncs[0].targets.push(target("off'site"));
    }
    let v = verdict(&r, LIMITS);
    assert_eq!(v.code, Code::Ok, "{}", v.line);
    for label in ["lag_s/backup=", "lag_logs/backup=", "'lag_off''site'="] {
        assert!(v.line.contains(label), "{label} in {}", v.line);
    }
}

#[test]
fn limits_that_make_no_sense_and_an_unreadable_status_are_unknown() {
    let v = verdict(
        &running(State::Watching, vec![target("backup")]),
        Limits {
            warn_lag: Duration::from_secs(90),
            crit_lag: Duration::from_millis(1500),
        },
    );
    assert_eq!(v.code, Code::Unknown);
    assert_eq!(
        v.line,
        "SYNCD UNKNOWN - --warn-lag 90 is above --crit-lag 1.5: give a warning limit at or below the critical one"
    );
    let v = unreadable("cannot read the status: permission denied");
    assert_eq!(
        (v.code, v.line.as_str()),
        (
            Code::Unknown,
            "SYNCD UNKNOWN - cannot read the status: permission denied"
        )
    );
}

/// A last verify with `outcome`: 1 missing and 2 extra when it is drift.
fn verified(outcome: &str, error: Option<&str>) -> syncd_worker::status::VerifyStatus {
    let drift = outcome == "drift";
    syncd_worker::status::VerifyStatus {
        finished_at: 1_764_806_000.0,
        outcome: outcome.into(),
        missing: u64::from(drift),
        different: 0,
        extra: if drift { 2 } else { 0 },
        seconds: 0.4,
        error: error.map(str::to_string),
    }
}
