//! The controller keeps the worker alive and never leaves one orphaned: a worker killed
//! with SIGKILL is restarted and what changed meanwhile arrives; a controller killed with
//! SIGKILL takes its worker with it (parent-death signal), `status` says "dead" (1) and
//! `start` recovers; a controller stopped and continued still hears its next worker;
//! `stop` during a large burst loses nothing across the next start; and
//! `start` raises the inotify sysctls the config asks for (never lowers them).

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;

use syncd_tests::controller::{is_alive, kill, wait_gone};
use syncd_tests::tree::{snapshot, write_file, Kind};
use syncd_tests::wait;
use syncd_tests::{
    assert_in_sync, is_root, sysctl_exclusive, Controller, Diagnose, Site, SysctlOverride,
    TreeWriter,
};

const SYNC_TIMEOUT: Duration = Duration::from_secs(20);
/// A worker killed now is restarted after about a second; allow for a loaded machine.
const RESTART_TIMEOUT: Duration = Duration::from_secs(15);

#[test]
fn worker_killed_with_sigkill_is_restarted_and_changes_made_meanwhile_arrive() {
    let site = Site::new();
    // No initial sync in the config: only the restart's catch-up can bring the changes
    // made while no worker watched.
    let c = Controller::new(&site.config().initial_sync(false));
    let pid = c.start();
    write_file(&site.src().join("keep/a.txt"), b"a");
    write_file(
        &site.src().join("gone.txt"),
        b"deleted while no worker runs",
    );
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);

    let old = c.worker_pid().expect("worker pid");
    kill(old, Signal::SIGKILL);
    wait_gone(old, RESTART_TIMEOUT, "the SIGKILLed worker", &[&c]);
    // Changes while no worker runs: new files in new and old dirs, a delete.
    TreeWriter::new(51).files(site.src(), &["while-dead", "keep"], 80, 0, 5000);
    fs::remove_file(site.src().join("gone.txt")).expect("rm gone.txt");

    let v = c.wait_restarted(old, RESTART_TIMEOUT, &[&site.daemon], |_| true);
    assert_eq!(
        v["pid"].as_u64(),
        Some(u64::from(pid)),
        "the controller changed\n{v:#}"
    );
    assert!(
        v["last_exit"].is_string(),
        "last_exit should say how the worker ended\n{v:#}"
    );
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    // The new worker watches live.
    write_file(&site.src().join("after-restart.txt"), b"live");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    c.stop();
}

#[test]
fn controller_killed_with_sigkill_takes_its_worker_and_start_recovers() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    let pid = c.start();
    let worker = c.worker_pid().expect("worker pid");
    write_file(&site.src().join("before.txt"), b"before");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);

    kill(pid, Signal::SIGKILL);
    wait_gone(
        pid,
        Duration::from_secs(10),
        "the SIGKILLed controller",
        &[&c],
    );
    // The parent-death signal makes the worker drain and exit: no orphan.
    wait_gone(
        worker,
        Duration::from_secs(30),
        "the worker of a SIGKILLed controller (it must not live on)",
        &[&c],
    );
    let (code, v) = c.status_json();
    assert_eq!(
        code,
        Some(1),
        "controller dead, pidfile left: status must be 1\n{v:#}"
    );
    assert!(v["running"] == false, "{v:#}");
    c.wait_no_processes(Duration::from_secs(10));

    let new = c.start();
    assert_ne!(new, pid);
    let (code, v) = c.status_json();
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["pid"].as_u64(), Some(u64::from(new)), "{v:#}");
    assert!(!is_alive(pid) && !is_alive(worker));
    write_file(&site.src().join("after.txt"), b"after the recovery");
    TreeWriter::new(52).files(site.src(), &["r"], 40, 0, 4000);
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    c.stop();
}

/// A controller stopped and continued (Ctrl-Z and `fg`, SIGSTOP/SIGCONT, a debugger
/// attaching) still hears its next worker: a stop ends a socket wait that has a timeout
/// with EINTR, which once ended the thread listening for the worker's READY, so a
/// restarted worker was never seen ready (`phase` stayed "starting").
#[test]
fn a_controller_stopped_and_continued_still_hears_its_restarted_worker() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    let pid = c.start();
    kill(pid, Signal::SIGSTOP);
    wait::until("the controller stopped", Duration::from_secs(10), || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state follows the parenthesised command name.
        match stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.starts_with('T'))
        {
            Some(true) => Ok(()),
            _ => Err(stat),
        }
    })
    .unwrap_or_else(|t| wait::fail(t, &[&c as &dyn Diagnose]));
    kill(pid, Signal::SIGCONT);

    let old = c.worker_pid().expect("worker pid");
    kill(old, Signal::SIGKILL);
    wait_gone(old, RESTART_TIMEOUT, "the SIGKILLed worker", &[&c]);
    c.wait_restarted(old, RESTART_TIMEOUT, &[&site.daemon], |_| true);
    write_file(&site.src().join("after.txt"), b"after the restart");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    c.stop();
}

