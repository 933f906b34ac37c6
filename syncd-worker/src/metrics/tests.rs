use super::parsed::parse;
use super::*;
use crate::status::FailingPaths;

fn target(name: &str) -> TargetStatus {
    TargetStatus {
        name: name.into(),
        dest: "rsync_backup@127.0.0.1::backup".into(),
        queue_depth: 0,
        full_pending: false,
        in_flight: 0,
        last_success: None,
        lag_seconds: 0.0,
        pushes_ok: 0,
        pushes_failed: 0,
        paths_pushed: 0,
        degraded: false,
        consecutive_failures: 0,
        last_error: None,
        retry_backlog: 0,
        next_retry_at: None,
        full_syncs: 0,
        delete_method: "delete-missing-args".into(),
        progress: None,
        failing_paths: None,
        verify: None,
    }
}

fn sync(name: &str, targets: Vec<TargetStatus>) -> SyncStatus {
    SyncStatus {
        name: name.into(),
        source: "/data".into(),
        source_resolved: None,
        source_problem: None,
        watcher: None,
        watcher_reason: None,
        watched_dirs: 0,
        unwatched_dirs: 0,
        overflows: 0,
        watches_asked: None,
        catchup: None,
        targets,
    }
}

fn status(state: State, syncs: Vec<SyncStatus>) -> Status {
    Status {
        pid: 42,
        started_at: 1_764_806_400.0,
        updated_at: 1_764_806_460.5,
        state,
        syncs,
    }
}

/// The whole file for one sync with one target that pushed: exactly what node_exporter
/// gets (the README's sample).
#[test]
fn one_target_renders_every_family_with_help_and_type() {
    let mut t = target("backup");
    t.queue_depth = 3;
    t.in_flight = 2;
    t.lag_seconds = 0.25;
    t.pushes_ok = 12;
    t.pushes_failed = 1;
    t.paths_pushed = 340;
    t.full_syncs = 1;
    t.retry_backlog = 0;
    t.last_success = Some(1_764_806_455.125);
    let mut s = sync("data", vec![t]);
    s.watched_dirs = 120;
    s.watcher = Some("inotify".into());
    let text = render(&status(State::Syncing, vec![s]));
    let want = r#"# HELP syncd_worker_state The worker's state: 1 for the current one.
# TYPE syncd_worker_state gauge
syncd_worker_state{state="starting"} 0
syncd_worker_state{state="watching"} 0
syncd_worker_state{state="syncing"} 1
syncd_worker_state{state="degraded"} 0
syncd_worker_state{state="stopping"} 0
# HELP syncd_worker_start_time_seconds Unix time the worker started.
# TYPE syncd_worker_start_time_seconds gauge
syncd_worker_start_time_seconds 1764806400
# HELP syncd_watched_directories Directories of the source watched one by one with inotify (0 under fanotify's one mark).
# TYPE syncd_watched_directories gauge
syncd_watched_directories{sync="data"} 120
# HELP syncd_unwatched_directories Directories that could not be watched (inotify watch limit); covered by whole-tree pushes.
# TYPE syncd_unwatched_directories gauge
syncd_unwatched_directories{sync="data"} 0
# HELP syncd_inotify_overflows_total inotify (or fanotify) queue overflows seen (each one schedules a whole-tree push).
# TYPE syncd_inotify_overflows_total counter
syncd_inotify_overflows_total{sync="data"} 0
# HELP syncd_watcher 1 for the watcher that delivers the sync's changes (inotify, or fanotify: what watcher = auto became).
# TYPE syncd_watcher gauge
syncd_watcher{sync="data",watcher="inotify"} 1
syncd_watcher{sync="data",watcher="fanotify"} 0
# HELP syncd_source_lost 1 while the source path does not name the watched directory (unmounted, moved, replaced): nothing is pushed.
# TYPE syncd_source_lost gauge
syncd_source_lost{sync="data"} 0
# HELP syncd_lag_seconds Age of the oldest change not yet pushed to the target (0 when in step).
# TYPE syncd_lag_seconds gauge
syncd_lag_seconds{sync="data",target="backup"} 0.25
# HELP syncd_queue_depth Paths waiting to be pushed to the target (a pending whole-tree push counts as 1).
# TYPE syncd_queue_depth gauge
syncd_queue_depth{sync="data",target="backup"} 3
# HELP syncd_in_flight_paths Paths in the rsync runs now in flight to the target.
# TYPE syncd_in_flight_paths gauge
syncd_in_flight_paths{sync="data",target="backup"} 2
# HELP syncd_pushes_total Pushes to the target, by result (ok, failed).
# TYPE syncd_pushes_total counter
syncd_pushes_total{sync="data",target="backup",result="ok"} 12
syncd_pushes_total{sync="data",target="backup",result="failed"} 1
# HELP syncd_pushed_paths_total Entries carried by successful pushes: paths, directories pushed whole, a whole-tree push as 1.
# TYPE syncd_pushed_paths_total counter
syncd_pushed_paths_total{sync="data",target="backup"} 340
# HELP syncd_full_syncs_total Whole-tree pushes to the target that succeeded.
# TYPE syncd_full_syncs_total counter
syncd_full_syncs_total{sync="data",target="backup"} 1
# HELP syncd_consecutive_failures Failed pushes to the target since its last success.
# TYPE syncd_consecutive_failures gauge
syncd_consecutive_failures{sync="data",target="backup"} 0
# HELP syncd_retry_backlog Paths in the target's fail log waiting for a retry.
# TYPE syncd_retry_backlog gauge
syncd_retry_backlog{sync="data",target="backup"} 0
# HELP syncd_failing_paths Paths that keep failing on their own (each retried with its own backoff).
# TYPE syncd_failing_paths gauge
syncd_failing_paths{sync="data",target="backup"} 0
# HELP syncd_last_success_timestamp_seconds Unix time of the last successful push to the target (absent before the first).
# TYPE syncd_last_success_timestamp_seconds gauge
syncd_last_success_timestamp_seconds{sync="data",target="backup"} 1764806455.125
# HELP syncd_degraded 1 while something is wrong that syncd works around for this target: failing pushes or paths, a busy daemon, unwatched directories, a lost source.
# TYPE syncd_degraded gauge
syncd_degraded{sync="data",target="backup"} 0
"#;
    assert_eq!(text, want);
    parse(&text).expect("a strict parser accepts it");
}

