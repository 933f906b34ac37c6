//! The fanotify watcher on each file system it is meant for, each a real loop-mounted
//! image: xfs and btrfs watched through one mark (creates, writes, a rename, a delete
//! reach the target), and a btrfs subvolume, whose other fsid a file system mark cannot
//! take, falling back to inotify under `auto` with the reason in the status.
//! (ext4 and tmpfs: the rest of the suite and the worker's `watch::fanotify` tests.)

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use syncd_tests::mount::{LoopFs, Tmpfs};
use syncd_tests::tree::write_file;
use syncd_tests::{assert_in_sync, Site, Worker};

const SYNC: Duration = Duration::from_secs(30);

/// Watch `src` with `watcher`, change the tree, wait for the target; the status's
/// watcher and reason.
fn watch_and_change(site: &Site, src: &Path, watcher: &str) -> (String, String) {
    fs::create_dir_all(src.join("old/deep")).expect("mkdir");
    write_file(&src.join("old/deep/f"), b"before");
    let cfg = syncd_tests::WorkerConfig::new(site.state.path(), src)
        .daemon(&site.daemon)
        .watcher(watcher)
        .initial_sync(true);
    let mut w = Worker::start(&cfg);
    assert_in_sync(src, &site.dst(), SYNC, &[&w]);
    write_file(&src.join("new/a.txt"), b"new file");
    fs::rename(src.join("old"), src.join("renamed")).expect("rename");
    write_file(&src.join("renamed/deep/g"), b"in the renamed dir");
    fs::remove_file(src.join("renamed/deep/f")).expect("rm");
    assert_in_sync(src, &site.dst(), SYNC, &[&w]);
    let st = w.status().expect("status");
    w.stop();
    (
        st.syncs[0].watcher.clone().unwrap_or_default(),
        st.syncs[0].watcher_reason.clone().unwrap_or_default(),
    )
}

#[test]
fn xfs_and_btrfs_are_watched_with_one_fanotify_mark() {
    for (mkfs, name) in [
        (&["mkfs.xfs", "-q"][..], "xfs"),
        (&["mkfs.btrfs", "-q"][..], "btrfs"),
    ] {
        let site = Site::new();
        let at = site.src().join("mnt");
        fs::create_dir(&at).expect("mkdir");
        // Declared after the site: unmounted before its tempdirs are removed.
        let mut disk = LoopFs::made_with(mkfs, 320);
        disk.mount(&at);
        let (watcher, why) = watch_and_change(&site, &at.join("src"), "fanotify");
        assert_eq!(watcher, "fanotify", "{name}: {why}");
        assert!(
            why.contains(&format!("one mark on the {name} file system")),
            "{why}"
        );
        disk.umount(&at);
    }
}

#[test]
fn a_btrfs_subvolume_is_watched_with_inotify_under_auto_and_says_why() {
    let site = Site::new();
    let at = site.src().join("mnt");
    fs::create_dir(&at).expect("mkdir");
    let mut disk = LoopFs::made_with(&["mkfs.btrfs", "-q"], 320);
    disk.mount(&at);
    let out = Command::new("btrfs")
        .args(["subvolume", "create"])
        .arg(at.join("sub"))
        .output()
        .expect("run btrfs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (watcher, why) = watch_and_change(&site, &at.join("sub/src"), "auto");
    assert_eq!(watcher, "inotify", "{why}");
    assert!(why.contains("another fsid"), "{why}");
    disk.umount(&at);
}

/// A file system mounted below the source while fanotify watches it: one mark does not
/// cover it, so under `auto` the sync is watched again (inotify, which walks into it)
/// and the new mount's content is pushed whole; later changes in it arrive.
#[test]
fn a_file_system_mounted_below_the_source_later_moves_auto_to_inotify() {
    let site = Site::new();
    fs::create_dir(site.src().join("mnt")).expect("mkdir");
    let mut w = Worker::start(&site.config().watcher("auto").initial_sync(true));
    assert_in_sync(site.src(), &site.dst(), SYNC, &[&w]);
    let st = w.status().expect("status");
    assert_eq!(st.syncs[0].watcher.as_deref(), Some("fanotify"));
    let _mounted = Tmpfs::mount(&site.src().join("mnt"), "4m");
    write_file(&site.src().join("mnt/first"), b"written after the mount");
    let st = w.wait_status("inotify after the mount", SYNC, &[&site.daemon], |s| {
        s.syncs[0].watcher.as_deref() == Some("inotify")
    });
    let why = st.syncs[0].watcher_reason.clone().unwrap_or_default();
    assert!(why.contains("mounted below the source"), "{why}");
    assert_in_sync(site.src(), &site.dst(), SYNC, &[&w]);
    write_file(&site.src().join("mnt/deep/second"), b"seen through inotify");
    assert_in_sync(site.src(), &site.dst(), SYNC, &[&w]);
    w.stop();
}