/// How many regular files `dir` holds (recursively).
fn file_count(dir: &std::path::Path) -> usize {
    snapshot(dir)
        .values()
        .filter(|e| matches!(e.kind, Kind::File { .. }))
        .count()
}

#[test]
fn stop_during_a_large_burst_then_start_brings_the_target_level() {
    let site = Site::new();
    // Small batches, one run at a time, and a settle window that holds the first push back
    // until the burst is written: the burst is one batch of many rsync runs. No initial
    // sync: the next start must replay what the stopping worker saved. One push at a
    // time: the late files must wait in the queue, not go beside the frozen push (a stop
    // with two pushes in flight is `pipeline::a_stop_finishes_every_push_in_flight`).
    let cfg = site
        .config()
        .initial_sync(false)
        .delay(Some("500ms"))
        .key("max_delay", "\"5s\"")
        .key("max_batch", "200")
        .key("threads", "1")
        .key("max_in_flight", "1");
    // The burst goes into directories that exist already (a new directory is pushed
    // whole, in one run) and are on the target.
    let dirs = ["b0", "b1/x", "b2/y/z"];
    for d in dirs {
        write_file(&site.src().join(d).join("seed"), b"seed");
    }
    site.daemon.push_with_rsync(site.src());
    let c = Controller::new(&cfg);
    c.start();
    let mut tw = TreeWriter::new(53);
    tw.files(site.src(), &dirs, 3000, 0, 2000);
    // As soon as the first files of the burst arrive (its push is in flight)...
    let seeds = dirs.len();
    wait::until_every(
        "a file of the burst in the target",
        SYNC_TIMEOUT,
        wait::SHORT_POLL,
        || file_count(&site.dst()) > seeds,
    )
    .unwrap_or_else(|t| wait::fail(t, &[&c]));
    // ...more changes queue up behind it (the daemon frozen, so a push stays in flight
    // however fast the runs are); once the worker has them, stop.
    let frozen = site.daemon.freeze();
    for i in 0..300 {
        write_file(
            &site
                .src()
                .join(dirs[i % dirs.len()])
                .join(format!("late{i:03}")),
            format!("late {i}").as_bytes(),
        );
    }
    c.wait_status(
        "the 300 late files queued behind the push in flight",
        SYNC_TIMEOUT,
        &[&site.daemon],
        |v| {
            let t = &v["worker"]["syncs"][0]["targets"][0];
            t["in_flight"].as_u64().is_some_and(|n| n > 0)
                && t["queue_depth"].as_u64().is_some_and(|n| n >= 300)
        },
    );
    drop(frozen);
    c.stop();
    // The stop finished the push in flight and saved the queue; it did not push the queue.
    // (Counting files on the target cannot tell: the push in flight may have ended just
    // before the stop arrived, and the next one may have taken everything.)
    let log = c.log();
    let after_stop: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.contains("stop requested: saving what is pending"))
        .collect();
    assert!(
        !after_stop.is_empty() && after_stop.iter().any(|l| l.contains("pending entries to")),
        "the stop saved nothing\n{}",
        c.diagnose()
    );
    let pushes = after_stop
        .iter()
        .filter(|l| l.contains(": pushed "))
        .count();
    assert!(
        pushes <= 1,
        "{pushes} pushes after the stop request: only the one in flight may finish\n{}",
        c.diagnose()
    );

    c.start();
    site.check(&c).within(Duration::from_secs(60)).wait();
    c.stop();
}

