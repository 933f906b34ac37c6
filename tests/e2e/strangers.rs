//! Other local users (and other root processes) against syncd's own channels: the lock
//! and the sd_notify sockets. `nobody` cannot open the lock file, so cannot hold it; a
//! stranger that holds an old 0644 lock file — even one running a program called
//! `syncd`, named by the pidfile — is not taken for a running syncd by `status`, `start`
//! or `stop`; a stranger's READY=1 on `syncd start`'s socket or on the controller's
//! (while the worker is held back at a `WorkerGate`, so no real READY can have been
//! sent) is dropped and logged, never believed or forwarded to `$NOTIFY_SOCKET`.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use syncd_tests::controller::{
    is_alive, kill, notify_as, notify_socket_of, says, show, text, wait_child, PendingCmd,
    AS_NOBODY,
};
use syncd_tests::tree::chmod;
use syncd_tests::{wait, Controller, Diagnose, Site, WorkerGate};

const T: Duration = Duration::from_secs(20);

fn lockfile(c: &Controller) -> PathBuf {
    c.pidfile().with_extension("lock")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// `flock -n <how> LOCK true` as `nobody`: what it printed, if it could not lock.
fn nobody_flock(lock: &Path, how: &str) -> Result<(), String> {
    let out = Command::new(AS_NOBODY[0])
        .args(&AS_NOBODY[1..])
        .args(["flock", "-n", how])
        .arg(lock)
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .expect("run flock as nobody");
    if out.status.success() {
        Ok(())
    } else {
        Err(show(&out))
    }
}

#[test]
fn nobody_cannot_open_the_lock_file_so_cannot_hold_it() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    // As /run/syncd: anyone may look in.
    chmod(c.dir(), 0o755);
    let pid = c.start();
    let lock = lockfile(&c);
    assert_eq!(mode(&lock), 0o600, "{}", lock.display());
    // flock(1) opens read-only: on a readable lock file enough to wait for or hold it.
    let running = nobody_flock(&lock, "-s").expect_err("nobody locked it beside syncd");
    assert!(
        running.contains("Permission denied"),
        "nobody must not be able to open {} at all\n{running}",
        lock.display()
    );
    // `status` still works for any user (by the pidfile and /proc).
    let out = c.cmd_as(AS_NOBODY, &["status"]);
    assert!(
        out.status.code() == Some(0) && says(&out, &format!("running (pid {pid})")),
        "`syncd status` as nobody\n{}",
        show(&out)
    );
    c.stop();
    // Stopped: the lock file stays, and nobody still cannot take it.
    let stopped = nobody_flock(&lock, "-x");
    assert!(
        stopped
            .as_ref()
            .is_err_and(|e| e.contains("Permission denied")),
        "nobody could take syncd's lock while syncd is stopped: {stopped:?}"
    );
}

/// A process of `nobody` holding a lock, with whatever it started (killed as a group on
/// Drop).
struct Stranger(Child);

