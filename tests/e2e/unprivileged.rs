//! `user = "nobody"`: the controller stays root, the worker and every rsync it runs are
//! `nobody` with no capabilities and `no_new_privs`, the state directory (also what a
//! root run left in it, never through a symlink) becomes the user's, a root-only password
//! file reaches rsync through a private copy (the secret in no argv or environment), a
//! reload applies in place, a reload that changes `user` is refused, the copies are
//! gone after a stop, and `syncd reopen-logs` hands the worker the new log file (it may
//! not open it itself).

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::User;
use syncd_tests::controller::{kill, says, show, wait_gone};
use syncd_tests::tree::{chmod, source_dir, write_file};
use syncd_tests::{
    assert_in_sync, is_root, toml_str, wait, Controller, Diagnose, Site, TreeWriter,
};

const SYNC_TIMEOUT: Duration = Duration::from_secs(20);
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

fn nobody() -> User {
    User::from_name("nobody")
        .expect("look up nobody")
        .expect("an account named nobody")
}

/// `nobody`, and a site whose source `nobody` may read (its password file stays root's
/// alone: 0600 in a 0700 directory, as on a real server). Only root can drop to nobody.
fn unprivileged_site() -> (User, Site) {
    assert!(
        is_root(),
        "this test starts syncd as root and drops to nobody"
    );
    let site = Site::new();
    chmod(site.src(), 0o755);
    (nobody(), site)
}

/// `/proc/PID/status` as `Name` → value.
fn proc_status(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"))
}

fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in\n{status}"))
        .trim()
}

/// The process whose status this is runs as `who` (real, effective, saved, fs ids),
/// with no capability in any set and `no_new_privs`.
fn assert_unprivileged(what: &str, status: &str, who: &User, fixtures: &[&dyn Diagnose]) {
    let uid = who.uid.to_string();
    let gid = who.gid.to_string();
    let ids = |n| field(status, n).split_whitespace().collect::<Vec<_>>();
    let zero = "0000000000000000";
    let ok = ids("Uid") == [&*uid; 4]
        && ids("Gid") == [&*gid; 4]
        && ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
            .iter()
            .all(|c| field(status, c) == zero)
        && field(status, "NoNewPrivs") == "1";
    assert!(
        ok,
        "{what} should run as {} (uid {uid}, gid {gid}) with no capabilities and NoNewPrivs:\n{status}\n{}",
        who.name,
        syncd_tests::diagnostics(fixtures)
    );
}

/// An rsync wrapper that records its own status, argv and environment in `record`
/// (writable by anyone), then runs the real rsync.
fn rsync_recorder(dir: &Path, record: &Path) -> PathBuf {
    let path = dir.join("rsync-recorder");
    let r = record.display();
    write_file(
        &path,
        format!(
            "#!/bin/sh\ncat /proc/$$/status > {r}/status.$$\n\
             tr '\\0' '\\n' < /proc/$$/cmdline > {r}/cmdline.$$\n\
             tr '\\0' '\\n' < /proc/$$/environ > {r}/environ.$$\n\
             exec rsync \"$@\"\n"
        )
        .as_bytes(),
    );
    chmod(&path, 0o755);
    path
}

/// The recorded files of `kind` (status, cmdline, environ).
fn recorded(record: &Path, kind: &str) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = fs::read_dir(record)
        .expect("read the record dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{kind}.")))
        })
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap_or_default();
            (p, text)
        })
        .collect();
    out.sort();
    out
}

/// A site's config with `user = "nobody"` and rsync run through [`rsync_recorder`]: the
/// tempdir holding the recorder (keep it alive), the record directory, the config.
fn recording(site: &Site) -> (tempfile::TempDir, PathBuf, syncd_tests::WorkerConfig) {
    let tools = source_dir();
    chmod(tools.path(), 0o755);
    let record = tools.path().join("record");
    fs::create_dir(&record).expect("mkdir record");
    chmod(&record, 0o777);
    let rsync = rsync_recorder(tools.path(), &record);
    let cfg = site.config().top_key("user", "\"nobody\"").raw(&format!(
        "[sync.rsync]\nbinary = {}",
        toml_str(&rsync.to_string_lossy())
    ));
    (tools, record, cfg)
}