#[test]
fn start_raises_inotify_sysctls_the_config_asks_for_and_never_lowers_them() {
    if !is_root() {
        eprintln!("skipped: changing fs.inotify.max_user_watches needs root");
        return;
    }
    let site = Site::new();
    let guard = sysctl_exclusive();
    let before = syncd_tests::sysctl::read("max_user_watches");
    // Setting the value it already has: records the original, put back on Drop (panic too).
    let _restore = SysctlOverride::set(&guard, "max_user_watches", before);
    let want = before + 1000;
    let cfg = site
        .config()
        .raw(&format!("[inotify]\nmax_user_watches = {want}"));
    {
        let c = Controller::new_exclusive(&cfg, &guard);
        c.start();
        assert_eq!(
            syncd_tests::sysctl::read("max_user_watches"),
            want,
            "after start the kernel value should be the config's\n{}",
            c.diagnose()
        );
        c.wait_log(
            &["max_user_watches", &before.to_string(), &want.to_string()],
            SYNC_TIMEOUT,
        );
        write_file(&site.src().join("x.txt"), b"x");
        assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
        c.stop();
    }

    // Asking for less than the kernel has changes nothing.
    let now = syncd_tests::sysctl::read("max_user_watches");
    let cfg = site
        .config()
        .raw(&format!("[inotify]\nmax_user_watches = {}", now - 500));
    let c = Controller::new_exclusive(&cfg, &guard);
    c.start();
    assert_eq!(
        syncd_tests::sysctl::read("max_user_watches"),
        now,
        "start lowered max_user_watches\n{}",
        c.diagnose()
    );
    c.stop();
}

#[test]
fn a_worker_rejecting_the_config_ends_supervision_at_once_and_status_says_why() {
    let site = Site::new();
    let c = Controller::new(&site.config().initial_sync(false));
    let pid = c.start();
    let worker = c.worker_pid().expect("worker pid");
    // The source vanishes: the running worker holds its pushes and waits for it to come
    // back; killed, its successor finds a config naming a missing directory (exit 2).
    // Restarting again cannot help: the controller gives up at once, leaving its pidfile
    // (status 1).
    fs::remove_dir_all(site.src()).expect("remove the source");
    c.wait_status("the source reported lost", RESTART_TIMEOUT, &[], |v| {
        v["worker"]["syncs"][0]["source_problem"].is_string()
    });
    kill(worker, Signal::SIGKILL);
    wait_gone(
        worker,
        RESTART_TIMEOUT,
        "the killed worker whose source vanished",
        &[&c],
    );
    let v = c.wait_status(
        "the controller to give up on a rejected config",
        RESTART_TIMEOUT,
        &[&site.daemon],
        // The phase is written before the controller exits: wait for the lock to go too.
        |v| v["phase"] == "gave-up" && v["code"] == 1,
    );
    assert_eq!(v["code"], 1, "{v:#}");
    assert_eq!(v["restarts"], 1, "one restart, then no more\n{v:#}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("dead but pidfile") && message.contains("rejected the configuration"),
        "the one-line message says why\n{v:#}"
    );
    wait_gone(pid, RESTART_TIMEOUT, "the controller that gave up", &[&c]);
}

#[test]
fn a_worker_dying_fast_again_and_again_is_restarted_with_backoff_then_given_up_on() {
    let site = Site::new();
    // The first worker is the real one; every later one exits 1 at once (a crash loop).
    let tools = tempfile::tempdir().expect("tempdir");
    let wrapper = tools.path().join("crashing-worker.sh");
    let marker = tools.path().join("first-worker-started");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e '{m}' ]; then echo 'simulated crash' >&2; exit 1; fi\n: > '{m}'\nexec '{w}' \"$@\"\n",
            m = marker.display(),
            w = syncd_tests::worker::worker_bin().display()
        ),
    )
    .expect("write the wrapper");
    syncd_tests::tree::chmod(&wrapper, 0o755);
    let c = Controller::new(&site.config().initial_sync(false)).with_worker(&wrapper);
    let pid = c.start();
    kill(c.worker_pid().expect("worker pid"), Signal::SIGKILL);
    // Backoff 1 + 2 + 4 + 8 s, then the 5th fast death in a row ends supervision.
    let v = c.wait_status(
        "the controller to give up after repeated fast worker deaths",
        Duration::from_secs(45),
        &[&site.daemon],
        // The phase is written before the controller exits: wait for the lock to go too.
        |v| v["phase"] == "gave-up" && v["code"] == 1,
    );
    assert_eq!(v["code"], 1, "gave up: dead with its pidfile left\n{v:#}");
    assert_eq!(v["restarts"], 4, "{v:#}");
    assert_eq!(v["last_exit"], "exited with code 1", "{v:#}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("5 times in a row"),
        "status says why\n{v:#}"
    );
    wait_gone(pid, RESTART_TIMEOUT, "the controller that gave up", &[&c]);
    let log = c.log();
    for wait in ["1.0s", "2.0s", "4.0s", "8.0s"] {
        assert!(
            log.contains(&format!("restarting the worker in {wait}")),
            "backoff doubles: no restart after {wait}\n{log}"
        );
    }
    assert!(
        log.contains("simulated crash"),
        "the worker's stderr is in the log\n{log}"
    );
    let out = c.cmd(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("giving up"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
