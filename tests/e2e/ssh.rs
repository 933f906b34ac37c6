//! ssh targets against a real OpenSSH sshd on 127.0.0.1 (the harness's `Sshd`): a burst,
//! deletes, directory renames and hostile names reach `root@127.0.0.1:<dir>/` over ssh;
//! the ssh process carries the key's path and no key material; a revoked key is a
//! configuration error tried again slowly, not a stream of fast retries; a changed host key
//! and an unknown one are refused (nothing written, known_hosts untouched) with the
//! command that fixes them; `StrictHostKeyChecking=accept-new` in `ssh_args` is the
//! operator's opt-in to trusting the first key seen.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use syncd_tests::tree::{hostile_names, rename, source_dir, write_file};
use syncd_tests::{assert_in_sync, proc_tree, wait, Sshd, TreeWriter, Worker, WorkerConfig};
use syncd_worker::status::Status;

const SYNC: Duration = Duration::from_secs(60);

/// A source, a state dir and an sshd whose target the worker pushes to.
struct SshSite {
    src: tempfile::TempDir,
    state: tempfile::TempDir,
    sshd: Sshd,
}

impl SshSite {
    fn new() -> SshSite {
        SshSite {
            src: source_dir(),
            state: tempfile::Builder::new()
                .prefix("syncd-e2e-state.")
                .tempdir()
                .expect("create a state tempdir"),
            sshd: Sshd::start(),
        }
    }

    fn src(&self) -> &Path {
        self.src.path()
    }

    fn config(&self) -> WorkerConfig {
        WorkerConfig::new(self.state.path(), self.src()).ssh(&self.sshd)
    }

    fn in_sync(&self, w: &Worker) {
        assert_in_sync(self.src(), &self.sshd.target(), SYNC, &[w, &self.sshd]);
    }

    /// Wait until the target's `last_error` holds every one of `parts`.
    fn wait_error(&self, w: &mut Worker, parts: &[&str]) -> Status {
        w.wait_status(
            &format!("last_error holding {parts:?}"),
            Duration::from_secs(30),
            &[&self.sshd],
            |s| {
                s.syncs[0].targets[0]
                    .last_error
                    .as_deref()
                    .is_some_and(|e| parts.iter().all(|p| e.contains(p)))
            },
        )
    }

    /// known_hosts holds `want`, byte for byte.
    fn assert_known_hosts(&self, want: &[u8], why: &str) {
        let now = fs::read(self.sshd.known_hosts()).expect("read known_hosts");
        assert_eq!(
            String::from_utf8_lossy(&now),
            String::from_utf8_lossy(want),
            "{why}"
        );
    }

    /// The target directory is still empty.
    fn assert_target_untouched(&self, w: &Worker) {
        let entries: Vec<_> = fs::read_dir(self.sshd.target())
            .expect("read the target dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            entries.is_empty(),
            "something reached the target: {entries:?}\n{}",
            syncd_tests::diagnostics(&[w, &self.sshd])
        );
    }
}

#[test]
fn a_burst_deletes_and_directory_renames_reach_the_target_over_ssh() {
    let site = SshSite::new();
    let mut w = Worker::start(&site.config());
    let mut tw = TreeWriter::new(31);
    let files = tw.files(
        site.src(),
        &["a", "b/deep", "c", "moving/sub"],
        600,
        0,
        20_000,
    );
    site.in_sync(&w);

    for p in files.iter().step_by(3) {
        fs::remove_file(p).unwrap_or_else(|e| panic!("rm {}: {e}", p.display()));
    }
    fs::remove_dir_all(site.src().join("c")).expect("rm -r c");
    rename(&site.src().join("moving"), &site.src().join("moved"));
    rename(
        &site.src().join("b/deep"),
        &site.src().join("a/deep-from-b"),
    );
    site.in_sync(&w);
    assert!(!site.sshd.target().join("moving").exists());
    w.stop();
}

