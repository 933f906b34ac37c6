//! `syncd status`: the truth from the lock (running or not; the kernel keeps it honest
//! through zombies and reused pids), the controller's state file (worker pid, restarts,
//! why it gave up) and the worker's status file (watches, queues, lag per target). LSB
//! exit codes: 0 running, 1 dead but the pidfile exists, 3 not running, 4 unknown (the
//! lock is held by a process this user cannot see). A lock held by something that is not
//! a syncd of ours is not "running": 1 or 3 by the pidfile, and the message and
//! `lock_held_by` say who holds it.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::SystemTime;

use serde::Serialize;
use std::path::Path;

use syncd_worker::status::{CatchUpDecision, Status};

use crate::lock::{self, Holder, LockState};
use crate::procs::{Proc, Role};
use crate::settings::Settings;
use crate::state::{ControllerState, Phase};

#[derive(Debug, Serialize)]
pub struct Report {
    pub code: u8,
    pub running: bool,
    pub pid: Option<u32>,
    pub phase: Option<Phase>,
    pub worker_pid: Option<u32>,
    pub restarts: u64,
    pub last_exit: Option<String>,
    pub error: Option<String>,
    pub message: String,
    /// Who holds syncd's lock when that is not a syncd of ours (empty otherwise).
    pub lock_held_by: Vec<Holder>,
    pub worker: Option<Status>,
}

/// LSB status: program or service status is unknown.
const STATUS_UNKNOWN: u8 = 4;

pub fn gather(settings: &Settings) -> anyhow::Result<Report> {
    let lock = lock::probe(&settings.pidfile, &settings.lockfile)?;
    let ctl = ControllerState::read(&settings.controller_file).unwrap_or(None);
    let (code, running, pid) = match &lock {
        LockState::Held { pid } => (0, true, *pid),
        LockState::Free { pidfile: true, pid } => (1, false, *pid),
        LockState::Free { pidfile: false, .. } => (3, false, None),
        LockState::Foreign { holders, .. } if holders.is_empty() => (STATUS_UNKNOWN, false, None),
        LockState::Foreign { pidfile, pid, .. } => (if *pidfile { 1 } else { 3 }, false, *pid),
    };
    // The controller state belongs to this run only if its pid is the lock holder's.
    let ctl = ctl.filter(|c| !running || Some(c.pid) == pid);
    let worker_pid = if running {
        ctl.as_ref()
            .and_then(|c| c.worker_pid)
            .filter(|&w| Proc::of(w).is(Role::Worker))
    } else {
        None
    };
    let worker = match worker_pid {
        Some(w) => Status::read(&settings.status_file)
            .ok()
            .filter(|s| s.pid == w),
        None => None,
    };
    let message = match &lock {
        LockState::Held { pid } => {
            let mut m = format!(
                "syncd is running (pid {})",
                pid.map_or("?".into(), |p| p.to_string())
            );
            match (&ctl, worker_pid) {
                (Some(c), _) if c.phase == Phase::Restarting => {
                    let _ = write!(
                        m,
                        ", worker restarting ({})",
                        c.last_exit.as_deref().unwrap_or("died")
                    );
                }
                (Some(c), _) if c.phase == Phase::Stopping => m.push_str(", stopping"),
                (_, Some(w)) => {
                    let state = worker.as_ref().map_or("starting".to_string(), |s| {
                        format!("{:?}", s.state).to_lowercase()
                    });
                    let _ = write!(m, ", worker pid {w} {state}");
                }
                _ => m.push_str(", no worker"),
            }
            m
        }
        LockState::Free { pidfile: true, pid } => {
            let mut m = format!(
                "syncd is dead but pidfile {} exists{}",
                settings.pidfile.display(),
                pid.map(|p| format!(" ({})", Proc::of(p).describe(p)))
                    .unwrap_or_default()
            );
            if let Some(e) = ctl.as_ref().and_then(|c| c.error.as_deref()) {
                let _ = write!(m, ": {e}");
            }
            m
        }
        LockState::Free { pidfile: false, .. } => "syncd is not running".into(),
        LockState::Foreign { holders, .. } if holders.is_empty() => format!(
            "syncd's status is unknown: {}",
            lock::foreign_holder_message(&settings.lockfile, holders)
        ),
        LockState::Foreign { holders, .. } => format!(
            "syncd is not running: its {}",
            lock::foreign_holder_message(&settings.lockfile, holders)
        ),
    };
    let lock_held_by = match lock {
        LockState::Foreign { holders, .. } => holders,
        _ => Vec::new(),
    };
    Ok(Report {
        code,
        running,
        pid,
        phase: ctl.as_ref().map(|c| c.phase),
        worker_pid,
        restarts: ctl.as_ref().map_or(0, |c| c.restarts),
        last_exit: ctl.as_ref().and_then(|c| c.last_exit.clone()),
        error: ctl.as_ref().and_then(|c| c.error.clone()),
        message,
        lock_held_by,
        worker,
    })
}

