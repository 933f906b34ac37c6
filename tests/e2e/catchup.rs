//! Cheap restart: what changed while the worker was stopped reaches the target without a
//! whole-tree rsync after a clean stop or after a SIGKILL once a running checkpoint
//! vouches for the pushes, and with one after a SIGKILL before any checkpoint. (The
//! SIGKILL while idle, ten changes, start is a fault in `faults.rs`, with these helpers.)
//!
//! The proof that a push did *not* cover the whole tree is a sentinel: a file that exists
//! only on the target, in a directory nobody touched. A whole-tree push (`--delete`)
//! removes it; a catch-up leaves it alone.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use syncd_tests::controller::{kill, wait_gone};
use syncd_tests::tree::{chmod, newest_ctime, wait_past_seed, write_file};
use syncd_tests::wait;
use syncd_tests::{Controller, Site, SyncCheck, TreeWriter, Worker};
use syncd_worker::status::{CatchUp, CatchUpDecision, Status, SyncStatus, WalkOutcome, WalkState};

pub(crate) const SENTINEL: &str = "keep/target-only.txt";

/// The record a clean stop leaves (`<state_dir>/catchup.json`), as JSON.
pub(crate) fn marker(site: &Site) -> serde_json::Value {
    let path = site.state.path().join("catchup.json");
    let data = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&data).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A source with files in several directories, pushed to the target by plain rsync; the
/// target also gets the sentinel.
pub(crate) fn seed(site: &Site) -> Vec<PathBuf> {
    let src = site.src();
    let files = TreeWriter::new(31).files(
        src,
        &["keep", "mod", "del", "ren", "work/olddir", "deep/x/y"],
        120,
        100,
        3000,
    );
    fs::create_dir_all(src.join("del/sub/inner")).expect("mkdir del/sub/inner");
    write_file(&src.join("del/sub/inner/f"), b"doomed");
    site.daemon.push_with_rsync(src);
    write_file(&site.dst().join(SENTINEL), b"only on the target");
    files
}

fn start_and_stop_cleanly(site: &Site) {
    let mut w = Worker::start(&site.config());
    wait_past_seed(site.src());
    w.stop();
    assert_eq!(marker(site)["state"], "stopped", "{}", w.log());
}

/// The first sync's catch-up once its walk finished (waits for that), from the status.
pub(crate) fn walked(w: &mut Worker, site: &Site) -> (CatchUp, WalkOutcome) {
    let s = w.wait_status(
        "the catch-up walk finished",
        Duration::from_secs(30),
        &[&site.daemon],
        |s| walk_done(&s.syncs[0]).is_some(),
    );
    let c = s.syncs[0]
        .catchup
        .clone()
        .expect("a catch-up in the status");
    let walk = walk_done(&s.syncs[0]).expect("checked by the wait");
    (c, walk)
}

/// The sync's finished catch-up walk, if any.
pub(crate) fn walk_done(s: &SyncStatus) -> Option<WalkOutcome> {
    s.catchup
        .as_ref()
        .and_then(|c| c.walk)
        .filter(|w| w.state == WalkState::Done)
}

/// Wait until the worker logged the end of its first push (the target can equal the source
/// a moment before the log line is written).
pub(crate) fn wait_first_push(w: &mut Worker, site: &Site) {
    w.wait_status(
        "the first push finished",
        Duration::from_secs(30),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].pushes_ok >= 1,
    );
}