#[test]
fn the_worker_and_its_rsync_run_as_user_with_nothing_of_root() {
    let (who, site) = unprivileged_site();
    let password = fs::read_to_string(site.daemon.password_file()).expect("read the password");
    let password = password.trim();
    assert!(!password.is_empty());
    // What a root run left in the state directory: a file, a directory, and a symlink
    // to a root file outside, which must be chowned itself, never its target.
    let outside = source_dir();
    let victim = outside.path().join("victim");
    write_file(&victim, b"root's");
    write_file(&site.state.path().join("faillog/old"), b"from a root run");
    symlink(&victim, site.state.path().join("planted")).expect("plant a symlink");
    let linked = outside.path().join("linked");
    write_file(&linked, b"root's too");
    fs::hard_link(&linked, site.state.path().join("hard")).expect("plant a hard link");

    let (_tools, record, cfg) = recording(&site);
    // A command hook records itself the same way (its files named `*.hook.PID`).
    let hook = format!(
        "cat /proc/$$/status > {r}/status.hook.$$; tr '\\0' '\\n' < /proc/$$/environ > {r}/environ.hook.$$",
        r = record.display()
    );
    let cfg = cfg.raw(&format!(
        "[sync.hooks.command]\nargv = [\"/bin/sh\", \"-c\", {}, \"hook\"]",
        toml_str(&hook)
    ));
    let mut c = Controller::new(&cfg);
    // The worker reads its config as nobody.
    chmod(c.dir(), 0o755);
    let ctl = c.start();
    let worker = c.worker_pid().expect("a worker pid");

    // The controller stays root; the worker is nobody with nothing of root.
    assert_eq!(
        field(&proc_status(ctl), "Uid").split_whitespace().next(),
        Some("0")
    );
    assert_unprivileged("the worker", &proc_status(worker), &who, &[&c]);

    TreeWriter::new(11).files(site.src(), &["dir", "dir/sub"], 6, 2, 1000);
    write_file(&site.src().join("top.txt"), b"top");
    assert_in_sync(site.src(), &site.dst(), SYNC_TIMEOUT, &[&c, &site.daemon]);

    // Every rsync (probe and pushes) ran as nobody, with the copy as its password file
    // and the secret in no argv or environment.
    // The hook runs after the push: wait for its record (status first, then environ).
    wait::must("a record of the command hook", SYNC_TIMEOUT, &[&c], || {
        recorded(&record, "environ.hook")
            .iter()
            .any(|(_, env)| env.contains("HOME="))
    });
    let statuses = recorded(&record, "status");
    assert!(
        !statuses.is_empty(),
        "no rsync run was recorded\n{}",
        c.diagnose()
    );
    for (path, status) in &statuses {
        assert_unprivileged(&format!("rsync ({})", path.display()), status, &who, &[&c]);
    }
    let copy_dir = site.state.path().join("secrets");
    let copy_flag = format!("--password-file={}/", copy_dir.display());
    for (path, text) in recorded(&record, "environ") {
        assert!(
            !text.lines().any(|l| l.starts_with("NOTIFY_SOCKET=")),
            "rsync was given the worker's notify socket ({}):\n{text}",
            path.display()
        );
    }
    let mut with_copy = 0;
    for (path, text) in recorded(&record, "cmdline")
        .into_iter()
        .chain(recorded(&record, "environ"))
    {
        assert!(
            !text.contains(password),
            "{} holds the password:\n{text}",
            path.display()
        );
        for arg in text.lines().filter(|a| a.starts_with("--password-file=")) {
            assert!(
                arg.starts_with(&copy_flag),
                "rsync read another password file: {arg}"
            );
            with_copy += 1;
        }
    }
    assert!(
        with_copy > 0,
        "no rsync run read the private copy\n{}",
        c.diagnose()
    );
    // The hook sees the user's home, not root's.
    let home = format!("HOME={}", who.dir.display());
    for (path, env) in recorded(&record, "environ.hook") {
        assert!(
            env.lines().any(|l| l == home),
            "{} lacks {home}:\n{env}",
            path.display()
        );
    }
    for what in ["cmdline", "environ"] {
        let bytes = fs::read(format!("/proc/{worker}/{what}")).expect("read the worker's");
        assert!(
            !String::from_utf8_lossy(&bytes).contains(password),
            "the worker's {what} holds the password"
        );
    }

    // The state directory and what was in it are nobody's; the symlink's target is not.
    let uid = who.uid.as_raw();
    for rel in [
        "",
        "faillog",
        "faillog/old",
        "planted",
        "status.json",
        "secrets",
    ] {
        let m = fs::symlink_metadata(site.state.path().join(rel)).expect("lstat");
        assert_eq!(m.uid(), uid, "{rel:?} of the state dir is not nobody's");
    }
    assert_eq!(
        fs::metadata(&victim).expect("stat").uid(),
        0,
        "chown followed a symlink"
    );
    assert_eq!(
        fs::metadata(&linked).expect("stat").uid(),
        0,
        "chown went through a hard link"
    );
    let copies: Vec<_> = fs::read_dir(&copy_dir)
        .expect("read secrets")
        .flatten()
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let m = copies[0].metadata().expect("stat the copy");
    assert_eq!((m.uid(), m.mode() & 0o7777), (uid, 0o600));
    assert_eq!(
        fs::metadata(&copy_dir).expect("stat").mode() & 0o7777,
        0o700
    );

    // A reload applies in place, as the same unprivileged worker.
    c.rewrite_config(&cfg.exclude(r"\.log$").to_toml());
    let out = c.cmd(&["reload"]);
    assert_eq!(out.status.code(), Some(0), "reload\n{}", show(&out));
    c.wait_log(&["reloaded "], STATUS_TIMEOUT);
    write_file(&site.src().join("after.log"), b"excluded");
    write_file(&site.src().join("after.txt"), b"pushed");
    site.check(&c)
        .ignore(|rel| rel.extension().is_some_and(|e| e == "log"))
        .forbid_on_target(|rel| rel == Path::new("after.log"))
        .within(SYNC_TIMEOUT)
        .wait();
    assert_eq!(
        c.worker_pid(),
        Some(worker),
        "the reload replaced the worker"
    );

    // Dropping `user` needs a restart: the reload is refused (by the command, which says
    // so and fails), the worker stays as it was.
    c.rewrite_config(&site.config().to_toml());
    let out = c.cmd(&["reload"]);
    assert!(
        out.status.code() == Some(6) && says(&out, "reload refused") && says(&out, "syncd restart"),
        "a reload that drops `user`\n{}",
        show(&out)
    );
    // A SIGHUP straight to the controller (systemd's ExecReload) is refused there.
    kill(
        c.controller_pid().expect("the controller's pid"),
        Signal::SIGHUP,
    );
    c.wait_log(&["reload refused", "takes a restart"], STATUS_TIMEOUT);
    assert_eq!(c.worker_pid(), Some(worker));
    assert_unprivileged(
        "the worker after a refused reload",
        &proc_status(worker),
        &who,
        &[&c],
    );

    c.stop();
    assert!(!copy_dir.exists(), "the password copies outlived the stop");
}