pub fn status(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let r = gather(settings)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", human(&r, now()));
    }
    Ok(ExitCode::from(r.code))
}

/// `status --check`: the plugin's line on stdout and its exit code; anything that keeps
/// the status from being read (a config that does not load, an unreadable lock) is
/// UNKNOWN, never an error exit of ours.
pub fn check(settings: anyhow::Result<Settings>, limits: crate::plugin::Limits) -> ExitCode {
    let verdict = match settings.and_then(|s| gather(&s)) {
        Ok(r) => crate::plugin::verdict(&r, limits),
        Err(e) => crate::plugin::unreadable(&format!("cannot read the status: {e:#}")),
    };
    println!("{}", verdict.line);
    ExitCode::from(verdict.code as u8)
}

fn now() -> f64 {
    syncd_worker::status::unix_secs(SystemTime::now())
}

/// What became of the worker's last request for inotify watches.
fn watches_asked_line(a: &syncd_worker::status::WatchesAsked) -> String {
    let shown = |v: Option<u64>| v.map_or_else(|| "unknown".to_string(), |v| v.to_string());
    let how = if a.raised() {
        format!(
            "raised fs.inotify.max_user_watches from {} to {}",
            shown(a.limit_before),
            shown(a.limit_after)
        )
    } else if a.answered {
        format!(
            "not raised (fs.inotify.max_user_watches stays {}; see the log)",
            shown(a.limit_after)
        )
    } else {
        format!(
            "no answer (fs.inotify.max_user_watches is {})",
            shown(a.limit_after)
        )
    };
    format!(
        "out of inotify watches: asked the controller for {}; {how}",
        a.asked_for
    )
}