#[test]
fn changes_made_while_stopped_arrive_by_catch_up_not_full_sync() {
    let site = Site::new();
    seed(&site);
    start_and_stop_cleanly(&site);

    // While stopped: create, modify, delete, rename files and directories (below the
    // top directory: a change of the top directory itself needs a full sync).
    let src = site.src();
    write_file(&src.join("mod/new.txt"), b"created while stopped");
    write_file(
        &src.join("mod/f00001"),
        b"modified while stopped, other size",
    );
    fs::remove_file(src.join("del/f00002")).expect("rm del/f00002");
    fs::remove_dir_all(src.join("del/sub")).expect("rm -r del/sub");
    fs::rename(src.join("ren/f00003"), src.join("ren/renamed")).expect("rename file");
    fs::rename(src.join("mod/f00007"), src.join("ren/from-mod")).expect("move file");
    fs::rename(src.join("work/olddir"), src.join("work/moved")).expect("rename dir");
    write_file(&src.join("work/newdir/a/b/c.txt"), b"new nested dir");
    chmod(&src.join("deep/x/y/f00005"), 0o600);

    let mut w = Worker::start(&site.config());
    SyncCheck::new(src, &site.dst())
        .ignore(|p| p == Path::new(SENTINEL))
        .with(&w)
        .with(&site.daemon)
        .within(Duration::from_secs(30))
        .wait();
    wait_first_push(&mut w, &site);
    let log = w.log();
    // mod, del, ren, work changed (entries created, removed, renamed in them) and are
    // pushed whole; the chmod deep down is one path.
    let (c, walk) = walked(&mut w, &site);
    assert_eq!(c.decision, CatchUpDecision::Walk, "{c:?}");
    assert_eq!(
        (walk.paths, walk.dirs, walk.whole_tree),
        (1, 4, false),
        "{c:?}"
    );
    let t = &w.status().expect("status").syncs[0].targets[0];
    assert_eq!(t.full_syncs, 0, "no full sync expected: {t:?}\n{log}");
    assert!(
        site.dst().join(SENTINEL).exists(),
        "the untouched directory keep/ was pushed (its target-only file is gone):\n{log}"
    );
    w.stop();
}

#[test]
fn files_not_touched_while_stopped_are_not_sent_again() {
    let site = Site::new();
    let files = seed(&site);
    start_and_stop_cleanly(&site);
    let inode = |p: &Path| fs::metadata(p).map(|m| m.ino()).ok();
    let on_target = |p: &Path| site.dst().join(p.strip_prefix(site.src()).expect("in src"));
    let before: Vec<Option<u64>> = files.iter().map(|p| inode(&on_target(p))).collect();

    // Rewrite three files in place (their directories do not change).
    let changed = [&files[1], &files[8], &files[15]];
    for (i, p) in changed.iter().enumerate() {
        write_file(p, format!("rewritten {i} with a new size").as_bytes());
    }

    let mut w = Worker::start(&site.config());
    site.check(&w)
        .ignore(|p| p == Path::new(SENTINEL))
        .within(Duration::from_secs(30))
        .wait();
    wait_first_push(&mut w, &site);
    let (c, walk) = walked(&mut w, &site);
    assert_eq!(c.decision, CatchUpDecision::Walk, "{c:?}");
    assert_eq!(
        (walk.entries, walk.paths, walk.dirs, walk.whole_tree),
        (132, 3, 0, false),
        "expected 3 of 132 entries found: {c:?}"
    );
    let t = &w.status().expect("status").syncs[0].targets[0];
    assert_eq!(
        (t.pushes_ok, t.full_syncs),
        (1, 0),
        "expected one push (of the 3 paths) and nothing else: {t:?}\n{}",
        w.log()
    );
    // rsync replaces a file it sends (new inode); the 117 others kept theirs.
    let mut resent = Vec::new();
    for (p, ino) in files.iter().zip(&before) {
        if *ino != inode(&on_target(p)) {
            resent.push(p.strip_prefix(site.src()).expect("in src").to_path_buf());
        }
    }
    let want: Vec<PathBuf> = changed
        .iter()
        .map(|p| p.strip_prefix(site.src()).expect("in src").to_path_buf())
        .collect();
    assert_eq!(resent, want, "only the rewritten files may be sent again");
    assert!(site.dst().join(SENTINEL).exists());
    w.stop();
}

