//! Directories moved into the tree from outside arrive whole (watched, and later changes
//! inside them are seen); directories moved out of it are deleted on the target.

use std::fs;
use std::time::Duration;

use syncd_tests::{assert_in_sync, Site, TreeWriter, Worker};

#[test]
fn dir_moved_in_from_outside_arrives_whole_and_moved_out_is_deleted() {
    let site = Site::new();
    // Outside the source, on the same filesystem, so rename(2) works.
    let outside = tempfile::Builder::new()
        .prefix("syncd-e2e-outside.")
        .tempdir_in(site.src().parent().unwrap())
        .unwrap();
    TreeWriter::new(21).files(
        outside.path(),
        &["incoming", "incoming/deep/er"],
        100,
        10,
        2000,
    );
    fs::create_dir_all(site.src().join("leaving/sub")).unwrap();
    fs::write(site.src().join("leaving/sub/f.txt"), "bye").unwrap();
    let mut w = Worker::start(&site.config().initial_sync(true));
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );

    fs::rename(outside.path().join("incoming"), site.src().join("incoming")).unwrap();
    fs::rename(site.src().join("leaving"), outside.path().join("leaving")).unwrap();
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );

    // The moved-in tree is watched: a change deep inside it is pushed.
    fs::write(site.src().join("incoming/deep/er/new.txt"), "later").unwrap();
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    w.stop();
}
