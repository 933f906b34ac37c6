//! `syncd verify [--deep] [--fix] [--json]`: is every target an exact copy of its
//! source? For each sync and target, [`syncd_worker::verify::check_target`] runs one rsync
//! dry run (see its doc for how, and how live pushes are told apart from drift), and this
//! module prints the result ([`render`]) and picks the exit code: 0 equal, 1 drift, 2 a
//! target could not be checked (or `--fix` could not push).
//!
//! `--fix` pushes exactly the drift found ([`syncd_worker::verify::fix_target`]) and
//! verifies again; the exit code is the second verify's. It runs only while the daemon
//! does not (its pushes and ours would touch the same paths at once, which the daemon's
//! own pushes never do): it takes the state directory's lock, as `syncd-worker --once`
//! does. With the daemon running, verify alone is fine: it only reads.
//!
//! On a terminal, a line on stderr counts the entries compared so far.

mod render;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use syncd_worker::config::{Config, SyncJob, Target};
use syncd_worker::process::{Input, Output, Spawn};
use syncd_worker::source_id::{Record, SourceId};
use syncd_worker::state_dir::StateDir;
use syncd_worker::verify::{self, Checked, Options, Seen};

use crate::lock::{probe, LockState};
use crate::settings::Settings;
use render::{CheckView, FixView, Report, TargetView};

pub use render::{EXIT_DRIFT, EXIT_EQUAL, EXIT_FAILED};

/// What the user asked for.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub deep: bool,
    pub fix: bool,
    pub json: bool,
    /// Paths shown of each kind.
    pub show: usize,
}

/// Verify every target of every sync; print the report; the exit code. Anything that
/// stops verify itself (the lock, the state directory) is exit 2, never 1 (drift).
pub fn run(
    settings: &Settings,
    config: &Config,
    req: Request,
    password_dir: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let mut config = config.clone();
    match password_dir {
        // The child below, as `user`.
        Some(dir) => config.use_password_copies(dir),
        None => match as_user(settings, &config, req) {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => {}
            Err(e) => {
                eprintln!("syncd verify: {e:#}");
                return Ok(ExitCode::from(EXIT_FAILED));
            }
        },
    }
    match verify_all(settings, &config, req) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("syncd verify: {e:#}");
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}

/// With `user` set and run by root: the whole verify runs again as that user (this
/// binary, `--password-dir` naming the private copies of root-only password files), as
/// the worker's rsync runs do — a verify must not read or push as root what the daemon
/// reads and pushes as the user. Its exit code is ours. None: run here.
fn as_user(settings: &Settings, config: &Config, req: Request) -> anyhow::Result<Option<ExitCode>> {
    if config.daemon.run_as.is_none() || !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let Some(u) = crate::privdrop::prepare(config, &settings.state_dir)? else {
        return Ok(None);
    };
    let running = matches!(
        probe(&settings.pidfile, &settings.lockfile)?,
        LockState::Held { .. }
    );
    let mut spawn = Spawn::new("/proc/self/exe")
        .args(settings.global_args())
        .arg("verify")
        .arg("--show")
        .arg(req.show.to_string())
        .arg("--password-dir")
        .arg(u.password_dir());
    for (on, flag) in [
        (req.deep, "--deep"),
        (req.fix, "--fix"),
        (req.json, "--json"),
    ] {
        if on {
            spawn = spawn.arg(flag);
        }
    }
    let spawn = crate::privdrop::as_user(
        spawn
            .stdin(Input::Inherit)
            .stdout(Output::Inherit)
            .stderr(Output::Inherit),
        Some(&u),
    );
    let ended = spawn.spawn().and_then(|child| child.wait());
    // The daemon's copies stay while it runs; ours go.
    if !running {
        u.remove_copies();
    }
    let status = ended.map_err(|e| anyhow::anyhow!("cannot run verify as user: {e}"))?;
    let code = status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(EXIT_FAILED);
    Ok(Some(ExitCode::from(code)))
}

