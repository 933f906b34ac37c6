//! `syncd status --check`: the verdict of a Nagios/Icinga plugin (monitoring-plugins
//! guidelines) from a status [`Report`]. [`verdict`] is pure: the report and the limits
//! in, the exit code and the one line out (`SYNCD OK - … | perfdata`); it reads no file
//! and no clock.
//!
//! CRITICAL: syncd not running, the worker gone or restarting, a sync's source lost or
//! directories not watched (changes there go unseen), a target's lag at `--crit-lag` or
//! more. WARNING: a lag at `--warn-lag` or more, failing pushes (failures since the last
//! success), paths waiting in the fail log or failing on their own — a target down shows
//! as WARNING first and turns CRITICAL when its lag reaches the critical limit. UNKNOWN:
//! the status cannot be read (or the limits make no sense). OK otherwise, the worker
//! starting included.
//!
//! Perfdata, per target: `lag_T=…s;WARN;CRIT;0 queue_T=…;;;0 backlog_T=…;;;0
//! failed_T=…c`, with `T` the target's name, or `sync/target` where two syncs have a
//! target of the same name; quoted when it needs to be.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use syncd_worker::status::{SyncStatus, TargetStatus};

use crate::report::Report;
use crate::state::Phase;

/// The plugin's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Code {
    fn word(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Warning => "WARNING",
            Code::Critical => "CRITICAL",
            Code::Unknown => "UNKNOWN",
        }
    }
}

/// `--warn-lag`, `--crit-lag`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub warn_lag: Duration,
    pub crit_lag: Duration,
}

/// What the plugin says: its exit code and its one line (without the newline).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub code: Code,
    pub line: String,
}

/// The verdict when the status could not be gathered at all.
pub fn unreadable(why: &str) -> Verdict {
    line(Code::Unknown, why.to_string(), String::new())
}

fn line(code: Code, text: String, perf: String) -> Verdict {
    let mut line = format!("SYNCD {} - {}", code.word(), one_line(&text));
    if !perf.is_empty() {
        let _ = write!(line, " | {perf}");
    }
    Verdict { code, line }
}

/// Text that cannot break the plugin's one line: newlines and `|` (perfdata's
/// separator) replaced.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ").replace('|', "/")
}

/// The plugin's verdict on `r`.
pub fn verdict(r: &Report, limits: Limits) -> Verdict {
    if limits.warn_lag > limits.crit_lag {
        return line(
            Code::Unknown,
            format!(
                "--warn-lag {} is above --crit-lag {}: give a warning limit at or below the critical one",
                secs(limits.warn_lag),
                secs(limits.crit_lag)
            ),
            String::new(),
        );
    }
    if !r.running {
        // 4: the lock's holder cannot be seen, so whether syncd runs is not known.
        let code = if r.code == 4 {
            Code::Unknown
        } else {
            Code::Critical
        };
        return line(code, r.message.clone(), String::new());
    }
    if matches!(r.phase, Some(Phase::Restarting | Phase::Stopping)) || r.worker_pid.is_none() {
        return line(Code::Critical, r.message.clone(), String::new());
    }
    let Some(w) = &r.worker else {
        return line(
            Code::Unknown,
            format!("{}, but its status file cannot be read", r.message),
            String::new(),
        );
    };
    let labels = labels(&w.syncs);
    let mut problems: Vec<(Code, String)> = Vec::new();
    let mut perf = Vec::new();
    let mut targets = 0;
    let mut max_lag: f64 = 0.0;
    for s in &w.syncs {
        if let Some(why) = &s.source_problem {
            problems.push((Code::Critical, format!("{}: source lost ({why})", s.name)));
        }
        if s.unwatched_dirs > 0 {
            problems.push((
                Code::Critical,
                format!(
                    "{}: {} directories not watched (raise fs.inotify.max_user_watches)",
                    s.name, s.unwatched_dirs
                ),
            ));
        }
        for t in &s.targets {
            targets += 1;
            max_lag = max_lag.max(t.lag_seconds);
            problems.extend(target_problems(s, t, limits));
            let label = &labels[&(s.name.as_str(), t.name.as_str())];
            perf.push(format!(
                "{}={:.1}s;{};{};0",
                quote(&format!("lag_{label}")),
                t.lag_seconds.max(0.0),
                secs(limits.warn_lag),
                secs(limits.crit_lag)
            ));
            perf.push(format!(
                "{}={};;;0",
                quote(&format!("queue_{label}")),
                t.queue_depth
            ));
            perf.push(format!(
                "{}={};;;0",
                quote(&format!("backlog_{label}")),
                t.retry_backlog
            ));
            perf.push(format!(
                "{}={}c",
                quote(&format!("failed_{label}")),
                t.pushes_failed
            ));
        }
    }
    let code = problems.iter().map(|(c, _)| *c).max().unwrap_or(Code::Ok);
    let text = if problems.is_empty() {
        let state = format!("{:?}", w.state).to_lowercase();
        format!(
            "{state}: {targets} target{} of {} sync{}, lag at most {max_lag:.1}s",
            if targets == 1 { "" } else { "s" },
            w.syncs.len(),
            if w.syncs.len() == 1 { "" } else { "s" },
        )
    } else {
        // The worst first.
        problems.sort_by_key(|p| std::cmp::Reverse(p.0));
        problems
            .into_iter()
            .map(|(_, p)| p)
            .collect::<Vec<_>>()
            .join("; ")
    };
    line(code, text, perf.join(" "))
}

