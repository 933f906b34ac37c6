//! Never destroy the backup: the pushes' own safety rules, with the real worker and a real
//! daemon: excludes mean the same in every push, `-u` dropped. An unreadable source
//! directory and a directory replaced by a file are faults in `faults.rs`.

use std::time::Duration;

use nix::sys::signal::Signal;

use syncd_tests::tree::write_file;
use syncd_tests::{assert_in_sync, Site, Worker};

/// The worker (and so its rsync runs) without root's right to read whatever it likes:
/// still uid 0, but mode bits apply to it as to anyone.
pub(crate) const WITHOUT_DAC_CAPS: &[&str] = &[
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-all",
];

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
    w.signal(Signal::SIGUSR2);
    w.wait_status(
        "the whole-tree push after SIGUSR2",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].full_syncs >= 1,
    );
    // `big` arrives (only the periodic push leaves it out); `secret` never does.
    site.check(&w)
        .ignore(is_secret)
        .forbid_on_target(is_secret)
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
    site.check(&w)
        .ignore(|rel| is_secret(rel) || rel == std::path::Path::new("big/blob"))
        .forbid_on_target(is_secret)
        .within(Duration::from_secs(20))
        .wait();
    w.stop();
}
