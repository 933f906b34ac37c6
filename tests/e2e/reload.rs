//! SIGHUP reloads the worker's config in place: an exclude added by reload keeps new
//! matching files off the target, a target added by reload gets the whole tree (and the
//! one already there is left alone), an invalid new file keeps the old config running and
//! says why, a new source directory is watched and pushed, and another `watcher`
//! replaces the sync's watcher.
//!
//! Also here, from the same change to the engine: at the first stop signal the pending
//! queue, pushes in flight included, is saved at once, so a SIGKILL during a long drain
//! loses nothing.

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use syncd_tests::tree::{source_dir, write_file};
use syncd_tests::{assert_in_sync, Site, SyncCheck, TreeWriter, Worker, WorkerConfig};

const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

fn is_log(rel: &Path) -> bool {
    rel.extension().is_some_and(|e| e == "log")
}

#[test]
fn reload_adds_an_exclude_new_matching_files_are_not_pushed() {
    let site = Site::new();
    let mut w = Worker::start(&site.config());
    // Before the reload a .log file is pushed like any other: the exclude is what changes.
    write_file(&site.src().join("before.log"), b"pushed while not excluded");
    write_file(&site.src().join("a.txt"), b"a");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);

    w.rewrite_config(&site.config().exclude(r"\.log$").to_toml());
    w.reload();
    let line = w.wait_log("reloaded ", RELOAD_TIMEOUT);
    assert!(line.contains("1 rewatched"), "{line}");

    let forbidden = |rel: &Path| is_log(rel) && rel != Path::new("before.log");
    write_file(&site.src().join("after.log"), b"excluded");
    write_file(&site.src().join("sub/deep.log"), b"excluded");
    write_file(&site.src().join("b.txt"), b"b");
    write_file(&site.src().join("sub/c.txt"), b"c");
    site.check(&w)
        .ignore(is_log)
        .forbid_on_target(forbidden)
        .within(SYNC_TIMEOUT)
        .wait();
    // The whole-tree push that follows the new watches has run, with the new exclude.
    w.wait_status(
        "a whole-tree push after the reload",
        SYNC_TIMEOUT,
        &[&site.daemon],
        |s| s.syncs[0].targets[0].full_syncs >= 1,
    );
    write_file(&site.src().join("sub/more.log"), b"excluded");
    write_file(&site.src().join("last.txt"), b"last");
    site.check(&w)
        .ignore(is_log)
        .forbid_on_target(forbidden)
        .within(SYNC_TIMEOUT)
        .wait();
    // Excluded now, so protected from deletion on the target.
    assert!(site.dst().join("before.log").is_file(), "{}", w.log());
    w.stop();
}

#[test]
fn reload_adds_a_local_target_it_gets_the_whole_tree() {
    let site = Site::new();
    let local = source_dir();
    let mut w = Worker::start(&site.config());
    TreeWriter::new(31).files(site.src(), &["x", "y/z"], 40, 0, 5000);
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    let before = w
        .wait_status(
            "the first pushes counted",
            SYNC_TIMEOUT,
            &[&site.daemon],
            |s| {
                let t = &s.syncs[0].targets[0];
                t.pushes_ok > 0 && t.in_flight == 0 && t.queue_depth == 0
            },
        )
        .syncs[0]
        .targets[0]
        .clone();

    w.rewrite_config(&site.config().local(local.path(), Some("local")).to_toml());
    w.reload();
    let line = w.wait_log("reloaded ", RELOAD_TIMEOUT);
    assert!(
        line.contains("1 updated") && line.contains("1 target added"),
        "{line}"
    );
    assert_in_sync(site.src(), local.path(), SYNC_TIMEOUT, &[&w, &site.daemon]);

    write_file(&site.src().join("y/after.txt"), b"after the reload");
    assert_in_sync(site.src(), local.path(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    // The daemon target was left alone: counters kept (and counting), no whole-tree push.
    let s = w.wait_status(
        "both targets idle, the local one after a whole-tree push",
        SYNC_TIMEOUT,
        &[&site.daemon],
        |s| {
            let t = &s.syncs[0].targets;
            t.len() == 2
                && t[0].pushes_ok > before.pushes_ok
                && t.iter().all(|t| t.in_flight == 0 && t.queue_depth == 0)
                && t[1].full_syncs >= 1
        },
    );
    let kept = &s.syncs[0].targets[0];
    assert_eq!(kept.name, before.name, "{s:#?}");
    assert_eq!(kept.full_syncs, 0, "{s:#?}");
    assert_eq!(s.syncs[0].targets[1].name, "local", "{s:#?}");
    w.stop();
}

#[test]
fn reload_with_an_invalid_config_keeps_the_old_one_running() {
    let site = Site::new();
    let mut w = Worker::start(&site.config());
    write_file(&site.src().join("a.txt"), b"a");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);

    let good = site.config().to_toml();
    let bad = good.replace("delay = \"20ms\"", "delay = 20");
    assert_ne!(bad, good, "the test must break the config");
    w.rewrite_config(&bad);
    w.reload();
    w.wait_log("keeping the running configuration", RELOAD_TIMEOUT);
    let log = w.log();
    let why = log
        .lines()
        .find(|l| l.contains("cannot reload"))
        .unwrap_or_else(|| panic!("no \"cannot reload\" line:\n{log}"));
    assert!(
        why.contains("syncd.toml:") && why.contains("delay"),
        "the log must name the file, line and key: {why}"
    );
    assert!(!log.contains("reloaded "), "{log}");

    write_file(&site.src().join("b.txt"), b"still syncing");
    fs::remove_file(site.src().join("a.txt")).expect("rm a.txt");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    w.stop();
}

#[test]
fn reload_with_a_new_source_pushes_the_new_tree() {
    let site = Site::new();
    let new_src = source_dir();
    let mut w = Worker::start(&site.config().name("data"));
    write_file(&site.src().join("old.txt"), b"old source");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);

    TreeWriter::new(41).files(new_src.path(), &["n", "n/m"], 30, 0, 5000);
    let cfg = WorkerConfig::new(site.state.path(), new_src.path())
        .daemon(&site.daemon)
        .name("data");
    w.rewrite_config(&cfg.to_toml());
    w.reload();
    let line = w.wait_log("reloaded ", RELOAD_TIMEOUT);
    assert!(line.contains("1 rewatched"), "{line}");
    // The whole-tree push from the new source (old.txt is deleted on the target).
    assert_in_sync(
        new_src.path(),
        &site.dst(),
        SYNC_TIMEOUT,
        &[&w, &site.daemon],
    );

    // Live changes now come from the new source only.
    write_file(
        &site.src().join("unwatched.txt"),
        b"old source, not watched any more",
    );
    write_file(&new_src.path().join("n/m/live.txt"), b"live");
    SyncCheck::new(new_src.path(), &site.dst())
        .forbid_on_target(|rel| rel == Path::new("unwatched.txt"))
        .with(&w)
        .with(&site.daemon)
        .within(SYNC_TIMEOUT)
        .wait();
    let s = w.status().expect("status");
    let dir_name = new_src.path().file_name().expect("tempdir name");
    assert!(
        Path::new(&s.syncs[0].source).ends_with(dir_name),
        "status still shows the old source: {s:#?}"
    );
    w.stop();
}

