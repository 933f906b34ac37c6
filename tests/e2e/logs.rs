//! The daemon's logs: under systemd (`$JOURNAL_STREAM` naming the very stderr) every
//! line of controller and worker carries an sd-daemon(3) priority prefix and no
//! timestamp, a multi-line message on each line; with a `$JOURNAL_STREAM` naming
//! something else, the timestamped format. `syncd reopen-logs` after the log file was
//! moved away (as logrotate does): the lines before stay in the old file, the worker's
//! later lines land in a new file at the configured path, created with the old one's
//! owner and mode; with `user` set too (`unprivileged.rs` runs [`reopen_after_rotation`]);
//! and so with the shipped `init/syncd.logrotate` run by the real `logrotate -f`, which
//! does not fail when syncd is stopped.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use syncd_tests::controller::{kill, says, show, syncd_bin};
use syncd_tests::tree::write_file;
use syncd_tests::{assert_in_sync, Controller, Diagnose, Site};

const SYNC_TIMEOUT: Duration = Duration::from_secs(20);
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// `"<device>:<inode>"` of `path`, as systemd puts it in `$JOURNAL_STREAM`.
fn dev_ino(path: &Path) -> (u64, u64) {
    let m = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.dev(), m.ino())
}

/// `syncd run` with its stdout and stderr on the controller's log file (created first)
/// and `$JOURNAL_STREAM` set to what `stream` makes of that file's device and inode;
/// waits until the worker is ready.
fn run_with_journal_stream(c: &Controller, stream: impl Fn((u64, u64)) -> String) -> Child {
    write_file(&c.log_path(), b"");
    let value = stream(dev_ino(&c.log_path()));
    let child = c.spawn_run_env(
        &[],
        &c.dir().join("no-notify-socket"),
        &[("JOURNAL_STREAM", &value)],
    );
    c.wait_log(&["ready"], LOG_TIMEOUT);
    child
}

/// `2026-11-24T13:55:40.123Z LEVEL ` at the start of `line`.
fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ ";
    b.len() > shape.len()
        && shape.bytes().zip(b).all(|(s, &c)| match s {
            b'd' => c.is_ascii_digit(),
            _ => s == c,
        })
        && ["ERROR ", "WARN ", "INFO ", "DEBUG ", "TRACE "]
            .iter()
            .any(|l| line[shape.len()..].starts_with(l))
}

#[test]
fn under_systemd_every_line_has_a_priority_prefix_and_no_timestamp() {
    let site = Site::new();
    let mut c = Controller::new(&site.config());
    let mut child = run_with_journal_stream(&c, |(dev, ino)| format!("{dev}:{ino}"));
    write_file(&site.src().join("hello.txt"), b"hello");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    // A multi-line error: a reload of an invalid config (the message quotes the loader's).
    let good = fs::read_to_string(c.config_path()).expect("read the config");
    c.rewrite_config(&format!("{good}\nno_such_key = 1\n"));
    kill(child.id(), Signal::SIGHUP);
    c.wait_log(&["no_such_key"], LOG_TIMEOUT);
    c.stop_run(&mut child);

    let log = c.log();
    let lines: Vec<&str> = log.lines().collect();
    for line in &lines {
        let prefixed = ["<3>", "<4>", "<6>", "<7>"]
            .iter()
            .any(|p| line.starts_with(p));
        assert!(
            prefixed && !has_timestamp(&line[3..]),
            "not an sd-daemon line: {line:?}\n{log}"
        );
    }
    // The controller's lines and the worker's (it inherits the journal stream): a push.
    for (prefix, needle) in [
        ("<6>", "controller pid"),
        ("<6>", "ready"),
        ("<6>", "pushed 1 path"),
        ("<3>", "reload refused"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(prefix) && l.contains(needle)),
            "no {prefix} line with {needle:?}:\n{log}"
        );
    }
    // Each line of the multi-line refusal is an error line of its own.
    let refused = lines
        .iter()
        .position(|l| l.contains("reload refused"))
        .expect("the refusal");
    let key = lines
        .iter()
        .position(|l| l.contains("no_such_key"))
        .expect("the loader's line");
    assert!(key > refused, "{log}");
    for l in &lines[refused..=key] {
        assert!(
            l.starts_with("<3>"),
            "{l:?} of the refusal is not <3>:\n{log}"
        );
    }
}

#[test]
fn a_journal_stream_that_is_not_stderr_keeps_the_timestamped_format() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    // Inherited from a service whose stderr went elsewhere: another file's identity.
    let mut child = run_with_journal_stream(&c, |(dev, ino)| format!("{dev}:{}", ino + 1));
    write_file(&site.src().join("hello.txt"), b"hello");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);
    c.stop_run(&mut child);
    let log = c.log();
    assert!(log.lines().count() > 3, "{log}");
    for line in log.lines() {
        assert!(has_timestamp(line), "not timestamped: {line:?}\n{log}");
    }
}

