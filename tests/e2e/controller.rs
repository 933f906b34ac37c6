//! The controller `syncd` as an operator drives it: `start` (returns once watching, says
//! "already running" the second time, clears a stale pidfile without signalling the
//! unrelated process its pid now names, refuses a bad config with exit 6 and leaves
//! nothing behind, and says once, at the first start of a new state directory, that nothing
//! already in the source was pushed), `status` (LSB codes and `--json`), `stop` (nothing left running),
//! `reload` and `kill -HUP` (a good config applies in place, a bad one is refused and the
//! daemon keeps syncing), sersync's `-d -r -n -o`, and `syncd run` with `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use syncd_tests::controller::{is_alive, kill, notify_socket_of, says, show, text, wait_gone};
use syncd_tests::tree::{source_dir, write_file};
use syncd_tests::wait;
use syncd_tests::{assert_in_sync, toml_str, Controller, Diagnose, Site, SyncCheck, TreeWriter};

const SYNC_TIMEOUT: Duration = Duration::from_secs(20);
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Status fields every running controller must show.
fn assert_running(v: &serde_json::Value, ctl_pid: u32, c: &Controller) {
    let worker = v["worker_pid"].as_u64();
    assert!(
        v["code"] == 0
            && v["running"] == true
            && v["pid"].as_u64() == Some(u64::from(ctl_pid))
            && worker.is_some()
            && v["phase"] == "running"
            && v["worker"]["pid"].as_u64() == worker
            && v["message"].as_str().is_some_and(|m| !m.contains('\n')),
        "status of a running syncd (controller pid {ctl_pid}):\n{v:#}\n{}",
        c.diagnose()
    );
}

#[test]
fn start_status_sync_stop_leaves_no_process() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    let (code, v) = c.status_json();
    assert_eq!(code, Some(3), "not started yet: status must be 3\n{v:#}");
    assert_eq!(v["running"], false, "{v:#}");

    let pid = c.start();
    let (code, v) = c.status_json();
    assert_eq!(code, Some(0), "{v:#}");
    assert_running(&v, pid, &c);
    for key in [
        "code",
        "running",
        "pid",
        "phase",
        "worker_pid",
        "restarts",
        "last_exit",
        "error",
        "message",
        "worker",
    ] {
        assert!(v.get(key).is_some(), "status --json lacks {key:?}\n{v:#}");
    }
    let state = c.controller_state().expect("<state_dir>/controller.json");
    for key in [
        "pid",
        "started_at",
        "phase",
        "worker_pid",
        "worker_started_at",
        "restarts",
        "last_exit",
        "restart_at",
        "error",
    ] {
        assert!(
            state.get(key).is_some(),
            "controller.json lacks {key:?}\n{state:#}"
        );
    }
    assert_eq!(state["pid"].as_u64(), Some(u64::from(pid)), "{state:#}");
    let worker = c.worker_pid().expect("a worker pid in controller.json");
    // Global flags work after the command too.
    let after = c.cmd_flags_after(&["status", "--json"]);
    assert_eq!(after.status.code(), Some(0), "{}", show(&after));
    assert_eq!(v["worker_pid"].as_u64(), Some(u64::from(worker)), "{v:#}");
    assert!(is_alive(pid) && is_alive(worker), "{v:#}");
    // The human form has the same exit code.
    let human = c.cmd(&["status"]);
    assert_eq!(human.status.code(), Some(0), "{}", show(&human));
    assert!(text(&human.stdout).contains("running"), "{}", show(&human));

    write_file(&site.src().join("hello.txt"), b"hello");
    TreeWriter::new(41).files(site.src(), &["d", "d/e"], 50, 0, 4000);
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);

    c.stop();
    let (code, v) = c.status_json();
    assert_eq!(code, Some(3), "after stop status must be 3\n{v:#}");
    assert!(
        v["running"] == false && v["pid"].is_null() && v["worker_pid"].is_null(),
        "{v:#}"
    );
    wait_gone(pid, STATUS_TIMEOUT, "the controller after stop", &[&c]);
    wait_gone(worker, STATUS_TIMEOUT, "the worker after stop", &[&c]);
    c.wait_no_processes(STATUS_TIMEOUT);
    // Stopping what is not running is fine too (LSB).
    let again = c.cmd(&["stop"]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
}