/// Every family: a name with the `syncd_` prefix, HELP text, a type the parser reads
/// back, `_total` exactly on counters, base units in the name.
#[test]
fn names_and_types_follow_prometheus_conventions() {
    let mut t = target("b");
    t.last_success = Some(1.0);
    t.verify = Some(crate::status::VerifyStatus {
        finished_at: 1.0,
        outcome: "equal".into(),
        missing: 0,
        different: 0,
        extra: 0,
        seconds: 0.1,
        error: None,
    });
    let mut s = sync("s", vec![t]);
    s.watcher = Some("fanotify".into());
    let text = render(&status(State::Watching, vec![s]));
    let parsed = parse(&text).expect("parses");
    let all: Vec<(&str, Kind)> = SYNC_METRICS
        .iter()
        .map(|m| (m.name, m.kind))
        .chain(TARGET_METRICS.iter().map(|m| (m.name, m.kind)))
        .collect();
    assert_eq!(
        parsed.families.len(),
        all.len() + 2,
        "{:?}",
        parsed.families
    );
    for (name, (kind, help)) in &parsed.families {
        assert!(name.starts_with("syncd_"), "{name}");
        assert!(!help.is_empty(), "{name} has no HELP");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}: counters and only counters end in _total"
        );
        assert!(kind == "counter" || kind == "gauge", "{name}: {kind}");
        assert!(
            !name.contains("_ms") && !name.contains("milliseconds") && !name.contains("bytes"),
            "{name}: base units only, and no bytes (not known)"
        );
    }
    for (name, kind) in all {
        let want = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        assert_eq!(parsed.families[name].0, want, "{name}");
    }
}

