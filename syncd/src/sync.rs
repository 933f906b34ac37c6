//! `syncd sync [--full]`: push now, in the foreground, with progress.
//!
//! When the daemon runs (its lock is held and the pidfile names a live syncd
//! controller), it is asked by signal — SIGUSR1 "push what is pending now", SIGUSR2
//! "push every tree whole now"; the controller forwards both to its worker — and the
//! worker's status file is followed until the work is done, showing the progress of the
//! push in flight. When it does not run, `syncd-worker --once [--full]` does the work in
//! the foreground with our stdio, and its exit code is ours.
//!
//! Owns: the decision when a sync through the daemon is done or failed ([`judge`], pure)
//! and the polling around it. Must not: signal a process that is not a syncd controller,
//! or wait on a worker that stopped writing its status.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use syncd_worker::config::Config;
use syncd_worker::contract::{self, Once, WorkerCommandLine};
use syncd_worker::once::Display;
use syncd_worker::process::{How, Input, Output, Spawn};
use syncd_worker::state_dir::StateDir;
use syncd_worker::status::Status;

use crate::lock::{probe, LockState};
use crate::procs::{self, Proc, Role};
use crate::settings::Settings;

/// How often the status file is read (the worker rewrites it at most every 200 ms).
const POLL: Duration = Duration::from_millis(200);
/// While work is pending the worker rewrites its status at least every 2 s (an idle one
/// does not: nothing in it changes); this long without a new one then means it is stuck
/// or gone.
const STALE_AFTER: Duration = Duration::from_secs(30);
/// How long to wait for a first readable status file (a daemon that is starting).
const FIRST_STATUS_WAIT: Duration = Duration::from_secs(30);
/// Work is left but no push ran or ended for this long: the request did not arrive.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// Push now in the foreground with progress; through the daemon when it runs.
pub fn run(
    settings: &Settings,
    config: &Config,
    full: bool,
    force: bool,
) -> anyhow::Result<ExitCode> {
    match probe(&settings.pidfile, &settings.lockfile)? {
        LockState::Held { pid: Some(pid) } if Proc::of(pid).is(Role::Controller) => {
            if force {
                syncd_worker::force::request(&settings.state_dir)?;
            }
            through_daemon(settings, pid, full)
        }
        LockState::Held { pid } => bail!(
            "the lock {} is held, but {} names {}, not a syncd controller; if syncd is \
             starting, try again in a moment, else check with `syncd status`",
            settings.lockfile.display(),
            settings.pidfile.display(),
            match pid {
                Some(p) => Proc::of(p).describe(p),
                None => "no pid".to_string(),
            }
        ),
        LockState::Foreign { holders, .. } => bail!(
            "syncd is not running, and its {}; `syncd sync` does not push beside it",
            crate::lock::foreign_holder_message(&settings.lockfile, &holders)
        ),
        LockState::Free { .. } => foreground(settings, config, full, force),
    }
}

/// No daemon: `syncd-worker --once [--full]` with our stdio (as `user` when the config
/// sets one, as the daemon's worker would run); its exit code is ours.
fn foreground(
    settings: &Settings,
    config: &Config,
    full: bool,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let unpriv = match config.daemon.run_as {
        Some(_) => {
            StateDir::create(&settings.state_dir)?;
            crate::privdrop::prepare(config, &settings.state_dir)?
        }
        None => None,
    };
    let ended = run_once(settings, full, force, unpriv.as_ref());
    if let Some(u) = &unpriv {
        u.remove_copies();
    }
    ended
}

