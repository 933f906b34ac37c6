//! Secrets stay secret: the daemon's password never reaches a command line, an
//! environment, the status file or a log (`/proc/PID/cmdline` and `/proc/PID/environ`
//! are readable by every local user for a process's owner, and by root for all), and a
//! config that writes a password where it would (a destination `user:password@host`) is
//! refused by `syncd check` and `syncd start` without repeating it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use syncd_tests::controller::{show, text};
use syncd_tests::proc_tree::{exposed_family, Exposed};
use syncd_tests::tree::write_file;
use syncd_tests::{toml_str, wait, Controller, Site, Worker};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Every form that carries a password in the destination: refused with exit 6 (invalid
/// configuration) by `check` and by `start`, pointing to `password_file`, never
/// repeating the password (the output is what an operator pastes into a ticket, and
/// `start`'s goes to the init script's log).
#[test]
fn a_password_in_the_destination_is_refused_by_check_and_start_without_showing_it() {
    let site = Site::new();
    let secret = "Zq7-not-for-your-eyes";
    for dest in [
        format!("rsync://rsync_backup:{secret}@127.0.0.1/backup"),
        format!("rsync://rsync_backup:{secret}@127.0.0.1:873/backup"),
        format!("rsync_backup:{secret}@127.0.0.1::backup"),
        format!("root:{secret}@backup.example:/srv/backup"),
    ] {
        let config = format!(
            "[[sync]]\nsource = {}\n[[sync.target]]\ndest = {}\n",
            toml_str(&site.src().display().to_string()),
            toml_str(&dest)
        );
        let c = Controller::with_config(&config, "syncd.toml", site.state.path());
        for command in ["check", "start"] {
            let out = c.cmd(&[command]);
            let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
            assert_eq!(
                out.status.code(),
                Some(6),
                "{command} {dest}: {}",
                show(&out)
            );
            assert!(
                shown.contains("holds a password") && shown.contains("password_file"),
                "{command} {dest}: the message should say what is wrong and what to do\n{shown}"
            );
            assert!(
                !shown.contains(secret),
                "{command} {dest}: the password shown\n{shown}"
            );
            let log = fs::read_to_string(c.log_path()).unwrap_or_default();
            assert!(
                !log.contains(secret),
                "{command} {dest}: the password in the log\n{log}"
            );
        }
    }
}

/// A worker pushing to a daemon with a password file, caught with a push in flight (the
/// daemon frozen) and its command hook running: neither the worker, nor its rsync, nor
/// the hook shows the password in its command line or environment, and neither does the
/// status file or the worker's log. The password is unique to this daemon, so finding it
/// anywhere means it leaked; rsync gets it by `--password-file` (a name), never by
/// `RSYNC_PASSWORD` or an argument, which this test would catch.
#[test]
fn no_process_the_worker_starts_shows_the_daemon_password() {
    let site = Site::new();
    let password = site.daemon.password().to_string();
    let hook_dir = tempfile::tempdir().expect("tempdir");
    let started = hook_dir.path().join("started");
    let release = Release(hook_dir.path().join("release"));
    nix::unistd::mkfifo(&release.0, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .expect("mkfifo");
    // The hook's first run says it runs, then waits for the test (a read from the FIFO)
    // so that it is still there when the processes are looked at; later runs end at once.
    let script = format!(
        "[ -e '{s}' ] && exit 0; echo $$ > '{s}'; read line < '{r}'",
        s = started.display(),
        r = release.0.display()
    );
    let hook = format!(
        "[sync.hooks.command]\nargv = [\"/bin/sh\", \"-c\", {}, \"sh\"]\ntimeout = \"60s\"",
        toml_str(&script)
    );
    let cfg = site.config().raw(&hook);
    let mut w = Worker::start(&cfg);
    let worker = w.pid().expect("worker pid");

    write_file(&site.src().join("first.txt"), b"pushed, then the hook runs");
    let hook_pid: u32 = wait::must("the hook running", TIMEOUT, &[&w, &site.daemon], || {
        fs::read_to_string(&started)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    let frozen = site.daemon.freeze();
    write_file(&site.src().join("second.txt"), b"a push held in flight");
    let family = wait::must(
        "an rsync run in flight beside the hook",
        TIMEOUT,
        &[&w, &site.daemon],
        || {
            let family = exposed_family(worker);
            let rsync = family.iter().any(|p| p.comm == "rsync");
            let hook = family.iter().any(|p| p.pid == hook_pid);
            if rsync && hook {
                Ok(family)
            } else {
                Err(format!(
                    "rsync: {rsync}, hook: {hook}; {}",
                    listing(&family)
                ))
            }
        },
    );
    // The rsync seen is the push to the daemon, and it names the password file.
    assert!(
        family
            .iter()
            .any(|p| p.comm == "rsync" && p.argv().contains("--password-file=")),
        "no rsync with --password-file: {}",
        listing(&family)
    );
    let leaks: Vec<String> = family
        .iter()
        .filter_map(|p| {
            let place = p.shows(password.as_bytes())?;
            Some(format!("pid {} ({}) {place}: {}", p.pid, p.comm, p.argv()))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "the password is shown:\n{}",
        leaks.join("\n")
    );
    let status = fs::read_to_string(cfg.state_dir().join("status.json")).expect("status.json");
    assert!(
        !status.contains(&password),
        "the password in status.json:\n{status}"
    );

    drop(frozen);
    drop(release);
    w.stop();
    assert!(
        !w.log().contains(&password),
        "the password in the worker's log"
    );
}

/// The FIFO the hook's first run waits on; dropped (also when the test fails, the worker
/// then no longer bounding its hook), it lets the hook end. A writer that finds no
/// reader any more is fine too.
struct Release(PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        if let Ok(mut fifo) = fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&self.0)
        {
            let _ = fifo.write_all(b"done\n");
        }
    }
}

/// One line per process: pid, name, arguments.
fn listing(family: &[Exposed]) -> String {
    family
        .iter()
        .map(|p| format!("\n  {} {}: {}", p.pid, p.comm, p.argv()))
        .collect()
}
