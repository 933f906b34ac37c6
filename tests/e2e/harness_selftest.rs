//! Proof that the harness itself works, with no syncd involved: the rsync daemon fixture
//! accepts a plain rsync push, the tree comparison sees every kind of difference, and the
//! daemon can go down and come back on the same port; the sshd fixture takes a plain rsync
//! push over ssh and refuses a revoked key and a changed or unknown host key.

use std::fs;
use std::os::unix::fs::symlink;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use syncd_tests::tree::{chmod, source_dir, write_file};
use syncd_tests::{assert_in_sync, wait, Diagnose, RsyncDaemon, Sshd, SyncCheck, TreeWriter};

fn sample_tree(root: &Path) {
    let mut w = TreeWriter::new(7);
    w.files(root, &["a", "b/c", "."], 30, 0, 20_000);
    symlink("a/f00000", root.join("link")).expect("symlink");
    write_file(&root.join("empty"), b"");
    chmod(&root.join("b/c/f00001"), 0o600);
}

/// The daemon's module equals `src` (within 5 s).
fn module_equals(daemon: &RsyncDaemon, src: &Path) {
    assert_in_sync(src, &daemon.path(), Duration::from_secs(5), &[daemon]);
}

/// The daemon's log counts what each of its two sessions so far received: the data of
/// `src` the first time (already pushed by the caller), only the file list once the
/// target is in step.
fn received_counts(daemon: &RsyncDaemon, src: &Path) {
    let data: u64 = syncd_tests::tree::snapshot(src)
        .keys()
        .filter_map(|p| fs::symlink_metadata(src.join(p)).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    let first = daemon.received_after(0, Duration::from_secs(5), &[]);
    assert!(
        first >= data && data > 100_000,
        "received {first} for {data} bytes"
    );
    daemon.push_with_rsync(src);
    let again = daemon.received_after(1, Duration::from_secs(5), &[]);
    assert!(again < data / 10, "received {again} again for {data} bytes");
    assert_eq!(daemon.sessions().len(), 2);
}

#[test]
fn plain_rsync_push_to_daemon_fixture_makes_trees_equal() {
    let src = source_dir();
    sample_tree(src.path());
    let daemon = RsyncDaemon::start();
    daemon.push_with_rsync(src.path());
    module_equals(&daemon, src.path());
    received_counts(&daemon, src.path());
}

#[test]
fn tree_comparison_reports_each_kind_of_difference() {
    let src = source_dir();
    let dst = source_dir();
    sample_tree(src.path());
    sample_tree(dst.path());
    assert!(SyncCheck::new(src.path(), dst.path())
        .differences(20)
        .is_empty());

    // Same size, different bytes.
    write_file(
        &dst.path().join("a/f00000"),
        &vec![1u8; fs::metadata(src.path().join("a/f00000")).unwrap().len() as usize],
    );
    chmod(&dst.path().join("b/c/f00001"), 0o644);
    fs::remove_file(dst.path().join("link")).unwrap();
    symlink("elsewhere", dst.path().join("link")).unwrap();
    write_file(&dst.path().join("extra"), b"x");
    fs::remove_file(dst.path().join("empty")).unwrap();

    let diffs = SyncCheck::new(src.path(), dst.path()).differences(20);
    let text = diffs.join("\n");
    assert!(text.contains("only in target: \"extra\""), "{text}");
    assert!(text.contains("only in source: \"empty\""), "{text}");
    assert!(text.contains("\"link\""), "{text}");
    assert!(text.contains("\"b/c/f00001\""), "{text}");
    // Bytes are compared only once metadata agrees; fix metadata and look again.
    chmod(&dst.path().join("b/c/f00001"), 0o600);
    fs::remove_file(dst.path().join("link")).unwrap();
    symlink("a/f00000", dst.path().join("link")).unwrap();
    fs::remove_file(dst.path().join("extra")).unwrap();
    write_file(&dst.path().join("empty"), b"");
    let diffs = SyncCheck::new(src.path(), dst.path()).differences(20);
    assert_eq!(diffs, vec!["content differs: \"a/f00000\"".to_string()]);

    // And `wait` panics with the diff on timeout.
    let err = catch_unwind(AssertUnwindSafe(|| {
        SyncCheck::new(src.path(), dst.path())
            .within(Duration::from_millis(100))
            .wait()
    }))
    .expect_err("wait must fail on different trees");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("content differs: \"a/f00000\""), "{msg}");

    // Ignored paths are left out on both sides.
    SyncCheck::new(src.path(), dst.path())
        .ignore(|rel| rel == Path::new("a"))
        .within(Duration::from_millis(100))
        .wait();
}

