//! Fault injection ("Never destroy the backup"): one test per fault an operator meets —
//! processes killed, the target down, busy or full, the kernel's inotify limits hit, the
//! source unmounted, swapped, unreadable or changing under a push — each ending with the
//! target equal to the source, no syncd process left, and any sysctl or mount put back
//! (Drop guards), also when the test fails.
//!
//! Each test records a row: the fault, whether it was survived (the test passed), the
//! seconds from the moment the fault was lifted to the target equal to the source, and the
//! paths the restart's catch-up pushed where a catch-up applies. With `SYNCD_FAULTS_REPORT`
//! set, the row is appended to that file as one JSON line (from a Drop guard, so a failed
//! test writes its "no" row too); unset, nothing is written. `scripts/faults` runs this
//! module and prints the rows as the README's table.
//!
//! Must not: sleep in place of a condition (a fault that lasts a while is held for a fixed
//! time, said in the test's doc), leave a sysctl lowered longer than a worker's start, or
//! leave a mount, a loop device or a process behind.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::{busy, catchup, safety, source};
use syncd_tests::controller::{is_alive, kill, wait_gone};
use syncd_tests::daemon::HOLD_FILE;
use syncd_tests::mount::{LoopFs, Tmpfs};
use syncd_tests::sysctl::watches_in_use;
use syncd_tests::tree::{chmod, snapshot, wait_past_seed, write_file, Kind, SyncCheck};
use syncd_tests::wait;
use syncd_tests::{
    assert_in_sync, sysctl_exclusive, Controller, Diagnose, RsyncDaemon, Site, SysctlOverride,
    TreeWriter, Worker, FANOTIFY_FD,
};
use syncd_worker::status::{CatchUp, CatchUpDecision, Status, WalkOutcome, WalkState};

const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Bursts of thousands of files, pushed again after a restart.
const BURST_TIMEOUT: Duration = Duration::from_secs(90);
/// A worker killed now is restarted after about a second; allow for a loaded machine.
const RESTART_TIMEOUT: Duration = Duration::from_secs(15);

/// One row of the faults table, written on Drop to `$SYNCD_FAULTS_REPORT` (if set).
/// Survived = the test reached [`Row::survived`] and nothing panicked after it.
struct Row {
    order: u32,
    fault: &'static str,
    lifted: Option<Instant>,
    converge_s: Option<f64>,
    catch_up: Option<String>,
    passed: bool,
}

impl Row {
    fn new(order: u32, fault: &'static str) -> Row {
        Row {
            order,
            fault,
            lifted: None,
            converge_s: None,
            catch_up: None,
            passed: false,
        }
    }

    /// The fault ends now: the time to converge is measured from here.
    fn lifted(&mut self) {
        self.lifted = Some(Instant::now());
    }

    /// Wait until the target equals the source (the final check of every test) and note
    /// how long after the fault was lifted that was.
    fn converge(&mut self, check: SyncCheck<'_>) {
        let lifted = self.lifted.expect("Row::lifted before Row::converge");
        check.wait();
        self.converge_s = Some(lifted.elapsed().as_secs_f64());
    }

    /// Note what the restart's catch-up did, from the worker's status in `state`.
    fn catch_up_from(&mut self, state: &Path) {
        self.catch_up = Some(catch_up_summary(finished_catch_up(state).as_ref()));
    }

    fn survived(&mut self) {
        self.passed = true;
    }
}

impl Drop for Row {
    fn drop(&mut self) {
        let Some(path) = std::env::var_os("SYNCD_FAULTS_REPORT") else {
            return;
        };
        let line = serde_json::json!({
            "order": self.order,
            "fault": self.fault,
            "survived": self.passed && !std::thread::panicking(),
            "converge_s": self.converge_s,
            "catch_up": self.catch_up,
        });
        // One write of one line with O_APPEND: rows of parallel tests do not interleave.
        let written = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            // Panicking in Drop during unwinding would abort; report loudly instead.
            eprintln!(
                "FAILED to append the faults row to {}: {e}",
                Path::new(&path).display()
            );
        }
    }
}

/// The first sync's catch-up from the worker's status in `state`, once a walk (if it is
/// one) finished; None if the status never says.
fn finished_catch_up(state: &Path) -> Option<CatchUp> {
    let path = state.join("status.json");
    wait::until("a finished catch-up in the status", SYNC_TIMEOUT, || {
        let c = Status::read(&path)
            .ok()
            .and_then(|s| s.syncs.first()?.catchup.clone());
        match &c {
            Some(c)
                if c.decision == CatchUpDecision::Walk
                    && c.walk.is_none_or(|w| w.state == WalkState::Walking) =>
            {
                Err(format!("{c:?}"))
            }
            Some(_) => Ok(c),
            None => Err("no catch-up in the status".to_string()),
        }
    })
    .ok()
    .flatten()
}

/// What a catch-up did, for the faults table: `N paths, M dirs` a walk found, or that it
/// pushed the whole tree and why (the reason up to its parenthesis).
fn catch_up_summary(c: Option<&CatchUp>) -> String {
    let Some(c) = c else {
        return "no catch-up".to_string();
    };
    match (c.decision, c.walk) {
        (CatchUpDecision::None, _) => "no catch-up".to_string(),
        (CatchUpDecision::Full, _) if c.reason == "initial_sync is set" => {
            "whole tree (initial_sync in the config)".to_string()
        }
        (CatchUpDecision::Full, _) => {
            let reason = c.reason.split(" (").next().unwrap_or(&c.reason).trim();
            format!("whole tree ({reason})")
        }
        (CatchUpDecision::Walk, Some(w)) if w.whole_tree => {
            "whole tree (the top directory changed: only a whole-tree push reconciles it)"
                .to_string()
        }
        (CatchUpDecision::Walk, Some(w)) if w.state == WalkState::Done => {
            format!("{} paths, {} dirs", w.paths, w.dirs)
        }
        (CatchUpDecision::Walk, _) => "walk not finished".to_string(),
    }
}