#[test]
fn hostile_names_reach_the_target_over_ssh() {
    let site = SshSite::new();
    let mut w = Worker::start(&site.config());
    let names = hostile_names();
    let mut tw = TreeWriter::new(32);
    let dir = site.src().join("-dir with: space*");
    for n in &names {
        tw.file(&site.src().join(n), 200);
        tw.file(&dir.join(n), 200);
    }
    site.in_sync(&w);

    // Deletes and renames of such names, a directory of them renamed.
    for n in names.iter().step_by(2) {
        fs::remove_file(site.src().join(n)).expect("rm a hostile name");
    }
    let mut renamed = names[1].clone();
    renamed.push(" renamed");
    rename(&site.src().join(&names[1]), &site.src().join(renamed));
    rename(&dir, &site.src().join("--renamed\n[dir]"));
    site.in_sync(&w);
    w.stop();
}

#[test]
fn the_ssh_process_carries_the_key_path_and_no_key_material() {
    let site = SshSite::new();
    let mut w = Worker::start(&site.config());
    let key = fs::read_to_string(site.sshd.client_key()).expect("read the client key");
    // The key's base64 body, line by line (any line would give part of it away).
    let secret_lines: Vec<&str> = key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .collect();
    assert!(!secret_lines.is_empty(), "no key body in {key:?}");

    // sshd frozen: the push's ssh waits for the banner, alive for us to look at.
    let frozen = site.sshd.freeze();
    write_file(&site.src().join("look-at-me"), b"x");
    let pid = w.pid().expect("the worker runs");
    // (A process that just ended shows an empty command line: looked at again.)
    let (argv, env) = wait::must(
        "an ssh process below the worker",
        Duration::from_secs(20),
        &[&w, &site.sshd],
        || {
            proc_tree::exposed_family(pid)
                .into_iter()
                .find(|p| p.comm == "ssh" && !p.cmdline.is_empty())
                .map(|ssh| (ssh.args(), ssh.env()))
        },
    );
    drop(frozen);

    let key_path = site.sshd.client_key();
    let at = argv
        .iter()
        .position(|a| a == b"-i")
        .unwrap_or_else(|| panic!("no -i in ssh's argv {argv:?}"));
    assert_eq!(
        argv.get(at + 1).map(Vec::as_slice),
        Some(key_path.as_os_str().as_bytes()),
        "ssh's argv: {argv:?}"
    );
    for (what, words) in [("argv", &argv), ("environment", &env)] {
        for w in words {
            let text = String::from_utf8_lossy(w);
            assert!(
                !text.contains("PRIVATE KEY") && !secret_lines.iter().any(|l| text.contains(l)),
                "key material in ssh's {what}: {text:?}"
            );
        }
    }
    site.in_sync(&w);
    w.stop();
}

/// Retry from 100 ms doubling to 60 s: a transient failure is tried again 5 times in the
/// next 4 s (0.1 + 0.2 + 0.4 + 0.8 + 1.6 s), a configuration error not before 60 s.
fn slow_max(cfg: WorkerConfig) -> WorkerConfig {
    cfg.retry(Some(("100ms", "60s")))
}

#[test]
fn a_revoked_key_is_a_configuration_error_tried_again_slowly() {
    let site = SshSite::new();
    site.sshd.revoke_client_key();
    write_file(&site.src().join("waiting"), b"x");
    let mut w = Worker::start(&slow_max(site.config()).initial_sync(true));
    let attempts = wait::must(
        "a refused login in sshd's log",
        Duration::from_secs(20),
        &[&w, &site.sshd],
        || Some(site.sshd.refused_logins()).filter(|n| *n > 0),
    );

    // Watched for 4 s from the first refusal: no further login attempt.
    let window = Instant::now();
    let more = wait::until_every(
        "4 s of watching the login attempts",
        Duration::from_secs(10),
        wait::POLL,
        || {
            let now = site.sshd.refused_logins();
            if now > attempts {
                Some(Err(now))
            } else {
                (window.elapsed() >= Duration::from_secs(4)).then_some(Ok(()))
            }
        },
    );
    match more {
        Ok(Ok(())) => {}
        Ok(Err(n)) => panic!(
            "{} more login attempts within {:.1?} after a refused key (a configuration \
             error is tried again after max_interval, 60 s)\n{}",
            n - attempts,
            window.elapsed(),
            syncd_tests::diagnostics(&[&w, &site.sshd])
        ),
        Err(t) => wait::fail(t, &[&w, &site.sshd]),
    }

    // Status and log say what is wrong and how to try it by hand.
    let key = site.sshd.client_key().display().to_string();
    let port = format!("-p {}", site.sshd.port());
    site.wait_error(
        &mut w,
        &[
            "ssh could not log in with a key",
            "Permission denied (publickey)",
            "authorized_keys",
            "try it by hand",
            &port,
            &key,
            "root@127.0.0.1 true",
        ],
    );
    w.wait_log(
        "fix the configuration or the target",
        Duration::from_secs(5),
    );
    site.assert_target_untouched(&w);
    w.stop();
}

