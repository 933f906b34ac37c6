//! `syncd start`: take the lock, clear a stale pidfile, re-execute ourselves as a
//! detached daemon (`syncd run --lock-fd 3` in a new session, cwd `/`, stdio to the log
//! file; no `fork()` in this threaded process) that inherits the held lock, then wait
//! until it reports over sd_notify that the worker's watches are in place. Exit 0 then,
//! or non-zero with the reason (the daemon's log lines) after a bounded wait — and in
//! that case no daemon is left behind. Only the daemon's own datagrams count: it is the
//! child spawned here (exec, no fork in between), so the kernel must name `child.id()`
//! as the sender; anyone else's READY=1 on the (abstract, so open to all) socket is
//! dropped and said once per sender on stderr. Once started, it reads the status file
//! the new worker wrote before READY=1 and says of each sync that had nothing to catch
//! up (a new state directory, `initial_sync` off) that nothing already in its source was
//! pushed, with the `syncd sync --full` that completes the target.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{BorrowedFd, IntoRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{dup2_raw, setsid};
use syncd_worker::contract;
use syncd_worker::deadline::after;
use syncd_worker::notify;
use syncd_worker::status::{unix_secs, Status};

use crate::cli::StartArgs;
use crate::lock::{self, Held, PidLock};
use crate::procs::{Proc, Role};
use crate::report;
use crate::settings::{Settings, DEFAULT_CONFIG};

/// The descriptor number the daemon finds its lock on.
const LOCK_FD: i32 = 3;

