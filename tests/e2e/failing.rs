//! A failure stays local: one path that keeps failing (a source file the worker may not
//! read) is retried on its own while the target's other changes keep arriving, is listed
//! in the status with rsync's reason and kept in the fail log, and arrives (leaving the
//! list) once it can be read.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use syncd_tests::tree::{chmod, wait_past_seed, write_file};
use syncd_tests::wait;
use syncd_tests::{assert_in_sync, toml_str, Site, Worker, WorkerConfig};

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
    arrives_in(w, &site.dst(), path, data, within);
}

/// [`arrives`] for the target directory `dst`.
fn arrives_in(w: &Worker, dst: &Path, path: &str, data: &[u8], within: Duration) {
    let target = dst.join(path);
    wait::must(
        format_args!(
            "{path} in the target (a failing path elsewhere must not hold it back: retry backoff {BACKOFF})"
        ),
        within,
        &[w],
        || std::fs::read(&target).ok().as_deref() == Some(data),
    );
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

    // The status lists it with rsync's reason; the target itself is not failing. (The
    // status file is rewritten at most every 200 ms: wait for it.)
    let s = w.wait_status("the failing path listed", QUICK, &[], |s| {
        s.syncs[0].targets[0].failing_paths.is_some()
    });
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

    // A whole-tree push meets it too (`syncd sync --full`, a restart's catch-up, the
    // periodic full sync): the push counts as done but for it, and later changes still
    // go on their normal schedule (retried whole, the pending full push would cover them
    // all and wait for the backoff).
    let full_syncs = |s: &syncd_worker::status::Status| s.syncs[0].targets[0].full_syncs;
    let before = full_syncs(&w.status().expect("status"));
    w.signal(Signal::SIGUSR2);
    w.wait_status(
        "the whole-tree push to count as done but for the failing path",
        QUICK,
        &[&site.daemon],
        |s| full_syncs(s) > before && s.syncs[0].targets[0].failing_paths.is_some(),
    );
    write_file(&site.src().join("after-full.txt"), b"z");
    arrives(&w, &site, "after-full.txt", b"z", QUICK);

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

/// A directory of the target made immutable (`chattr +i`: even the daemon's root cannot
/// create, rename or delete in it); made mutable again when dropped, also after a panic,
/// so the daemon's tempdir can go.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Immutable {
        std::fs::create_dir_all(dir).expect("create the target directory");
        chattr("+i", dir);
        Immutable(dir.to_path_buf())
    }

    fn clear(&self) {
        chattr("-i", &self.0);
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

fn chattr(flag: &str, path: &Path) {
    let out = std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .output()
        .expect("run chattr (e2fsprogs)");
    assert!(
        out.status.success(),
        "chattr {flag} {}: {} — this test needs a file system with the immutable flag (ext4, xfs, btrfs) under the temp dir",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_target_directory_the_daemon_cannot_write_holds_back_only_its_own_paths_also_across_a_restart()
{
    let site = Site::new();
    // The command hook logs every path a push reports as pushed.
    let hook_log = site.state.path().join("hooked");
    let hook = format!(
        "[sync.hooks.command]\nargv = [\"/bin/sh\", \"-c\", {}, \"sh\"]",
        toml_str(&format!(
            "printf '%s\\n' \"$@\" >> '{}'",
            hook_log.display()
        ))
    );
    let cfg = site.config().retry(Some((BACKOFF, BACKOFF))).raw(&hook);
    let hooked = |rel: &str| {
        let want = site.src().join(rel).to_string_lossy().into_owned();
        std::fs::read_to_string(&hook_log).is_ok_and(|l| l.lines().any(|x| x == want))
    };
    // The failing path may go as itself or within its directory pushed whole (the
    // restart's catch-up queues changed directories as trees).
    let hooked_locked = || hooked("locked/a.txt") || hooked("locked");
    // Directories made before the start: a restart's catch-up then walks for changed
    // files instead of pushing the whole tree (a whole-tree push is never split).
    for dir in ["locked", "free"] {
        std::fs::create_dir_all(site.src().join(dir)).expect("mkdir");
    }
    wait_past_seed(site.src());
    let lock = Immutable::set(&site.dst().join("locked"));
    let mut w = Worker::start(&cfg);

    write_file(&site.src().join("locked/a.txt"), b"cannot land yet");
    w.wait_log("failing path", QUICK);
    for round in 0..3 {
        let name = format!("free/{round}.txt");
        write_file(&site.src().join(&name), name.as_bytes());
        arrives(&w, &site, &name, name.as_bytes(), QUICK);
    }
    let listed = |s: &syncd_worker::status::Status| {
        s.syncs[0].targets[0]
            .failing_paths
            .as_ref()
            .is_some_and(|f| {
                f.examples.iter().any(|e| {
                    e.path == "locked/a.txt" && e.reason.contains("the target cannot create it")
                })
            })
    };
    let s = w.wait_status("the failing path listed", QUICK, &[], listed);
    assert_eq!(s.syncs[0].targets[0].consecutive_failures, 0);
    // Hooks fire for what went, never for the failing path.
    wait::must("a hook for free/2.txt", QUICK, &[&w], || {
        hooked("free/2.txt")
    });
    assert!(!hooked("locked/a.txt"), "a hook fired for the failing path");

    // A restart keeps it: the fail log replays it, it fails again and is listed again.
    w.stop();
    assert!(fail_log_names(cfg.state_dir(), "locked/a.txt"));
    let mut w = Worker::start(&cfg);
    let pid = w.pid();
    w.wait_status(
        "the restarted worker to list the failing path again",
        Duration::from_secs(10),
        &[&site.daemon],
        |s| Some(s.pid) == pid && listed(s),
    );
    write_file(&site.src().join("free/after-restart.txt"), b"y");
    arrives(&w, &site, "free/after-restart.txt", b"y", QUICK);

    assert!(!hooked("locked/a.txt"), "a hook fired for the failing path");

    lock.clear();
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
    wait::must(
        "a hook for locked/a.txt once it went",
        QUICK,
        &[&w],
        hooked_locked,
    );
    w.stop();
}

#[test]
fn a_local_target_directory_that_cannot_be_written_holds_back_only_its_own_paths() {
    // A local receiver names paths absolutely (`mkstemp "/dst/locked/.a.txt.XXXXXX"`).
    let site = Site::new();
    let dst = tempfile::Builder::new()
        .prefix("syncd-e2e-local.")
        .tempdir()
        .expect("a local target");
    let cfg = WorkerConfig::new(site.state.path(), site.src())
        .local(dst.path(), None)
        .retry(Some((BACKOFF, BACKOFF)));
    for dir in ["locked", "free"] {
        std::fs::create_dir_all(site.src().join(dir)).expect("mkdir");
    }
    let lock = Immutable::set(&dst.path().join("locked"));
    let mut w = Worker::start(&cfg);

    write_file(&site.src().join("locked/a.txt"), b"cannot land yet");
    w.wait_log("failing path", QUICK);
    for round in 0..2 {
        let name = format!("free/{round}.txt");
        write_file(&site.src().join(&name), name.as_bytes());
        arrives_in(&w, dst.path(), &name, name.as_bytes(), QUICK);
    }
    let s = w.wait_status("the failing path listed", QUICK, &[], |s| {
        s.syncs[0].targets[0].failing_paths.is_some()
    });
    let t = &s.syncs[0].targets[0];
    let failing = t
        .failing_paths
        .clone()
        .unwrap_or_else(|| panic!("{t:?}\n{}", w.log()));
    assert!(
        failing
            .examples
            .iter()
            .any(|e| e.path == "locked/a.txt" && e.reason.contains("Operation not permitted")),
        "{failing:?}"
    );

    lock.clear();
    w.wait_status(
        "the failing path to leave the list",
        Duration::from_secs(30),
        &[],
        |s| s.syncs[0].targets[0].failing_paths.is_none(),
    );
    assert_in_sync(site.src(), dst.path(), Duration::from_secs(20), &[&w]);
    w.stop();
}
