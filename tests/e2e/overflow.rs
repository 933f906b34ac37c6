//! inotify queue overflow: with `max_queued_events` lowered to 1 (a fast reader keeps up
//! with 64) for the worker's inotify
//! instance, a fast burst overflows the queue; the worker must notice (status `overflows`)
//! and still bring the target in step (rescan), losing nothing.

use std::time::Duration;

use crate::harness::{assert_in_sync, sysctl_exclusive, Site, SysctlOverride, TreeWriter, Worker};

#[test]
fn inotify_queue_overflow_is_counted_and_nothing_is_lost() {
    let site = Site::new();
    let mut w = {
        // No other worker may call inotify_init while the limit is low.
        let guard = sysctl_exclusive();
        let mut limit = SysctlOverride::set(&guard, "max_queued_events", 1);
        // The limit is read at inotify_init: put it back as soon as the worker has its
        // inotify instance, so other processes on the machine barely see it.
        Worker::start_exclusive(&site.config(), &guard, || limit.restore())
    };
    w.hold_shared();
    TreeWriter::new(14).files(site.src(), &["o0", "o1", "o2/deep"], 2000, 0, 512);
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(60),
        &[&w, &site.daemon],
    );
    let s = w.wait_status(
        "overflows >= 1 in status",
        Duration::from_secs(10),
        &[&site.daemon],
        |s| s.syncs[0].overflows >= 1,
    );
    assert!(s.syncs[0].overflows >= 1);
    w.stop();
}
