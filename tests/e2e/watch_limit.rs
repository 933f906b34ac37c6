//! The worker out of inotify watches asks the controller for more (`X_SYNCD_WATCHES` on
//! the notify socket): the controller no longer counts the sources at start, so a tree
//! over `fs.inotify.max_user_watches` gets its limit raised when the worker's walk runs
//! out, at the start or while the tree grows; with `SYNCD_NO_SYSCTL` the controller keeps
//! its hands off and the worker stays degraded, as before. Each test lowers the limit
//! under the exclusive sysctl lock and puts it back on Drop (`SysctlOverride`), so they
//! change a machine-wide value: run them when nothing else on the machine needs watches.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use syncd_tests::sysctl::{read, watches_in_use};
use syncd_tests::tree::write_file;
use syncd_tests::{is_root, sysctl_exclusive, Controller, Site, SysctlOverride};

const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Room for the worker's root watch and its source path's watches, not for the tree.
const ROOM: u64 = 10;

fn sync0(v: &Value) -> &Value {
    &v["worker"]["syncs"][0]
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(u64::MAX)
}

/// 20 directories with a subdirectory each, and a chain 20 deep: 62 with the root.
/// Returns the deepest.
fn wide_and_deep(site: &Site) -> PathBuf {
    for i in 0..20 {
        fs::create_dir_all(site.src().join(format!("d{i:02}/sub"))).expect("mkdir");
    }
    let mut deep = site.src().join("deep");
    for i in 0..19 {
        deep.push(format!("l{i:02}"));
    }
    fs::create_dir_all(&deep).expect("mkdir the chain");
    deep
}
const WIDE_AND_DEEP: u64 = 1 + 40 + 1 + 19;

#[test]
fn a_tree_over_the_watch_limit_starts_with_every_watch_once_the_controller_raised_it() {
    if !is_root() {
        eprintln!("skipped: changing fs.inotify.max_user_watches needs root");
        return;
    }
    let site = Site::new();
    let deepest = wide_and_deep(&site);
    let guard = sysctl_exclusive();
    let low = watches_in_use() + ROOM;
    let _limit = SysctlOverride::set(&guard, "max_user_watches", low);
    let c = Controller::new_exclusive(&site.config().watcher("inotify").initial_sync(true), &guard);
    c.start();
    // Ready means watched: the worker asked and watched the rest before READY=1.
    let v = c.wait_status(
        "every directory watched after asking for watches",
        Duration::from_secs(5),
        &[&site.daemon],
        |v| {
            n(&sync0(v)["unwatched_dirs"]) == 0
                && n(&sync0(v)["watched_dirs"]) == WIDE_AND_DEEP
                && sync0(v)["watches_asked"].is_object()
        },
    );
    let asked = &sync0(&v)["watches_asked"];
    assert_eq!(n(&asked["limit_before"]), low, "{asked:#}");
    assert!(
        asked["answered"] == true && n(&asked["limit_after"]) > low,
        "{asked:#}"
    );
    assert!(
        read("max_user_watches") > low,
        "the controller did not raise the limit\n{}",
        c.log()
    );
    c.wait_log(
        &["asked the controller for", "inotify watches; raised to"],
        SYNC_TIMEOUT,
    );
    c.wait_log(
        &["fs.inotify.max_user_watches: ", &format!("{low} → ")],
        SYNC_TIMEOUT,
    );
    site.check(&c).within(SYNC_TIMEOUT).wait();
    // The deepest directory's watch carries a change (no whole-tree push is due: every
    // directory is watched).
    write_file(&deepest.join("f"), b"deepest");
    site.check(&c).within(SYNC_TIMEOUT).wait();
    c.stop();
}

