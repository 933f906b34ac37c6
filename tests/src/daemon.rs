//! `RsyncDaemon`: a real `rsync --daemon --no-detach` on 127.0.0.1 serving one module,
//! `backup`, with auth user `rsync_backup`, a secrets file and a client password file (both
//! mode 0600), in its own tempdir; extra module settings (`max connections = 1`) can be
//! given at start, and a `lock file` is always set so such a limit works. It can be
//! stopped and started again on the same port ("target down, then up"). Drop kills it
//! (by pid) and removes the tempdir.
//!
//! Must not: listen anywhere but 127.0.0.1, or sleep in place of a readiness check.

use std::fs;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::proc_tree::group_states;
use crate::{is_root, tail, wait, Diagnose, Fixtures};

pub const MODULE: &str = "backup";
pub const USER: &str = "rsync_backup";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RsyncDaemon {
    dir: tempfile::TempDir,
    /// The auth user's password, unique to this daemon (see [`RsyncDaemon::password`]).
    password: String,
    port: u16,
    child: Option<Child>,
    /// Extra `key = value` lines of the module's section.
    module_settings: String,
}

impl RsyncDaemon {
    /// Start a daemon on a free port and wait until it accepts connections.
    pub fn start() -> RsyncDaemon {
        RsyncDaemon::start_with_module_settings("")
    }

    /// [`RsyncDaemon::start`], with `settings` (`key = value` lines) added to the module's
    /// section, e.g. `max connections = 1`.
    pub fn start_with_module_settings(settings: &str) -> RsyncDaemon {
        let dir = tempfile::Builder::new()
            .prefix("syncd-e2e-daemon.")
            .tempdir()
            .expect("create the daemon's tempdir");
        let module = dir.path().join("module");
        fs::create_dir(&module).expect("create the module dir");
        let password = unique_password();
        write_private(&dir.path().join("secrets"), &format!("{USER}:{password}\n"));
        write_private(
            &dir.path().join("client.password"),
            &format!("{password}\n"),
        );
        let mut d = RsyncDaemon {
            dir,
            password,
            port: 0,
            child: None,
            module_settings: settings.lines().map(|l| format!("{l}\n")).collect(),
        };
        // A free port is found by binding port 0 and releasing it; another process may take
        // it before rsync binds, so a failed bind is retried on a fresh port.
        let mut last_err = String::new();
        for _ in 0..5 {
            d.port = free_port();
            d.write_config();
            match d.spawn_and_wait() {
                Ok(()) => return d,
                Err(e) => last_err = e,
            }
        }
        panic!("rsync daemon did not start: {last_err}\n{}", d.diagnose());
    }

