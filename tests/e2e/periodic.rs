//! The periodic full sync (sersync's crontab) repairs what inotify cannot see — here a
//! file deleted on the target behind syncd's back — and the command hook runs after
//! pushes with the absolute pushed paths, no shell in syncd itself.

use std::fs;
use std::time::Duration;

use syncd_tests::wait;
use syncd_tests::{toml_str, Site, Worker};

fn wait_for(what: &str, w: &Worker, bound: Duration, ok: impl Fn() -> bool) {
    wait::must(what, bound, &[w], ok);
}

#[test]
fn periodic_full_sync_repairs_the_target_and_the_command_hook_gets_pushed_paths() {
    let site = Site::new();
    // Outside the watched tree, removed on drop even when the test fails.
    let hook_dir = tempfile::tempdir().expect("tempdir for the hook's log");
    let hook_log = hook_dir.path().join("hook.log");
    let hook = format!(
        "[sync.full_sync]\ninterval = \"1s\"\n\n[sync.hooks.command]\nargv = [\"/bin/sh\", \"-c\", {}, \"sh\"]",
        toml_str(&format!("printf '%s\\n' \"$@\" >> '{}'", hook_log.display()))
    );
    let mut w = Worker::start(&site.config().raw(&hook));
    let src_file = site.src().join("a.txt");
    fs::write(&src_file, "hello").unwrap();
    let dst_file = site.dst().join("a.txt");
    wait_for("a.txt on the target", &w, Duration::from_secs(20), || {
        fs::read(&dst_file).ok().as_deref() == Some(b"hello".as_slice())
    });
    let want = src_file.to_string_lossy().into_owned();
    wait_for("the hook to log a.txt", &w, Duration::from_secs(20), || {
        fs::read_to_string(&hook_log).is_ok_and(|l| l.lines().any(|x| x == want))
    });
    // Behind syncd's back: inotify on the source sees nothing of this.
    fs::remove_file(&dst_file).unwrap();
    wait_for(
        "the full sync to restore a.txt",
        &w,
        Duration::from_secs(20),
        || fs::read(&dst_file).ok().as_deref() == Some(b"hello".as_slice()),
    );
    w.wait_status(
        "full_syncs >= 1 in status",
        Duration::from_secs(20),
        &[&site.daemon],
        |s| s.syncs[0].targets[0].full_syncs >= 1,
    );
    w.stop();
}
