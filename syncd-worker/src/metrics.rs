//! The worker's status as Prometheus metrics, in the text exposition format that
//! node_exporter's textfile collector reads (`metrics_file`). [`render`] is pure: a
//! [`Status`] in, the file's text out, the same text for the same status (the writer in
//! [`file`] compares texts to know whether anything changed). It never touches the
//! filesystem or the clock.
//!
//! Names follow Prometheus' conventions: `syncd_` prefix, base units (`_seconds`,
//! `_timestamp_seconds` for Unix times), `_total` on counters, one family per metric with
//! its `# HELP` and `# TYPE` lines and all its samples together. Sync-wide values carry a
//! `sync` label; per-target values `sync` and `target`. A sample whose value is unknown
//! (no push succeeded yet) is left out rather than written as 0.
//!
//! Bytes pushed are not exported: an ordinary push runs rsync without `--stats`, so the
//! worker does not know them; `syncd_pushed_paths_total` counts entries instead.
//!
//! A metric is one row of [`SYNC_METRICS`] or [`TARGET_METRICS`]: adding one (say, a
//! gauge per member of a target's last verify result) is a row there and nothing else.

pub mod file;
/// Test code only: the metrics file read back with a strict parser.
#[cfg(any(test, feature = "test-util"))]
pub mod parsed;

use std::fmt::Write as _;

use crate::status::{State, Status, SyncStatus, TargetStatus};

/// Counter or gauge: the `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// The samples one family has for one sync or target: a value, or values told apart
/// by one more label (`outcome="drift"`).
#[derive(Debug, Default)]
pub struct Samples(Vec<(Option<(&'static str, &'static str)>, f64)>);

impl Samples {
    /// The one value of this family.
    pub fn value(&mut self, v: f64) {
        self.0.push((None, v));
    }

    /// A value with an extra label `name="value"` (an enum's state as 0/1).
    pub fn labelled(&mut self, name: &'static str, value: &'static str, v: f64) {
        self.0.push((Some((name, value)), v));
    }
}

/// One metric family and `R`, the function that reads its samples.
pub struct Metric<R> {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub read: R,
}

/// Reads a sync's samples.
pub type SyncRead = fn(&SyncStatus, &mut Samples);
/// Reads a target's samples (its sync given for what the sync decides for it).
pub type TargetRead = fn(&SyncStatus, &TargetStatus, &mut Samples);

const fn gauge<R>(name: &'static str, help: &'static str, read: R) -> Metric<R> {
    Metric {
        name,
        kind: Kind::Gauge,
        help,
        read,
    }
}