#[test]
fn daemon_fixture_stops_and_restarts_on_the_same_port() {
    let src = source_dir();
    sample_tree(src.path());
    let mut daemon = RsyncDaemon::start();
    let port = daemon.port();
    daemon.stop();
    assert!(!daemon.is_running());
    daemon.restart();
    assert_eq!(daemon.port(), port);
    daemon.push_with_rsync(src.path());
    module_equals(&daemon, src.path());
    received_counts(&daemon, src.path());
}

/// Connections to `port` on 127.0.0.1 in state ESTABLISHED, seen from the client side
/// (`/proc/net/tcp`: remote address 0100007F:<port in hex>, state 01).
fn established_to(port: u16) -> usize {
    let remote = format!("0100007F:{port:04X}");
    fs::read_to_string("/proc/net/tcp")
        .expect("read /proc/net/tcp")
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == remote && f[3] == "01"
        })
        .count()
}

#[test]
fn a_frozen_daemon_holds_a_push_until_thawed() {
    let src = source_dir();
    sample_tree(src.path());
    let daemon = RsyncDaemon::start();
    let pgid = daemon.pid().expect("the daemon runs");
    let frozen = daemon.freeze();
    let states = syncd_tests::proc_tree::group_states(pgid);
    assert!(
        !states.is_empty() && states.iter().all(|&s| s == 'T'),
        "the daemon's processes after freeze(): {states:?}, want all stopped (T)"
    );
    let mut client = std::process::Command::new("rsync")
        .arg("-a")
        .arg(format!(
            "--password-file={}",
            daemon.password_file().display()
        ))
        .arg(format!("--port={}", daemon.port()))
        .arg(format!("{}/", src.path().display()))
        .arg(format!("{}/", daemon.dest()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run rsync");
    // The kernel completes the handshake from the listen backlog; the daemon, stopped,
    // never answers it, so the push can get no further.
    syncd_tests::wait::must(
        "the push's connection to the frozen daemon",
        Duration::from_secs(5),
        &[&daemon],
        || established_to(daemon.port()) > 0,
    );
    assert!(
        client.try_wait().expect("poll rsync").is_none(),
        "the push ended while the daemon was frozen"
    );
    assert!(
        fs::read_dir(daemon.path())
            .expect("read the module")
            .next()
            .is_none(),
        "the frozen daemon wrote into its module"
    );
    drop(frozen);
    assert!(
        !syncd_tests::proc_tree::group_states(pgid).contains(&'T'),
        "a daemon process is still stopped after the thaw"
    );
    let status = client.wait().expect("wait for rsync");
    assert!(status.success(), "the push failed once thawed: {status}");
    module_equals(&daemon, src.path());
}

#[test]
fn sshd_fixture_takes_a_plain_rsync_push_and_refuses_what_it_should() {
    let src = source_dir();
    sample_tree(src.path());
    let sshd = Sshd::start();
    let (ok, out) = sshd.ssh("true");
    assert!(
        ok,
        "ssh with the fixture's key failed: {out}\n{}",
        sshd.diagnose()
    );
    sshd.push_with_rsync(src.path());
    assert_in_sync(src.path(), &sshd.target(), Duration::from_secs(5), &[&sshd]);
    let known = fs::read(sshd.known_hosts()).expect("read known_hosts");

    sshd.revoke_client_key();
    let (ok, out) = sshd.ssh("true");
    assert!(
        !ok && out.contains("Permission denied (publickey)"),
        "{out}"
    );
    // sshd logs the refusal as the connection ends, which can be just after ssh exits.
    let refused = wait::must(
        "the refused login in sshd's log",
        Duration::from_secs(5),
        &[&sshd],
        || Some(sshd.refused_logins()).filter(|n| *n > 0),
    );
    assert_eq!(refused, 1, "{}", sshd.diagnose());
    sshd.authorize_client_key();

    sshd.spoof_host_key();
    let (ok, out) = sshd.ssh("true");
    let changed = format!("Host key for {} has changed", sshd.host_pattern());
    assert!(!ok && out.contains(&changed), "{out}");

    sshd.forget_host_key();
    let (ok, out) = sshd.ssh("true");
    assert!(
        !ok && out.contains("Host key verification failed."),
        "{out}"
    );
    assert_eq!(
        fs::read(sshd.known_hosts()).expect("read"),
        b"",
        "ssh wrote known_hosts"
    );

    sshd.know_real_host_key();
    assert_eq!(fs::read(sshd.known_hosts()).expect("read"), known);
    assert!(sshd.ssh("true").0);

    // Drop stops sshd (its port refuses) and removes the tempdir.
    let (port, dir) = (sshd.port(), sshd.dir().to_path_buf());
    drop(sshd);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts after Drop"
    );
}
