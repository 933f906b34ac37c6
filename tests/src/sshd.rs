//! `Sshd`: a real OpenSSH `sshd -D -e -f <own config>` on 127.0.0.1, on a free port, with
//! everything in its own tempdir: its host key, the client key pair the tests log in
//! with, `authorized_keys`, the `known_hosts` the client uses, its log, and `target/`, the
//! directory an ssh target `root@127.0.0.1:<tempdir>/target` writes to. The client side
//! ([`Sshd::ssh_args`]) reads no ssh config file (`-F /dev/null`) and no key or known_hosts
//! of its user: nothing touches `~/.ssh`. Tests can take the key away
//! ([`Sshd::revoke_client_key`]), forget the host key or put another one in its place
//! ([`Sshd::forget_host_key`], [`Sshd::spoof_host_key`]): sshd reads `authorized_keys` at
//! every login, ssh reads `known_hosts` at every connection.
//!
//! Needs root (sshd checks logins as the user it runs as, and the tests log in as root)
//! and `/usr/sbin/sshd` (Debian's openssh-server; `scripts/test` installs it without
//! starting a system sshd). Fails, never skips, without them. Drop stops sshd by its pid
//! and removes the tempdir.
//!
//! Must not: listen anywhere but 127.0.0.1, touch `~/.ssh` or `/etc/ssh`, or sleep in
//! place of a readiness check.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::daemon::{free_port, listening, terminate, write_private, Frozen};
use crate::{is_root, tail, Diagnose};