/// How many regular files `dir` holds (recursively).
fn file_count(dir: &Path) -> usize {
    snapshot(dir)
        .values()
        .filter(|e| matches!(e.kind, Kind::File { .. }))
        .count()
}

/// Wait until the target holds more than `seeded` files (a burst's first push arrived).
fn wait_first_files(dst: &Path, seeded: usize, fixtures: &[&dyn Diagnose]) {
    wait::until_every(
        "a file of the burst in the target",
        SYNC_TIMEOUT,
        wait::SHORT_POLL,
        || file_count(dst) > seeded,
    )
    .unwrap_or_else(|t| wait::fail(t, fixtures));
}

/// The controller's processes are gone after `syncd stop` (none left behind).
fn stop_controller(c: &Controller) {
    c.stop();
    c.wait_no_processes(Duration::from_secs(10));
}

/// Fault 1: a worker killed with SIGKILL while it pushes a 5,000-file burst (written while it
/// dies and is restarted): the controller starts a new one, which replays the saved queue
/// and pushes the whole tree (the controller restarts a crashed worker with its initial
/// sync), bringing everything. Timed from the kill.
#[test]
fn f01_worker_sigkilled_in_a_5000_file_burst() {
    let mut row = Row::new(
        1,
        "kill -9 of the worker in a 5,000-file burst (controller restarts it)",
    );
    let site = Site::new();
    let c = Controller::new(&site.config().initial_sync(false));
    c.start();
    let old = c.worker_pid().expect("worker pid");
    let src = site.src().to_path_buf();
    let mut arrived_at_kill = 0;
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            TreeWriter::new(101).files(&src, &["k0", "k1/a", "k2/b/c"], 5000, 0, 2000);
        });
        wait_first_files(&site.dst(), 0, &[&c, &site.daemon]);
        kill(old, Signal::SIGKILL);
        row.lifted();
        arrived_at_kill = file_count(&site.dst());
        writer.join().expect("the burst writer");
    });
    assert!(
        arrived_at_kill < 5000,
        "the whole burst had arrived before the kill: the test proves nothing"
    );
    wait_gone(old, RESTART_TIMEOUT, "the SIGKILLed worker", &[&c]);
    c.wait_restarted(old, RESTART_TIMEOUT, &[&site.daemon], |_| true);
    row.converge(site.check(&c).within(BURST_TIMEOUT));
    row.catch_up_from(site.state.path());
    stop_controller(&c);
    row.survived();
}

/// Fault 2: `syncd stop` while a burst is being pushed (a slow link: `--bwlimit`) with more of
/// it queued behind, ten files rewritten while stopped, `syncd start`: the saved queue is
/// replayed and the catch-up walk finds exactly the ten (no whole-tree push). Timed from
/// the start.
///
/// The stop finishes the batch in flight and saves the rest. Every file of the burst is
/// written more than the catch-up's slack (2 s) before the stop, so what the walk finds
/// can only be the edits made while stopped: the burst ends with a 2 MiB file, whose
/// batch (at 200 KiB/s) is still in flight after the late part of the burst has been
/// written behind it (once the big file is seen arriving) and the slack has passed.
#[test]
fn f02_stop_mid_burst_changes_while_stopped_then_start_catches_up_only_those() {
    let mut row = Row::new(2, "`syncd stop` mid-burst, changes while stopped, start");
    let site = Site::new();
    // Small batches, one run at a time, a slow link: the burst takes seconds to push.
    // One push at a time: the late part must queue behind the slow push, not go beside it.
    let cfg = site
        .config()
        .initial_sync(false)
        .key("max_batch", "200")
        .key("threads", "1")
        .key("max_in_flight", "1")
        .raw("[sync.rsync]\nextra = [\"--bwlimit=200\"]");
    // The burst goes into directories that exist already and are on the target (a new
    // directory is pushed whole, in one run).
    let dirs = ["b0", "b1/x", "b2/y/z"];
    let edits = TreeWriter::new(102).files(site.src(), &dirs, 10, 100, 1000);
    site.daemon.push_with_rsync(site.src());
    let c = Controller::new(&cfg);
    c.start();
    let mut tw = TreeWriter::new(103);
    tw.files(site.src(), &dirs, 1500, 0, 1000);
    tw.file(&site.src().join("b0/big"), 2 << 20);
    let in_flight = |v: &serde_json::Value| {
        v["worker"]["syncs"][0]["targets"][0]["in_flight"]
            .as_u64()
            .unwrap_or(0)
    };
    let queued = |v: &serde_json::Value| {
        v["worker"]["syncs"][0]["targets"][0]["queue_depth"]
            .as_u64()
            .unwrap_or(0)
    };
    // rsync receives the big file into a temp file `.big.XXXXXX` beside it.
    let receiving = site.dst().join("b0");
    wait::until_every(
        "the big file arriving (.big.* in the target)",
        SYNC_TIMEOUT,
        wait::SHORT_POLL,
        || {
            fs::read_dir(&receiving)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".big."))
        },
    )
    .unwrap_or_else(|t| wait::fail(t, &[&c]));
    // The late part of the burst queues up behind the push in flight.
    for i in 0..300 {
        tw.file(
            &site
                .src()
                .join(dirs[i % dirs.len()])
                .join(format!("late{i:03}")),
            500,
        );
    }
    c.wait_status(
        "the late part of the burst queued behind the push in flight",
        SYNC_TIMEOUT,
        &[&site.daemon],
        |v| in_flight(v) > 0 && queued(v) >= 300,
    );
    // Every file of the burst is older than what the stop will vouch for (its ctime
    // before the watermark minus the slack), so the catch-up can only find the edits...
    wait_past_seed(site.src());
    // ...while the burst is still being pushed, and some of it is queued.
    c.wait_status(
        "the burst still being pushed",
        Duration::from_secs(1),
        &[&site.daemon],
        |v| in_flight(v) > 0 && queued(v) > 0,
    );
    c.stop();
    let total = file_count(site.src());
    assert!(
        file_count(&site.dst()) < total,
        "all {total} files arrived before the stop: the test proves nothing\n{}",
        c.diagnose()
    );
    // While stopped: ten files rewritten in place (their directories do not change).
    for (i, p) in edits.iter().enumerate() {
        write_file(
            p,
            format!("rewritten {i} while syncd was stopped").as_bytes(),
        );
    }
    let before = c.log().len();
    row.lifted();
    c.start();
    row.converge(site.check(&c).within(BURST_TIMEOUT));
    row.catch_up_from(site.state.path());
    let log = c.log()[before..].to_string();
    let caught = finished_catch_up(site.state.path());
    let walk = caught.as_ref().and_then(|c| c.walk);
    assert_eq!(
        walk.map(|w| (w.paths, w.dirs, w.whole_tree)),
        Some((10, 0, false)),
        "the catch-up should find the ten rewritten files and nothing else: {caught:?}\n{log}"
    );
    assert!(
        caught.as_ref().is_some_and(|c| c.replayed > 0),
        "the saved queue replayed: {caught:?}\n{log}"
    );
    stop_controller(&c);
    row.survived();
}

