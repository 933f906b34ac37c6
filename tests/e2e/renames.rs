//! A directory renamed in the source does not cross the network again: the push seeds
//! the new path from the target's old copy (`--copy-dest`) before it deletes the old
//! path. What the daemon received is read from its log (bytes are data, not timing).
//! The old copy missing on the target costs the data, never the result; a local target
//! and excluded names inside the renamed directory come out as any push leaves them.

use std::fs;
use std::path::Path;
use std::time::Duration;

use syncd_tests::{Site, TreeWriter, Worker};

/// 100 files of 100,000 pseudo-random bytes (incompressible).
const FILES: usize = 100;
const FILE_SIZE: usize = 100_000;
const DATA: u64 = (FILES * FILE_SIZE) as u64;
const WAIT: Duration = Duration::from_secs(60);

fn fill(dir: &Path, seed: u64) {
    TreeWriter::new(seed).files(dir, &["."], FILES, FILE_SIZE, FILE_SIZE);
}

/// Start a worker on `site`, wait until the target equals the source and every push has
/// ended; the number of daemon sessions so far.
fn started_in_step(site: &Site) -> (Worker, usize) {
    let mut w = Worker::start(&site.config().initial_sync(true));
    site.check(&w).within(WAIT).wait();
    let before = site.settled(&mut w, WAIT);
    (w, before)
}

/// The bytes the daemon received for what happened after `before` sessions.
fn received_since(w: &mut Worker, site: &Site, before: usize) -> u64 {
    site.settled(w, WAIT);
    site.daemon.received_after(before, WAIT, &[&*w])
}

/// Move the directory `from` (filled with [`DATA`] bytes from `seed`) to `to` on the
/// source, after `mkdir -p` of `parents`: the target ends in step, without `from`, and
/// the daemon received under 5 % of the data.
fn moved_without_resending(from: &str, to: &str, parents: &[&str], seed: u64) {
    let site = Site::new();
    fill(&site.src().join(from), seed);
    for p in parents {
        fs::create_dir_all(site.src().join(p)).unwrap();
    }
    let (mut w, before) = started_in_step(&site);

    fs::rename(site.src().join(from), site.src().join(to)).unwrap();
    site.check(&w).within(WAIT).wait();
    assert!(
        !site.dst().join(from).exists(),
        "the old directory {from} is gone"
    );

    let received = received_since(&mut w, &site, before);
    assert!(
        received < DATA / 20,
        "the daemon received {received} bytes for a directory of {DATA} moved from {from} to {to}: sent again"
    );
    w.stop();
}

#[test]
fn a_renamed_directory_is_not_sent_again() {
    moved_without_resending("ren/d1", "ren/d2", &[], 1);
}

#[test]
fn a_directory_renamed_into_another_parent_is_not_sent_again() {
    moved_without_resending("a/d1", "b/c/d2", &["b/c"], 2);
}

#[test]
fn a_renamed_directory_whose_old_copy_is_missing_on_the_target_is_sent_whole() {
    let site = Site::new();
    fill(&site.src().join("ren/d1"), 3);
    let (mut w, before) = started_in_step(&site);
    // Someone removed the target's copy: there is no basis, the data must travel.
    fs::remove_dir_all(site.dst().join("ren/d1")).unwrap();

    fs::rename(site.src().join("ren/d1"), site.src().join("ren/d2")).unwrap();
    site.check(&w).within(WAIT).wait();

    let received = received_since(&mut w, &site, before);
    assert!(
        received >= DATA,
        "the daemon received {received} bytes for {DATA} with no basis"
    );
    w.stop();
}

#[test]
fn a_renamed_directory_to_a_local_target_keeps_excludes_and_ends_in_step() {
    let site = Site::new();
    let dst = tempfile::Builder::new()
        .prefix("syncd-e2e-local.")
        .tempdir()
        .unwrap();
    let d1 = site.src().join("ren/d1");
    fill(&d1, 4);
    fs::create_dir_all(d1.join("cache")).unwrap();
    fs::write(d1.join("cache/x"), "excluded").unwrap();
    fs::write(d1.join("edit.swp"), "excluded").unwrap();
    let excluded = |rel: &Path| {
        let s = rel.to_string_lossy();
        s.ends_with("/cache") || s.ends_with(".swp")
    };
    let cfg = syncd_tests::WorkerConfig::new(site.state.path(), site.src())
        .local(dst.path(), None)
        .exclude("/cache$")
        .exclude(r"\.swp$")
        .initial_sync(true);
    let mut w = Worker::start(&cfg);
    let check = || {
        syncd_tests::SyncCheck::new(site.src(), dst.path())
            .with(&w)
            .ignore(excluded)
            .forbid_on_target(excluded)
            .within(WAIT)
    };
    check().wait();

    fs::rename(&d1, site.src().join("ren/d2")).unwrap();
    check().wait();
    assert!(
        !dst.path().join("ren/d1").exists(),
        "the old directory is gone"
    );
    assert_eq!(
        fs::read(dst.path().join("ren/d2/f00007")).unwrap(),
        fs::read(site.src().join("ren/d2/f00007")).unwrap()
    );
    // Renamed again, and a file changed inside: still in step.
    fs::rename(site.src().join("ren/d2"), site.src().join("d3")).unwrap();
    fs::write(site.src().join("d3/f00001"), "changed").unwrap();
    check().wait();
    w.stop();
}
