//! `syncd stop`, `syncd reload` and `syncd reopen-logs`: find the controller through the lock (never through a
//! bare pid), check it is a syncd by `/proc`, signal it. Stop waits for the lock to be
//! released; past the timeout it escalates: a second SIGTERM (the controller kills its
//! worker), then SIGKILL to the controller and the worker, each checked by `/proc`.

use std::process::{Child, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use syncd_worker::config::Config;
use syncd_worker::contract;
use syncd_worker::deadline::after;

use crate::dispatch::{EXIT_BAD_CONFIG, EXIT_NOT_RUNNING};
use crate::lock::{self, LockState, PidLock};
use crate::procs::{self, Proc, Role};
use crate::settings::Settings;
use crate::state::ControllerState;

/// After the escalation, how long to wait for the lock before giving up.
const AFTER_KILL: Duration = Duration::from_secs(10);

/// The running controller's pid, checked; `Ok(None)` when nothing runs (a stale pidfile
/// is removed on the way).
fn running_controller(settings: &Settings) -> anyhow::Result<Option<u32>> {
    match lock::probe(&settings.pidfile, &settings.lockfile)? {
        LockState::Free { pidfile, pid } => {
            if pidfile {
                if let Ok(l) = PidLock::acquire(&settings.pidfile, &settings.lockfile)? {
                    l.remove_pidfile()?;
                    println!(
                        "removed stale pidfile {}{}",
                        settings.pidfile.display(),
                        pid.map(|p| format!(" ({})", Proc::of(p).describe(p)))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(None)
        }
        LockState::Foreign { holders, .. } => anyhow::bail!(
            "syncd is not running, and its {}; not signalling anything",
            lock::foreign_holder_message(&settings.lockfile, &holders)
        ),
        LockState::Held { pid } => {
            // The holder writes its pid right after locking: give it a moment.
            let pid = match pid {
                Some(p) => p,
                None => wait_for_pid(settings)?,
            };
            let p = Proc::of(pid);
            if !p.is(Role::Controller) {
                anyhow::bail!(
                    "{} is locked but names {}, not a syncd controller; not signalling it. Check with: fuser -v {}",
                    settings.pidfile.display(),
                    p.describe(pid),
                    settings.lockfile.display()
                );
            }
            Ok(Some(pid))
        }
    }
}

fn wait_for_pid(settings: &Settings) -> anyhow::Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(p) = lock::read_pid(&settings.pidfile) {
            return Ok(p);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{} is locked but {} holds no pid",
                settings.lockfile.display(),
                settings.pidfile.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn stop(settings: &Settings, timeout: Duration) -> anyhow::Result<ExitCode> {
    let Some(pid) = running_controller(settings)? else {
        println!("syncd is not running");
        return Ok(ExitCode::SUCCESS);
    };
    procs::signal(pid, contract::STOP)?;
    println!("stopping syncd (pid {pid}): the worker finishes its push and saves its queue");
    let started = Instant::now();
    if released(settings, timeout)? {
        println!("syncd stopped ({:.1}s)", started.elapsed().as_secs_f64());
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "syncd did not stop within {}; killing the worker",
        humantime::format_duration(timeout)
    );
    // Second TERM: the controller kills its worker and exits.
    if Proc::of(pid).is(Role::Controller) {
        procs::signal(pid, contract::STOP)?;
    }
    if released(settings, AFTER_KILL)? {
        println!("syncd stopped (worker killed; its queue was saved when the stop began)");
        return Ok(ExitCode::SUCCESS);
    }
    let worker = ControllerState::read(&settings.controller_file)
        .ok()
        .flatten()
        .and_then(|s| s.worker_pid);
    for (p, role) in [(Some(pid), Role::Controller), (worker, Role::Worker)] {
        if let Some(p) = p {
            if Proc::of(p).is(role) {
                eprintln!("sending SIGKILL to {}", Proc::of(p).describe(p));
                procs::signal(p, Signal::SIGKILL)?;
            }
        }
    }
    if released(settings, AFTER_KILL)? {
        println!("syncd killed");
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::bail!(
        "syncd (pid {pid}) still holds {} after SIGKILL",
        settings.lockfile.display()
    )
}

/// Wait up to `timeout` for the lock to be free; remove a pidfile left behind.
fn released(settings: &Settings, timeout: Duration) -> anyhow::Result<bool> {
    match PidLock::acquire_within(&settings.pidfile, &settings.lockfile, timeout)? {
        Some(lock) => {
            lock.remove_pidfile()?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// `syncd reload`: the config was validated by the caller; SIGHUP the controller, unless
/// the new config asks for another `user` than the running worker has (the controller
/// would refuse it too, but only in its log).
pub fn reload(settings: &Settings, config: &Config) -> anyhow::Result<ExitCode> {
    let Some(pid) = running_controller(settings)? else {
        eprintln!("syncd is not running; nothing to reload");
        return Ok(ExitCode::from(EXIT_NOT_RUNNING));
    };
    let worker = ControllerState::read(&settings.controller_file)
        .ok()
        .flatten()
        .and_then(|s| s.worker_pid);
    let ids = worker.and_then(procs::real_ids);
    if let Some(why) = ids
        .zip(procs::real_ids(pid))
        .and_then(|(w, c)| crate::privdrop::refusal_for_running(w, c, config))
    {
        eprintln!("reload refused, the running syncd keeps its configuration: {why}");
        return Ok(ExitCode::from(EXIT_BAD_CONFIG));
    }
    procs::signal(pid, contract::RELOAD)?;
    println!(
        "reload requested (pid {pid}); the log ({}) says what changed",
        settings.log_file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `syncd reopen-logs`: ask the controller to reopen its log file
/// ([`contract::REOPEN_LOGS`]), unless it does not write to a file (the journal).
pub fn reopen_logs(settings: &Settings) -> anyhow::Result<ExitCode> {
    let Some(pid) = running_controller(settings)? else {
        eprintln!("syncd is not running; no log file to reopen");
        return Ok(ExitCode::from(EXIT_NOT_RUNNING));
    };
    // Where its stderr goes (root may look): not a file → nothing to reopen.
    let stderr = std::path::PathBuf::from(format!("/proc/{pid}/fd/2"));
    if let Ok(meta) = std::fs::metadata(&stderr) {
        if !meta.is_file() {
            let to = std::fs::read_link(&stderr)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            println!(
                "syncd (pid {pid}) does not log to a file (stderr is {to}; under systemd: the journal): nothing to reopen"
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    procs::signal(pid, contract::REOPEN_LOGS)?;
    println!(
        "reopen of {} requested (pid {pid}); the new file's first lines say it was done",
        settings.log_file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Wait up to `timeout` for a child to exit; kill it after that.
pub fn wait_for_exit(child: &mut Child, timeout: Duration) -> std::io::Result<ExitStatus> {
    let deadline = after(Instant::now(), timeout);
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if Instant::now() >= deadline {
            child.kill()?;
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