#[test]
fn check_names_what_the_user_cannot_read_and_an_unknown_user_with_its_fix() {
    let (_, site) = unprivileged_site();
    write_file(&site.src().join("open/a.txt"), b"a");
    write_file(&site.src().join("closed/b.txt"), b"b");
    write_file(&site.src().join("open/private.txt"), b"p");
    chmod(&site.src().join("closed"), 0o700);
    chmod(&site.src().join("open/private.txt"), 0o600);
    let c = Controller::new(&site.config().top_key("user", "\"nobody\""));
    chmod(c.dir(), 0o755);
    let out = c.cmd(&["check"]);
    let shown = show(&out);
    let line = shown
        .lines()
        .find(|l| l.starts_with("warning") && l.contains("user nobody cannot read 2 of"))
        .unwrap_or_else(|| panic!("no line about what nobody cannot read:\n{shown}"));
    assert!(
        line.contains("closed (cannot list or enter it")
            && line.contains("open/private.txt (cannot read it")
            && !line.contains("a.txt"),
        "{line}"
    );
    assert!(
        shown.lines().any(|l| l.starts_with("warning")
            && l.contains("password file")
            && l.contains("private copy")),
        "no word on the root-only password file:\n{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("user nobody:")),
        "{shown}"
    );

    // An account that does not exist: exit 6, at its line, with the command to run.
    let c = Controller::new(&site.config().top_key("user", "\"no-such-syncd-user\""));
    let out = c.cmd(&["check"]);
    let shown = show(&out);
    let at = format!("{}:2:8: ", c.config_path().display());
    assert!(
        out.status.code() == Some(6)
            && shown.contains(&format!("{at}user \"no-such-syncd-user\" does not exist"))
            && shown.contains("useradd --system"),
        "{shown}"
    );
}

