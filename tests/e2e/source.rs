//! The source must still be the directory syncd watched before anything is pushed: an
//! unmounted file system (its empty mount point left behind), a root moved away and
//! replaced, or a worker restarted while the source is not mounted must never empty the
//! backup. Each test ends with the target equal to the source.
//!
//! The proof that nothing was pushed while the source was lost is the target's snapshot,
//! taken after the worker had seen the loss, a push-now signal and a further status write:
//! a push from the empty mount point would have emptied it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::controller::{kill, wait_gone};
use crate::harness::mount::LoopFs;
use crate::harness::tree::{snapshot, wait_past_seed, write_file};
use crate::harness::{Controller, Site, SyncCheck, TreeWriter, Worker, WorkerConfig};
use syncd_worker::status::{State, Status};

const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// The watcher looks at a lost source every 2 s.
const LOST_TIMEOUT: Duration = Duration::from_secs(20);
/// Exists only on the target, in a directory nobody touches: a whole-tree push removes it.
const SENTINEL: &str = "keep/target-only.txt";

fn lost(s: &Status) -> bool {
    s.state == State::Degraded && s.syncs.iter().all(|x| x.source_problem.is_some())
}

fn back(s: &Status) -> bool {
    s.state != State::Degraded && s.syncs.iter().all(|x| x.source_problem.is_none())
}

/// `<src>/data` with some files in `keep/` and `work/`.
fn data_dir(site: &Site) -> PathBuf {
    let data = site.src().join("data");
    fs::create_dir(&data).expect("mkdir data");
    data
}

fn seed(data: &Path) {
    TreeWriter::new(81).files(data, &["keep", "work", "work/sub"], 30, 10, 3000);
}

/// The worker has seen a push-now (SIGUSR1) and written its status again since: whatever
/// it would push on its own, it has had the chance to.
fn poke(w: &mut Worker) {
    w.signal(libc::SIGUSR1);
    w.wait_log("SIGUSR1: pushing everything pending now", SYNC_TIMEOUT);
    let after = w.status().map_or(0.0, |s| s.updated_at);
    w.wait_status("a status write after SIGUSR1", SYNC_TIMEOUT, &[], |s| {
        s.updated_at > after
    });
}

#[test]
fn unmounted_source_keeps_the_target_and_resumes_after_remount_without_a_full_push() {
    let site = Site::new();
    let data = data_dir(&site);
    let mut disk = LoopFs::new(32);
    disk.mount(&data);
    seed(&data);
    let cfg = WorkerConfig::new(site.state.path(), &data)
        .daemon(&site.daemon)
        .initial_sync(true);
    let mut w = Worker::start(&cfg);
    SyncCheck::new(&data, &site.dst())
        .with(&w)
        .with(&site.daemon)
        .within(SYNC_TIMEOUT)
        .wait();
    write_file(&site.dst().join(SENTINEL), b"only on the target");
    // Everything seeded is older than what the worker will vouch for at the loss.
    wait_past_seed(&data);
    // No rsync left in the file system (a push in flight keeps it busy).
    w.wait_status("the worker idle", SYNC_TIMEOUT, &[&site.daemon], |s| {
        s.state == State::Watching
    });
    let before = snapshot(&site.dst());

    disk.umount(&data);
    let st = w.wait_status(
        "the source reported lost",
        LOST_TIMEOUT,
        &[&site.daemon],
        lost,
    );
    let why = st.syncs[0].source_problem.clone().unwrap_or_default();
    assert!(
        why.contains("unmounted"),
        "reason should say unmounted: {why}"
    );
    // The bare mount point is empty; a push now would empty the target.
    poke(&mut w);
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
    w.wait_status("the source back", LOST_TIMEOUT, &[&site.daemon], back);
    SyncCheck::new(&data, &site.dst())
        .ignore(|p| p == Path::new(SENTINEL))
        .with(&w)
        .with(&site.daemon)
        .within(SYNC_TIMEOUT)
        .wait();
    assert!(
        site.dst().join(SENTINEL).exists(),
        "the catch-up after the remount pushed the whole tree (the sentinel is gone)\n{}",
        w.log()
    );
    // Live again.
    write_file(&data.join("work/after.txt"), b"after the remount");
    SyncCheck::new(&data, &site.dst())
        .ignore(|p| p == Path::new(SENTINEL))
        .with(&w)
        .within(SYNC_TIMEOUT)
        .wait();
    w.stop();
}

