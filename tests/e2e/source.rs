//! The source must still be the directory syncd watched before anything is pushed: a
//! worker restarted while the source is not mounted must never empty the backup; the test
//! ends with the target equal to the source. The source unmounted under a running worker,
//! and its root moved away and replaced, are faults in `faults.rs` (which uses the helpers
//! here).
//!
//! The proof that nothing was pushed while the source was lost is the target's snapshot,
//! taken after the worker had seen the loss, a push-now signal and a further status write:
//! a push from the empty mount point would have emptied it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use syncd_tests::controller::{kill, wait_gone};
use syncd_tests::mount::LoopFs;
use syncd_tests::tree::{snapshot, write_file, Entry};
use syncd_tests::{assert_in_sync, Controller, Site, TreeWriter, Worker, WorkerConfig};
use syncd_worker::status::{State, Status};

pub(crate) const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// The worker notices a loss, and the source back, on an event (well within a second
/// here); generous for a loaded machine.
pub(crate) const LOST_TIMEOUT: Duration = Duration::from_secs(20);
/// Exists only on the target, in a directory nobody touches: a whole-tree push removes it.
pub(crate) const SENTINEL: &str = "keep/target-only.txt";

pub(crate) fn lost(s: &Status) -> bool {
    s.state == State::Degraded && s.syncs.iter().all(|x| x.source_problem.is_some())
}

pub(crate) fn back(s: &Status) -> bool {
    s.state != State::Degraded && s.syncs.iter().all(|x| x.source_problem.is_none())
}

/// `<src>/data` with some files in `keep/` and `work/`.
pub(crate) fn data_dir(site: &Site) -> PathBuf {
    let data = site.src().join("data");
    fs::create_dir(&data).expect("mkdir data");
    data
}

pub(crate) fn seed(data: &Path) {
    TreeWriter::new(81).files(data, &["keep", "work", "work/sub"], 30, 10, 3000);
}

