//! Targets that fail: a daemon that is down for a while is caught up when it is back; one
//! target down does not hold up another; a worker stopped while a target is down loses
//! nothing across a restart (the fail log replays).

use std::fs;
use std::time::Duration;

use syncd_tests::tree::{chmod, source_dir, wait_past_seed, write_file};
use syncd_worker::status::CatchUpDecision;

use crate::catchup::walked;
use syncd_tests::{assert_in_sync, RsyncDaemon, Site, SyncCheck, TreeWriter, Worker};

/// Changes of every kind, made while a target is down.
fn change_while_down(src: &std::path::Path, seed: u64) {
    let mut tw = TreeWriter::new(seed);
    tw.files(src, &["down/new", "base"], 100, 0, 10_000);
    for i in 0..10 {
        let p = src.join(format!("base/old{i:02}"));
        fs::remove_file(&p).unwrap_or_else(|e| panic!("rm {}: {e}", p.display()));
    }
    chmod(&src.join("base/old10"), 0o600);
    fs::rename(src.join("base/old11"), src.join("base/renamed11")).expect("rename");
}

fn seed_base(src: &std::path::Path) {
    for i in 0..20 {
        write_file(
            &src.join(format!("base/old{i:02}")),
            format!("old {i}").as_bytes(),
        );
        chmod(&src.join(format!("base/old{i:02}")), 0o644);
    }
}

#[test]
fn target_down_then_up_is_caught_up_and_failures_show_in_status() {
    let mut site = Site::new();
    seed_base(site.src());
    site.daemon.push_with_rsync(site.src());
    let mut w = Worker::start(&site.config());
    // One push first: the target is probed and known, so what fails next is a push (a
    // failed first probe counts in consecutive_failures, not in pushes_failed).
    write_file(&site.src().join("before-down.txt"), b"up");
    w.wait_status(
        "a first push",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].pushes_ok > 0,
    );

    site.daemon.stop();
    change_while_down(site.src(), 8);
    let s = w.wait_status(
        "consecutive_failures > 0 and last_error set while the daemon is down",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| {
            let t = &s.syncs[0].targets[0];
            t.consecutive_failures > 0 && t.last_error.is_some()
        },
    );
    assert!(s.syncs[0].targets[0].pushes_failed > 0, "{s:#?}");

    site.daemon.restart();
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    w.wait_status(
        "consecutive_failures back to 0 after catching up",
        Duration::from_secs(10),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].consecutive_failures == 0,
    );
    w.stop();
}

#[test]
fn two_targets_both_in_sync_and_one_down_does_not_stop_the_other() {
    let mut site = Site::new();
    let local = source_dir();
    let cfg = syncd_tests::WorkerConfig::new(site.state.path(), site.src())
        .daemon_named(&site.daemon, "daemon")
        .local(local.path(), Some("local"));
    let mut w = Worker::start(&cfg);
    let mut tw = TreeWriter::new(10);
    tw.files(site.src(), &["m0", "m1"], 200, 0, 20_000);
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    assert_in_sync(site.src(), local.path(), Duration::from_secs(30), &[&w]);

    site.daemon.stop();
    tw.files(site.src(), &["m2"], 100, 0, 20_000);
    fs::remove_dir_all(site.src().join("m0")).expect("rm -r m0");
    // The local target keeps up while the daemon is down...
    assert_in_sync(
        site.src(),
        local.path(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    let s = w.wait_status(
        "the daemon target failing while the local one is fine",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| {
            let t = &s.syncs[0].targets;
            let d = t.iter().find(|t| t.name == "daemon");
            let l = t.iter().find(|t| t.name == "local");
            matches!((d, l), (Some(d), Some(l)) if d.consecutive_failures > 0 && l.consecutive_failures == 0)
        },
    );
    assert_eq!(s.syncs[0].targets.len(), 2, "{s:#?}");

    // ...and the daemon catches up when it is back.
    site.daemon.restart();
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    w.stop();
}

#[test]
fn two_daemon_targets_both_in_sync() {
    let site = Site::new();
    let second = RsyncDaemon::start();
    // The default settle window (no `delay` key) this time.
    let cfg = site.config().delay(None).daemon_named(&second, "second");
    let mut w = Worker::start(&cfg);
    TreeWriter::new(11).files(site.src(), &["p", "q/r"], 300, 0, 20_000);
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    assert_in_sync(
        site.src(),
        &second.path(),
        Duration::from_secs(30),
        &[&w, &second],
    );
    w.stop();
}

/// The changes reach the target only through the fail log: the worker vouches for them
/// before its clean stop (the clock is past their ctimes and the catch-up slack), so the
/// restart's catch-up walk finds nothing, and a replay that lost them would leave the
/// target behind.
#[test]
fn restart_while_target_down_loses_nothing() {
    let mut site = Site::new();
    seed_base(site.src());
    site.daemon.push_with_rsync(site.src());
    let cfg = site.config().initial_sync(false);
    let mut w = Worker::start(&cfg);

    site.daemon.stop();
    change_while_down(site.src(), 13);
    w.wait_status(
        "a failed push (changes pending) while the daemon is down",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].consecutive_failures > 0,
    );
    wait_past_seed(site.src());
    w.stop();
    drop(w);

    // Nothing reached the target: only the fail log can bring these changes back.
    assert!(
        !SyncCheck::new(site.src(), &site.dst())
            .differences(1)
            .is_empty(),
        "target already equal before the restart: the test would prove nothing"
    );
    site.daemon.restart();
    // initial_sync stays off: the worker must replay what it saved.
    let mut w = Worker::start(&cfg);
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    // The walk found nothing: the replay brought every change.
    let (c, walk) = walked(&mut w, &site);
    assert_eq!(c.decision, CatchUpDecision::Walk, "{c:?}");
    assert_eq!(
        (walk.paths, walk.dirs, walk.whole_tree),
        (0, 0, false),
        "the walk found changes: the test would not prove the replay\n{c:?}"
    );
    assert!(c.replayed > 0, "nothing replayed from the fail log: {c:?}");
    let s = w
        .status()
        .expect("the status file, written before the walk's end");
    assert_eq!(s.syncs[0].targets[0].full_syncs, 0, "{s:?}");
    w.stop();
}