    /// The module's directory on disk (what the target should equal).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("module")
    }

    /// `rsync_backup@127.0.0.1::backup`, the `dest` a worker config uses (with `port`).
    pub fn dest(&self) -> String {
        format!("{USER}@127.0.0.1::{MODULE}")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client password file (mode 0600) for `password_file` / `--password-file`.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("client.password")
    }

    /// The auth user's password (in `password_file()` and the daemon's secrets file):
    /// unique to this daemon and found nowhere else, so a test can look for it in what
    /// the processes under test show.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The daemon's pid (also its process group), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stop the daemon (SIGTERM, wait for exit) and wait until the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_TIMEOUT);
        }
        wait::must(
            format_args!("port {} to refuse connections", self.port),
            STOP_TIMEOUT,
            &[],
            || !accepts(self.port),
        );
    }

    /// Start the daemon again on the same port, with the same module contents.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() while the daemon runs");
        // The old socket may linger for a moment; the port is ours, so retry.
        let what = format!("the rsync daemon to restart on port {}", self.port);
        let restarted = wait::until(what, READY_TIMEOUT, || self.spawn_and_wait());
        if let Err(t) = restarted {
            wait::fail(t, &[self]);
        }
    }

    /// Freeze the daemon and every connection it serves (SIGSTOP to its process group)
    /// until the guard is dropped (SIGCONT): a push in flight stays in flight, new
    /// connections wait in the listen backlog. For tests that need "a push in flight"
    /// to last, without racing the daemon's speed.
    pub fn freeze(&self) -> Frozen<'_> {
        let child = self
            .child
            .as_ref()
            .expect("freeze() while the daemon is stopped");
        Frozen::group_of(child)
    }

    /// Push `src` to the module with a plain `rsync -a --delete` (seeding a target, and the
    /// harness's own proof that the daemon works). Panics with rsync's output on failure.
    pub fn push_with_rsync(&self, src: &Path) {
        let out = Command::new("rsync")
            .arg("-a")
            .arg("--delete")
            .arg(format!(
                "--password-file={}",
                self.password_file().display()
            ))
            .arg(format!("--port={}", self.port))
            .arg(format!("{}/", src.display()))
            .arg(format!("{}/", self.dest()))
            .output()
            .expect("run rsync (is it installed?)");
        assert!(
            out.status.success(),
            "plain rsync push to the daemon failed ({}):\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.diagnose()
        );
    }

    fn write_config(&self) {
        let d = self.dir.path();
        let identity = if is_root() {
            // As root the daemon would otherwise run transfers as nobody, and every mkdir in
            // the module would fail with exit 23.
            "uid = root\ngid = root\n"
        } else {
            ""
        };
        // `use chroot = no` turns `munge symlinks` on by default, which would rewrite every
        // symlink target to "/rsyncd-munged/..."; a backup must keep them as they are.
        // `lock file` is what a module's `max connections` counts in.
        let conf = format!(
            "pid file = {pid}\n\
             log file = {log}\n\
             lock file = {lock}\n\
             use chroot = no\n\
             reverse lookup = no\n\
             max connections = 0\n\
             {identity}\
             [{MODULE}]\n\
             path = {module}\n\
             read only = no\n\
             munge symlinks = no\n\
             auth users = {USER}\n\
             secrets file = {secrets}\n\
             strict modes = yes\n\
             {extra}",
            pid = d.join("rsyncd.pid").display(),
            lock = d.join("rsyncd.lock").display(),
            extra = self.module_settings,
            log = d.join("rsyncd.log").display(),
            module = d.join("module").display(),
            secrets = d.join("secrets").display(),
        );
        fs::write(d.join("rsyncd.conf"), conf).expect("write rsyncd.conf");
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        // A pid file left by a killed daemon would make the new one refuse to start.
        let _ = fs::remove_file(d.join("rsyncd.pid"));
        let child = Command::new("rsync")
            .arg("--daemon")
            .arg("--no-detach")
            .arg(format!("--config={}", d.join("rsyncd.conf").display()))
            .arg("--address=127.0.0.1")
            .arg(format!("--port={}", self.port))
            // Its own process group, with the children serving connections: see `freeze`.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run rsync --daemon (is rsync installed?): {e}"))?;
        self.child = Some(listening(child, self.port, "rsync --daemon")?);
        Ok(())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("rsyncd.log")).unwrap_or_default()
    }

    /// How many lines of the daemon's log contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Wait (up to `timeout`) until the daemon's log has more than `after` lines holding
    /// `needle`; panic with the fixtures' diagnostics otherwise.
    pub fn wait_log(
        &self,
        needle: &str,
        after: usize,
        timeout: Duration,
        others: &[&dyn Diagnose],
    ) {
        wait::until(
            format_args!("more than {after} lines with {needle:?} in the daemon's log"),
            timeout,
            || {
                let n = self.log_count(needle);
                if n > after {
                    Ok(())
                } else {
                    Err(format!("{n} lines"))
                }
            },
        )
        .unwrap_or_else(|t| wait::fail(t, &[self as &dyn Diagnose, &Fixtures(others)]));
    }

    /// The client sessions (transfers) the daemon has logged, in the order they began.
    pub fn sessions(&self) -> Vec<Session> {
        sessions(&self.log())
    }

    /// The bytes the daemon received in the sessions after the first `after`, once every
    /// one of them has ended (waits up to `timeout` for that).
    pub fn received_after(&self, after: usize, timeout: Duration, others: &[&dyn Diagnose]) -> u64 {
        let ended = wait::until(
            format_args!("every session after the first {after} to end"),
            timeout,
            || {
                let s = self.sessions();
                let running = s.iter().skip(after).filter(|s| !s.ended).count();
                if running == 0 {
                    Ok(s)
                } else {
                    Err(format!("{running} still running"))
                }
            },
        )
        .unwrap_or_else(|t| wait::fail(t, &[self as &dyn Diagnose, &Fixtures(others)]));
        ended.iter().skip(after).filter_map(|s| s.received).sum()
    }

    /// Take a connection slot of the module and keep it: a plain `rsync` reads a big file
    /// ([`HOLD_FILE`], written into the module here) at 32 KiB/s into a tempdir. Returns
    /// once the daemon logged that transfer and a second client is refused with "max
    /// connections", i.e. the slot is really held (the module must have `max connections
    /// = 1`). A holder refused itself (another client had the slot) is started again.
    pub fn hold_slot(&self) -> SlotHolder {
        let big = vec![b'h'; 16 * 1024 * 1024];
        fs::write(self.path().join(HOLD_FILE), big).expect("write the slot holder's file");
        let into = tempfile::Builder::new()
            .prefix("syncd-e2e-holder.")
            .tempdir()
            .expect("create the slot holder's tempdir");
        let mut holder = SlotHolder { child: None, into };
        let mut logged = 0;
        wait::must("the module's slot held", READY_TIMEOUT, &[self], || {
            let running = match &mut holder.child {
                Some(c) => matches!(c.try_wait(), Ok(None)),
                None => false,
            };
            if !running {
                holder.release();
                logged = self.log_count(HOLD_FILE);
                holder.child = Some(self.spawn_holder(holder.into.path()));
                Err("holder (re)started")
            } else if self.log_count(HOLD_FILE) > logged && self.refuses_as_busy() {
                Ok(())
            } else {
                Err("a second client not refused yet")
            }
        });
        holder
    }

    /// The holding client, in a process group of its own: a receiving rsync forks, and
    /// its second process holds the connection as much as the first.
    fn spawn_holder(&self, into: &Path) -> Child {
        Command::new("rsync")
            .process_group(0)
            .arg("--bwlimit=32")
            .arg(format!(
                "--password-file={}",
                self.password_file().display()
            ))
            .arg(format!("--port={}", self.port))
            .arg(format!("{}/{HOLD_FILE}", self.dest()))
            .arg(into)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run rsync (is it installed?)")
    }

    /// Is a new client refused with "max connections ... reached" right now?
    fn refuses_as_busy(&self) -> bool {
        let out = Command::new("rsync")
            .arg("--list-only")
            .arg(format!(
                "--password-file={}",
                self.password_file().display()
            ))
            .arg(format!("--port={}", self.port))
            .arg(format!("{}/{HOLD_FILE}", self.dest()))
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .expect("run rsync (is it installed?)");
        String::from_utf8_lossy(&out.stderr).contains("max connections")
    }
}