/// What follows a sync's source on its line: inotify's directory counts (` (12
/// directories watched, 3 NOT watched: …)`); under fanotify, which watches no directory
/// one by one, only the queue overflows, if any.
fn watches_note(s: &syncd_worker::status::SyncStatus) -> String {
    let mut parts = Vec::new();
    if !s.is_fanotify() {
        parts.push(format!("{} directories watched", s.watched_dirs));
        if s.unwatched_dirs > 0 {
            parts.push(format!(
                "{} NOT watched: raise fs.inotify.max_user_watches",
                s.unwatched_dirs
            ));
        }
    }
    if s.overflows > 0 {
        parts.push(format!("{} queue overflows", s.overflows));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// `watcher: fanotify (kernel 6.18, ext4, one mark for the file system)`: which watcher
/// the sync runs and why; None until the worker says (and from older workers).
fn watcher_line(s: &syncd_worker::status::SyncStatus) -> Option<String> {
    let kind = s.watcher.as_deref()?;
    Some(match s.watcher_reason.as_deref() {
        Some(why) if !why.is_empty() => format!("watcher: {kind} ({why})"),
        _ => format!("watcher: {kind}"),
    })
}

/// The human summary: one line, then one per sync and target.
pub fn human(r: &Report, now: f64) -> String {
    let mut out = format!("{}\n", r.message);
    if r.restarts > 0 {
        let _ = writeln!(
            out,
            "  worker restarts: {}{}",
            r.restarts,
            r.last_exit
                .as_deref()
                .map(|e| format!(" (last one {e})"))
                .unwrap_or_default()
        );
    }
    let Some(w) = &r.worker else {
        return out;
    };
    let _ = writeln!(out, "  up {}", ago(now - w.started_at));
    for s in &w.syncs {
        let _ = writeln!(
            out,
            "  {}: {}{}{}",
            s.name,
            s.source,
            s.source_resolved
                .as_ref()
                .map(|r| format!(" -> {r}"))
                .unwrap_or_default(),
            watches_note(s)
        );
        if let Some(line) = watcher_line(s) {
            let _ = writeln!(out, "    {line}");
        }
        if let Some(a) = &s.watches_asked {
            let _ = writeln!(out, "    {}", watches_asked_line(a));
        }
        if let Some(why) = &s.source_problem {
            // A symlinked source is resolved by a config load: only a reload follows it.
            let accept = if s.source_resolved.is_some() {
                "`syncd reload` follows the link"
            } else {
                "`syncd sync --full` accepts what is there now"
            };
            let _ = writeln!(
                out,
                "    SOURCE LOST: {why}; nothing is pushed until it is back (or {accept})"
            );
        }
        for t in &s.targets {
            let state = if t.consecutive_failures > 0 {
                format!(
                    "FAILING ({} in a row: {})",
                    t.consecutive_failures,
                    t.last_error.as_deref().unwrap_or("?")
                )
            } else if let Some(p) = &t.progress {
                format!(
                    "pushing: {}; {} queued",
                    syncd_worker::progress::line(p),
                    t.queue_depth
                )
            } else if t.queue_depth > 0 || t.in_flight > 0 {
                format!(
                    "syncing: {} queued, {} in flight, lag {:.1}s",
                    t.queue_depth, t.in_flight, t.lag_seconds
                )
            } else {
                "in step".into()
            };
            let last = t
                .last_success
                .map(|l| format!(", last push {} ago", ago(now - l)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    → {} ({}): {state}{last}; {} pushes ok, {} failed{}",
                t.name,
                t.dest,
                t.pushes_ok,
                t.pushes_failed,
                if t.retry_backlog > 0 {
                    format!(", {} paths waiting for retry", t.retry_backlog)
                } else {
                    String::new()
                }
            );
            if let Some(f) = &t.failing_paths {
                let _ = writeln!(out, "      {}", failing_line(f));
            }
            if let Some(v) = &t.verify {
                let _ = writeln!(out, "      {}", verify_line(v, now));
            }
        }
    }
    out
}

/// What `syncd start` adds for each sync whose catch-up had nothing to do: the first
/// start of a new state directory (or a sync new to it) pushes nothing that is already in
/// the source, only what changes from now on (`initial_sync` off, see init/syncd.toml).
/// Said once: the next start finds the clean-stop record or a checkpoint and catches up
/// from it. `sync_full` is the command that makes the target complete.
pub fn new_sync_notes(status: &Status, state_dir: &Path, sync_full: &str) -> Vec<String> {
    status
        .syncs
        .iter()
        .filter(|s| {
            s.catchup
                .as_ref()
                .is_some_and(|c| c.decision == CatchUpDecision::None)
        })
        .map(|s| {
            format!(
                "note: sync {:?} is new to the state directory {}: what is already in {} was \
                 not pushed (initial_sync is off), only changes from now on are. To make the \
                 target complete once: {sync_full}",
                s.name,
                state_dir.display(),
                s.source
            )
        })
        .collect()
}

/// `2 paths failing (each retried on its own): a/b.txt (cannot be read on the source:
/// Permission denied (13)), c (…)`, with `, …` when the status shows only some.
pub(crate) fn failing_line(f: &syncd_worker::status::FailingPaths) -> String {
    let examples: Vec<String> = f
        .examples
        .iter()
        .map(|e| format!("{} ({})", e.path, e.reason))
        .collect();
    format!(
        "{} path{} failing (each retried on its own): {}{}",
        f.count,
        if f.count == 1 { "" } else { "s" },
        examples.join(", "),
        if f.count > f.examples.len() as u64 {
            ", …"
        } else {
            ""
        }
    )
}

/// `last verify 2h02m ago: equal (3.1s)` / `…: DRIFT: 1 missing, 0 different, 2 extra
/// (run `syncd verify`)` / `…: failed: why`.
pub(crate) fn verify_line(v: &syncd_worker::status::VerifyStatus, now: f64) -> String {
    let what = match v.outcome.as_str() {
        "equal" => "equal".to_string(),
        "drift" => format!(
            "DRIFT: {} missing, {} different, {} extra on the target (`syncd verify` lists them)",
            v.missing, v.different, v.extra
        ),
        _ => format!(
            "could not be checked: {}",
            v.error.as_deref().unwrap_or("unknown error")
        ),
    };
    format!(
        "last verify {} ago: {what} ({:.1}s)",
        ago(now - v.finished_at),
        v.seconds
    )
}

fn ago(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn ago_table() {
        for (s, want) in [
            (0.0, "0s"),
            (59.9, "59s"),
            (61.0, "1m01s"),
            (7325.0, "2h02m"),
            (-3.0, "0s"),
        ] {
            assert_eq!(ago(s), want);
        }
    }

    #[test]
    fn failing_paths_line() {
        use syncd_worker::status::{FailingPath, FailingPaths};
        let ex = |p: &str| FailingPath {
            path: p.into(),
            reason: "cannot be read on the source: Permission denied (13)".into(),
        };
        let one = FailingPaths {
            count: 1,
            examples: vec![ex("a/b.txt")],
        };
        assert_eq!(
            failing_line(&one),
            "1 path failing (each retried on its own): a/b.txt (cannot be read on the source: Permission denied (13))"
        );
        let more = FailingPaths {
            count: 5,
            examples: vec![ex("a"), ex("b")],
        };
        let line = failing_line(&more);
        assert!(line.starts_with("5 paths failing"), "{line}");
        assert!(line.ends_with("Permission denied (13)), …"), "{line}");
        // A status file of an older worker has no such field.
        let t: syncd_worker::status::TargetStatus = serde_json::from_str(
            r#"{"name":"t","dest":"d","queue_depth":0,"full_pending":false,"in_flight":0,
               "last_success":null,"lag_seconds":0.0,"pushes_ok":0,"pushes_failed":0,
               "consecutive_failures":0,"last_error":null,"retry_backlog":0,
               "next_retry_at":null,"full_syncs":0,"delete_method":"delete-missing-args"}"#,
        )
        .expect("an older worker's target status");
        assert_eq!(t.failing_paths, None);
        // `syncd status` shows the line under its target.
        let mut t = t;
        t.failing_paths = Some(one);
        let text = human(&running_with(sync_status(vec![t])), 0.0);
        assert!(
            text.contains("→ t (d): in step")
                && text.contains(
                    "\n      1 path failing (each retried on its own): a/b.txt (cannot be read"
                ),
            "{text}"
        );
    }

    #[test]
    fn verify_lines() {
        use syncd_worker::status::VerifyStatus;
        let v = |outcome: &str, error: Option<&str>| VerifyStatus {
            finished_at: 1000.0,
            outcome: outcome.into(),
            missing: 1,
            different: 0,
            extra: 2,
            seconds: 3.12,
            error: error.map(str::to_string),
        };
        assert_eq!(
            verify_line(&v("equal", None), 1061.0),
            "last verify 1m01s ago: equal (3.1s)"
        );
        assert_eq!(
            verify_line(&v("drift", None), 1000.0),
            "last verify 0s ago: DRIFT: 1 missing, 0 different, 2 extra on the target (`syncd verify` lists them) (3.1s)"
        );
        assert_eq!(
            verify_line(&v("failed", Some("connection refused")), 1000.0),
            "last verify 0s ago: could not be checked: connection refused (3.1s)"
        );
    }

    /// One sync `s` watching `/src`, one directory, no problem (also for `sync`'s tests).
    pub(crate) fn sync_status(
        targets: Vec<syncd_worker::status::TargetStatus>,
    ) -> syncd_worker::status::SyncStatus {
        syncd_worker::status::SyncStatus {
            name: "s".into(),
            source: "/src".into(),
            source_resolved: None,
            source_problem: None,
            watcher: None,
            watcher_reason: None,
            watched_dirs: 1,
            unwatched_dirs: 0,
            overflows: 0,
            watches_asked: None,
            catchup: None,
            targets,
        }
    }

    /// A running syncd whose worker has the one sync `sync`.
    pub(crate) fn running_with(sync: syncd_worker::status::SyncStatus) -> Report {
        Report {
            code: 0,
            running: true,
            pid: Some(1),
            phase: None,
            worker_pid: Some(2),
            restarts: 0,
            last_exit: None,
            error: None,
            message: "syncd is running".into(),
            lock_held_by: Vec::new(),
            worker: Some(Status {
                pid: 2,
                started_at: 0.0,
                updated_at: 0.0,
                state: syncd_worker::status::State::Degraded,
                syncs: vec![sync],
            }),
        }
    }

    #[test]
    fn only_a_sync_with_nothing_to_catch_up_gets_the_new_state_note() {
        use syncd_worker::status::{CatchUp, CatchUpDecision as D};
        let with = |name: &str, decision: Option<D>| {
            let mut s = sync_status(Vec::new());
            s.name = name.into();
            s.catchup = decision.map(|decision| CatchUp {
                decision,
                reason: String::new(),
                walk: None,
                replayed: 0,
            });
            s
        };
        let mut status = running_with(with("new", Some(D::None)))
            .worker
            .expect("a worker status");
        for (name, d) in [
            ("walked", Some(D::Walk)),
            ("full", Some(D::Full)),
            ("old", None),
        ] {
            status.syncs.push(with(name, d));
        }
        let notes = new_sync_notes(&status, Path::new("/st"), "syncd sync --full");
        assert_eq!(
            notes,
            [
                "note: sync \"new\" is new to the state directory /st: what is already in /src \
              was not pushed (initial_sync is off), only changes from now on are. To make the \
              target complete once: syncd sync --full"
            ]
        );
    }

    #[test]
    fn a_symlinked_source_shows_where_it_leads_and_that_a_reload_follows_it() {
        let mut s = sync_status(Vec::new());
        s.source = "/var/www/current".into();
        s.source_resolved = Some("/var/www/releases/42".into());
        s.source_problem = Some("/var/www/current: the symlink was repointed".into());
        let text = human(&running_with(s), 0.0);
        assert!(
            text.contains("  s: /var/www/current -> /var/www/releases/42 (1 directories watched)")
                && text.contains(
                    "SOURCE LOST: /var/www/current: the symlink was repointed; nothing is pushed \
                     until it is back (or `syncd reload` follows the link)"
                ),
            "{text}"
        );
    }

    #[test]
    fn the_watcher_is_shown_and_fanotify_drops_the_directory_counts() {
        let with = |watcher: Option<(&str, &str)>, unwatched: u64, overflows: u64| {
            let mut s = sync_status(Vec::new());
            s.watched_dirs = 12;
            s.unwatched_dirs = unwatched;
            s.overflows = overflows;
            s.set_watcher(watcher);
            let text = human(&running_with(s), 0.0);
            // The sync's line and what follows it, before its (absent) targets.
            text.lines()
                .skip_while(|l| !l.starts_with("  s: "))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        };
        let fan = Some((
            "fanotify",
            "kernel 6.18, ext4, one mark for the file system",
        ));
        let ino = Some((
            "inotify",
            "the source is on overlay, which fanotify cannot mark",
        ));
        let cases = [
            // Not up yet, or an older worker: as before.
            (with(None, 0, 0), "  s: /src (12 directories watched)\n"),
            (
                with(None, 2, 1),
                "  s: /src (12 directories watched, 2 NOT watched: raise \
                 fs.inotify.max_user_watches, 1 queue overflows)\n",
            ),
            (
                with(ino, 0, 0),
                "  s: /src (12 directories watched)\n    watcher: inotify (the source is on \
                 overlay, which fanotify cannot mark)\n",
            ),
            (
                with(fan, 0, 0),
                "  s: /src\n    watcher: fanotify (kernel 6.18, ext4, one mark for the file \
                 system)\n",
            ),
            (
                with(fan, 0, 3),
                "  s: /src (3 queue overflows)\n    watcher: fanotify (kernel 6.18, ext4, one \
                 mark for the file system)\n",
            ),
            (
                with(Some(("fanotify", "")), 0, 0),
                "  s: /src\n    watcher: fanotify\n",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn status_json_passes_the_watcher_through() {
        let mut s = sync_status(Vec::new());
        let r = running_with(s.clone());
        let json = serde_json::to_value(&r).expect("json");
        assert!(
            json["worker"]["syncs"][0].get("watcher").is_none(),
            "{json}"
        );
        s.set_watcher(Some(("fanotify", "kernel 6.18, ext4")));
        let json = serde_json::to_value(running_with(s)).expect("json");
        let sync = &json["worker"]["syncs"][0];
        assert_eq!(sync["watcher"], "fanotify", "{json}");
        assert_eq!(sync["watcher_reason"], "kernel 6.18, ext4", "{json}");
    }

    #[test]
    fn a_request_for_watches_is_told_as_it_went() {
        use syncd_worker::status::WatchesAsked;
        let asked = |before, after, answered| WatchesAsked {
            asked_for: 9092,
            limit_before: before,
            limit_after: after,
            answered,
        };
        let cases = [
            (
                asked(Some(8192), Some(32768), true),
                "out of inotify watches: asked the controller for 9092; raised \
                 fs.inotify.max_user_watches from 8192 to 32768",
            ),
            (
                asked(Some(8192), Some(8192), true),
                "out of inotify watches: asked the controller for 9092; not raised \
                 (fs.inotify.max_user_watches stays 8192; see the log)",
            ),
            (
                asked(Some(8192), Some(8192), false),
                "out of inotify watches: asked the controller for 9092; no answer \
                 (fs.inotify.max_user_watches is 8192)",
            ),
            (
                asked(None, None, true),
                "out of inotify watches: asked the controller for 9092; not raised \
                 (fs.inotify.max_user_watches stays unknown; see the log)",
            ),
        ];
        for (a, want) in cases {
            assert_eq!(watches_asked_line(&a), want);
        }
    }

    #[test]
    fn not_running_report_is_one_line() {
        let r = Report {
            code: 3,
            running: false,
            pid: None,
            phase: None,
            worker_pid: None,
            restarts: 0,
            last_exit: None,
            error: None,
            message: "syncd is not running".into(),
            lock_held_by: Vec::new(),
            worker: None,
        };
        assert_eq!(human(&r, 0.0), "syncd is not running\n");
    }

    #[test]
    fn codes_follow_the_lock() {
        let d = tempfile::tempdir().expect("tempdir");
        let g = crate::cli::GlobalArgs {
            pidfile: Some(d.path().join("s.pid")),
            state_dir: Some(d.path().join("state")),
            worker: Some(d.path().join("w")),
            ..Default::default()
        };
        let s = Settings::resolve(&g, None).expect("settings");
        assert_eq!(gather(&s).expect("gather").code, 3);
        let l = crate::lock::PidLock::acquire(&s.pidfile, &s.lockfile)
            .expect("io")
            .expect("free");
        // The holder is this test process: no syncd, so not "running" (a running syncd
        // is the e2e tests' business), and the report says who holds the lock.
        let me = std::process::id();
        l.write_pid(me).expect("pid");
        let r = gather(&s).expect("gather");
        assert_eq!(
            (r.code, r.running, r.pid),
            (1, false, Some(me)),
            "{}",
            r.message
        );
        assert!(
            r.message.starts_with("syncd is not running: its lock")
                && r.message.contains(&format!("(pid {me}, user ")),
            "{}",
            r.message
        );
        assert_eq!(
            r.lock_held_by.iter().map(|h| h.pid).collect::<Vec<_>>(),
            [me]
        );
        drop(l);
        let r = gather(&s).expect("gather");
        assert_eq!(r.code, 1, "{}", r.message);
        assert!(r.message.contains("dead but pidfile"), "{}", r.message);
    }
}