/// Where Debian's openssh-server puts sshd (not on every user's PATH).
pub const SSHD: &str = "/usr/sbin/sshd";
/// The user the tests log in as.
pub const USER: &str = "root";
/// sshd's privilege separation directory; it refuses to start without it.
const PRIVSEP_DIR: &str = "/run/sshd";
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Sshd {
    /// Start sshd on a free port, with the client key authorized and the host key known,
    /// and wait until it answers with its SSH banner.
    pub fn start() -> Sshd {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} not found: install openssh-server (scripts/test does, starting no system \
             sshd: `source scripts/lib.sh; ensure_tools /usr/sbin/sshd:openssh-server`)"
        );
        assert!(
            is_root(),
            "the real-sshd tests log in as root and need to run as root"
        );
        fs::create_dir_all(PRIVSEP_DIR).unwrap_or_else(|e| {
            panic!("create sshd's privilege separation dir {PRIVSEP_DIR}: {e}")
        });
        let dir = tempfile::Builder::new()
            .prefix("syncd-e2e-sshd.")
            .tempdir()
            .expect("create the sshd tempdir");
        for key in ["host_key", "client_key", "stranger_key"] {
            keygen(&dir.path().join(key));
        }
        fs::create_dir(dir.path().join("target")).expect("create the ssh target dir");
        let mut d = Sshd {
            dir,
            port: 0,
            child: None,
        };
        d.authorize("client_key");
        // A free port is found by binding port 0 and releasing it; another process may take
        // it before sshd binds, so a failed start is retried on a fresh port.
        let mut last_err = String::new();
        for _ in 0..5 {
            d.port = free_port();
            d.write_config();
            d.know_host_key("host_key");
            match d.spawn_and_wait() {
                Ok(()) => return d,
                Err(e) => last_err = e,
            }
        }
        panic!("sshd did not start: {last_err}\n{}", d.diagnose());
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory the ssh target writes to (what the target tree should equal).
    pub fn target(&self) -> PathBuf {
        self.dir.path().join("target")
    }

    /// `root@127.0.0.1:<tempdir>/target/`, the `dest` of a worker config.
    pub fn dest(&self) -> String {
        format!("{USER}@127.0.0.1:{}/", self.target().display())
    }

    /// The client's private key (its path is all a config ever holds).
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The known_hosts file the client uses.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The `ssh_args` of an ssh target: this key only, this known_hosts only, no config
    /// file (the port goes in the target's `port`).
    pub fn ssh_args(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.client_key().display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
        ]
    }

    /// `[127.0.0.1]:PORT`, as known_hosts and ssh's messages name this server.
    pub fn host_pattern(&self) -> String {
        format!("[127.0.0.1]:{}", self.port)
    }

    /// authorized_keys holds another key: the client's is refused from the next login.
    pub fn revoke_client_key(&self) {
        self.authorize("stranger_key");
    }

    /// authorized_keys holds the client's key again (as at start).
    pub fn authorize_client_key(&self) {
        self.authorize("client_key");
    }

    /// known_hosts holds the server's own host key again (as at start).
    pub fn know_real_host_key(&self) {
        self.know_host_key("host_key");
    }

    /// known_hosts is empty: the server's host key is unknown to the client.
    pub fn forget_host_key(&self) {
        write_private(&self.known_hosts(), "");
    }

    /// known_hosts holds another key for this server: what the client sees when the host
    /// key changed (or someone is in the middle).
    pub fn spoof_host_key(&self) {
        self.know_host_key("stranger_key");
    }

    /// Run `ssh ... root@127.0.0.1 COMMAND` with [`Sshd::ssh_args`] and `BatchMode`, as
    /// syncd's rsync would log in; (success, stdout + stderr).
    pub fn ssh(&self, command: &str) -> (bool, String) {
        let out = Command::new("ssh")
            .args(["-p", &self.port.to_string(), "-o", "BatchMode=yes"])
            .args(self.ssh_args())
            .arg(format!("{USER}@127.0.0.1"))
            .arg(command)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .expect("run ssh (is openssh-client installed?)");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Push `src` to [`Sshd::target`] with a plain `rsync -a --delete -e "ssh ..."` (the
    /// harness's own proof that logins and the remote rsync work). Panics with rsync's
    /// output on failure.
    pub fn push_with_rsync(&self, src: &Path) {
        let mut rsh = format!("ssh -p {} -o BatchMode=yes", self.port);
        for a in self.ssh_args() {
            assert!(!a.contains(' '), "ssh argument {a:?} needs quoting for -e");
            rsh.push(' ');
            rsh.push_str(&a);
        }
        let out = Command::new("rsync")
            .args(["-a", "--delete", "-e", &rsh])
            .arg(format!("{}/", src.display()))
            .arg(self.dest())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .expect("run rsync (is it installed?)");
        assert!(
            out.status.success(),
            "plain rsync push over ssh failed ({}):\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.diagnose()
        );
    }

    /// sshd's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The tempdir holding everything (gone once this is dropped).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How many lines of sshd's log contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// How many logins sshd refused for want of an accepted key (one per attempt).
    pub fn refused_logins(&self) -> usize {
        self.log_count("Connection closed by authenticating user")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Freeze sshd's listener (SIGSTOP to its process group) until the guard is dropped:
    /// a new connection waits in the listen backlog, so the client (`ssh`, and the rsync
    /// that started it) stays alive and can be looked at in `/proc`.
    pub fn freeze(&self) -> Frozen<'_> {
        Frozen::group_of(self.child.as_ref().expect("freeze() while sshd is stopped"))
    }

    fn authorize(&self, key: &str) {
        let public = read_public(&self.dir.path().join(key));
        write_private(&self.dir.path().join("authorized_keys"), &public);
    }

    fn know_host_key(&self, key: &str) {
        let public = read_public(&self.dir.path().join(key));
        write_private(
            &self.known_hosts(),
            &format!("{} {public}", self.host_pattern()),
        );
    }

    fn write_config(&self) {
        let d = self.dir.path();
        // StrictModes: the tempdir lies under the world-writable /tmp, which sshd's path
        // check refuses for authorized_keys. PidFile none: the pid is our child's.
        let conf = format!(
            "ListenAddress 127.0.0.1\n\
             Port {port}\n\
             HostKey {host_key}\n\
             AuthorizedKeysFile {authorized}\n\
             PidFile none\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PrintMotd no\n\
             LogLevel VERBOSE\n\
             MaxStartups 100\n\
             MaxSessions 100\n",
            port = self.port,
            host_key = d.join("host_key").display(),
            authorized = d.join("authorized_keys").display(),
        );
        fs::write(d.join("sshd_config"), conf).expect("write sshd_config");
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("sshd.log"))
            .expect("open sshd.log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            // Its own process group: see `freeze`.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {SSHD}: {e}"))?;
        self.child = Some(listening(child, self.port, "sshd")?);
        Ok(())
    }
}

/// `ssh-keygen -t ed25519` without a passphrase: `path` and `path.pub`.
fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "syncd-e2e", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen (is openssh-client installed?)");
    assert!(
        out.status.success(),
        "ssh-keygen -f {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `key.pub`, one line.
fn read_public(key: &Path) -> String {
    let public = key.with_extension("pub");
    let mut text =
        fs::read_to_string(&public).unwrap_or_else(|e| panic!("read {}: {e}", public.display()));
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

impl Diagnose for Sshd {
    fn diagnose(&self) -> String {
        format!(
            "--- sshd on 127.0.0.1:{} (target {}) log tail ---\n{}",
            self.port,
            self.target().display(),
            tail(&self.log(), 30)
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Thaw it first if a test panicked while it was frozen: SIGTERM waits otherwise.
            let pgid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits pid_t"));
            let _ = killpg(pgid, Signal::SIGCONT);
            terminate(&mut child, STOP_TIMEOUT);
        }
    }
}