/// Fault 3: the rsync daemon stopped while a burst is being pushed, and started again on the
/// same port. Down for at least 3 s (the 20 s shortened: the retries run every
/// second at most here) and until the worker has failed pushes. Timed from the restart.
#[test]
fn f03_rsync_daemon_down_mid_burst() {
    let mut row = Row::new(
        3,
        "the rsync daemon stopped mid-burst (3 s), then restarted",
    );
    let mut site = Site::new();
    let mut w = Worker::start(&site.config());
    let src = site.src().to_path_buf();
    let daemon_down = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Half the burst, then (once the daemon is down) the other half: the daemon goes
        // away in the middle of it, whatever the machine's speed.
        let writer = s.spawn(|| {
            let mut tw = TreeWriter::new(104);
            tw.files(&src, &["d0", "d1/a", "d2/b"], 1500, 0, 2000);
            // Written either way: the main thread's own waits report a stuck daemon.
            let _ = wait::until_every("the daemon down", SYNC_TIMEOUT, wait::SHORT_POLL, || {
                daemon_down.load(Ordering::Acquire)
            });
            tw.files(&src.join("late"), &["d0", "d1/a", "d2/b"], 1500, 0, 2000);
        });
        wait_first_files(&site.dst(), 0, &[&w, &site.daemon]);
        let down = Instant::now();
        site.daemon.stop();
        daemon_down.store(true, Ordering::Release);
        writer.join().expect("the burst writer");
        w.wait_status(
            "failed pushes while the daemon is down",
            SYNC_TIMEOUT,
            &[],
            |s| {
                let t = &s.syncs[0].targets[0];
                t.consecutive_failures >= 2 && t.last_error.is_some()
            },
        );
        // The fault's length, not a wait for a condition.
        std::thread::sleep(Duration::from_secs(3).saturating_sub(down.elapsed()));
    });
    assert!(
        file_count(&site.dst()) < file_count(site.src()),
        "the burst had arrived before the daemon went down: the test proves nothing"
    );
    site.daemon.restart();
    row.lifted();
    row.converge(site.check(&w).within(BURST_TIMEOUT));
    w.wait_status(
        "consecutive_failures back to 0",
        SYNC_TIMEOUT,
        &[&site.daemon],
        |s| s.syncs[0].targets[0].consecutive_failures == 0,
    );
    w.stop();
    row.survived();
}

/// Fault 4: a module with `max connections = 1` whose only slot another client holds: changes
/// made meanwhile arrive soon after it is freed, with the default retry settings (1 s
/// doubling to 5 min), not after a doubled backoff. Timed from the release.
#[test]
fn f04_busy_daemon_slot_held_then_freed() {
    let mut row = Row::new(4, "`max connections = 1` with the slot held (8 s)");
    let site = Site::with_daemon(RsyncDaemon::start_with_module_settings(busy::LIMIT));
    busy::seed(&site);
    let mut w = Worker::start(&site.config().retry(None));
    // A first push proves the worker has probed the target and pushes to it.
    busy::append(&site.src().join("z"), "first\n");
    site.check(&w).within(Duration::from_secs(10)).wait();

    let mut holder = site.daemon.hold_slot();
    let not_hold = |p: &Path| p == Path::new(HOLD_FILE);
    let refused = site.daemon.log_count(busy::REFUSED);
    busy::new_dirs_and_changed_files(site.src(), 0);
    site.daemon
        .wait_log(busy::REFUSED, refused, Duration::from_secs(10), &[&w]);
    let first_refusal = Instant::now();
    // The push waits inside (within its patience) and the status says so meanwhile.
    w.wait_status(
        "the push in flight shown waiting for a busy daemon",
        Duration::from_secs(5),
        &[&site.daemon],
        |s| {
            s.syncs[0].targets[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("waiting for a busy daemon"))
        },
    );
    // The slot stays taken for a while: long enough that a doubling backoff (tries 1, 3,
    // 7, 15 s after the first refusal) is 7 s from its next try when the slot is freed,
    // short enough that the worker is still within one push's patience (15 s).
    let hold = Duration::from_secs(8);
    std::thread::sleep(hold.saturating_sub(first_refusal.elapsed()));
    assert!(
        !SyncCheck::new(site.src(), &site.dst())
            .ignore(not_hold)
            .differences(1)
            .is_empty(),
        "the target took the changes while its only slot was held: the test proves nothing"
    );
    holder.release();
    row.lifted();
    site.check(&w)
        .ignore(not_hold)
        .within(Duration::from_secs(5))
        .wait();
    // The holder's file is the harness's, not the source's: without it the trees are equal.
    fs::remove_file(site.dst().join(HOLD_FILE)).expect("remove the slot holder's file");
    row.converge(site.check(&w).within(SYNC_TIMEOUT));
    w.wait_status(
        "last_error cleared once the push got through",
        Duration::from_secs(5),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].last_error.is_none(),
    );
    w.stop();
    row.survived();
}

