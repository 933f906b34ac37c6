//! A failure stays local: one path that keeps failing (a source file the worker may not
//! read) is retried on its own while the target's other changes keep arriving, is listed
//! in the status with rsync's reason and kept in the fail log, and arrives (leaving the
//! list) once it can be read.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::tree::{chmod, write_file};
use crate::harness::{assert_in_sync, Site, Worker};

/// The worker (and its rsync runs) still uid 0 but without root's right to read
/// whatever it likes: mode bits apply to it as to anyone.
const WITHOUT_DAC_CAPS: &[&str] = &[
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-all",
];

/// The retry backoff of the test's sync: a batch held back whole would wait this long.
const BACKOFF: &str = "8s";
/// Other changes must arrive well within the backoff.
const QUICK: Duration = Duration::from_secs(3);

/// Wait until `path` on the target holds `data`; panic after `within` with the logs.
fn arrives(w: &Worker, site: &Site, path: &str, data: &[u8], within: Duration) {
    let target = site.dst().join(path);
    let started = Instant::now();
    while std::fs::read(&target).ok().as_deref() != Some(data) {
        assert!(
            started.elapsed() < within,
            "{path} did not reach the target within {within:?} (a failing path elsewhere must not hold it back: retry backoff {BACKOFF})\n{}\n{:?}",
            w.log(),
            w.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Does any fail log under the state directory name `path`?
fn fail_log_names(state: &Path, path: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(state.join("faillog")) else {
        return false;
    };
    entries.flatten().any(|e| {
        std::fs::read(e.path())
            .map(|data| data.windows(path.len()).any(|w| w == path.as_bytes()))
            .unwrap_or(false)
    })
}

#[test]
fn a_path_that_keeps_failing_is_retried_on_its_own_while_other_changes_arrive() {
    let site = Site::new();
    let cfg = site.config().retry(Some((BACKOFF, BACKOFF)));
    let mut w = Worker::start_under(&cfg, WITHOUT_DAC_CAPS);
    let secret = site.src().join("stuck/secret.txt");

    // A file the worker cannot read, and one it can. The unreadable one is moved in
    // already unreadable (written and chmodded in place, a push could catch it between).
    write_file(&site.src().join("stuck/fine.txt"), b"fine");
    let aside = tempfile::tempdir_in(site.src().parent().expect("the source has a parent"))
        .expect("a tempdir beside the source");
    write_file(
        &aside.path().join("secret.txt"),
        b"written while unreadable",
    );
    chmod(&aside.path().join("secret.txt"), 0o000);
    std::fs::rename(aside.path().join("secret.txt"), &secret).expect("move it in");
    arrives(&w, &site, "stuck/fine.txt", b"fine", QUICK);
    w.wait_log("send_files failed to open", QUICK);

    // Later changes, beside it and in its directory, arrive on their normal schedule,
    // each far sooner than the backoff the failing path waits.
    for round in 0..3 {
        let name = format!("stuck/later-{round}.txt");
        write_file(&site.src().join(&name), name.as_bytes());
        arrives(&w, &site, &name, name.as_bytes(), QUICK);
        let other = format!("elsewhere/{round}.txt");
        write_file(&site.src().join(&other), b"x");
        arrives(&w, &site, &other, b"x", QUICK);
    }
    assert!(
        !site.dst().join("stuck/secret.txt").exists(),
        "the unreadable file cannot have arrived"
    );

    // The status lists it with rsync's reason; the target itself is not failing.
    let s = w.status().expect("status");
    let t = &s.syncs[0].targets[0];
    let failing = t
        .failing_paths
        .clone()
        .unwrap_or_else(|| panic!("the status lists the failing path: {t:?}\n{}", w.log()));
    assert_eq!(failing.count, 1, "{failing:?}");
    assert_eq!(failing.examples[0].path, "stuck/secret.txt", "{failing:?}");
    assert!(
        failing.examples[0].reason.contains("Permission denied"),
        "the reason is rsync's: {failing:?}"
    );
    assert_eq!(
        t.consecutive_failures, 0,
        "the target itself is not failing"
    );
    assert!(
        fail_log_names(cfg.state_dir(), "stuck/secret.txt"),
        "the fail log keeps the failing path"
    );

    // The cause removed: it arrives on its own retry and leaves the list.
    chmod(&secret, 0o644);
    w.wait_status(
        "the failing path to leave the list",
        Duration::from_secs(30),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].failing_paths.is_none(),
    );
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(20),
        &[&w, &site.daemon],
    );
    assert!(!fail_log_names(cfg.state_dir(), "stuck/secret.txt"));
    w.stop();
}