#[test]
fn the_tree_growing_past_the_watch_limit_gets_it_raised_and_the_new_directories_synced() {
    if !is_root() {
        eprintln!("skipped: changing fs.inotify.max_user_watches needs root");
        return;
    }
    let site = Site::new();
    for i in 0..5 {
        fs::create_dir_all(site.src().join(format!("d{i}"))).expect("mkdir");
    }
    let guard = sysctl_exclusive();
    // Enough for the tree as it is (6 directories), not for what it grows to.
    let low = watches_in_use() + ROOM + 6;
    let _limit = SysctlOverride::set(&guard, "max_user_watches", low);
    let c = Controller::new_exclusive(&site.config().watcher("inotify").initial_sync(true), &guard);
    c.start();
    let v = c.wait_status(
        "the first tree watched without asking",
        Duration::from_secs(5),
        &[&site.daemon],
        |v| n(&sync0(v)["unwatched_dirs"]) == 0 && n(&sync0(v)["watched_dirs"]) == 6,
    );
    assert!(sync0(&v)["watches_asked"].is_null(), "{v:#}");
    site.check(&c).within(SYNC_TIMEOUT).wait();
    // 60 new directories with a subdirectory and a file each.
    for i in 0..60 {
        write_file(
            &site.src().join(format!("grown/g{i:02}/sub/f")),
            format!("{i}").as_bytes(),
        );
    }
    let grown = 6 + 1 + 120;
    let v = c.wait_status(
        "the grown tree watched after asking for watches",
        SYNC_TIMEOUT,
        &[&site.daemon],
        |v| {
            n(&sync0(v)["unwatched_dirs"]) == 0
                && n(&sync0(v)["watched_dirs"]) == grown
                && sync0(v)["watches_asked"]["answered"] == true
        },
    );
    let asked = &sync0(&v)["watches_asked"];
    assert!(n(&asked["limit_after"]) > low, "{asked:#}");
    assert!(read("max_user_watches") > low, "{}", c.log());
    // What was written while its directories had no watch arrives: they were pushed as
    // trees once watched.
    site.check(&c).within(SYNC_TIMEOUT).wait();
    // And the new directories' watches carry later changes.
    write_file(&site.src().join("grown/g59/sub/later"), b"later");
    site.check(&c).within(SYNC_TIMEOUT).wait();
    c.stop();
}

#[test]
fn with_no_sysctl_the_worker_out_of_watches_stays_degraded_and_says_so() {
    if !is_root() {
        eprintln!("skipped: changing fs.inotify.max_user_watches needs root");
        return;
    }
    let site = Site::new();
    wide_and_deep(&site);
    let guard = sysctl_exclusive();
    let low = watches_in_use() + ROOM;
    let mut limit = SysctlOverride::set(&guard, "max_user_watches", low);
    let c = Controller::new_exclusive(&site.config().watcher("inotify").initial_sync(true), &guard)
        .hands_off();
    c.start();
    let v = c.wait_status(
        "degraded, with the request refused",
        Duration::from_secs(5),
        &[&site.daemon],
        |v| {
            v["worker"]["state"] == "degraded"
                && n(&sync0(v)["unwatched_dirs"]) > 0
                && sync0(v)["watches_asked"]["answered"] == true
        },
    );
    let asked = &sync0(&v)["watches_asked"];
    assert_eq!(n(&asked["limit_before"]), low, "{asked:#}");
    assert_eq!(n(&asked["limit_after"]), low, "{asked:#}");
    assert_eq!(read("max_user_watches"), low, "SYNCD_NO_SYSCTL: left alone");
    limit.restore();
    c.wait_log(
        &["SYNCD_NO_SYSCTL is set: not raising fs.inotify.max_user_watches"],
        SYNC_TIMEOUT,
    );
    // The worker's own message, as without a controller: the sysctl and the command.
    let named = c.wait_log(
        &["out of inotify watches", "unwatched. Raise"],
        SYNC_TIMEOUT,
    );
    assert!(
        named.contains(&format!("max_user_watches = {low}"))
            && named.contains("sysctl -w fs.inotify.max_user_watches="),
        "{named}"
    );
    let text = String::from_utf8_lossy(&c.cmd(&["status"]).stdout).into_owned();
    assert!(
        text.contains("NOT watched")
            && text.contains("asked the controller for")
            && text.contains("not raised"),
        "{text}"
    );
    // The watched root still syncs.
    write_file(&site.src().join("top.txt"), b"still synced");
    let dst = site.dst();
    syncd_tests::wait::must("top.txt in the target", SYNC_TIMEOUT, &[&c], || {
        fs::read(dst.join("top.txt")).ok().as_deref() == Some(b"still synced".as_slice())
    });
    c.stop();
}
