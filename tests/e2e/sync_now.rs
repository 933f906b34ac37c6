//! `syncd sync [--full]` end to end with the real binaries and a local target (moved here
//! from the controller's unit tests, which must pass without built binaries): with no
//! daemon running it runs the worker once; with one running it has the worker push now
//! and returns when that push is done.

use std::fs;
use std::time::Duration;

use syncd_tests::controller::show;
use syncd_tests::tree::source_dir;
use syncd_tests::{Controller, Diagnose, WorkerConfig};
use syncd_worker::status::Status;

/// A source, a state dir and a local target directory in tempdirs; changes wait an hour
/// unless pushed now.
struct Local {
    src: tempfile::TempDir,
    state: tempfile::TempDir,
    dst: tempfile::TempDir,
}

impl Local {
    fn new() -> Local {
        Local {
            src: source_dir(),
            state: tempfile::tempdir().expect("state tempdir"),
            dst: tempfile::tempdir().expect("target tempdir"),
        }
    }

    fn config(&self) -> WorkerConfig {
        WorkerConfig::new(self.state.path(), self.src.path())
            .local(self.dst.path(), None)
            .delay(Some("1h"))
            .key("max_delay", "\"1h\"")
    }

    fn status(&self) -> Option<Status> {
        Status::read(&self.state.path().join("status.json")).ok()
    }
}

fn exits_0(c: &Controller, args: &[&str]) {
    let out = c.cmd(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "syncd {args:?}: {}\n{}",
        show(&out),
        c.diagnose()
    );
}

#[test]
fn without_a_running_daemon_sync_runs_the_worker_once() {
    let l = Local::new();
    fs::write(l.src.path().join("a.txt"), "a").expect("write a.txt");
    let c = Controller::new(&l.config());
    exits_0(&c, &["sync", "--full"]);
    assert!(l.dst.path().join("a.txt").is_file(), "{}", c.diagnose());
    assert!(c.controller_pid().is_none(), "no daemon was started");
}

#[test]
fn through_a_running_daemon_sync_pushes_what_is_pending_now() {
    let l = Local::new();
    let c = Controller::new(&l.config());
    c.start();
    // Pending, but not due for an hour: `sync` pushes it now.
    fs::write(l.src.path().join("pending.txt"), "p").expect("write pending.txt");
    c.wait_status("the change queued", Duration::from_secs(20), &[], |_| {
        l.status()
            .is_some_and(|s| s.syncs[0].targets[0].queue_depth > 0)
    });
    exits_0(&c, &["sync"]);
    assert!(
        l.dst.path().join("pending.txt").is_file(),
        "{}",
        c.diagnose()
    );

    // --full repairs what inotify cannot see.
    fs::remove_file(l.dst.path().join("pending.txt")).expect("rm on the target");
    exits_0(&c, &["sync", "--full"]);
    assert!(
        l.dst.path().join("pending.txt").is_file(),
        "{}",
        c.diagnose()
    );
    let s = l.status().expect("the worker's status");
    assert!(s.syncs[0].targets[0].full_syncs >= 1, "{s:?}");
    c.stop();
}
