//! Pipelining: a push made slow on purpose (`--bwlimit` in the sync's rsync options, a
//! big file) does not hold other changes back — a small file written meanwhile reaches
//! the target before the big push ends; a file changed during its own push is pushed
//! again after it; a daemon with `max connections = 1` refuses the second push, which
//! waits its turn (nothing lost, no failure counted, said once).

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;
use syncd_tests::tree::write_file;
use syncd_tests::{wait, RsyncDaemon, Site, TreeWriter, Worker, WorkerConfig};

use crate::busy::{LIMIT, REFUSED};

/// 8 MiB at 2 MiB/s: the big push runs about 4 s.
const BIG: usize = 8 << 20;
const SLOW: &str = "[sync.rsync]\nextra = [\"--bwlimit=2048\"]";

fn slow(site: &Site) -> WorkerConfig {
    site.config().retry(None).raw(SLOW)
}

/// Write the big file and wait until the worker pushes it.
fn big_push_started(site: &Site, w: &mut Worker, seed: u64) {
    TreeWriter::new(seed).file(&site.src().join("big.bin"), BIG);
    w.wait_status(
        "the big file's push in flight",
        Duration::from_secs(10),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].in_flight > 0,
    );
}

/// Wait until `name` is on the target with `data`.
fn arrived(site: &Site, w: &Worker, name: &str, data: &[u8]) {
    let path = site.dst().join(name);
    wait::must(
        format_args!("{name} on the target"),
        Duration::from_secs(20),
        &[w, &site.daemon],
        || match fs::read(&path) {
            Ok(got) if got == data => Ok(()),
            Ok(_) => Err("other content"),
            Err(_) => Err("missing"),
        },
    );
}

/// Is the big file on the target, whole and equal to the source's?
fn big_landed(site: &Site) -> bool {
    let (src, dst) = (site.src().join("big.bin"), site.dst().join("big.bin"));
    matches!((fs::read(src), fs::read(dst)), (Ok(a), Ok(b)) if a == b)
}

#[test]
fn a_small_file_overtakes_a_slow_big_push() {
    let site = Site::new();
    let mut w = Worker::start(&slow(&site));
    big_push_started(&site, &mut w, 1);
    write_file(&site.src().join("small.txt"), b"small\n");
    arrived(&site, &w, "small.txt", b"small\n");
    assert!(
        !site.dst().join("big.bin").exists(),
        "the small file waited for the big push\n{}",
        w.log()
    );
    site.check(&w).within(Duration::from_secs(30)).wait();
    let st = w.wait_status("both pushes done", Duration::from_secs(5), &[], |s| {
        let t = &s.syncs[0].targets[0];
        t.in_flight == 0 && t.queue_depth == 0
    });
    let t = &st.syncs[0].targets[0];
    assert_eq!((t.pushes_ok, t.pushes_failed), (2, 0), "{st:#?}");
    w.stop();
}

#[test]
fn a_file_changed_during_its_own_slow_push_is_pushed_again_after_it() {
    let site = Site::new();
    let mut w = Worker::start(&slow(&site));
    big_push_started(&site, &mut w, 2);
    // New content under the same name (a new inode: the push in flight keeps reading the
    // old one), and a small file beside it. Another size: rsync's quick check compares
    // whole seconds of mtime, so same-size content rewritten within the second of the
    // first push would be skipped by any rsync-based tool.
    let tmp = site.src().join(".big.new");
    TreeWriter::new(3).file(&tmp, BIG + 4096);
    fs::rename(&tmp, site.src().join("big.bin")).expect("rename the new big file in");
    write_file(&site.src().join("small.txt"), b"small\n");
    arrived(&site, &w, "small.txt", b"small\n");
    // The first push lands the old content; the second (after it) the new one.
    site.check(&w).within(Duration::from_secs(30)).wait();
    assert!(big_landed(&site));
    w.stop();
}

#[test]
fn a_one_connection_daemon_gets_everything_in_order() {
    let site = Site::with_daemon(RsyncDaemon::start_with_module_settings(LIMIT));
    let refused = site.daemon.log_count(REFUSED);
    let mut w = Worker::start(&slow(&site));
    big_push_started(&site, &mut w, 4);
    write_file(&site.src().join("small.txt"), b"small\n");
    // The push started beside the big one is refused (while the big one runs): it waits
    // for the big one.
    site.daemon
        .wait_log(REFUSED, refused, Duration::from_secs(10), &[&w]);
    assert!(
        !site.dst().join("big.bin").exists(),
        "no push was tried beside the big one\n{}",
        w.log()
    );
    arrived(&site, &w, "small.txt", b"small\n");
    assert!(big_landed(&site), "the small file went before the big one");
    // More changes, one push at a time now.
    for i in 0..3 {
        write_file(
            &site.src().join(format!("more/{i}")),
            format!("{i}\n").as_bytes(),
        );
    }
    site.check(&w).within(Duration::from_secs(30)).wait();
    let st = w.wait_status("settled", Duration::from_secs(5), &[], |s| {
        let t = &s.syncs[0].targets[0];
        t.in_flight == 0 && t.queue_depth == 0
    });
    let t = &st.syncs[0].targets[0];
    assert_eq!((t.pushes_failed, t.consecutive_failures), (0, 0), "{st:#?}");
    assert_eq!(t.last_error, None, "{st:#?}");
    let said = w.log().matches("one rsync run at a time").count();
    assert_eq!(said, 1, "said once\n{}", w.log());
    w.stop();
}

#[test]
fn a_stop_finishes_every_push_in_flight() {
    let site = Site::new();
    let mut w = Worker::start(&slow(&site));
    big_push_started(&site, &mut w, 5);
    // Both pushes stay in flight while the daemon is frozen; the stop waits for both.
    let frozen = site.daemon.freeze();
    write_file(&site.src().join("small.txt"), b"small\n");
    w.wait_status(
        "the small file in a second push",
        Duration::from_secs(10),
        &[],
        |s| s.syncs[0].targets[0].in_flight == 2,
    );
    w.signal(Signal::SIGTERM);
    w.wait_log("finishing 2 push(es) in flight", Duration::from_secs(10));
    drop(frozen);
    let exited = wait::until_every(
        "syncd-worker's exit once both pushes ended",
        Duration::from_secs(30),
        wait::SHORT_POLL,
        || w.poll_exit(),
    );
    let st = exited.unwrap_or_else(|t| wait::fail(t, &[&w, &site.daemon]));
    assert!(st.success(), "exit {st}\n{}", w.log());
    assert!(big_landed(&site), "the big push was not finished");
    assert!(
        site.dst().join("small.txt").is_file(),
        "the small push was not finished"
    );
}