#[test]
fn a_changed_host_key_is_refused_and_known_hosts_left_alone() {
    let site = SshSite::new();
    site.sshd.spoof_host_key();
    let known = fs::read(site.sshd.known_hosts()).expect("read known_hosts");
    write_file(&site.src().join("must-not-arrive"), b"x");
    let mut w = Worker::start(&slow_max(site.config()).initial_sync(true));
    let host = site.sshd.host_pattern();
    let fix = format!(
        "ssh-keygen -R '{host}' -f {}",
        site.sshd.known_hosts().display()
    );
    site.wait_error(
        &mut w,
        &[
            &format!("the ssh host key for {host} has changed"),
            "nothing is pushed",
            &fix,
            "try it by hand",
        ],
    );
    w.wait_log(&fix, Duration::from_secs(5));
    site.assert_target_untouched(&w);
    site.assert_known_hosts(&known, "known_hosts was modified");
    w.stop();
}

/// syncd trusts no host key by itself: with known_hosts empty the push is refused with
/// what to do, nothing is written and known_hosts stays empty; once the operator
/// records the key, the next try gets through.
#[test]
fn an_unknown_host_key_is_refused_until_it_is_recorded() {
    let site = SshSite::new();
    site.sshd.forget_host_key();
    write_file(&site.src().join("after-recording"), b"x");
    // Tried again after 1 s (max_interval): the recorded key is used soon.
    let mut w = Worker::start(&site.config().initial_sync(true));
    site.wait_error(
        &mut w,
        &[
            "ssh host key is not known",
            "StrictHostKeyChecking=accept-new",
            "try it by hand",
        ],
    );
    site.assert_target_untouched(&w);
    site.assert_known_hosts(b"", "ssh recorded the host key by itself");
    site.sshd.know_real_host_key();
    site.in_sync(&w);
    w.stop();
}

/// `-o StrictHostKeyChecking=accept-new` in `ssh_args`: the first key seen is recorded
/// and trusted (the operator's choice), a changed one is still refused.
#[test]
fn accept_new_in_ssh_args_records_the_first_host_key() {
    let site = SshSite::new();
    site.sshd.forget_host_key();
    write_file(&site.src().join("first"), b"x");
    let cfg = WorkerConfig::new(site.state.path(), site.src())
        .ssh_with_args(&site.sshd, &["-o", "StrictHostKeyChecking=accept-new"])
        .initial_sync(true);
    let mut w = Worker::start(&cfg);
    site.in_sync(&w);
    let known = fs::read_to_string(site.sshd.known_hosts()).expect("read known_hosts");
    assert_eq!(known.lines().count(), 1, "known_hosts: {known:?}");

    site.sshd.spoof_host_key();
    let spoofed = fs::read(site.sshd.known_hosts()).expect("read known_hosts");
    write_file(&site.src().join("second"), b"x");
    site.wait_error(&mut w, &["has changed", "ssh-keygen -R"]);
    assert!(!site.sshd.target().join("second").exists());
    site.assert_known_hosts(&spoofed, "known_hosts was modified");
    w.stop();
}