fn verify_all(settings: &Settings, config: &Config, req: Request) -> anyhow::Result<ExitCode> {
    let running = match probe(&settings.pidfile, &settings.lockfile)? {
        LockState::Held { .. } => true,
        LockState::Foreign { .. } | LockState::Free { .. } => false,
    };
    if req.fix && running {
        eprintln!(
            "syncd verify --fix: syncd is running, and --fix does not push beside its pushes. \
             Either run `syncd verify` (read only) and then `syncd sync --full` (the daemon \
             pushes the whole tree), or `syncd stop`, `syncd verify --fix`, `syncd start`."
        );
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    // --fix: no daemon may start and push beside us meanwhile.
    let _lock = if req.fix {
        Some(StateDir::create(&settings.state_dir)?.lock()?)
    } else {
        None
    };
    let sources = Record::peek(&settings.state_dir);
    let mut targets = Vec::new();
    for job in &config.syncs {
        let source = sources.expected(&job.name, job.source_path());
        let opts = Options {
            deep: req.deep,
            settle: running.then(|| verify::settle_for(job)),
        };
        for target in &job.targets {
            targets.push(one_target(job, target, source, opts, req));
        }
    }
    let report = Report::new(targets);
    if req.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::from(report.exit_code()))
}

fn one_target(
    job: &SyncJob,
    target: &Target,
    source: Option<SourceId>,
    opts: Options,
    req: Request,
) -> TargetView {
    let mode = if req.deep { "deep" } else { "quick" };
    let (result, seconds) = checked_with_progress(job, target, source, opts);
    log_result(job, target, &result);
    let check = CheckView::of(&result, req.show, seconds);
    let fix = match (&result, req.fix) {
        (Ok(c), true) if !c.drift.is_empty() => Some(fix(job, target, source, c, opts, req)),
        _ => None,
    };
    TargetView {
        sync: job.name.clone(),
        target: target.name.clone(),
        mode,
        check,
        fix,
    }
}

fn fix(
    job: &SyncJob,
    target: &Target,
    source: Option<SourceId>,
    checked: &Checked,
    opts: Options,
    req: Request,
) -> FixView {
    match verify::fix_target(job, target, source, checked, req.deep) {
        Err(e) => {
            log::error!("{} → {}: {e}", job.name, target.name);
            FixView {
                paths: 0,
                seconds: 0.0,
                error: Some(e),
                after: None,
            }
        }
        Ok(fixed) => {
            log::info!(
                "{} → {}: pushed the {} drifting path{}; verifying again",
                job.name,
                target.name,
                fixed.paths,
                if fixed.paths == 1 { "" } else { "s" }
            );
            let (again, seconds) = checked_with_progress(job, target, source, opts);
            log_result(job, target, &again);
            FixView {
                paths: fixed.paths,
                seconds: fixed.elapsed.as_secs_f64(),
                error: None,
                after: Some(CheckView::of(&again, req.show, seconds)),
            }
        }
    }
}

fn log_result(job: &SyncJob, target: &Target, result: &Result<Checked, String>) {
    match result {
        Ok(c) if c.drift.is_empty() => log::debug!(
            "{} → {}: equal ({:.2}s)",
            job.name,
            target.name,
            c.elapsed.as_secs_f64()
        ),
        Ok(c) => log::debug!(
            "{} → {}: drift: {}",
            job.name,
            target.name,
            render::summary(&c.drift)
        ),
        Err(e) => log::debug!("{} → {}: not checked: {e}", job.name, target.name),
    }
}

/// How often the terminal line is redrawn.
const TICK: Duration = Duration::from_millis(200);

/// Check one target on a thread (rsync is spawned and reaped there), showing the count
/// of entries compared on stderr when it is a terminal. Also the seconds it took.
fn checked_with_progress(
    job: &SyncJob,
    target: &Target,
    source: Option<SourceId>,
    opts: Options,
) -> (Result<Checked, String>, f64) {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let seen = Seen::default();
    let (tx, rx) = mpsc::channel();
    let result = std::thread::scope(|scope| {
        let seen_here = seen.clone();
        scope.spawn(move || {
            let _ = tx.send(verify::check_target(
                job,
                target,
                source,
                opts,
                Some(&seen_here),
            ));
        });
        let mut drawn = false;
        let result = loop {
            match rx.recv_timeout(TICK) {
                Ok(r) => break r,
                Err(RecvTimeoutError::Timeout) => {
                    if tty {
                        let mut err = std::io::stderr().lock();
                        let _ = write!(
                            err,
                            "\r\x1b[Kverifying {} → {}: {} entries compared, {:.0}s",
                            job.name,
                            target.name,
                            seen.load(Ordering::Relaxed),
                            started.elapsed().as_secs_f64()
                        );
                        let _ = err.flush();
                        drawn = true;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    break Err(
                        "the verify thread panicked (a bug in syncd; please report it)".into(),
                    )
                }
            }
        };
        if drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
        result
    });
    (result, started.elapsed().as_secs_f64())
}
