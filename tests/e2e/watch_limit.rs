//! Out of inotify watches (`ENOSPC`): with `max_user_watches` set just above what the
//! machine already uses, the worker cannot watch the whole tree. It must say which sysctl
//! to raise and by how much, report the unwatched directories in status as `degraded`,
//! and keep syncing what it does watch.

use std::fs;
use std::time::Duration;

use crate::harness::{sysctl_exclusive, Site, SysctlOverride, Worker};

/// Watches in use on the machine now (every process is root's here), from fdinfo.
fn watches_in_use() -> u64 {
    let mut n = 0;
    for proc_dir in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(fds) = fs::read_dir(proc_dir.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(text) = fs::read_to_string(fd.path()) {
                n += text
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count() as u64;
            }
        }
    }
    n
}

#[test]
fn out_of_watches_is_reported_with_the_sysctl_and_watched_part_still_syncs() {
    let site = Site::new();
    for i in 0..20 {
        fs::create_dir_all(site.src().join(format!("d{i:02}/sub"))).unwrap();
    }
    let mut w = {
        let guard = sysctl_exclusive();
        let mut limit = SysctlOverride::set(&guard, "max_user_watches", watches_in_use() + 3);
        let w = Worker::start_exclusive(&site.config(), &guard, || {});
        limit.restore();
        w
    };
    w.hold_shared();
    let s = w.wait_status(
        "degraded with unwatched directories",
        Duration::from_secs(10),
        &[&site.daemon],
        |s| s.syncs[0].unwatched_dirs > 0 && format!("{:?}", s.state) == "Degraded",
    );
    assert!(s.syncs[0].watched_dirs >= 1, "the root must be watched");
    let log = w.log();
    assert!(
        log.contains("fs.inotify.max_user_watches") && log.contains("sysctl -w"),
        "the error must name the sysctl and the command:\n{log}"
    );
    // The watched root still syncs.
    fs::write(site.src().join("top.txt"), "still synced").unwrap();
    let dst = site.dst();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fs::read(dst.join("top.txt")).ok().as_deref() != Some(b"still synced".as_slice()) {
        assert!(
            std::time::Instant::now() < deadline,
            "top.txt never reached the target\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    w.stop();
}