/// One transfer as the daemon's log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub pid: u32,
    /// From its summary line (`sent X bytes  received Y bytes  total size Z`); None
    /// while it runs, or when it ended in an error instead.
    pub received: Option<u64>,
    /// Its summary or an `rsync error:` line was logged.
    pub ended: bool,
}

/// The transfers in a daemon log: every `[pid]` that logged `rsync to` or `rsync on`.
pub fn sessions(log: &str) -> Vec<Session> {
    let mut out: Vec<Session> = Vec::new();
    for line in log.lines() {
        let Some((pid, text)) = line
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once("] "))
            .and_then(|(pid, text)| Some((pid.parse::<u32>().ok()?, text)))
        else {
            continue;
        };
        if text.starts_with("rsync to ") || text.starts_with("rsync on ") {
            out.push(Session {
                pid,
                received: None,
                ended: false,
            });
            continue;
        }
        let Some(s) = out.iter_mut().rev().find(|s| s.pid == pid && !s.ended) else {
            continue;
        };
        if text.starts_with("rsync error:") {
            s.ended = true;
        } else if let Some(rest) = text.strip_prefix("sent ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            // "X bytes received Y bytes total size Z"
            s.received = words
                .iter()
                .position(|w| *w == "received")
                .and_then(|i| words.get(i + 1))
                .and_then(|n| n.parse().ok());
            s.ended = true;
        }
    }
    out
}

/// The file [`RsyncDaemon::hold_slot`] reads from the module (leave it out of comparisons).
pub const HOLD_FILE: &str = "slot-holder.bin";

/// A client holding one of the module's connection slots; [`SlotHolder::release`] (or
/// Drop) kills it and reaps it.
pub struct SlotHolder {
    child: Option<Child>,
    into: tempfile::TempDir,
}