/// Fault 5: a real inotify queue overflow: with `max_queued_events` lowered to 1 for the
/// worker's inotify instance (put back as soon as it has one), a fast burst overflows the
/// queue; the worker counts it (status `overflows`) and rescans, losing nothing. Timed
/// from the end of the burst.
#[test]
fn f05_inotify_queue_overflow_is_counted_and_nothing_is_lost() {
    let row = Row::new(
        5,
        "inotify queue overflow (max_queued_events = 1 at the worker's start)",
    );
    overflow_converges(row, "inotify", 14, |site| {
        // No other worker may call inotify_init while the limit is low.
        let guard = sysctl_exclusive();
        let mut limit = SysctlOverride::set(&guard, "max_queued_events", 1);
        // The limit is read at inotify_init: put it back as soon as the worker has its
        // inotify instance, so other processes on the machine barely see it.
        Worker::start_exclusive(&site.config().watcher("inotify"), &guard, || {
            limit.restore()
        })
    });
}

/// One queue overflow: the worker `start` makes (its queue limited to one event) gets a
/// 2,000-file burst; the target converges, the status counts the overflow and the log
/// says which queue.
fn overflow_converges(mut row: Row, watcher: &str, seed: u64, start: impl FnOnce(&Site) -> Worker) {
    let site = Site::new();
    let mut w = start(&site);
    w.hold_shared();
    TreeWriter::new(seed).files(site.src(), &["o0", "o1", "o2/deep"], 2000, 0, 512);
    row.lifted();
    row.converge(site.check(&w).within(Duration::from_secs(60)));
    let s = w.wait_status(
        "overflows >= 1 in status",
        Duration::from_secs(10),
        &[&site.daemon],
        |s| s.syncs[0].overflows >= 1,
    );
    assert!(s.syncs[0].overflows >= 1);
    let said = format!("{watcher} queue overflowed");
    assert!(w.log().contains(&said), "{said:?} not in\n{}", w.log());
    w.stop();
    row.survived();
}

/// Fault 17: the fanotify queue overflows (`fs.fanotify.max_queued_events = 1` when the
/// worker makes its group): `FAN_Q_OVERFLOW` gets inotify's answer, the tree pushed
/// whole, the overflow counted, nothing lost.
#[test]
fn f17_fanotify_queue_overflow_is_counted_and_nothing_is_lost() {
    let row = Row::new(
        17,
        "fanotify queue overflow (max_queued_events = 1 at the worker's start)",
    );
    overflow_converges(row, "fanotify", 17, |site| {
        let guard = sysctl_exclusive();
        let mut limit = SysctlOverride::set_fanotify(&guard, "max_queued_events", 1);
        Worker::start_exclusive_on(
            &site.config().watcher("fanotify"),
            &guard,
            FANOTIFY_FD,
            || limit.restore(),
        )
    });
}

/// Fault 6: out of inotify watches (`ENOSPC`): with `max_user_watches` just above what the
/// machine uses while the worker starts (put back once its watches are in place), it
/// cannot watch the whole tree. It names the sysctl, the value and the command, reports
/// the unwatched directories (`degraded`) and keeps syncing what it watches. The limit
/// raised, the operator's `syncd sync --full` (SIGUSR2) brings what changed in the
/// unwatched part (the worker itself would rewatch and push the whole tree within its
/// 60 s rescan). Timed from the limit put back.
#[test]
fn f06_out_of_watches_names_the_sysctl_and_converges_after_a_full_sync() {
    let mut row = Row::new(
        6,
        "watch limit hit (max_user_watches lowered at the worker's start)",
    );
    let site = Site::new();
    for i in 0..20 {
        fs::create_dir_all(site.src().join(format!("d{i:02}/sub"))).expect("mkdir");
    }
    let mut w = {
        let guard = sysctl_exclusive();
        let mut limit = SysctlOverride::set(&guard, "max_user_watches", watches_in_use() + 3);
        let w = Worker::start_exclusive(&site.config().watcher("inotify"), &guard, || {});
        limit.restore();
        row.lifted();
        w
    };
    w.hold_shared();
    let s = w.wait_status(
        "degraded with unwatched directories",
        Duration::from_secs(10),
        &[&site.daemon],
        |s| s.syncs[0].unwatched_dirs > 0 && format!("{:?}", s.state) == "Degraded",
    );
    assert!(s.syncs[0].watched_dirs >= 1, "the root must be watched");
    let log = w.log();
    assert!(
        log.contains("fs.inotify.max_user_watches") && log.contains("sysctl -w"),
        "the error must name the sysctl and the command:\n{log}"
    );
    let named = log
        .lines()
        .find(|l| l.contains("out of inotify watches"))
        .unwrap_or_default();
    assert!(
        named.contains("max_user_watches = ")
            && named.contains("unwatched")
            && named.contains("fs.inotify.max_user_watches="),
        "the error must name the limit, the unwatched count and the value to set: {named}"
    );
    // The watched root still syncs.
    fs::write(site.src().join("top.txt"), "still synced").expect("write top.txt");
    let dst = site.dst();
    wait::must(
        "top.txt in the target",
        Duration::from_secs(20),
        &[&w],
        || fs::read(dst.join("top.txt")).ok().as_deref() == Some(b"still synced".as_slice()),
    );
    // Changes everywhere, the unwatched directories too; then `syncd sync --full`.
    for i in 0..20 {
        write_file(
            &site.src().join(format!("d{i:02}/sub/f")),
            format!("{i}").as_bytes(),
        );
    }
    w.signal(Signal::SIGUSR2);
    row.converge(site.check(&w).within(SYNC_TIMEOUT));
    w.stop();
    row.survived();
}

