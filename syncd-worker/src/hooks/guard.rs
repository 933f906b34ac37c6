//! The hook guard: a hook command never outlives the worker, nor the hook's timeout,
//! and neither does anything it started.
//!
//! Each hook runs under a small process of its own: this binary again
//! (`/proc/self/exe --hook-guard -- PROGRAM ARGS...`, so an upgraded or deleted binary
//! on disk does not matter), leading the hook's process group, with the parent-death
//! signal SIGTERM (tied to the hook thread, which waits for it), named `syncd-hook` in
//! `ps` (its command name; its executable is still syncd-worker). The guard marks itself
//! a child subreaper (`PR_SET_CHILD_SUBREAPER`: what the hook leaves behind when its own
//! parent ends comes to the guard, not to init), starts the hook in its group, and waits
//! for one of: the hook's end, or SIGTERM/SIGINT/SIGHUP — the worker died (SIGKILL, a
//! panic, `exit()` on a second stop signal: the parent-death signal), or the runner's
//! timeout or cancel (SIGTERM to the group). Then it kills (SIGKILL) every process of
//! its group and every descendant (by `/proc`'s parent links, so one that left the group
//! with `setsid` too), reaps them, and ends as the hook did (its exit code, or the
//! signal that ended it or the guard).
//!
//! Why not just a parent-death signal on the hook: it does not pass to the hook's
//! children (`sh -c 'sleep 300 & sleep 300'`: the first sleep would stay behind), and
//! nobody would be left to kill the group once the worker is gone. Why not the
//! controller as subreaper: `syncd-worker` also runs alone (tests, by hand, under
//! another supervisor), and the guard holds there too.
//!
//! So a hook and all it started end: when the hook ends (leftovers are part of the
//! run), at its timeout, and at the worker's end whatever the way. What escapes: a
//! process that double-forks *and* changes its parent's subreaper (impossible without
//! ptrace), or one in uninterruptible sleep until it wakes. If the guard itself is
//! SIGKILLed (by root or the OOM killer), the hook gets SIGKILL too (its own parent-death
//! signal), but what the hook started is left: nobody is left to find it.
//!
//! Without [`enable`] (unit tests, whose `/proc/self/exe` is the test binary), hooks run
//! directly with a parent-death SIGKILL on the hook alone.

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, getpid, setpgid, Pid};

use crate::process::{Input, Output, Spawn};

/// The first argument that makes `syncd-worker` a hook guard.
pub const FLAG: &str = "--hook-guard";

/// The program hooks run under once [`enable`]d.
const SELF_EXE: &str = "/proc/self/exe";

/// The guard's exit code when the hook program could not be started (with
/// [`NOT_STARTED`] at the start of its stderr).
const NOT_STARTED_CODE: u8 = 127;
/// How the guard's stderr starts when the hook program could not be started.
const NOT_STARTED: &str = "failed to start hook program ";

