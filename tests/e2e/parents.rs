//! A directory of the source swapped for a symlink to a directory outside it while a path
//! below it waits to be pushed (failing alone until its retry, or in the fail log
//! replayed by `--once`): nothing is read through the symlink — the secret's marker never reaches
//! the target — and the symlink itself is pushed, so the target ends equal to the source.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use syncd_tests::tree::{chmod, write_file};

use crate::safety::WITHOUT_DAC_CAPS;
use syncd_tests::worker::{config_args, run_to_exit};
use syncd_tests::{wait, Diagnose, Site, Worker};

const MARKER: &[u8] = b"SECRET-MARKER outside the source";

/// A directory outside the source holding `f` (the name the source's `d/f` had) with
/// the marker.
fn secret() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("syncd-e2e-secret.")
        .tempdir()
        .expect("create the secret tempdir");
    write_file(&dir.path().join("f"), MARKER);
    dir
}

/// `src/d` (a directory) replaced by a symlink to `to`.
fn swap_for_symlink(src: &Path, to: &Path) {
    fs::remove_dir_all(src.join("d")).expect("rm -r d");
    std::os::unix::fs::symlink(to, src.join("d")).expect("ln -s secret d");
}

/// Regular files under `root` (symlinks not followed) holding the marker.
fn marker_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() && fs::read(entry.path()).is_ok_and(|d| d == MARKER) => {
                    found.push(entry.path());
                }
                _ => {}
            }
        }
    }
    found
}

/// The target equals the source (its `d` a symlink too, pointing anywhere), never held the marker, and the
/// worker's `log` says what it left out.
fn assert_symlink_pushed_and_no_secret(
    site: &Site,
    fixture: &dyn Diagnose,
    log: &dyn Fn() -> String,
) {
    // An rsync daemon rewrites the symlink's target (it strips the leading `/`); what
    // counts is that `d` is a symlink there.
    site.check(fixture)
        .ignore(|p| p == Path::new("d"))
        .within(Duration::from_secs(30))
        .wait();
    let is_link = || fs::symlink_metadata(site.dst().join("d")).is_ok_and(|m| m.is_symlink());
    let leaked = wait::must(
        "the target's d to be a symlink (or the secret to arrive)",
        Duration::from_secs(30),
        &[fixture],
        || {
            let leaked = marker_files(&site.dst());
            (is_link() || !leaked.is_empty()).then_some(leaked)
        },
    );
    assert_eq!(
        leaked,
        Vec::<PathBuf>::new(),
        "the secret reached the target\n{}",
        log()
    );
    assert!(
        log().contains("d is a symlink to"),
        "the path left out is logged:\n{}",
        log()
    );
}

/// A path the worker may not read fails alone and waits for its retry; meanwhile its
/// directory is swapped. (A path merely queued does not wait for the swap: the event for
/// `d` itself takes `d/f` out of the queue, `d` going as a path covers it.)
#[test]
fn a_failing_path_below_a_directory_swapped_for_a_symlink_reads_nothing_through_it() {
    let site = Site::new();
    let secret = secret();
    write_file(&site.src().join("d/f"), b"public");
    site.daemon.push_with_rsync(site.src());
    let cfg = site.config().retry(Some(("2s", "2s")));
    let mut w = Worker::start_under(&cfg, WITHOUT_DAC_CAPS);

    // `d/f` made unreadable (moved in already so): it fails alone and waits 2 s.
    let aside = tempfile::tempdir_in(site.src().parent().expect("the source has a parent"))
        .expect("a tempdir beside the source");
    write_file(&aside.path().join("f"), b"unreadable");
    chmod(&aside.path().join("f"), 0o000);
    fs::rename(aside.path().join("f"), site.src().join("d/f")).expect("move it in");
    w.wait_status(
        "d/f failing alone",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].failing_paths.is_some(),
    );
    swap_for_symlink(site.src(), secret.path());
    w.wait_status(
        "d/f tried again and no longer failing",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].failing_paths.is_none(),
    );
    assert_symlink_pushed_and_no_secret(&site, &w, &|| w.log());
}

/// The fail log replayed by `--once` (no watcher, no catch-up walk: after a restart the
/// walk would queue the swapped directory's parent whole, which covers the path).
#[test]
fn a_fail_log_path_below_a_directory_swapped_for_a_symlink_while_stopped_reads_nothing_through_it()
{
    let mut site = Site::new();
    let secret = secret();
    write_file(&site.src().join("d/f"), b"public");
    site.daemon.push_with_rsync(site.src());
    site.daemon.stop();
    let mut w = Worker::start(&site.config());
    write_file(&site.src().join("d/f"), b"changed");
    w.wait_status(
        "d/f queued while the daemon is down",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].queue_depth > 0,
    );
    w.stop(); // saves d/f to the fail log
    swap_for_symlink(site.src(), secret.path());
    site.daemon.restart();

    let dir = tempfile::tempdir().expect("tempdir");
    let (st, _, err) = run_to_exit(
        &config_args(dir.path(), &site.config(), &["--once"]),
        Duration::from_secs(60),
    );
    assert!(st.success(), "--once exited {st}\nstderr:\n{err}");
    assert_symlink_pushed_and_no_secret(&site, &site.daemon, &|| err.clone());
}