impl SlotHolder {
    /// End the holding client: SIGKILL to its process group (whose id is the pid of our
    /// unreaped child, so it cannot name anyone else's), then wait for the child.
    pub fn release(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = i32::try_from(child.id()).expect("pid fits pid_t");
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for SlotHolder {
    fn drop(&mut self) {
        self.release();
    }
}

impl Diagnose for RsyncDaemon {
    fn diagnose(&self) -> String {
        format!(
            "--- rsync daemon on 127.0.0.1:{} (module {}) log tail ---\n{}",
            self.port,
            self.path().display(),
            tail(&self.log(), 30)
        )
    }
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Send SIGTERM to `child` and wait for it; SIGKILL if it outlives `timeout`.
pub fn terminate(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    signal(child, Signal::SIGTERM);
    let exited =
        wait::until_every(
            "the exit after SIGTERM",
            timeout,
            wait::SHORT_POLL,
            || match child.try_wait() {
                Ok(Some(st)) => Ok(Some(st)),
                Ok(None) => Err("running"),
                Err(_) => Ok(None),
            },
        );
    match exited {
        Ok(Some(st)) => Some(st),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

/// Send `sig` to `child` by its pid (it has not been reaped, so the pid is still ours).
pub fn signal(child: &Child, sig: Signal) {
    let pid = i32::try_from(child.id()).expect("pid fits pid_t");
    // The child may have exited by now (unreaped, so the pid is not anyone else's).
    let _ = kill(Pid::from_raw(pid), sig);
}

/// Wait until `child`, a server just started on 127.0.0.1:`port`, accepts connections
/// (and is still running: not some other process that holds the port). On an early exit
/// or no answer within 10 s, `Err` says so and the child is stopped and reaped.
pub(crate) fn listening(mut child: Child, port: u16, name: &str) -> Result<Child, String> {
    let ready = wait::until(
        format_args!("{name} accepting connections on port {port}"),
        READY_TIMEOUT,
        || match child.try_wait() {
            Ok(Some(status)) => Ok(Err(format!("{name} exited early ({status})"))),
            _ if accepts(port) && matches!(child.try_wait(), Ok(None)) => Ok(Ok(())),
            _ => Err("refused"),
        },
    );
    match ready {
        Ok(Ok(())) => Ok(child),
        Ok(Err(early)) => Err(early),
        Err(t) => {
            terminate(&mut child, STOP_TIMEOUT);
            Err(t.to_string())
        }
    }
}

pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr of a bound socket").port()
}

pub(crate) fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Write `text` to `path` with mode 0600 (rsync refuses other-accessible secrets).
pub fn write_private(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod 600 {}: {e}", path.display()));
}

/// A password no other daemon, path or process has: `e2e-pw-` and 16 random hex digits
/// (std's per-process random hash keys, drawn afresh for each call).
fn unique_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("e2e-pw-{:016x}", h.finish())
}

/// A frozen server ([`RsyncDaemon::freeze`], `Sshd::freeze`): SIGSTOP to its process
/// group, SIGCONT on drop. It borrows the fixture, which so outlives it.
pub struct Frozen<'a> {
    pgid: Pid,
    _fixture: PhantomData<&'a ()>,
}

impl Frozen<'_> {
    /// SIGSTOP the process group led by `child` (started with `process_group(0)`, not yet
    /// reaped: the id is still ours) and return once every process in it is stopped: the
    /// signal is delivered asynchronously, and a process running on another CPU still
    /// shows `R` for a moment (seen: the harness self-test read `R` right after the
    /// `killpg`).
    pub(crate) fn group_of(child: &Child) -> Frozen<'_> {
        let pgid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits pid_t"));
        killpg(pgid, Signal::SIGSTOP).expect("SIGSTOP the server's process group");
        let frozen = Frozen {
            pgid,
            _fixture: PhantomData,
        };
        if let Err(t) = wait::until("the frozen process group stopped", STOP_TIMEOUT, || {
            let states = group_states(child.id());
            if !states.is_empty() && states.iter().all(|&s| s == 'T' || s == 't') {
                Ok(())
            } else {
                Err(format!("states {states:?}"))
            }
        }) {
            panic!("{t}");
        }
        frozen
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let _ = killpg(self.pgid, Signal::SIGCONT);
    }
}