/// A worker watching `data` (pushing it whole at start), once the target equals it.
pub(crate) fn start_synced(site: &Site, data: &Path) -> Worker {
    let cfg = WorkerConfig::new(site.state.path(), data)
        .daemon(&site.daemon)
        .initial_sync(true);
    let w = Worker::start(&cfg);
    assert_in_sync(data, &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    w
}

/// The worker has seen a push-now (SIGUSR1) and written its status again since: whatever
/// it would push on its own, it has had the chance to.
pub(crate) fn poke(w: &mut Worker) {
    w.signal(Signal::SIGUSR1);
    w.wait_log("SIGUSR1: pushing everything pending now", SYNC_TIMEOUT);
    let after = w.status().map_or(0.0, |s| s.updated_at);
    w.wait_status("a status write after SIGUSR1", SYNC_TIMEOUT, &[], |s| {
        s.updated_at > after
    });
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
    assert_in_sync(&data, &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    // No rsync left in the file system (a push in flight keeps it busy).
    c.wait_status("the worker idle", SYNC_TIMEOUT, &[&site.daemon], |v| {
        v["worker"]["state"] == "watching"
    });
    let before = snapshot(&site.dst());

    disk.umount(&data);
    let problem = |v: &serde_json::Value| v["worker"]["syncs"][0]["source_problem"].is_string();
    c.wait_status("the source reported lost", LOST_TIMEOUT, &[], problem);
    let old = c.worker_pid().expect("worker pid");
    kill(old, Signal::SIGKILL);
    wait_gone(old, SYNC_TIMEOUT, "the SIGKILLed worker", &[&c]);
    // The restarted worker reports the lost source.
    c.wait_restarted(old, SYNC_TIMEOUT, &[&site.daemon], problem);
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
    assert_in_sync(&data, &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
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
    let mut w = start_synced(&site, &data);
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
    assert_in_sync(&data, &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    w.stop();
}

/// The worker idle (no rsync in the source's file system), and the target's snapshot then.
fn idle_snapshot(site: &Site, w: &mut Worker) -> BTreeMap<PathBuf, Entry> {
    w.wait_status("the worker idle", SYNC_TIMEOUT, &[&site.daemon], |s| {
        s.state == State::Watching
    });
    snapshot(&site.dst())
}

/// The deploy swap `ln -s TO LINK.tmp && mv -T LINK.tmp LINK`: the link is never missing.
fn repoint(link: &Path, to: &str) {
    let tmp = link.with_extension("tmp");
    std::os::unix::fs::symlink(to, &tmp).expect("ln -s");
    fs::rename(&tmp, link).expect("mv -T");
}

/// Wait until the sync is reported lost (`what`); the reason it gives.
fn lost_because(site: &Site, w: &mut Worker, what: &str) -> String {
    let st = w.wait_status(what, LOST_TIMEOUT, &[&site.daemon], lost);
    st.syncs[0].source_problem.clone().unwrap_or_default()
}

/// Held while lost: a push-now pushes nothing from what the path names now.
fn assert_held(site: &Site, w: &mut Worker, before: &BTreeMap<PathBuf, Entry>, what: &str) {
    poke(w);
    assert_eq!(
        &snapshot(&site.dst()),
        before,
        "pushed from {what}\n{}",
        w.log()
    );
}

/// A file system mounted over the source gives the source's watches no event; the mount
/// table's change (`/proc/self/mountinfo`) makes the worker look at the path. The
/// unmount that uncovers the source is a mount-table change too: the worker resumes.
#[test]
fn a_file_system_mounted_over_the_source_is_noticed_and_its_unmount_resumes() {
    let site = Site::new();
    let data = data_dir(&site);
    seed(&data);
    let mut w = start_synced(&site, &data);
    let before = idle_snapshot(&site, &mut w);
    // Declared after the site: unmounted before its tempdirs are removed.
    let mut over = LoopFs::new(32);
    over.mount(&data);
    let st = w.wait_status(
        "the mount over the source reported",
        LOST_TIMEOUT,
        &[&site.daemon],
        lost,
    );
    let why = st.syncs[0].source_problem.clone().unwrap_or_default();
    assert!(
        why.contains("another file system"),
        "reason should say another file system: {why}"
    );
    assert_held(
        &site,
        &mut w,
        &before,
        "the file system mounted over the source",
    );

    over.umount(&data);
    write_file(&data.join("work/after.txt"), b"after the unmount");
    w.wait_status("the source back", LOST_TIMEOUT, &[&site.daemon], back);
    assert_in_sync(&data, &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    w.stop();
}

/// A directory above the source renamed: the source's own watch sees nothing (it was not
/// moved within its parent); the ancestor's watch does. Renamed back, the same directory
/// is at the path again: the worker resumes and catches up with what changed meanwhile.
#[test]
fn an_ancestor_renamed_is_noticed_and_renaming_it_back_resumes() {
    let site = Site::new();
    let up = site.src().join("up");
    let data = up.join("data");
    fs::create_dir_all(&data).expect("mkdir up/data");
    seed(&data);
    let mut w = start_synced(&site, &data);
    let before = idle_snapshot(&site, &mut w);
    let moved = site.src().join("up.old");
    fs::rename(&up, &moved).expect("mv up up.old");
    let st = w.wait_status(
        "the renamed ancestor reported",
        LOST_TIMEOUT,
        &[&site.daemon],
        lost,
    );
    let why = st.syncs[0].source_problem.clone().unwrap_or_default();
    assert!(why.contains("gone"), "reason should say gone: {why}");
    write_file(
        &moved.join("data/work/meanwhile.txt"),
        b"written while moved",
    );
    assert_held(&site, &mut w, &before, "a source path that names nothing");

    fs::rename(&moved, &up).expect("mv up.old up");
    w.wait_status("the source back", LOST_TIMEOUT, &[&site.daemon], back);
    assert_in_sync(&data, &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    w.stop();
}

/// A source reached through a release symlink (`current/data`, `current` → `rel1`) and
/// the deploy swap `ln -s rel2 current.tmp && mv -T current.tmp current`: no directory on
/// the path moved, only the link's entry changed; the watch on the directory holding the
/// link sees it. Swapped back, the worker resumes.
#[test]
fn a_swapped_symlink_on_the_source_path_is_noticed_and_swapping_back_resumes() {
    let site = Site::new();
    for rel in ["rel1/data", "rel2/data"] {
        fs::create_dir_all(site.src().join(rel)).expect("mkdir release");
    }
    seed(&site.src().join("rel1/data"));
    write_file(&site.src().join("rel2/data/other.txt"), b"another release");
    let link = site.src().join("current");
    std::os::unix::fs::symlink("rel1", &link).expect("ln -s rel1 current");
    let data = link.join("data");
    let mut w = start_synced(&site, &data);
    let before = idle_snapshot(&site, &mut w);
    repoint(&link, "rel2");
    let why = lost_because(&site, &mut w, "the swapped link reported");
    assert!(
        why.contains("replaced"),
        "reason should say replaced: {why}"
    );
    assert_held(&site, &mut w, &before, "the other release");

    repoint(&link, "rel1");
    write_file(&data.join("work/after.txt"), b"after the swap back");
    w.wait_status("the source back", LOST_TIMEOUT, &[&site.daemon], back);
    assert_in_sync(&data, &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    w.stop();
}

/// `source = "<src>/current"`, a release symlink to `releases/1`: watched at
/// `releases/1` (the watches never follow a symlink: the worker used to die with
/// ENOTDIR), said in the log and in status.json (`source` as written, `source_resolved`).
/// The link repointed (`ln -s 2 current.tmp && mv -T`) is a source swapped: reported, the
/// old release is not pushed on, the new one not followed, until `reload` resolves the
/// link again and pushes the new release.
#[test]
fn a_symlinked_source_is_watched_at_its_target_and_a_repointed_link_waits_for_a_reload() {
    let site = Site::new();
    let releases = site.src().join("releases");
    for rel in ["1", "2"] {
        fs::create_dir_all(releases.join(rel)).expect("mkdir release");
    }
    // The next release is mostly the same tree (the deletion guard would stop a push
    // that deletes most of the target).
    seed(&releases.join("1"));
    seed(&releases.join("2"));
    write_file(&releases.join("2/other.txt"), b"the next release");
    let link = site.src().join("current");
    repoint(&link, "releases/1");
    let first = fs::canonicalize(releases.join("1")).expect("realpath");
    let second = fs::canonicalize(releases.join("2")).expect("realpath");

    // `syncd check` says what the worker will do.
    let check = Controller::new(&WorkerConfig::new(site.state.path(), &link).daemon(&site.daemon))
        .cmd(&["check"]);
    let said = format!(
        "source {} is a symlink; watching {}",
        link.display(),
        first.display()
    );
    assert!(
        String::from_utf8_lossy(&check.stdout).contains(&said),
        "check should say {said:?}\n{}",
        syncd_tests::controller::show(&check)
    );
    let mut w = start_synced(&site, &link);
    let st = w.status().expect("status");
    assert_eq!(st.syncs[0].source, link.display().to_string());
    assert_eq!(
        st.syncs[0].source_resolved.as_deref(),
        Some(first.to_str().expect("utf-8 path"))
    );
    w.wait_log(&said, SYNC_TIMEOUT);
    write_file(&first.join("work/new.txt"), b"a change in the release");
    assert_in_sync(&first, &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);

    let before = idle_snapshot(&site, &mut w);
    repoint(&link, "releases/2");
    let why = lost_because(&site, &mut w, "the repointed link reported");
    for needle in ["repointed", &second.display().to_string(), "syncd reload"] {
        assert!(why.contains(needle), "{needle:?} not in the reason: {why}");
    }
    write_file(&first.join("work/late.txt"), b"the old release changed");
    assert_held(&site, &mut w, &before, "either release");

    w.reload();
    let st = w.wait_status(
        "the new release watched",
        LOST_TIMEOUT,
        &[&site.daemon],
        |s| back(s) && s.syncs[0].source_resolved.as_deref() == second.to_str(),
    );
    assert_eq!(st.syncs[0].source, link.display().to_string());
    assert_in_sync(&second, &site.dst(), SYNC_TIMEOUT, &[&w, &site.daemon]);
    w.stop();
}
