//! The deletion guard (`max_delete`, default 50%): a whole-tree push that would delete
//! most of the target pushes nothing, says so, and waits for `syncd sync --full
//! --force`; a push that deletes a little goes ahead.

use std::fs;
use std::time::Duration;

use crate::harness::tree::write_file;
use crate::harness::{Site, SyncCheck, TreeWriter, Worker};

const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

fn count_files(dir: &std::path::Path) -> usize {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("ls {}: {e}", dir.display()))
        .count()
}

#[test]
fn whole_tree_push_deleting_most_of_the_target_stops_until_forced() {
    let site = Site::new();
    TreeWriter::new(91).files(site.src(), &["d"], 20, 10, 500);
    // The target holds the source and two stray files: a small deletion.
    site.daemon.push_with_rsync(site.src());
    write_file(&site.dst().join("d/stray1"), b"x");
    write_file(&site.dst().join("d/stray2"), b"x");
    let cfg = site.config().initial_sync(true);
    let mut w = Worker::start(&cfg);
    SyncCheck::new(site.src(), &site.dst())
        .with(&w)
        .with(&site.daemon)
        .within(SYNC_TIMEOUT)
        .wait();
    w.wait_log("deleting 2 entries on the target", SYNC_TIMEOUT);

    // 180 entries on the target that the source lacks: deleting them is 90 % of it.
    let extra = site.dst().join("old");
    for i in 0..180 {
        write_file(&extra.join(format!("e{i:03}")), b"only on the target");
    }
    write_file(&site.src().join("d/changed-meanwhile"), b"new");
    w.signal(libc::SIGUSR2);
    let st = w.wait_status("the guard tripped", SYNC_TIMEOUT, &[&site.daemon], |s| {
        s.syncs[0].targets[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("deletion guard"))
    });
    let why = st.syncs[0].targets[0]
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        why.contains("would delete 181 entries") && why.contains("--force"),
        "the reason names the count and the way out: {why}"
    );
    assert_eq!(
        count_files(&extra),
        180,
        "the guarded push deleted files\n{}",
        w.log()
    );
    // Nothing was pushed: the source may be the wrong one.
    assert!(!site.dst().join("d/changed-meanwhile").exists());

    // The operator checked: force it.
    syncd_worker::force::request(site.state.path()).expect("request --force");
    w.signal(libc::SIGUSR2);
    SyncCheck::new(site.src(), &site.dst())
        .with(&w)
        .with(&site.daemon)
        .within(SYNC_TIMEOUT)
        .wait();
    w.wait_status("no failure left", SYNC_TIMEOUT, &[], |s| {
        s.syncs[0].targets[0].consecutive_failures == 0
    });
    w.stop();
}