fn run_once(
    settings: &Settings,
    full: bool,
    force: bool,
    unpriv: Option<&crate::privdrop::Unprivileged>,
) -> anyhow::Result<ExitCode> {
    let args = WorkerCommandLine {
        config: settings.config.clone(),
        log_level: settings.log_level.clone(),
        state_dir: settings.state_dir_flag.then(|| settings.state_dir.clone()),
        once: Some(Once { full, force }),
        password_dir: unpriv.map(|u| u.password_dir()),
        ..WorkerCommandLine::default()
    };
    // In our group and with our stdio, like any command the user runs: Ctrl-C reaches it.
    let worker = Spawn::new(&settings.worker_bin).args(args.to_args());
    let ended = crate::privdrop::as_user(worker, unpriv)
        .stdin(Input::Inherit)
        .stdout(Output::Inherit)
        .stderr(Output::Inherit)
        .run();
    let status = match ended.how {
        // No deadline and no cancel: it is never stopped here.
        How::Exited(status) | How::TimedOut(status) | How::Cancelled(status) => status,
        How::FailedToStart(e) => {
            return Err(e).with_context(|| match unpriv {
                Some(_) => crate::privdrop::start_failure(&settings.worker_bin, unpriv),
                None => format!(
                    "cannot run the worker {}: install syncd-worker beside syncd, or name it \
                     with --worker or $SYNCD_WORKER",
                    settings.worker_bin.display()
                ),
            })
        }
        How::WaitFailed(e) => {
            return Err(e).with_context(|| {
                format!("lost the worker {} --once", settings.worker_bin.display())
            })
        }
    };
    match status.code() {
        Some(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(1))),
        None => bail!(
            "{} --once ended without an exit code ({status}); what it did not push stays \
             in the fail log",
            settings.worker_bin.display()
        ),
    }
}

/// Where one target stood before the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Before {
    pub full_syncs: u64,
    pub consecutive_failures: u64,
}

/// The status before the request: the worker's pid and each target's counters, by
/// (sync, target) name.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub worker_pid: u32,
    pub targets: HashMap<(String, String), Before>,
}

impl Baseline {
    pub fn of(status: &Status) -> Baseline {
        let mut targets = HashMap::new();
        for s in &status.syncs {
            for t in &s.targets {
                targets.insert(
                    (s.name.clone(), t.name.clone()),
                    Before {
                        full_syncs: t.full_syncs,
                        consecutive_failures: t.consecutive_failures,
                    },
                );
            }
        }
        Baseline {
            worker_pid: status.pid,
            targets,
        }
    }
}

/// What the status says about the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Done,
    /// Still working.
    Waiting,
    Failed(String),
}

/// Pure: is the request done, still going, or failed? Failed when a target failed again
/// since the request (its `consecutive_failures` grew) or the worker was replaced. Done,
/// for `full`, when every target finished a whole-tree push since the request and
/// nothing is queued or in flight; otherwise when nothing is queued or in flight.
pub fn judge(base: &Baseline, now: &Status, full: bool) -> Verdict {
    if now.pid != base.worker_pid {
        return Verdict::Failed(format!(
            "the worker was restarted (pid {} → {}) before the push finished; what was \
             pending is replayed by the new worker; run `syncd sync` again to follow it",
            base.worker_pid, now.pid
        ));
    }
    let mut done = true;
    for s in &now.syncs {
        for t in &s.targets {
            let before = base
                .targets
                .get(&(s.name.clone(), t.name.clone()))
                .copied()
                .unwrap_or_default();
            if t.consecutive_failures > before.consecutive_failures {
                return Verdict::Failed(format!(
                    "{} → {}: {}; the changes are kept and retried by the daemon (see `syncd status`)",
                    s.name,
                    t.name,
                    t.last_error.as_deref().unwrap_or("the push failed")
                ));
            }
            let idle = t.queue_depth == 0 && t.in_flight == 0;
            done &= idle && (!full || t.full_syncs > before.full_syncs);
        }
    }
    if done {
        Verdict::Done
    } else {
        Verdict::Waiting
    }
}

/// A line about what is going on when no push reports progress.
fn summary(status: &Status) -> String {
    let (mut queued, mut in_flight) = (0u64, 0u64);
    for t in status.syncs.iter().flat_map(|s| &s.targets) {
        queued += t.queue_depth;
        in_flight += t.in_flight;
    }
    format!("waiting: {queued} queued, {in_flight} in flight")
}