const fn counter<R>(name: &'static str, help: &'static str, read: R) -> Metric<R> {
    Metric {
        name,
        kind: Kind::Counter,
        help,
        read,
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The values of the `watcher` label.
const WATCHERS: [&str; 2] = ["inotify", "fanotify"];

/// Per sync (label `sync`).
pub const SYNC_METRICS: &[Metric<SyncRead>] = &[
    gauge(
        "syncd_watched_directories",
        "Directories of the source watched one by one with inotify (0 under fanotify's one mark).",
        |s, o| o.value(s.watched_dirs as f64),
    ),
    gauge(
        "syncd_unwatched_directories",
        "Directories that could not be watched (inotify watch limit); covered by whole-tree pushes.",
        |s, o| o.value(s.unwatched_dirs as f64),
    ),
    counter(
        "syncd_inotify_overflows_total",
        "inotify (or fanotify) queue overflows seen (each one schedules a whole-tree push).",
        |s, o| o.value(s.overflows as f64),
    ),
    // Absent until the watcher is up.
    gauge(
        "syncd_watcher",
        "1 for the watcher that delivers the sync's changes (inotify, or fanotify: what watcher = auto became).",
        |s, o| {
            if let Some(w) = &s.watcher {
                for kind in WATCHERS {
                    o.labelled("watcher", kind, flag(w == kind));
                }
            }
        },
    ),
    gauge(
        "syncd_source_lost",
        "1 while the source path does not name the watched directory (unmounted, moved, replaced): nothing is pushed.",
        |s, o| o.value(flag(s.source_problem.is_some())),
    ),
];

/// Per target (labels `sync`, `target`). A target is degraded also when its sync is
/// (see [`target_degraded`]), so one gauge answers "is this copy kept up to date".
pub const TARGET_METRICS: &[Metric<TargetRead>] = &[
    gauge(
        "syncd_lag_seconds",
        "Age of the oldest change not yet pushed to the target (0 when in step).",
        |_, t, o| o.value(t.lag_seconds),
    ),
    gauge(
        "syncd_queue_depth",
        "Paths waiting to be pushed to the target (a pending whole-tree push counts as 1).",
        |_, t, o| o.value(t.queue_depth as f64),
    ),
    gauge(
        "syncd_in_flight_paths",
        "Paths in the rsync runs now in flight to the target.",
        |_, t, o| o.value(t.in_flight as f64),
    ),
    counter(
        "syncd_pushes_total",
        "Pushes to the target, by result (ok, failed).",
        |_, t, o| {
            o.labelled("result", "ok", t.pushes_ok as f64);
            o.labelled("result", "failed", t.pushes_failed as f64);
        },
    ),
    counter(
        "syncd_pushed_paths_total",
        "Entries carried by successful pushes: paths, directories pushed whole, a whole-tree push as 1.",
        |_, t, o| o.value(t.paths_pushed as f64),
    ),
    counter(
        "syncd_full_syncs_total",
        "Whole-tree pushes to the target that succeeded.",
        |_, t, o| o.value(t.full_syncs as f64),
    ),
    gauge(
        "syncd_consecutive_failures",
        "Failed pushes to the target since its last success.",
        |_, t, o| o.value(t.consecutive_failures as f64),
    ),
    gauge(
        "syncd_retry_backlog",
        "Paths in the target's fail log waiting for a retry.",
        |_, t, o| o.value(t.retry_backlog as f64),
    ),
    gauge(
        "syncd_failing_paths",
        "Paths that keep failing on their own (each retried with its own backoff).",
        |_, t, o| o.value(t.failing_paths.as_ref().map_or(0.0, |f| f.count as f64)),
    ),
    gauge(
        "syncd_last_success_timestamp_seconds",
        "Unix time of the last successful push to the target (absent before the first).",
        |_, t, o| {
            if let Some(at) = t.last_success {
                o.value(at);
            }
        },
    ),
    gauge(
        "syncd_degraded",
        "1 while something is wrong that syncd works around for this target: failing pushes or paths, a busy daemon, unwatched directories, a lost source.",
        |s, t, o| o.value(flag(target_degraded(s, t))),
    ),
    // The last periodic verify (`[sync.verify]`): absent until one has run.
    gauge(
        "syncd_verify_outcome",
        "The last verify of the target: 1 for its outcome (equal, drift, failed = could not be checked).",
        |_, t, o| {
            if let Some(v) = &t.verify {
                for outcome in VERIFY_OUTCOMES {
                    o.labelled("outcome", outcome, flag(v.outcome == outcome));
                }
            }
        },
    ),
    gauge(
        "syncd_verify_drift_entries",
        "Entries the last verify found missing on the target, different there, or extra there.",
        |_, t, o| {
            if let Some(v) = &t.verify {
                o.labelled("kind", "missing", v.missing as f64);
                o.labelled("kind", "different", v.different as f64);
                o.labelled("kind", "extra", v.extra as f64);
            }
        },
    ),
    gauge(
        "syncd_verify_finished_timestamp_seconds",
        "Unix time the last verify of the target ended.",
        |_, t, o| {
            if let Some(v) = &t.verify {
                o.value(v.finished_at);
            }
        },
    ),
    gauge(
        "syncd_verify_duration_seconds",
        "How long the last verify of the target took.",
        |_, t, o| {
            if let Some(v) = &t.verify {
                o.value(v.seconds);
            }
        },
    ),
];

/// The outcomes a verify reports (`VerifyStatus::outcome`).
const VERIFY_OUTCOMES: [&str; 3] = ["equal", "drift", "failed"];

/// The target is degraded, or its sync is (source lost, directories not watched).
pub fn target_degraded(s: &SyncStatus, t: &TargetStatus) -> bool {
    t.degraded || s.source_problem.is_some() || s.unwatched_dirs > 0
}

const STATES: [(State, &str); 5] = [
    (State::Starting, "starting"),
    (State::Watching, "watching"),
    (State::Syncing, "syncing"),
    (State::Degraded, "degraded"),
    (State::Stopping, "stopping"),
];

/// The metrics file's text for `status`.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "syncd_worker_state",
        Kind::Gauge,
        "The worker's state: 1 for the current one.",
        |rows| {
            for (state, name) in STATES {
                rows.push((
                    Vec::new(),
                    Some(("state", name)),
                    flag(status.state == state),
                ));
            }
        },
    );
    family(
        &mut out,
        "syncd_worker_start_time_seconds",
        Kind::Gauge,
        "Unix time the worker started.",
        |rows| rows.push((Vec::new(), None, status.started_at)),
    );
    for m in SYNC_METRICS {
        family(&mut out, m.name, m.kind, m.help, |rows| {
            for s in &status.syncs {
                let mut samples = Samples::default();
                (m.read)(s, &mut samples);
                for (extra, v) in samples.0 {
                    rows.push((vec![("sync", s.name.as_str())], extra, v));
                }
            }
        });
    }
    for m in TARGET_METRICS {
        family(&mut out, m.name, m.kind, m.help, |rows| {
            for s in &status.syncs {
                for t in &s.targets {
                    let mut samples = Samples::default();
                    (m.read)(s, t, &mut samples);
                    for (extra, v) in samples.0 {
                        let labels = vec![("sync", s.name.as_str()), ("target", t.name.as_str())];
                        rows.push((labels, extra, v));
                    }
                }
            }
        });
    }
    out
}

type Row<'a> = (
    Vec<(&'static str, &'a str)>,
    Option<(&'static str, &'static str)>,
    f64,
);

/// One family: HELP, TYPE, then its samples. A family without samples (no target has
/// succeeded yet) is left out whole.
fn family<'a>(
    out: &mut String,
    name: &str,
    kind: Kind,
    help: &str,
    fill: impl FnOnce(&mut Vec<Row<'a>>),
) {
    let mut rows = Vec::new();
    fill(&mut rows);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
    for (labels, extra, v) in rows {
        out.push_str(name);
        let all: Vec<(&str, &str)> = labels.into_iter().chain(extra).collect();
        if !all.is_empty() {
            out.push('{');
            for (i, (k, val)) in all.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape_label(val));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {}", number(v));
    }
}

/// A label value: `\`, `"` and newline escaped (the format's three).
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A HELP text: `\` and newline escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as the format spells it: integers without a fraction, `NaN`, `+Inf`,
/// `-Inf`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests;