#[test]
fn second_start_says_already_running_and_changes_nothing() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    let pid = c.start();
    let worker = c.worker_pid().expect("worker pid");
    let out = c.cmd(&["start"]);
    assert!(
        out.status.success() && says(&out, "already running"),
        "second start: expected exit 0 and \"already running\"\n{}",
        show(&out)
    );
    assert_eq!(c.controller_pid(), Some(pid), "the pidfile changed");
    assert_eq!(c.worker_pid(), Some(worker), "the worker changed");
    assert!(is_alive(pid) && is_alive(worker));
    // One controller and one worker, nothing more.
    assert_eq!(
        c.processes().len(),
        2,
        "expected exactly 2 processes\n{}",
        c.diagnose()
    );
    write_file(&site.src().join("still.txt"), b"still syncing");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    c.stop();
}

/// A pid that was ours a moment ago and is dead now.
/// `initial_sync` off (the default): the first start of a new state directory pushes
/// nothing already in the source. `start` says so, with the command that completes the
/// target, that once: the next start catches up from the clean stop's record.
#[test]
fn first_start_of_a_new_state_dir_says_once_that_nothing_old_was_pushed() {
    let site = Site::new();
    write_file(
        &site.src().join("before.txt"),
        b"here before the first start",
    );
    let c = Controller::new(&site.config());
    let first = c.cmd(&["start"]);
    c.expect_started(&first, "syncd start (first)");
    let sync_full = format!("syncd --config {} sync --full", c.config_path().display());
    assert!(
        says(&first, "is new to the state directory")
            && says(&first, &site.src().display().to_string())
            && says(&first, &sync_full),
        "the first start must say that what is in the source was not pushed, and `{sync_full}`\n{}",
        show(&first)
    );
    c.stop();
    let second = c.cmd(&["start"]);
    c.expect_started(&second, "syncd start (second)");
    assert!(
        !says(&second, "new to the state directory"),
        "the note is for the first start only\n{}",
        show(&second)
    );
    // The log says it too (for `syncd run` under systemd, where no `start` prints it),
    // once: at the first start.
    let noted = c
        .log()
        .lines()
        .filter(|l| l.contains("was not pushed (initial_sync is off"))
        .count();
    assert_eq!(noted, 1, "the log's note, once\n{}", c.log());
    // What the note promises: `sync --full` makes the target complete.
    let full = c.cmd(&["sync", "--full"]);
    assert!(full.status.success(), "{}", show(&full));
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    c.stop();
}

fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("run true");
    let pid = child.id();
    child.wait().expect("reap true");
    assert!(!is_alive(pid));
    pid
}

#[test]
fn stale_pidfile_of_a_dead_pid_is_cleared_by_start() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    let dead = dead_pid();
    std::fs::write(c.pidfile(), format!("{dead}\n")).expect("write a stale pidfile");
    let (code, v) = c.status_json();
    assert_eq!(
        code,
        Some(1),
        "a pidfile without a live syncd: status must be 1\n{v:#}"
    );
    assert_eq!(v["running"], false, "{v:#}");

    let pid = c.start();
    assert_ne!(pid, dead, "the stale pid is still in the pidfile");
    let (_, v) = c.status_json();
    assert_running(&v, pid, &c);
    write_file(&site.src().join("after-stale.txt"), b"x");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    c.stop();
}

/// An unrelated process the test owns; killed on Drop.
struct Bystander(Child);