/// Fault 7: the target's disk full: the module is a 8 MiB tmpfs, 7 MiB of it taken by a file
/// of the target's own. 4 MiB of new files cannot be written: the push fails and is
/// retried, nothing is deleted; the target-only file removed (space freed), the retry
/// brings everything. Timed from the space freed.
#[test]
fn f07_target_disk_full_then_space_freed() {
    let mut row = Row::new(7, "the target's disk full (8 MiB tmpfs), then space freed");
    let site = Site::new();
    // Declared after the site: unmounted before the daemon's tempdir is removed.
    let _disk = Tmpfs::mount(&site.dst(), "8m");
    TreeWriter::new(105).files(site.src(), &["old"], 20, 100, 2000);
    site.daemon.push_with_rsync(site.src());
    let ballast = site.dst().join("ballast");
    write_file(&ballast, &vec![0u8; 7 << 20]);
    let mut w = Worker::start(&site.config());
    TreeWriter::new(106).files(site.src(), &["new"], 4, 1 << 20, 1 << 20);
    let s = w.wait_status(
        "the push failing and retried on a full disk",
        SYNC_TIMEOUT,
        &[&site.daemon],
        |s| {
            let t = &s.syncs[0].targets[0];
            t.pushes_failed >= 2 && t.consecutive_failures >= 2
        },
    );
    let error = s.syncs[0].targets[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("No space left on device"),
        "the error should say the disk is full: {error}\n{}",
        site.daemon.diagnose()
    );
    let kept = SyncCheck::new(site.src(), &site.dst())
        .ignore(|p| p.starts_with("new") || p == Path::new("ballast"))
        .differences(5);
    assert!(
        kept.is_empty(),
        "the target lost files while its disk was full: {kept:?}\n{}",
        w.log()
    );
    fs::remove_file(&ballast).expect("free the space");
    row.lifted();
    row.converge(site.check(&w).within(SYNC_TIMEOUT));
    w.stop();
    row.survived();
}

/// Fault 8: a source directory deleted and created again at once
/// (`rm -r d && mkdir d && echo x > d/f`): the target's d ends up as the new one (its old
/// files gone). Timed from the last of the three commands.
#[test]
fn f08_source_subdirectory_deleted_and_recreated_at_once() {
    let mut row = Row::new(8, "a source subdirectory deleted and recreated at once");
    let site = Site::new();
    TreeWriter::new(107).files(site.src(), &["d", "d/sub", "other"], 30, 10, 2000);
    site.daemon.push_with_rsync(site.src());
    let mut w = Worker::start(&site.config());
    let d = site.src().join("d");
    fs::remove_dir_all(&d).expect("rm -r d");
    fs::create_dir(&d).expect("mkdir d");
    write_file(&d.join("f"), b"x\n");
    row.lifted();
    row.converge(site.check(&w).within(SYNC_TIMEOUT));
    w.stop();
    row.survived();
}

/// Fault 9: the source root moved away and an empty directory put in its place (a deploy
/// swap): nothing is pushed from either; the operator fills the new one and accepts it
/// (SIGUSR2, `syncd sync --full`), the deletion guard holds that push back (it would
/// delete most of the target), and `--force` completes it. Timed from the forced push.
#[test]
fn f09_source_root_moved_away_and_replaced_is_held_until_accepted() {
    let mut row = Row::new(
        9,
        "the source root moved away and replaced (accepted with sync --full --force)",
    );
    let site = Site::new();
    let data = source::data_dir(&site);
    source::seed(&data);
    let mut w = source::start_synced(&site, &data);
    let before = snapshot(&site.dst());

    // The deploy swap.
    let old = site.src().join("data.old");
    fs::rename(&data, &old).expect("mv data data.old");
    fs::create_dir(&data).expect("mkdir data");
    let st = w.wait_status(
        "the swap reported",
        source::LOST_TIMEOUT,
        &[&site.daemon],
        source::lost,
    );
    let why = st.syncs[0].source_problem.clone().unwrap_or_default();
    assert!(
        why.contains("moved away"),
        "reason should say moved away: {why}"
    );
    // Edits in the old tree are not the source's; the new, empty one is not pushed.
    write_file(
        &old.join("keep/edited-in-old.txt"),
        b"not the source any more",
    );
    write_file(&data.join("new.txt"), b"in the new directory");
    source::poke(&mut w);
    assert_eq!(
        snapshot(&site.dst()),
        before,
        "the target changed after the source was swapped\n{}",
        w.log()
    );

    // The operator fills the new directory and accepts it (`syncd sync --full`). It
    // lacks most of what the target has: the deletion guard holds that push back too.
    TreeWriter::new(82).files(&data, &["keep", "fresh"], 10, 10, 2000);
    w.signal(Signal::SIGUSR2);
    w.wait_status(
        "the new source accepted",
        source::LOST_TIMEOUT,
        &[&site.daemon],
        source::back,
    );
    w.wait_status("the guard tripped", SYNC_TIMEOUT, &[&site.daemon], |s| {
        s.syncs[0].targets[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("deletion guard"))
    });
    assert_eq!(
        snapshot(&site.dst()),
        before,
        "the guarded push changed the target"
    );
    // Checked: this is the new source (`syncd sync --full --force`).
    syncd_worker::force::request(site.state.path()).expect("request --force");
    w.signal(Signal::SIGUSR2);
    row.lifted();
    row.converge(
        SyncCheck::new(&data, &site.dst())
            .with(&w)
            .with(&site.daemon)
            .within(SYNC_TIMEOUT),
    );
    write_file(&data.join("fresh/live.txt"), b"watched live");
    assert_in_sync(&data, &site.dst(), SYNC_TIMEOUT, &[&w]);
    w.stop();
    row.survived();
}