impl Stranger {
    /// `program -x -o LOCK -c "exec sleep 600"` as nobody (`program` is a flock(1); `-o`:
    /// the sleep does not inherit the lock, so the program is its one holder).
    fn holding(program: &Path, lock: &Path) -> Stranger {
        let child = Command::new(AS_NOBODY[0])
            .args(&AS_NOBODY[1..])
            .arg(program)
            .args(["-x", "-o"])
            .arg(lock)
            .args(["-c", "exec sleep 600"])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("run the stranger");
        Stranger(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-i32::try_from(self.0.id()).expect("pid"));
        let _ = nix::sys::signal::kill(group, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// Is `lock` held (a shared lock cannot be had at once)?
fn is_locked(lock: &Path) -> bool {
    let file = fs::File::open(lock).expect("open the lock file");
    match file.try_lock_shared() {
        Ok(()) => false,
        Err(fs::TryLockError::WouldBlock) => true,
        Err(fs::TryLockError::Error(e)) => panic!("flock {}: {e}", lock.display()),
    }
}

#[test]
fn a_stranger_holding_an_old_0644_lock_file_is_not_taken_for_a_running_syncd() {
    let site = Site::new();
    let c = Controller::new(&site.config());
    chmod(c.dir(), 0o755);
    let lock = lockfile(&c);
    // As an older syncd left it: readable by all, so openable by all.
    fs::write(&lock, "").expect("create the lock file");
    chmod(&lock, 0o644);
    // The stranger's program is even called syncd, and the pidfile names it.
    let tools = tempfile::tempdir().expect("tempdir");
    chmod(tools.path(), 0o755);
    let fake = tools.path().join("syncd");
    fs::copy("/usr/bin/flock", &fake).expect("copy flock(1)");
    chmod(&fake, 0o755);
    let stranger = Stranger::holding(&fake, &lock);
    wait::must("the stranger holding the lock", T, &[&c], || {
        is_locked(&lock).then_some(())
    });
    fs::write(c.pidfile(), format!("{}\n", stranger.pid())).expect("write the pidfile");

    let (code, v) = c.status_json();
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        code == Some(1)
            && v["running"] == false
            && message.contains("held by another process")
            && message.contains(&format!("pid {}, user nobody, syncd", stranger.pid()))
            && v["lock_held_by"][0]["pid"].as_u64() == Some(u64::from(stranger.pid())),
        "a stranger's lock is not a running syncd\n{v:#}"
    );
    let out = c.cmd(&["start"]);
    assert!(
        !out.status.success()
            && !says(&out, "already running")
            && says(&out, "not a syncd")
            && says(&out, &format!("kill {}", stranger.pid())),
        "`syncd start` with a stranger holding the lock must fail and say who holds it\n{}",
        show(&out)
    );
    assert_eq!(mode(&lock), 0o600, "start narrows its own lock file");
    let out = c.cmd(&["stop"]);
    assert!(
        !out.status.success() && says(&out, "not signalling"),
        "{}",
        show(&out)
    );
    assert!(
        is_alive(stranger.pid()),
        "`syncd stop` signalled the stranger"
    );

    // The stranger gone, syncd starts as usual.
    drop(stranger);
    let pid = c.start();
    let (code, v) = c.status_json();
    assert!(
        code == Some(0) && v["pid"].as_u64() == Some(u64::from(pid)),
        "{v:#}"
    );
    c.stop();
}

/// The lines of `text` that say a notification of `pid` was ignored.
fn ignored(text: &str, pid: u32) -> bool {
    text.lines().any(|l| {
        l.contains("ignored a notification (READY, STATUS) from")
            && l.contains(&format!("from pid {pid} "))
    })
}

#[test]
fn start_does_not_believe_a_strangers_ready() {
    let site = Site::new();
    let gate = WorkerGate::new();
    let c = Controller::new(&site.config()).with_worker(&gate.worker());
    let mut start = c.spawn_cmd(&["start"]);
    let socket = wait::must("`syncd start`'s notify socket", T, &[&c], || {
        notify_socket_of("start", start.pid())
    });
    // The daemon runs and its worker waits at the gate: no READY can have been sent.
    wait::must("the gated worker spawned", T, &[&c], || c.worker_pid());
    let believed = |start: &mut PendingCmd| {
        if let Some(st) = start.exited() {
            panic!(
                "`syncd start` ended ({st}) on a stranger's READY=1 while the worker was held back:\n{}\n{}",
                start.output_so_far(),
                c.diagnose()
            );
        }
    };
    let send = |start: &mut PendingCmd, wrapper: &[&str], who: &str| {
        notify_as(
            wrapper,
            &socket,
            &format!("READY=1\nSTATUS=forged by {who}"),
        )
        .unwrap_or_else(|e| {
            believed(start);
            panic!("{e}")
        })
    };
    let nobody = send(&mut start, AS_NOBODY, "nobody");
    let root = send(&mut start, &[], "root");
    wait::must("`syncd start` saying it ignored both", T, &[&c], || {
        believed(&mut start);
        let out = start.output_so_far();
        if ignored(&out, nobody) && ignored(&out, root) {
            Ok(())
        } else {
            Err(out)
        }
    });
    gate.open(T, &[&c]);
    let out = start.finish(&c);
    let pid = c.expect_started(&out, "syncd start");
    assert!(
        !says(&out, "forged") && says(&out, "watching"),
        "the real READY's status\n{}",
        show(&out)
    );
    let (code, v) = c.status_json();
    assert!(
        code == Some(0) && v["pid"].as_u64() == Some(u64::from(pid)),
        "{v:#}"
    );
    c.stop();
}

#[test]
fn the_controller_forwards_only_its_workers_ready() {
    let site = Site::new();
    let gate = WorkerGate::new();
    let c = Controller::new(&site.config()).with_worker(&gate.worker());
    let sock_path = c.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    sock.set_nonblocking(true).expect("non-blocking");
    let mut child = c.spawn_run(&[], &sock_path);
    let socket = wait::must("the controller's worker socket", T, &[&c], || {
        notify_socket_of("worker", child.id())
    });
    wait::must("the gated worker spawned", T, &[&c], || c.worker_pid());
    let send = |wrapper: &[&str], who: &str| {
        notify_as(
            wrapper,
            &socket,
            &format!("READY=1\nSTATUS=forged by {who}"),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", c.diagnose()))
    };
    let nobody = send(AS_NOBODY, "nobody");
    let root = send(&[], "root");
    let mut got: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut forwarded = |got: &mut Vec<String>| loop {
        match sock.recv(&mut buf) {
            Ok(n) => got.push(text(&buf[..n])),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return got
                    .iter()
                    .any(|m| m.contains("READY=1") || m.contains("forged"))
            }
            Err(e) => panic!("recv: {e}"),
        }
    };
    // Whatever the controller forwards, it has sent by the time it logs the next line.
    wait::must("the controller logging both as ignored", T, &[&c], || {
        let log = c.log();
        assert!(
            !forwarded(&mut got),
            "a stranger's READY reached $NOTIFY_SOCKET: {got:?}\n{}",
            c.diagnose()
        );
        (ignored(&log, nobody) && ignored(&log, root)).then_some(())
    });
    assert!(!forwarded(&mut got), "{got:?}");
    gate.open(T, &[&c]);
    wait::must("the worker's own READY=1 forwarded", T, &[&c], || {
        forwarded(&mut got).then_some(())
    });
    let ready = got.iter().find(|m| m.contains("READY=1")).expect("READY");
    assert!(
        ready.contains("STATUS=watching") && !ready.contains("forged"),
        "{got:?}"
    );
    kill(child.id(), Signal::SIGTERM);
    let st = wait_child(&mut child, T);
    assert!(st.is_some_and(|s| s.success()), "{st:?}\n{}", c.diagnose());
}