#[test]
fn source_root_moved_away_and_replaced_is_held_until_accepted() {
    let site = Site::new();
    let data = data_dir(&site);
    seed(&data);
    let cfg = WorkerConfig::new(site.state.path(), &data)
        .daemon(&site.daemon)
        .initial_sync(true);
    let mut w = Worker::start(&cfg);
    SyncCheck::new(&data, &site.dst())
        .with(&w)
        .with(&site.daemon)
        .within(SYNC_TIMEOUT)
        .wait();
    let before = snapshot(&site.dst());

    // The deploy swap.
    let old = site.src().join("data.old");
    fs::rename(&data, &old).expect("mv data data.old");
    fs::create_dir(&data).expect("mkdir data");
    let st = w.wait_status("the swap reported", LOST_TIMEOUT, &[&site.daemon], lost);
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
    poke(&mut w);
    assert_eq!(
        snapshot(&site.dst()),
        before,
        "the target changed after the source was swapped\n{}",
        w.log()
    );

    // The operator fills the new directory and accepts it (`syncd sync --full`). It
    // lacks most of what the target has: the deletion guard holds that push back too.
    TreeWriter::new(82).files(&data, &["keep", "fresh"], 10, 10, 2000);
    w.signal(libc::SIGUSR2);
    w.wait_status(
        "the new source accepted",
        LOST_TIMEOUT,
        &[&site.daemon],
        back,
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
    w.signal(libc::SIGUSR2);
    SyncCheck::new(&data, &site.dst())
        .with(&w)
        .with(&site.daemon)
        .within(SYNC_TIMEOUT)
        .wait();
    write_file(&data.join("fresh/live.txt"), b"watched live");
    SyncCheck::new(&data, &site.dst())
        .with(&w)
        .within(SYNC_TIMEOUT)
        .wait();
    w.stop();
}

/// The wipe as it happened: the source unmounted, the worker killed, the controller
/// restarting it with `--initial-sync` (a whole-tree push of the empty mount point). The
/// restarted worker knows the directory it watched from `sources.json` and waits.
#[test]
fn worker_restarted_while_the_source_is_unmounted_pushes_nothing() {
    let site = Site::new();
    let data = data_dir(&site);
    let mut disk = LoopFs::new(32);
    disk.mount(&data);
    seed(&data);
    let c = Controller::new(
        &WorkerConfig::new(site.state.path(), &data)
            .daemon(&site.daemon)
            .initial_sync(true),
    );
    c.start();
    SyncCheck::new(&data, &site.dst())
        .with(&c)
        .with(&site.daemon)
        .within(SYNC_TIMEOUT)
        .wait();
    // No rsync left in the file system (a push in flight keeps it busy).
    c.wait_status("the worker idle", SYNC_TIMEOUT, &[&site.daemon], |v| {
        v["worker"]["state"] == "watching"
    });
    let before = snapshot(&site.dst());

    disk.umount(&data);
    let problem = |v: &serde_json::Value| v["worker"]["syncs"][0]["source_problem"].is_string();
    c.wait_status("the source reported lost", LOST_TIMEOUT, &[], problem);
    let old = c.worker_pid().expect("worker pid");
    kill(old, libc::SIGKILL);
    wait_gone(old, SYNC_TIMEOUT, "the SIGKILLed worker", &[&c]);
    c.wait_status(
        "a restarted worker that reports the lost source",
        SYNC_TIMEOUT,
        &[&site.daemon],
        |v| {
            v["worker_pid"]
                .as_u64()
                .is_some_and(|p| p != u64::from(old))
                && problem(v)
        },
    );
    assert_eq!(
        snapshot(&site.dst()),
        before,
        "the restarted worker pushed from the empty mount point\n{}",
        c.log()
    );

    disk.mount(&data);
    write_file(&data.join("work/after.txt"), b"after the remount");
    c.wait_status("the source back", LOST_TIMEOUT, &[&site.daemon], |v| {
        v["worker"]["syncs"][0]["source_problem"].is_null()
    });
    SyncCheck::new(&data, &site.dst())
        .with(&c)
        .with(&site.daemon)
        .within(SYNC_TIMEOUT)
        .wait();
    c.stop();
}

/// `rm -rf` of the source root, then a restored copy in its place, accepted by `syncd
/// reload` (SIGHUP): nothing pushed in between, then the restored tree (the deletion
/// guard allows it: it holds what the target has).
#[test]
fn deleted_source_root_waits_and_a_reload_accepts_its_replacement() {
    let site = Site::new();
    let data = data_dir(&site);
    seed(&data);
    let cfg = WorkerConfig::new(site.state.path(), &data)
        .daemon(&site.daemon)
        .initial_sync(true);
    let mut w = Worker::start(&cfg);
    SyncCheck::new(&data, &site.dst())
        .with(&w)
        .with(&site.daemon)
        .within(SYNC_TIMEOUT)
        .wait();
    let before = snapshot(&site.dst());
    let copy = site.src().join("copy");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&copy)
        .status()
        .expect("run cp");
    assert!(cp.success(), "cp -a data copy");
    fs::remove_dir_all(&data).expect("rm -rf data");
    let st = w.wait_status(
        "the root reported gone",
        LOST_TIMEOUT,
        &[&site.daemon],
        lost,
    );
    let why = st.syncs[0].source_problem.clone().unwrap_or_default();
    assert!(why.contains("deleted"), "reason should say deleted: {why}");
    poke(&mut w);
    assert_eq!(
        snapshot(&site.dst()),
        before,
        "pushed while the source was gone"
    );

    // Restored from the copy: a new directory (new inode), not the watched one.
    fs::rename(&copy, &data).expect("restore");
    write_file(&data.join("keep/restored.txt"), b"restored");
    w.wait_status(
        "the new directory reported as not the watched one",
        LOST_TIMEOUT,
        &[&site.daemon],
        |s| {
            s.syncs[0]
                .source_problem
                .as_deref()
                .is_some_and(|p| p.contains("replaced"))
        },
    );
    assert_eq!(snapshot(&site.dst()), before, "pushed from the replacement");
    w.reload();
    w.wait_status(
        "the replacement accepted",
        LOST_TIMEOUT,
        &[&site.daemon],
        back,
    );
    SyncCheck::new(&data, &site.dst())
        .with(&w)
        .with(&site.daemon)
        .within(SYNC_TIMEOUT)
        .wait();
    w.stop();
}