#[test]
fn sync_without_a_daemon_runs_its_worker_as_user_too() {
    let (who, site) = unprivileged_site();
    let (_tools, record, cfg) = recording(&site);
    let c = Controller::new(&cfg);
    chmod(c.dir(), 0o755);
    TreeWriter::new(12).files(site.src(), &["x", "x/y"], 6, 2, 1000);
    let out = c.cmd(&["sync", "--full"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "syncd sync --full\n{}",
        show(&out)
    );
    assert_in_sync(site.src(), &site.dst(), STATUS_TIMEOUT, &[&c, &site.daemon]);
    let statuses = recorded(&record, "status");
    assert!(
        !statuses.is_empty(),
        "no rsync run was recorded\n{}",
        show(&out)
    );
    for (path, status) in &statuses {
        assert_unprivileged(&format!("rsync ({})", path.display()), status, &who, &[&c]);
    }
    // The lock the --once worker created is nobody's.
    let m = fs::metadata(site.state.path().join("worker.lock")).expect("stat worker.lock");
    assert_eq!(
        m.uid(),
        who.uid.as_raw(),
        "the --once worker did not create its lock as nobody"
    );
    assert!(
        !site.state.path().join("secrets").exists(),
        "the password copies outlived `syncd sync`"
    );
}

/// `syncd verify` run by root with `user` set: its rsync runs as the user (as the daemon's
/// would), with the private copy of the root-only password file; the copies go after.
#[test]
fn verify_runs_its_rsync_as_user_too() {
    let (who, site) = unprivileged_site();
    let (_tools, record, cfg) = recording(&site);
    let c = Controller::new(&cfg);
    chmod(c.dir(), 0o755);
    TreeWriter::new(13).files(site.src(), &["x"], 4, 2, 1000);
    let out = c.cmd(&["sync", "--full"]);
    assert_eq!(out.status.code(), Some(0), "sync --full\n{}", show(&out));
    assert_in_sync(site.src(), &site.dst(), STATUS_TIMEOUT, &[&c, &site.daemon]);
    for entry in fs::read_dir(&record)
        .expect("read the record dir")
        .flatten()
    {
        fs::remove_file(entry.path()).expect("clear the record");
    }

    let out = c.cmd(&["verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify, in step\n{}",
        show(&out)
    );
    let statuses = recorded(&record, "status");
    assert!(
        !statuses.is_empty(),
        "verify ran no recorded rsync\n{}",
        show(&out)
    );
    for (path, status) in &statuses {
        assert_unprivileged(
            &format!("verify's rsync ({})", path.display()),
            status,
            &who,
            &[&c],
        );
    }
    let copy = site.state.path().join("secrets");
    assert!(
        recorded(&record, "cmdline").iter().all(|(_, argv)| argv
            .lines()
            .filter(|a| a.starts_with("--password-file="))
            .all(|a| a.contains(&copy.to_string_lossy().into_owned()))),
        "verify's rsync read another password file than the private copy"
    );
    assert!(
        !copy.exists(),
        "the password copies outlived `syncd verify`"
    );

    // Drift is still found (and said) through the child.
    fs::remove_file(
        site.dst().join("x").join(
            fs::read_dir(site.src().join("x"))
                .expect("read x")
                .flatten()
                .find(|e| e.path().is_file())
                .expect("a file in x")
                .file_name(),
        ),
    )
    .expect("delete a file on the target");
    let out = c.cmd(&["verify"]);
    assert!(
        out.status.code() == Some(1) && says(&out, "1 missing"),
        "verify after a file was deleted on the target\n{}",
        show(&out)
    );
}

#[test]
fn a_killed_controller_takes_its_unprivileged_worker_with_it() {
    // The parent-death signal is set after the uid change (which would clear it).
    let (who, site) = unprivileged_site();
    let c = Controller::new(&site.config().top_key("user", "\"nobody\""));
    chmod(c.dir(), 0o755);
    let ctl = c.start();
    let worker = c.worker_pid().expect("a worker pid");
    assert_unprivileged("the worker", &proc_status(worker), &who, &[&c]);
    kill(ctl, Signal::SIGKILL);
    wait_gone(ctl, STATUS_TIMEOUT, "the SIGKILLed controller", &[&c]);
    wait_gone(
        worker,
        STATUS_TIMEOUT,
        "the unprivileged worker of a SIGKILLed controller (it must not live on)",
        &[&c],
    );
}

#[test]
fn reopen_logs_hands_the_new_file_to_a_worker_that_may_not_open_it() {
    let (_, site) = unprivileged_site();
    let c = Controller::new(&site.config().top_key("user", "\"nobody\""));
    // nobody reads its config; the log file and its directory stay root's.
    chmod(c.dir(), 0o755);
    crate::logs::reopen_after_rotation(&site, &c);
}