/// Start `c` (a `syncd start` daemon logging to its file), give the log an owner and mode
/// of the operator's choosing, `rotate` it (move it away and have the daemon reopen it;
/// returns where it went): the worker's next lines land in a new file at the path, with
/// the old one's owner and mode; nothing logged before is lost.
fn rotated_and_reopened(site: &Site, c: &Controller, rotate: impl FnOnce(&Path) -> PathBuf) {
    c.start();
    write_file(&site.src().join("before.txt"), b"before the rotation");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[c, &site.daemon]);
    let log = c.log_path();
    fs::set_permissions(&log, fs::Permissions::from_mode(0o640)).expect("chmod the log");
    nix::unistd::chown(&log, Some(1.into()), Some(4.into())).expect("chown the log");
    let before = fs::read_to_string(&log).expect("read the log");
    let rotated = rotate(&log);

    // The worker says so in the new file, and a change made now is logged there.
    c.wait_log(
        &["log file reopened: this worker writes to the new one"],
        LOG_TIMEOUT,
    );
    write_file(&site.src().join("after.txt"), b"after the rotation");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[c, &site.daemon]);
    c.wait_log(&["pushed 1 path"], LOG_TIMEOUT);

    let old = fs::read_to_string(&rotated).expect("read the rotated log");
    assert!(old.starts_with(&before), "the old file lost lines:\n{old}");
    assert!(old.contains("reopen-logs: reopening"), "{old}");
    assert!(
        !old.contains("this worker writes to the new one"),
        "the worker's later lines went to the old file:\n{old}"
    );
    let new = c.log();
    assert!(!new.contains(&before), "{new}");
    let m = fs::metadata(&log).expect("the new log file");
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (1, 4, 0o640),
        "the new log file's owner and mode:\n{new}"
    );
}

/// [`rotated_and_reopened`] by hand: `mv syncd.log syncd.log.1; syncd reopen-logs` (the
/// daemon creates the new file). Also run with `user` set by `unprivileged.rs`.
pub fn reopen_after_rotation(site: &Site, c: &Controller) {
    rotated_and_reopened(site, c, |log| {
        let rotated = log.with_extension("log.1");
        fs::rename(log, &rotated).expect("move the log away");
        let out = c.cmd(&["reopen-logs"]);
        assert!(
            out.status.success() && says(&out, "requested"),
            "syncd reopen-logs:\n{}{}",
            show(&out),
            c.diagnose()
        );
        rotated
    });
}

/// `init/syncd.logrotate` aimed at `c`: its log directory, its syncd, and a defaults
/// file (as `/etc/default/syncd`) with its config and path flags.
fn logrotate_conf(c: &Controller) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../init/syncd.logrotate");
    let mut text = fs::read_to_string(&shipped).expect("read init/syncd.logrotate");
    let defaults = c.dir().join("defaults");
    fs::write(
        &defaults,
        format!(
            "SYNCD_CONFIG=\"{}\"\nSYNCD_OPTS=\"{}\"\n",
            c.config_path().display(),
            c.path_flags().join(" ")
        ),
    )
    .expect("write the defaults file");
    for (from, to) in [
        (
            "/var/log/syncd/".to_string(),
            format!("{}/", c.dir().display()),
        ),
        (
            "/usr/bin/syncd".to_string(),
            syncd_bin().display().to_string(),
        ),
        (
            "/etc/sysconfig/syncd /etc/default/syncd".to_string(),
            defaults.display().to_string(),
        ),
    ] {
        assert!(
            text.contains(&from),
            "init/syncd.logrotate no longer has {from:?}"
        );
        text = text.replace(&from, &to);
    }
    let conf = c.dir().join("logrotate.conf");
    fs::write(&conf, text).expect("write the logrotate config");
    conf
}

/// `logrotate -f` (a forced rotation, its own state file); must succeed.
fn logrotate(conf: &Path, c: &Controller) {
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(c.dir().join("logrotate.state"))
        .arg(conf)
        .output()
        .expect("run logrotate (scripts/test installs it)");
    assert!(
        out.status.success(),
        "logrotate:\n{}{}",
        show(&out),
        c.diagnose()
    );
}

#[test]
fn the_shipped_logrotate_file_rotates_without_losing_a_line() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    let conf = logrotate_conf(&c);
    rotated_and_reopened(&site, &c, |log| {
        logrotate(&conf, &c);
        log.with_extension("log.1")
    });
    // With syncd stopped, the postrotate script does not fail the rotation.
    c.stop();
    logrotate(&conf, &c);
    assert!(c.dir().join("syncd.log.2.gz").exists(), "{}", c.diagnose());
}

#[test]
fn reopen_logs_says_there_is_nothing_to_reopen_when_the_daemon_logs_elsewhere() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    // As under systemd: stderr is not a file (here /dev/null; there the journal's socket).
    let no = c.dir().join("no-notify-socket");
    let mut child = c.spawn_run_to(&[], &no, &[], Stdio::null(), Stdio::null());
    c.wait_status("running", SYNC_TIMEOUT, &[], |v| v["phase"] == "running");
    let out = c.cmd(&["reopen-logs"]);
    assert!(
        out.status.success() && says(&out, "does not log to a file") && says(&out, "/dev/null"),
        "syncd reopen-logs:\n{}",
        show(&out)
    );
    c.stop_run(&mut child);
}

#[test]
fn reopen_logs_moves_to_a_new_file_after_a_rotation_and_loses_nothing() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    reopen_after_rotation(&site, &c);
    // Not running: exit 7, like reload.
    c.stop();
    let out = c.cmd(&["reopen-logs"]);
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
}