/// Fault 10: the source's file system unmounted (its empty mount point left behind): the
/// target stays as it was, status says degraded; changes made to the file system
/// elsewhere meanwhile arrive after the remount by a catch-up, not a whole-tree push (a
/// target-only sentinel survives). Timed from the remount.
#[test]
fn f10_unmounted_source_keeps_the_target_and_resumes_after_remount() {
    let mut row = Row::new(10, "the source unmounted, then mounted again");
    let site = Site::new();
    let data = source::data_dir(&site);
    // Declared after the site: unmounted before its tempdirs are removed.
    let mut disk = LoopFs::new(32);
    disk.mount(&data);
    source::seed(&data);
    let mut w = source::start_synced(&site, &data);
    write_file(&site.dst().join(source::SENTINEL), b"only on the target");
    // Everything seeded is older than what the worker will vouch for at the loss.
    wait_past_seed(&data);
    // No rsync left in the file system (a push in flight keeps it busy).
    w.wait_status("the worker idle", SYNC_TIMEOUT, &[&site.daemon], |s| {
        s.state == syncd_worker::status::State::Watching
    });
    let before = snapshot(&site.dst());

    disk.umount(&data);
    let st = w.wait_status(
        "the source reported lost",
        source::LOST_TIMEOUT,
        &[&site.daemon],
        source::lost,
    );
    let why = st.syncs[0].source_problem.clone().unwrap_or_default();
    assert!(
        why.contains("unmounted"),
        "reason should say unmounted: {why}"
    );
    // The bare mount point is empty; a push now would empty the target.
    source::poke(&mut w);
    assert_eq!(
        snapshot(&site.dst()),
        before,
        "the target changed while the source was unmounted\n{}",
        w.log()
    );

    // Changes made to the file system while syncd could not see it (mounted elsewhere).
    let elsewhere = site.src().join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir elsewhere");
    disk.mount(&elsewhere);
    write_file(
        &elsewhere.join("work/while-away.txt"),
        b"written while unmounted here",
    );
    fs::remove_file(elsewhere.join("work/sub/f00005")).expect("rm work/sub/f00005");
    disk.umount(&elsewhere);

    disk.mount(&data);
    row.lifted();
    w.wait_status(
        "the source back",
        source::LOST_TIMEOUT,
        &[&site.daemon],
        source::back,
    );
    row.converge(
        SyncCheck::new(&data, &site.dst())
            .ignore(|p| p == Path::new(source::SENTINEL))
            .with(&w)
            .with(&site.daemon)
            .within(SYNC_TIMEOUT),
    );
    assert!(
        site.dst().join(source::SENTINEL).exists(),
        "the catch-up after the remount pushed the whole tree (the sentinel is gone)\n{}",
        w.log()
    );
    row.catch_up_from(site.state.path());
    // Live again.
    write_file(&data.join("work/after.txt"), b"after the remount");
    SyncCheck::new(&data, &site.dst())
        .ignore(|p| p == Path::new(source::SENTINEL))
        .with(&w)
        .within(SYNC_TIMEOUT)
        .wait();
    // The sentinel is the test's own: without it the trees are equal.
    fs::remove_file(site.dst().join(source::SENTINEL)).expect("rm the sentinel");
    assert_in_sync(&data, &site.dst(), SYNC_TIMEOUT, &[&w]);
    w.stop();
    row.survived();
}

/// Fault 11: a file appended to every 3 ms for 4 s by a writer that keeps it open (a log): the
/// target ends equal to the source once the writer stops. Timed from the writer's close.
#[test]
fn f11_continuously_appended_file_ends_equal_once_the_writer_stops() {
    let mut row = Row::new(11, "a file appended every 3 ms for 4 s");
    let site = Site::new();
    let log_file = site.src().join("app/app.log");
    write_file(&log_file, b"start\n");
    write_file(&site.src().join("app/other"), b"other\n");
    site.daemon.push_with_rsync(site.src());
    let mut w = Worker::start(&site.config());
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&log_file)
        .expect("open app.log for appending");
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(4) {
        writeln!(f, "line {n} at {:?}", start.elapsed()).expect("append to app.log");
        n += 1;
        // The writer's pace (the fault itself), not a wait for a condition.
        std::thread::sleep(Duration::from_millis(3));
    }
    drop(f);
    row.lifted();
    row.converge(site.check(&w).within(SYNC_TIMEOUT));
    assert!(n > 100, "the writer appended only {n} lines");
    w.stop();
    row.survived();
}

/// Fault 12: a new directory replaced by a file before its push (`mkdir d; echo x > d/f; rm -r
/// d; echo data > d`, within one batch): the target gets the file. Timed from the last
/// command.
#[test]
fn f12_a_new_dir_replaced_by_a_file_before_its_push_arrives_as_the_file() {
    let mut row = Row::new(12, "a directory replaced by a file");
    // The queue holds a `Tree` for `d` (created, then deleted and created again as a
    // file: a pending tree stays a tree). A delay longer than these few system calls
    // keeps them in one batch.
    let site = Site::new();
    let mut w = Worker::start(&site.config().delay(Some("500ms")));
    let d = site.src().join("d");
    fs::create_dir(&d).expect("mkdir d");
    write_file(&d.join("f"), b"x");
    fs::remove_dir_all(&d).expect("rm -r d");
    write_file(&d, b"data");
    row.lifted();
    row.converge(site.check(&w).within(SYNC_TIMEOUT));
    assert_eq!(
        fs::read(site.dst().join("d")).expect("d on the target"),
        b"data"
    );
    w.stop();
    row.survived();
}

