//! No hook outlives the worker, nor its own timeout: a command hook that leaves a child
//! in its process group and one that left it (`setsid`) behind, all waiting 300 s, is
//! gone with everything it started when the worker is killed (SIGKILL) or the hook's
//! timeout passes while the worker runs on, and before the worker exits when it is
//! stopped (once: after a bounded wait for hooks; twice: at once). Each test waits, with a deadline, until none of the pids the hook
//! wrote is alive.

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use syncd_tests::controller::is_alive;
use syncd_tests::tree::write_file;
use syncd_tests::{toml_str, wait, Site, Worker};

/// The files the hook writes its processes' pids to: itself, a child in its group, a
/// child that left the group.
const PID_FILES: [&str; 3] = ["hook.pid", "child.pid", "escaped.pid"];

/// A command hook (killed after `timeout`) that writes the pids of itself and two
/// children into `dir`, then waits 300 s; the children wait 300 s too.
fn lingering_hook(dir: &Path, timeout: &str) -> String {
    let d = dir.display();
    let script = format!(
        "echo $$ > '{d}/hook.pid.tmp' && mv '{d}/hook.pid.tmp' '{d}/hook.pid'\n\
         sh -c 'echo $$ > \"$0/child.pid.tmp\" && mv \"$0/child.pid.tmp\" \"$0/child.pid\"; exec sleep 300' '{d}' &\n\
         setsid sh -c 'echo $$ > \"$0/escaped.pid.tmp\" && mv \"$0/escaped.pid.tmp\" \"$0/escaped.pid\"; exec sleep 300' '{d}' &\n\
         exec sleep 300\n"
    );
    format!(
        "[sync.hooks.command]\nargv = [\"/bin/sh\", \"-c\", {}]\ntimeout = {}",
        toml_str(&script),
        toml_str(timeout)
    )
}

/// A worker whose lingering hook runs: the hook's and its children's pids. Fields drop
/// in order: the worker, then whatever the hook left (should a test fail), then the site.
struct Hooked {
    w: Worker,
    pids: Vec<u32>,
    _dir: HookDir,
    site: Site,
}

/// Start a worker with the lingering hook (killed after `timeout`), push one file, and
/// wait until the hook and both children are running.
fn hooked(timeout: &str) -> Hooked {
    let site = Site::new();
    let dir = HookDir(tempfile::tempdir().expect("tempdir for the hook's pids"));
    let w = Worker::start(&site.config().raw(&lingering_hook(dir.0.path(), timeout)));
    write_file(&site.src().join("a.txt"), b"pushed, then the hook runs");
    let pids = wait::must(
        "the hook and its two children to write their pids",
        Duration::from_secs(20),
        &[&w, &site.daemon],
        || {
            PID_FILES
                .iter()
                .map(|f| {
                    fs::read_to_string(dir.0.path().join(f))
                        .ok()?
                        .trim()
                        .parse::<u32>()
                        .ok()
                })
                .collect::<Option<Vec<u32>>>()
        },
    );
    Hooked {
        w,
        pids,
        _dir: dir,
        site,
    }
}

/// Wait until none of `pids` is alive.
fn all_gone(w: &Worker, pids: &[u32], within: Duration) {
    wait::must(
        format_args!("the hook's processes {pids:?} to be gone"),
        within,
        &[w],
        || {
            let alive: Vec<u32> = pids.iter().copied().filter(|p| is_alive(*p)).collect();
            alive.is_empty().then_some(())
        },
    );
}

/// Wait for the worker's exit.
fn exit_of(w: &mut Worker, within: Duration) -> std::process::ExitStatus {
    let exited = wait::until_every("the worker's exit", within, wait::SHORT_POLL, || {
        w.poll_exit()
    });
    exited.unwrap_or_else(|t| wait::fail(t, &[&*w]))
}

/// The directory the hook writes its pids to. On drop, kills those processes and their
/// process groups (not the test's own), should a test fail before they are gone.
struct HookDir(tempfile::TempDir);

impl Drop for HookDir {
    fn drop(&mut self) {
        for f in PID_FILES {
            if let Some(pid) = fs::read_to_string(self.0.path().join(f))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
                .filter(|p| is_alive(*p as u32))
            {
                let pid = nix::unistd::Pid::from_raw(pid);
                if let Ok(group) = nix::unistd::getpgid(Some(pid)) {
                    if group != nix::unistd::getpgrp() {
                        let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
                    }
                }
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            }
        }
    }
}

#[test]
fn a_killed_worker_leaves_no_hook_behind() {
    let mut h = hooked("10m");
    h.w.signal(Signal::SIGKILL);
    exit_of(&mut h.w, Duration::from_secs(10));
    all_gone(&h.w, &h.pids, Duration::from_secs(10));
}

/// The guard itself SIGKILLed (root, the OOM killer): the hook it ran goes with it.
#[test]
fn a_killed_guard_takes_its_hook_with_it() {
    let h = hooked("10m");
    let hook = h.pids[0];
    let guard = syncd_tests::proc_tree::parent_of(hook).expect("the hook's parent");
    assert_eq!(
        syncd_tests::controller::comm(guard).as_deref(),
        Some("syncd-hook"),
        "the hook's parent is its guard"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(guard as i32), Signal::SIGKILL)
        .expect("SIGKILL the guard");
    all_gone(&h.w, &[hook], Duration::from_secs(10));
}

/// The second stop signal comes while a push is still in flight (the daemon frozen): the
/// worker exits at once, killing the hook first.
#[test]
fn a_second_stop_signal_kills_the_hooks_before_the_worker_exits() {
    let mut h = hooked("10m");
    let frozen = h.site.daemon.freeze();
    write_file(&h.site.src().join("b.txt"), b"a push that cannot end");
    h.w.wait_status(
        "a push in flight",
        Duration::from_secs(20),
        &[&h.site.daemon],
        |s| s.syncs[0].targets[0].in_flight == 1,
    );
    h.w.signal(Signal::SIGTERM);
    h.w.wait_log("stop requested", Duration::from_secs(10));
    h.w.signal(Signal::SIGTERM);
    let st = exit_of(&mut h.w, Duration::from_secs(10));
    drop(frozen);
    assert!(st.success(), "exit {st}\n{}", h.w.log());
    assert_none_alive(&h.w, &h.pids);
}

/// One stop signal: the worker lets hooks run for a while (10 s), then kills them.
#[test]
fn a_stop_kills_the_hooks_still_running_before_the_worker_exits() {
    let mut h = hooked("10m");
    h.w.signal(Signal::SIGTERM);
    let st = exit_of(&mut h.w, Duration::from_secs(30));
    assert!(st.success(), "exit {st}\n{}", h.w.log());
    assert_none_alive(&h.w, &h.pids);
}

/// Killed and reaped before the worker's exit: nothing left to wait for.
fn assert_none_alive(w: &Worker, pids: &[u32]) {
    let alive: Vec<u32> = pids.iter().copied().filter(|p| is_alive(*p)).collect();
    assert_eq!(
        alive,
        Vec::<u32>::new(),
        "hook processes alive after the worker's exit\n{}",
        w.log()
    );
}

#[test]
fn a_hooks_timeout_ends_what_it_started_outside_its_group_too() {
    let mut h = hooked("2s");
    all_gone(&h.w, &h.pids, Duration::from_secs(15));
    assert_eq!(h.w.poll_exit(), None, "the worker runs on\n{}", h.w.log());
}
