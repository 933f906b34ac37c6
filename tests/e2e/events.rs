//! Changes that raise only IN_CREATE or only IN_ATTRIB — a new symlink, a hard link, an
//! empty file made with mknod, a chmod — each alone reach the target (the default event set
//! loses nothing); a new file written for longer than the close-wait is pushed once, at
//! its close.

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use nix::sys::stat::{mknod, Mode, SFlag};

use syncd_tests::tree::chmod;
use syncd_tests::{assert_in_sync, Site, TreeWriter, Worker};

/// A site whose source and target already hold `base` (0644) and `dir/`, and a running
/// worker.
fn seeded() -> (Site, Worker) {
    let site = Site::new();
    TreeWriter::new(7).file(&site.src().join("base"), 5000);
    chmod(&site.src().join("base"), 0o644);
    fs::create_dir(site.src().join("dir")).expect("mkdir dir");
    site.daemon.push_with_rsync(site.src());
    let w = Worker::start(&site.config());
    (site, w)
}

fn finish(site: &Site, mut w: Worker) {
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(20),
        &[&w, &site.daemon],
    );
    w.stop();
}

#[test]
fn new_symlink_alone_reaches_target() {
    let (site, w) = seeded();
    symlink("base", site.src().join("dir/link-to-base")).expect("symlink");
    finish(&site, w);
}

#[test]
fn new_dangling_symlink_alone_reaches_target() {
    let (site, w) = seeded();
    symlink("../nowhere", site.src().join("dir/dangling")).expect("symlink");
    finish(&site, w);
}

#[test]
fn new_hard_link_alone_reaches_target() {
    let (site, w) = seeded();
    fs::hard_link(site.src().join("base"), site.src().join("dir/hard")).expect("link");
    finish(&site, w);
}

/// mknod(2) makes an empty regular file without opening it: only IN_CREATE, no CLOSE_WRITE.
fn mknod_empty(path: &Path) {
    mknod(path, SFlag::S_IFREG, Mode::from_bits_truncate(0o640), 0)
        .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

#[test]
fn new_empty_file_without_close_write_alone_reaches_target() {
    let (site, w) = seeded();
    mknod_empty(&site.src().join("dir/empty"));
    finish(&site, w);
}

#[test]
fn chmod_of_existing_file_alone_reaches_target() {
    let (site, w) = seeded();
    chmod(&site.src().join("base"), 0o600);
    finish(&site, w);
}

#[test]
fn chmod_of_existing_dir_alone_reaches_target() {
    let (site, w) = seeded();
    chmod(&site.src().join("dir"), 0o750);
    finish(&site, w);
}

/// A new file written for 3 s (longer than the 2 s the watcher waits for a new file's
/// close) crosses once, at its close: the watcher sees it still growing when the wait
/// ends and keeps holding it, instead of pushing half of it and then all of it again.
#[test]
fn a_new_file_written_longer_than_the_close_wait_is_pushed_once() {
    const WAIT: Duration = Duration::from_secs(30);
    let site = Site::new();
    let mut w = Worker::start(&site.config().initial_sync(true));
    site.check(&w).within(WAIT).wait();
    let before = site.settled(&mut w, WAIT);

    let mut f = fs::File::create(site.src().join("slow.bin")).expect("create");
    for _ in 0..12 {
        f.write_all(&[7u8; 64 * 1024]).expect("write");
        // The writer's own pace (the workload), not a wait for a result.
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(f);
    site.check(&w).within(WAIT).wait();
    let after = site.settled(&mut w, WAIT);
    assert_eq!(
        after - before,
        1,
        "rsync sessions for one slowly written new file (want one, at its close)"
    );
    w.stop();
}