/// The daemon runs: signal it, then follow the status file until done.
fn through_daemon(settings: &Settings, pid: u32, full: bool) -> anyhow::Result<ExitCode> {
    let before = first_status(settings)?;
    let base = Baseline::of(&before);
    let sig = if full {
        contract::PUSH_FULL
    } else {
        contract::PUSH_PENDING
    };
    let name = sig.as_str();
    procs::signal(pid, sig)
        .with_context(|| format!("failed to send {name} to the syncd controller (pid {pid})"))?;
    log::info!(
        "asked the daemon (pid {pid}) to push {}",
        if full {
            "every tree whole"
        } else {
            "what is pending"
        }
    );
    let mut display = Display::new();
    let mut last_update = (before.updated_at, Instant::now());
    let mut last_activity = (activity(&before), Instant::now());
    let outcome = loop {
        std::thread::sleep(POLL);
        if !matches!(
            probe(&settings.pidfile, &settings.lockfile)?,
            LockState::Held { .. }
        ) {
            break Err(anyhow::anyhow!(
                "the daemon stopped before the push finished; what was pending is in the \
                 fail log under {}",
                StateDir::at(&settings.state_dir).faillog_dir().display()
            ));
        }
        let Ok(status) = Status::read(&settings.status_file) else {
            // Between two atomic writes there is always a file; none means the worker is
            // being restarted: give it until the staleness limit.
            if last_update.1.elapsed() >= STALE_AFTER {
                break Err(stale(settings));
            }
            continue;
        };
        if status.updated_at != last_update.0 {
            last_update = (status.updated_at, Instant::now());
        } else if last_update.1.elapsed() >= STALE_AFTER && pending(&status) {
            break Err(stale(settings));
        }
        match judge(&base, &status, full) {
            Verdict::Done => break Ok(status),
            Verdict::Failed(why) => break Err(anyhow::anyhow!(why)),
            Verdict::Waiting => show(&mut display, &status),
        }
        let now = activity(&status);
        if now != last_activity.0 || now.3 {
            last_activity = (now, Instant::now());
        } else if last_activity.1.elapsed() >= IDLE_LIMIT {
            break Err(anyhow::anyhow!(
                "no push started or ended within {}s of {name}, yet work is pending; did the \
                 controller forward the signal to its worker? See `syncd status`",
                IDLE_LIMIT.as_secs()
            ));
        }
    };
    display.clear();
    let status = outcome?;
    let failing = still_failing(&status);
    if !failing.is_empty() {
        for line in &failing {
            eprintln!("syncd sync: {line}");
        }
        bail!(
            "everything else was pushed, but {} target(s) have paths that keep failing; fix the cause rsync gives (they are retried on their own), see `syncd status`",
            failing.len()
        );
    }
    println!(
        "syncd sync: {}",
        if full {
            "every tree pushed whole; targets up to date"
        } else {
            "nothing pending; targets up to date"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// One line per target with paths that keep failing (see `crate::report`).
fn still_failing(status: &Status) -> Vec<String> {
    status
        .syncs
        .iter()
        .flat_map(|s| {
            s.targets.iter().filter_map(move |t| {
                t.failing_paths.as_ref().map(|f| {
                    format!(
                        "{} → {}: {}",
                        s.name,
                        t.name,
                        crate::report::failing_line(f)
                    )
                })
            })
        })
        .collect()
}

/// The progress of the first push that reports one, else a count of what waits.
fn show(display: &mut Display, status: &Status) {
    let busy = status.syncs.iter().find_map(|s| {
        s.targets
            .iter()
            .find_map(|t| t.progress.as_ref().map(|p| (&s.name, &t.name, p)))
    });
    match busy {
        Some((sync, target, p)) => display.show(&format!("{sync} → {target}"), p),
        None => display.note(&summary(status)),
    }
}

/// What changes while the worker pushes: pushes ended (ok, failed, whole-tree) and
/// whether one is in flight.
fn activity(status: &Status) -> (u64, u64, u64, bool) {
    let mut a = (0, 0, 0, false);
    for t in status.syncs.iter().flat_map(|s| &s.targets) {
        a.0 += t.pushes_ok;
        a.1 += t.pushes_failed;
        a.2 += t.full_syncs;
        a.3 |= t.in_flight > 0;
    }
    a
}

/// Work queued or in flight: the worker rewrites its status every 2 s meanwhile.
fn pending(status: &Status) -> bool {
    status
        .syncs
        .iter()
        .flat_map(|s| &s.targets)
        .any(|t| t.queue_depth > 0 || t.in_flight > 0)
}

fn stale(settings: &Settings) -> anyhow::Error {
    anyhow::anyhow!(
        "the worker's status file {} was not updated for {}s; the worker may be stuck or \
         restarting: see `syncd status`",
        settings.status_file.display(),
        STALE_AFTER.as_secs()
    )
}

/// The worker's status, waiting (bounded) for a daemon that is starting to write one.
fn first_status(settings: &Settings) -> anyhow::Result<Status> {
    let deadline = Instant::now() + FIRST_STATUS_WAIT;
    loop {
        match Status::read(&settings.status_file) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(e).context(format!(
                    "the daemon runs but its worker wrote no status within {}s",
                    FIRST_STATUS_WAIT.as_secs()
                ))
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncd_worker::progress::Progress;
    use syncd_worker::status::{State, SyncStatus, TargetStatus};

    /// (target name, queue_depth, in_flight, full_syncs, consecutive_failures)
    type T = (&'static str, u64, u64, u64, u64);

    fn status(pid: u32, targets: &[T]) -> Status {
        Status {
            pid,
            started_at: 0.0,
            updated_at: 0.0,
            state: State::Syncing,
            syncs: vec![SyncStatus {
                name: "web".into(),
                targets: targets
                    .iter()
                    .map(
                        |&(name, queue_depth, in_flight, full_syncs, fails)| TargetStatus {
                            name: name.into(),
                            dest: "d".into(),
                            queue_depth,
                            full_pending: false,
                            in_flight,
                            last_success: None,
                            lag_seconds: 0.0,
                            pushes_ok: 0,
                            pushes_failed: fails,
                            paths_pushed: 0,
                            degraded: fails > 0,
                            consecutive_failures: fails,
                            last_error: (fails > 0).then(|| format!("{name} is down")),
                            retry_backlog: 0,
                            next_retry_at: None,
                            full_syncs,
                            delete_method: "delete-missing-args".into(),
                            progress: None,
                            failing_paths: None,
                            verify: None,
                        },
                    )
                    .collect(),
                ..crate::report::tests::sync_status(Vec::new())
            }],
        }
    }

    #[test]
    fn staleness_counts_only_while_work_is_pending() {
        // An idle worker does not rewrite its status: an old one is no sign of trouble.
        let cases: [(&[T], bool); 4] = [
            (&[("a", 0, 0, 2, 0)], false),
            (&[("a", 0, 0, 2, 1), ("b", 0, 0, 0, 0)], false),
            (&[("a", 0, 0, 2, 0), ("b", 3, 0, 0, 0)], true),
            (&[("a", 0, 4, 2, 0)], true),
        ];
        for (targets, want) in cases {
            assert_eq!(pending(&status(1, targets)), want, "{targets:?}");
        }
    }

    #[test]
    fn judge_table() {
        let base = Baseline::of(&status(7, &[("a", 5, 0, 2, 0), ("b", 0, 0, 2, 1)]));
        let cases: Vec<(&str, Status, bool, Verdict)> = vec![
            (
                "pending still queued",
                status(7, &[("a", 5, 0, 2, 0), ("b", 0, 0, 2, 1)]),
                false,
                Verdict::Waiting,
            ),
            (
                "in flight",
                status(7, &[("a", 0, 5, 2, 0), ("b", 0, 0, 2, 1)]),
                false,
                Verdict::Waiting,
            ),
            (
                "all idle",
                status(7, &[("a", 0, 0, 2, 0), ("b", 0, 0, 2, 0)]),
                false,
                Verdict::Done,
            ),
            (
                "full: idle but no new full push yet",
                status(7, &[("a", 0, 0, 2, 0), ("b", 0, 0, 2, 0)]),
                true,
                Verdict::Waiting,
            ),
            (
                "full: one target done, the other not",
                status(7, &[("a", 0, 0, 3, 0), ("b", 0, 0, 2, 0)]),
                true,
                Verdict::Waiting,
            ),
            (
                "full: done but new changes queued",
                status(7, &[("a", 1, 0, 3, 0), ("b", 0, 0, 3, 0)]),
                true,
                Verdict::Waiting,
            ),
            (
                "full: both grew, idle",
                status(7, &[("a", 0, 0, 3, 0), ("b", 0, 0, 3, 0)]),
                true,
                Verdict::Done,
            ),
            (
                "a target failed again since the request",
                status(7, &[("a", 0, 0, 2, 0), ("b", 1, 0, 2, 2)]),
                false,
                Verdict::Failed(
                    "web → b: b is down; the changes are kept and retried by the daemon (see `syncd status`)"
                        .into(),
                ),
            ),
            (
                "a target added by a reload counts from zero",
                status(7, &[("a", 0, 0, 3, 0), ("b", 0, 0, 3, 0), ("c", 0, 0, 1, 0)]),
                true,
                Verdict::Done,
            ),
        ];
        for (what, now, full, want) in cases {
            assert_eq!(judge(&base, &now, full), want, "{what}");
        }
        let restarted = judge(&base, &status(8, &[("a", 0, 0, 0, 0)]), false);
        assert!(
            matches!(&restarted, Verdict::Failed(m) if m.contains("pid 7 → 8")),
            "{restarted:?}"
        );
    }

    #[test]
    fn summary_counts_every_target_and_old_status_reads_without_progress() {
        let mut s = status(1, &[("a", 3, 0, 0, 0), ("b", 1, 4, 0, 0)]);
        assert_eq!(summary(&s), "waiting: 4 queued, 4 in flight");
        s.syncs[0].targets[1].progress = Some(Progress {
            bytes: 1,
            percent: 1,
            rate_bps: 1.0,
            eta_secs: None,
            files_done: 0,
            files_total: None,
        });
        // The status JSON of an older worker has no `progress`: it reads as None.
        let json = serde_json::to_value(&s).expect("encode");
        let mut old = json.clone();
        for t in old["syncs"][0]["targets"].as_array_mut().expect("targets") {
            t.as_object_mut().expect("object").remove("progress");
        }
        let back: Status = serde_json::from_value(old).expect("decode");
        assert!(back.syncs[0].targets.iter().all(|t| t.progress.is_none()));
    }

    #[test]
    fn paths_that_keep_failing_are_named_per_target() {
        use syncd_worker::status::{FailingPath, FailingPaths};
        let mut s = status(1, &[("a", 0, 0, 0, 0), ("b", 0, 0, 0, 0)]);
        assert!(still_failing(&s).is_empty());
        s.syncs[0].targets[1].failing_paths = Some(FailingPaths {
            count: 1,
            examples: vec![FailingPath {
                path: "x/y".into(),
                reason: "the target cannot create it: Operation not permitted (1)".into(),
            }],
        });
        assert_eq!(
            still_failing(&s),
            ["web → b: 1 path failing (each retried on its own): x/y (the target cannot create it: Operation not permitted (1))"]
        );
    }
}