/// Rounds of kill-and-reap before the guard gives up on a process that keeps forking.
const KILL_ROUNDS: usize = 100;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Run every hook under the guard (`syncd-worker`'s `main` does, before any hook runs).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// The program and arguments that run `argv` (program first): under the guard once
/// enabled, else `argv` itself.
pub(super) fn wrap(argv: &[OsString]) -> (OsString, Vec<OsString>) {
    if ENABLED.load(Ordering::Relaxed) {
        let mut args = vec![OsString::from(FLAG), OsString::from("--")];
        args.extend(argv.iter().cloned());
        (OsString::from(SELF_EXE), args)
    } else {
        (argv[0].clone(), argv[1..].to_vec())
    }
}

/// Whether hooks run under the guard.
pub(super) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Did the guard end this way because the hook program could not be started (its
/// `stderr`)? The hook runner then stops, as when a program cannot be started directly.
pub(super) fn could_not_start(status: std::process::ExitStatus, stderr: &str) -> bool {
    status.code() == Some(i32::from(NOT_STARTED_CODE)) && stderr.starts_with(NOT_STARTED)
}

/// When this process was started as a guard (`syncd-worker --hook-guard -- PROGRAM
/// ARGS...`), be it and return its exit code; None otherwise. Called first in `main`,
/// before any thread exists.
pub fn run_if_asked() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(FLAG.as_ref()) {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    let argv = match rest.split_first() {
        Some((dashes, argv)) if dashes == "--" && !argv.is_empty() => argv,
        _ => {
            eprintln!("syncd-worker {FLAG}: usage: {FLAG} -- PROGRAM [ARGS...]");
            return Some(ExitCode::from(2));
        }
    };
    Some(ExitCode::from(guard(argv)))
}

/// How the guarded hook came to an end.
enum End {
    Exited(i32),
    Signalled(Signal),
    /// The guard was told to stop (the worker died, a timeout, a cancel).
    Stopped(Signal),
}

/// Be the guard of `argv`; the exit code when the guard is not to end by a signal.
fn guard(argv: &[OsString]) -> u8 {
    // Not one more `syncd-worker` to `pgrep -x` (the packages' tests count workers).
    let _ = nix::sys::prctl::set_name(c"syncd-hook");
    let _ = nix::sys::prctl::set_child_subreaper(true);
    // The runner starts the guard leading a group of its own; run by hand it makes one
    // (it kills the group it leads, never one it merely belongs to).
    if getpgrp() != getpid() {
        let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    }
    let mut waited = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        waited.add(s);
    }
    // Blocked before the child exists, so no signal is missed; the child starts with an
    // empty mask (std resets it).
    if let Err(e) = waited.thread_block() {
        eprintln!("syncd-worker {FLAG}: cannot block signals: {e}");
        return 126;
    }
    // Should the guard itself be SIGKILLed, the hook goes with it (what the hook started
    // then outlives it: nobody is left to kill it — see the module doc).
    let started = Spawn::new(&argv[0])
        .args(&argv[1..])
        .stdin(Input::Inherit)
        .stdout(Output::Inherit)
        .stderr(Output::Inherit)
        .parent_death(Some(Signal::SIGKILL))
        .spawn();
    let child = match started {
        // Reaped below by `waitpid`, with whatever else ends.
        Ok(running) => Pid::from_raw(running.pid() as i32),
        Err(e) => {
            eprintln!("{NOT_STARTED}{}: {e}", argv[0].to_string_lossy());
            return NOT_STARTED_CODE;
        }
    };
    let end = wait_for_end(child, &waited);
    kill_the_rest();
    finish(end)
}

/// Wait until the hook ends or the guard is told to stop, reaping whatever else ends.
fn wait_for_end(child: Pid, waited: &SigSet) -> End {
    loop {
        // Reap first: the child may have ended before its SIGCHLD was waited for.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return End::Exited(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                    return End::Signalled(sig)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        match waited.wait() {
            Ok(Signal::SIGCHLD) => continue,
            Ok(sig) => return End::Stopped(sig),
            Err(e) => {
                eprintln!("syncd-worker {FLAG}: cannot wait for signals: {e}");
                return End::Stopped(Signal::SIGTERM);
            }
        }
    }
}

/// SIGKILL every other process of the guard's group and every descendant, and reap
/// them, until none is left (or [`KILL_ROUNDS`] rounds: one that keeps forking). Each
/// round waits only for the guard's own children it has just killed; what they leave
/// (orphans come to the guard) is found by the next round.
fn kill_the_rest() {
    let me = getpid();
    let group = Some(getpgrp()).filter(|g| *g == me);
    for _ in 0..KILL_ROUNDS {
        let procs = processes();
        let victims = victims(&procs, me, group);
        if victims.is_empty() {
            break;
        }
        for pid in &victims {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        for pid in victims
            .iter()
            .filter(|p| procs.get(p).is_some_and(|(pp, _)| *pp == me))
        {
            let _ = waitpid(*pid, None);
        }
        while matches!(
            waitpid(None, Some(WaitPidFlag::WNOHANG)),
            Ok(s) if s != WaitStatus::StillAlive
        ) {}
    }
}

/// Every process: pid → (parent, process group), from `/proc/PID/stat`.
fn processes() -> HashMap<Pid, (Pid, Pid)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (ppid, pgrp) = parent_and_group(&stat)?;
            Some((Pid::from_raw(pid), (ppid, pgrp)))
        })
        .collect()
}

