//! State files damaged by a power cut (a fail log emptied or cut short, a clean-stop
//! record that is garbage) never stop the worker: each is moved aside with a warning and
//! answered by a whole-tree push, and the target ends equal to the source.
//!
//! The proof of the whole-tree push is a sentinel: a file only on the target, which only
//! a push with `--delete` over the whole tree removes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use syncd_tests::tree::write_file;
use syncd_tests::{assert_in_sync, Site, TreeWriter, Worker};

const SENTINEL: &str = "keep/target-only.txt";

/// Seed the source, push it by plain rsync, add the sentinel on the target; then run a
/// worker while the target is down so that it leaves a real fail log (one file changed
/// while the daemon was down), and stop it cleanly. Returns the fail log's path.
fn leave_a_fail_log(site: &mut Site) -> PathBuf {
    TreeWriter::new(7).files(site.src(), &["keep", "work"], 20, 100, 2000);
    site.daemon.push_with_rsync(site.src());
    write_file(&site.dst().join(SENTINEL), b"only on the target");

    let mut w = Worker::start(&site.config());
    // One push while the daemon is up, so the target's probe is done: a probe that
    // fails counts no failed push, and the test waits for one.
    write_file(&site.src().join("work/while-up.txt"), b"pushed");
    w.wait_status(
        "a push while the daemon is up",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].pushes_ok > 0,
    );
    site.daemon.stop();
    write_file(&site.src().join("work/while-down.txt"), b"pending");
    w.wait_status(
        "a failed push while the daemon is down",
        Duration::from_secs(20),
        &[],
        |s| s.syncs[0].targets[0].pushes_failed > 0,
    );
    w.stop();
    site.daemon.restart();

    let dir = site.state.path().join("faillog");
    let logs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("ls {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    assert_eq!(
        logs.len(),
        1,
        "one fail log expected: {logs:?}\n{}",
        w.log()
    );
    let data = fs::read(&logs[0]).expect("read the fail log");
    assert!(
        data.windows(b"while-down".len())
            .any(|w| w == b"while-down"),
        "the fail log holds the pending path: {:?}",
        String::from_utf8_lossy(&data)
    );
    logs[0].clone()
}

/// The files in `dir` whose names start with `prefix`.
fn set_aside(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("ls {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect()
}

/// Start a worker on the damaged state and wait until the target equals the source
/// (sentinel included: it must be gone) and the first push is done; return its log.
fn start_and_catch_up(site: &Site) -> (Worker, String) {
    let mut w = Worker::start(&site.config());
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(30),
        &[&w, &site.daemon],
    );
    w.wait_status(
        "the first push finished, a whole-tree push",
        Duration::from_secs(30),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].pushes_ok >= 1 && s.syncs[0].targets[0].full_syncs >= 1,
    );
    let log = w.log();
    (w, log)
}

#[test]
fn empty_fail_log_and_garbage_catchup_record_are_set_aside_and_pushed_whole() {
    let mut site = Site::new();
    let faillog = leave_a_fail_log(&mut site);
    let name = faillog
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    fs::write(&faillog, b"").expect("empty the fail log");
    let record = site.state.path().join("catchup.json");
    fs::write(&record, b"{\"version\": 1, \"state\": \"stopp\0\0\0").expect("garbage record");

    let (mut w, log) = start_and_catch_up(&site);
    assert!(
        log.contains(&format!("fail log {} is damaged", faillog.display()))
            && log.contains("moved it to")
            && log.contains("pushes the whole tree to this target"),
        "expected the fail log warning:\n{log}"
    );
    assert!(
        log.contains("clean-stop record") && log.contains("every sync gets a whole-tree push"),
        "expected the record warning:\n{log}"
    );
    let dir = faillog.parent().expect("faillog/");
    let aside = set_aside(dir, &format!("{name}.corrupt-"));
    assert_eq!(aside.len(), 1, "{aside:?}\n{log}");
    assert_eq!(fs::read(&aside[0]).expect("read"), b"", "kept as it was");
    let aside = set_aside(site.state.path(), "catchup.json.corrupt-");
    assert_eq!(aside.len(), 1, "{aside:?}\n{log}");
    w.stop();
}

#[test]
fn torn_fail_log_alone_gets_its_target_a_whole_tree_push() {
    let mut site = Site::new();
    let faillog = leave_a_fail_log(&mut site);
    // Cut inside the last record: what a power cut without fsync can leave.
    let data = fs::read(&faillog).expect("read the fail log");
    fs::write(&faillog, &data[..data.len() - 3]).expect("tear the fail log");
    // The clean stop left a valid record: without the fail log, a ctime walk would do.

    let (mut w, log) = start_and_catch_up(&site);
    assert!(
        log.contains(&format!("fail log {} is damaged", faillog.display()))
            && log.contains("cut short"),
        "expected the fail log warning:\n{log}"
    );
    assert!(!log.contains("clean-stop record"), "{log}");
    let name = faillog.file_name().expect("file name").to_string_lossy();
    let dir = faillog.parent().expect("faillog/");
    let aside = set_aside(dir, &format!("{name}.corrupt-"));
    assert_eq!(aside.len(), 1, "{aside:?}\n{log}");
    assert_eq!(fs::read(&aside[0]).expect("read"), &data[..data.len() - 3]);
    w.stop();
}