#[test]
fn reload_with_another_watcher_replaces_it_and_pushes_the_whole_tree() {
    let site = Site::new();
    // The default, auto, first; then inotify by name: another watcher either way.
    let mut w = Worker::start(&site.config());
    write_file(&site.src().join("a.txt"), b"a");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);

    w.rewrite_config(&site.config().key("watcher", "\"inotify\"").to_toml());
    w.reload();
    let line = w.wait_log("reloaded ", RELOAD_TIMEOUT);
    assert!(line.contains("1 rewatched"), "{line}");
    w.wait_log("source, exclude, events or watcher changed", RELOAD_TIMEOUT);
    w.wait_status(
        "a whole-tree push after the new watcher is up",
        SYNC_TIMEOUT,
        &[&site.daemon],
        |s| s.syncs[0].targets[0].full_syncs >= 1,
    );
    // Live changes come through the new watcher.
    write_file(&site.src().join("sub/after.txt"), b"after the reload");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    w.stop();
}

#[test]
fn stop_saves_the_push_in_flight_at_once_so_a_kill_during_the_drain_loses_nothing() {
    let site = Site::new();
    // 1 MB at 50 KB/s: the push is still in flight long after the stop signal.
    let slow = site
        .config()
        .raw("[sync.rsync]\nextra = [\"--bwlimit=50\"]");
    let mut w = Worker::start(&slow);
    TreeWriter::new(51).file(&site.src().join("big.bin"), 1 << 20);
    w.wait_status(
        "the push of big.bin in flight",
        SYNC_TIMEOUT,
        &[&site.daemon],
        |s| s.syncs[0].targets[0].in_flight > 0,
    );
    w.signal(Signal::SIGTERM);
    let line = w.wait_log("saved 1 pending entries", RELOAD_TIMEOUT);
    w.kill();
    let faillog_dir = site.state.path().join("faillog");
    let saved: Vec<u8> = fs::read_dir(&faillog_dir)
        .unwrap_or_else(|e| panic!("{}: {e}\n{line}", faillog_dir.display()))
        .flatten()
        .flat_map(|f| fs::read(f.path()).unwrap_or_default())
        .collect();
    assert!(
        saved.windows(7).any(|x| x == b"big.bin"),
        "the fail log does not hold big.bin:\n{}\n{}",
        String::from_utf8_lossy(&saved),
        w.log()
    );
    drop(w);

    // No initial sync: only the fail log can bring big.bin to the target.
    let mut w = Worker::start(&site.config());
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    w.wait_status(
        "one entry replayed from the fail log",
        RELOAD_TIMEOUT,
        &[&site.daemon],
        |s| s.syncs[0].catchup.as_ref().is_some_and(|c| c.replayed == 1),
    );
    w.stop();
}