/// The parent and the process group in a `/proc/PID/stat` line (after the command name,
/// which may hold spaces and parentheses: the last `)` ends it).
fn parent_and_group(stat: &str) -> Option<(Pid, Pid)> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((Pid::from_raw(ppid), Pid::from_raw(pgrp)))
}

/// The processes to kill (pure): those of `group` (the one the guard leads, if it
/// does) and the descendants of `me`, not `me`.
fn victims(procs: &HashMap<Pid, (Pid, Pid)>, me: Pid, group: Option<Pid>) -> Vec<Pid> {
    let descends = |mut pid: Pid| {
        // Bounded: a parent chain longer than the table is a loop seen mid-change.
        for _ in 0..=procs.len() {
            match procs.get(&pid) {
                Some((parent, _)) if *parent == me => return true,
                Some((parent, _)) if parent.as_raw() > 1 => pid = *parent,
                _ => return false,
            }
        }
        false
    };
    let mut out: Vec<Pid> = procs
        .iter()
        .filter(|(pid, (_, pgrp))| **pid != me && (Some(*pgrp) == group || descends(**pid)))
        .map(|(pid, _)| *pid)
        .collect();
    out.sort();
    out
}

/// End the guard as the hook ended: its exit code, or the same signal (no core file).
fn finish(end: End) -> u8 {
    let sig = match end {
        End::Exited(code) => return u8::try_from(code).unwrap_or(1),
        End::Signalled(sig) | End::Stopped(sig) => sig,
    };
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    // SAFETY: restoring the default action of a signal; no handler is installed.
    let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
    let mut set = SigSet::empty();
    set.add(sig);
    let _ = set.thread_unblock();
    let _ = kill(getpid(), sig);
    128 + sig as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(n: i32) -> Pid {
        Pid::from_raw(n)
    }

    #[test]
    fn the_group_and_every_descendant_are_victims_and_nothing_else() {
        // (pid, parent, group); the guard is 10, leading group 10.
        let table = [
            (1, 0, 1),
            (5, 1, 5),    // the worker, long gone: not related any more
            (10, 1, 10),  // the guard, adopted by init
            (11, 10, 10), // the hook
            (12, 11, 10), // its background child
            (13, 11, 13), // a grandchild that left the group (setsid)
            (14, 13, 13), // and its child
            (20, 1, 10),  // in the group, orphaned to init before the guard adopted it
            (30, 1, 30),  // someone else
            (31, 30, 30),
        ];
        let procs: HashMap<Pid, (Pid, Pid)> = table
            .iter()
            .map(|(p, pp, g)| (pid(*p), (pid(*pp), pid(*g))))
            .collect();
        let want: Vec<Pid> = [11, 12, 13, 14, 20].iter().map(|p| pid(*p)).collect();
        assert_eq!(victims(&procs, pid(10), Some(pid(10))), want);
        // Not leading its group: its descendants only.
        let want: Vec<Pid> = [11, 12, 13, 14].iter().map(|p| pid(*p)).collect();
        assert_eq!(victims(&procs, pid(10), None), want);
    }

    #[test]
    fn only_the_guards_own_message_and_code_mean_not_started() {
        use std::os::unix::process::ExitStatusExt;
        let code = |c: i32| std::process::ExitStatus::from_raw(c << 8);
        let said = format!("{NOT_STARTED}/bin/nope: No such file or directory (os error 2)\n");
        assert!(could_not_start(code(127), &said));
        // The hook's own shell saying 127 (`sh -c missing-command`).
        assert!(!could_not_start(
            code(127),
            "sh: 1: missing-command: not found\n"
        ));
        assert!(!could_not_start(code(1), &said));
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let rows = [
            ("123 (sh) S 1 123 123 0 -1", Some((1, 123))),
            ("7 (a) b (c)) R 5 6 6 0", Some((5, 6))),
            ("8 (x y) Z 2 9", Some((2, 9))),
            ("garbage", None),
        ];
        for (line, want) in rows {
            let got = parent_and_group(line).map(|(p, g)| (p.as_raw(), g.as_raw()));
            assert_eq!(got, want, "{line}");
        }
    }
}