fn target_problems(s: &SyncStatus, t: &TargetStatus, limits: Limits) -> Vec<(Code, String)> {
    let who = format!("{} → {}", s.name, t.name);
    let mut out = Vec::new();
    let lag = t.lag_seconds;
    if lag >= limits.crit_lag.as_secs_f64() {
        out.push((
            Code::Critical,
            format!("{who}: lag {lag:.1}s ≥ {}s", secs(limits.crit_lag)),
        ));
    } else if lag >= limits.warn_lag.as_secs_f64() {
        out.push((
            Code::Warning,
            format!("{who}: lag {lag:.1}s ≥ {}s", secs(limits.warn_lag)),
        ));
    }
    if t.consecutive_failures > 0 {
        out.push((
            Code::Warning,
            format!(
                "{who}: {} failed push{} in a row ({})",
                t.consecutive_failures,
                if t.consecutive_failures == 1 {
                    ""
                } else {
                    "es"
                },
                t.last_error.as_deref().unwrap_or("see the log")
            ),
        ));
    }
    if t.retry_backlog > 0 {
        out.push((
            Code::Warning,
            format!("{who}: {} paths waiting for a retry", t.retry_backlog),
        ));
    }
    if let Some(f) = &t.failing_paths {
        out.push((
            Code::Warning,
            format!("{who}: {} paths failing on their own", f.count),
        ));
    }
    if let Some(v) = &t.verify {
        match v.outcome.as_str() {
            "drift" => out.push((
                Code::Warning,
                format!(
                    "{who}: the last verify found drift ({} missing, {} different, {} extra; syncd sync --full repairs)",
                    v.missing, v.different, v.extra
                ),
            )),
            "failed" => out.push((
                Code::Warning,
                format!(
                    "{who}: the last verify could not check the target ({})",
                    v.error.as_deref().unwrap_or("see the log")
                ),
            )),
            _ => {}
        }
    }
    if t.degraded && out.is_empty() {
        // Waiting for a busy daemon, never reached yet.
        out.push((
            Code::Warning,
            format!(
                "{who}: degraded ({})",
                t.last_error.as_deref().unwrap_or("see syncd status")
            ),
        ));
    }
    out
}

/// Each target's perfdata label: its name, or `sync/target` where the name is not
/// unique across syncs.
fn labels(syncs: &[SyncStatus]) -> HashMap<(&str, &str), String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for t in syncs.iter().flat_map(|s| &s.targets) {
        *seen.entry(t.name.as_str()).or_default() += 1;
    }
    syncs
        .iter()
        .flat_map(|s| s.targets.iter().map(move |t| (s, t)))
        .map(|(s, t)| {
            let label = if seen[t.name.as_str()] > 1 {
                format!("{}/{}", s.name, t.name)
            } else {
                t.name.clone()
            };
            ((s.name.as_str(), t.name.as_str()), label)
        })
        .collect()
}

/// A perfdata label, single-quoted when it holds a space, `=` or `'` (doubled inside).
fn quote(label: &str) -> String {
    let label = one_line(label);
    if label.contains([' ', '=', '\'']) {
        format!("'{}'", label.replace('\'', "''"))
    } else {
        label
    }
}

/// Seconds as perfdata writes them: `10`, `0.5`.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

#[cfg(test)]
mod tests;