#[test]
fn after_sigkill_the_next_start_runs_a_full_sync() {
    let site = &Site::new();
    seed(site);
    let mut w = Worker::start(&site.config());
    let pid = w.status().expect("status of a started worker").pid;
    kill(pid, Signal::SIGKILL);
    wait::until_every(
        "the worker's exit after SIGKILL",
        Duration::from_secs(10),
        wait::SHORT_POLL,
        || w.poll_exit(),
    )
    .unwrap_or_else(|t| wait::fail(t, &[]));
    assert_eq!(
        marker(site)["state"],
        "running",
        "a killed worker leaves no clean record"
    );

    let src = site.src();
    write_file(&src.join("mod/after-kill.txt"), b"written while dead");
    fs::remove_file(src.join("del/f00002")).expect("rm del/f00002");

    let mut w = Worker::start(&site.config());
    // No ignore: the full sync must delete the target-only sentinel too.
    SyncCheck::new(src, &site.dst())
        .with(&w)
        .with(&site.daemon)
        .within(Duration::from_secs(30))
        .wait();
    wait_first_push(&mut w, site);
    let s = w.status().expect("status");
    let c = s.syncs[0]
        .catchup
        .as_ref()
        .expect("a catch-up in the status");
    assert_eq!(c.decision, CatchUpDecision::Full, "{c:?}");
    assert!(
        c.reason
            .starts_with("no clean-stop record from the previous worker"),
        "expected the reason for the full sync: {c:?}"
    );
    assert!(s.syncs[0].targets[0].full_syncs >= 1, "{s:?}\n{}", w.log());
    w.stop();
}

/// Wall time as the record writes it: Unix nanoseconds.
pub(crate) fn unix_ns(t: SystemTime) -> i64 {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(d.as_nanos()).expect("fits i64")
}

/// Wait for a running checkpoint whose T is past every ctime in the source.
pub(crate) fn wait_checkpoint_past_the_tree(site: &Site, log: &dyn Fn() -> String) {
    let newest = unix_ns(newest_ctime(site.src()));
    wait::until(
        format_args!("a running checkpoint past {newest}"),
        Duration::from_secs(30),
        || {
            let m = marker(site);
            let since = m["syncs"][0]["since_ns"].as_i64();
            if m["state"] == "running" && since.is_some_and(|t| t > newest) {
                Ok(())
            } else {
                Err(m.to_string())
            }
        },
    )
    .unwrap_or_else(|t| panic!("{t}\n{}", log()));
}

/// The OOM killer's case: the controller restarts a SIGKILLed worker, and the new one
/// catches up from its predecessor's checkpoint instead of pushing the whole tree.
#[test]
fn worker_killed_under_the_controller_is_restarted_and_catches_up_without_a_full_push() {
    let site = &Site::new();
    let files = seed(site);
    let src = site.src();
    let c = Controller::new(&site.config());
    c.start();
    write_file(&src.join("mod/pushed-live.txt"), b"pushed live");
    SyncCheck::new(src, &site.dst())
        .ignore(|p| p == Path::new(SENTINEL))
        .with(&c)
        .with(&site.daemon)
        .within(Duration::from_secs(30))
        .wait();
    wait_checkpoint_past_the_tree(site, &|| c.log());

    let old = c.worker_pid().expect("worker pid");
    kill(old, Signal::SIGKILL);
    wait_gone(old, Duration::from_secs(15), "the SIGKILLed worker", &[&c]);
    let changed: Vec<&PathBuf> = files.iter().step_by(7).take(10).collect();
    for (i, p) in changed.iter().enumerate() {
        write_file(p, format!("changed {i} while no worker ran").as_bytes());
    }
    c.wait_restarted(old, Duration::from_secs(15), &[], |v| {
        v["worker"]["state"] == "watching"
    });
    SyncCheck::new(src, &site.dst())
        .ignore(|p| p == Path::new(SENTINEL))
        .with(&c)
        .with(&site.daemon)
        .within(Duration::from_secs(30))
        .wait();
    let status = site.state.path().join("status.json");
    let s = wait::must(
        "the restarted worker's catch-up walk finished",
        Duration::from_secs(30),
        &[&c],
        || {
            Status::read(&status)
                .ok()
                .filter(|s| walk_done(&s.syncs[0]).is_some())
        },
    );
    let walk = walk_done(&s.syncs[0]).expect("checked by the wait");
    assert_eq!(
        (walk.paths, walk.dirs, walk.whole_tree),
        (10, 0, false),
        "expected the restarted worker's walk to find exactly the ten changes: {walk:?}"
    );
    let log = c.log();
    assert!(
        site.dst().join(SENTINEL).exists(),
        "the restarted worker pushed the whole tree (the target-only file is gone):\n{log}"
    );
    c.stop();
}