pub fn start(settings: &Settings, args: &StartArgs) -> anyhow::Result<ExitCode> {
    let lock = match PidLock::acquire(&settings.pidfile, &settings.lockfile)? {
        Ok(lock) => lock,
        Err(Held::Syncd { pid }) => {
            println!(
                "syncd is already running{}",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            );
            return Ok(ExitCode::SUCCESS);
        }
        Err(Held::Foreign(holders)) => {
            eprintln!(
                "syncd cannot start: {}",
                lock::foreign_holder_message(&settings.lockfile, &holders)
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    clear_stale_pidfile(&lock, &settings.pidfile)?;
    let log = open_log(&settings.log_file)?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let listener =
        notify::Listener::bind("start").context("failed to bind a notification socket")?;
    let mut cmd = daemon_command(settings, args)?;
    let log_err = log
        .try_clone()
        .context("failed to duplicate the log file handle")?;
    cmd.env(contract::NOTIFY_SOCKET, listener.name())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    detach_with_lock(&mut cmd, lock.as_raw_fd());
    let mut child = cmd.spawn().context("failed to start the syncd daemon")?;
    // The daemon holds the lock through its own descriptor now.
    drop(lock);
    wait_until_ready(&mut child, &listener, settings, args.wait, log_start)
}

/// `syncd run --lock-fd 3` with this invocation's settings and worker flags.
fn daemon_command(settings: &Settings, args: &StartArgs) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("failed to find syncd's own executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(settings.global_args());
    cmd.arg("run").arg("--lock-fd").arg(LOCK_FD.to_string());
    if args.worker.initial_sync {
        cmd.arg("--initial-sync");
    }
    if let Some(n) = args.worker.threads {
        cmd.arg("--threads").arg(n.to_string());
    }
    Ok(cmd)
}

/// In the child before exec: the held lock (`lock_fd`) moved to [`LOCK_FD`] and kept
/// across exec, a new session, umask 022.
fn detach_with_lock(cmd: &mut Command, lock_fd: i32) {
    // SAFETY: runs in the child between fork and exec: fcntl, dup2, setsid and umask are
    // async-signal-safe and nothing here allocates (nix's errors are plain errno values).
    // `lock_fd` is open in the child (fork copied the descriptor table) and is borrowed
    // only for these calls; the descriptor dup2 makes at LOCK_FD is released with
    // `into_raw_fd`, so it stays open across exec. pre_exec has no safe alternative.
    unsafe {
        cmd.pre_exec(move || {
            let lock = BorrowedFd::borrow_raw(lock_fd);
            if lock_fd == LOCK_FD {
                // Already in place: just let it survive exec.
                fcntl(lock, FcntlArg::F_SETFD(FdFlag::empty()))?;
            } else {
                let _ = dup2_raw(lock, LOCK_FD)?.into_raw_fd();
            }
            setsid()?;
            umask(Mode::from_bits_truncate(0o022));
            Ok(())
        });
    }
}

/// Wait until the daemon reports its watches in place (success), exits (failure, with
/// what it logged since `log_start`), or `wait` passes (failure: the daemon is stopped).
fn wait_until_ready(
    child: &mut Child,
    listener: &notify::Listener,
    settings: &Settings,
    wait: Duration,
    log_start: u64,
) -> anyhow::Result<ExitCode> {
    let deadline = after(Instant::now(), wait);
    let spawned_at = unix_secs(SystemTime::now());
    let mut last_status = String::new();
    let mut gate = notify::SenderGate::new(Some(child.id()));
    loop {
        if let Some(status) = child.try_wait().context("failed to check on the daemon")? {
            eprintln!(
                "syncd failed to start ({}). From {}:\n{}",
                syncd_worker::process::describe_exit(status),
                settings.log_file.display(),
                log_since(&settings.log_file, log_start)
            );
            return Ok(ExitCode::FAILURE);
        }
        let now = Instant::now();
        if now >= deadline {
            give_up(child, settings, wait, &last_status, log_start);
            return Ok(ExitCode::FAILURE);
        }
        let slice = (deadline - now).min(Duration::from_millis(200));
        if let Some(m) = listener.recv(Some(slice)).context("notification socket")? {
            if !sent_by_the_daemon(&mut gate, &m, child.id()) {
                continue;
            }
            if let Some(s) = m.get("STATUS") {
                last_status = s.to_string();
            }
            if m.is_ready() {
                println!(
                    "syncd started (pid {}): {}",
                    child.id(),
                    if last_status.is_empty() {
                        "watching"
                    } else {
                        &last_status
                    }
                );
                for note in new_sync_notes(settings, spawned_at) {
                    println!("{note}");
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

/// The notes of [`report::new_sync_notes`] from the status file of the worker this start
/// began (written before its READY=1); none from an older worker's file or none at all.
fn new_sync_notes(settings: &Settings, spawned_at: f64) -> Vec<String> {
    let Ok(status) = Status::read(&settings.status_file) else {
        return Vec::new();
    };
    if status.started_at < spawned_at {
        return Vec::new();
    }
    let config = if settings.config == Path::new(DEFAULT_CONFIG) {
        String::new()
    } else {
        format!(" --config {}", settings.config.display())
    };
    report::new_sync_notes(
        &status,
        &settings.state_dir,
        &format!("syncd{config} sync --full"),
    )
}

/// Whether `m` comes from the daemon `pid`; a stranger's datagram is dropped, and said
/// (once per sender).
fn sent_by_the_daemon(gate: &mut notify::SenderGate, m: &notify::Message, pid: u32) -> bool {
    let more = match gate.admit(m.pid) {
        notify::Admission::Take => return true,
        notify::Admission::Drop => return false,
        notify::Admission::DropAndLog => "",
        notify::Admission::DropAndLogLast => "; later senders are not named",
    };
    log::warn!(
        "ignored a notification ({}) from {}: not the syncd daemon this start launched (pid {pid}){more}",
        m.keys(),
        m.sender()
    );
    false
}

/// The daemon did not report ready within `wait`: say so with its log, and stop it.
fn give_up(
    child: &mut Child,
    settings: &Settings,
    wait: Duration,
    last_status: &str,
    log_start: u64,
) {
    eprintln!(
        "syncd did not report its watches in place within {} (last status: {}); stopping it. Raise --wait for very large trees. From {}:\n{}",
        humantime::format_duration(wait),
        if last_status.is_empty() { "none" } else { last_status },
        settings.log_file.display(),
        log_since(&settings.log_file, log_start)
    );
    let _ = crate::procs::signal(child.id(), contract::STOP);
    let _ = crate::stop::wait_for_exit(child, Duration::from_secs(30));
}

/// With the lock held: a pidfile left behind belongs to a dead controller (or its pid now
/// names an unrelated process). Remove it, saying so. A live syncd controller that does
/// not hold the lock (its lock file was deleted) is refused, never signalled.
pub fn clear_stale_pidfile(lock: &PidLock, pidfile: &Path) -> anyhow::Result<()> {
    if !pidfile.exists() {
        return Ok(());
    }
    match lock::read_pid(pidfile) {
        Some(pid) if pid != std::process::id() => {
            let p = Proc::of(pid);
            if p.is_of(Role::Controller, nix::unistd::geteuid().as_raw()) {
                anyhow::bail!(
                    "{} names {}, a running syncd that does not hold the lock (was the lock file deleted?); stop it first (kill {pid})",
                    pidfile.display(),
                    p.describe(pid)
                );
            }
            let why = match p {
                Proc::Alive { .. } => format!("{} is not syncd", p.describe(pid)),
                _ => p.describe(pid),
            };
            log::warn!("removing stale pidfile {}: {why}", pidfile.display());
        }
        Some(_) => {}
        None => match lock::pidfile_trouble(pidfile) {
            Some(why) => log::warn!("removing pidfile {}: {why}", pidfile.display()),
            None => log::warn!("removing unreadable pidfile {}", pidfile.display()),
        },
    }
    lock.remove_pidfile()
}

fn open_log(path: &Path) -> anyhow::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create log directory {}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open log file {}", path.display()))
}

/// What the daemon logged since `offset` (at most the last 40 lines).
fn log_since(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            text = String::from_utf8_lossy(&buf).into_owned();
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(40);
    let tail = lines[from..].join("\n");
    if tail.is_empty() {
        "(nothing logged)".into()
    } else {
        tail
    }
}
