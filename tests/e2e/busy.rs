//! A daemon module with `max connections = 1` (common on backup servers): a batch that
//! needs two rsync runs converges with the default `threads = 2`, and a target busy from
//! the start waits and says so. The slot held by another client while the worker runs is
//! a fault in `faults.rs` (which uses the helpers here).

use std::fs;
use std::path::Path;
use std::time::Duration;

use syncd_tests::daemon::HOLD_FILE;
use syncd_tests::tree::write_file;
use syncd_tests::{RsyncDaemon, Site, Worker};

pub(crate) const LIMIT: &str = "max connections = 1";
pub(crate) const REFUSED: &str = "max connections (1) reached";

/// Append `text` to the file at `path`.
pub(crate) fn append(path: &Path, text: &str) {
    let mut data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    data.extend_from_slice(text.as_bytes());
    write_file(path, &data);
}

/// Files that exist on both sides before the worker starts.
pub(crate) fn seed(site: &Site) {
    for name in ["y", "z", "old/a"] {
        write_file(&site.src().join(name), format!("{name}\n").as_bytes());
    }
    site.daemon.push_with_rsync(site.src());
}

/// A batch holding new directories with files (pushed whole) and changed files (a paths
/// run): two rsync runs.
pub(crate) fn new_dirs_and_changed_files(src: &Path, round: usize) {
    for d in 0..3 {
        let dir = src.join(format!("n{round}-{d}"));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        write_file(&dir.join("f"), format!("{round} {d}\n").as_bytes());
        write_file(&dir.join("g"), format!("{d} {round}\n").as_bytes());
    }
    append(&src.join("y"), &format!("{round}\n"));
    append(&src.join("old/a"), &format!("{round}\n"));
}

#[test]
fn one_connection_daemon_gets_a_two_run_batch_with_default_threads() {
    let site = Site::with_daemon(RsyncDaemon::start_with_module_settings(LIMIT));
    seed(&site);
    let mut w = Worker::start(&site.config().retry(None));
    for round in 0..3 {
        new_dirs_and_changed_files(site.src(), round);
        site.check(&w).within(Duration::from_secs(10)).wait();
    }
    // The status file lags the pushes by up to 200 ms: wait for it to settle clean.
    w.wait_status("no failure left", Duration::from_secs(5), &[], |s| {
        let t = &s.syncs[0].targets[0];
        t.consecutive_failures == 0 && t.last_error.is_none()
    });
    w.stop();
}

#[test]
fn a_target_busy_from_the_start_waits_for_a_connection_and_says_so() {
    let site = Site::with_daemon(RsyncDaemon::start_with_module_settings(LIMIT));
    seed(&site);
    let mut holder = site.daemon.hold_slot();
    let not_hold = |p: &Path| p == Path::new(HOLD_FILE);
    let refused = site.daemon.log_count(REFUSED);
    // The probe at start is refused: the target must wait, not be failed as misconfigured.
    let mut w = Worker::start(&site.config().retry(None));
    new_dirs_and_changed_files(site.src(), 0);
    let s = w.wait_status(
        "the target shown waiting for a busy daemon",
        Duration::from_secs(10),
        &[&site.daemon],
        |s| {
            let t = &s.syncs[0].targets[0];
            t.consecutive_failures > 0
                && t.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("waiting for a busy daemon"))
        },
    );
    assert!(
        s.syncs[0].targets[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("max connections (1) reached")),
        "{s:#?}"
    );
    // Tried again and again, soon (1 s apart, not doubling), but said once.
    site.daemon
        .wait_log(REFUSED, refused + 3, Duration::from_secs(8), &[&w]);
    let said = w.log().matches("waiting for a free connection").count();
    assert_eq!(said, 1, "one warning per busy episode\n{}", w.log());
    assert!(!w.log().contains("fix the configuration"), "{}", w.log());

    holder.release();
    site.check(&w)
        .ignore(not_hold)
        .within(Duration::from_secs(5))
        .wait();
    w.wait_status(
        "last_error cleared once the daemon took the push",
        Duration::from_secs(5),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].last_error.is_none(),
    );
    w.wait_log(
        "no longer waiting for a busy daemon",
        Duration::from_secs(5),
    );
    w.stop();
}