impl Bystander {
    fn sleep() -> Bystander {
        Bystander(
            Command::new("sleep")
                .arg("600")
                .stdin(Stdio::null())
                .spawn()
                .expect("run sleep 600"),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn assert_alive(&mut self, when: &str, c: &Controller) {
        assert!(
            matches!(self.0.try_wait(), Ok(None)),
            "the unrelated `sleep` (pid {}) named by the stale pidfile was killed {when}\n{}",
            self.pid(),
            c.diagnose()
        );
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn stale_pidfile_naming_a_live_unrelated_process_never_signals_it() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    let mut sleeper = Bystander::sleep();
    std::fs::write(c.pidfile(), format!("{}\n", sleeper.pid())).expect("write the pidfile");

    let (code, v) = c.status_json();
    assert_eq!(
        code,
        Some(1),
        "pidfile names a non-syncd: status must be 1\n{v:#}"
    );
    let out = c.cmd(&["stop", "--timeout", "2s"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stop with nothing running\n{}",
        show(&out)
    );
    sleeper.assert_alive("by `syncd stop`", &c);
    // `stop` may clear the stale pidfile; put it back for `start` to find.
    std::fs::write(c.pidfile(), format!("{}\n", sleeper.pid())).expect("write the pidfile");

    let pid = c.start();
    assert_ne!(pid, sleeper.pid());
    sleeper.assert_alive("by `syncd start`", &c);
    write_file(&site.src().join("f.txt"), b"f");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    c.stop();
    sleeper.assert_alive("by `syncd stop` of the real daemon", &c);
}

/// A config the loader refuses: an unknown key on line 5 of the file.
fn bad_config(site: &Site) -> String {
    with_typo(&site.config().to_toml())
}

/// `good` with a misspelt key (`delya`) in its first `[[sync]]`.
fn with_typo(good: &str) -> String {
    let mut lines: Vec<&str> = good.lines().collect();
    let sync = lines
        .iter()
        .position(|l| *l == "[[sync]]")
        .expect("a [[sync]] line");
    lines.insert(sync + 1, "delya = \"20ms\"");
    lines.join("\n") + "\n"
}

/// A config broken after the start (a typo, a source gone): `status` and `stop` given
/// only `--config` still find the running syncd by the `pid_file` the file names, instead
/// of looking for the default pidfile and calling it not running.
#[test]
fn a_config_broken_after_the_start_still_names_the_running_syncd() {
    let site = Site::new();
    let mut c = Controller::new(&site.config());
    let pid = c.start();
    let named = site
        .config()
        .top_key("pid_file", &toml_str(&c.pidfile().to_string_lossy()))
        .top_key("log_file", &toml_str(&c.log_path().to_string_lossy()));
    c.rewrite_config(&with_typo(&named.to_toml()));
    let out = c.cmd_config_only(&["status"]);
    assert!(
        out.status.code() == Some(0) && says(&out, &format!("running (pid {pid})")),
        "status with a broken config naming the pidfile\n{}",
        show(&out)
    );
    let out = c.cmd_config_only(&["stop"]);
    assert!(out.status.success(), "stop\n{}", show(&out));
    wait_gone(pid, Duration::from_secs(30), "the controller", &[&c]);
}

/// The 1-based line of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text")
        + 1
}

#[test]
fn bad_config_start_fails_with_exit_6_and_leaves_nothing_behind() {
    let site = Site::new();
    let bad = bad_config(&site);
    let line = line_of(&bad, "delya");
    let c = Controller::with_config(&bad, "syncd.toml", site.state.path());
    let out = c.cmd(&["start"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "start with a bad config: expected exit 6\n{}",
        show(&out)
    );
    let err = text(&out.stderr);
    let file = c.config_path().to_string_lossy().into_owned();
    assert!(
        err.contains("delya") && err.contains(&file),
        "stderr should name the key and the file {file}\n{}",
        show(&out)
    );
    assert!(
        err.contains(&format!(":{line}:")) || err.contains(&format!("line {line}")),
        "stderr should give line {line}\n{}",
        show(&out)
    );
    assert!(!c.pidfile().exists(), "a pidfile was left behind");
    assert!(
        c.processes().is_empty(),
        "a process was left behind\n{}",
        c.diagnose()
    );
    assert!(
        !site.state.path().join("status.json").exists(),
        "a worker ran on a bad config"
    );
    let (code, v) = c.status_json();
    assert_eq!(code, Some(3), "{v:#}");
}

fn is_log(rel: &Path) -> bool {
    rel.extension().is_some_and(|e| e == "log")
}

#[test]
fn reload_with_a_new_exclude_applies_in_place() {
    let site = Site::new();
    let mut c = Controller::new(&site.config());
    let pid = c.start();
    let worker = c.worker_pid().expect("worker pid");
    write_file(&site.src().join("before.log"), b"pushed: not excluded yet");
    write_file(&site.src().join("a.txt"), b"a");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);

    c.rewrite_config(&site.config().exclude(r"\.log$").to_toml());
    let out = c.cmd(&["reload"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "reload of a good config\n{}",
        show(&out)
    );
    // The worker re-read the file (its summary line starts "reloaded ").
    c.wait_log(&["reloaded "], STATUS_TIMEOUT);

    write_file(&site.src().join("after.log"), b"excluded");
    write_file(&site.src().join("sub/deep.log"), b"excluded");
    write_file(&site.src().join("b.txt"), b"b");
    write_file(&site.src().join("sub/c.txt"), b"c");
    site.check(&c)
        .ignore(is_log)
        .forbid_on_target(|rel| is_log(rel) && rel != Path::new("before.log"))
        .within(SYNC_TIMEOUT)
        .wait();
    // In place: same controller, same worker, no restart.
    let (_, v) = c.status_json();
    assert_running(&v, pid, &c);
    assert_eq!(v["worker_pid"].as_u64(), Some(u64::from(worker)), "{v:#}");
    assert_eq!(v["restarts"], 0, "{v:#}");
    c.stop();
}

#[test]
fn reload_with_a_new_local_target_pushes_the_tree_to_it() {
    let site = Site::new();
    let local = source_dir();
    let mut c = Controller::new(&site.config());
    c.start();
    TreeWriter::new(42).files(site.src(), &["x", "y/z"], 60, 0, 5000);
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);

    c.rewrite_config(&site.config().local(local.path(), Some("local")).to_toml());
    let out = c.cmd(&["reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_in_sync(site.src(), local.path(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    write_file(&site.src().join("y/after.txt"), b"after the reload");
    assert_in_sync(site.src(), local.path(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    c.stop();
}

#[test]
fn reload_with_a_bad_config_is_refused_and_syncing_goes_on() {
    let site = Site::new();
    let mut c = Controller::new(&site.config());
    let pid = c.start();
    let worker = c.worker_pid().expect("worker pid");

    c.rewrite_config(&bad_config(&site));
    let out = c.cmd(&["reload"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "reload of a bad config: expected exit 6\n{}",
        show(&out)
    );
    assert!(text(&out.stderr).contains("delya"), "{}", show(&out));

    let (code, v) = c.status_json();
    assert_eq!(code, Some(0), "{v:#}");
    assert_running(&v, pid, &c);
    assert_eq!(v["worker_pid"].as_u64(), Some(u64::from(worker)), "{v:#}");
    write_file(
        &site.src().join("still.txt"),
        b"still syncing on the old config",
    );
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    // `stop` works although the config file is now invalid.
    c.stop();
}

#[test]
fn sighup_with_a_bad_config_keeps_the_old_one_and_logs_why() {
    let site = Site::new();
    let mut c = Controller::new(&site.config().exclude(r"\.tmp$"));
    let pid = c.start();
    let worker = c.worker_pid().expect("worker pid");

    c.rewrite_config(&bad_config(&site));
    kill(pid, Signal::SIGHUP);
    // The log names the offending key and says the reload was refused.
    c.wait_log(&["refused"], STATUS_TIMEOUT);
    c.wait_log(&["delya"], STATUS_TIMEOUT);

    let (_, v) = c.status_json();
    assert_running(&v, pid, &c);
    assert_eq!(v["worker_pid"].as_u64(), Some(u64::from(worker)), "{v:#}");
    // Still the old config: its exclude holds, everything else arrives.
    write_file(&site.src().join("x.tmp"), b"excluded by the old config");
    write_file(&site.src().join("kept.txt"), b"kept");
    let is_tmp = |rel: &Path| rel.extension().is_some_and(|e| e == "tmp");
    site.check(&c)
        .ignore(is_tmp)
        .forbid_on_target(is_tmp)
        .within(SYNC_TIMEOUT)
        .wait();
    c.stop();
}

#[test]
fn sersync_flags_start_a_daemon_with_an_initial_push() {
    let site = Site::new();
    // Existing files only arrive through the initial push (-r).
    TreeWriter::new(43).files(site.src(), &["web", "web/img"], 120, 0, 10_000);
    write_file(&site.dst().join("stale"), b"not in the source");
    let xml = site.sersync_confxml(&[], &[]);
    let c = Controller::with_config(&xml, "confxml.xml", site.state.path());
    let conf = c.config_path().to_string_lossy().into_owned();
    let out = c.cmd_without_config(&["-d", "-r", "-n", "2", "-o", &conf]);
    let pid = c.expect_started(&out, &format!("syncd -d -r -n 2 -o {conf}"));
    let (_, v) = c.status_json();
    assert_running(&v, pid, &c);
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    write_file(&site.src().join("web/live.html"), b"live change");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    c.stop();
}

#[test]
fn run_in_the_foreground_sends_ready_and_exits_0_on_sigterm() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    let sock_path = c.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set a read timeout");
    let mut child = c.spawn_run(&[], &sock_path);

    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The socket's read timeout paces the looks; the wait's pause comes on top.
    wait::must(
        "READY=1 from `syncd run`",
        Duration::from_secs(20),
        &[&c],
        || {
            if let Ok(n) = sock.recv(&mut buf) {
                let msg = text(&buf[..n]);
                let ready = msg.lines().any(|l| l == "READY=1");
                got.push(msg);
                if ready {
                    return Ok(());
                }
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "`syncd run` exited ({st}) before READY=1; got {got:?}\n{}",
                    c.diagnose()
                );
            }
            Err(format!("got {got:?}"))
        },
    );
    // READY means watching: a change made now arrives, and status sees the daemon.
    let (code, v) = c.status_json();
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["pid"].as_u64(), Some(u64::from(child.id())), "{v:#}");
    let worker = c.worker_pid().expect("worker pid");
    write_file(&site.src().join("fg.txt"), b"foreground");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);

    c.stop_run(&mut child);
    wait_gone(worker, STATUS_TIMEOUT, "the worker of `syncd run`", &[&c]);
    assert!(
        !c.pidfile().exists(),
        "pidfile left after `syncd run` exited"
    );
    let (code, v) = c.status_json();
    assert_eq!(code, Some(3), "{v:#}");
}

#[test]
fn restart_replaces_both_processes_and_keeps_syncing() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    let pid = c.start();
    let worker = c.worker_pid().expect("worker pid");
    let out = c.cmd(&["restart"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        show(&out),
        c.diagnose()
    );
    assert!(
        says(&out, "stopped") && says(&out, "started"),
        "{}",
        show(&out)
    );
    let new_pid = c.controller_pid().expect("a pidfile after restart");
    assert_ne!(new_pid, pid, "a new controller");
    wait_gone(pid, Duration::from_secs(10), "the old controller", &[&c]);
    wait_gone(worker, Duration::from_secs(10), "the old worker", &[&c]);
    write_file(&site.src().join("after-restart.txt"), b"x");
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(20),
        &[&c, &site.daemon],
    );
    c.stop();
}

#[test]
fn sync_full_through_the_running_daemon_repairs_the_target() {
    let site = Site::new();
    let c = Controller::new(&site.config().initial_sync(false));
    c.start();
    TreeWriter::new(7).files(site.src(), &["a", "b/c"], 40, 0, 4000);
    assert_in_sync(
        site.src(),
        &site.dst(),
        Duration::from_secs(20),
        &[&c, &site.daemon],
    );
    // Damage the target behind syncd's back: only a full push can see it.
    std::fs::remove_dir_all(site.dst().join("a")).expect("damage the target");
    write_file(&site.dst().join("stray.txt"), b"not in the source");
    let out = c.cmd(&["sync", "--full"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        show(&out),
        c.diagnose()
    );
    // `sync --full` returns once the full push is done: no waiting needed here.
    let diff = SyncCheck::new(site.src(), &site.dst()).differences(5);
    assert!(
        diff.is_empty(),
        "target differs right after `sync --full`: {diff:?}\n{}",
        c.diagnose()
    );
    assert!(c.worker_pid().is_some(), "still running");
    c.stop();
}

#[test]
fn a_request_for_watches_from_another_process_than_the_worker_is_ignored() {
    // The socket is abstract: anyone can send to it; only the worker may make the
    // controller write a sysctl. (This controller has SYNCD_NO_SYSCTL set, so even a
    // broken check changes nothing on the machine; the log says which check answered.)
    let site = Site::new();
    let c = Controller::new(&site.config());
    let pid = c.start();
    let socket = wait::must(
        "the controller's worker socket",
        STATUS_TIMEOUT,
        &[&c],
        || notify_socket_of("worker", pid),
    );
    let msg = format!("{}=4000000000", syncd_worker::contract::WATCHES_REQUEST);
    syncd_worker::notify::send_to(std::ffi::OsStr::new(&socket), &msg)
        .expect("send to the controller");
    let line = c.wait_log(
        &["ignored a request for inotify watches from pid"],
        STATUS_TIMEOUT,
    );
    assert!(
        line.contains(&std::process::id().to_string()),
        "names the sender: {line}"
    );
    assert!(
        !c.log().contains("it asks for 4000000000"),
        "acted on it\n{}",
        c.log()
    );
    c.stop();
}
