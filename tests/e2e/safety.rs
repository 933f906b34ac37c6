//! Never destroy the backup: the pushes' own safety rules, with the real worker and a real
//! daemon. A source directory the worker may not read keeps its target copy.

use std::time::Duration;

use crate::harness::tree::{chmod, write_file, SyncCheck};
use crate::harness::{assert_in_sync, Site, Worker};

/// The worker (and so its rsync runs) without root's right to read whatever it likes:
/// still uid 0, but mode bits apply to it as to anyone.
const WITHOUT_DAC_CAPS: &[&str] = &[
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-all",
];

#[test]
fn a_source_dir_the_worker_cannot_read_keeps_its_target_copy_in_a_full_push() {
    let site = Site::new();
    write_file(
        &site.src().join("locked/secret"),
        b"only copy left on the backup",
    );
    write_file(&site.src().join("locked/sub/deep"), b"deep");
    write_file(&site.src().join("keep.txt"), b"keep");
    site.daemon.push_with_rsync(site.src());
    let mut w = Worker::start_under(&site.config(), WITHOUT_DAC_CAPS);

    // The directory becomes unreadable for the worker (EACCES, as with root_squash NFS).
    chmod(&site.src().join("locked"), 0o000);
    // Behind syncd's back: only a whole-tree push deletes this (rsync deletes it before
    // it meets the read error or after the retry; either is right).
    write_file(&site.dst().join("junk"), b"target only");
    w.signal(libc::SIGUSR2);
    let s = w.wait_status(
        "the whole-tree push to fail on the unreadable directory",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| {
            s.syncs[0].targets[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("locked"))
        },
    );
    let error = s.syncs[0].targets[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("deleted nothing on the target after that error")
            && error.contains("Permission denied"),
        "the error says why nothing was deleted: {error}"
    );
    for kept in ["locked/secret", "locked/sub/deep", "keep.txt"] {
        assert!(
            site.dst().join(kept).is_file(),
            "{kept} deleted on the target after a read error\n{}",
            w.log()
        );
    }
    assert!(w.log().contains("locked"), "{}", w.log());

    // Readable again: the retry completes the push.
    let before = w.status().expect("status").syncs[0].targets[0].full_syncs;
    chmod(&site.src().join("locked"), 0o755);
    w.wait_status(
        "the retried whole-tree push to succeed",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].full_syncs > before,
    );
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(20),
        &[&w, &site.daemon],
    );
    assert!(!site.dst().join("junk").exists());
    w.stop();
}

#[test]
fn a_file_restored_with_an_older_mtime_reaches_the_target_despite_artuz() {
    // sersync's example params: `-u` would skip the restored file (the target's copy is
    // newer), so the backup would keep the wrong content. syncd drops `-u` at start.
    let site = Site::new();
    let cfg = site.config().raw("[sync.rsync]\nparams = [\"-artuz\"]");
    let mut w = Worker::start(&cfg);
    assert!(
        w.log().contains("\"-artuz\" became \"-atz\"") && w.log().contains("older"),
        "the worker warns that -u was dropped\n{}",
        w.log()
    );
    let file = site.src().join("report.txt");
    write_file(&file, b"version 2, written today");
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(20),
        &[&w, &site.daemon],
    );

    // Restored from an old backup the way restore tools do it: written aside with its
    // old time, then renamed into place.
    let aside = tempfile::tempdir_in(site.src().parent().expect("source has a parent"))
        .expect("tempdir beside the source");
    let restored = aside.path().join("report.txt");
    write_file(&restored, b"version 1");
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_577_836_800); // 2020-01-01
    std::fs::File::options()
        .write(true)
        .open(&restored)
        .and_then(|f| f.set_modified(old))
        .expect("set the old mtime");
    std::fs::rename(&restored, &file).expect("rename into the source");
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(20),
        &[&w, &site.daemon],
    );
    assert_eq!(
        std::fs::read(site.dst().join("report.txt")).expect("target copy"),
        b"version 1"
    );
    w.stop();
}

#[test]
fn a_new_dir_replaced_by_a_file_before_its_push_arrives_as_the_file() {
    // The queue holds a `Tree` for `d` (created, then deleted and created again as a
    // file: a pending tree stays a tree). A delay longer than these few system calls
    // keeps them in one batch.
    let site = Site::new();
    let mut w = Worker::start(&site.config().delay(Some("500ms")));
    let d = site.src().join("d");
    std::fs::create_dir(&d).expect("mkdir d");
    write_file(&d.join("f"), b"x");
    std::fs::remove_dir_all(&d).expect("rm -r d");
    write_file(&d, b"data");
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(20),
        &[&w, &site.daemon],
    );
    assert_eq!(
        std::fs::read(site.dst().join("d")).expect("d on the target"),
        b"data"
    );
    w.stop();
}

/// `exclude` hides `secret`; `full_sync.exclude` hides `big` from the periodic push only
/// (narrower than `exclude`: it does not name `secret`). Both exist before the worker
/// starts, so only a whole-tree push can carry them.
fn two_exclude_site(interval: &str) -> (Site, Worker) {
    let site = Site::new();
    write_file(&site.src().join("secret/key"), b"never on the backup");
    write_file(&site.src().join("big/blob"), b"not in the periodic push");
    write_file(&site.src().join("plain"), b"everywhere");
    let cfg = site.config().exclude("^secret$").raw(&format!(
        "[sync.full_sync]\ninterval = \"{interval}\"\nexclude = [\"^big$\"]"
    ));
    let w = Worker::start(&cfg);
    (site, w)
}

fn is_secret(rel: &std::path::Path) -> bool {
    rel.starts_with("secret")
}

#[test]
fn an_operators_full_push_uses_exclude_not_the_periodic_excludes() {
    let (site, mut w) = two_exclude_site("0");
    w.signal(libc::SIGUSR2);
    w.wait_status(
        "the whole-tree push after SIGUSR2",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].full_syncs >= 1,
    );
    // `big` arrives (only the periodic push leaves it out); `secret` never does.
    SyncCheck::new(site.src(), &site.dst())
        .ignore(is_secret)
        .forbid_on_target(is_secret)
        .with(&w)
        .with(&site.daemon)
        .within(Duration::from_secs(20))
        .wait();
    w.stop();
}

#[test]
fn the_periodic_push_adds_full_sync_exclude_and_changes_under_it_still_arrive() {
    let (site, mut w) = two_exclude_site("1s");
    // Nothing else pushes the whole tree here (no initial sync, first start).
    w.wait_status(
        "a periodic full push",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].full_syncs >= 1,
    );
    assert!(site.dst().join("plain").is_file(), "{}", w.log());
    assert!(
        !site.dst().join("big").exists(),
        "the periodic push leaves big out"
    );
    assert!(!site.dst().join("secret").exists(), "exclude applies too");
    // A change under `big` is an ordinary change: pushed with `exclude` alone.
    write_file(&site.src().join("big/new"), b"changed while watched");
    SyncCheck::new(site.src(), &site.dst())
        .ignore(|rel| is_secret(rel) || rel == std::path::Path::new("big/blob"))
        .forbid_on_target(is_secret)
        .with(&w)
        .with(&site.daemon)
        .within(Duration::from_secs(20))
        .wait();
    w.stop();
}