/// Fault 13: controller and worker killed with SIGKILL at once while the worker keeps
/// rewriting its fail log (the daemon is down, so every push fails, and a writer keeps
/// adding files); then the daemon back and `syncd start`: nothing is lost. Timed from
/// the start.
///
/// The kill is aimed at a rewrite in progress: as soon as the fail log's temp file
/// (`.<name>.<hex>.tmp`, there from its creation to its rename) is seen, or after 5 s of
/// looking (the window is short on a fast disk); the test says on stderr which it was.
#[test]
fn f13_both_processes_sigkilled_while_the_fail_log_is_written() {
    let mut row = Row::new(
        13,
        "kill -9 of controller and worker while the fail log is written",
    );
    let mut site = Site::new();
    let c = Controller::new(&site.config().initial_sync(false));
    c.start();
    write_file(&site.src().join("before.txt"), b"before");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    site.daemon.stop();
    let faillog = site.state.path().join("faillog");
    let src = site.src().to_path_buf();
    let stop = AtomicBool::new(false);
    let (ctl, worker) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut tw = TreeWriter::new(108);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                tw.file(&src.join(format!("w{}/f{i:05}", i % 7)), 300);
                i += 1;
                if i % 50 == 0 {
                    // A steady stream, not one burst: the fail log is rewritten again
                    // and again while it lasts.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        c.wait_status(
            "failed pushes saved in the fail log",
            SYNC_TIMEOUT,
            &[],
            |v| {
                v["worker"]["syncs"][0]["targets"][0]["consecutive_failures"]
                    .as_u64()
                    .is_some_and(|n| n >= 2)
                    && fs::read_dir(&faillog)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
            },
        );
        let ctl = c.controller_pid().expect("controller pid");
        let worker = c.worker_pid().expect("worker pid");
        let mid_write = wait::until_every(
            "a fail-log rewrite in progress",
            Duration::from_secs(5),
            wait::SPIN,
            || {
                fs::read_dir(&faillog)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            },
        )
        .is_ok();
        kill(worker, Signal::SIGKILL);
        kill(ctl, Signal::SIGKILL);
        eprintln!(
            "kill -9 {}",
            if mid_write {
                "with a fail-log rewrite in progress (its temp file seen)"
            } else {
                "after 5 s without catching a fail-log rewrite in progress"
            }
        );
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("the writer");
        (ctl, worker)
    });
    for pid in [ctl, worker] {
        wait_gone(pid, RESTART_TIMEOUT, "a SIGKILLed syncd process", &[&c]);
    }
    c.wait_no_processes(Duration::from_secs(10));
    let left: Vec<String> = fs::read_dir(&faillog)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    eprintln!("the fail-log directory after the kill: {left:?}");
    let state_temps = |dir: &Path| -> Vec<String> {
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
            .collect()
    };
    eprintln!(
        "temp files in the state directory after the kill: {:?}",
        state_temps(site.state.path())
    );
    site.daemon.restart();
    row.lifted();
    c.start();
    row.converge(site.check(&c).within(BURST_TIMEOUT));
    row.catch_up_from(site.state.path());
    let after: Vec<String> = fs::read_dir(&faillog)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let temps: Vec<&String> = after.iter().filter(|n| n.ends_with(".tmp")).collect();
    assert!(
        temps.is_empty(),
        "the temp file of the interrupted fail-log write is still there after the restart: \
         {temps:?}\n{}",
        c.diagnose()
    );
    let temps = state_temps(site.state.path());
    assert!(
        temps.is_empty(),
        "temp files of interrupted writes left in the state directory after the restart: \
         {temps:?}\n{}",
        c.diagnose()
    );
    assert!(!is_alive(ctl) && !is_alive(worker));
    stop_controller(&c);
    row.survived();
}

/// Fault 14: a worker killed with SIGKILL while idle, ten files rewritten while nothing runs,
/// then a start: the running checkpoint limits the catch-up to the ten (no whole-tree
/// push: a target-only sentinel survives). Timed from the start.
#[test]
fn f14_after_sigkill_while_idle_the_checkpoint_limits_the_catch_up_to_what_changed() {
    let mut row = Row::new(14, "kill -9 while idle, ten changes, start");
    let site = &Site::new();
    let files = catchup::seed(site);
    let src = site.src();
    let mut w = Worker::start(&site.config());
    // Some pushes by this worker.
    for i in 0..3 {
        write_file(&src.join(format!("mod/pushed-{i}.txt")), b"pushed live");
    }
    SyncCheck::new(src, &site.dst())
        .ignore(|p| p == Path::new(catchup::SENTINEL))
        .with(&w)
        .with(&site.daemon)
        .within(SYNC_TIMEOUT)
        .wait();
    catchup::wait_first_push(&mut w, site);

    // Idle: wait for a checkpoint whose T is past every ctime in the tree (it moves once
    // the pushes are done and the watcher is SLACK past them; written every 5 s).
    catchup::wait_checkpoint_past_the_tree(site, &|| w.log());
    w.kill();
    assert_eq!(
        catchup::marker(site)["state"],
        "running",
        "killed: no clean record"
    );

    // Ten files rewritten in place while nothing watches (their directories unchanged).
    let changed: Vec<&PathBuf> = files.iter().step_by(7).take(10).collect();
    assert_eq!(changed.len(), 10);
    for (i, p) in changed.iter().enumerate() {
        write_file(
            p,
            format!("changed {i} while the worker was dead").as_bytes(),
        );
    }

    row.lifted();
    let mut w = Worker::start(&site.config());
    row.converge(
        SyncCheck::new(src, &site.dst())
            .ignore(|p| p == Path::new(catchup::SENTINEL))
            .with(&w)
            .with(&site.daemon)
            .within(SYNC_TIMEOUT),
    );
    catchup::wait_first_push(&mut w, site);
    let log = w.log();
    row.catch_up_from(site.state.path());
    let (_, walk) = catchup::walked(&mut w, site);
    assert_eq!(
        (walk.paths, walk.dirs, walk.whole_tree),
        (10, 0, false),
        "expected the walk to find exactly the ten changes: {walk:?}\n{log}"
    );
    let t = &w.status().expect("status").syncs[0].targets[0];
    assert_eq!(
        (t.pushes_ok, t.full_syncs),
        (1, 0),
        "expected one push of the ten paths and no whole-tree push: {t:?}\n{log}"
    );
    assert!(
        site.dst().join(catchup::SENTINEL).exists(),
        "a whole-tree push ran (the target-only file is gone):\n{log}"
    );
    // The sentinel is the test's own: without it the trees are equal.
    fs::remove_file(site.dst().join(catchup::SENTINEL)).expect("rm the sentinel");
    assert_in_sync(src, &site.dst(), SYNC_TIMEOUT, &[&w]);
    w.stop();
    row.survived();
}