/// Values per sync and target, read back through the parser; hostile names are escaped.
#[test]
fn values_per_sync_and_target_read_back_through_a_parser() {
    let mut a = target("a");
    a.lag_seconds = 12.5;
    a.queue_depth = 7;
    a.pushes_ok = 3;
    a.paths_pushed = 9;
    a.last_success = Some(1_764_806_000.5);
    let mut b = target("quote\" back\\slash\nnewline");
    b.pushes_failed = 4;
    b.consecutive_failures = 4;
    b.retry_backlog = 11;
    b.degraded = true;
    b.failing_paths = Some(FailingPaths {
        count: 2,
        examples: Vec::new(),
    });
    b.verify = Some(crate::status::VerifyStatus {
        finished_at: 1_764_806_100.25,
        outcome: "drift".into(),
        missing: 1,
        different: 2,
        extra: 3,
        seconds: 0.5,
        error: None,
    });
    let mut web = sync("web", vec![a, b]);
    web.watched_dirs = 50;
    web.overflows = 2;
    let mut lost = sync("logs", vec![target("a")]);
    lost.source_problem = Some("unmounted".into());
    lost.unwatched_dirs = 3;
    let text = render(&status(State::Degraded, vec![web, lost]));
    let p = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let hostile = r#"quote\" back\\slash\nnewline"#;
    let cases: Vec<(String, Option<f64>)> = vec![
        ("syncd_worker_state{state=\"degraded\"}".into(), Some(1.0)),
        ("syncd_worker_state{state=\"watching\"}".into(), Some(0.0)),
        ("syncd_watched_directories{sync=\"web\"}".into(), Some(50.0)),
        (
            "syncd_inotify_overflows_total{sync=\"web\"}".into(),
            Some(2.0),
        ),
        ("syncd_source_lost{sync=\"web\"}".into(), Some(0.0)),
        ("syncd_source_lost{sync=\"logs\"}".into(), Some(1.0)),
        (
            "syncd_unwatched_directories{sync=\"logs\"}".into(),
            Some(3.0),
        ),
        (
            "syncd_lag_seconds{sync=\"web\",target=\"a\"}".into(),
            Some(12.5),
        ),
        (
            "syncd_queue_depth{sync=\"web\",target=\"a\"}".into(),
            Some(7.0),
        ),
        (
            "syncd_pushes_total{result=\"ok\",sync=\"web\",target=\"a\"}".into(),
            Some(3.0),
        ),
        (
            "syncd_pushed_paths_total{sync=\"web\",target=\"a\"}".into(),
            Some(9.0),
        ),
        (
            "syncd_last_success_timestamp_seconds{sync=\"web\",target=\"a\"}".into(),
            Some(1_764_806_000.5),
        ),
        (
            "syncd_degraded{sync=\"web\",target=\"a\"}".into(),
            Some(0.0),
        ),
        (
            format!("syncd_pushes_total{{result=\"failed\",sync=\"web\",target=\"{hostile}\"}}"),
            Some(4.0),
        ),
        (
            format!("syncd_consecutive_failures{{sync=\"web\",target=\"{hostile}\"}}"),
            Some(4.0),
        ),
        (
            format!("syncd_retry_backlog{{sync=\"web\",target=\"{hostile}\"}}"),
            Some(11.0),
        ),
        (
            format!("syncd_failing_paths{{sync=\"web\",target=\"{hostile}\"}}"),
            Some(2.0),
        ),
        (
            format!("syncd_degraded{{sync=\"web\",target=\"{hostile}\"}}"),
            Some(1.0),
        ),
        // Never succeeded: no sample rather than a 0 that reads as 1970.
        (
            format!("syncd_last_success_timestamp_seconds{{sync=\"web\",target=\"{hostile}\"}}"),
            None,
        ),
        (
            format!("syncd_verify_outcome{{outcome=\"drift\",sync=\"web\",target=\"{hostile}\"}}"),
            Some(1.0),
        ),
        (
            format!("syncd_verify_outcome{{outcome=\"equal\",sync=\"web\",target=\"{hostile}\"}}"),
            Some(0.0),
        ),
        (
            format!("syncd_verify_drift_entries{{kind=\"extra\",sync=\"web\",target=\"{hostile}\"}}"),
            Some(3.0),
        ),
        (
            format!("syncd_verify_drift_entries{{kind=\"different\",sync=\"web\",target=\"{hostile}\"}}"),
            Some(2.0),
        ),
        (
            format!("syncd_verify_finished_timestamp_seconds{{sync=\"web\",target=\"{hostile}\"}}"),
            Some(1_764_806_100.25),
        ),
        (
            format!("syncd_verify_duration_seconds{{sync=\"web\",target=\"{hostile}\"}}"),
            Some(0.5),
        ),
        // Never verified: no sample.
        (
            "syncd_verify_outcome{outcome=\"equal\",sync=\"web\",target=\"a\"}".into(),
            None,
        ),
        // A lost source or unwatched directories make every target of the sync degraded.
        (
            "syncd_degraded{sync=\"logs\",target=\"a\"}".into(),
            Some(1.0),
        ),
    ];
    let mut wrong = Vec::new();
    for (key, want) in cases {
        if p.get(&key) != want {
            wrong.push(format!("{key}: want {want:?}, got {:?}", p.get(&key)));
        }
    }
    assert!(wrong.is_empty(), "{}\n\n{text}", wrong.join("\n"));
}

/// No sync at all (a worker whose every sync was removed by a reload): the worker's own
/// families only, still a valid file.
#[test]
fn no_sync_is_a_valid_file_with_the_worker_families() {
    let text = render(&status(State::Watching, Vec::new()));
    let p = parse(&text).expect("parses");
    assert_eq!(
        p.families.keys().collect::<Vec<_>>(),
        ["syncd_worker_start_time_seconds", "syncd_worker_state"]
    );
}

#[test]
fn label_values_and_numbers_are_spelled_as_the_format_wants() {
    for (raw, want) in [
        ("plain", "plain"),
        ("a\"b", "a\\\"b"),
        ("a\\b", "a\\\\b"),
        ("a\nb", "a\\nb"),
        ("ünïcode/ok", "ünïcode/ok"),
    ] {
        assert_eq!(escape_label(raw), want, "{raw:?}");
    }
    for (v, want) in [
        (0.0, "0"),
        (3.0, "3"),
        (0.25, "0.25"),
        (1_764_806_455.125, "1764806455.125"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
    ] {
        assert_eq!(number(v), want, "{v}");
    }
    assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
}

/// The same status renders the same text (the writer compares texts to skip writes).
#[test]
fn rendering_is_deterministic() {
    let st = status(
        State::Syncing,
        vec![
            sync("x", vec![target("a"), target("b")]),
            sync("y", vec![target("a")]),
        ],
    );
    assert_eq!(render(&st), render(&st.clone()));
}
