//! Changes that raise only IN_CREATE or only IN_ATTRIB — a new symlink, a hard link, an
//! empty file made with mknod, a chmod — each alone reach the target (the default event set
//! loses nothing).

use std::fs;
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