/// Fault 15: a source directory the worker cannot read (run without CAP_DAC_OVERRIDE and
/// CAP_DAC_READ_SEARCH, like root_squash NFS): a whole-tree push keeps its target copy
/// and says why; readable again, the retry completes the push. Timed from the chmod back.
#[test]
fn f15_a_source_dir_the_worker_cannot_read_keeps_its_target_copy() {
    let mut row = Row::new(
        15,
        "a source directory unreadable to syncd, then readable again",
    );
    let site = Site::new();
    write_file(
        &site.src().join("locked/secret"),
        b"only copy left on the backup",
    );
    write_file(&site.src().join("locked/sub/deep"), b"deep");
    write_file(&site.src().join("keep.txt"), b"keep");
    site.daemon.push_with_rsync(site.src());
    let mut w = Worker::start_under(&site.config(), safety::WITHOUT_DAC_CAPS);

    // The directory becomes unreadable for the worker (EACCES, as with root_squash NFS).
    chmod(&site.src().join("locked"), 0o000);
    // Behind syncd's back: only a whole-tree push deletes this (rsync deletes it before
    // it meets the read error or after the retry; either is right).
    write_file(&site.dst().join("junk"), b"target only");
    w.signal(Signal::SIGUSR2);
    let s = w.wait_status(
        "the whole-tree push to fail on the unreadable directory",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| {
            s.syncs[0].targets[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("locked"))
        },
    );
    let error = s.syncs[0].targets[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("deleted nothing on the target after that error")
            && error.contains("Permission denied"),
        "the error says why nothing was deleted: {error}"
    );
    for kept in ["locked/secret", "locked/sub/deep", "keep.txt"] {
        assert!(
            site.dst().join(kept).is_file(),
            "{kept} deleted on the target after a read error\n{}",
            w.log()
        );
    }
    assert!(w.log().contains("locked"), "{}", w.log());

    // Readable again: the retry completes the push.
    let before = w.status().expect("status").syncs[0].targets[0].full_syncs;
    chmod(&site.src().join("locked"), 0o755);
    row.lifted();
    w.wait_status(
        "the retried whole-tree push to succeed",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].full_syncs > before,
    );
    row.converge(site.check(&w).within(Duration::from_secs(20)));
    assert!(!site.dst().join("junk").exists());
    w.stop();
    row.survived();
}

/// Fault 16: the deletion guard: a whole-tree push that would delete 90 % of the target pushes
/// nothing, names the count and `--force`; forced (`syncd sync --full --force`), it
/// completes. A push deleting a little goes ahead. Timed from the forced push.
#[test]
fn f16_whole_tree_push_deleting_most_of_the_target_stops_until_forced() {
    let mut row = Row::new(
        16,
        "deletion guard: a full push deleting 90 % of the target, then --force",
    );
    let count_files = |dir: &Path| {
        fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("ls {}: {e}", dir.display()))
            .count()
    };
    let site = Site::new();
    TreeWriter::new(91).files(site.src(), &["d"], 20, 10, 500);
    // The target holds the source and two stray files: a small deletion.
    site.daemon.push_with_rsync(site.src());
    write_file(&site.dst().join("d/stray1"), b"x");
    write_file(&site.dst().join("d/stray2"), b"x");
    let cfg = site.config().initial_sync(true);
    let mut w = Worker::start(&cfg);
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    w.wait_log("deleting 2 entries on the target", SYNC_TIMEOUT);

    // 180 entries on the target that the source lacks: deleting them is 90 % of it.
    let extra = site.dst().join("old");
    for i in 0..180 {
        write_file(&extra.join(format!("e{i:03}")), b"only on the target");
    }
    write_file(&site.src().join("d/changed-meanwhile"), b"new");
    w.signal(Signal::SIGUSR2);
    let st = w.wait_status("the guard tripped", SYNC_TIMEOUT, &[&site.daemon], |s| {
        s.syncs[0].targets[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("deletion guard"))
    });
    let why = st.syncs[0].targets[0]
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        why.contains("would delete 181 entries") && why.contains("--force"),
        "the reason names the count and the way out: {why}"
    );
    assert_eq!(
        count_files(&extra),
        180,
        "the guarded push deleted files\n{}",
        w.log()
    );
    // Nothing was pushed: the source may be the wrong one.
    assert!(!site.dst().join("d/changed-meanwhile").exists());

    // The operator checked: force it.
    syncd_worker::force::request(site.state.path()).expect("request --force");
    w.signal(Signal::SIGUSR2);
    row.lifted();
    row.converge(site.check(&w).within(SYNC_TIMEOUT));
    w.wait_status("no failure left", SYNC_TIMEOUT, &[], |s| {
        s.syncs[0].targets[0].consecutive_failures == 0
    });
    w.stop();
    row.survived();
}

#[test]
fn catch_up_summaries_for_the_faults_table() {
    let walk = |state, paths, dirs, whole_tree| WalkOutcome {
        state,
        entries: 132,
        paths,
        dirs,
        whole_tree,
    };
    let c = |decision, reason: &str, walk| CatchUp {
        decision,
        reason: reason.to_string(),
        walk,
        replayed: 0,
    };
    use CatchUpDecision::{Full, None as Nothing, Walk};
    let cases = [
        (
            Some(c(
                Walk,
                "changed since t",
                Some(walk(WalkState::Done, 10, 0, false)),
            )),
            "10 paths, 0 dirs",
        ),
        (
            Some(c(Full, "no clean-stop record (it was killed)", None)),
            "whole tree (no clean-stop record)",
        ),
        (
            Some(c(Full, "initial_sync is set", None)),
            "whole tree (initial_sync in the config)",
        ),
        (
            Some(c(
                Walk,
                "changed since t",
                Some(walk(WalkState::Done, 0, 0, true)),
            )),
            "whole tree (the top directory changed: only a whole-tree push reconciles it)",
        ),
        (
            Some(c(
                Walk,
                "changed since t",
                Some(walk(WalkState::Interrupted, 1, 0, false)),
            )),
            "walk not finished",
        ),
        (Some(c(Nothing, "", None)), "no catch-up"),
        (None, "no catch-up"),
    ];
    for (outcome, want) in cases {
        assert_eq!(catch_up_summary(outcome.as_ref()), want, "{outcome:?}");
    }
}
